//! One script worker: a thread owning one interpreter (an own-GIL subinterpreter on 3.12+, the
//! main interpreter in degraded 3.11 mode), draining its lanes' event rings in batches, calling
//! `siphon._engine.dispatch`, stepping coroutines with `PyIter_Send`, handing only suspended
//! ones to the interpreter's asyncio loop, and pushing [`Actions`] back.
//!
//! Invariant relied on by every SAFETY comment here and in `native.rs`/`py.rs`: Python objects
//! are touched only on this thread while its thread state is current (GIL held). The GIL is
//! released (`PyEval_SaveThread`) only around parking, where no Python object is used.

use std::cell::RefCell;
use std::ffi::CString;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use pyo3_ffi as ffi;

use crate::event::{Actions, Control, Disposition, Event, EventKind};
use crate::host::Shared;
use crate::message::SipMessage;
use crate::py::{Owned, PyErrSpec, PyResult, Ret, new_str, take_error_text};

/// Severity of a script or engine log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum LogLevel {
    /// `log.debug`.
    Debug,
    /// `log.info`.
    Info,
    /// `log.warn` / `log.warning`.
    Warn,
    /// `log.error`, script tracebacks.
    Error,
}

impl LogLevel {
    pub(crate) fn from_int(v: i64) -> Self {
        match v {
            i64::MIN..=10 => Self::Debug,
            11..=20 => Self::Info,
            21..=30 => Self::Warn,
            _ => Self::Error,
        }
    }

    /// Lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Debug => "debug",
            Self::Info => "info",
            Self::Warn => "warn",
            Self::Error => "error",
        }
    }
}

/// One in-flight event: the event, the actions being recorded, edit state.
pub(crate) struct Slot {
    pub(crate) ev: Event,
    pub(crate) act: Actions,
    generation_no: u32,
    req_dirty: bool,
    reply_dirty: bool,
    pub(crate) pending_reply_headers: Vec<(String, String)>,
    pub(crate) pending_reply_body: Option<(String, Vec<u8>)>,
    /// `set_reply_to_tag` before `reply()`.
    pub(crate) pending_to_tag: Option<String>,
    /// The presence compositor/notifier answered this request; a later `reply()` keeps it.
    pub(crate) presence_verdict: bool,
    /// `registrar.save` changed bindings on a durable or shared backend: the actions (its
    /// 200 OK) wait until the registrar's commit log reaches this ticket.
    pub(crate) durable: Option<u64>,
}

impl Slot {
    pub(crate) fn msg(&self, reply: bool) -> PyResult<&SipMessage> {
        if reply {
            self.ev
                .reply
                .as_deref()
                .ok_or_else(|| PyErrSpec::Runtime("event has no reply".into()))
        } else {
            Ok(&self.ev.request)
        }
    }

    pub(crate) fn msg_mut(&mut self, reply: bool) -> PyResult<&mut SipMessage> {
        if reply {
            self.reply_dirty = true;
            let r = self
                .ev
                .reply
                .as_mut()
                .ok_or_else(|| PyErrSpec::Runtime("event has no reply".into()))?;
            Ok(Arc::make_mut(r))
        } else {
            self.req_dirty = true;
            Ok(Arc::make_mut(&mut self.ev.request))
        }
    }
}

/// Per-worker-thread state reached by `_siphon` functions.
pub(crate) struct WorkerCtx {
    pub(crate) shared: Arc<Shared>,
    pub(crate) worker: usize,
    slots: Vec<Option<Slot>>,
    free: Vec<u32>,
    next_gen: u32,
    pub(crate) async_inflight: usize,
    /// SIP events whose handler is suspended on an await: event id → handle (what
    /// [`Control::Cancel`] looks up). At most `limits.max_suspended_handlers` (with SMPP's in
    /// `async_inflight`).
    suspended: std::collections::HashMap<u64, u64>,
    /// Handlers cancelled in this turn (logged once per turn).
    cancelled: u64,
    /// Cores with results pushed since the last doorbell round (rung once per batch).
    bells: Vec<bool>,
    /// Inbound HTTP requests being handled here, by id.
    pub(crate) http_responders: std::collections::HashMap<u64, crate::http::Responder>,
    /// Finished events whose replies wait for their registrar write: (ticket, held since,
    /// actions), in ticket order (and so in time order).
    held: std::collections::VecDeque<(u64, Instant, Actions)>,
    /// Replies answered 503 at the commit timeout and not logged yet, and when it was last
    /// logged (at most once a second).
    held_timeouts: (u64, Option<Instant>),
}

thread_local! {
    static CTX: RefCell<Option<WorkerCtx>> = const { RefCell::new(None) };
}

/// Run `f` on this thread's worker context (a RuntimeError outside a worker).
pub(crate) fn with_ctx<R>(f: impl FnOnce(&mut WorkerCtx) -> PyResult<R>) -> PyResult<R> {
    CTX.with(|c| match c.try_borrow_mut() {
        Ok(mut g) => match g.as_mut() {
            Some(ctx) => f(ctx),
            None => Err(PyErrSpec::Runtime(
                "_siphon used outside a script worker".into(),
            )),
        },
        Err(_) => Err(PyErrSpec::Runtime("_siphon re-entered".into())),
    })
}

impl WorkerCtx {
    pub(crate) fn log(&self, level: LogLevel, msg: &str) {
        (self.shared.log)(level, self.worker, msg);
    }

    fn insert(&mut self, ev: Event) -> u64 {
        self.next_gen = self.next_gen.wrapping_add(1);
        let generation_no = self.next_gen;
        let mut act = Actions::new(ev.id, ev.core);
        act.auth_user = self.shared.take_preset_auth(ev.id);
        let slot = Slot {
            ev,
            act,
            generation_no,
            req_dirty: false,
            reply_dirty: false,
            pending_reply_headers: Vec::new(),
            pending_reply_body: None,
            pending_to_tag: None,
            presence_verdict: false,
            durable: None,
        };
        let idx = match self.free.pop() {
            Some(i) => {
                self.slots[i as usize] = Some(slot);
                i
            }
            None => {
                self.slots.push(Some(slot));
                (self.slots.len() - 1) as u32
            }
        };
        (u64::from(generation_no) << 32) | u64::from(idx)
    }

    pub(crate) fn slot(&mut self, h: u64) -> PyResult<&mut Slot> {
        let (generation_no, idx) = ((h >> 32) as u32, (h & 0xffff_ffff) as usize);
        match self.slots.get_mut(idx) {
            Some(Some(s)) if s.generation_no == generation_no => Ok(s),
            _ => Err(PyErrSpec::Runtime(
                "stale message handle (the event already completed)".into(),
            )),
        }
    }

