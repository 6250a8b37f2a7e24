//! State shared by every core's interpreter, kept in Rust behind locks and reached through
//! `_siphon`: the `cache` namespace (in-memory, shared across cores), the registrar location
//! store, digest-auth nonces and users, `proxy.rate_limit` windows, and the metrics registry
//! (siphon-core-api.md §1.5, §1.7, §1.9, §1.11). Python module globals are per core by
//! construction; this is the sanctioned way to share.
//!
//! None of this is on the per-event fast path of a trivial handler; a plain `Mutex` per shard
//! is enough. TODO(sipreg): switch the registrar and digest parts to `siphon_sip::registrar` /
//! `siphon_sip::auth` when they land; the `_siphon` surface stays as is.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::message::{SipMessage, addr_uri};

/// Lock a mutex, recovering the data if a panicking thread poisoned it.
pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

const SHARDS: usize = 16;

fn shard_of(key: &str) -> usize {
    // FNV-1a: cheap and good enough to spread cache keys over shards.
    let mut h: u32 = 0x811c_9dc5;
    for b in key.bytes() {
        h = (h ^ u32::from(b)).wrapping_mul(0x0100_0193);
    }
    h as usize % SHARDS
}

#[derive(Debug, Clone)]
enum CacheValue {
    Str(String),
    List(Vec<String>),
}

#[derive(Debug, Clone)]
struct CacheEntry {
    value: CacheValue,
    expires: Option<Instant>,
    /// When this node last wrote it or read it from Redis (`local_ttl_secs` counts from here).
    at: Instant,
    /// Write order: the smallest is evicted first at the cache's caps.
    seq: u64,
}

impl CacheEntry {
    /// Bytes charged against `limits.cache_max_bytes` (key, value, bookkeeping).
    fn size(&self, key: &(String, String)) -> usize {
        let v = match &self.value {
            CacheValue::Str(s) => s.len(),
            CacheValue::List(l) => l.iter().map(|i| i.len() + 24).sum(),
        };
        key.0.len() + key.1.len() + v + 64
    }
}

/// A named cache on Redis (`cache: [{name, url, local_ttl_secs}]`): writes go through the
/// link's queue; reads ask Redis with a short timeout unless the local copy is fresh or a
/// write of ours is still queued, and fall back to the local copy while Redis is down.
#[derive(Debug)]
struct Remote {
    link: Arc<crate::state::redis::RedisLink>,
    local_ttl: Option<Duration>,
    /// `local_max_entries`: most entries of this cache kept in this process.
    max_local: usize,
    /// Entries of this cache held here: exact after each eviction scan, else an upper bound
    /// (the node-wide caps evict without lowering it, which only brings the next scan
    /// forward).
    count: std::sync::atomic::AtomicUsize,
    /// Local entries dropped at `local_max_entries`.
    evicted: std::sync::atomic::AtomicU64,
}

/// The `cache` backend: named caches of string keys, shared by all cores, each kept in this
/// process and, when its entry has a `url:`, on Redis too (shared by nodes).
#[derive(Debug)]
pub struct Cache {
    shards: Vec<Mutex<HashMap<(String, String), CacheEntry>>>,
    /// Bytes held per shard (changed under that shard's lock).
    bytes: Vec<std::sync::atomic::AtomicUsize>,
    /// Caps per shard: (entries, bytes) from `limits.cache_max_*`.
    cap: (usize, usize),
    seq: std::sync::atomic::AtomicU64,
    hits: Arc<crate::limits::LimitHits>,
    names: Vec<String>,
    remote: HashMap<String, Remote>,
    /// Names made known after start by [`Cache::set_data`] (the SDK harness presets).
    added: Mutex<Vec<String>>,
}

impl Cache {
    /// A cache knowing `names` (`has_cache`); any name works for storage.
    pub fn new(names: Vec<String>) -> Self {
        let l = crate::limits::HostLimits::default();
        Self::bounded(names, l.cache_entries, l.cache_bytes, Arc::default())
    }

