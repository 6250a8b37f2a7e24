//! A core whose thread also runs a guest (an inline script interpreter) between its loop
//! turns, with a standby thread that takes the loop over while the guest is stuck.
//!
//! Owns: the [`Guest`] contract, the per-core [`GuestSlot`] (when the current guest turn
//! began, the standby's thread), the guest loop and the standby loop. Does not own deciding
//! that a guest is stuck: whoever watches the guest (the script host's watchdog) calls
//! [`crate::RuntimeHandle::rescue`].
//!
//! Why: running the interpreter on the reactor's own thread saves two cross-thread wake-ups per
//! script event (measured 15–25 % of the process at 400 SIP calls/s, issue 16), but a handler
//! blocked in C (`time.sleep`, a blocking socket) would then stop the core's sockets, timers
//! and retransmissions. Here the core's state ([`Core`]: backend, runtime state, handler) sits
//! in a mutex that the core's thread releases for each guest turn, so nothing of the reactor is
//! borrowed while the guest runs. The standby (pinned to the same CPU, parked, costing nothing
//! while unused) is unparked by `rescue`, takes the mutex and runs whole loop turns until the
//! guest's turn ends; the core's thread then rings the doorbell (waking the standby out of its
//! wait), takes the mutex back and carries on. The guest never moves: it stays on the thread
//! that created it (a Python interpreter is bound to its thread).
//!
//! The ring the two threads share is created without `SINGLE_ISSUER`/`DEFER_TASKRUN` (either
//! thread may submit and reap); measured at 400 calls/s that costs nothing visible (0.215 /
//! 0.240 / 0.205 against 0.2225 / 0.255 / 0.1725 ms CPU per call with the flags, same rounds).
//! An operation the standby submitted completes through the standby's task (the kernel kicks
//! it to run the completion), so a multishot receive it had to re-arm costs an extra wake-up
//! per completion batch until that receive ends; the standby only submits while it drives.

use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, TryLockError};
use std::thread::Thread;
use std::time::{Duration, Instant};

use crate::Handler;
use crate::runtime::{Backend, Core, Placed};

/// Work a core's thread runs between loop turns without the reactor's state: an inline script
/// interpreter. It may block; see [`crate::Runtime::start_with_guests`].
pub trait Guest {
    /// One bounded batch of work. Returns when the guest needs its next turn with no new event
    /// (`Some(ZERO)`: at once); the reactor's wait ends then at the latest.
    fn turn(&mut self) -> Option<Duration>;

    /// Whether work waits for the guest now (asked after the handler's `on_turn_end`, which
    /// may have queued some): the reactor then takes another turn instead of sleeping.
    fn pending(&self) -> bool;
}

/// One core's guest bookkeeping, shared with [`crate::RuntimeHandle::rescue`].
#[derive(Debug, Default)]
pub(crate) struct GuestSlot {
    /// Nanoseconds since the core's start when the current guest turn began, plus one; 0
    /// outside guest turns.
    since: AtomicU64,
    /// The standby thread, once it runs.
    standby: OnceLock<Thread>,
    /// The core's loop ended: the standby exits.
    done: AtomicBool,
}

impl GuestSlot {
    /// Wake the standby if the guest is in a turn (it checks how long for itself).
    pub(crate) fn rescue(&self) {
        if self.since.load(Ordering::SeqCst) != 0
            && let Some(t) = self.standby.get()
        {
            t.unpark();
        }
    }
}

/// Nanoseconds from `epoch` to `at`, plus one (never 0).
fn stamp(epoch: Instant, at: Instant) -> u64 {
    u64::try_from(at.saturating_duration_since(epoch).as_nanos())
        .unwrap_or(u64::MAX - 1)
        .saturating_add(1)
}

/// The core's state, whoever held it last (a panic on the other thread does not make it
/// unusable: every turn leaves it consistent between callbacks).
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The core's loop with a guest turn between the two halves of each turn, and its standby.
pub(crate) fn run<B, H>(
    core: Core<B, H>,
    mut guest: Box<dyn Guest>,
    placed: Placed,
    after: Duration,
) -> io::Result<()>
where
    B: Backend + Send + 'static,
    H: Handler + Send,
{
    let shared = Arc::clone(&core.st.shared);
    let id = core.st.core;
    let epoch = core.st.start;
    let cell = Arc::new(Mutex::new(core));
    let standby = {
        let cell = Arc::clone(&cell);
        let shared = Arc::clone(&shared);
        std::thread::Builder::new()
            // Short enough for the kernel's 15-byte thread name (`ps -L` shows it whole).
            .name(format!("siphon-sb-{id}"))
            .spawn(move || {
                if let Some(cpu) = placed.cpu {
                    core_affinity::set_for_current(core_affinity::CoreId { id: cpu });
                }
                let slot = &shared.guests[id];
                let _ = slot.standby.set(std::thread::current());
                stand_by(&cell, slot, id, epoch, after);
            })
            .map_err(|e| {
                tracing::error!(core = id, error = %e, "no standby thread: a stuck guest stops this core");
            })
            .ok()
    };
    let slot = &shared.guests[id];
    let bell = &shared.bells[id];
    let mut c = lock(&cell);
    let result = loop {
        let now = c.turn_start();
        drop(c);
        slot.since.store(stamp(epoch, now), Ordering::SeqCst);
        let next = guest.turn();
        slot.since.store(0, Ordering::SeqCst);
        c = match cell.try_lock() {
            Ok(c) => c,
            Err(TryLockError::WouldBlock) => {
                // The standby drives: wake it out of its wait; it hands back after that turn.
                bell.ring();
                lock(&cell)
            }
            Err(TryLockError::Poisoned(p)) => p.into_inner(),
        };
        if let Some(r) = c.turn_finish(Some((&*guest, next)), &|| false) {
            break r;
        }
    };
    c.shutdown();
    drop(c);
    slot.done.store(true, Ordering::SeqCst);
    if let Some(t) = standby {
        t.thread().unpark();
        let _ = t.join();
    }
    result
}

/// The standby: parked until rescued, then whole loop turns while the guest's turn lasts.
/// Exits when the core's loop ends or the runtime stops (the core's own thread shuts the
/// backend down when its guest returns).
fn stand_by<B, H>(
    cell: &Mutex<Core<B, H>>,
    slot: &GuestSlot,
    id: usize,
    epoch: Instant,
    after: Duration,
) where
    B: Backend,
    H: Handler,
{
    let after = u64::try_from(after.as_nanos()).unwrap_or(u64::MAX);
    loop {
        std::thread::park();
        if slot.done.load(Ordering::SeqCst) {
            return;
        }
        let since = slot.since.load(Ordering::SeqCst);
        if since == 0 || stamp(epoch, Instant::now()).saturating_sub(since) < after {
            continue;
        }
        let mut c = lock(cell);
        if slot.since.load(Ordering::SeqCst) != since {
            continue;
        }
        if c.st.shared.stop.load(Ordering::SeqCst) {
            return;
        }
        crate::metrics::add(&c.st.metrics.handovers, 1);
        tracing::warn!(
            core = id,
            "the core's guest is stuck in one turn: its standby thread runs the core's loop until it returns"
        );
        let back = || slot.since.load(Ordering::SeqCst) != since;
        loop {
            c.turn_start();
            match c.turn_finish(None, &back) {
                None => {}
                Some(Ok(())) => return,
                Some(Err(e)) => {
                    tracing::error!(core = id, error = %e, "the standby's loop turn failed");
                    return;
                }
            }
            if back() {
                break;
            }
        }
        tracing::info!(
            core = id,
            "the core's guest is back: its own thread runs the loop again"
        );
    }
}
