//! `limits:` (ours): the cap on every table and connection count that grows with input, with
//! the defaults sized for a 2-core box. Each cap has a counter when hit and a defined answer:
//! a connection over a cap is closed at accept, a new transaction over its cap gets a
//! stateless 503 with `Retry-After`, a registrar over its cap answers 503 with `Retry-After`,
//! and the script-side tables (`cache`, `proxy.rate_limit`, timers, metric series) evict or
//! refuse. README "Limits" lists them.
//!
//! Owns the settings, the node-side counters and their exposition. The reactor enforces the
//! connection caps and timeouts (`siphon_reactor::Limits`), the script host its own tables
//! (`siphon_script::HostLimits`); this module only maps the settings onto them.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::Deserialize;

/// `limits:`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// TCP + TLS connections accepted and open, node-wide (0 = no cap).
    pub max_connections: usize,
    /// Of those, from one source IP (0 = no cap).
    pub max_connections_per_source: usize,
    /// TLS handshakes in progress, node-wide (0 = no cap).
    pub max_tls_handshakes: usize,
    /// A TLS connection that has not finished its handshake by then is closed.
    pub tls_handshake_timeout_secs: u64,
    /// An accepted TCP/TLS connection that receives nothing for this long is closed (0 = never).
    pub idle_timeout_secs: u64,
    /// Largest SIP message over a stream: the per-connection reassembly buffer (bytes).
    pub max_message_bytes: usize,
    /// Transactions (server and client) in progress per core; a new request past it gets 503.
    pub max_transactions_per_core: usize,
    /// Finished transactions kept per core only to absorb retransmissions until their RFC 3261
    /// timers end them (Timer J/L/M: 32 s on UDP); past it the oldest ends early (counted).
    pub max_lingering_transactions_per_core: usize,
    /// `Retry-After` on the 503s these caps send, seconds.
    pub retry_after_secs: u32,
    /// AoRs with bindings, node-wide; a REGISTER for a new AoR past it gets 503 (0 = no cap).
    pub max_registrar_aors: usize,
    /// Bindings, node-wide; a REGISTER adding one past it gets 503 (0 = no cap).
    pub max_registrar_bindings: usize,
    /// `cache` entries, all named caches together; the oldest are evicted past it.
    pub cache_max_entries: usize,
    /// `cache` keys and values in bytes, all caches together; the oldest are evicted past it.
    pub cache_max_bytes: usize,
    /// Sources `proxy.rate_limit` remembers; the least recently used are evicted past it.
    pub rate_limit_keys: usize,
    /// Pending `timer.set` / `timer.sleep` / `asyncio` deadlines, node-wide; past it the call
    /// raises `RuntimeError`.
    pub max_script_timers: usize,
    /// Label sets per script metric family; past it new label sets are dropped (counted).
    pub max_metric_series: usize,
    /// Digest nonce-count windows remembered (replay protection); the oldest are evicted.
    pub nonce_windows: usize,
    /// Handlers suspended on an await, per interpreter (core); past it a new request gets 503
    /// with `Retry-After` without running the script.
    pub max_suspended_handlers: usize,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            max_connections: 10_000,
            max_connections_per_source: 256,
            max_tls_handshakes: 1_024,
            tls_handshake_timeout_secs: 10,
            idle_timeout_secs: 300,
            max_message_bytes: 65_536,
            max_transactions_per_core: 20_000,
            max_lingering_transactions_per_core: 100_000,
            retry_after_secs: 5,
            max_registrar_aors: 100_000,
            max_registrar_bindings: 200_000,
            cache_max_entries: 100_000,
            cache_max_bytes: 64 * 1024 * 1024,
            rate_limit_keys: 100_000,
            max_script_timers: 100_000,
            max_metric_series: 10_000,
            nonce_windows: 262_144,
            max_suspended_handlers: 4_096,
        }
    }
}

impl LimitsConfig {
    /// The reactor's share: connection caps and timeouts.
    pub fn reactor(&self) -> siphon_reactor::Limits {
        siphon_reactor::Limits {
            max_connections: self.max_connections,
            max_connections_per_source: self.max_connections_per_source,
            max_tls_handshakes: self.max_tls_handshakes,
            tls_handshake_timeout: Duration::from_secs(self.tls_handshake_timeout_secs.max(1)),
            idle_timeout: (self.idle_timeout_secs > 0)
                .then(|| Duration::from_secs(self.idle_timeout_secs)),
        }
    }

