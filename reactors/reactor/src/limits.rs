//! Caps on inbound stream connections, shared by every reactor of a runtime: connections open
//! (total and per source IP), TLS handshakes in progress, and the handshake and idle timeouts
//! the dispatch layer (`cx.rs`) arms per connection. Applied at accept, before the handler
//! hears of a connection: a connection over a cap is closed unseen and counted
//! (`tcp_refused`, `tcp_refused_per_source`, `tls_handshakes_refused`).
//!
//! Accepts are rare next to datagrams, so the per-source counts sit behind sharded mutexes;
//! nothing here is touched per byte.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// Connection caps and timeouts (`limits:` in siphon.yaml). A cap of 0 means none.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Accepted TCP/TLS connections open at once, all reactors together.
    pub max_connections: usize,
    /// Of those, from one source IP.
    pub max_connections_per_source: usize,
    /// Accepted TLS connections still in their handshake, all reactors together.
    pub max_tls_handshakes: usize,
    /// An accepted TLS connection still handshaking after this long is closed.
    pub tls_handshake_timeout: Duration,
    /// An accepted connection that received nothing for this long is closed (`None`: never).
    pub idle_timeout: Option<Duration>,
}

impl Default for Limits {
    /// No caps, no idle timeout, a 10 s handshake timeout (the runtime used standalone).
    fn default() -> Self {
        Self {
            max_connections: 0,
            max_connections_per_source: 0,
            max_tls_handshakes: 0,
            tls_handshake_timeout: Duration::from_secs(10),
            idle_timeout: None,
        }
    }
}

/// Which cap refused a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Refused {
    Total,
    PerSource,
    Handshakes,
}

const SHARDS: usize = 16;

/// The node-wide counts behind [`Limits`].
#[derive(Debug)]
pub(crate) struct ConnLimiter {
    pub(crate) limits: Limits,
    open: AtomicUsize,
    handshakes: AtomicUsize,
    per_source: Vec<Mutex<HashMap<IpAddr, usize>>>,
}

fn shard(ip: IpAddr) -> usize {
    let h = match ip {
        IpAddr::V4(v) => u64::from(u32::from(v)),
        IpAddr::V6(v) => {
            let n = u128::from(v);
            (n as u64) ^ ((n >> 64) as u64)
        }
    };
    (h.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 58) as usize % SHARDS
}

/// Take one slot of `c` if it is below `cap` (0 = no cap).
fn take(c: &AtomicUsize, cap: usize) -> bool {
    c.fetch_update(Ordering::AcqRel, Ordering::Acquire, |v| {
        (cap == 0 || v < cap).then_some(v + 1)
    })
    .is_ok()
}

fn give(c: &AtomicUsize) {
    let _ = c.fetch_update(Ordering::AcqRel, Ordering::Acquire, |v| {
        Some(v.saturating_sub(1))
    });
}

impl ConnLimiter {
    pub(crate) fn new(limits: Limits) -> Self {
        Self {
            limits,
            open: AtomicUsize::new(0),
            handshakes: AtomicUsize::new(0),
            per_source: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
        }
    }

    /// Admit a connection from `ip` (`tls`: it starts a handshake). On `Ok` the caller holds
    /// one connection slot (and one handshake slot for TLS) until [`Self::release`] /
    /// [`Self::handshake_done`].
    pub(crate) fn admit(&self, ip: IpAddr, tls: bool) -> Result<(), Refused> {
        let l = &self.limits;
        if !take(&self.open, l.max_connections) {
            return Err(Refused::Total);
        }
        if l.max_connections_per_source > 0 {
            let mut g = self.per_source[shard(ip)]
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let n = g.entry(ip).or_insert(0);
            if *n >= l.max_connections_per_source {
                drop(g);
                give(&self.open);
                return Err(Refused::PerSource);
            }
            *n += 1;
        }
        if tls && !take(&self.handshakes, l.max_tls_handshakes) {
            self.release(ip);
            return Err(Refused::Handshakes);
        }
        Ok(())
    }

    /// A TLS handshake admitted by [`Self::admit`] finished (or its connection went away).
    pub(crate) fn handshake_done(&self) {
        give(&self.handshakes);
    }

    /// A connection admitted by [`Self::admit`] is gone.
    pub(crate) fn release(&self, ip: IpAddr) {
        give(&self.open);
        if self.limits.max_connections_per_source > 0 {
            let mut g = self.per_source[shard(ip)]
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if let Some(n) = g.get_mut(&ip) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    g.remove(&ip);
                }
            }
        }
    }

    /// Connections open and handshakes in progress now.
    pub(crate) fn usage(&self) -> (usize, usize) {
        (
            self.open.load(Ordering::Relaxed),
            self.handshakes.load(Ordering::Relaxed),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(n: u8) -> IpAddr {
        IpAddr::from([10, 0, 0, n])
    }

    #[test]
    fn total_and_per_source_caps() {
        let l = ConnLimiter::new(Limits {
            max_connections: 5,
            max_connections_per_source: 2,
            max_tls_handshakes: 1,
            ..Limits::default()
        });
        assert!(l.admit(ip(1), false).is_ok());
        assert!(l.admit(ip(1), false).is_ok());
        assert_eq!(l.admit(ip(1), false), Err(Refused::PerSource));
        assert!(l.admit(ip(2), true).is_ok());
        assert_eq!(l.admit(ip(3), true), Err(Refused::Handshakes));
        assert!(l.admit(ip(3), false).is_ok());
        assert!(l.admit(ip(4), false).is_ok());
        assert_eq!(l.admit(ip(5), false), Err(Refused::Total));
        assert_eq!(l.usage(), (5, 1));
        l.release(ip(1));
        assert!(l.admit(ip(1), false).is_ok());
        l.handshake_done();
        assert_eq!(l.usage(), (5, 0));
        for n in 1..=4 {
            l.release(ip(n));
        }
        l.release(ip(1));
        assert_eq!(l.usage(), (0, 0));
    }

    #[test]
    fn zero_means_no_cap() {
        let l = ConnLimiter::new(Limits::default());
        for _ in 0..10_000 {
            assert!(l.admit(ip(1), true).is_ok());
        }
    }
}
