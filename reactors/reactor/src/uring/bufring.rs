//! Provided-buffer rings (IORING_REGISTER_PBUF_RING, kernel 5.19+) and the page-aligned memory
//! they live in. The kernel picks a buffer per receive (multishot RECVMSG / RECV with
//! BUFFER_SELECT); we hand buffers back with [`BufRing::push`] (or [`BufRing::recycle`]) and
//! make them visible with one release store of the tail in [`BufRing::publish`]. The buffers
//! themselves are a [`Slab`]: each offers the largest datagram, most of it address space only.

use std::io;
use std::sync::atomic::{AtomicU16, Ordering};

use io_uring::IoUring;

use crate::slab::Slab;

/// Page-aligned anonymous memory (the provided-buffer ring must be page aligned).
pub(crate) struct PageAlloc {
    ptr: *mut u8,
    len: usize,
}

impl PageAlloc {
    pub(crate) fn new(len: usize) -> io::Result<Self> {
        // SAFETY: anonymous private mapping; no fd, no aliasing.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(Self { ptr: p.cast(), len })
    }

    pub(crate) fn addr(&self) -> *mut u8 {
        self.ptr
    }
}

impl Drop for PageAlloc {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the mapping created in `new`, which nobody uses any more.
        unsafe { libc::munmap(self.ptr.cast(), self.len) };
    }
}

/// A provided-buffer ring (IORING_REGISTER_PBUF_RING): `entries` buffers that each accept
/// `capacity` bytes and keep `resident` bytes in memory ([`Slab`]).
pub(crate) struct BufRing {
    ring: PageAlloc,
    pub(super) bufs: Slab,
    mask: u16,
    tail: u16,
    pub(super) bgid: u16,
}

impl BufRing {
    pub(super) fn new(
        ring: &IoUring,
        entries: u16,
        capacity: usize,
        resident: usize,
        bgid: u16,
    ) -> io::Result<Self> {
        let entries = entries.max(1).next_power_of_two();
        let bufs = Slab::new(entries as usize, capacity, resident)?;
        if u32::try_from(bufs.stride()).is_err() {
            return Err(io::Error::other("provided buffer larger than 4 GiB"));
        }
        let mem = PageAlloc::new((entries as usize * 16).max(4096))?;
        // SAFETY: `mem` is page aligned, holds `entries` 16-byte io_uring_buf entries, and lives
        // in this struct, which the backend drops only after the ring (field order) and after
        // unregistering in `Drop for UringBackend`.
        unsafe {
            ring.submitter()
                .register_buf_ring_with_flags(mem.addr() as u64, entries, bgid, 0)?
        };
        let mut r = Self {
            ring: mem,
            bufs,
            mask: entries - 1,
            tail: 0,
            bgid,
        };
        for bid in 0..entries {
            r.push(bid);
        }
        r.publish();
        Ok(r)
    }

    /// Give buffer `bid` back to the kernel (visible after [`BufRing::publish`]).
    pub(super) fn push(&mut self, bid: u16) {
        let slot = (self.tail & self.mask) as usize;
        let addr = self.bufs.slot_ptr(bid as usize) as u64;
        // Checked in `new` to fit.
        let len = self.bufs.stride() as u32;
        // SAFETY: `slot < entries`, so the 16-byte entry is inside the mapping. We write only
        // addr/len/bid (bytes 0..14); bytes 14..16 of entry 0 are the shared tail.
        unsafe {
            let e = self.ring.addr().add(slot * 16);
            std::ptr::write_unaligned(e.cast::<u64>(), addr);
            std::ptr::write_unaligned(e.add(8).cast::<u32>(), len);
            std::ptr::write_unaligned(e.add(12).cast::<u16>(), bid);
        }
        self.tail = self.tail.wrapping_add(1);
    }

    /// Publish pushed buffers with one release store of the tail.
    pub(super) fn publish(&self) {
        // SAFETY: offset 14 is the u16 tail of io_uring_buf_ring, 2-byte aligned in a page.
        let tail = unsafe { &*self.ring.addr().add(14).cast::<AtomicU16>() };
        tail.store(self.tail, Ordering::Release);
    }

    pub(super) fn buf(&self, bid: u16, len: usize) -> &[u8] {
        self.bufs.slot(bid as usize, len)
    }

    /// Give buffer `bid`, into which a receive wrote `used` bytes, back to the kernel, after
    /// handing back the pages past its resident part ([`Slab::trim`]). Returns whether it was
    /// a large receive.
    pub(super) fn recycle(&mut self, bid: u16, used: usize) -> bool {
        let large = self.bufs.trim(bid as usize, used);
        self.push(bid);
        large
    }
}
