//! Stateless server nonces: issue time + a per-issuer counter, authenticated with
//! HMAC-SHA-256 over (time ‖ counter ‖ realm) under the node secret.
//!
//! RFC 7616 §3.3 and §5.4 (nonce contents are server-defined; a timestamp lets the server
//! bound its lifetime without state), §3.3 `stale`. Any node that shares `auth.nonce_secret`
//! validates any other node's nonces, and no table is kept for issued nonces; what is kept
//! per nonce is only the nonce-count window ([`super::replay`]), created on first use.
//!
//! Wire form (lower-case hex, 65 characters): `{secs:016x}{counter:016x}.{mac}` where `mac`
//! is the first 16 bytes of `HMAC-SHA-256(secret, secs_be ‖ counter_be ‖ realm)`.
//! The counter makes two challenges issued in the same second distinct, so two clients never
//! share a nonce and so never share a nonce-count window.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::digest::ct_eq;

type HmacSha256 = Hmac<Sha256>;

/// Length of the truncated MAC in bytes.
const MAC_LEN: usize = 16;
/// Length of the nonce text.
pub const NONCE_LEN: usize = 32 + 1 + 2 * MAC_LEN;

/// The identity of an authentic nonce: its issue time and counter (unique per issuer).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct NonceId {
    /// When it was issued (seconds since the Unix epoch).
    pub issued_secs: u64,
    /// The issuer's counter value.
    pub counter: u64,
}

/// What a nonce check found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NonceStatus {
    /// Issued by us for this realm and within its lifetime.
    Valid(NonceId),
    /// Issued by us for this realm, but older than the TTL: answer `stale=true` if the
    /// response is otherwise right (RFC 7616 §3.3).
    Stale(NonceId),
    /// Not ours, tampered with, for another realm, or from the future.
    Invalid,
}

/// Issues and checks stateless nonces. `Send + Sync`; one per node, shared by every core.
#[derive(Debug)]
pub struct NonceIssuer {
    secret: Vec<u8>,
    ttl: Duration,
    max_drift: Duration,
    counter: AtomicU64,
}

impl NonceIssuer {
    /// `secret` is the HMAC key (`auth.nonce_secret`; the node draws 32 random bytes when it
    /// is not configured). `counter_seed` should be random so two restarts, or two nodes with
    /// the same secret, do not produce the same sequence. `ttl` is `auth.nonce_ttl_secs`.
    /// `max_drift` is how far in the future an issue time may be (clock skew between nodes).
    #[must_use]
    pub fn new(secret: &[u8], counter_seed: u64, ttl: Duration, max_drift: Duration) -> Self {
        Self {
            secret: secret.to_vec(),
            ttl,
            max_drift,
            counter: AtomicU64::new(counter_seed),
        }
    }

    /// The configured lifetime.
    #[must_use]
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// A fresh nonce for `realm`, issued at `now`.
    #[must_use]
    pub fn issue(&self, now: SystemTime, realm: &str) -> String {
        let secs = unix_secs(now);
        let ctr = self.counter.fetch_add(1, Ordering::Relaxed);
        let mac = self.mac(secs, ctr, realm);
        let mut s = format!("{secs:016x}{ctr:016x}.");
        s.push_str(&hex::encode(mac));
        s
    }

