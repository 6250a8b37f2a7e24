//! Receive buffer memory for both backends: `count` equal slots in one anonymous mapping.
//!
//! Owns: the mapping, the slot geometry, and handing back the memory a large datagram touched.
//! Does not own: which slot is in use (the provided-buffer ring, or the epoll batch, decides).
//!
//! A UDP datagram may be as large as 65,535 bytes, and a receive that offers fewer bytes loses
//! the rest for good (the kernel consumes the datagram and only reports MSG_TRUNC; a multishot
//! RECVMSG cannot peek). So every slot must *offer* the largest datagram. It does not have to
//! *hold* it: the mapping is `MAP_NORESERVE` address space, a page becomes memory only when the
//! kernel writes a datagram into it, and after a datagram longer than the slot's `resident`
//! part has been handled, [`Slab::trim`] gives its extra pages back (`MADV_DONTNEED`). Memory
//! in use stays about `count × resident` (what it was when slots were `resident` bytes), plus
//! the large datagrams being handled right now; address space is `count × stride`.

use std::io;

/// Page size assumed for rounding (the mapping itself is page aligned whatever the page size;
/// on a larger-page system `trim` only gives back less).
const PAGE: usize = 4096;

fn page_round(n: usize) -> usize {
    n.div_ceil(PAGE).max(1) * PAGE
}

/// `count` slots of `stride` bytes (a page multiple), of which the first `resident` bytes of
/// each are expected to stay in memory.
pub(crate) struct Slab {
    ptr: *mut u8,
    len: usize,
    stride: usize,
    resident: usize,
    /// Set when the kernel may still write into the slots at drop: never unmap then.
    leaked: bool,
}

impl Slab {
    /// Slots that accept `capacity` bytes each and keep `resident` bytes of each in memory.
    pub(crate) fn new(count: usize, capacity: usize, resident: usize) -> io::Result<Self> {
        let resident = page_round(resident);
        let stride = page_round(capacity).max(resident);
        let len = count
            .max(1)
            .checked_mul(stride)
            .ok_or_else(|| io::Error::other("receive buffer slab size overflows"))?;
        // SAFETY: anonymous private mapping with no fixed address; no fd, no aliasing.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(Self {
            ptr: p.cast(),
            len,
            stride,
            resident,
            leaked: false,
        })
    }

    /// Bytes each slot offers to a receive.
    pub(crate) fn stride(&self) -> usize {
        self.stride
    }

    /// Bytes of each slot kept in memory (a page multiple).
    pub(crate) fn resident(&self) -> usize {
        self.resident
    }

    /// Start of slot `i`, for handing to the kernel. Panics if `i` is out of range.
    pub(crate) fn slot_ptr(&self, i: usize) -> *mut u8 {
        assert!(i < self.len / self.stride, "slot {i} out of range");
        // SAFETY: `i * stride < len`, inside the mapping.
        unsafe { self.ptr.add(i * self.stride) }
    }

    /// The first `len` bytes of slot `i` (clamped to the slot). The caller must not read a slot
    /// the kernel may be writing (one it has handed to a pending receive).
    pub(crate) fn slot(&self, i: usize, len: usize) -> &[u8] {
        let start = self.slot_ptr(i);
        // SAFETY: the range is inside slot `i` of the live mapping (zero-filled or written by
        // the kernel, so initialised). Slots are handed to the kernel only between receives;
        // the backends call this for a slot whose receive has completed and that they have not
        // handed back yet, so nothing writes it while the slice lives.
        unsafe { std::slice::from_raw_parts(start, len.min(self.stride)) }
    }

    /// A receive wrote `used` bytes into slot `i`: if that went past the resident part, give
    /// the extra pages back. Returns whether it did (the datagram was a large one). Takes
    /// `&mut self`, so no slice of the slab is alive; the caller must not have handed slot `i`
    /// back to the kernel yet.
    pub(crate) fn trim(&mut self, i: usize, used: usize) -> bool {
        if used <= self.resident {
            return false;
        }
        let from = self.resident;
        let to = page_round(used).min(self.stride);
        let start = self.slot_ptr(i);
        // SAFETY: `[start + from, start + to)` lies inside slot `i` of the mapping, page
        // aligned (mapping, stride and `from` are page multiples). Nobody reads or writes it:
        // `&mut self` rules out live slices and the kernel does not own slot `i` now. After
        // MADV_DONTNEED the pages read as zero, which is fine for receive memory.
        unsafe {
            libc::madvise(start.add(from).cast(), to - from, libc::MADV_DONTNEED);
        }
        true
    }

    /// Give back every page of every slot (`MADV_DONTNEED`: they read as zero afterwards and
    /// become memory again when written). The caller must hold no slice of the slab (`&mut
    /// self`) and the kernel must not be writing into it now: the backends call this between
    /// turns, on the reactor thread, where the kernel writes receive buffers only during that
    /// thread's own `io_uring_enter` (task work; the ring is single-issuer, deferred task run)
    /// or `recvmmsg`.
    pub(crate) fn release(&mut self) {
        // SAFETY: exactly the mapping made in `new`; no live slice (`&mut self`) and no
        // concurrent kernel write (above). Zeroed pages are fine for receive memory.
        unsafe {
            libc::madvise(self.ptr.cast(), self.len, libc::MADV_DONTNEED);
        }
    }

    /// Keep the mapping alive forever (the kernel may still write into it at shutdown).
    pub(crate) fn leak(&mut self) {
        self.leaked = true;
    }
}

impl Drop for Slab {
    fn drop(&mut self) {
        if self.leaked {
            return;
        }
        // SAFETY: unmaps exactly the mapping made in `new`; the backends drop the slab only
        // after every receive into it has completed (or leak it).
        unsafe { libc::munmap(self.ptr.cast(), self.len) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn geometry_and_trim() {
        let mut s = Slab::new(4, 65_535 + 200, 3000).expect("mmap");
        assert_eq!(s.resident(), 4096);
        assert_eq!(s.stride(), 69_632);
        // A large write into slot 2, then trim: the tail reads as zero again, the head stays.
        let p = s.slot_ptr(2);
        // SAFETY: slot 2 is inside the mapping and nothing else uses the slab.
        unsafe { std::ptr::write_bytes(p, 7, 20_000) };
        assert!(s.slot(2, 20_000).iter().all(|b| *b == 7));
        assert!(s.trim(2, 20_000));
        let v = s.slot(2, 20_000);
        assert!(v[..4096].iter().all(|b| *b == 7));
        assert!(v[4096..].iter().all(|b| *b == 0));
        assert!(
            !s.trim(1, 4096),
            "a datagram within the resident part keeps its pages"
        );
    }

    #[test]
    fn release_zeroes_every_slot_and_slots_stay_usable() {
        let mut s = Slab::new(4, 8192, 4096).expect("mmap");
        for i in 0..4 {
            // SAFETY: slot `i` is inside the mapping and nothing else uses the slab.
            unsafe { std::ptr::write_bytes(s.slot_ptr(i), 9, 8192) };
        }
        s.release();
        assert!((0..4).all(|i| s.slot(i, 8192).iter().all(|b| *b == 0)));
        // SAFETY: as above.
        unsafe { std::ptr::write_bytes(s.slot_ptr(3), 5, 100) };
        assert!(s.slot(3, 100).iter().all(|b| *b == 5));
    }
}
