//! Floods and scanners: upstream SIPhon's `security:` section (siphon-core-api.md §2) checked
//! by the reactor before any script runs.
//!
//! - `rate_limit {window_secs, max_requests, ban_duration_secs}`: a fixed window of requests
//!   per source IP (Kamailio's pike); past `max_requests` the source is banned for
//!   `ban_duration_secs` (a fixed ban: a legitimate client retrying on a timer serves it out).
//! - `failed_auth_ban {threshold, window_secs, ban_duration_secs, strong_signal_weight}`:
//!   present-but-wrong digest credentials count `strong_signal_weight` over TCP/TLS (the
//!   handshake validated the source) and 1 over UDP; a scanner `User-Agent` counts
//!   `strong_signal_weight`. At `threshold` within `window_secs` the source is banned; a
//!   further signal while banned slides the ban (at most 24 × `ban_duration_secs` from the
//!   moment it was raised). A successful authentication clears the count. A challenge for a
//!   request without credentials is not a signal (RFC 3261 §22.2 makes it the first leg).
//! - `scanner_block.user_agents`: case-insensitive substrings; a match is dropped silently.
//! - `trusted_cidrs`: never counted, limited or banned.
//!
//! A banned source costs one hash lookup per datagram (before the parse) and its TCP/TLS
//! connections are closed at accept and on their next bytes. Everything is bounded: at most
//! `max_tracked_sources` (ours) sources are remembered; past it the least recently seen
//! unbanned ones are evicted (counted). Not implemented: `apiban` and `firewall` (warned).
//!
//! Owns the per-source state and the counters behind `siphon_rate_limited_total`,
//! `siphon_scanner_blocked_total`, `siphon_banned_ips` and `siphon_auth_failures_total`.
//! Does not own the caps on tables and connections (`limits.rs`).

use std::collections::HashMap;
use std::fmt::Write as _;
use std::net::IpAddr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde::Deserialize;
use serde_yaml_ng::Value;

/// `security.rate_limit`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitConfig {
    /// Window length, seconds.
    pub window_secs: u32,
    /// Requests allowed per source within one window.
    pub max_requests: u32,
    /// Ban once over the limit (upstream default 3600 s).
    #[serde(default = "default_ban_duration_secs")]
    pub ban_duration_secs: u32,
}

fn default_ban_duration_secs() -> u32 {
    3600
}

/// `security.failed_auth_ban`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FailedAuthBanConfig {
    /// Weighted failures within `window_secs` that ban a source.
    pub threshold: u32,
    /// Counting window (upstream default 600 s).
    #[serde(default = "default_failed_auth_window_secs")]
    pub window_secs: u32,
    /// Ban length, seconds.
    pub ban_duration_secs: u32,
    /// Weight of a high-confidence signal (wrong credentials over TCP/TLS, scanner UA).
    #[serde(default = "default_strong_signal_weight")]
    pub strong_signal_weight: u32,
}

fn default_failed_auth_window_secs() -> u32 {
    600
}

fn default_strong_signal_weight() -> u32 {
    3
}

/// `security.scanner_block`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScannerBlockConfig {
    /// User-Agent substrings (case-insensitive).
    #[serde(default)]
    pub user_agents: Vec<String>,
}

/// `security:` (upstream keys, plus `max_tracked_sources`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SecurityConfig {
    /// Per-source request rate limit.
    pub rate_limit: Option<RateLimitConfig>,
    /// Ban after failed authentications.
    pub failed_auth_ban: Option<FailedAuthBanConfig>,
    /// Scanner User-Agents dropped silently.
    pub scanner_block: Option<ScannerBlockConfig>,
    /// Sources exempt from everything above (`10.0.0.0/8`, `192.0.2.7`, `2001:db8::/32`).
    pub trusted_cidrs: Vec<String>,
    /// Upstream APIBAN feed: not implemented (warned).
    pub apiban: Option<Value>,
    /// Upstream nftables offload: not implemented (warned).
    pub firewall: Option<Value>,
    /// Ours: most sources remembered (windows, failure counts, bans) node-wide.
    pub max_tracked_sources: usize,
}