    /// Push an SMPP answer or send and note the core's doorbell.
    pub(crate) fn push_smpp(&mut self, out: crate::smpp::SmppOut) {
        let core = self.shared.push_smpp(out);
        if let Some(b) = self.bells.get_mut(core) {
            *b = true;
        }
    }

    /// Record a script exception on an event: log the traceback, answer 500 for requests.
    pub(crate) fn script_error(&mut self, h: u64, traceback: &str) -> PyResult<()> {
        self.shared.stats.errors.fetch_add(1, Ordering::Relaxed);
        self.log(LogLevel::Error, &format!("script error: {traceback}"));
        if crate::smpp::is_smpp_handle(h) {
            // SMPP events answer through `_siphon.smpp_answer`; nothing is held here.
            return Ok(());
        }
        let s = self.slot(h)?;
        s.act.script_error = true;
        s.act.disposition = match s.ev.kind {
            EventKind::Request => Actions::reply(500, "Script Error"),
            EventKind::Cancel => Disposition::Drop,
            _ => Disposition::ForwardReply,
        };
        Ok(())
    }

    /// Finish an event: release its slot and push its actions to the owning core's ring.
    pub(crate) fn complete(&mut self, h: u64) -> PyResult<()> {
        if crate::smpp::is_smpp_handle(h) {
            return Ok(());
        }
        self.slot(h)?;
        let idx = (h & 0xffff_ffff) as usize;
        let Some(slot) = self.slots[idx].take() else {
            return Ok(());
        };
        self.free.push(idx as u32);
        if !self.suspended.is_empty() {
            self.suspended.remove(&slot.ev.id);
        }
        let Slot {
            ev,
            mut act,
            req_dirty,
            reply_dirty,
            durable,
            ..
        } = slot;
        if req_dirty {
            act.request = Some(ev.request);
        }
        if reply_dirty {
            act.reply = ev.reply;
        }
        if let Some(t) = durable {
            let done = self
                .shared
                .registrar
                .commits()
                .map_or(u64::MAX, |c| c.done());
            if t > done {
                // Hold the 200 OK until the write is durable; the writer wakes this worker.
                let me = &self.shared.workers[self.worker];
                me.held_min.fetch_min(t, Ordering::AcqRel);
                self.held.push_back((t, Instant::now(), act));
                return Ok(());
            }
        }
        let core = self.shared.push_actions(act);
        if let Some(b) = self.bells.get_mut(core) {
            *b = true;
        }
        Ok(())
    }

    /// Push the held actions whose registrar writes are now durable, and answer those held
    /// past the backend's commit timeout with 503 + `Retry-After` (the binding stays in
    /// memory and is written when the store recovers; the UA retries); returns how many.
    fn release_held(&mut self) -> usize {
        if self.held.is_empty() && self.held_timeouts.0 == 0 {
            return 0;
        }
        let shared = Arc::clone(&self.shared);
        let commits = shared.registrar.commits();
        let done = commits.map_or(u64::MAX, |c| c.done());
        let limit = commits.map_or(Duration::MAX, |c| c.hold_limit());
        let now = Instant::now();
        let (mut n, mut expired) = (0, 0u64);
        // Tickets are taken in order on this worker, so the queue is sorted by ticket and by
        // time: stop at the first entry neither durable nor expired.
        while let Some((t, since, _)) = self.held.front() {
            let durable = *t <= done;
            if !durable && now.saturating_duration_since(*since) < limit {
                break;
            }
            let Some((_, _, mut act)) = self.held.pop_front() else {
                break;
            };
            if !durable {
                let mut d = Actions::reply(503, "Service Unavailable");
                if let Disposition::Reply { headers, .. } = &mut d {
                    headers.push((
                        "Retry-After".into(),
                        shared.cfg.limits.retry_after_secs.to_string(),
                    ));
                }
                act.disposition = d;
                expired += 1;
            }
            let core = shared.push_actions(act);
            if let Some(b) = self.bells.get_mut(core) {
                *b = true;
            }
            n += 1;
        }
        let next = self.held.front().map_or(u64::MAX, |(t, _, _)| *t);
        shared.workers[self.worker]
            .held_min
            .store(next, Ordering::Release);
        if expired > 0 {
            if let Some(c) = commits {
                c.count_timed_out(expired);
            }
            self.held_timeouts.0 += expired;
        }
        let (pending, last) = self.held_timeouts;
        if pending > 0 && last.is_none_or(|t| now.duration_since(t) >= Duration::from_secs(1)) {
            self.log(
                LogLevel::Error,
                &format!(
                    "registrar store: {pending} REGISTERs answered 503: their write was not \
                     durable within {} ms",
                    limit.as_millis()
                ),
            );
            self.held_timeouts = (0, Some(now));
        }
        n
    }
}

/// Cached entry points of `siphon._engine` in this interpreter.
struct Engine {
    dispatch: Owned,
    load: Owned,
    fire_timer: Owned,
    suspend: Owned,
    /// `_engine._FirstStep`, `asyncio.tasks._enter_task`/`_leave_task` and `_engine._loop`:
    /// a handler's first step runs with a fresh `_FirstStep` as the loop's current task.
    first_step: Owned,
    enter_task: Owned,
    leave_task: Owned,
    event_loop: Owned,
    run_loop_once: Owned,
    loop_ready: Owned,
    complete_request: Owned,
    registrar_event: Owned,
    smpp_complete: Owned,
    http_complete: Owned,
    http_dispatch: Owned,
    http_cancel: Owned,
    http_shutdown: Owned,
    cancel_event: Owned,
    shutdown: Owned,
    kinds: [Owned; 5],
    methods: Vec<(String, Owned)>,
    /// `siphon.smpp`'s `_dispatch`, `_finish` and `_fail`, resolved at the first SMPP event
    /// (the module exists only with the `smpp` feature).
    smpp_fns: Option<[Owned; 3]>,
    /// Interned names and commands of SMPP events.
    smpp_names: crate::smpp::NameCache,
}

fn call(f: &Owned, args: &[*mut ffi::PyObject]) -> Option<Owned> {
    // SAFETY: GIL held (module invariant); `args` are valid objects for the duration of the
    // call; PyObject_Vectorcall returns a new reference or NULL with an exception set.
    unsafe {
        Owned::from_new(ffi::PyObject_Vectorcall(
            f.as_ptr(),
            args.as_ptr(),
            args.len(),
            std::ptr::null_mut(),
        ))
    }
}

fn getattr(o: *mut ffi::PyObject, name: &str) -> Result<Owned, String> {
    let c = CString::new(name).map_err(|e| e.to_string())?;
    // SAFETY: GIL held; o valid; returns new reference or NULL.
    unsafe { Owned::from_new(ffi::PyObject_GetAttrString(o, c.as_ptr())) }
        .ok_or_else(|| format!("siphon._engine.{name}: {}", take_error_text()))
}

