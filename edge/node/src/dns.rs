//! Name resolution off the reactors (DESIGN.md: "Nothing blocks a reactor thread: DNS (RFC
//! 3263) ... run off it and deliver results back to the owning core").
//!
//! One thread (`siphon-dns`) runs a small current-thread tokio runtime with a hickory
//! resolver. A core hands it a lookup ([`Dns::submit`]: the URIs of one routing decision) over a
//! bounded channel; the thread walks each through the sans-IO RFC 3263 [`Locator`] (NAPTR →
//! SRV → A/AAAA), asking the server only what the cache does not hold, and posts the ordered
//! targets back to that core ([`Resolved`], delivered as an engine message).
//!
//! The cache is ours (hickory's is off): per (name, record type), positive answers until their
//! smallest TTL, negative answers (NXDOMAIN, no records) until the SOA's negative TTL (30 s
//! when the server gives none), timeouts and failures never; at most `dns.cache_entries`
//! entries, and at the limit the entry closest to expiry goes (counted in
//! `siphon_dns_cache_evictions_total`). A core reads it under a short lock
//! ([`Dns::cached`]) so that cache hits and IP literals continue at once, without a round
//! trip to this thread; nothing on a reactor ever waits for a DNS server.

use std::collections::{BTreeSet, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hickory_resolver::config::{NameServerConfig, ResolverConfig, ResolverOpts};
use hickory_resolver::name_server::TokioConnectionProvider;
use hickory_resolver::proto::ProtoErrorKind;
use hickory_resolver::proto::rr::{RData, RecordType};
use hickory_resolver::proto::xfer::Protocol;
use hickory_resolver::{Name, ResolveError, TokioResolver};
use siphon_sip::locate::{Answer, LocateError, Locator, Naptr, Query, QueryKind, Request, Srv};
use siphon_sip::transaction::{Remote, Transport};

use crate::metrics::DnsMetrics;

/// Negative TTL when the server sends no SOA.
const DEFAULT_NEGATIVE_TTL: Duration = Duration::from_secs(30);
/// Longest any entry is kept, whatever the TTL says (one day, like common resolvers).
const MAX_TTL: Duration = Duration::from_secs(86_400);
/// Lookups waiting for the resolver thread; more are refused (the caller answers 503).
const QUEUE: usize = 4096;

/// Resolver settings (`dns:` in siphon.yaml).
#[derive(Debug, Clone)]
pub struct DnsConfig {
    /// Servers; empty: the host's resolv.conf.
    pub servers: Vec<SocketAddr>,
    /// Per-try timeout.
    pub timeout: Duration,
    /// Tries per query.
    pub attempts: usize,
    /// Cache bound, in entries.
    pub cache_entries: usize,
}

/// Why the resolver refused a lookup.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DnsError {
    /// Its queue is full.
    #[error("the resolver's queue is full")]
    Busy,
    /// Its thread has stopped.
    #[error("the resolver has stopped")]
    Stopped,
    /// The resolver thread could not start.
    #[error("the resolver thread did not start: {0}")]
    Start(std::io::ErrorKind),
}

/// The answer to one [`Dns::submit`]: per request, in order, its targets or why none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    /// The id the core gave.
    pub id: u64,
    /// One result per request.
    pub results: Vec<Result<Vec<Remote>, LocateError>>,
}

/// Posts a result to a core (the node wires this to the reactor mesh).
pub type Deliver = Box<dyn Fn(usize, Resolved) + Send + Sync>;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Rr {
    Naptr,
    Srv,
    A,
    Aaaa,
}

impl Rr {
    fn metric(self) -> usize {
        match self {
            Self::Naptr => 0,
            Self::Srv => 1,
            Self::A => 2,
            Self::Aaaa => 3,
        }
    }
}

type Key = (String, Rr);

#[derive(Debug)]
struct Entry {
    answer: Answer,
    expires: Instant,
    seq: u64,
}

/// The bounded TTL cache (see the module docs).
#[derive(Debug)]
struct Cache {
    map: HashMap<Key, Entry>,
    by_expiry: BTreeSet<(Instant, u64, Key)>,
    limit: usize,
    seq: u64,
}