    /// A cache holding at most `entries` entries and `bytes` bytes over all names: past
    /// either, the oldest writes are evicted (an eighth of a shard at a time) and counted.
    pub fn bounded(
        names: Vec<String>,
        entries: usize,
        bytes: usize,
        hits: Arc<crate::limits::LimitHits>,
    ) -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            bytes: (0..SHARDS)
                .map(|_| std::sync::atomic::AtomicUsize::new(0))
                .collect(),
            cap: (
                entries.div_ceil(SHARDS).max(1),
                bytes.div_ceil(SHARDS).max(1),
            ),
            seq: std::sync::atomic::AtomicU64::new(0),
            hits,
            names,
            remote: HashMap::new(),
            added: Mutex::new(Vec::new()),
        }
    }

    /// Caches from `cache:` entries; those with a URL get a Redis link (a Redis that is down
    /// at start is not an error: the node serves local state and replays writes later).
    pub fn from_specs(
        specs: &[crate::state::CacheSpec],
        entries: usize,
        bytes: usize,
        hits: Arc<crate::limits::LimitHits>,
        log: crate::state::StateLog,
    ) -> Result<Self, crate::state::redis::RedisSetupError> {
        let names = specs.iter().map(|s| s.name.clone()).collect();
        let mut c = Self::bounded(names, entries, bytes, hits);
        for s in specs {
            if let Some(url) = &s.url {
                let link = crate::state::redis::RedisLink::start(
                    url,
                    "cache",
                    s.read_timeout,
                    s.queue_cap,
                    Arc::clone(&log),
                )?;
                c.remote.insert(
                    s.name.clone(),
                    Remote {
                        link,
                        local_ttl: s.local_ttl,
                        max_local: s.local_max_entries.max(1),
                        count: std::sync::atomic::AtomicUsize::new(0),
                        evicted: std::sync::atomic::AtomicU64::new(0),
                    },
                );
            }
        }
        Ok(c)
    }

    /// `siphon_state_*{backend="cache:NAME"}` lines for each Redis-backed cache.
    pub fn render_metrics(&self, out: &mut String) {
        use std::fmt::Write as _;
        for (name, r) in &self.remote {
            r.link.stats().render(&format!("cache:{name}"), out);
            let _ = writeln!(
                out,
                "siphon_state_local_evictions_total{{backend=\"cache:{name}\"}} {}",
                r.evicted.load(std::sync::atomic::Ordering::Relaxed)
            );
        }
    }

    /// Keep the Redis cache `name` within `local_max_entries` here: past it, drop its oldest
    /// local entries (an eighth of the cap beyond, so the scan is amortised), counted. They
    /// are still on Redis and a read fetches them again; entries whose write is still queued
    /// (the only copy until Redis has it) are kept.
    fn enforce_local_max(&self, name: &str) {
        use std::sync::atomic::Ordering::Relaxed;
        let Some(r) = self.remote.get(name) else {
            return;
        };
        if r.count.load(Relaxed) <= r.max_local {
            return;
        }
        let mut mine: Vec<(u64, usize, String)> = Vec::new();
        for (i, s) in self.shards.iter().enumerate() {
            mine.extend(
                lock(s)
                    .iter()
                    .filter(|((n, _), _)| n == name)
                    .map(|((_, k), e)| (e.seq, i, k.clone())),
            );
        }
        let total = mine.len();
        let mut removed = 0usize;
        if total > r.max_local {
            let want = total - r.max_local + r.max_local / 8;
            mine.sort_unstable_by_key(|m| m.0);
            for (_, i, k) in mine {
                if removed >= want {
                    break;
                }
                if r.link.has_pending(&k) {
                    continue;
                }
                let key = (name.to_owned(), k);
                let mut g = lock(&self.shards[i]);
                if let Some(e) = g.remove(&key) {
                    let held = self.bytes[i].load(Relaxed).saturating_sub(e.size(&key));
                    self.bytes[i].store(held, Relaxed);
                    removed += 1;
                }
            }
        }
        r.count.store(total - removed, Relaxed);
        r.evicted.fetch_add(removed as u64, Relaxed);
    }

    /// Stop the Redis writers.
    pub fn close(&self) {
        for r in self.remote.values() {
            r.link.close();
        }
    }

    fn remote_read<T: redis::FromRedisValue>(&self, name: &str, key: &str, cmd: &str) -> Option<T> {
        let r = self.remote.get(name)?;
        let mut c = redis::cmd(cmd);
        c.arg(key);
        r.link.read(key, &c)
    }

    fn remote_write(&self, name: &str, key: &str, cmd: redis::Cmd) {
        if let Some(r) = self.remote.get(name) {
            r.link.enqueue(key.to_owned(), vec![cmd]);
        }
    }

    /// A local copy fresh enough to answer without asking Redis.
    fn local_fresh(&self, name: &str, key: &str) -> bool {
        let Some(r) = self.remote.get(name) else {
            return true;
        };
        let Some(ttl) = r.local_ttl else {
            return false;
        };
        self.with(name, key, |m, k| {
            m.get(&k).is_some_and(|e| e.at.elapsed() < ttl)
        })
    }

    fn with<R>(
        &self,
        name: &str,
        key: &str,
        f: impl FnOnce(&mut HashMap<(String, String), CacheEntry>, (String, String)) -> R,
    ) -> R {
        use std::sync::atomic::Ordering::Relaxed;
        let i = shard_of(key);
        let mut g = lock(&self.shards[i]);
        let k = (name.to_owned(), key.to_owned());
        let mut before = 0;
        let remote = self.remote.get(name);
        let was = remote.is_some() && g.contains_key(&k);
        if let Some(e) = g.get(&k) {
            before = e.size(&k);
            if e.expires.is_some_and(|t| t <= Instant::now()) {
                g.remove(&k);
            }
        }
        let probe = k.clone();
        let r = f(&mut g, k);
        let after = g.get(&probe).map_or(0, |e| e.size(&probe));
        if let Some(rm) = remote {
            match (was, g.contains_key(&probe)) {
                (false, true) => {
                    rm.count.fetch_add(1, Relaxed);
                }
                (true, false) => {
                    let _ = rm
                        .count
                        .fetch_update(Relaxed, Relaxed, |c| Some(c.saturating_sub(1)));
                }
                _ => {}
            }
        }
        let held = (self.bytes[i].load(Relaxed) + after).saturating_sub(before);
        self.bytes[i].store(held, Relaxed);
        if g.len() > self.cap.0 || held > self.cap.1 {
            self.evict(i, &mut g);
        }
        r
    }

    /// Drop the oldest eighth of a shard (expired entries first) until it is within its caps.
    fn evict(&self, i: usize, g: &mut HashMap<(String, String), CacheEntry>) {
        use std::sync::atomic::Ordering::Relaxed;
        let now = Instant::now();
        let n0 = g.len();
        g.retain(|_, e| e.expires.is_none_or(|t| t > now));
        let mut held: usize = g.iter().map(|(k, e)| e.size(k)).sum();
        while !g.is_empty() && (g.len() > self.cap.0 || held > self.cap.1) {
            let n = (g.len() / 8).max(1);
            for k in crate::limits::oldest(g, n, |e| e.seq) {
                if let Some(e) = g.remove(&k) {
                    held = held.saturating_sub(e.size(&k));
                }
            }
        }
        self.bytes[i].store(held, Relaxed);
        self.hits
            .cache_evicted
            .fetch_add((n0 - g.len()) as u64, Relaxed);
    }

    fn next_seq(&self) -> u64 {
        self.seq.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    }

    /// Entries and bytes held (all names).
    pub fn usage(&self) -> (usize, usize) {
        let entries = self.shards.iter().map(|s| lock(s).len()).sum();
        let bytes = self
            .bytes
            .iter()
            .map(|b| b.load(std::sync::atomic::Ordering::Relaxed))
            .sum();
        (entries, bytes)
    }

    /// `cache.has_cache(name)`.
    pub fn has(&self, name: &str) -> bool {
        self.names.iter().any(|n| n == name) || lock(&self.added).iter().any(|n| n == name)
    }

    /// Create or replace the named cache `name` with `data` (no TTL); `has(name)` is true
    /// afterwards. The SDK harness presets test data with it (`harness.cache.set_data`).
    pub fn set_data(&self, name: &str, data: &[(String, String)]) {
        for (i, shard) in self.shards.iter().enumerate() {
            let mut g = lock(shard);
            g.retain(|(n, _), _| n != name);
            let held = g.iter().map(|(k, e)| e.size(k)).sum();
            self.bytes[i].store(held, std::sync::atomic::Ordering::Relaxed);
        }
        {
            let mut added = lock(&self.added);
            if !self.names.iter().any(|n| n == name) && !added.iter().any(|n| n == name) {
                added.push(name.to_owned());
            }
        }
        for (k, v) in data {
            self.store(name, k, v, None);
        }
    }

    /// Drop every entry of every cache and forget the names [`Cache::set_data`] added.
    pub fn clear(&self) {
        for (i, shard) in self.shards.iter().enumerate() {
            lock(shard).clear();
            self.bytes[i].store(0, std::sync::atomic::Ordering::Relaxed);
        }
        for r in self.remote.values() {
            r.count.store(0, std::sync::atomic::Ordering::Relaxed);
        }
        lock(&self.added).clear();
    }

    /// `cache.fetch`.
    pub fn fetch(&self, name: &str, key: &str) -> Option<String> {
        if !self.local_fresh(name, key) {
            // Ask Redis: `Some(v)` is its answer (a miss included); `None` = cannot tell now.
            if let Some(v) = self.remote_read::<Option<String>>(name, key, "GET") {
                let seq = self.next_seq();
                self.with(name, key, |m, k| match &v {
                    Some(s) => {
                        m.insert(
                            k,
                            CacheEntry {
                                value: CacheValue::Str(s.clone()),
                                expires: None,
                                at: Instant::now(),
                                seq,
                            },
                        );
                    }
                    None => {
                        m.remove(&k);
                    }
                });
                self.enforce_local_max(name);
                return v;
            }
        }
        self.with(name, key, |m, k| match m.get(&k).map(|e| &e.value) {
            Some(CacheValue::Str(s)) => Some(s.clone()),
            _ => None,
        })
    }

    /// `cache.store` with an optional TTL in seconds.
    pub fn store(&self, name: &str, key: &str, value: &str, ttl: Option<f64>) {
        let ttl = ttl.filter(|t| *t > 0.0);
        let expires = ttl.map(|t| Instant::now() + Duration::from_secs_f64(t));
        let seq = self.next_seq();
        self.with(name, key, |m, k| {
            m.insert(
                k,
                CacheEntry {
                    value: CacheValue::Str(value.to_owned()),
                    expires,
                    at: Instant::now(),
                    seq,
                },
            );
        });
        let mut c = redis::cmd("SET");
        c.arg(key).arg(value);
        if let Some(t) = ttl {
            c.arg("PX").arg(((t * 1000.0) as u64).max(1));
        }
        self.remote_write(name, key, c);
        self.enforce_local_max(name);
    }

    /// `cache.delete`.
    pub fn delete(&self, name: &str, key: &str) -> bool {
        let remote = self
            .remote_read::<bool>(name, key, "EXISTS")
            .unwrap_or(false);
        let local = self.with(name, key, |m, k| m.remove(&k).is_some());
        let mut c = redis::cmd("DEL");
        c.arg(key);
        self.remote_write(name, key, c);
        local || remote
    }

    /// `cache.exists`.
    pub fn exists(&self, name: &str, key: &str) -> bool {
        if let Some(v) = self.remote_read::<bool>(name, key, "EXISTS") {
            return v;
        }
        self.with(name, key, |m, k| m.contains_key(&k))
    }

    /// `cache.expire(name, key, ttl)`.
    pub fn expire(&self, name: &str, key: &str, ttl: f64) -> bool {
        let remote = self
            .remote_read::<bool>(name, key, "EXISTS")
            .unwrap_or(false);
        let local = self.with(name, key, |m, k| match m.get_mut(&k) {
            Some(e) => {
                e.expires = Some(Instant::now() + Duration::from_secs_f64(ttl.max(0.0)));
                true
            }
            None => false,
        });
        let mut c = redis::cmd("PEXPIRE");
        c.arg(key).arg(((ttl.max(0.0) * 1000.0) as u64).max(1));
        self.remote_write(name, key, c);
        local || remote
    }

    /// `cache.list_push`: returns the new length (of this node's copy for a Redis cache:
    /// the RPUSH is queued, not awaited).
    pub fn list_push(&self, name: &str, key: &str, item: &str) -> usize {
        let mut c = redis::cmd("RPUSH");
        c.arg(key).arg(item);
        self.remote_write(name, key, c);
        let seq = self.next_seq();
        let n = self.with(name, key, |m, k| {
            let e = m.entry(k).or_insert_with(|| CacheEntry {
                value: CacheValue::List(Vec::new()),
                expires: None,
                at: Instant::now(),
                seq,
            });
            if let CacheValue::Str(_) = e.value {
                e.value = CacheValue::List(Vec::new());
            }
            match &mut e.value {
                CacheValue::List(l) => {
                    l.push(item.to_owned());
                    l.len()
                }
                CacheValue::Str(_) => 0,
            }
        });
        self.enforce_local_max(name);
        n
    }

    /// `cache.list_pop_all`. On Redis: LRANGE + DEL in one transaction, so items pushed by
    /// any node are taken exactly once; while Redis cannot answer, this node's copy.
    pub fn list_pop_all(&self, name: &str, key: &str) -> Vec<String> {
        let local = self.with(name, key, |m, k| match m.remove(&k).map(|e| e.value) {
            Some(CacheValue::List(l)) => l,
            _ => Vec::new(),
        });
        if let Some(r) = self.remote.get(name) {
            let mut p = redis::pipe();
            p.atomic()
                .cmd("LRANGE")
                .arg(key)
                .arg(0)
                .arg(-1)
                .cmd("DEL")
                .arg(key)
                .ignore();
            if let Some((items,)) = r.link.read_with::<(Vec<String>,)>(key, |c| p.query(c)) {
                return items;
            }
            let mut c = redis::cmd("DEL");
            c.arg(key);
            r.link.enqueue(key.to_owned(), vec![c]);
        }
        local
    }

    /// `cache.list_len`.
    pub fn list_len(&self, name: &str, key: &str) -> usize {
        if let Some(n) = self.remote_read::<usize>(name, key, "LLEN") {
            return n;
        }
        self.with(name, key, |m, k| match m.get(&k).map(|e| &e.value) {
            Some(CacheValue::List(l)) => l.len(),
            _ => 0,
        })
    }
}

