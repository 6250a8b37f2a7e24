//! Script fault watchdog: notices a script worker stuck in one turn and acts on it
//! (reliability-findings.md §3, issue 17).
//!
//! Owns: the per-worker busy marks ([`WorkerWatch`], written by the worker around each turn),
//! the node-wide watchdog thread that reads them, and the per-interpreter *interrupter* thread
//! that raises `siphon.HandlerStalled` in a handler that runs Python bytecode for longer than
//! `script.handler_stall_abort_secs`. Does not own what the reactor does about a stuck core
//! (answer 503 with Retry-After, `/health`): the node reads [`crate::HostHandle::stalled`].
//!
//! Two thresholds:
//! - **shed** (`script.handler_stall_shed_ms`): a worker that has been in one handler this long
//!   marks its core stalled; the reactor (thread placement) stops queueing work for it and
//!   answers new requests itself, and `/health` names the core. Cleared when the turn ends.
//! - **abort** (`script.handler_stall_abort_secs`): the interrupter thread takes the
//!   interpreter's GIL (the eval loop hands it over within the switch interval while bytecode
//!   runs) and calls `PyThreadState_SetAsyncExc` on the worker's thread. The handler raises,
//!   `_engine` turns it into 500 Script Error, and the traceback in the log names the handler
//!   and line. A handler blocked in C (`time.sleep`, a blocking socket) holds no GIL, so the
//!   exception waits until the call returns; the core stays marked stalled meanwhile.
//!
//! The interrupter is one OS thread per interpreter with its own thread state in that
//! interpreter (`PyThreadState_New`), parked on a channel; it touches Python only while it
//! holds that interpreter's GIL, and deletes its thread state before the interpreter ends
//! (`Py_EndInterpreter` requires being the last thread).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use pyo3_ffi as ffi;

use crate::host::Shared;
use crate::shared::lock;
use crate::worker::LogLevel;

/// How often the watchdog thread looks at the workers.
const TICK: Duration = Duration::from_millis(25);

/// What a worker publishes about its current turn (read by the watchdog and the reactors).
#[derive(Debug, Default)]
pub(crate) struct WorkerWatch {
    /// Nanoseconds since the host's epoch when the current turn began, plus one; 0 when the
    /// worker is not in a turn.
    busy_since: AtomicU64,
    /// Turns begun (identifies the turn an interrupt is meant for).
    turn_seq: AtomicU64,
    /// Id of the event the worker dispatched last (the one a stuck synchronous handler runs).
    pub(crate) current_event: AtomicU64,
    /// Set by the watchdog when the turn ran past the shed threshold; cleared at turn end.
    stalled: AtomicBool,
    /// An async exception was set on the worker's thread in this turn (cleared at turn end
    /// if it was not delivered).
    interrupted: AtomicBool,
    /// The worker's OS thread id as CPython knows it (`PyThread_get_thread_ident`).
    tid: AtomicU64,
    /// The interrupter of this worker's interpreter.
    interrupter: std::sync::Mutex<Option<Sender<Cmd>>>,
}

impl WorkerWatch {
    /// Whether the worker is stuck in one turn (past the shed threshold) right now.
    pub(crate) fn is_stalled(&self) -> bool {
        self.stalled.load(Ordering::SeqCst)
    }
}

/// Watchdog settings (from `script.*`).
#[derive(Debug, Clone, Copy)]
pub struct StallConfig {
    /// A turn this long marks the core stalled (`script.handler_stall_shed_ms`).
    pub shed_after: Duration,
    /// A turn this long is interrupted (`script.handler_stall_abort_secs`; `None` = never).
    pub abort_after: Option<Duration>,
}

impl Default for StallConfig {
    fn default() -> Self {
        Self {
            shed_after: Duration::from_millis(200),
            abort_after: Some(Duration::from_secs(2)),
        }
    }
}

/// Nanoseconds since `epoch`, never 0 (0 means "idle" in [`WorkerWatch::busy_since`]).
fn stamp(epoch: Instant) -> u64 {
    u64::try_from(epoch.elapsed().as_nanos())
        .unwrap_or(u64::MAX - 1)
        .saturating_add(1)
}

/// A turn of worker `worker` begins (after any reload: loading a script is not a handler).
/// Returns the turn's start (for [`busy_since_start`]).
pub(crate) fn enter(shared: &Shared, worker: usize) -> u64 {
    let w = &shared.workers[worker].watch;
    w.turn_seq.fetch_add(1, Ordering::SeqCst);
    let now = stamp(shared.epoch);
    w.busy_since.store(now, Ordering::SeqCst);
    now
}

/// Wall-clock nanoseconds since a turn began at `start` (from [`enter`]).
pub(crate) fn busy_since_start(shared: &Shared, start: u64) -> u64 {
    stamp(shared.epoch).saturating_sub(start)
}

