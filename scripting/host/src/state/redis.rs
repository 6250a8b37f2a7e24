//! Redis for `registrar.backend: redis` and for `cache:` entries with a `url:`.
//!
//! Threads: no interpreter or reactor thread ever waits on Redis for long.
//! - **Writes** are queued ([`RedisLink::enqueue`]) and sent by one background thread per URL
//!   and use, pipelined in `MULTI`/`EXEC` batches. The queue is capped (`queue_cap`); while Redis
//!   is unreachable writes wait in it (`siphon_state_queued_writes`), the oldest is dropped
//!   and counted past the cap, and everything queued is replayed, in order, when Redis returns
//!   (`siphon_state_replayed_writes_total`). The thread reconnects with backoff and pings
//!   while idle so an outage is noticed without traffic.
//! - **Reads** run on the caller's thread over a pooled connection with a short timeout
//!   (`read_timeout`, default 50 ms), only while the link is up, and never for a key with a
//!   write of ours still queued (the local copy is newer). A failed read marks the link down
//!   and the caller falls back to what this node has.
//!
//! The registrar keeps upstream's layout: one hash per AoR at `{key_prefix}{aor}`, field =
//! contact URI, value = the contact's JSON ([`super::codec`]), key TTL = longest binding +
//! `ttl_slack_secs`. Cache keys are written as given (upstream does the same).
//!
//! Differs on purpose from upstream: lookups read through Redis, so a contact registered on
//! node A is found on node B at once (upstream keeps lookups on the node that took the
//! REGISTER and uses Redis only to survive restarts).

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use siphon_sip::registrar::{
    Aor, Binding, Commit, Expired, LocationStore, MemoryLocationStore, StoreError,
};

use super::codec::{decode_one, encode_one};
use super::{BackendStats, CommitLog, RedisSettings, StateLog};
use crate::shared::lock;

/// Why a Redis link could not be set up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RedisSetupError {
    /// The URL does not parse.
    #[error("invalid redis url {url}: {reason}")]
    Url {
        /// As configured.
        url: String,
        /// What the client said.
        reason: String,
    },
}

struct Queued {
    seq: u64,
    key: String,
    cmds: Vec<redis::Cmd>,
}

#[derive(Default)]
struct Queue {
    items: VecDeque<Queued>,
    /// Keys with a write still queued, and how many.
    pending: HashMap<String, u32>,
    shutdown: bool,
}

/// A Redis URL with its connection pool, write queue and writer thread.
pub struct RedisLink {
    client: redis::Client,
    label: &'static str,
    read_timeout: Duration,
    cap: usize,
    pool: Mutex<Vec<redis::Connection>>,
    queue: Mutex<Queue>,
    cv: Condvar,
    commits: Arc<CommitLog>,
    stats: Arc<BackendStats>,
    log: StateLog,
    writer: Mutex<Option<JoinHandle<()>>>,
}

impl std::fmt::Debug for RedisLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisLink")
            .field("label", &self.label)
            .finish_non_exhaustive()
    }
}

const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);
const WRITE_TIMEOUT: Duration = Duration::from_secs(2);
const BATCH: usize = 512;

impl RedisLink {
    /// Parse `url`, try one connection (a failure only marks the link down: the node starts
    /// and serves what it has), and start the writer thread.
    pub fn start(
        url: &str,
        label: &'static str,
        read_timeout: Duration,
        cap: usize,
        log: StateLog,
    ) -> Result<Arc<Self>, RedisSetupError> {
        let client = redis::Client::open(url).map_err(|e| RedisSetupError::Url {
            url: url.to_owned(),
            reason: e.to_string(),
        })?;
        let link = Arc::new(Self {
            client,
            label,
            read_timeout,
            cap: cap.max(1),
            pool: Mutex::new(Vec::new()),
            queue: Mutex::new(Queue::default()),
            cv: Condvar::new(),
            commits: CommitLog::new(),
            stats: Arc::new(BackendStats::default()),
            log,
            writer: Mutex::new(None),
        });
        match link.connect(read_timeout.max(CONNECT_TIMEOUT)) {
            Ok(c) => {
                link.stats.up.store(true, Ordering::Release);
                lock(&link.pool).push(c);
            }
            Err(e) => (link.log)(
                true,
                &format!("{label}: redis {url} unreachable at start ({e}); serving local state"),
            ),
        }
        let w = Arc::clone(&link);
        let t = std::thread::Builder::new()
            .name(format!("siphon-redis-{label}"))
            .spawn(move || w.write_loop())
            .map_err(|e| RedisSetupError::Url {
                url: url.to_owned(),
                reason: e.to_string(),
            })?;
        *lock(&link.writer) = Some(t);
        Ok(link)
    }

