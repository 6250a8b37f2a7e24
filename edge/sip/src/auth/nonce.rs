//! Stateless server nonces: issue time + a per-issuer counter, authenticated with
//! HMAC-SHA-256 over (time ‖ counter ‖ realm) under the node secret.
//!
//! RFC 7616 §3.3 and §5.4 (nonce contents are server-defined; a timestamp lets the server
//! bound its lifetime without state), §3.3 `stale`. Any node that shares `auth.nonce_secret`
//! validates any other node's nonces, and no table is kept for issued nonces; what is kept
//! per nonce is only the nonce-count window ([`super::replay`]), created on first use.
//!
//! Wire form (43 characters): unpadded base64url (RFC 4648 §5) of `secs_be ‖ counter_be ‖ mac`
//! (32 bytes) where `mac` is the first 16 bytes of `HMAC-SHA-256(secret, secs_be ‖ counter_be
//! ‖ realm)`. Base64 rather than hex keeps a 401 to a spoofed UDP request small (22 bytes of
//! its ~360); the earlier hex form (65 characters, `{secs:016x}{counter:016x}.{mac hex}`) is
//! still accepted, so nodes sharing `auth.nonce_secret` across an upgrade accept each other's.
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
/// Bytes a nonce encodes: issue time, counter, MAC.
const RAW_LEN: usize = 8 + 8 + MAC_LEN;
/// Length of the nonce text: unpadded base64 of the 32 raw bytes (issue time, counter, MAC).
pub const NONCE_LEN: usize = (RAW_LEN * 8).div_ceil(6);
/// Length of the earlier hex form, still accepted.
const HEX_NONCE_LEN: usize = 32 + 1 + 2 * MAC_LEN;

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
        let mut raw = [0u8; RAW_LEN];
        raw[..8].copy_from_slice(&secs.to_be_bytes());
        raw[8..16].copy_from_slice(&ctr.to_be_bytes());
        raw[16..].copy_from_slice(&mac);
        b64url_encode(&raw)
    }

    /// `(secs, counter, mac)` of a nonce in either wire form.
    fn parse(nonce: &str) -> Option<(u64, u64, [u8; MAC_LEN])> {
        let b = nonce.as_bytes();
        let mut mac = [0u8; MAC_LEN];
        if b.len() == NONCE_LEN {
            let raw = b64url_decode::<RAW_LEN>(b)?;
            mac.copy_from_slice(&raw[16..]);
            let secs = u64::from_be_bytes(raw[..8].try_into().ok()?);
            let ctr = u64::from_be_bytes(raw[8..16].try_into().ok()?);
            return Some((secs, ctr, mac));
        }
        if b.len() != HEX_NONCE_LEN || !nonce.is_ascii() || b[32] != b'.' {
            return None;
        }
        let (secs, ctr) = (hex_u64(&nonce[..16])?, hex_u64(&nonce[16..32])?);
        hex::decode_to_slice(&nonce[33..], &mut mac).ok()?;
        Some((secs, ctr, mac))
    }

    /// Checks a nonce received in credentials for `realm` at `now`.
    #[must_use]
    pub fn check(&self, now: SystemTime, realm: &str, nonce: &str) -> NonceStatus {
        let Some((secs, ctr, mac)) = Self::parse(nonce) else {
            return NonceStatus::Invalid;
        };
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

const B64URL: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// Unpadded base64url (RFC 4648 §5).
fn b64url_encode(data: &[u8]) -> String {
    let mut out = String::with_capacity((data.len() * 8).div_ceil(6));
    for chunk in data.chunks(3) {
        let mut n = 0u32;
        for (i, b) in chunk.iter().enumerate() {
            n |= u32::from(*b) << (16 - 8 * i);
        }
        for i in 0..=chunk.len() {
            out.push(char::from(B64URL[((n >> (18 - 6 * i)) & 63) as usize]));
        }
    }
    out
}

/// Exactly `N` bytes from unpadded base64url text; `None` for anything else (a wrong length,
/// a character outside the alphabet, non-zero trailing bits).
fn b64url_decode<const N: usize>(text: &[u8]) -> Option<[u8; N]> {
    if text.len() != (N * 8).div_ceil(6) {
        return None;
    }
    let mut out = [0u8; N];
    let (mut acc, mut bits, mut k) = (0u32, 0u32, 0usize);
    for &c in text {
        let v = B64URL.iter().position(|&a| a == c)? as u32;
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            *out.get_mut(k)? = (acc >> bits) as u8;
            k += 1;
            acc &= (1 << bits) - 1;
        }
    }
    (k == N && acc == 0).then_some(out)
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
        t[9] = if t[9] == b'A' { b'B' } else { b'A' };
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
        let hex_garbage = "z".repeat(HEX_NONCE_LEN);
        for g in [
            "",
            "abc",
            &"z".repeat(NONCE_LEN),
            &hex_garbage,
            &nonce[1..],
            &non_ascii,
            &format!("{}=", &nonce[1..]),
        ] {
            assert_eq!(n.check(at(t0), "example.com", g), NonceStatus::Invalid);
        }
    }

    #[test]
    fn base64url_form_and_the_earlier_hex_form() {
        let n = issuer();
        let t0 = 1_700_000_000;
        let nonce = n.issue(at(t0), "example.com");
        assert_eq!(NONCE_LEN, 43);
        assert!(
            nonce
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
            "{nonce}"
        );
        // The same nonce in the hex form earlier versions issued is accepted too.
        let (secs, ctr, mac) = NonceIssuer::parse(&nonce).unwrap();
        assert_eq!((secs, ctr), (t0, 7));
        let hex_form = format!("{secs:016x}{ctr:016x}.{}", hex::encode(mac));
        assert_eq!(
            n.check(at(t0 + 1), "example.com", &hex_form),
            NonceStatus::Valid(NonceId {
                issued_secs: t0,
                counter: 7
            })
        );
        // The codec round-trips every length and refuses what is not canonical.
        for len in 0..=7usize {
            let data: Vec<u8> = (0..len as u8).map(|i| i.wrapping_mul(97)).collect();
            let text = b64url_encode(&data);
            assert_eq!(text.len(), (len * 8).div_ceil(6));
        }
        let raw: [u8; RAW_LEN] = core::array::from_fn(|i| (i * 37) as u8);
        let text = b64url_encode(&raw);
        assert_eq!(b64url_decode::<RAW_LEN>(text.as_bytes()), Some(raw));
        // Non-zero trailing bits (a second spelling of the same bytes) are refused.
        let mut odd = text.into_bytes();
        let last = odd.len() - 1;
        odd[last] = if odd[last] == b'B' { b'C' } else { b'B' };
        assert_eq!(b64url_decode::<RAW_LEN>(&odd), None);
    }
}