fn int_obj(v: i64) -> Owned {
    // SAFETY: GIL held; small allocation; NULL only on memory exhaustion.
    unsafe { Owned::from_new(ffi::PyLong_FromLongLong(v)) }.expect("allocating an int")
}

/// Embedded `siphon` package sources: (module name, file name, source, is package).
const PACKAGE: &[(&str, &str, &str, bool)] = &[
    (
        "siphon",
        "<siphon>/__init__.py",
        include_str!("../../python/siphon/__init__.py"),
        true,
    ),
    (
        "siphon._engine",
        "<siphon>/_engine.py",
        include_str!("../../python/siphon/_engine.py"),
        false,
    ),
    (
        "siphon._message",
        "<siphon>/_message.py",
        include_str!("../../python/siphon/_message.py"),
        false,
    ),
    (
        "siphon._namespaces",
        "<siphon>/_namespaces.py",
        include_str!("../../python/siphon/_namespaces.py"),
        false,
    ),
    (
        "siphon._presence",
        "<siphon>/_presence.py",
        include_str!("../../python/siphon/_presence.py"),
        false,
    ),
    #[cfg(feature = "smpp")]
    (
        "siphon._smpp_codec",
        "<siphon>/_smpp_codec.py",
        include_str!("../../python/siphon/_smpp_codec.py"),
        false,
    ),
    #[cfg(feature = "smpp")]
    (
        "siphon.smpp",
        "<siphon>/smpp.py",
        include_str!("../../python/siphon/smpp.py"),
        false,
    ),
    #[cfg(feature = "http")]
    (
        "siphon.http",
        "<siphon>/http.py",
        include_str!("../../python/siphon/http.py"),
        false,
    ),
];

const BOOT: &str = r#"
import sys, importlib.util, linecache
class _SiphonFinder:
    def __init__(self, files):
        self.files = files
    def find_spec(self, name, path=None, target=None):
        f = self.files.get(name)
        if f is None:
            return None
        return importlib.util.spec_from_loader(name, self, origin=f[0], is_package=f[2])
    def create_module(self, spec):
        return None
    def exec_module(self, module):
        fname, src, _ = self.files[module.__name__]
        linecache.cache[fname] = (len(src), None, src.splitlines(True), fname)
        exec(compile(src, fname, "exec"), module.__dict__)
sys.meta_path.insert(0, _SiphonFinder({n: (f, s, p) for n, f, s, p in _SIPHON_FILES}))
sys.dont_write_bytecode = True
del _SIPHON_FILES
"#;

fn bootstrap() -> Result<Engine, String> {
    let files = Ret::List(
        PACKAGE
            .iter()
            .map(|(n, f, s, p)| {
                Ret::Tuple(vec![
                    Ret::Str((*n).into()),
                    Ret::Str((*f).into()),
                    Ret::Str((*s).into()),
                    Ret::Bool(*p),
                ])
            })
            .collect(),
    );
    let boot = CString::new(BOOT).map_err(|e| e.to_string())?;
    // SAFETY: GIL held. __main__ exists after interpreter creation; PyImport_AddModule returns a
    // borrowed reference, PyModule_GetDict a borrowed dict. PyRun_String returns new or NULL.
    unsafe {
        let main = ffi::PyImport_AddModule(c"__main__".as_ptr());
        if main.is_null() {
            return Err(take_error_text());
        }
        let globals = ffi::PyModule_GetDict(main);
        let files = Owned::from_new(files.into_py()).ok_or_else(take_error_text)?;
        if ffi::PyDict_SetItemString(globals, c"_SIPHON_FILES".as_ptr(), files.as_ptr()) < 0 {
            return Err(take_error_text());
        }
        Owned::from_new(ffi::PyRun_String(
            boot.as_ptr(),
            ffi::Py_file_input,
            globals,
            globals,
        ))
        .ok_or_else(|| format!("bootstrap: {}", take_error_text()))?;
        let engine = Owned::from_new(ffi::PyImport_ImportModule(c"siphon._engine".as_ptr()))
            .ok_or_else(|| format!("import siphon: {}", take_error_text()))?;
        let e = engine.as_ptr();
        let kind = |s: &str| Owned::from_new(new_str(s)).ok_or_else(take_error_text);
        Ok(Engine {
            dispatch: getattr(e, "dispatch")?,
            load: getattr(e, "load")?,
            fire_timer: getattr(e, "fire_timer")?,
            suspend: getattr(e, "suspend")?,
            first_step: getattr(e, "_FirstStep")?,
            enter_task: getattr(e, "_enter_task")?,
            leave_task: getattr(e, "_leave_task")?,
            event_loop: getattr(e, "_loop")?,
            run_loop_once: getattr(e, "run_loop_once")?,
            loop_ready: getattr(e, "loop_ready")?,
            complete_request: getattr(e, "complete_request")?,
            registrar_event: getattr(e, "registrar_event")?,
            smpp_complete: getattr(e, "smpp_complete")?,
            http_complete: getattr(e, "http_complete")?,
            http_dispatch: getattr(e, "http_dispatch")?,
            http_cancel: getattr(e, "http_cancel")?,
            http_shutdown: getattr(e, "http_shutdown")?,
            cancel_event: getattr(e, "cancel_event")?,
            shutdown: getattr(e, "shutdown")?,
            kinds: [
                kind("request")?,
                kind("reply")?,
                kind("failure")?,
                kind("cancel")?,
                kind("register_reply")?,
            ],
            methods: Vec::new(),
            smpp_fns: None,
            smpp_names: crate::smpp::NameCache::new(),
        })
    }
}

impl Engine {
    fn method(&mut self, m: &str) -> *mut ffi::PyObject {
        if let Some((_, o)) = self.methods.iter().find(|(k, _)| k == m) {
            return o.as_ptr();
        }
        let c = CString::new(m).unwrap_or_default();
        // SAFETY: GIL held; interned str of this interpreter (never shared across interpreters).
        let o = unsafe { Owned::from_new(ffi::PyUnicode_InternFromString(c.as_ptr())) }
            .expect("interning a method name");
        let p = o.as_ptr();
        if self.methods.len() < 32 {
            self.methods.push((m.to_owned(), o));
            p
        } else {
            // Unusual method: keep it alive in a one-slot overflow entry.
            self.methods.pop();
            self.methods.push((m.to_owned(), o));
            p
        }
    }

    /// Load (or reload) the app script; false keeps the old handlers.
    fn load(&self, path: &str) -> Result<bool, String> {
        let p = Owned::from_new_str(path);
        let r = call(&self.load, &[p.as_ptr()]).ok_or_else(take_error_text)?;
        // SAFETY: GIL held; r valid.
        Ok(unsafe { ffi::PyObject_IsTrue(r.as_ptr()) } == 1)
    }
}