impl Cache {
    fn new(limit: usize) -> Self {
        Self {
            map: HashMap::new(),
            by_expiry: BTreeSet::new(),
            limit,
            seq: 0,
        }
    }

    fn get(&self, key: &Key, now: Instant) -> Option<&Answer> {
        self.map
            .get(key)
            .filter(|e| e.expires > now)
            .map(|e| &e.answer)
    }

    /// Insert; returns how many entries were evicted to make room.
    fn insert(&mut self, key: Key, answer: Answer, ttl: Duration, now: Instant) -> u64 {
        if ttl.is_zero() || self.limit == 0 {
            return 0;
        }
        let expires = now + ttl.min(MAX_TTL);
        self.remove(&key);
        // Expired entries go first (not counted as evictions), then the closest to expiry.
        let mut evicted = 0;
        while let Some((at, _, k)) = self.by_expiry.first().cloned() {
            if at > now && self.map.len() < self.limit {
                break;
            }
            if at > now {
                evicted += 1;
            }
            self.remove(&k);
        }
        self.seq += 1;
        self.by_expiry.insert((expires, self.seq, key.clone()));
        self.map.insert(
            key,
            Entry {
                answer,
                expires,
                seq: self.seq,
            },
        );
        evicted
    }

    fn remove(&mut self, key: &Key) {
        if let Some(e) = self.map.remove(key) {
            self.by_expiry.remove(&(e.expires, e.seq, key.clone()));
        }
    }
}

struct Job {
    core: usize,
    id: u64,
    requests: Vec<Request>,
    seed: u64,
}

/// The resolver service. See the module docs.
pub struct Dns {
    inner: Arc<Inner>,
    jobs: tokio::sync::mpsc::Sender<Job>,
}

/// What the cores and the resolver thread share (not the job channel: dropping the last
/// [`Dns`] closes it and ends the thread).
struct Inner {
    cache: Mutex<Cache>,
    metrics: Arc<DnsMetrics>,
    supported: Vec<Transport>,
}

impl std::fmt::Debug for Dns {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dns")
            .field("supported", &self.inner.supported)
            .finish_non_exhaustive()
    }
}

fn resolver(config: &DnsConfig) -> TokioResolver {
    let provider = TokioConnectionProvider::default();
    let mut builder = if config.servers.is_empty() {
        match TokioResolver::builder(provider.clone()) {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!(error = %e, "no usable resolv.conf: names will not resolve (set dns.servers)");
                TokioResolver::builder_with_config(ResolverConfig::new(), provider)
            }
        }
    } else {
        let mut rc = ResolverConfig::new();
        for s in &config.servers {
            rc.add_name_server(NameServerConfig::new(*s, Protocol::Udp));
        }
        TokioResolver::builder_with_config(rc, provider)
    };
    let o: &mut ResolverOpts = builder.options_mut();
    o.timeout = config.timeout;
    o.attempts = config.attempts.max(1);
    // Our cache (bounded, counted) replaces hickory's.
    o.cache_size = 0;
    o.num_concurrent_reqs = 1;
    builder.build()
}

