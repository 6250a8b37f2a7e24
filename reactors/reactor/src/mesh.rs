//! Bounded lock-free queues and the wake-up protocol between reactors and their consumers.
//!
//! Owns: [`Bell`] (a consumer's doorbell: an eventfd kept armed in a reactor's ring, or a parked
//! thread for a script worker), and [`Queue`] (a bounded `crossbeam` `ArrayQueue` tied to the
//! consumer's bell). The runtime builds one queue per ordered pair of reactors plus one external
//! queue per reactor (script worker → reactor); a node builds reactor → worker queues with
//! [`Queue::new`] and a [`Bell::parker`].
//!
//! Wake-up protocol (feasibility-uring.md §4): a consumer about to sleep sets `sleeping`, issues a
//! SeqCst fence and re-checks its queues; a producer pushes, fences, and writes the eventfd (or
//! unparks) only if it swaps `sleeping` from true to false. Under load the consumer never sleeps,
//! so the hot path makes no syscall. Consumers spin briefly before sleeping, because a wake-up in
//! the VM costs ~100 µs.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering, fence};
use std::thread::Thread;
use std::time::{Duration, Instant};

use crossbeam_queue::ArrayQueue;

use crate::sys;

#[derive(Debug)]
enum BellKind {
    /// A reactor: the eventfd is armed in its ring / epoll set.
    EventFd(OwnedFd),
    /// A plain thread (script worker): parked with `std::thread::park`.
    Park(OnceLock<Thread>),
}

/// The doorbell of one consumer.
#[derive(Debug)]
pub struct Bell {
    sleeping: AtomicBool,
    kind: BellKind,
    rings: AtomicU64,
}

impl Bell {
    /// A doorbell backed by a non-blocking eventfd (used by reactors).
    pub fn eventfd() -> io::Result<Self> {
        Ok(Self {
            sleeping: AtomicBool::new(false),
            kind: BellKind::EventFd(sys::eventfd()?),
            rings: AtomicU64::new(0),
        })
    }

    /// A doorbell for a plain thread; the thread is recorded the first time it calls
    /// [`Bell::wait`], so the bell can be created before the thread.
    pub fn parker() -> Self {
        Self {
            sleeping: AtomicBool::new(false),
            kind: BellKind::Park(OnceLock::new()),
            rings: AtomicU64::new(0),
        }
    }

    /// The eventfd, if this is a reactor bell.
    pub fn fd(&self) -> Option<RawFd> {
        match &self.kind {
            BellKind::EventFd(fd) => Some(fd.as_raw_fd()),
            BellKind::Park(_) => None,
        }
    }

    /// How many times a producer actually woke the consumer (syscall or unpark).
    pub fn rings(&self) -> u64 {
        self.rings.load(Ordering::Relaxed)
    }

    /// Producer side: wake the consumer if, and only if, it said it sleeps.
    #[inline]
    pub fn ring(&self) {
        fence(Ordering::SeqCst);
        if self.sleeping.load(Ordering::Relaxed) && self.sleeping.swap(false, Ordering::SeqCst) {
            self.rings.fetch_add(1, Ordering::Relaxed);
            match &self.kind {
                BellKind::EventFd(fd) => sys::eventfd_write(fd.as_raw_fd()),
                BellKind::Park(t) => {
                    if let Some(t) = t.get() {
                        t.unpark();
                    }
                }
            }
        }
    }

    /// Consumer side: announce sleep. The caller must re-check its queues after this and call
    /// [`Bell::awake`] if it finds work instead of sleeping.
    #[inline]
    pub fn prepare_sleep(&self) {
        self.sleeping.store(true, Ordering::SeqCst);
        fence(Ordering::SeqCst);
    }

    /// Consumer side: it is running again (producers need not ring).
    #[inline]
    pub fn awake(&self) {
        self.sleeping.store(false, Ordering::Relaxed);
    }

    /// Consumer side for a parker bell: spin up to `spin` waiting for `ready()`, then sleep
    /// until rung or `timeout` passes. Returns whether `ready()` held when it returned.
    pub fn wait(
        &self,
        spin: Duration,
        timeout: Option<Duration>,
        ready: impl Fn() -> bool,
    ) -> bool {
        if ready() {
            return true;
        }
        let start = Instant::now();
        while start.elapsed() < spin {
            if ready() {
                return true;
            }
            std::hint::spin_loop();
        }
        if let BellKind::Park(t) = &self.kind {
            let _ = t.get_or_init(std::thread::current);
        }
        self.prepare_sleep();
        if ready() {
            self.awake();
            return true;
        }
        match &self.kind {
            BellKind::Park(_) => match timeout {
                Some(d) => std::thread::park_timeout(d),
                None => std::thread::park(),
            },
            BellKind::EventFd(fd) => sys::eventfd_wait(fd.as_raw_fd(), timeout),
        }
        self.awake();
        ready()
    }

