//! Digest hash arithmetic: algorithms, `H(A1)`, `H(A2)` and the `response` value.
//!
//! RFC 7616 §3.4.1–§3.4.3 (response, A1, A2), RFC 2617 §3.2.2 (MD5, the RFC 3261 default),
//! RFC 8760 (SHA-256 and SHA-512/256 for SIP). Only `qop=auth` and no-qop (RFC 2069
//! compatibility) are computed; `auth-int` needs the body hash and is refused by the verifier.
//! Also the constant-time comparison used for responses.

use md5::Md5;
use sha2::{Digest, Sha256, Sha512_256};

/// A digest algorithm (RFC 7616 §3.3 `algorithm`, RFC 8760).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Algorithm {
    /// `MD5` (RFC 2617; the default when `algorithm` is absent).
    Md5,
    /// `MD5-sess`.
    Md5Sess,
    /// `SHA-256` (RFC 7616, RFC 8760).
    Sha256,
    /// `SHA-256-sess`.
    Sha256Sess,
    /// `SHA-512-256` (SHA-512/256).
    Sha512_256,
    /// `SHA-512-256-sess`.
    Sha512_256Sess,
}

impl Algorithm {
    /// Every algorithm, strongest first.
    pub const VALUES: [Self; 6] = [
        Self::Sha512_256Sess,
        Self::Sha512_256,
        Self::Sha256Sess,
        Self::Sha256,
        Self::Md5Sess,
        Self::Md5,
    ];

    /// The token as written in headers (`MD5`, `SHA-256`, `SHA-512-256-sess`, ...).
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::Md5 => "MD5",
            Self::Md5Sess => "MD5-sess",
            Self::Sha256 => "SHA-256",
            Self::Sha256Sess => "SHA-256-sess",
            Self::Sha512_256 => "SHA-512-256",
            Self::Sha512_256Sess => "SHA-512-256-sess",
        }
    }

    /// Parse an `algorithm` value, case-insensitively. `None` for anything else
    /// (including `AKAv1-MD5`, which needs an AKA backend).
    #[must_use]
    pub fn from_name(s: &str) -> Option<Self> {
        Self::VALUES
            .into_iter()
            .find(|a| a.name().eq_ignore_ascii_case(s.trim()))
    }

    /// Whether this is a `-sess` variant (A1 includes the nonce and cnonce).
    #[must_use]
    pub const fn is_session(self) -> bool {
        matches!(
            self,
            Self::Md5Sess | Self::Sha256Sess | Self::Sha512_256Sess
        )
    }

    /// The non-session algorithm with the same hash (`SHA-256-sess` → `SHA-256`).
    #[must_use]
    pub const fn base(self) -> Self {
        match self {
            Self::Md5 | Self::Md5Sess => Self::Md5,
            Self::Sha256 | Self::Sha256Sess => Self::Sha256,
            Self::Sha512_256 | Self::Sha512_256Sess => Self::Sha512_256,
        }
    }

    /// Length of a hex digest for this algorithm (32 for MD5, 64 for the SHA-2 variants).
    #[must_use]
    pub const fn hex_len(self) -> usize {
        match self.base() {
            Self::Md5 => 32,
            _ => 64,
        }
    }

    /// `H(parts joined by ':')` as lower-case hex (RFC 7616 §3.4: `H(data)`).
    #[must_use]
    pub fn hash_hex(self, parts: &[&[u8]]) -> String {
        fn run<D: Digest>(parts: &[&[u8]]) -> String {
            let mut d = D::new();
            for (i, p) in parts.iter().enumerate() {
                if i > 0 {
                    d.update(b":");
                }
                d.update(p);
            }
            hex::encode(d.finalize())
        }
        match self.base() {
            Self::Md5 => run::<Md5>(parts),
            Self::Sha512_256 => run::<Sha512_256>(parts),
            _ => run::<Sha256>(parts),
        }
    }

    /// `H(username ":" realm ":" password)`: the stored HA1 for this hash (before any `-sess`
    /// step; RFC 7616 §3.4.2).
    #[must_use]
    pub fn ha1(self, username: &str, realm: &str, password: &str) -> String {
        self.hash_hex(&[username.as_bytes(), realm.as_bytes(), password.as_bytes()])
    }
}

/// The inputs of one digest `response` computation.
#[derive(Debug, Clone, Copy)]
pub struct ResponseInput<'a> {
    /// Algorithm in use.
    pub algorithm: Algorithm,
    /// `H(user:realm:password)` in lower-case hex, for the base hash of `algorithm`.
    pub ha1: &'a str,
    /// Server nonce.
    pub nonce: &'a str,
    /// Client nonce (`""` when absent; used with qop and by `-sess` algorithms).
    pub cnonce: &'a str,
    /// `nc` and `qop` (None for the RFC 2069 form without qop).
    pub qop: Option<QopInput<'a>>,
    /// Request method (`REGISTER`, `INVITE`, ...).
    pub method: &'a str,
    /// The `uri` directive.
    pub uri: &'a str,
}