impl Owned {
    fn from_new_str(s: &str) -> Self {
        // SAFETY: GIL held; new_str returns a new reference (NULL only on memory exhaustion).
        unsafe { Self::from_new(new_str(s)) }.expect("allocating a str")
    }
}

/// What the interpreter thread is: an own-GIL subinterpreter or the (shared) main interpreter.
pub(crate) enum Interp {
    #[cfg(Py_3_12)]
    Sub(*mut ffi::PyThreadState),
    Main(ffi::PyGILState_STATE),
}

fn create_interpreter(own_gil: bool) -> Result<Interp, String> {
    #[cfg(Py_3_12)]
    if own_gil {
        let cfg = ffi::PyInterpreterConfig {
            use_main_obmalloc: 0,
            allow_fork: 0,
            allow_exec: 0,
            allow_threads: 1,
            allow_daemon_threads: 0,
            check_multi_interp_extensions: 1,
            gil: ffi::PyInterpreterConfig_OWN_GIL,
        };
        let mut ts = std::ptr::null_mut();
        // SAFETY: Python is initialised and this bare thread holds no thread state
        // (feasibility-python.md §2); on success `ts` is current with its own GIL held.
        let st = unsafe { ffi::Py_NewInterpreterFromConfig(&mut ts, &cfg) };
        // SAFETY: PyStatus_Exception only reads the status value.
        if unsafe { ffi::PyStatus_Exception(st) } != 0 || ts.is_null() {
            let msg = if st.err_msg.is_null() {
                "unknown".to_owned()
            } else {
                // SAFETY: err_msg is a static C string set by CPython.
                unsafe { std::ffi::CStr::from_ptr(st.err_msg) }
                    .to_string_lossy()
                    .into_owned()
            };
            return Err(format!("Py_NewInterpreterFromConfig failed: {msg}"));
        }
        return Ok(Interp::Sub(ts));
    }
    let _ = own_gil;
    // SAFETY: Python is initialised; this thread attaches to the main interpreter (degraded
    // mode: the only Python thread), creating its thread state.
    Ok(Interp::Main(unsafe { ffi::PyGILState_Ensure() }))
}

fn end_interpreter(i: Interp) {
    match i {
        #[cfg(Py_3_12)]
        // SAFETY: `ts` was created on this thread and is current; ends it on the same thread.
        Interp::Sub(ts) => unsafe { ffi::Py_EndInterpreter(ts) },
        // SAFETY: pairs the PyGILState_Ensure of create_interpreter on this thread.
        Interp::Main(g) => unsafe { ffi::PyGILState_Release(g) },
    }
}

fn pin(cpu: usize) {
    // SAFETY: cpu_set_t is plain data; sched_setaffinity(0, ..) affects only this thread.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &set);
    }
}

/// One interpreter and its engine, bound to the thread that created it: driven either by a
/// worker thread ([`run`]) or inline by a reactor thread ([`crate::InlineWorker`]).
pub(crate) struct WorkerCore {
    shared: Arc<Shared>,
    worker: usize,
    lanes: Vec<usize>,
    engine: Option<Engine>,
    interp: Option<Interp>,
    path: String,
    loop_busy: bool,
    next_due: f64,
    /// Raises in a handler that runs past `script.handler_stall_abort_secs`.
    interrupter: Option<crate::watchdog::Interrupter>,
}

impl WorkerCore {
    /// Create the interpreter on the calling thread, import `siphon`, load the script.
    pub(crate) fn start(
        shared: &Arc<Shared>,
        worker: usize,
        lanes: Vec<usize>,
    ) -> Result<Self, String> {
        let interp = create_interpreter(shared.own_gil)?;
        CTX.with(|c| {
            *c.borrow_mut() = Some(WorkerCtx {
                shared: Arc::clone(shared),
                worker,
                slots: Vec::new(),
                free: Vec::new(),
                next_gen: 0,
                async_inflight: 0,
                suspended: std::collections::HashMap::new(),
                cancelled: 0,
                bells: vec![false; shared.lanes.len()],
                http_responders: std::collections::HashMap::new(),
                held: std::collections::VecDeque::new(),
                held_timeouts: (0, None),
            });
        });
        let path = shared.cfg.script_path.to_string_lossy().into_owned();
        let gen0 = shared.generation.load(Ordering::Acquire);
        let mut core = Self {
            shared: Arc::clone(shared),
            worker,
            lanes,
            engine: None,
            interp: Some(interp),
            path,
            loop_busy: false,
            next_due: -1.0,
            interrupter: None,
        };
        let engine = bootstrap().and_then(|e| match e.load(&core.path)? {
            true => Ok(e),
            false => Err(format!("script {} failed to load (see log)", core.path)),
        })?;
        core.engine = Some(engine);
        if shared.cfg.stall.abort_after.is_some() {
            core.interrupter = crate::watchdog::Interrupter::start(shared, worker);
        }
        shared.workers[worker]
            .loaded_gen
            .store(gen0, Ordering::Release);
        Ok(core)
    }