pub use siphon_sip::registrar::{Binding, RegistrarConfig};

/// What `registrar.save` decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SaveOutcome {
    /// Answer 200 OK with these headers (Contact list, Path); `events` for `on_change`.
    Ok {
        /// Normalised AoR.
        aor: String,
        /// `(aor, registered|refreshed|deregistered|expired)` changes, in order.
        events: Vec<(String, &'static str)>,
        /// Headers for the 200 OK.
        headers: Vec<(String, String)>,
    },
    /// Reject with this status and headers (400, 423 with Min-Expires, 403, 503 ...).
    Reject {
        /// Status code.
        status: u16,
        /// Reason phrase.
        reason: &'static str,
        /// Extra headers for the response.
        headers: Vec<(String, String)>,
    },
}

/// The shared location service: `siphon_sip::registrar` (RFC 3261 §10.3) over its in-memory
/// store, given the wall clock here (the edge crate is sans-IO).
pub struct Registrar {
    inner: siphon_sip::registrar::Registrar,
    /// Writes of a durable or shared backend; `None` for memory.
    commits: Option<Arc<crate::state::CommitLog>>,
    /// Backend label and counters for `/metrics`.
    stats: Option<(&'static str, Arc<crate::state::BackendStats>)>,
    /// Stops the backend's writer (flushing what the local store has pending).
    closer: Option<Box<dyn Fn() + Send + Sync>>,
    /// Node-wide caps (`limits.max_registrar_aors/bindings`) and the hit counter.
    limits: crate::limits::HostLimits,
    hits: Arc<crate::limits::LimitHits>,
    /// Bindings counted at the last full count (at most once a second) and when.
    counted: Mutex<(usize, Option<Instant>)>,
}

impl std::fmt::Debug for Registrar {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registrar").finish_non_exhaustive()
    }
}