impl Dns {
    /// Start the resolver thread. Targets use only the `supported` transports.
    pub fn start(
        config: DnsConfig,
        supported: Vec<Transport>,
        metrics: Arc<DnsMetrics>,
        deliver: Deliver,
    ) -> Result<Arc<Self>, DnsError> {
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Job>(QUEUE);
        let inner = Arc::new(Inner {
            cache: Mutex::new(Cache::new(config.cache_entries)),
            metrics,
            supported,
        });
        let worker = Arc::clone(&inner);
        let deliver = Arc::new(deliver);
        let overall = config.timeout * u32::try_from(config.attempts.max(1) + 1).unwrap_or(3);
        std::thread::Builder::new()
            .name("siphon-dns".into())
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        tracing::error!(error = %e, "DNS runtime did not start");
                        return;
                    }
                };
                rt.block_on(async move {
                    let resolver = Arc::new(resolver(&config));
                    // The channel closes when the node drops its `Dns`: the thread ends.
                    while let Some(job) = rx.recv().await {
                        let (w, r, d) = (
                            Arc::clone(&worker),
                            Arc::clone(&resolver),
                            Arc::clone(&deliver),
                        );
                        tokio::spawn(async move {
                            let mut results = Vec::with_capacity(job.requests.len());
                            for (i, req) in job.requests.into_iter().enumerate() {
                                let seed = job.seed.wrapping_add(i as u64);
                                results.push(w.locate(&r, req, seed, overall).await);
                            }
                            d(
                                job.core,
                                Resolved {
                                    id: job.id,
                                    results,
                                },
                            );
                        });
                    }
                });
            })
            .map_err(|e| DnsError::Start(e.kind()))?;
        Ok(Arc::new(Self { inner, jobs: tx }))
    }

    /// The resolver's metrics.
    pub fn metrics(&self) -> &Arc<DnsMetrics> {
        &self.inner.metrics
    }

    /// Locate `request` without waiting: `Some` for an IP literal, or when every question the
    /// locate asks is answered by the cache (a cache hit); `None` when the resolver thread must
    /// ask ([`Self::submit`]). Never touches the network.
    pub fn cached(&self, request: &Request, seed: u64) -> Option<Result<Vec<Remote>, LocateError>> {
        let mut l = Locator::new(request.clone(), &self.inner.supported, seed);
        if l.next_query().is_none() {
            return Some(l.finish());
        }
        let now = Instant::now();
        let cache = self.inner.cache.lock().ok()?;
        let mut hits = 0;
        while let Some(q) = l.next_query() {
            let a = cached_answer(&cache, &q, now)?;
            hits += 1;
            l.answer(a);
        }
        drop(cache);
        self.inner
            .metrics
            .cache_hits
            .fetch_add(hits, std::sync::atomic::Ordering::Relaxed);
        Some(l.finish())
    }

    /// Queue a lookup of `requests` for `core`; the answer comes back as [`Resolved`] with `id`.
    pub fn submit(
        &self,
        core: usize,
        id: u64,
        requests: Vec<Request>,
        seed: u64,
    ) -> Result<(), DnsError> {
        use tokio::sync::mpsc::error::TrySendError;
        self.jobs
            .try_send(Job {
                core,
                id,
                requests,
                seed,
            })
            .map_err(|e| {
                self.inner
                    .metrics
                    .rejected
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                match e {
                    TrySendError::Full(_) => DnsError::Busy,
                    TrySendError::Closed(_) => DnsError::Stopped,
                }
            })
    }
}

impl Inner {
    /// Walk one request through the RFC 3263 locator, from the cache or the server.
    async fn locate(
        &self,
        resolver: &TokioResolver,
        request: Request,
        seed: u64,
        overall: Duration,
    ) -> Result<Vec<Remote>, LocateError> {
        let mut l = Locator::new(request, &self.supported, seed);
        while let Some(q) = l.next_query() {
            let a = self.ask(resolver, &q, overall).await;
            l.answer(a);
        }
        l.finish()
    }

    async fn ask(&self, resolver: &TokioResolver, q: &Query, overall: Duration) -> Answer {
        use std::sync::atomic::Ordering::Relaxed;
        if let Some(a) = self
            .cache
            .lock()
            .ok()
            .and_then(|c| cached_answer(&c, q, Instant::now()))
        {
            self.metrics.cache_hits.fetch_add(1, Relaxed);
            return a;
        }
        match q.kind {
            QueryKind::Naptr => self.query(resolver, &q.name, Rr::Naptr, overall).await,
            QueryKind::Srv => self.query(resolver, &q.name, Rr::Srv, overall).await,
            QueryKind::Addr => {
                let (a, aaaa) = tokio::join!(
                    self.query(resolver, &q.name, Rr::A, overall),
                    self.query(resolver, &q.name, Rr::Aaaa, overall)
                );
                merge_addrs(a, aaaa)
            }
        }
    }