    /// One batch: reload if asked, timers/responses, up to [`BATCH`] events per lane, one
    /// asyncio turn if coroutines are pending. Returns how much work was done.
    pub(crate) fn turn(&mut self) -> usize {
        let Some(engine) = self.engine.as_mut() else {
            return 0;
        };
        let shared = &*self.shared;
        let worker = self.worker;
        let me = &shared.workers[worker];
        let account = shared.cfg.account_cpu;
        let generation_no = shared.generation.load(Ordering::Acquire);
        if generation_no != me.loaded_gen.load(Ordering::Relaxed) {
            reload(shared, worker, engine, &self.path, generation_no);
        }
        let mut did = 0usize;
        let turn_start = crate::watchdog::enter(shared, worker);
        // `enter` just started the stall clock: the turn's first handler needs no `touch`
        // (one clock read and store less for the usual lone event).
        let mut fresh = true;
        let batch_start = if account { thread_cpu_ns() } else { 0 };
        did += with_ctx(|c| Ok(c.release_held())).unwrap_or(0);
        while let Some(c) = me.control.pop() {
            if !std::mem::take(&mut fresh) {
                crate::watchdog::touch(shared, worker);
            }
            let ok = match c {
                Control::Timer(token) => {
                    let t = int_obj(token as i64);
                    call(&engine.fire_timer, &[t.as_ptr()]).is_some()
                }
                Control::Response(token, reply) => {
                    let t = int_obj(token as i64);
                    let r = reply.map_or(Ret::None, |m| reply_snapshot(&m));
                    // SAFETY: GIL held; into_py returns a new reference or NULL.
                    match unsafe { Owned::from_new(r.into_py()) } {
                        Some(r) => {
                            call(&engine.complete_request, &[t.as_ptr(), r.as_ptr()]).is_some()
                        }
                        None => false,
                    }
                }
                Control::Registrar(aor, kind) => {
                    let (a, k) = (Owned::from_new_str(&aor), Owned::from_new_str(kind));
                    call(&engine.registrar_event, &[a.as_ptr(), k.as_ptr()]).is_some()
                }
                Control::Smpp(token, status, message_id) => {
                    let t = int_obj(token as i64);
                    let s = int_obj(i64::from(status));
                    let m = Owned::from_new_str(&message_id);
                    call(&engine.smpp_complete, &[t.as_ptr(), s.as_ptr(), m.as_ptr()]).is_some()
                }
                Control::Http(token, result) => {
                    let t = int_obj(token as i64);
                    let (ok_ret, err) = match result {
                        Ok(r) => (crate::http::reply_to_ret(r), Ret::None),
                        Err(e) => (Ret::None, Ret::Str(e)),
                    };
                    // SAFETY: GIL held; into_py returns new references or NULL.
                    let objs = unsafe {
                        (
                            Owned::from_new(ok_ret.into_py()),
                            Owned::from_new(err.into_py()),
                        )
                    };
                    match objs {
                        (Some(r), Some(e)) => {
                            call(&engine.http_complete, &[t.as_ptr(), r.as_ptr(), e.as_ptr()])
                                .is_some()
                        }
                        _ => false,
                    }
                }
                Control::HttpRequest(req, respond) => {
                    let id = req.id;
                    let _ = with_ctx(|c| {
                        c.http_responders.insert(id, respond.0);
                        Ok(())
                    });
                    // SAFETY: GIL held; into_py returns a new reference or NULL.
                    match unsafe { Owned::from_new(crate::http::inbound_to_ret(*req).into_py()) } {
                        Some(r) => call(&engine.http_dispatch, &[r.as_ptr()]).is_some(),
                        None => false,
                    }
                }
                Control::HttpCancel(id) => {
                    let _ = with_ctx(|c| {
                        c.http_responders.remove(&id);
                        Ok(())
                    });
                    let t = int_obj(id as i64);
                    call(&engine.http_cancel, &[t.as_ptr()]).is_some()
                }
                Control::HttpShutdown => call(&engine.http_shutdown, &[]).is_some(),
                Control::Cancel(id) => {
                    // Finished meanwhile (or never suspended): nothing to cancel.
                    match with_ctx(|c| Ok(c.suspended.get(&id).copied())) {
                        Ok(Some(h)) => {
                            let t = int_obj(h as i64);
                            let r = call(&engine.cancel_event, &[t.as_ptr()]);
                            // SAFETY: GIL held; `r` is a valid object (the bool returned).
                            if r.is_some_and(|r| unsafe { ffi::PyObject_IsTrue(r.as_ptr()) } == 1) {
                                shared.stats.cancelled.fetch_add(1, Ordering::Relaxed);
                                let _ = with_ctx(|c| {
                                    c.cancelled += 1;
                                    Ok(())
                                });
                            }
                            true
                        }
                        _ => true,
                    }
                }
            };
            if !ok {
                let text = take_error_text();
                (shared.log)(
                    LogLevel::Error,
                    worker,
                    &format!("timer/response callback: {text}"),
                );
            }
            self.loop_busy = true;
            did += 1;
        }
        let before_events = did;
        for &lane in &self.lanes {
            let ring = &shared.lanes[lane].inbound;
            for _ in 0..BATCH {
                let Some(ev) = ring.pop() else { break };
                dispatch(shared, worker, engine, ev, std::mem::take(&mut fresh));
                did += 1;
            }
            let ring = &shared.lanes[lane].smpp_in;
            for _ in 0..BATCH {
                let Some(ev) = ring.pop() else { break };
                dispatch_smpp(shared, worker, engine, ev);
                did += 1;
            }
        }
        // A handler that finished without suspending may still have scheduled work on the
        // loop (a fire-and-forget `asyncio.create_task`): it needs a turn too.
        if !self.loop_busy && did > before_events {
            self.loop_busy = match call(&engine.loop_ready, &[]) {
                // SAFETY: GIL held; `r` is a valid object (the int `loop_ready` returns).
                Some(r) => (unsafe { ffi::PyObject_IsTrue(r.as_ptr()) }) != 0,
                None => {
                    // Not expected; a spare turn is harmless.
                    let _ = take_error_text();
                    true
                }
            };
        }
        if self.loop_busy || with_ctx(|c| Ok(c.async_inflight)).unwrap_or(0) > 0 {
            crate::watchdog::touch(shared, worker);
            match call(&engine.run_loop_once, &[]) {
                Some(r) => {
                    // SAFETY: GIL held; r is a float (the engine returns seconds or -1).
                    self.next_due = unsafe { ffi::PyFloat_AsDouble(r.as_ptr()) };
                    self.loop_busy = self.next_due >= 0.0;
                }
                None => {
                    let text = take_error_text();
                    (shared.log)(LogLevel::Error, worker, &format!("asyncio loop: {text}"));
                    self.loop_busy = false;
                }
            }
        }
        // One doorbell per core per turn (async completions above included). Inline placement:
        // not for this interpreter's own cores, whose reactor is the calling thread and
        // applies the actions right after this turn (a doorbell would queue a message to
        // itself and cost it one more loop turn per script event).
        let own: &[usize] = if shared.cfg.inline { &self.lanes } else { &[] };
        let cancelled = with_ctx(|c| {
            for (core, b) in c.bells.iter_mut().enumerate() {
                if std::mem::take(b) && !own.contains(&core) {
                    shared.ring(core);
                }
            }
            me.suspended
                .store(c.suspended.len() as u64, Ordering::Relaxed);
            Ok(std::mem::take(&mut c.cancelled))
        })
        .unwrap_or(0);
        if cancelled > 0 {
            (shared.log)(
                LogLevel::Warn,
                worker,
                &format!(
                    "cancelled {cancelled} suspended handler(s): the node answered without them \
                     (transaction timeout or stalled worker) or their transaction ended"
                ),
            );
        }
        if did > 0 {
            if account {
                me.busy_ns.fetch_add(
                    thread_cpu_ns().saturating_sub(batch_start),
                    Ordering::Relaxed,
                );
            }
            me.events.fetch_add(did as u64, Ordering::Relaxed);
            me.work_ns.fetch_add(
                crate::watchdog::busy_since_start(shared, turn_start),
                Ordering::Relaxed,
            );
        }
        crate::watchdog::leave(shared, worker);
        did
    }