impl Default for SecurityConfig {
    fn default() -> Self {
        Self {
            rate_limit: None,
            failed_auth_ban: None,
            scanner_block: None,
            trusted_cidrs: Vec::new(),
            apiban: None,
            firewall: None,
            max_tracked_sources: 100_000,
        }
    }
}

/// An address block (`ip/prefix`, or a bare IP for a single host).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    net: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// Parse `ip/prefix` or `ip`.
    pub fn parse(s: &str) -> Result<Self, String> {
        let (ip, prefix) = match s.trim().split_once('/') {
            Some((ip, p)) => (ip, Some(p)),
            None => (s.trim(), None),
        };
        let net: IpAddr = ip
            .parse()
            .map_err(|_| format!("`{s}` is not an IP address or CIDR block"))?;
        let max = if net.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("`{s}`: prefix must be 0..={max}"))?,
            None => max,
        };
        Ok(Self { net, prefix })
    }

    /// Whether `ip` lies in the block (an IPv4-mapped IPv6 address matches IPv4 blocks).
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        match (self.net, ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(n) & mask == u32::from(a) & mask
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(n) & mask == u128::from(a) & mask
            }
            _ => false,
        }
    }
}

/// Check `security:` values that need no I/O; `Err((key, message))` names the key.
pub fn validate(c: &SecurityConfig) -> Result<(), (&'static str, String)> {
    for s in &c.trusted_cidrs {
        Cidr::parse(s).map_err(|m| ("trusted_cidrs", m))?;
    }
    if let Some(r) = &c.rate_limit
        && (r.window_secs == 0 || r.max_requests == 0)
    {
        return Err((
            "rate_limit",
            "`rate_limit.window_secs` and `max_requests` must be at least 1".into(),
        ));
    }
    if let Some(f) = &c.failed_auth_ban
        && (f.threshold == 0 || f.window_secs == 0)
    {
        return Err((
            "failed_auth_ban",
            "`failed_auth_ban.threshold` and `window_secs` must be at least 1".into(),
        ));
    }
    if c.max_tracked_sources == 0 {
        return Err((
            "max_tracked_sources",
            "`security.max_tracked_sources` must be at least 1".into(),
        ));
    }
    Ok(())
}

/// What [`Security::check_request`] decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Go on (transactions, script).
    Allow,
    /// Scanner User-Agent: drop without an answer.
    Scanner,
    /// Over the rate limit, or banned: drop without an answer.
    RateLimited,
}

/// How a digest check ended, for `failed_auth_ban`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthSignal {
    /// Credentials accepted: the source's failure count is cleared.
    Success,
    /// Credentials present and wrong (or forged/replayed nonce): a failure.
    Failure,
}

#[derive(Debug, Clone, Copy)]
struct Policy {
    window: Duration,
    max: u32,
    ban: Duration,
}

#[derive(Debug, Clone, Copy)]
struct AuthPolicy {
    threshold: u32,
    window: Duration,
    ban: Duration,
    max_ban: Duration,
    strong: u32,
}

#[derive(Debug, Clone, Copy)]
struct Source {
    rate_start: Instant,
    rate_count: u32,
    fail_start: Instant,
    fail_count: u32,
    /// Until when it is banned; `hard` caps how far a sliding (auth) ban may be pushed.
    ban: Option<(Instant, Instant)>,
    last_seen: Instant,
}

impl Source {
    fn new(now: Instant) -> Self {
        Self {
            rate_start: now,
            rate_count: 0,
            fail_start: now,
            fail_count: 0,
            ban: None,
            last_seen: now,
        }
    }
    fn banned(&self, now: Instant) -> bool {
        self.ban.is_some_and(|(until, _)| until > now)
    }
}

const SHARDS: usize = 16;