    fn connect(&self, timeout: Duration) -> redis::RedisResult<redis::Connection> {
        let c = self.client.get_connection_with_timeout(timeout)?;
        c.set_read_timeout(Some(self.read_timeout))?;
        c.set_write_timeout(Some(self.read_timeout))?;
        Ok(c)
    }

    /// Whether the link is believed up.
    pub fn is_up(&self) -> bool {
        self.stats.up.load(Ordering::Acquire)
    }

    /// Counters for `/metrics`.
    pub fn stats(&self) -> &Arc<BackendStats> {
        &self.stats
    }

    /// The commit log (writes queued vs sent; while down, queued counts as done).
    pub fn commits(&self) -> &Arc<CommitLog> {
        &self.commits
    }

    /// Whether a write of ours for `key` is still queued.
    pub fn has_pending(&self, key: &str) -> bool {
        lock(&self.queue).pending.contains_key(key)
    }

    fn mark_down(&self, why: &str) {
        self.stats.errors.fetch_add(1, Ordering::Relaxed);
        if self.stats.up.swap(false, Ordering::AcqRel) {
            (self.log)(
                true,
                &format!(
                    "{}: redis unreachable ({why}); serving local state, queueing writes",
                    self.label
                ),
            );
            lock(&self.pool).clear();
            self.cv.notify_one();
        }
    }

    /// Run a read on this thread with the short timeout; `None` when the link is down, the
    /// read failed (the link is then marked down) or `key` has a write of ours queued.
    pub fn read<T: redis::FromRedisValue>(&self, key: &str, cmd: &redis::Cmd) -> Option<T> {
        self.read_with(key, |c| cmd.query(c))
    }

    /// [`RedisLink::read`] with any query (a pipeline, a transaction).
    pub fn read_with<T>(
        &self,
        key: &str,
        f: impl FnOnce(&mut redis::Connection) -> redis::RedisResult<T>,
    ) -> Option<T> {
        if !self.is_up() || self.has_pending(key) {
            return None;
        }
        let pooled = lock(&self.pool).pop();
        let mut con = match pooled {
            Some(c) => c,
            None => match self.connect(self.read_timeout) {
                Ok(c) => c,
                Err(e) => {
                    self.mark_down(&e.to_string());
                    return None;
                }
            },
        };
        match f(&mut con) {
            Ok(v) => {
                let mut p = lock(&self.pool);
                if p.len() < 16 {
                    p.push(con);
                }
                Some(v)
            }
            Err(e) => {
                self.mark_down(&e.to_string());
                None
            }
        }
    }

