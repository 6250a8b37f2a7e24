//! Provided-buffer rings (IORING_REGISTER_PBUF_RING, kernel 5.19+) and the page-aligned memory
//! they live in. The kernel picks a buffer per receive (multishot RECVMSG / RECV with
//! BUFFER_SELECT); we hand buffers back with [`BufRing::push`] (or [`BufRing::recycle`]) and
//! make them visible with one release store of the tail in [`BufRing::publish`]. The buffers
//! themselves are a [`Slab`]: each offers the largest datagram, most of it address space only.
//!
//! The ring does not hold every buffer at once. The kernel takes buffers in ring order, so a
//! ring stocked with all `entries` buffers would cycle through every one of them (1,024 × one
//! touched page = 4 MiB per reactor at a few hundred datagrams per second, each landing in a
//! cold buffer). Instead the ring holds a *hot set* of [`HOT_START`] buffers; a buffer handed
//! back goes on a LIFO stack of spares and the ring is topped up from the top of that stack,
//! so the same few buffers circulate while the rest stay untouched. When the kernel finds the
//! ring empty (`ENOBUFS`: the receive waits in the socket until it is re-armed, nothing is
//! lost) the hot set doubles, up to `entries`, which stays the burst capacity.

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

/// Buffers the ring holds at start (the hot set; it doubles on each `ENOBUFS`).
pub(crate) const HOT_START: u16 = 64;

/// A provided-buffer ring (IORING_REGISTER_PBUF_RING): `entries` buffers that each accept
/// `capacity` bytes and keep `resident` bytes in memory ([`Slab`]), of which a hot set is in
/// the ring at any time (module docs).
pub(crate) struct BufRing {
    ring: PageAlloc,
    pub(super) bufs: Slab,
    mask: u16,
    tail: u16,
    pub(super) bgid: u16,
    /// Buffers neither in the ring nor being handled; the most recently used on top.
    spare: Vec<u16>,
    /// Buffers pushed to the ring and not yet taken by the kernel (as far as we know: every
    /// buffer the kernel takes comes back through [`BufRing::give_back`]).
    in_ring: u16,
    /// Pushed since the last [`BufRing::publish`] (the kernel cannot have seen them).
    unpublished: u16,
    /// How many buffers the ring is kept stocked with.
    target: u16,
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
            // Highest ids at the bottom: the first buffers used are 0, 1, 2, ...
            spare: (0..entries).rev().collect(),
            in_ring: 0,
            unpublished: 0,
            target: HOT_START.min(entries),
        };
        r.refill();
        r.publish();
        Ok(r)
    }

    /// Top the ring up to the hot-set size from the top of the spare stack.
    fn refill(&mut self) {
        while self.in_ring < self.target {
            let Some(bid) = self.spare.pop() else { break };
            self.push(bid);
            self.in_ring += 1;
            self.unpublished = self.unpublished.saturating_add(1);
        }
    }

    /// Buffer `bid`, which the kernel took for a completion, is free again: keep it hot and
    /// keep the ring stocked (visible after [`BufRing::publish`]).
    pub(super) fn give_back(&mut self, bid: u16) {
        self.in_ring = self.in_ring.saturating_sub(1);
        self.spare.push(bid);
        self.refill();
    }

    /// The kernel found the ring empty (`ENOBUFS`): it holds nothing it has seen, so only
    /// what was pushed since the last publish is in it; double the hot set.
    pub(super) fn exhausted(&mut self) {
        self.in_ring = self.unpublished;
        self.target = self
            .target
            .saturating_mul(2)
            .min(self.mask.saturating_add(1));
        self.refill();
    }

    /// Buffers the ring is kept stocked with now.
    #[cfg(test)]
    pub(super) fn hot_set(&self) -> u16 {
        self.target
    }

    /// Write buffer `bid` into the next ring entry (visible after [`BufRing::publish`]). At
    /// most `entries` buffers exist and each is in the ring at most once, so the ring never
    /// overwrites an entry the kernel has not taken.
    fn push(&mut self, bid: u16) {
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
    pub(super) fn publish(&mut self) {
        self.unpublished = 0;
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
        self.give_back(bid);
        large
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring() -> Option<IoUring> {
        IoUring::new(8).ok()
    }

    #[test]
    fn the_ring_holds_a_hot_set_topped_up_with_the_buffer_used_last() {
        let Some(uring) = ring() else { return };
        let mut r = BufRing::new(&uring, 256, 4096, 4096, 7).expect("register");
        assert_eq!(
            (r.hot_set(), r.in_ring, r.spare.len()),
            (HOT_START, HOT_START, 192)
        );
        // The kernel took buffers 0 and 1 (their completions hand them back): each goes
        // straight back into the ring, not one of the 192 cold spares.
        r.give_back(1);
        assert_eq!(last_pushed(&r), 1);
        r.give_back(0);
        assert_eq!(last_pushed(&r), 0);
        assert_eq!((r.in_ring, r.spare.len()), (HOT_START, 192));
        r.publish();
        // A dry ring doubles the hot set (up to the ring size), stocking it from the spares.
        r.in_ring = 0;
        r.exhausted();
        assert_eq!((r.hot_set(), r.in_ring), (128, 128));
        r.publish();
        // Dry again: the hot set is capped at the ring size and every spare is in the ring
        // (the 128 the kernel took come back through give_back).
        r.exhausted();
        r.exhausted();
        assert_eq!((r.hot_set(), r.in_ring, r.spare.len()), (256, 64, 0));
        r.publish();
        unregister(&uring, &r);
    }

    fn last_pushed(r: &BufRing) -> u16 {
        let slot = (r.tail.wrapping_sub(1) & r.mask) as usize;
        // SAFETY: slot < entries, inside the ring mapping; bytes 12..14 are the entry's bid.
        unsafe { std::ptr::read_unaligned(r.ring.addr().add(slot * 16 + 12).cast::<u16>()) }
    }

    fn unregister(uring: &IoUring, r: &BufRing) {
        uring
            .submitter()
            .unregister_buf_ring(r.bgid)
            .expect("unregister");
    }
}