/// Counters exported as metrics.
#[derive(Debug, Default)]
pub struct SecurityCounters {
    /// Requests dropped by the rate limit (the request that crossed it included).
    pub rate_limited: AtomicU64,
    /// Requests dropped for a scanner User-Agent.
    pub scanner_blocked: AtomicU64,
    /// Failed digest authentications (wrong credentials), from any source.
    pub auth_failures: AtomicU64,
    /// Datagrams, messages and connections dropped because their source was banned.
    pub banned_dropped: AtomicU64,
    /// Bans raised.
    pub bans_total: AtomicU64,
    /// Tracked sources evicted at `max_tracked_sources`.
    pub evicted: AtomicU64,
}

/// The node's `security:` state, shared by every core.
#[derive(Debug)]
pub struct Security {
    trusted: Vec<Cidr>,
    scanners: Vec<String>,
    rate: Option<Policy>,
    auth: Option<AuthPolicy>,
    shards: Vec<Mutex<HashMap<IpAddr, Source>>>,
    per_shard: usize,
    /// Bans that may still be live (an upper bound; 0 = skip the lookup).
    live_bans: AtomicUsize,
    /// Counters.
    pub counters: SecurityCounters,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn shard_of(ip: IpAddr) -> usize {
    let x = match ip {
        IpAddr::V4(v) => u64::from(u32::from(v)),
        IpAddr::V6(v) => {
            let n = u128::from(v);
            (n as u64) ^ ((n >> 64) as u64)
        }
    };
    (x.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 59) as usize % SHARDS
}

impl Security {
    /// From a validated `security:` section (invalid CIDRs are skipped; `validate` reports them).
    pub fn new(c: &SecurityConfig) -> Self {
        let rate = c.rate_limit.as_ref().map(|r| Policy {
            window: Duration::from_secs(u64::from(r.window_secs.max(1))),
            max: r.max_requests.max(1),
            ban: Duration::from_secs(u64::from(r.ban_duration_secs.max(1))),
        });
        let auth = c.failed_auth_ban.as_ref().map(|f| {
            let ban = Duration::from_secs(u64::from(f.ban_duration_secs.max(1)));
            AuthPolicy {
                threshold: f.threshold.max(1),
                window: Duration::from_secs(u64::from(f.window_secs.max(1))),
                ban,
                max_ban: ban.saturating_mul(24),
                strong: f.strong_signal_weight.max(1),
            }
        });
        Self {
            trusted: c
                .trusted_cidrs
                .iter()
                .filter_map(|s| Cidr::parse(s).ok())
                .collect(),
            scanners: c
                .scanner_block
                .as_ref()
                .map(|s| {
                    s.user_agents
                        .iter()
                        .map(|u| u.to_lowercase())
                        .filter(|u| !u.is_empty())
                        .collect()
                })
                .unwrap_or_default(),
            rate,
            auth,
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            per_shard: c.max_tracked_sources.div_ceil(SHARDS).max(1),
            live_bans: AtomicUsize::new(0),
            counters: SecurityCounters::default(),
        }
    }

    /// Whether any request check is configured (else [`Self::check_request`] always allows).
    pub fn active(&self) -> bool {
        self.rate.is_some() || !self.scanners.is_empty() || self.auth.is_some()
    }

    fn is_trusted(&self, ip: IpAddr) -> bool {
        self.trusted.iter().any(|c| c.contains(ip))
    }

    /// Whether `ip` is banned now: checked for every datagram and stream message before the
    /// parse, and at accept. One atomic load when nothing is banned.
    pub fn is_banned(&self, ip: IpAddr, now: Instant) -> bool {
        if self.live_bans.load(Ordering::Relaxed) == 0 {
            return false;
        }
        let banned = lock(&self.shards[shard_of(ip)])
            .get(&ip)
            .is_some_and(|s| s.banned(now));
        if banned && !self.is_trusted(ip) {
            self.counters.banned_dropped.fetch_add(1, Ordering::Relaxed);
            return true;
        }
        false
    }