    /// Clear a pending eventfd signal (epoll backend, after the fd became readable).
    pub(crate) fn drain_eventfd(&self) {
        if let BellKind::EventFd(fd) = &self.kind {
            sys::eventfd_read(fd.as_raw_fd());
        }
    }
}

/// A bounded lock-free queue whose consumer is woken through its [`Bell`].
#[derive(Debug)]
pub struct Queue<T> {
    inner: ArrayQueue<T>,
    bell: std::sync::Arc<Bell>,
}

impl<T> Queue<T> {
    /// A queue of `capacity` items consumed by the owner of `bell`.
    pub fn new(capacity: usize, bell: std::sync::Arc<Bell>) -> Self {
        Self {
            inner: ArrayQueue::new(capacity.max(1)),
            bell,
        }
    }

    /// Push and ring the consumer's bell if it sleeps. A full queue returns the item
    /// (back-pressure: the caller drops, answers 503, or stops reading).
    #[inline]
    pub fn push(&self, item: T) -> Result<(), T> {
        self.inner.push(item)?;
        self.bell.ring();
        Ok(())
    }

    /// Push without ringing; the producer rings once after a batch with [`Queue::bell`].
    #[inline]
    pub fn push_quiet(&self, item: T) -> Result<(), T> {
        self.inner.push(item)
    }

    /// Pop one item.
    #[inline]
    pub fn pop(&self) -> Option<T> {
        self.inner.pop()
    }

    /// Move up to `max` items into `out`; returns how many were moved.
    pub fn drain_into(&self, out: &mut Vec<T>, max: usize) -> usize {
        let mut n = 0;
        while n < max {
            match self.inner.pop() {
                Some(v) => {
                    out.push(v);
                    n += 1;
                }
                None => break,
            }
        }
        n
    }

    /// True when no item is queued.
    pub fn is_empty(&self) -> bool {
        self.inner.is_empty()
    }

    /// Items queued now.
    pub fn len(&self) -> usize {
        self.inner.len()
    }

    /// The consumer's bell.
    pub fn bell(&self) -> &Bell {
        &self.bell
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn parked_consumer_is_woken_only_when_sleeping() {
        let bell = Arc::new(Bell::parker());
        let q = Arc::new(Queue::new(1024, bell.clone()));
        // Consumer awake: pushes do not ring.
        for i in 0..10u32 {
            q.push(i).expect("room");
        }
        assert_eq!(bell.rings(), 0);
        let mut got = Vec::new();
        assert_eq!(q.drain_into(&mut got, 100), 10);
        let q2 = q.clone();
        let consumer = std::thread::spawn(move || {
            let mut seen = 0u32;
            while seen < 1000 {
                q2.bell().wait(
                    Duration::from_micros(20),
                    Some(Duration::from_secs(5)),
                    || !q2.is_empty(),
                );
                while q2.pop().is_some() {
                    seen += 1;
                }
            }
            seen
        });
        for i in 0..1000u32 {
            let mut v = i;
            while let Err(back) = q.push(v) {
                v = back;
                std::thread::yield_now();
            }
        }
        assert_eq!(consumer.join().expect("consumer"), 1000);
    }

    #[test]
    fn eventfd_bell_wakes_waiter() {
        let bell = Arc::new(Bell::eventfd().expect("eventfd"));
        let q = Arc::new(Queue::new(8, bell.clone()));
        let q2 = q.clone();
        let t = std::thread::spawn(move || {
            q2.bell()
                .wait(Duration::ZERO, Some(Duration::from_secs(10)), || {
                    !q2.is_empty()
                })
        });
        // Wait until the consumer announced sleep, then push: exactly one ring.
        while !bell.sleeping.load(Ordering::SeqCst) {
            std::thread::yield_now();
        }
        q.push(7u8).expect("room");
        assert!(t.join().expect("waiter"));
        assert_eq!(bell.rings(), 1);
        assert_eq!(q.push_quiet(1).map_err(|_| ()), Ok(()));
        assert_eq!(q.len(), 2);
    }
}
