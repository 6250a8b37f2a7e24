//! Start-up probe: can this process use io_uring the way the reactors need it?
//!
//! feasibility-uring.md §6: `io_uring_setup` (ENOSYS: old kernel; EPERM: seccomp or
//! `kernel.io_uring_disabled`; ENOMEM: memlock), `IORING_REGISTER_PROBE` for the opcodes we
//! submit, a provided-buffer ring registration (5.19+), and kernel ≥ 6.0 for multishot RECVMSG.
//! The result is computed once per process. `SIPHON_IO_URING_PROBE_FAIL=<reason>` injects a
//! failure (for tests and for operators who want to rehearse the fallback).

use std::sync::OnceLock;

use io_uring::{IoUring, opcode};

/// What the probe found when io_uring is usable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UringFeatures {
    /// SINGLE_ISSUER | DEFER_TASKRUN rings can be created (kernel 6.1+).
    pub defer_taskrun: bool,
}

/// Environment variable that makes the probe fail with its value as the reason.
pub const PROBE_FAIL_ENV: &str = "SIPHON_IO_URING_PROBE_FAIL";

/// Probe once per process; `Err` carries the human-readable reason.
pub fn probe() -> Result<UringFeatures, String> {
    static RESULT: OnceLock<Result<UringFeatures, String>> = OnceLock::new();
    RESULT.get_or_init(probe_uncached).clone()
}

fn kernel_at_least(major: u32, minor: u32) -> Option<bool> {
    let mut u = std::mem::MaybeUninit::<libc::utsname>::uninit();
    // SAFETY: uname fills the struct; we read it only on success.
    if unsafe { libc::uname(u.as_mut_ptr()) } != 0 {
        return None;
    }
    // SAFETY: uname returned 0 so the struct is initialised.
    let u = unsafe { u.assume_init() };
    let rel: String = u
        .release
        .iter()
        .take_while(|&&c| c != 0)
        .map(|&c| c as u8 as char)
        .collect();
    let mut it = rel.split(|c: char| !c.is_ascii_digit());
    let ma: u32 = it.next()?.parse().ok()?;
    let mi: u32 = it.next()?.parse().ok()?;
    Some((ma, mi) >= (major, minor))
}

fn probe_uncached() -> Result<UringFeatures, String> {
    if let Ok(why) = std::env::var(PROBE_FAIL_ENV) {
        return Err(format!("probe failure injected by {PROBE_FAIL_ENV}: {why}"));
    }
    let ring: IoUring = IoUring::new(8).map_err(|e| format!("io_uring_setup: {e}"))?;
    let mut p = io_uring::Probe::new();
    ring.submitter()
        .register_probe(&mut p)
        .map_err(|e| format!("IORING_REGISTER_PROBE: {e}"))?;
    let needed = [
        ("RECVMSG", opcode::RecvMsgMulti::CODE),
        ("SENDMSG", opcode::SendMsg::CODE),
        ("ACCEPT", opcode::AcceptMulti::CODE),
        ("RECV", opcode::RecvMulti::CODE),
        ("SEND", opcode::Send::CODE),
        ("CONNECT", opcode::Connect::CODE),
        ("READ", opcode::Read::CODE),
        ("ASYNC_CANCEL", opcode::AsyncCancel::CODE),
    ];
    for (name, code) in needed {
        if !p.is_supported(code) {
            return Err(format!(
                "io_uring opcode {name} not supported by this kernel"
            ));
        }
    }
    if kernel_at_least(6, 0) == Some(false) {
        return Err("kernel older than 6.0: no multishot RECVMSG".to_owned());
    }
    // Provided buffer ring (5.19+): register a tiny one and take it down again.
    let ring_mem = crate::uring::PageAlloc::new(4096).map_err(|e| format!("mmap: {e}"))?;
    // SAFETY: `ring_mem` is a page-aligned mapping of 4096 bytes (room for 8 entries of
    // 16 bytes) that outlives the registration, which is removed just below.
    unsafe {
        ring.submitter()
            .register_buf_ring_with_flags(ring_mem.addr() as u64, 8, 0, 0)
    }
    .map_err(|e| format!("IORING_REGISTER_PBUF_RING: {e}"))?;
    let _ = ring.submitter().unregister_buf_ring(0);
    drop(ring);
    let defer_taskrun = IoUring::<io_uring::squeue::Entry, io_uring::cqueue::Entry>::builder()
        .setup_single_issuer()
        .setup_defer_taskrun()
        .build(8)
        .is_ok();
    Ok(UringFeatures { defer_taskrun })
}