    /// One parsed request from `ip` carrying `user_agent`: scanner block first (a scanner
    /// flood costs no rate-limit state), then the rate limit.
    pub fn check_request(&self, ip: IpAddr, user_agent: Option<&str>, now: Instant) -> Verdict {
        if !self.active() || self.is_trusted(ip) {
            return Verdict::Allow;
        }
        if let Some(ua) = user_agent
            && !self.scanners.is_empty()
        {
            let ua = ua.to_lowercase();
            if self.scanners.iter().any(|s| ua.contains(s.as_str())) {
                self.counters
                    .scanner_blocked
                    .fetch_add(1, Ordering::Relaxed);
                if let Some(a) = self.auth {
                    self.signal(ip, a.strong, now);
                }
                return Verdict::Scanner;
            }
        }
        let Some(p) = self.rate else {
            return Verdict::Allow;
        };
        let over = self.with_source(ip, now, |s| {
            if s.banned(now) {
                return true;
            }
            if now.duration_since(s.rate_start) >= p.window {
                s.rate_start = now;
                s.rate_count = 0;
            }
            s.rate_count = s.rate_count.saturating_add(1);
            if s.rate_count > p.max {
                s.rate_count = 0;
                s.ban = Some((now + p.ban, now + p.ban));
                return true;
            }
            false
        });
        if over {
            self.counters.rate_limited.fetch_add(1, Ordering::Relaxed);
            return Verdict::RateLimited;
        }
        Verdict::Allow
    }

    /// A digest check's outcome for a request from `ip` (`reliable`: over TCP/TLS).
    pub fn auth_signal(&self, ip: IpAddr, reliable: bool, signal: AuthSignal, now: Instant) {
        if signal == AuthSignal::Failure {
            self.counters.auth_failures.fetch_add(1, Ordering::Relaxed);
        }
        let Some(a) = self.auth else { return };
        if self.is_trusted(ip) {
            return;
        }
        match signal {
            AuthSignal::Success => {
                let mut g = lock(&self.shards[shard_of(ip)]);
                if let Some(s) = g.get_mut(&ip) {
                    s.fail_count = 0;
                }
            }
            AuthSignal::Failure => {
                let weight = if reliable { a.strong } else { 1 };
                self.signal(ip, weight, now);
            }
        }
    }

    /// Count a weighted failure signal; bans at the threshold, slides a live auth ban.
    fn signal(&self, ip: IpAddr, weight: u32, now: Instant) {
        let Some(a) = self.auth else { return };
        self.with_source(ip, now, |s| {
            if let Some((until, hard)) = s.ban
                && until > now
            {
                s.ban = Some(((now + a.ban).min(hard).max(until), hard));
                return false;
            }
            if now.duration_since(s.fail_start) > a.window {
                s.fail_start = now;
                s.fail_count = 0;
            }
            s.fail_count = s.fail_count.saturating_add(weight);
            if s.fail_count >= a.threshold {
                s.fail_count = 0;
                s.ban = Some((now + a.ban, now + a.max_ban.max(a.ban)));
                return true;
            }
            false
        });
    }

    /// Run `f` on `ip`'s entry (created if missing, evicting at the cap). A ban raised by
    /// `f` (`None` before, live after) is counted.
    fn with_source(&self, ip: IpAddr, now: Instant, f: impl FnOnce(&mut Source) -> bool) -> bool {
        let mut g = lock(&self.shards[shard_of(ip)]);
        if !g.contains_key(&ip) && g.len() >= self.per_shard {
            self.evict(&mut g, now);
        }
        let s = g.entry(ip).or_insert_with(|| Source::new(now));
        if s.ban.is_some_and(|(until, _)| until <= now) {
            s.ban = None;
            self.release_bans(1);
        }
        let was_banned = s.banned(now);
        s.last_seen = now;
        let r = f(s);
        if !was_banned && s.banned(now) {
            self.live_bans.fetch_add(1, Ordering::Relaxed);
            self.counters.bans_total.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(source = %ip, "security: source banned");
        }
        r
    }