/// The qop part of a response computation.
#[derive(Debug, Clone, Copy)]
pub struct QopInput<'a> {
    /// Nonce count.
    pub nc: u32,
    /// `auth` (the only one computed here).
    pub qop: &'a str,
}

/// Computes the expected `response` directive (RFC 7616 §3.4.1), lower-case hex.
///
/// For `-sess` algorithms A1 becomes `H(ha1:nonce:cnonce)` (§3.4.2).
#[must_use]
pub fn compute_response(i: &ResponseInput<'_>) -> String {
    let alg = i.algorithm;
    let sess;
    let ha1 = if alg.is_session() {
        sess = alg.hash_hex(&[i.ha1.as_bytes(), i.nonce.as_bytes(), i.cnonce.as_bytes()]);
        sess.as_str()
    } else {
        i.ha1
    };
    let ha2 = alg.hash_hex(&[i.method.as_bytes(), i.uri.as_bytes()]);
    match i.qop {
        Some(q) => {
            let nc = format!("{:08x}", q.nc);
            alg.hash_hex(&[
                ha1.as_bytes(),
                i.nonce.as_bytes(),
                nc.as_bytes(),
                i.cnonce.as_bytes(),
                q.qop.as_bytes(),
                ha2.as_bytes(),
            ])
        }
        None => alg.hash_hex(&[ha1.as_bytes(), i.nonce.as_bytes(), ha2.as_bytes()]),
    }
}

/// Compares two byte strings in time that depends only on their lengths.
#[must_use]
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    // black_box keeps the optimiser from turning the fold into an early exit.
    std::hint::black_box(diff) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 2617 §3.5 example (MD5, qop=auth): Mufasa / "Circle Of Life".
    #[test]
    fn rfc2617_example() {
        let ha1 = Algorithm::Md5.ha1("Mufasa", "testrealm@host.com", "Circle Of Life");
        let r = compute_response(&ResponseInput {
            algorithm: Algorithm::Md5,
            ha1: &ha1,
            nonce: "dcd98b7102dd2f0e8b11d0f600bfb0c093",
            cnonce: "0a4f113b",
            qop: Some(QopInput { nc: 1, qop: "auth" }),
            method: "GET",
            uri: "/dir/index.html",
        });
        assert_eq!(r, "6629fae49393a05397450978507c4ef1");
    }

    /// RFC 7616 §3.9.1 example: Mufasa / "Circle of Life", SHA-256 and MD5.
    #[test]
    fn rfc7616_examples() {
        let nonce = "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v";
        let cnonce = "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ";
        let uri = "/dir/index.html";
        let expect = [
            (Algorithm::Md5, "8ca523f5e9506fed4657c9700eebdbec"),
            (
                Algorithm::Sha256,
                "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1",
            ),
        ];
        for (alg, want) in expect {
            let ha1 = alg.ha1("Mufasa", "http-auth@example.org", "Circle of Life");
            let r = compute_response(&ResponseInput {
                algorithm: alg,
                ha1: &ha1,
                nonce,
                cnonce,
                qop: Some(QopInput { nc: 1, qop: "auth" }),
                method: "GET",
                uri,
            });
            assert_eq!(r, want, "{alg:?}");
            assert_eq!(r.len(), alg.hex_len());
        }
    }

    #[test]
    fn names() {
        for a in Algorithm::VALUES {
            assert_eq!(Algorithm::from_name(a.name()), Some(a));
            assert_eq!(Algorithm::from_name(&a.name().to_lowercase()), Some(a));
        }
        assert_eq!(Algorithm::from_name("AKAv1-MD5"), None);
        assert_eq!(Algorithm::Sha256Sess.base(), Algorithm::Sha256);
    }

    #[test]
    fn sess_and_no_qop_differ() {
        let ha1 = Algorithm::Md5.ha1("u", "r", "p");
        let base = ResponseInput {
            algorithm: Algorithm::Md5,
            ha1: &ha1,
            nonce: "n",
            cnonce: "",
            qop: None,
            method: "REGISTER",
            uri: "sip:r",
        };
        let plain = compute_response(&base);
        let sess = compute_response(&ResponseInput {
            algorithm: Algorithm::Md5Sess,
            ..base
        });
        assert_ne!(plain, sess);
        // RFC 2069 form: H(HA1:nonce:HA2).
        let ha2 = Algorithm::Md5.hash_hex(&[b"REGISTER", b"sip:r"]);
        assert_eq!(
            plain,
            Algorithm::Md5.hash_hex(&[ha1.as_bytes(), b"n", ha2.as_bytes()])
        );
    }

    #[test]
    fn ct_eq_works() {
        assert!(ct_eq(b"abc", b"abc"));
        assert!(!ct_eq(b"abc", b"abd"));
        assert!(!ct_eq(b"abc", b"ab"));
    }
}