    /// When this interpreter's asyncio loop next needs a turn without any new event: `Some(0)`
    /// when callbacks are ready now, `Some(d)` for its earliest timer (`asyncio.sleep`,
    /// `wait_for`, `call_later`), `None` when it only waits for completions that wake the core.
    /// Whether work waits for the next turn now (what wakes a parked worker).
    pub(crate) fn has_work(&self) -> bool {
        has_work(&self.shared, self.worker, &self.lanes)
    }

    pub(crate) fn next_wake(&self) -> Option<Duration> {
        self.loop_busy
            .then(|| Duration::try_from_secs_f64(self.next_due.max(0.0)).unwrap_or(Duration::MAX))
    }

    /// How long an idle worker may park before the asyncio loop needs a turn.
    fn idle_timeout(&self) -> Duration {
        if self.loop_busy {
            Duration::from_secs_f64(self.next_due.clamp(0.0, 0.05))
        } else {
            Duration::from_millis(250)
        }
    }
}

impl Drop for WorkerCore {
    fn drop(&mut self) {
        if let Some(engine) = self.engine.take() {
            if call(&engine.shutdown, &[]).is_none() {
                let _ = take_error_text();
            }
        }
        CTX.with(|c| c.borrow_mut().take());
        if let Some(t) = self.interrupter.take() {
            t.stop(&self.shared, self.worker);
        }
        if let Some(i) = self.interp.take() {
            end_interpreter(i);
        }
    }
}

/// Body of a worker thread. `ready` gets the startup result (the first script load).
pub(crate) fn run(
    shared: Arc<Shared>,
    worker: usize,
    lanes: Vec<usize>,
    ready: std::sync::mpsc::Sender<Result<(), String>>,
) {
    if let Some(cpu) = shared.cfg.cpus.get(worker) {
        pin(*cpu);
    }
    let mut core = match WorkerCore::start(&shared, worker, lanes.clone()) {
        Ok(c) => c,
        Err(e) => {
            // WorkerCore::start cleaned up (its Drop ran if it got that far).
            let _ = ready.send(Err(e));
            return;
        }
    };
    let _ = ready.send(Ok(()));
    let mut spin = SpinPolicy::default();
    // When this worker last had work, until its idle hook ran (`HostConfig::idle_hook`).
    let mut busy_at: Option<Instant> = None;
    while !shared.shutdown.load(Ordering::Acquire) {
        if core.turn() > 0 {
            busy_at = Some(Instant::now());
        } else {
            if let (Some(at), Some(hook)) = (busy_at, shared.cfg.idle_hook)
                && at.elapsed() >= crate::host::WORKER_IDLE_RELEASE
            {
                hook();
                busy_at = None;
            }
            let timeout = core.idle_timeout();
            if !timeout.is_zero() {
                idle(&shared, worker, &lanes, timeout, &mut spin);
            }
        }
    }
    drop(core);
}

const BATCH: usize = 64;

/// A response as plain Python data: (status, reason, [(name, value)], body or None).
fn reply_snapshot(m: &SipMessage) -> Ret {
    let (status, reason) = match m.status() {
        0 => (0, m.method().to_owned()),
        s => (i64::from(s), m.reason().to_owned()),
    };
    let headers = m
        .headers()
        .map(|(n, v)| Ret::Tuple(vec![Ret::Str(n.to_owned()), Ret::Str(v.to_owned())]))
        .collect();
    let body = if m.body().is_empty() {
        Ret::None
    } else {
        Ret::Bytes(m.body().to_vec())
    };
    Ret::Tuple(vec![
        Ret::Int(status),
        Ret::Str(reason),
        Ret::List(headers),
        body,
    ])
}

/// CPU time of the calling thread (excludes time descheduled on a busy host).
fn thread_cpu_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: valid out-pointer; CLOCK_THREAD_CPUTIME_ID is always available on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

fn has_work(shared: &Shared, worker: usize, lanes: &[usize]) -> bool {
    let held = shared.workers[worker].held_min.load(Ordering::Acquire);
    (held != u64::MAX && shared.registrar.commits().is_some_and(|c| c.done() >= held))
        || !shared.workers[worker].control.is_empty()
        || lanes
            .iter()
            .any(|l| !shared.lanes[*l].inbound.is_empty() || !shared.lanes[*l].smpp_in.is_empty())
        || shared.shutdown.load(Ordering::Acquire)
        || shared.generation.load(Ordering::Acquire)
            != shared.workers[worker].loaded_gen.load(Ordering::Relaxed)
}

/// Whether an idle worker spins before it parks. Spinning pays only when the next event comes
/// within the spin window (a burst, a reply right behind its request); at a few thousand
/// events per second per core the gaps are far longer, and a spin that ends in a park anyway
/// burns its whole window per event (measured: ~13 % of the process's CPU at 400 calls/s,
/// bench/results/2026-12-06-msg-profile.txt). So it spins while recent idle gaps were short
/// enough to catch, and parks at once otherwise; a gap within the window, parked or not, turns
/// spinning back on.
#[derive(Debug, Default)]
struct SpinPolicy {
    /// Credit: > 0 spins. A caught event adds, a wasted spin takes.
    score: u8,
}

impl SpinPolicy {
    const MAX: u8 = 8;

    fn should_spin(&self) -> bool {
        self.score > 0
    }

    /// The last idle gap was `gap` long; `window` is the configured spin.
    fn saw_gap(&mut self, gap: Duration, window: Duration) {
        if gap <= window {
            self.score = (self.score + 2).min(Self::MAX);
        } else {
            self.score = self.score.saturating_sub(1);
        }
    }
}

fn idle(
    shared: &Shared,
    worker: usize,
    lanes: &[usize],
    timeout: Duration,
    policy: &mut SpinPolicy,
) {
    let window = shared.cfg.spin;
    let start = Instant::now();
    if policy.should_spin() && !window.is_zero() {
        // Spin briefly (a wake-up costs ~100 µs on a VM), then park with the GIL released.
        let spin_until = start + window;
        'spin: loop {
            for _ in 0..64 {
                if has_work(shared, worker, lanes) {
                    policy.saw_gap(start.elapsed(), window);
                    return;
                }
                std::hint::spin_loop();
            }
            if Instant::now() >= spin_until {
                break 'spin;
            }
        }
    }
    let me = &shared.workers[worker];
    me.sleeping.store(true, Ordering::SeqCst);
    if !has_work(shared, worker, lanes) {
        // SAFETY: this thread's tstate is current; it is restored below before any Python use.
        let ts = unsafe { ffi::PyEval_SaveThread() };
        std::thread::park_timeout(timeout);
        // SAFETY: restores the tstate saved above on the same thread.
        unsafe { ffi::PyEval_RestoreThread(ts) };
    }
    me.sleeping.store(false, Ordering::SeqCst);
    policy.saw_gap(start.elapsed(), window);
}

