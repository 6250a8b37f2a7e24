//! Caps on the script host's shared tables (issue 17): the `cache`, `proxy.rate_limit` keys,
//! pending script timers, script metric label sets, handlers suspended on an await and the
//! registrar's node-wide AoRs and bindings. The node fills [`HostLimits`] from `limits:`; the
//! counters say how often each cap was hit (`siphon_limit_hits_total{limit=...}`).
//!
//! Owns the settings, the counters and the eviction helper the tables share. The tables
//! themselves stay in `shared.rs` / `host.rs`.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

/// Caps of the host's tables (`limits:` in siphon.yaml).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostLimits {
    /// AoRs with bindings, node-wide; a REGISTER for a new AoR past it gets 503 (0 = none).
    pub registrar_aors: usize,
    /// Bindings, node-wide; a REGISTER that would add one past it gets 503 (0 = none).
    pub registrar_bindings: usize,
    /// `Retry-After` of those 503s.
    pub retry_after_secs: u32,
    /// `cache` entries (all named caches); the oldest are evicted past it.
    pub cache_entries: usize,
    /// `cache` key + value bytes (all named caches); the oldest are evicted past it.
    pub cache_bytes: usize,
    /// `proxy.rate_limit` keys; the least recently used are evicted past it.
    pub rate_limit_keys: usize,
    /// Pending script timers, node-wide; past it scheduling raises `RuntimeError`.
    pub timers: usize,
    /// Label sets per script metric family; past it new ones are dropped.
    pub metric_series: usize,
    /// Digest nonce-count windows (replay protection); the oldest are evicted.
    pub nonce_windows: usize,
    /// Handlers suspended on an await, per interpreter; past it a new request gets 503 with
    /// `Retry-After` without running the script (replies and failures are relayed as if no
    /// hook were set).
    pub suspended_handlers: usize,
}

impl Default for HostLimits {
    fn default() -> Self {
        Self {
            registrar_aors: 100_000,
            registrar_bindings: 200_000,
            retry_after_secs: 5,
            cache_entries: 100_000,
            cache_bytes: 64 * 1024 * 1024,
            rate_limit_keys: 100_000,
            timers: 100_000,
            metric_series: 10_000,
            nonce_windows: 262_144,
            suspended_handlers: 4_096,
        }
    }
}

/// How often each cap was hit.
#[derive(Debug, Default)]
pub struct LimitHits {
    /// REGISTERs refused at `registrar_aors` / `registrar_bindings`.
    pub registrar: AtomicU64,
    /// Cache entries evicted at `cache_entries` / `cache_bytes`.
    pub cache_evicted: AtomicU64,
    /// Rate-limit keys evicted at `rate_limit_keys`.
    pub rate_limit_evicted: AtomicU64,
    /// Timers refused at `timers`.
    pub timers: AtomicU64,
    /// Metric updates dropped at `metric_series`.
    pub metric_series: AtomicU64,
    /// Events answered without the script at `suspended_handlers`.
    pub suspended_handlers: AtomicU64,
}

impl LimitHits {
    /// Prometheus lines (`siphon_limit_hits_total{limit=...}` rows, no HELP/TYPE: the node
    /// writes those once).
    pub fn render(&self, o: &mut String) {
        for (limit, c) in [
            ("registrar", &self.registrar),
            ("cache", &self.cache_evicted),
            ("rate_limit_keys", &self.rate_limit_evicted),
            ("script_timers", &self.timers),
            ("metric_series", &self.metric_series),
            ("suspended_handlers", &self.suspended_handlers),
        ] {
            let _ = writeln!(
                o,
                "siphon_limit_hits_total{{limit=\"{limit}\"}} {}",
                c.load(Ordering::Relaxed)
            );
        }
    }
}