impl Default for Registrar {
    fn default() -> Self {
        Self::new(RegistrarConfig::default())
    }
}

/// `sip:IP:PORT;transport=x` (IPv6 in brackets) for a REGISTER's source.
pub fn received_uri(source: std::net::SocketAddr, transport: &str) -> String {
    format!("sip:{source};transport={transport}")
}

fn aor_of(uri: &str) -> Option<siphon_sip::registrar::Aor> {
    siphon_sip::registrar::Aor::from_uri(addr_uri(uri)).ok()
}

impl Registrar {
    /// An empty in-memory store with these limits.
    pub fn new(cfg: RegistrarConfig) -> Self {
        Self::bounded(cfg, crate::limits::HostLimits::default(), Arc::default())
    }

    /// A store refusing new AoRs past `limits.registrar_aors` and new bindings past
    /// `limits.registrar_bindings` (503 with `Retry-After`).
    pub fn bounded(
        cfg: RegistrarConfig,
        limits: crate::limits::HostLimits,
        hits: Arc<crate::limits::LimitHits>,
    ) -> Self {
        let store = Arc::new(siphon_sip::registrar::MemoryLocationStore::new());
        Self {
            inner: siphon_sip::registrar::Registrar::new(cfg, store),
            limits,
            hits,
            counted: Mutex::new((0, None)),
            commits: None,
            stats: None,
            closer: None,
        }
    }

    /// The registrar on `backend`: for `local`, the file is opened and what has not expired
    /// is loaded before this returns; for `redis`, a snapshot is loaded when Redis answers.
    /// Returns the registrar and the number of bindings loaded.
    pub fn open(
        cfg: RegistrarConfig,
        backend: &crate::state::RegistrarBackend,
        limits: crate::limits::HostLimits,
        hits: Arc<crate::limits::LimitHits>,
        log: crate::state::StateLog,
    ) -> Result<(Self, usize), String> {
        use crate::state::RegistrarBackend as B;
        match backend {
            B::Memory => Ok((Self::bounded(cfg, limits, hits), 0)),
            B::Local {
                path,
                commit_timeout,
            } => {
                let (store, n) = crate::state::local::LocalLocationStore::open(
                    path,
                    SystemTime::now(),
                    *commit_timeout,
                    log,
                )
                .map_err(|e| e.to_string())?;
                let store = Arc::new(store);
                let closer = Arc::clone(&store);
                Ok((
                    Self {
                        commits: Some(Arc::clone(store.commits())),
                        stats: Some(("local", Arc::clone(store.stats()))),
                        closer: Some(Box::new(move || closer.close())),
                        inner: siphon_sip::registrar::Registrar::new(cfg, store),
                        limits,
                        hits,
                        counted: Mutex::new((0, None)),
                    },
                    n,
                ))
            }
            B::Redis(settings) => {
                let (store, n) = crate::state::redis::RedisLocationStore::open(settings, log)
                    .map_err(|e| e.to_string())?;
                let store = Arc::new(store);
                let link = Arc::clone(store.link());
                Ok((
                    Self {
                        commits: Some(Arc::clone(link.commits())),
                        stats: Some(("redis", Arc::clone(link.stats()))),
                        closer: Some(Box::new(move || link.close())),
                        inner: siphon_sip::registrar::Registrar::new(cfg, store),
                        limits,
                        hits,
                        counted: Mutex::new((0, None)),
                    },
                    n,
                ))
            }
        }
    }