    /// Make room in a full shard: drop what carries no state any more, then the least
    /// recently seen eighth of the unbanned entries (banned ones only if nothing else).
    fn evict(&self, g: &mut HashMap<IpAddr, Source>, now: Instant) {
        let before = g.len();
        let (rate_w, auth_w) = (
            self.rate.map_or(Duration::ZERO, |p| p.window),
            self.auth.map_or(Duration::ZERO, |a| a.window),
        );
        let mut lapsed = 0;
        g.retain(|_, s| {
            if s.banned(now) {
                return true;
            }
            if s.ban.is_some() {
                lapsed += 1;
            }
            now.duration_since(s.rate_start) < rate_w || now.duration_since(s.fail_start) < auth_w
        });
        self.release_bans(lapsed);
        if g.len() >= self.per_shard {
            let mut seen: Vec<(Instant, bool, IpAddr)> = g
                .iter()
                .map(|(ip, s)| (s.last_seen, s.banned(now), *ip))
                .collect();
            // Unbanned first, oldest first.
            seen.sort_unstable_by_key(|(t, b, _)| (*b, *t));
            let n = (self.per_shard / 8).max(1);
            for (_, banned, ip) in seen.into_iter().take(n) {
                if g.remove(&ip).is_some() && banned {
                    self.release_bans(1);
                }
            }
        }
        let gone = before.saturating_sub(g.len());
        self.counters
            .evicted
            .fetch_add(gone as u64, Ordering::Relaxed);
    }

    fn release_bans(&self, n: usize) {
        if n > 0 {
            let _ = self
                .live_bans
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| {
                    Some(v.saturating_sub(n))
                });
        }
    }

    /// Forget lapsed bans and idle entries (called about once a second by core 0).
    pub fn sweep(&self, now: Instant) {
        for shard in &self.shards {
            let mut g = lock(shard);
            let mut lapsed = 0;
            let (rate_w, auth_w) = (
                self.rate.map_or(Duration::ZERO, |p| p.window),
                self.auth.map_or(Duration::ZERO, |a| a.window),
            );
            g.retain(|_, s| {
                if s.banned(now) {
                    return true;
                }
                if s.ban.take().is_some() {
                    lapsed += 1;
                }
                now.duration_since(s.rate_start) < rate_w
                    || now.duration_since(s.fail_start) < auth_w
            });
            self.release_bans(lapsed);
        }
    }

    /// Sources banned now.
    pub fn banned_count(&self, now: Instant) -> usize {
        self.shards
            .iter()
            .map(|s| lock(s).values().filter(|s| s.banned(now)).count())
            .sum()
    }

    /// Sources remembered (windows, counts, bans).
    pub fn tracked(&self) -> usize {
        self.shards.iter().map(|s| lock(s).len()).sum()
    }