fn reload(shared: &Shared, worker: usize, engine: &Engine, path: &str, generation_no: u64) {
    let ok = match engine.load(path) {
        Ok(ok) => ok,
        Err(e) => {
            (shared.log)(LogLevel::Error, worker, &format!("reload: {e}"));
            false
        }
    };
    let result = if ok { "ok" } else { "failed" };
    shared.metrics.apply(
        "siphon_script_reloads_total",
        vec![result.to_owned()],
        crate::shared::MetricOp::Add,
        1.0,
    );
    let me = &shared.workers[worker];
    me.last_reload_ok.store(ok, Ordering::Release);
    me.loaded_gen.store(generation_no, Ordering::Release);
    (shared.log)(
        if ok { LogLevel::Info } else { LogLevel::Error },
        worker,
        &format!("script reload {result} (generation {generation_no})"),
    );
}

/// Run the script for one SIP event; `fresh`: the turn's stall clock started with it.
fn dispatch(shared: &Shared, worker: usize, engine: &mut Engine, ev: Event, fresh: bool) {
    let kind = ev.kind;
    let kind_idx = match kind {
        EventKind::Request => 0,
        EventKind::Reply => 1,
        EventKind::Failure => 2,
        EventKind::Cancel => 3,
        EventKind::RegisterReply => 4,
    };
    let request_id = ev.request_id.map_or(-1, |i| i as i64);
    shared.workers[worker]
        .watch
        .current_event
        .store(ev.id, Ordering::Relaxed);
    if !fresh {
        crate::watchdog::touch(shared, worker);
    }
    let method = engine.method(ev.request.method());
    // One borrow of the context: the event takes a slot, unless too many handlers are
    // suspended on this interpreter (`limits.max_suspended_handlers`): then it is answered
    // without the script rather than grow its tables further.
    let slot = with_ctx(|c| {
        let h = c.insert(ev);
        if c.async_inflight < shared.cfg.limits.suspended_handlers {
            return Ok(Some(h));
        }
        shared
            .limit_hits
            .suspended_handlers
            .fetch_add(1, Ordering::Relaxed);
        let s = c.slot(h)?;
        s.act.disposition = match kind {
            EventKind::Request => {
                let mut d = Actions::reply(503, "Service Unavailable");
                if let Disposition::Reply { headers, .. } = &mut d {
                    headers.push((
                        "Retry-After".into(),
                        shared.cfg.limits.retry_after_secs.to_string(),
                    ));
                }
                d
            }
            EventKind::Cancel => Disposition::Drop,
            _ => Disposition::ForwardReply,
        };
        c.complete(h)?;
        Ok(None)
    });
    let Ok(Some(h)) = slot else {
        return;
    };
    let hobj = int_obj(h as i64);
    let rid = int_obj(request_id);
    let r = call(
        &engine.dispatch,
        &[
            hobj.as_ptr(),
            engine.kinds[kind_idx].as_ptr(),
            method,
            rid.as_ptr(),
        ],
    );
    let Some(r) = r else {
        let text = take_error_text();
        let _ = with_ctx(|c| {
            c.script_error(h, &text)?;
            c.complete(h)
        });
        return;
    };
    // SAFETY: GIL held; reading the None singleton and type checks on a valid object.
    let (is_none, is_int) = unsafe {
        (
            r.as_ptr() == ffi::Py_None(),
            ffi::PyLong_Check(r.as_ptr()) != 0,
        )
    };
    if is_none {
        let _ = with_ctx(|c| c.complete(h));
    } else if is_int {
        // The engine found no handler for this event.
        let _ = with_ctx(|c| {
            let s = c.slot(h)?;
            s.act.disposition = match kind {
                EventKind::Request => Actions::reply(500, "No Script Handler"),
                EventKind::Cancel => Disposition::Drop,
                _ => Disposition::ForwardReply,
            };
            c.complete(h)
        });
    } else {
        step(shared, worker, engine, h, &r, None);
    }
    shared.stats.events.fetch_add(1, Ordering::Relaxed);
}

/// `siphon.smpp`'s entry points in this interpreter (imported at the first SMPP event).
fn smpp_fns(engine: &mut Engine) -> Result<&[Owned; 3], String> {
    if engine.smpp_fns.is_none() {
        // SAFETY: GIL held; returns a new reference or NULL with an exception set.
        let m = unsafe { Owned::from_new(ffi::PyImport_ImportModule(c"siphon.smpp".as_ptr())) }
            .ok_or_else(|| format!("import siphon.smpp: {}", take_error_text()))?;
        let get = |n: &str| getattr(m.as_ptr(), n);
        engine.smpp_fns = Some([get("_dispatch")?, get("_finish")?, get("_fail")?]);
    }
    engine
        .smpp_fns
        .as_ref()
        .ok_or_else(|| "siphon.smpp not loaded".to_owned())
}

/// Run the `siphon.smpp` handlers for one SMPP event. The Python layer answers through
/// `_siphon.smpp_answer` (at once, or when an async handler finishes) and never raises here.
/// It returns None (answered), a coroutine to step (session hooks, binds), or `(coro, pdu)`:
/// an `on_pdu` handler's own coroutine, stepped here with no wrapper, whose return value goes
/// to `siphon.smpp._finish(pdu, value)` (or its exception to `_fail(pdu, exc)`).
fn dispatch_smpp(shared: &Shared, worker: usize, engine: &mut Engine, ev: crate::smpp::SmppEvent) {
    let h = crate::smpp::handle(ev.id);
    let dispatch = match smpp_fns(engine) {
        Ok(f) => f[0].as_ptr(),
        Err(e) => {
            (shared.log)(LogLevel::Error, worker, &format!("smpp event: {e}"));
            return;
        }
    };
    // SAFETY: event_to_py returns a new reference or NULL.
    let Some(arg) =
        (unsafe { Owned::from_new(crate::smpp::event_to_py(ev, &mut engine.smpp_names)) })
    else {
        let text = take_error_text();
        (shared.log)(LogLevel::Error, worker, &format!("smpp event: {text}"));
        return;
    };
    let args = [arg.as_ptr()];
    // SAFETY: GIL held; `dispatch` is kept alive by the engine for the whole call; `args` are
    // valid; returns a new reference or NULL with an exception set.
    let r = unsafe {
        Owned::from_new(ffi::PyObject_Vectorcall(
            dispatch,
            args.as_ptr(),
            1,
            std::ptr::null_mut(),
        ))
    };
    let Some(r) = r else {
        let text = take_error_text();
        (shared.log)(LogLevel::Error, worker, &format!("smpp dispatch: {text}"));
        return;
    };
    let p = r.as_ptr();
    // SAFETY: GIL held; type checks and borrowed tuple items of a valid object; the items are
    // taken as new references before `r` can be released.
    let raw = unsafe {
        if p == ffi::Py_None() {
            None
        } else if ffi::PyTuple_CheckExact(p) != 0 && ffi::PyTuple_Size(p) == 2 {
            let coro = Owned::from_new(ffi::Py_NewRef(ffi::PyTuple_GetItem(p, 0)));
            let ctx = Owned::from_new(ffi::Py_NewRef(ffi::PyTuple_GetItem(p, 1)));
            Some(coro.zip(ctx))
        } else {
            Some(None)
        }
    };
    match raw {
        None => {}
        Some(Some((coro, ctx))) => step(shared, worker, engine, h, &coro, Some(&ctx)),
        Some(None) => step(shared, worker, engine, h, &r, None),
    }
    shared.stats.events.fetch_add(1, Ordering::Relaxed);
}