    /// The commit log a REGISTER's 200 OK waits on (`None`: memory, nothing to wait for).
    pub fn commits(&self) -> Option<&Arc<crate::state::CommitLog>> {
        self.commits.as_ref()
    }

    /// `siphon_state_*{backend=...}` lines for a durable or shared backend.
    pub fn render_metrics(&self, out: &mut String) {
        if let Some((label, st)) = &self.stats {
            st.render(label, out);
            if let Some(c) = &self.commits {
                use std::fmt::Write as _;
                let _ = writeln!(
                    out,
                    "siphon_state_commit_timeouts_total{{backend=\"{label}\"}} {}",
                    c.timed_out()
                );
            }
        }
    }

    /// Flush and stop the backend's writer (shutdown).
    pub fn close(&self) {
        if let Some(c) = &self.closer {
            c();
        }
    }

    /// Whether `rr` must be refused at a node-wide cap: a new AoR past `registrar_aors`, or
    /// a contact not bound yet past `registrar_bindings` (refreshes and removals pass).
    fn over_cap(&self, rr: &siphon_sip::registrar::RegisterRequest) -> bool {
        use siphon_sip::registrar::ContactEntry;
        let adds: Vec<&str> = rr
            .contacts
            .iter()
            .filter_map(|c| match c {
                ContactEntry::Binding(b) if b.expires.or(rr.expires) != Some(0) => {
                    Some(b.uri.as_str())
                }
                _ => None,
            })
            .collect();
        if adds.is_empty() {
            return false;
        }
        let store = self.inner.store();
        let existing = store.get(&rr.aor).unwrap_or_default();
        let l = self.limits;
        if existing.is_empty()
            && l.registrar_aors > 0
            && store.aor_count().unwrap_or(0) >= l.registrar_aors
        {
            return true;
        }
        if l.registrar_bindings == 0 || adds.iter().all(|u| existing.iter().any(|b| b.uri == *u)) {
            return false;
        }
        // Counting every binding is O(AoRs): do it at most once a second and charge each
        // admitted REGISTER its new contacts meanwhile (an upper bound until the next count).
        let mut g = lock(&self.counted);
        let now = Instant::now();
        if g.1
            .is_none_or(|t| now.duration_since(t) >= Duration::from_secs(1))
        {
            *g = (store.binding_count().unwrap_or(0), Some(now));
        }
        if g.0 + adds.len() > l.registrar_bindings {
            return true;
        }
        g.0 += adds.len();
        false
    }

    /// Process a REGISTER (`registrar.save`) that came from `source` over `transport`
    /// (`udp`, `tcp` ...): update bindings, say how to answer. Each binding records the source
    /// as its `received` URI, `sip:IP:PORT;transport=x` (OpenSIPS' `received_avp` form, as
    /// SIPhon's `Contact.received`), which is also the flow a fork to it goes over.
    pub fn save(
        &self,
        req: &SipMessage,
        source: std::net::SocketAddr,
        transport: &str,
        auth_user: Option<&str>,
    ) -> SaveOutcome {
        self.save_with(req, Some(received_uri(source, transport)), auth_user)
    }

    /// Write the bindings of a REGISTER that came from nowhere (no `received`): the SDK
    /// harness seeds the location service with it (`harness.registrar.add_contact`).
    pub fn seed(&self, req: &SipMessage) -> SaveOutcome {
        self.save_with(req, None, None)
    }

    fn save_with(
        &self,
        req: &SipMessage,
        received: Option<String>,
        auth_user: Option<&str>,
    ) -> SaveOutcome {
        let bad = |reason| SaveOutcome::Reject {
            status: 400,
            reason,
            headers: Vec::new(),
        };
        let Ok(msg) = req.to_message() else {
            return bad("Bad Request");
        };
        let Ok(mut rr) = siphon_sip::registrar::RegisterRequest::from_message(&msg) else {
            return bad("Bad Request");
        };
        rr.received = received;
        rr.auth_user = auth_user.map(str::to_owned);
        if self.over_cap(&rr) {
            self.hits
                .registrar
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            return SaveOutcome::Reject {
                status: 503,
                reason: "Service Unavailable",
                headers: vec![(
                    "Retry-After".into(),
                    self.limits.retry_after_secs.to_string(),
                )],
            };
        }
        match self.inner.register(SystemTime::now(), &rr) {
            Ok(out) => {
                let path = req
                    .header_all("Supported")
                    .any(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case("path")));
                SaveOutcome::Ok {
                    aor: rr.aor.as_str().to_owned(),
                    events: out
                        .events
                        .iter()
                        .map(|e| (e.aor.as_str().to_owned(), e.kind.as_str()))
                        .collect(),
                    headers: out
                        .reply_headers(&rr, path)
                        .into_iter()
                        .map(|(n, v)| (n.to_owned(), v))
                        .collect(),
                }
            }
            Err(e) => {
                let (status, reason) = e.status();
                SaveOutcome::Reject {
                    status,
                    reason,
                    headers: e
                        .extra_headers()
                        .into_iter()
                        .map(|(n, v)| (n.to_owned(), v))
                        .collect(),
                }
            }
        }
    }

    /// Live bindings of an AoR in lookup order (q, then most recent).
    pub fn lookup(&self, uri: &str) -> Vec<Binding> {
        aor_of(uri)
            .and_then(|a| self.inner.lookup(SystemTime::now(), &a).ok())
            .unwrap_or_default()
    }

    /// Remove every binding of an AoR (`deregistered`); returns whether any existed.
    pub fn remove(&self, uri: &str) -> bool {
        aor_of(uri)
            .and_then(|a| self.inner.remove(SystemTime::now(), &a).ok())
            .flatten()
            .is_some()
    }

    /// Expire every binding of an AoR now (`expired`); returns whether any existed.
    pub fn expire(&self, uri: &str) -> bool {
        aor_of(uri)
            .and_then(|a| self.inner.expire(SystemTime::now(), &a).ok())
            .flatten()
            .is_some()
    }

    /// Remove expired bindings; returns the `(aor, "expired")` changes.
    pub fn sweep(&self) -> Vec<(String, &'static str)> {
        self.inner
            .sweep(SystemTime::now())
            .map(|evs| {
                evs.iter()
                    .map(|e| (e.aor.as_str().to_owned(), e.kind.as_str()))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Number of AoRs with bindings.
    pub fn aor_count(&self) -> usize {
        self.inner.aor_count().unwrap_or(0)
    }
}

/// Digest authentication (RFC 7616 / RFC 2617): `siphon_sip::auth` with users from config.
pub struct Auth {
    /// Default realm.
    pub realm: String,
    digest: siphon_sip::auth::DigestAuth,
    users: siphon_sip::auth::MemoryUserStore,
    /// The challenge set of a 401/407 to a request that came over UDP (`auth.udp_challenge`).
    udp_offer: siphon_sip::auth::Offer,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Auth")
            .field("realm", &self.realm)
            .finish_non_exhaustive()
    }
}

/// Which header a digest check reads and which challenge it answers with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DigestMode {
    /// `Authorization` / 401 `WWW-Authenticate`.
    Www,
    /// `Proxy-Authorization` / 407 `Proxy-Authenticate`.
    Proxy,
}

