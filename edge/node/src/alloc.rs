//! Memory back to the OS after a load. mimalloc (the binary's global allocator) gives a
//! thread's freed pages back only when that thread allocates again, and an idle reactor or
//! script worker does not: after a burst the process would keep its peak. Each thread calls
//! [`release_thread_memory`] once it has gone idle (a reactor when its proxy has no
//! transaction or context left, a script worker after a second without events).

// The allocator itself: linked through the `mimalloc` crate (its static library).
use mimalloc as _;

unsafe extern "C" {
    /// mimalloc: collect the calling thread's heap; `force` also returns the freed pages
    /// (and the abandoned ones it can take) to the OS now instead of after the purge delay.
    fn mi_collect(force: bool);
    /// glibc: give the free pages of every malloc arena back to the OS.
    fn malloc_trim(pad: usize) -> i32;
}

/// Give the calling thread's free allocator pages back to the OS (mimalloc's `mi_collect`),
/// then glibc's free heap pages (libpython allocates through malloc). Costs a walk over the
/// thread's heap: call it when the thread goes idle, not per message.
pub fn release_thread_memory() {
    // SAFETY: `mi_collect` takes no pointer and only touches the calling thread's heap (and
    // the arenas, under their own locks); any thread may call it at any time.
    unsafe { mi_collect(true) };
    // SAFETY: `malloc_trim` takes no pointer; glibc locks each arena while trimming it.
    unsafe { malloc_trim(0) };
}