/// The keys to evict from a full table: the `n` with the smallest `age` (oldest first).
/// O(len) with a partial sort; callers evict an eighth at a time so the cost is amortised.
pub(crate) fn oldest<K: Clone, V>(
    map: &std::collections::HashMap<K, V>,
    n: usize,
    age: impl Fn(&V) -> u64,
) -> Vec<K> {
    let mut all: Vec<(u64, &K)> = map.iter().map(|(k, v)| (age(v), k)).collect();
    let n = n.min(all.len());
    if n == 0 {
        return Vec::new();
    }
    if n < all.len() {
        all.select_nth_unstable_by_key(n - 1, |(a, _)| *a);
    }
    all.into_iter().take(n).map(|(_, k)| k.clone()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn oldest_picks_the_smallest_ages() {
        let m: HashMap<u32, u64> = (0..100).map(|i| (i, u64::from(100 - i))).collect();
        let mut o = oldest(&m, 3, |v| *v);
        o.sort_unstable();
        assert_eq!(o, vec![97, 98, 99]);
        assert!(oldest(&m, 0, |v| *v).is_empty());
        assert_eq!(oldest(&m, 1000, |v| *v).len(), 100);
    }
}

#[cfg(test)]
mod table_tests {
    use std::sync::Arc;
    use std::sync::atomic::Ordering;
    use std::time::Duration;

    use super::LimitHits;
    use crate::shared::{Cache, MetricKind, MetricOp, Metrics, RateLimiter};

    #[test]
    fn cache_entries_and_bytes_are_capped_by_evicting_the_oldest() {
        let hits = Arc::new(LimitHits::default());
        let c = Cache::bounded(vec!["c".into()], 1_000, 1 << 30, Arc::clone(&hits));
        for i in 0..10_000 {
            c.store("c", &format!("k{i}"), "v", None);
        }
        let (entries, _) = c.usage();
        assert!(entries <= 1_000 + 16, "{entries}");
        assert!(hits.cache_evicted.load(Ordering::Relaxed) >= 9_000);
        // The newest survive.
        assert_eq!(c.fetch("c", "k9999").as_deref(), Some("v"));
        let c = Cache::bounded(vec!["c".into()], 1_000_000, 64 * 1024, Arc::clone(&hits));
        let big = "x".repeat(1000);
        for i in 0..1_000 {
            c.store("c", &format!("k{i}"), &big, None);
        }
        let (_, bytes) = c.usage();
        assert!(bytes <= 64 * 1024 + 16 * 1100, "{bytes}");
        c.delete("c", "k999");
        c.clear();
        assert_eq!(c.usage(), (0, 0));
    }

    #[test]
    fn rate_limit_keys_are_capped() {
        let hits = Arc::new(LimitHits::default());
        let r = RateLimiter::bounded(100, Arc::clone(&hits));
        for i in 0..5_000 {
            assert!(r.allow(
                &format!("10.0.{}.{}", i / 256, i % 256),
                Duration::from_secs(10),
                3
            ));
        }
        assert!(r.len() <= 100);
        assert!(hits.rate_limit_evicted.load(Ordering::Relaxed) > 0);
        // A live key keeps counting.
        for _ in 0..3 {
            assert!(r.allow("me", Duration::from_secs(10), 3));
        }
        assert!(!r.allow("me", Duration::from_secs(10), 3));
    }

    #[test]
    fn metric_label_sets_are_capped() {
        let hits = Arc::new(LimitHits::default());
        let m = Metrics::bounded(10, Arc::clone(&hits));
        m.declare(MetricKind::Counter, "c", "h", vec!["user".into()], None);
        for i in 0..50 {
            m.apply("c", vec![format!("u{i}")], MetricOp::Add, 1.0);
        }
        assert!(
            m.apply("c", vec!["u3".into()], MetricOp::Add, 1.0),
            "known series go on"
        );
        assert_eq!(m.value("c", &["u3"]), Some(2.0));
        assert_eq!(m.value("c", &["u30"]), None);
        assert_eq!(hits.metric_series.load(Ordering::Relaxed), 40);
    }
}