/// Result of a digest check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DigestCheck {
    /// Valid credentials for this user.
    Ok(String),
    /// Not accepted; the challenge response to send.
    Challenge {
        /// 401 or 407.
        status: u16,
        /// Reason phrase.
        reason: &'static str,
        /// `WWW-Authenticate`/`Proxy-Authenticate` values.
        headers: Vec<(String, String)>,
        /// Credentials were present and wrong (not absent, not merely stale): a failed
        /// authentication for `security.failed_auth_ban`.
        failed: bool,
    },
}

impl Auth {
    /// Users from config (`auth.users`), the default realm and a per-process nonce secret;
    /// `uri_check` and `local_hosts` decide which digest `uri` directives are accepted
    /// (`auth.digest_uri_check`; `domain.local`, listen and advertised addresses).
    pub fn new(
        realm: String,
        users: HashMap<String, String>,
        uri_check: siphon_sip::auth::DigestUriCheck,
        local_hosts: Vec<String>,
        nc_capacity: usize,
    ) -> Self {
        Self::with_nonces(
            realm,
            users,
            uri_check,
            local_hosts,
            nc_capacity,
            None,
            None,
        )
    }

    /// [`Auth::new`] with `auth.nonce_secret` (nodes sharing it, and this node after a
    /// restart, accept each other's challenges; a random per-process secret when `None`) and
    /// `auth.nonce_ttl_secs`.
    pub fn with_nonces(
        realm: String,
        users: HashMap<String, String>,
        uri_check: siphon_sip::auth::DigestUriCheck,
        local_hosts: Vec<String>,
        nc_capacity: usize,
        nonce_secret: Option<&str>,
        nonce_ttl: Option<Duration>,
    ) -> Self {
        Self::with_challenges(
            realm,
            users,
            uri_check,
            local_hosts,
            nc_capacity,
            nonce_secret,
            nonce_ttl,
            &[],
            siphon_sip::auth::Offer::One,
        )
    }

    /// [`Auth::with_nonces`] with `auth.algorithms` (empty: the digest default, MD5 then
    /// SHA-256) and the challenge set offered over UDP (`auth.udp_challenge`).
    #[allow(clippy::too_many_arguments)]
    pub fn with_challenges(
        realm: String,
        users: HashMap<String, String>,
        uri_check: siphon_sip::auth::DigestUriCheck,
        local_hosts: Vec<String>,
        nc_capacity: usize,
        nonce_secret: Option<&str>,
        nonce_ttl: Option<Duration>,
        algorithms: &[siphon_sip::auth::Algorithm],
        udp_offer: siphon_sip::auth::Offer,
    ) -> Self {
        let store = siphon_sip::auth::MemoryUserStore::new();
        for (u, p) in users {
            store.insert(None, &u, siphon_sip::auth::Credential::Password(p));
        }
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let secret =
            nonce_secret.map_or_else(|| format!("{now:x}.{}", std::process::id()), str::to_owned);
        let mut config = siphon_sip::auth::DigestConfig::new(&realm);
        if let Some(ttl) = nonce_ttl {
            config.nonce_ttl = ttl;
        }
        config.uri_check = uri_check;
        config.local_hosts = local_hosts;
        config.nc_capacity = nc_capacity.max(1);
        if !algorithms.is_empty() {
            config.algorithms = algorithms.to_vec();
        }
        let digest = siphon_sip::auth::DigestAuth::new(config, secret.as_bytes(), now as u64);
        Self {
            realm,
            digest,
            users: store,
            udp_offer,
        }
    }

    /// Add or replace a user: `realm` `None` matches every realm (as `auth.users` in config).
    pub fn add_user(&self, realm: Option<&str>, username: &str, password: &str) {
        self.users.insert(
            realm,
            username,
            siphon_sip::auth::Credential::Password(password.to_owned()),
        );
    }

    /// `auth.generate_nonce`.
    pub fn nonce(&self) -> String {
        self.digest.generate_nonce(SystemTime::now(), None)
    }

    /// `auth.validate_nonce`.
    pub fn validate_nonce(&self, nonce: &str) -> bool {
        self.digest.validate_nonce(SystemTime::now(), None, nonce)
    }

