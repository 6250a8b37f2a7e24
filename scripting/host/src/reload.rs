//! Hot reload trigger for `script.reload: auto`: inotify on the script's directory and the
//! include paths; any `*.py` change, debounced 50 ms, bumps the reload generation. Each worker
//! then re-execs the script at its next batch boundary; a failure keeps the old handlers
//! (siphon-core-api.md §4.3, feasibility-python.md §5).

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::host::{Shared, request_reload};
use crate::worker::LogLevel;

const DEBOUNCE: Duration = Duration::from_millis(50);

/// Watcher thread body; returns at shutdown.
pub(crate) fn watch(shared: &Shared) {
    // SAFETY: plain syscall; the fd is owned by this function and closed at the end.
    let fd = unsafe { libc::inotify_init1(libc::IN_NONBLOCK | libc::IN_CLOEXEC) };
    if fd < 0 {
        (shared.log)(
            LogLevel::Error,
            0,
            "script.reload auto: inotify unavailable; use sighup",
        );
        return;
    }
    let mut dirs = Vec::new();
    if let Some(d) = shared.cfg.script_path.parent() {
        dirs.push(if d.as_os_str().is_empty() {
            std::path::PathBuf::from(".")
        } else {
            d.to_path_buf()
        });
    }
    dirs.extend(shared.cfg.include_paths.iter().cloned());
    for d in &dirs {
        let Ok(c) = CString::new(d.as_os_str().as_bytes()) else {
            continue;
        };
        let mask = libc::IN_CLOSE_WRITE
            | libc::IN_MOVED_TO
            | libc::IN_CREATE
            | libc::IN_DELETE
            | libc::IN_MOVED_FROM;
        // SAFETY: fd is a valid inotify fd and c a NUL-terminated path.
        if unsafe { libc::inotify_add_watch(fd, c.as_ptr(), mask) } < 0 {
            (shared.log)(
                LogLevel::Warn,
                0,
                &format!("script.reload auto: cannot watch {}", d.display()),
            );
        }
    }
    let mut buf = [0u8; 4096];
    let mut dirty_since: Option<Instant> = None;
    while !shared.shutdown.load(Ordering::Acquire) {
        let mut pfd = libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        unsafe { libc::poll(&mut pfd, 1, 20) };
        loop {
            // SAFETY: reading into a buffer we own; the fd is non-blocking.
            let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
            if n <= 0 {
                break;
            }
            if touched_py(&buf[..n as usize]) {
                dirty_since = Some(Instant::now());
            }
        }
        if dirty_since.is_some_and(|t| t.elapsed() >= DEBOUNCE) {
            dirty_since = None;
            let g = request_reload(shared);
            (shared.log)(
                LogLevel::Info,
                0,
                &format!("script change detected; reload generation {g}"),
            );
        }
    }
    // SAFETY: closing the fd opened above.
    unsafe { libc::close(fd) };
}

/// Whether a batch of inotify events names a `*.py` file.
fn touched_py(mut b: &[u8]) -> bool {
    const HDR: usize = 16; // wd, mask, cookie, len (4 bytes each)
    let mut any = false;
    while b.len() >= HDR {
        let len = u32::from_ne_bytes([b[12], b[13], b[14], b[15]]) as usize;
        let name = b.get(HDR..HDR + len).unwrap_or(&[]);
        let name = name.split(|c| *c == 0).next().unwrap_or(&[]);
        if name.ends_with(b".py") {
            any = true;
        }
        b = b.get(HDR + len..).unwrap_or(&[]);
    }
    any
}

#[cfg(test)]
mod tests {
    #[test]
    fn recognises_py_events() {
        let mut ev = vec![0u8; 16];
        let name = b"app.py\0\0";
        ev[12..16].copy_from_slice(&(name.len() as u32).to_ne_bytes());
        ev.extend_from_slice(name);
        assert!(super::touched_py(&ev));
        ev.truncate(16);
        let other = b"app.swp\0";
        ev.extend_from_slice(other);
        assert!(!super::touched_py(&ev));
    }
}