    /// Prometheus text for the upstream metric names plus ours.
    pub fn render(&self, o: &mut String) {
        let c = &self.counters;
        let rows: [(&str, &str, &str, u64); 6] = [
            (
                "siphon_rate_limited_total",
                "counter",
                "Requests dropped by security.rate_limit",
                c.rate_limited.load(Ordering::Relaxed),
            ),
            (
                "siphon_scanner_blocked_total",
                "counter",
                "Requests dropped by security.scanner_block",
                c.scanner_blocked.load(Ordering::Relaxed),
            ),
            (
                "siphon_auth_failures_total",
                "counter",
                "Digest authentications with wrong credentials",
                c.auth_failures.load(Ordering::Relaxed),
            ),
            (
                "siphon_banned_ips",
                "gauge",
                "Source addresses banned now",
                self.banned_count(Instant::now()) as u64,
            ),
            (
                "siphon_banned_dropped_total",
                "counter",
                "Datagrams, messages and connections dropped from banned sources",
                c.banned_dropped.load(Ordering::Relaxed),
            ),
            (
                "siphon_security_sources_evicted_total",
                "counter",
                "Tracked sources evicted at security.max_tracked_sources",
                c.evicted.load(Ordering::Relaxed),
            ),
        ];
        for (name, kind, help, v) in rows {
            let _ = writeln!(o, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}");
        }
        let _ = writeln!(
            o,
            "# HELP siphon_security_sources Source addresses tracked by security:\n\
             # TYPE siphon_security_sources gauge\nsiphon_security_sources {}",
            self.tracked()
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("test address")
    }

    fn cfg(y: &str) -> SecurityConfig {
        serde_yaml_ng::from_str(y).unwrap_or_default()
    }

    #[test]
    fn cidr_matching() {
        let c = Cidr::parse("10.0.0.0/8").expect("cidr");
        assert!(c.contains(ip("10.1.2.3")));
        assert!(c.contains(ip("::ffff:10.9.9.9")));
        assert!(!c.contains(ip("11.0.0.1")));
        assert!(Cidr::parse("2001:db8::/32").is_ok_and(|c| c.contains(ip("2001:db8::7"))));
        assert!(Cidr::parse("192.0.2.7").is_ok_and(|c| c.contains(ip("192.0.2.7"))));
        assert!(Cidr::parse("0.0.0.0/0").is_ok_and(|c| c.contains(ip("8.8.8.8"))));
        assert!(Cidr::parse("10.0.0.0/33").is_err());
        assert!(Cidr::parse("nope").is_err());
    }

    #[test]
    fn rate_limit_bans_for_the_duration() {
        let s = Security::new(&cfg(
            "rate_limit: {window_secs: 10, max_requests: 3, ban_duration_secs: 60}",
        ));
        let t0 = Instant::now();
        let a = ip("203.0.113.1");
        for _ in 0..3 {
            assert_eq!(s.check_request(a, None, t0), Verdict::Allow);
        }
        assert!(!s.is_banned(a, t0));
        assert_eq!(s.check_request(a, None, t0), Verdict::RateLimited);
        assert!(s.is_banned(a, t0 + Duration::from_secs(59)));
        assert!(!s.is_banned(a, t0 + Duration::from_secs(61)));
        // Another source is unaffected.
        assert_eq!(s.check_request(ip("203.0.113.2"), None, t0), Verdict::Allow);
        // The window rolls.
        let b = ip("203.0.113.3");
        for i in 0..10 {
            let t = t0 + Duration::from_secs(11 * i);
            assert_eq!(s.check_request(b, None, t), Verdict::Allow);
        }
        assert_eq!(s.counters.rate_limited.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn failed_auth_bans_weighted_and_success_resets() {
        let s = Security::new(&cfg(
            "failed_auth_ban: {threshold: 6, window_secs: 600, ban_duration_secs: 60, strong_signal_weight: 3}",
        ));
        let t0 = Instant::now();
        let udp = ip("198.51.100.1");
        for _ in 0..5 {
            s.auth_signal(udp, false, AuthSignal::Failure, t0);
        }
        assert!(!s.is_banned(udp, t0));
        s.auth_signal(udp, false, AuthSignal::Success, t0);
        for _ in 0..5 {
            s.auth_signal(udp, false, AuthSignal::Failure, t0);
        }
        assert!(!s.is_banned(udp, t0), "success cleared the count");
        s.auth_signal(udp, false, AuthSignal::Failure, t0);
        assert!(s.is_banned(udp, t0));
        // Over TCP two wrong passwords are enough.
        let tcp = ip("198.51.100.2");
        s.auth_signal(tcp, true, AuthSignal::Failure, t0);
        assert!(!s.is_banned(tcp, t0));
        s.auth_signal(tcp, true, AuthSignal::Failure, t0);
        assert!(s.is_banned(tcp, t0));
        assert_eq!(s.counters.auth_failures.load(Ordering::Relaxed), 13);
        assert_eq!(s.banned_count(t0), 2);
    }

    #[test]
    fn auth_ban_slides_up_to_the_cap() {
        let s = Security::new(&cfg(
            "failed_auth_ban: {threshold: 1, ban_duration_secs: 60}",
        ));
        let t0 = Instant::now();
        let a = ip("198.51.100.9");
        s.auth_signal(a, false, AuthSignal::Failure, t0);
        s.auth_signal(a, false, AuthSignal::Failure, t0 + Duration::from_secs(50));
        assert!(s.is_banned(a, t0 + Duration::from_secs(100)));
        assert!(!s.is_banned(a, t0 + Duration::from_secs(111)));
        // Hammering while banned slides the ban to at most 24 × 60 s after it was raised.
        for i in 2..29 {
            s.auth_signal(
                a,
                false,
                AuthSignal::Failure,
                t0 + Duration::from_secs(50 * i),
            );
        }
        assert!(s.is_banned(a, t0 + Duration::from_secs(1439)));
        assert!(!s.is_banned(a, t0 + Duration::from_secs(1441)));
    }

    #[test]
    fn scanner_dropped_and_counted_as_strong_signal() {
        let s = Security::new(&cfg(
            "scanner_block: {user_agents: [friendly-scanner, sipvicious]}\n\
             failed_auth_ban: {threshold: 6, ban_duration_secs: 60}",
        ));
        let t0 = Instant::now();
        let a = ip("192.0.2.50");
        assert_eq!(
            s.check_request(a, Some("Friendly-Scanner 1.0"), t0),
            Verdict::Scanner
        );
        assert_eq!(s.check_request(a, Some("Linphone/5"), t0), Verdict::Allow);
        assert_eq!(s.check_request(a, Some("sipvicious"), t0), Verdict::Scanner);
        assert!(s.is_banned(a, t0), "two strong signals reach 6");
        assert_eq!(s.counters.scanner_blocked.load(Ordering::Relaxed), 2);
    }

    #[test]
    fn trusted_sources_are_exempt() {
        let s = Security::new(&cfg("rate_limit: {window_secs: 10, max_requests: 1}\n\
             scanner_block: {user_agents: [scanner]}\n\
             failed_auth_ban: {threshold: 1, ban_duration_secs: 60}\n\
             trusted_cidrs: [10.0.0.0/8]"));
        let t0 = Instant::now();
        let a = ip("10.2.3.4");
        for _ in 0..10 {
            assert_eq!(s.check_request(a, Some("scanner"), t0), Verdict::Allow);
            s.auth_signal(a, true, AuthSignal::Failure, t0);
        }
        assert!(!s.is_banned(a, t0));
        assert_eq!(s.tracked(), 0);
    }

    #[test]
    fn tracked_sources_are_bounded() {
        let s = Security::new(&cfg(
            "rate_limit: {window_secs: 10, max_requests: 5}\nmax_tracked_sources: 160",
        ));
        let t0 = Instant::now();
        // A spoofed-source flood: 10,000 addresses, one request each.
        for i in 0..10_000u32 {
            let a = IpAddr::from((0xC000_0000u32 + i).to_be_bytes());
            assert_eq!(s.check_request(a, None, t0), Verdict::Allow);
        }
        assert!(s.tracked() <= 160, "{}", s.tracked());
        assert!(s.counters.evicted.load(Ordering::Relaxed) > 0);
        // Entries carry no state once their windows passed: a sweep forgets them.
        s.sweep(t0 + Duration::from_secs(11));
        assert_eq!(s.tracked(), 0);
    }

    #[test]
    fn validate_names_the_key() {
        assert!(validate(&cfg("trusted_cidrs: [bogus]")).is_err_and(|(k, _)| k == "trusted_cidrs"));
        assert!(validate(&cfg("rate_limit: {window_secs: 0, max_requests: 1}")).is_err());
        assert!(validate(&cfg("trusted_cidrs: [10.0.0.0/8, \"::1\"]")).is_ok());
    }
}