    /// One question to the server (unless cached), its answer cached per its TTL.
    async fn query(
        &self,
        resolver: &TokioResolver,
        name: &str,
        rr: Rr,
        overall: Duration,
    ) -> Answer {
        use std::sync::atomic::Ordering::Relaxed;
        let key = (name.to_string(), rr);
        if let Some(a) = self
            .cache
            .lock()
            .ok()
            .and_then(|c| c.get(&key, Instant::now()).cloned())
        {
            self.metrics.cache_hits.fetch_add(1, Relaxed);
            return a;
        }
        self.metrics.cache_misses.fetch_add(1, Relaxed);
        let Ok(fqdn) = Name::from_ascii(format!("{name}.")) else {
            return Answer::NotFound;
        };
        let rtype = match rr {
            Rr::Naptr => RecordType::NAPTR,
            Rr::Srv => RecordType::SRV,
            Rr::A => RecordType::A,
            Rr::Aaaa => RecordType::AAAA,
        };
        let started = Instant::now();
        let result = tokio::time::timeout(overall, resolver.lookup(fqdn, rtype)).await;
        let now = Instant::now();
        let (answer, ttl, outcome) = match result {
            Err(_) => (Answer::Timeout, Duration::ZERO, 2),
            Ok(Ok(lookup)) => {
                let ttl = lookup.valid_until().saturating_duration_since(now);
                let answer = answer_of(rr, lookup.record_iter().map(|r| r.data()));
                let outcome = if matches!(&answer, Answer::NotFound) {
                    1
                } else {
                    0
                };
                (answer, ttl, outcome)
            }
            Ok(Err(e)) => classify(&e),
        };
        self.metrics
            .query(rr.metric(), outcome, now.saturating_duration_since(started));
        if matches!(
            answer,
            Answer::Naptr(_) | Answer::Srv(_) | Answer::Addrs(_) | Answer::NotFound
        ) && let Ok(mut c) = self.cache.lock()
        {
            let evicted = c.insert(key, answer.clone(), ttl, now);
            self.metrics.cache_evictions.fetch_add(evicted, Relaxed);
            self.metrics
                .cache_entries
                .store(c.map.len() as u64, Relaxed);
        }
        answer
    }
}

/// A locator question answered from the cache alone (A and AAAA both needed for addresses).
fn cached_answer(cache: &Cache, q: &Query, now: Instant) -> Option<Answer> {
    let get = |rr| cache.get(&(q.name.clone(), rr), now).cloned();
    match q.kind {
        QueryKind::Naptr => get(Rr::Naptr),
        QueryKind::Srv => get(Rr::Srv),
        QueryKind::Addr => Some(merge_addrs(get(Rr::A)?, get(Rr::Aaaa)?)),
    }
}

/// A and AAAA answers as one: IPv4 first; a timeout or failure only when neither has
/// addresses.
fn merge_addrs(a: Answer, aaaa: Answer) -> Answer {
    let mut ips = Vec::new();
    for x in [&a, &aaaa] {
        if let Answer::Addrs(v) = x {
            ips.extend(v.iter().copied());
        }
    }
    if !ips.is_empty() {
        return Answer::Addrs(ips);
    }
    match (a, aaaa) {
        (Answer::Timeout, _) | (_, Answer::Timeout) => Answer::Timeout,
        (Answer::Failed, _) | (_, Answer::Failed) => Answer::Failed,
        _ => Answer::NotFound,
    }
}