    /// Queue commands for `key` (sent in order, in one transaction with their batch); returns
    /// the write's sequence number.
    pub fn enqueue(&self, key: String, cmds: Vec<redis::Cmd>) -> u64 {
        let mut q = lock(&self.queue);
        let seq = self.commits.next();
        *q.pending.entry(key.clone()).or_default() += 1;
        q.items.push_back(Queued { seq, key, cmds });
        while q.items.len() > self.cap {
            if let Some(old) = q.items.pop_front() {
                unpend(&mut q.pending, &old.key);
                self.stats.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.stats
            .queued
            .store(q.items.len() as u64, Ordering::Relaxed);
        drop(q);
        self.cv.notify_one();
        seq
    }

    /// Stop the writer (what is queued stays unsent).
    pub fn close(&self) {
        lock(&self.queue).shutdown = true;
        self.cv.notify_one();
        if let Some(t) = lock(&self.writer).take() {
            let _ = t.join();
        }
    }

    fn write_loop(&self) {
        let mut con: Option<redis::Connection> = None;
        let mut backoff = Duration::from_millis(100);
        let mut next_try = Instant::now();
        let mut replaying = false;
        loop {
            // Wait for work, a retry time, or 1 s of idleness (then ping).
            let batch: Vec<(u64, String, Vec<redis::Cmd>)> = {
                let mut q = lock(&self.queue);
                if q.shutdown {
                    return;
                }
                let wait = if con.is_none() {
                    next_try.saturating_duration_since(Instant::now())
                } else {
                    Duration::from_secs(1)
                };
                if q.items.is_empty() || con.is_none() {
                    q = self
                        .cv
                        .wait_timeout(q, wait)
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .0;
                }
                if q.shutdown {
                    return;
                }
                if con.is_none() {
                    // Down: replies must not wait for Redis; what is queued counts as done.
                    self.commits.advance(self.commits.ticket());
                }
                q.items
                    .iter()
                    .take(BATCH)
                    .map(|i| (i.seq, i.key.clone(), i.cmds.clone()))
                    .collect()
            };
            if con.is_none() {
                if Instant::now() < next_try {
                    continue;
                }
                match self.client.get_connection_with_timeout(CONNECT_TIMEOUT) {
                    Ok(c) => {
                        let _ = c.set_read_timeout(Some(WRITE_TIMEOUT));
                        let _ = c.set_write_timeout(Some(WRITE_TIMEOUT));
                        con = Some(c);
                        backoff = Duration::from_millis(100);
                        if !self.stats.up.swap(true, Ordering::AcqRel) {
                            let n = lock(&self.queue).items.len();
                            replaying = n > 0;
                            (self.log)(
                                false,
                                &format!(
                                    "{}: redis reachable again; replaying {n} queued writes",
                                    self.label
                                ),
                            );
                        }
                    }
                    Err(_) => {
                        self.stats.up.store(false, Ordering::Release);
                        next_try = Instant::now() + backoff;
                        backoff = (backoff * 2).min(Duration::from_secs(2));
                        continue;
                    }
                }
            }
            let Some(c) = con.as_mut() else { continue };
            if batch.is_empty() {
                if redis::cmd("PING").query::<String>(c).is_err() {
                    con = None;
                    self.mark_down("ping failed");
                }
                continue;
            }
            let mut pipe = redis::pipe();
            pipe.atomic();
            for (_, _, cmds) in &batch {
                for cmd in cmds {
                    pipe.add_command(cmd.clone()).ignore();
                }
            }
            match pipe.query::<()>(c) {
                Ok(()) => {
                    let n = batch.len();
                    let last = batch.last().map_or(0, |b| b.0);
                    let mut q = lock(&self.queue);
                    // The front of the queue is what we sent unless the cap dropped some.
                    while q.items.front().is_some_and(|i| i.seq <= last) {
                        if let Some(i) = q.items.pop_front() {
                            unpend(&mut q.pending, &i.key);
                        }
                    }
                    let left = q.items.len();
                    self.stats.queued.store(left as u64, Ordering::Relaxed);
                    drop(q);
                    self.stats.commits.fetch_add(1, Ordering::Relaxed);
                    self.stats.writes.fetch_add(n as u64, Ordering::Relaxed);
                    if replaying {
                        self.stats.replayed.fetch_add(n as u64, Ordering::Relaxed);
                        if left == 0 {
                            replaying = false;
                            (self.log)(false, &format!("{}: queued writes replayed", self.label));
                        }
                    }
                    self.commits.advance(last);
                }
                Err(e) => {
                    con = None;
                    if e.is_io_error() || e.is_timeout() || e.is_connection_dropped() {
                        self.mark_down(&e.to_string());
                    } else {
                        // A command Redis refused (wrong type ...): drop the batch, say so.
                        self.stats.errors.fetch_add(1, Ordering::Relaxed);
                        (self.log)(true, &format!("{}: redis refused a write: {e}", self.label));
                        let last = batch.last().map_or(0, |b| b.0);
                        let mut q = lock(&self.queue);
                        while q.items.front().is_some_and(|i| i.seq <= last) {
                            if let Some(i) = q.items.pop_front() {
                                unpend(&mut q.pending, &i.key);
                            }
                        }
                        drop(q);
                        self.commits.advance(last);
                    }
                }
            }
        }
    }
}

fn unpend(p: &mut HashMap<String, u32>, key: &str) {
    if let Some(n) = p.get_mut(key) {
        *n -= 1;
        if *n == 0 {
            p.remove(key);
        }
    }
}

/// `registrar.backend: redis`: a local copy (served while Redis is down) in front of
/// upstream's hash-per-AoR layout.
pub struct RedisLocationStore {
    mem: MemoryLocationStore,
    link: Arc<RedisLink>,
    prefix: String,
    slack: u64,
}

impl std::fmt::Debug for RedisLocationStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisLocationStore")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

impl RedisLocationStore {
    /// Connect (or start down) and load a snapshot of every AoR under the prefix.
    pub fn open(s: &RedisSettings, log: StateLog) -> Result<(Self, usize), RedisSetupError> {
        let link = RedisLink::start(&s.url, "registrar", s.read_timeout, s.queue_cap, log)?;
        let store = Self {
            mem: MemoryLocationStore::new(),
            link,
            prefix: s.key_prefix.clone(),
            slack: s.ttl_slack_secs,
        };
        let n = store.snapshot();
        Ok((store, n))
    }

    /// The link (metrics, commit log).
    pub fn link(&self) -> &Arc<RedisLink> {
        &self.link
    }

    fn key(&self, aor: &Aor) -> String {
        format!("{}{}", self.prefix, aor.as_str())
    }

    /// Boot snapshot: SCAN the prefix and load every AoR into the local copy.
    fn snapshot(&self) -> usize {
        let mut cursor: u64 = 0;
        let mut n = 0;
        let pattern = format!("{}*", self.prefix);
        loop {
            let mut c = redis::cmd("SCAN");
            c.arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(1000);
            let Some((next, keys)) = self.link.read::<(u64, Vec<String>)>("", &c) else {
                return n;
            };
            for k in keys {
                let Some(aor) = k
                    .strip_prefix(&self.prefix)
                    .and_then(|a| Aor::from_uri(a).ok())
                else {
                    continue;
                };
                if let Some(list) = self.fetch(&aor) {
                    n += list.len();
                    self.install(&aor, list);
                }
            }
            cursor = next;
            if cursor == 0 {
                return n;
            }
        }
    }

    /// The AoR's live bindings in Redis, `None` when Redis cannot answer now.
    fn fetch(&self, aor: &Aor) -> Option<Vec<Binding>> {
        let key = self.key(aor);
        let mut c = redis::cmd("HGETALL");
        c.arg(&key);
        let fields: HashMap<String, String> = self.link.read(&key, &c)?;
        let now = SystemTime::now();
        Some(
            fields
                .values()
                .filter_map(|v| decode_one(v))
                .filter(|b| !b.is_expired(now))
                .collect(),
        )
    }

    fn install(&self, aor: &Aor, list: Vec<Binding>) {
        let mut slot = Some(list);
        let _ = self.mem.update(aor, &mut |l| {
            if let Some(v) = slot.take() {
                *l = v;
            }
            Commit::Yes
        });
    }

    fn write(&self, aor: &Aor, list: &[Binding]) {
        let key = self.key(aor);
        let now = SystemTime::now();
        let mut del = redis::cmd("DEL");
        del.arg(&key);
        let mut cmds = vec![del];
        if !list.is_empty() {
            let mut hset = redis::cmd("HSET");
            hset.arg(&key);
            for b in list {
                hset.arg(&b.uri).arg(encode_one(b, now));
            }
            let longest = list
                .iter()
                .map(|b| b.remaining_secs(now))
                .max()
                .unwrap_or(0);
            let mut exp = redis::cmd("EXPIRE");
            exp.arg(&key).arg(u64::from(longest.max(1)) + self.slack);
            cmds.push(hset);
            cmds.push(exp);
        }
        self.link.enqueue(key, cmds);
    }
}

impl LocationStore for RedisLocationStore {
    fn get(&self, aor: &Aor) -> Result<Vec<Binding>, StoreError> {
        match self.fetch(aor) {
            Some(list) => {
                self.install(aor, list.clone());
                Ok(list)
            }
            None => self.mem.get(aor),
        }
    }

    fn update(
        &self,
        aor: &Aor,
        f: &mut dyn FnMut(&mut Vec<Binding>) -> Commit,
    ) -> Result<Commit, StoreError> {
        // Start from what Redis has (another node may have written this AoR).
        let fresh = self.fetch(aor);
        self.mem.update(aor, &mut |list| {
            if let Some(v) = &fresh {
                list.clone_from(v);
            }
            let answer = f(list);
            if answer == Commit::Yes {
                self.write(aor, list);
            }
            answer
        })
    }

    fn sweep_expired(&self, now: SystemTime) -> Result<Expired, StoreError> {
        // Local copy only: Redis expires keys by TTL and lookups skip expired fields; writing
        // our (possibly stale) view back could undo another node's refresh.
        self.mem.sweep_expired(now)
    }

    fn aor_count(&self) -> Result<usize, StoreError> {
        self.mem.aor_count()
    }

    fn binding_count(&self) -> Result<usize, StoreError> {
        self.mem.binding_count()
    }
}

impl Drop for RedisLocationStore {
    fn drop(&mut self) {
        self.link.close();
    }
}