    /// Check the request's credentials against `password`/`ha1` or the configured users.
    /// `transport` is the one it arrived on: over `udp` the challenge set is `auth.udp_challenge`'s.
    pub fn check(
        &self,
        req: &SipMessage,
        transport: &str,
        mode: DigestMode,
        realm: Option<&str>,
        password: Option<&str>,
        ha1: Option<&str>,
    ) -> DigestCheck {
        let (kind, header) = match mode {
            DigestMode::Www => (siphon_sip::auth::AuthKind::Www, "Authorization"),
            DigestMode::Proxy => (siphon_sip::auth::AuthKind::Proxy, "Proxy-Authorization"),
        };
        let secret = match (ha1, password) {
            (Some(h), _) => Some(siphon_sip::auth::Credential::Ha1 {
                algorithm: siphon_sip::auth::Algorithm::Md5,
                ha1: h.to_owned(),
            }),
            (None, Some(p)) => Some(siphon_sip::auth::Credential::Password(p.to_owned())),
            (None, None) => None,
        };
        let info = siphon_sip::auth::RequestInfo {
            method: req.method(),
            request_uri: Some(req.ruri()),
            realm,
            secret: secret.as_ref(),
        };
        let offer = if transport.eq_ignore_ascii_case("udp") {
            self.udp_offer
        } else {
            siphon_sip::auth::Offer::All
        };
        match self.digest.require_offering(
            SystemTime::now(),
            kind,
            &info,
            req.header_all(header),
            &self.users,
            offer,
        ) {
            Ok(ok) => DigestCheck::Ok(ok.username),
            Err((e, ch)) => DigestCheck::Challenge {
                failed: e.is_failure(),
                status: ch.status,
                reason: ch.reason,
                headers: ch
                    .header_values
                    .into_iter()
                    .map(|v| (ch.header_name.to_owned(), v))
                    .collect(),
            },
        }
    }
}

/// Sliding-window counters for `proxy.rate_limit(request, window, max)`, keyed by source IP.
/// At most `cap` keys (`limits.rate_limit_keys`): past it the least recently used eighth is
/// evicted (counted), so spoofed sources cannot grow it.
#[derive(Debug)]
pub struct RateLimiter {
    map: Mutex<HashMap<String, (Instant, u32, Instant)>>,
    cap: usize,
    hits: Arc<crate::limits::LimitHits>,
}

impl Default for RateLimiter {
    fn default() -> Self {
        Self::bounded(
            crate::limits::HostLimits::default().rate_limit_keys,
            Arc::default(),
        )
    }
}

impl RateLimiter {
    /// A limiter remembering at most `cap` keys.
    pub fn bounded(cap: usize, hits: Arc<crate::limits::LimitHits>) -> Self {
        Self {
            map: Mutex::new(HashMap::new()),
            cap: cap.max(1),
            hits,
        }
    }

    /// Count one request for `key`; false once `max` is exceeded within `window`.
    pub fn allow(&self, key: &str, window: Duration, max: u32) -> bool {
        let now = Instant::now();
        let mut m = lock(&self.map);
        if m.len() >= self.cap && !m.contains_key(key) {
            let n = (self.cap / 8).max(1);
            let epoch = now.checked_sub(Duration::from_secs(1 << 20)).unwrap_or(now);
            for k in crate::limits::oldest(&m, n, |e| {
                u64::try_from(e.2.saturating_duration_since(epoch).as_micros()).unwrap_or(u64::MAX)
            }) {
                m.remove(&k);
            }
            self.hits
                .rate_limit_evicted
                .fetch_add(n as u64, std::sync::atomic::Ordering::Relaxed);
        }
        let e = m.entry(key.to_owned()).or_insert((now, 0, now));
        if now.duration_since(e.0) >= window {
            e.0 = now;
            e.1 = 0;
        }
        e.1 += 1;
        e.2 = now;
        e.1 <= max
    }

    /// Keys remembered.
    pub fn len(&self) -> usize {
        lock(&self.map).len()
    }

    /// Whether no key is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Kind of a user metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricKind {
    /// Monotonic counter.
    Counter,
    /// Settable gauge.
    Gauge,
    /// Bucketed histogram.
    Histogram,
}

#[derive(Debug)]
struct Family {
    kind: MetricKind,
    help: String,
    labels: Vec<String>,
    buckets: Vec<f64>,
    // label values -> (value or sum, count, bucket counts)
    series: BTreeMap<Vec<String>, (f64, u64, Vec<u64>)>,
}

/// The `metrics` namespace registry (user metrics plus the engine's own), Prometheus text out.
#[derive(Debug)]
pub struct Metrics {
    families: Mutex<BTreeMap<String, Family>>,
    /// Label sets per family (`limits.max_metric_series`); updates of new ones past it are
    /// dropped and counted.
    series_cap: usize,
    hits: Arc<crate::limits::LimitHits>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::bounded(
            crate::limits::HostLimits::default().metric_series,
            Arc::default(),
        )
    }
}

/// Default histogram buckets (Prometheus client defaults).
const DEFAULT_BUCKETS: [f64; 11] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

impl Metrics {
    /// A registry keeping at most `series_cap` label sets per family.
    pub fn bounded(series_cap: usize, hits: Arc<crate::limits::LimitHits>) -> Self {
        Self {
            families: Mutex::new(BTreeMap::new()),
            series_cap: series_cap.max(1),
            hits,
        }
    }

    /// Declare (or re-adopt on reload) a metric family.
    pub fn declare(
        &self,
        kind: MetricKind,
        name: &str,
        help: &str,
        labels: Vec<String>,
        buckets: Option<Vec<f64>>,
    ) {
        let mut f = lock(&self.families);
        f.entry(name.to_owned()).or_insert_with(|| Family {
            kind,
            help: help.to_owned(),
            labels,
            buckets: buckets.unwrap_or_else(|| DEFAULT_BUCKETS.to_vec()),
            series: BTreeMap::new(),
        });
    }