    /// The script host's share: its tables.
    pub fn host(&self) -> siphon_script::HostLimits {
        siphon_script::HostLimits {
            registrar_aors: self.max_registrar_aors,
            registrar_bindings: self.max_registrar_bindings,
            retry_after_secs: self.retry_after_secs,
            cache_entries: self.cache_max_entries,
            cache_bytes: self.cache_max_bytes,
            rate_limit_keys: self.rate_limit_keys,
            timers: self.max_script_timers,
            metric_series: self.max_metric_series,
            nonce_windows: self.nonce_windows,
            suspended_handlers: self.max_suspended_handlers,
        }
    }
}

/// Check `limits:` values; `Err((key, message))` names the key.
pub fn validate(c: &LimitsConfig) -> Result<(), (&'static str, String)> {
    for (key, v) in [
        ("max_message_bytes", c.max_message_bytes),
        ("max_transactions_per_core", c.max_transactions_per_core),
        (
            "max_lingering_transactions_per_core",
            c.max_lingering_transactions_per_core,
        ),
        ("cache_max_entries", c.cache_max_entries),
        ("cache_max_bytes", c.cache_max_bytes),
        ("rate_limit_keys", c.rate_limit_keys),
        ("max_script_timers", c.max_script_timers),
        ("max_metric_series", c.max_metric_series),
        ("nonce_windows", c.nonce_windows),
        ("max_suspended_handlers", c.max_suspended_handlers),
    ] {
        if v == 0 {
            return Err((key, format!("`limits.{key}` must be at least 1")));
        }
    }
    if c.max_message_bytes < 1024 {
        return Err((
            "max_message_bytes",
            "`limits.max_message_bytes` below 1024 cannot carry a SIP request".into(),
        ));
    }
    Ok(())
}

/// What the engine needs of `limits:` on the data path.
#[derive(Debug, Default)]
pub struct NodeLimits {
    /// `max_transactions_per_core`.
    pub max_transactions: usize,
    /// `retry_after_secs`.
    pub retry_after_secs: u32,
    /// `max_message_bytes`.
    pub max_message_bytes: usize,
    /// Hits.
    pub counters: LimitCounters,
}

impl NodeLimits {
    /// From `limits:`.
    pub fn new(c: &LimitsConfig) -> Self {
        Self {
            max_transactions: c.max_transactions_per_core,
            retry_after_secs: c.retry_after_secs,
            max_message_bytes: c.max_message_bytes,
            counters: LimitCounters::default(),
        }
    }

    /// A stream framer whose reassembly buffer stops at `max_message_bytes`.
    pub fn framer(&self) -> siphon_sip::StreamFramer {
        siphon_sip::StreamFramer::with_limits(siphon_sip::Limits {
            max_message: self.max_message_bytes.max(1024),
            ..siphon_sip::Limits::default()
        })
    }
}

/// Node-side counters of the caps the engine enforces.
#[derive(Debug, Default)]
pub struct LimitCounters {
    /// New requests answered 503 because the core's transaction table was full.
    pub transactions_refused: AtomicU64,
    /// Finished transactions ended before their timers at `max_lingering_transactions_per_core`.
    pub lingering_evicted: AtomicU64,
}

impl LimitCounters {
    /// Prometheus text.
    pub fn render(&self, o: &mut String) {
        let _ = writeln!(
            o,
            "# HELP siphon_limit_hits_total Requests and connections refused at a configured limit\n\
             # TYPE siphon_limit_hits_total counter\n\
             siphon_limit_hits_total{{limit=\"transactions\"}} {}\n\
             siphon_limit_hits_total{{limit=\"lingering_transactions\"}} {}",
            self.transactions_refused.load(Ordering::Relaxed),
            self.lingering_evicted.load(Ordering::Relaxed)
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_validate_and_map() {
        let c = LimitsConfig::default();
        assert!(validate(&c).is_ok());
        let r = c.reactor();
        assert_eq!(r.max_connections, 10_000);
        assert_eq!(r.idle_timeout, Some(Duration::from_secs(300)));
        let h = c.host();
        assert_eq!(h.cache_entries, 100_000);
    }

    #[test]
    fn zero_is_refused_where_it_means_nothing() {
        let c: LimitsConfig =
            serde_yaml_ng::from_str("max_transactions_per_core: 0").unwrap_or_default();
        assert!(validate(&c).is_err_and(|(k, _)| k == "max_transactions_per_core"));
        let c: LimitsConfig = serde_yaml_ng::from_str("idle_timeout_secs: 0").unwrap_or_default();
        assert!(validate(&c).is_ok());
        assert_eq!(c.reactor().idle_timeout, None);
    }
}