    /// Checks a nonce received in credentials for `realm` at `now`.
    #[must_use]
    pub fn check(&self, now: SystemTime, realm: &str, nonce: &str) -> NonceStatus {
        let b = nonce.as_bytes();
        if b.len() != NONCE_LEN || !nonce.is_ascii() || b[32] != b'.' {
            return NonceStatus::Invalid;
        }
        let (Some(secs), Some(ctr)) = (hex_u64(&nonce[..16]), hex_u64(&nonce[16..32])) else {
            return NonceStatus::Invalid;
        };
        let mut mac = [0u8; MAC_LEN];
        if hex::decode_to_slice(&nonce[33..], &mut mac).is_err() {
            return NonceStatus::Invalid;
        }
        if !ct_eq(&mac, &self.mac(secs, ctr, realm)) {
            return NonceStatus::Invalid;
        }
        let now_secs = unix_secs(now);
        if secs > now_secs.saturating_add(self.max_drift.as_secs()) {
            return NonceStatus::Invalid;
        }
        let id = NonceId {
            issued_secs: secs,
            counter: ctr,
        };
        if now_secs.saturating_sub(secs) > self.ttl.as_secs() {
            NonceStatus::Stale(id)
        } else {
            NonceStatus::Valid(id)
        }
    }

    fn mac(&self, secs: u64, ctr: u64, realm: &str) -> [u8; MAC_LEN] {
        // HMAC accepts keys of any length, so this cannot fail.
        let Ok(mut m) = HmacSha256::new_from_slice(&self.secret) else {
            return [0; MAC_LEN];
        };
        m.update(&secs.to_be_bytes());
        m.update(&ctr.to_be_bytes());
        m.update(realm.as_bytes());
        let full = m.finalize().into_bytes();
        let mut out = [0u8; MAC_LEN];
        out.copy_from_slice(&full[..MAC_LEN]);
        out
    }
}

fn hex_u64(s: &str) -> Option<u64> {
    if s.len() != 16 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u64::from_str_radix(s, 16).ok()
}

/// Whole seconds since the Unix epoch (0 for times before it).
#[must_use]
pub(crate) fn unix_secs(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
    }

    fn issuer() -> NonceIssuer {
        NonceIssuer::new(
            b"secret",
            7,
            Duration::from_secs(300),
            Duration::from_secs(3),
        )
    }

    #[test]
    fn valid_then_stale() {
        let n = issuer();
        let t0 = 1_700_000_000;
        let nonce = n.issue(at(t0), "example.com");
        assert_eq!(nonce.len(), NONCE_LEN);
        let id = NonceId {
            issued_secs: t0,
            counter: 7,
        };
        assert_eq!(
            n.check(at(t0 + 300), "example.com", &nonce),
            NonceStatus::Valid(id)
        );
        assert_eq!(
            n.check(at(t0 + 301), "example.com", &nonce),
            NonceStatus::Stale(id)
        );
    }

    #[test]
    fn unique_per_issue() {
        let n = issuer();
        assert_ne!(n.issue(at(5), "r"), n.issue(at(5), "r"));
    }

    #[test]
    fn invalid_cases() {
        let n = issuer();
        let t0 = 1_700_000_000;
        let nonce = n.issue(at(t0), "example.com");
        // Other realm.
        assert_eq!(n.check(at(t0), "other.com", &nonce), NonceStatus::Invalid);
        // Other secret.
        let other = NonceIssuer::new(b"x", 7, Duration::from_secs(300), Duration::ZERO);
        assert_eq!(
            other.check(at(t0), "example.com", &nonce),
            NonceStatus::Invalid
        );
        // Tampered timestamp (trying to extend its life).
        let mut t = nonce.clone().into_bytes();
        t[15] = if t[15] == b'0' { b'1' } else { b'0' };
        let t = String::from_utf8(t).unwrap();
        assert_eq!(n.check(at(t0), "example.com", &t), NonceStatus::Invalid);
        // From the future beyond the drift.
        assert_eq!(
            n.check(at(t0 - 4), "example.com", &nonce),
            NonceStatus::Invalid
        );
        assert!(matches!(
            n.check(at(t0 - 3), "example.com", &nonce),
            NonceStatus::Valid(_)
        ));
        // Garbage.
        let non_ascii = format!("é{}", &nonce[2..]);
        for g in ["", "abc", &"z".repeat(NONCE_LEN), &nonce[1..], &non_ascii] {
            assert_eq!(n.check(at(t0), "example.com", g), NonceStatus::Invalid);
        }
    }
}