/// Step a handler coroutine once; only a suspended one goes to the asyncio loop. The step
/// runs with a stand-in current task (`_engine._FirstStep`) so that asyncio.timeout, wait_for
/// and TaskGroup work before the handler's first suspension.
///
/// With `ctx` (an SMPP `on_pdu` handler's own coroutine): its return value goes to
/// `siphon.smpp._finish(ctx, value)`, an exception to `_fail(ctx, exc)`, and a suspended one
/// to [`suspend`](Engine::suspend) with `ctx`, which does the same when it ends.
fn step(
    shared: &Shared,
    worker: usize,
    engine: &Engine,
    h: u64,
    coro: &Owned,
    ctx: Option<&Owned>,
) {
    let first = call(&engine.first_step, &[]).and_then(|first| {
        call(
            &engine.enter_task,
            &[engine.event_loop.as_ptr(), first.as_ptr()],
        )
        .map(|_| first)
    });
    let Some(first) = first else {
        let text = take_error_text();
        let _ = with_ctx(|c| {
            c.script_error(h, &text)?;
            c.complete(h)
        });
        return;
    };
    let mut out: *mut ffi::PyObject = std::ptr::null_mut();
    // SAFETY: GIL held; coro is a valid object (the engine returns a coroutine); `out`
    // receives a new reference for RETURN/NEXT.
    let st = unsafe { ffi::PyIter_Send(coro.as_ptr(), ffi::Py_None(), &mut out) };
    // SAFETY: `out` is NULL or a new reference owned from here.
    let out = unsafe { Owned::from_new(out) };
    // Take a handler error before calling back into Python (as text, or as the exception
    // object for `_fail`, which logs its traceback).
    let failed = matches!(st, ffi::PySendResult::PYGEN_ERROR);
    let (error, exc) = match (failed, ctx) {
        (false, _) => (None, None),
        (true, None) => (Some(take_error_text()), None),
        (true, Some(_)) => (None, crate::py::fetch_exception()),
    };
    if call(
        &engine.leave_task,
        &[engine.event_loop.as_ptr(), first.as_ptr()],
    )
    .is_none()
    {
        let text = take_error_text();
        (shared.log)(
            LogLevel::Error,
            worker,
            &format!("leaving the first step: {text}"),
        );
    }
    match st {
        ffi::PySendResult::PYGEN_RETURN => {
            if let Some(ctx) = ctx {
                smpp_end(shared, worker, engine, 1, ctx, out.as_ref());
            }
            let _ = with_ctx(|c| c.complete(h));
        }
        ffi::PySendResult::PYGEN_NEXT => {
            let Some(y) = out else { return };
            let hobj = int_obj(h as i64);
            let _ = with_ctx(|c| {
                c.async_inflight += 1;
                if ctx.is_none() && !crate::smpp::is_smpp_handle(h) {
                    let id = c.slot(h)?.ev.id;
                    c.suspended.insert(id, h);
                }
                Ok(())
            });
            // SAFETY: GIL held; reading the None singleton.
            let ctx = ctx.map_or_else(|| unsafe { ffi::Py_None() }, Owned::as_ptr);
            if call(
                &engine.suspend,
                &[
                    coro.as_ptr(),
                    y.as_ptr(),
                    hobj.as_ptr(),
                    first.as_ptr(),
                    ctx,
                ],
            )
            .is_none()
            {
                let text = take_error_text();
                (shared.log)(LogLevel::Error, worker, &format!("suspend: {text}"));
                let _ = with_ctx(|c| {
                    c.async_inflight -= 1;
                    c.script_error(h, &text)?;
                    c.complete(h)
                });
            }
        }
        ffi::PySendResult::PYGEN_ERROR if ctx.is_some() => {
            if let Some(ctx) = ctx {
                smpp_end(shared, worker, engine, 2, ctx, exc.as_ref());
            }
        }
        ffi::PySendResult::PYGEN_ERROR => {
            let text = error.unwrap_or_default();
            let _ = with_ctx(|c| {
                c.script_error(h, &text)?;
                c.complete(h)
            });
        }
    }
}

/// An SMPP `on_pdu` coroutine ended in its first step: `siphon.smpp._finish(ctx, value)`
/// (`which` 1) or `_fail(ctx, exc)` (`which` 2). They answer the PDU and never raise; an
/// error here is only logged.
fn smpp_end(
    shared: &Shared,
    worker: usize,
    engine: &Engine,
    which: usize,
    ctx: &Owned,
    value: Option<&Owned>,
) {
    let Some(f) = engine.smpp_fns.as_ref().and_then(|f| f.get(which)) else {
        return;
    };
    // SAFETY: GIL held; reading the None singleton.
    let v = value.map_or_else(|| unsafe { ffi::Py_None() }, Owned::as_ptr);
    if call(f, &[ctx.as_ptr(), v]).is_none() {
        let text = take_error_text();
        (shared.log)(LogLevel::Error, worker, &format!("smpp answer: {text}"));
    }
}

#[cfg(test)]
mod tests {
    use super::SpinPolicy;
    use std::time::Duration;

    #[test]
    fn spinning_follows_the_idle_gaps() {
        let window = Duration::from_micros(50);
        let mut p = SpinPolicy::default();
        // Starts parked: sparse traffic never pays for a spin.
        assert!(!p.should_spin());
        p.saw_gap(Duration::from_millis(2), window);
        assert!(!p.should_spin());
        // A gap the spin would have caught turns it on; a run of long gaps turns it off again.
        p.saw_gap(Duration::from_micros(10), window);
        assert!(p.should_spin());
        for _ in 0..SpinPolicy::MAX {
            p.saw_gap(Duration::from_millis(1), window);
        }
        assert!(!p.should_spin());
    }
}
