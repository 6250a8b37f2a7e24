//! Durable and shared state behind the registrar and `cache` (issue 18): the backends a node
//! can run the location store on, the binding codec they share, and the commit log that lets a
//! REGISTER's 200 OK wait for its write without blocking an interpreter.
//!
//! - `memory`: [`siphon_sip::registrar::MemoryLocationStore`], nothing survives a restart.
//! - `local` ([`local::LocalLocationStore`]): the memory store plus an embedded redb file
//!   written by one group-commit thread. Reads never touch the disk.
//! - `redis` ([`redis::RedisLocationStore`]): a local copy plus write-through to Redis by a
//!   background thread, reads through Redis with a short timeout so a node sees bindings
//!   other nodes wrote.
//!
//! What this module does not own: registrar policy (`siphon_sip::registrar`), the script
//! surface (`native.rs`), and holding the reply until its write is done (`worker.rs` asks the
//! [`CommitLog`] for that).

pub mod codec;
pub mod local;
pub mod redis;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

/// Where the registrar keeps bindings (`registrar.backend`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum RegistrarBackend {
    /// In memory only.
    #[default]
    Memory,
    /// Embedded redb file at this path (`registrar.local.path`).
    Local {
        /// The database file.
        path: std::path::PathBuf,
        /// Longest a REGISTER's 200 OK waits for its commit (`registrar.local.commit_timeout_ms`);
        /// past it the REGISTER is answered 503 with `Retry-After`.
        commit_timeout: Duration,
    },
    /// Redis (`registrar.redis`).
    Redis(RedisSettings),
}

/// `registrar.redis` (upstream's keys plus our timeouts and queue cap).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisSettings {
    /// `redis://host:port[/db]`.
    pub url: String,
    /// Prefix of every AoR key (upstream default `siphon:reg:`).
    pub key_prefix: String,
    /// Seconds a key outlives its longest binding.
    pub ttl_slack_secs: u64,
    /// Longest a read on the interpreter thread may wait for Redis.
    pub read_timeout: Duration,
    /// Writes held while Redis is unreachable; past it the oldest is dropped and counted.
    pub queue_cap: usize,
}

impl RedisSettings {
    /// Upstream's defaults for `url`.
    pub fn new(url: &str) -> Self {
        Self {
            url: url.to_owned(),
            key_prefix: "siphon:reg:".into(),
            ttl_slack_secs: 30,
            read_timeout: Duration::from_millis(50),
            queue_cap: 100_000,
        }
    }
}

/// One `cache:` entry.
#[derive(Debug, Clone, PartialEq)]
pub struct CacheSpec {
    /// The name scripts use.
    pub name: String,
    /// Redis URL; `None` keeps the cache in this process only.
    pub url: Option<String>,
    /// How long a value read from Redis may be served from the local copy without asking
    /// again (`None`: always ask while Redis is up).
    pub local_ttl: Option<Duration>,
    /// Most values kept locally per cache.
    pub local_max_entries: usize,
    /// Longest a read on the interpreter thread may wait for Redis.
    pub read_timeout: Duration,
    /// Writes held while Redis is unreachable.
    pub queue_cap: usize,
}

/// Longest a 200 OK waits for its write unless the backend says otherwise.
pub const DEFAULT_COMMIT_TIMEOUT: Duration = Duration::from_secs(4);

/// Sequence numbers of writes handed to a background writer and of those it finished.
///
/// A REGISTER that changed bindings takes a ticket ([`CommitLog::ticket`]) once its update is
/// queued; its 200 OK is held by the worker until [`CommitLog::done`] reaches the ticket. The
/// writer calls [`CommitLog::advance`] after each batch, which wakes the workers. A reply
/// held longer than [`CommitLog::hold_limit`] (the writer keeps failing, the disk hangs) is
/// answered 503 instead and counted in [`CommitLog::timed_out`]; while failing, the writer
/// calls [`CommitLog::nudge`] on each retry so workers look at their deadlines.
pub struct CommitLog {
    enqueued: AtomicU64,
    done: AtomicU64,
    hold_limit: Duration,
    timed_out: AtomicU64,
    waker: OnceLock<Box<dyn Fn(u64) + Send + Sync>>,
}

impl Default for CommitLog {
    fn default() -> Self {
        Self {
            enqueued: AtomicU64::new(0),
            done: AtomicU64::new(0),
            hold_limit: DEFAULT_COMMIT_TIMEOUT,
            timed_out: AtomicU64::new(0),
            waker: OnceLock::new(),
        }
    }
}