    /// Apply an operation: `inc`/`dec` add, `set` sets, `observe` records into a histogram.
    pub fn apply(&self, name: &str, label_values: Vec<String>, op: MetricOp, v: f64) -> bool {
        let mut f = lock(&self.families);
        let Some(fam) = f.get_mut(name) else {
            return false;
        };
        let nb = fam.buckets.len();
        if fam.series.len() >= self.series_cap && !fam.series.contains_key(&label_values) {
            self.hits
                .metric_series
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            return false;
        }
        let s = fam
            .series
            .entry(label_values)
            .or_insert_with(|| (0.0, 0, vec![0; nb]));
        match op {
            MetricOp::Add => s.0 += v,
            MetricOp::Set => s.0 = v,
            MetricOp::Observe => {
                s.0 += v;
                s.1 += 1;
                for (i, b) in fam.buckets.iter().enumerate() {
                    if v <= *b {
                        s.2[i] += 1;
                    }
                }
            }
        }
        true
    }

    /// Current value of a counter/gauge series (tests and admin).
    pub fn value(&self, name: &str, label_values: &[&str]) -> Option<f64> {
        let f = lock(&self.families);
        let key: Vec<String> = label_values.iter().map(|s| (*s).to_owned()).collect();
        f.get(name)?.series.get(&key).map(|s| s.0)
    }

    /// Prometheus text exposition of every family.
    pub fn render(&self) -> String {
        let f = lock(&self.families);
        let mut out = String::new();
        for (name, fam) in f.iter() {
            let kind = match fam.kind {
                MetricKind::Counter => "counter",
                MetricKind::Gauge => "gauge",
                MetricKind::Histogram => "histogram",
            };
            let _ = writeln!(out, "# HELP {name} {}\n# TYPE {name} {kind}", fam.help);
            for (lv, (v, count, buckets)) in &fam.series {
                let labels = fmt_labels(&fam.labels, lv, None);
                if fam.kind == MetricKind::Histogram {
                    for (b, c) in fam.buckets.iter().zip(buckets) {
                        let l = fmt_labels(&fam.labels, lv, Some(&b.to_string()));
                        let _ = writeln!(out, "{name}_bucket{l} {c}");
                    }
                    let l = fmt_labels(&fam.labels, lv, Some("+Inf"));
                    let _ = writeln!(
                        out,
                        "{name}_bucket{l} {count}\n{name}_sum{labels} {v}\n{name}_count{labels} {count}"
                    );
                } else {
                    let _ = writeln!(out, "{name}{labels} {v}");
                }
            }
        }
        out
    }
}

/// A metric update.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricOp {
    /// Add (negative for `dec`).
    Add,
    /// Set a gauge.
    Set,
    /// Histogram observation.
    Observe,
}

fn fmt_labels(names: &[String], values: &[String], le: Option<&str>) -> String {
    let mut parts: Vec<String> = names
        .iter()
        .zip(values)
        .map(|(n, v)| format!("{n}=\"{}\"", v.replace('\\', "\\\\").replace('"', "\\\"")))
        .collect();
    if let Some(le) = le {
        parts.push(format!("le=\"{le}\""));
    }
    if parts.is_empty() {
        String::new()
    } else {
        format!("{{{}}}", parts.join(","))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn register(contact: &str, expires: Option<u32>) -> SipMessage {
        let exp = expires
            .map(|e| format!("Expires: {e}\r\n"))
            .unwrap_or_default();
        let raw = format!(
            "REGISTER sip:example.com SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK1\r\nTo: <sip:alice@Example.com>\r\nFrom: <sip:alice@example.com>;tag=1\r\nCall-ID: r1\r\nCSeq: 1 REGISTER\r\nContact: {contact}\r\n{exp}\r\n"
        );
        SipMessage::parse(raw.as_bytes()).unwrap()
    }

    #[test]
    fn registrar_save_lookup_remove() {
        let r = Registrar::default();
        let out = r.save(
            &register(
                "<sip:alice@10.0.0.1:5060>;q=0.5, <sip:alice@10.0.0.2>",
                Some(600),
            ),
            "10.0.0.1:5060".parse().unwrap(),
            "udp",
            None,
        );
        let SaveOutcome::Ok {
            events, headers, ..
        } = out
        else {
            panic!("{out:?}")
        };
        assert_eq!(events[0].1, "registered");
        assert_eq!(headers.len(), 2);
        let l = r.lookup("sip:alice@example.com");
        assert_eq!(l[0].uri, "sip:alice@10.0.0.2");
        assert_eq!(
            l[0].received.as_deref(),
            Some("sip:10.0.0.1:5060;transport=udp")
        );
        assert_eq!(
            received_uri("[2001:db8::1]:5061".parse().unwrap(), "tls"),
            "sip:[2001:db8::1]:5061;transport=tls"
        );
        assert_eq!(r.aor_count(), 1);
        assert!(r.remove("<sip:alice@example.com>"));
        assert!(r.lookup("sip:alice@example.com").is_empty());
    }

    #[test]
    fn cache_and_metrics() {
        let c = Cache::new(vec!["main".into()]);
        c.store("main", "k", "v", None);
        assert_eq!(c.fetch("main", "k").as_deref(), Some("v"));
        assert_eq!(c.list_push("main", "l", "a"), 1);
        assert_eq!(c.list_push("main", "l", "b"), 2);
        assert_eq!(c.list_pop_all("main", "l"), vec!["a", "b"]);
        assert!(c.delete("main", "k"));
        let m = Metrics::default();
        m.declare(
            MetricKind::Counter,
            "x_total",
            "help",
            vec!["a".into()],
            None,
        );
        m.apply("x_total", vec!["1".into()], MetricOp::Add, 2.0);
        assert!(m.render().contains("x_total{a=\"1\"} 2"));
    }
}