/// A handler (event, callback, asyncio turn) begins inside a turn: the stall clock measures
/// one handler, not a whole batch of quick ones.
pub(crate) fn touch(shared: &Shared, worker: usize) {
    let w = &shared.workers[worker].watch;
    w.busy_since.store(stamp(shared.epoch), Ordering::SeqCst);
    if w.stalled.load(Ordering::Relaxed) {
        leave_stall(shared, worker, w);
    }
}

fn leave_stall(shared: &Shared, worker: usize, w: &WorkerWatch) {
    if w.stalled.swap(false, Ordering::SeqCst) {
        (shared.log)(
            LogLevel::Warn,
            worker,
            "script worker is back: its core takes new requests again",
        );
    }
}

/// The turn ends: clear the marks; take back an interrupt that was not delivered (GIL held).
pub(crate) fn leave(shared: &Shared, worker: usize) {
    let w = &shared.workers[worker].watch;
    w.busy_since.store(0, Ordering::SeqCst);
    leave_stall(shared, worker, w);
    if w.interrupted.swap(false, Ordering::SeqCst) {
        // SAFETY: this worker's thread state is current and holds its GIL; a NULL exception
        // clears a pending async exception of the thread with this id in this interpreter.
        unsafe {
            ffi::PyThreadState_SetAsyncExc(w.tid.load(Ordering::SeqCst) as _, std::ptr::null_mut())
        };
    }
}

/// Body of the node-wide watchdog thread: mark stalled workers, ring their cores, ask the
/// interrupter to raise in a handler past the abort budget. Ends at host shutdown.
pub(crate) fn run(shared: &Shared) {
    let cfg = shared.cfg.stall;
    let n = shared.workers.len();
    let mut interrupted_turn = vec![0u64; n];
    let mut reported_blocked = vec![0u64; n];
    while !shared.shutdown.load(Ordering::Acquire) {
        std::thread::sleep(TICK);
        let now = stamp(shared.epoch);
        for (i, ws) in shared.workers.iter().enumerate() {
            let w = &ws.watch;
            let since = w.busy_since.load(Ordering::SeqCst);
            if since == 0 {
                continue;
            }
            let seq = w.turn_seq.load(Ordering::SeqCst);
            let busy = Duration::from_nanos(now.saturating_sub(since));
            if busy >= cfg.shed_after && !w.stalled.swap(true, Ordering::SeqCst) {
                if w.busy_since.load(Ordering::SeqCst) != since {
                    // The turn ended between the two reads: not stalled after all.
                    w.stalled.store(false, Ordering::SeqCst);
                    continue;
                }
                (shared.log)(
                    LogLevel::Warn,
                    i,
                    &format!(
                        "script worker stuck in one turn for {} ms (script.handler_stall_shed_ms): \
                         its core answers new requests 503 with Retry-After until it is back",
                        busy.as_millis()
                    ),
                );
                for (core, lw) in shared.lane_worker.iter().enumerate() {
                    if *lw == i {
                        shared.ring(core);
                        if let Some(hook) = &shared.cfg.on_stall {
                            hook(core);
                        }
                    }
                }
            }
            let Some(abort) = cfg.abort_after else {
                continue;
            };
            if busy >= abort && interrupted_turn[i] != seq {
                interrupted_turn[i] = seq;
                (shared.log)(
                    LogLevel::Error,
                    i,
                    &format!(
                        "script handler ran {:.1} s without yielding (script.handler_stall_abort_secs): \
                         raising siphon.HandlerStalled in it; its traceback follows as a script error",
                        busy.as_secs_f64()
                    ),
                );
                if let Some(tx) = lock(&w.interrupter).as_ref() {
                    let _ = tx.send(Cmd::Interrupt(seq));
                }
            }
            if busy >= abort + Duration::from_secs(2) && reported_blocked[i] != seq {
                reported_blocked[i] = seq;
                (shared.log)(
                    LogLevel::Error,
                    i,
                    "script handler is blocked outside Python (a C call such as time.sleep or a \
                     blocking socket) and cannot be interrupted; the exception is raised when the \
                     call returns",
                );
            }
        }
    }
}

/// Requests to an interrupter thread.
#[derive(Debug)]
pub(crate) enum Cmd {
    /// Raise in the worker if it is still in turn `seq`.
    Interrupt(u64),
    /// Delete the thread state and exit.
    Stop,
}

/// The interpreter an interrupter attaches to.
struct InterpPtr(*mut ffi::PyInterpreterState);

// SAFETY: the pointer is only used to create a thread state (PyThreadState_New, which needs no
// GIL) on the interrupter thread; the interpreter outlives that thread because the worker joins
// it before ending the interpreter (Interrupter::stop).
unsafe impl Send for InterpPtr {}