impl std::fmt::Debug for CommitLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CommitLog")
            .field("enqueued", &self.enqueued.load(Ordering::Relaxed))
            .field("done", &self.done.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl CommitLog {
    /// A new log behind an `Arc` (writer and workers share it).
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// A new log whose held replies give up after `hold_limit`.
    pub fn with_hold_limit(hold_limit: Duration) -> Arc<Self> {
        Arc::new(Self {
            hold_limit,
            ..Self::default()
        })
    }

    /// Longest a reply is held for its write.
    pub fn hold_limit(&self) -> Duration {
        self.hold_limit
    }

    /// Count `n` held replies answered 503 because their write outlived [`Self::hold_limit`].
    pub fn count_timed_out(&self, n: u64) {
        self.timed_out.fetch_add(n, Ordering::Relaxed);
    }

    /// Held replies answered 503 so far.
    pub fn timed_out(&self) -> u64 {
        self.timed_out.load(Ordering::Relaxed)
    }

    /// Wake every worker holding replies so it checks their deadlines (the writer, while its
    /// commits fail).
    pub fn nudge(&self) {
        if let Some(w) = self.waker.get() {
            w(u64::MAX);
        }
    }

    /// Count one queued write; returns its sequence number. Call it under the lock that
    /// orders the writes.
    pub fn next(&self) -> u64 {
        self.enqueued.fetch_add(1, Ordering::AcqRel) + 1
    }

    /// The ticket that covers every write queued so far.
    pub fn ticket(&self) -> u64 {
        self.enqueued.load(Ordering::Acquire)
    }

    /// Highest sequence number known durable (or, for Redis while it is down, queued).
    pub fn done(&self) -> u64 {
        self.done.load(Ordering::Acquire)
    }

    /// The writer finished everything up to `seq`: publish it and wake the workers.
    pub fn advance(&self, seq: u64) {
        let prev = self.done.fetch_max(seq, Ordering::AcqRel);
        if seq > prev {
            if let Some(w) = self.waker.get() {
                w(seq);
            }
        }
    }

    /// Install the function that wakes workers holding replies (the host does, once).
    pub fn set_waker(&self, f: Box<dyn Fn(u64) + Send + Sync>) {
        let _ = self.waker.set(f);
    }
}

/// Counters and gauges of a backend, exported as `siphon_state_*{backend=...}`.
#[derive(Debug, Default)]
pub struct BackendStats {
    /// 1 while the backend is reachable (the local file is always 1 once open).
    pub up: std::sync::atomic::AtomicBool,
    /// Writes waiting for the backend.
    pub queued: AtomicU64,
    /// Writes dropped because the queue was full.
    pub dropped: AtomicU64,
    /// Writes replayed after the backend came back.
    pub replayed: AtomicU64,
    /// Commits (batches) written.
    pub commits: AtomicU64,
    /// Writes (AoR or key updates) written.
    pub writes: AtomicU64,
    /// Failed commits or commands.
    pub errors: AtomicU64,
}

impl BackendStats {
    /// Prometheus text for this backend.
    pub fn render(&self, backend: &str, out: &mut String) {
        use std::fmt::Write as _;
        let l = |v: &AtomicU64| v.load(Ordering::Relaxed);
        let up = u8::from(self.up.load(Ordering::Relaxed));
        let _ = write!(
            out,
            "siphon_state_backend_up{{backend=\"{backend}\"}} {up}\n\
             siphon_state_queued_writes{{backend=\"{backend}\"}} {}\n\
             siphon_state_dropped_writes_total{{backend=\"{backend}\"}} {}\n\
             siphon_state_replayed_writes_total{{backend=\"{backend}\"}} {}\n\
             siphon_state_commits_total{{backend=\"{backend}\"}} {}\n\
             siphon_state_writes_total{{backend=\"{backend}\"}} {}\n\
             siphon_state_errors_total{{backend=\"{backend}\"}} {}\n",
            l(&self.queued),
            l(&self.dropped),
            l(&self.replayed),
            l(&self.commits),
            l(&self.writes),
            l(&self.errors),
        );
    }
}

/// The `# HELP`/`# TYPE` lines for [`BackendStats::render`].
pub const STATS_HEADER: &str = "\
# HELP siphon_state_backend_up Whether the state backend is reachable\n\
# TYPE siphon_state_backend_up gauge\n\
# HELP siphon_state_queued_writes Writes waiting for the state backend\n\
# TYPE siphon_state_queued_writes gauge\n\
# HELP siphon_state_dropped_writes_total Writes dropped because the queue was full\n\
# TYPE siphon_state_dropped_writes_total counter\n\
# HELP siphon_state_replayed_writes_total Writes replayed after the backend came back\n\
# TYPE siphon_state_replayed_writes_total counter\n\
# HELP siphon_state_commits_total Batches written to the state backend\n\
# TYPE siphon_state_commits_total counter\n\
# HELP siphon_state_writes_total Updates written to the state backend\n\
# TYPE siphon_state_writes_total counter\n\
# HELP siphon_state_errors_total Failed writes or reads of the state backend\n\
# TYPE siphon_state_errors_total counter\n\
# HELP siphon_state_commit_timeouts_total REGISTERs answered 503 because their write was not durable in time\n\
# TYPE siphon_state_commit_timeouts_total counter\n\
# HELP siphon_state_local_evictions_total Entries of a Redis cache dropped from this node at local_max_entries\n\
# TYPE siphon_state_local_evictions_total counter\n";

/// Log sink for background threads: (is_error, message).
pub type StateLog = Arc<dyn Fn(bool, &str) + Send + Sync>;