fn answer_of<'a>(rr: Rr, data: impl Iterator<Item = &'a RData>) -> Answer {
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    match rr {
        Rr::Naptr => {
            let v: Vec<Naptr> = data
                .filter_map(|d| match d {
                    RData::NAPTR(n) => Some(Naptr {
                        order: n.order(),
                        preference: n.preference(),
                        flags: text(n.flags()),
                        service: text(n.services()),
                        replacement: n.replacement().to_ascii(),
                    }),
                    _ => None,
                })
                .collect();
            if v.is_empty() {
                Answer::NotFound
            } else {
                Answer::Naptr(v)
            }
        }
        Rr::Srv => {
            let v: Vec<Srv> = data
                .filter_map(|d| match d {
                    RData::SRV(s) => Some(Srv {
                        priority: s.priority(),
                        weight: s.weight(),
                        port: s.port(),
                        target: s.target().to_ascii(),
                    }),
                    _ => None,
                })
                .collect();
            if v.is_empty() {
                Answer::NotFound
            } else {
                Answer::Srv(v)
            }
        }
        Rr::A | Rr::Aaaa => {
            let v: Vec<IpAddr> = data
                .filter_map(|d| match d {
                    RData::A(a) => Some(IpAddr::V4(a.0)),
                    RData::AAAA(a) => Some(IpAddr::V6(a.0)),
                    _ => None,
                })
                .collect();
            if v.is_empty() {
                Answer::NotFound
            } else {
                Answer::Addrs(v)
            }
        }
    }
}

/// A resolver error as (answer, cache TTL, outcome index in `DNS_OUTCOMES`).
fn classify(e: &ResolveError) -> (Answer, Duration, usize) {
    match e.proto().map(|p| p.kind()) {
        Some(ProtoErrorKind::NoRecordsFound { negative_ttl, .. }) => {
            let ttl =
                negative_ttl.map_or(DEFAULT_NEGATIVE_TTL, |s| Duration::from_secs(u64::from(s)));
            (Answer::NotFound, ttl, 1)
        }
        Some(ProtoErrorKind::Timeout) => (Answer::Timeout, Duration::ZERO, 2),
        _ if e.to_string().contains("timed out") => (Answer::Timeout, Duration::ZERO, 2),
        _ => (Answer::Failed, Duration::ZERO, 3),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: &str) -> Key {
        (n.to_string(), Rr::A)
    }

    #[test]
    fn cache_honours_ttl_and_evicts_the_closest_to_expiry_at_its_limit() {
        let now = Instant::now();
        let mut c = Cache::new(2);
        let a = Answer::Addrs(vec!["192.0.2.1".parse().unwrap()]);
        assert_eq!(
            c.insert(key("long"), a.clone(), Duration::from_secs(100), now),
            0
        );
        assert_eq!(
            c.insert(key("short"), a.clone(), Duration::from_secs(10), now),
            0
        );
        assert!(c.get(&key("short"), now + Duration::from_secs(9)).is_some());
        assert!(
            c.get(&key("short"), now + Duration::from_secs(10))
                .is_none()
        );
        // Full: the entry closest to expiry goes, and it is counted.
        assert_eq!(
            c.insert(key("new"), a.clone(), Duration::from_secs(50), now),
            1
        );
        assert!(c.get(&key("short"), now).is_none());
        assert!(c.get(&key("long"), now).is_some());
        assert_eq!(c.map.len(), 2);
        // Expired entries make room without counting as evictions.
        let later = now + Duration::from_secs(60);
        assert_eq!(
            c.insert(key("x"), a.clone(), Duration::from_secs(5), later),
            0
        );
        // TTL 0 is not cached.
        assert_eq!(c.insert(key("zero"), a, Duration::ZERO, now), 0);
        assert!(c.get(&key("zero"), now).is_none());
    }

    #[test]
    fn addresses_merge_v4_first_and_keep_what_answered() {
        let v4 = Answer::Addrs(vec!["192.0.2.1".parse().unwrap()]);
        let v6 = Answer::Addrs(vec!["2001:db8::1".parse().unwrap()]);
        assert_eq!(
            merge_addrs(v4.clone(), v6),
            Answer::Addrs(vec![
                "192.0.2.1".parse().unwrap(),
                "2001:db8::1".parse().unwrap()
            ])
        );
        assert_eq!(merge_addrs(v4.clone(), Answer::Timeout), v4);
        assert_eq!(
            merge_addrs(Answer::NotFound, Answer::Timeout),
            Answer::Timeout
        );
        assert_eq!(
            merge_addrs(Answer::NotFound, Answer::NotFound),
            Answer::NotFound
        );
    }
}