/// The interrupter of one interpreter; [`Interrupter::stop`] it before the interpreter ends.
pub(crate) struct Interrupter {
    tx: Sender<Cmd>,
    thread: Option<JoinHandle<()>>,
}

impl Interrupter {
    /// Start the interrupter for the calling worker's interpreter. Call on the worker thread
    /// with its thread state current (GIL held).
    pub(crate) fn start(shared: &std::sync::Arc<Shared>, worker: usize) -> Option<Self> {
        // SAFETY: GIL held by the calling thread (contract above), so a thread state is current.
        let interp = unsafe { ffi::PyThreadState_GetInterpreter(ffi::PyThreadState_Get()) };
        // SAFETY: pthread_self has no preconditions; CPython's thread ident is this value.
        let tid = unsafe { libc::pthread_self() } as u64;
        let watch = &shared.workers[worker].watch;
        watch.tid.store(tid, Ordering::SeqCst);
        let (tx, rx) = channel();
        let s = std::sync::Arc::clone(shared);
        let ptr = InterpPtr(interp);
        let thread = std::thread::Builder::new()
            .name(format!("siphon-intr-{worker}"))
            .spawn(move || interrupter(&s, worker, ptr, &rx))
            .ok()?;
        *lock(&watch.interrupter) = Some(tx.clone());
        Some(Self {
            tx,
            thread: Some(thread),
        })
    }

    /// Stop and join the interrupter. Call on the worker thread with its GIL held: the GIL is
    /// released while waiting, so the interrupter can take it to delete its thread state.
    pub(crate) fn stop(mut self, shared: &Shared, worker: usize) {
        *lock(&shared.workers[worker].watch.interrupter) = None;
        let _ = self.tx.send(Cmd::Stop);
        if let Some(t) = self.thread.take() {
            // SAFETY: this thread's state is current; restored right after the join, before
            // any other Python use.
            let ts = unsafe { ffi::PyEval_SaveThread() };
            let _ = t.join();
            // SAFETY: restores the state saved above on the same thread.
            unsafe { ffi::PyEval_RestoreThread(ts) };
        }
    }
}

fn interrupter(shared: &Shared, worker: usize, interp: InterpPtr, rx: &Receiver<Cmd>) {
    // SAFETY: `interp` is alive (see InterpPtr); PyThreadState_New needs no GIL and binds the
    // new state to this OS thread. It is never current until PyEval_RestoreThread below.
    let ts = unsafe { ffi::PyThreadState_New(interp.0) };
    if ts.is_null() {
        return;
    }
    let watch = &shared.workers[worker].watch;
    let mut exc: *mut ffi::PyObject = std::ptr::null_mut();
    // Until Cmd::Stop, or the worker dropped its sender.
    while let Ok(Cmd::Interrupt(seq)) = rx.recv() {
        // SAFETY: `ts` belongs to this thread and is not current; this blocks until the
        // interpreter's GIL is free (a running eval loop drops it on request).
        unsafe { ffi::PyEval_RestoreThread(ts) };
        let still = watch.turn_seq.load(Ordering::SeqCst) == seq
            && watch.busy_since.load(Ordering::SeqCst) != 0;
        if still {
            if exc.is_null() {
                // SAFETY: GIL held; creates a new class (new reference) or NULL.
                exc = unsafe {
                    ffi::PyErr_NewException(
                        c"siphon.HandlerStalled".as_ptr(),
                        ffi::PyExc_BaseException,
                        std::ptr::null_mut(),
                    )
                };
                if exc.is_null() {
                    // SAFETY: GIL held; drop the error of the failed creation.
                    unsafe { ffi::PyErr_Clear() };
                }
            }
            if !exc.is_null() {
                watch.interrupted.store(true, Ordering::SeqCst);
                // SAFETY: GIL of the worker's interpreter held; `exc` is a live class of
                // this interpreter; the id names the worker's thread state.
                unsafe {
                    ffi::PyThreadState_SetAsyncExc(watch.tid.load(Ordering::SeqCst) as _, exc)
                };
            }
        }
        // SAFETY: releases the GIL taken above; `ts` stays owned by this thread.
        unsafe { ffi::PyEval_SaveThread() };
    }
    // SAFETY: take the GIL with our own state, drop the class, clear and delete the state
    // (PyThreadState_DeleteCurrent releases the GIL). The worker waits for this with its GIL
    // released (Interrupter::stop).
    unsafe {
        ffi::PyEval_RestoreThread(ts);
        if !exc.is_null() {
            ffi::Py_DECREF(exc);
        }
        ffi::PyThreadState_Clear(ts);
        ffi::PyThreadState_DeleteCurrent();
    }
}
