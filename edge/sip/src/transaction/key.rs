//! Transaction matching keys: RFC 3261 §17.1.3 (client: top Via branch + CSeq method),
//! §17.2.3 (server: branch with the magic cookie + sent-by + method, ACK matching INVITE) and
//! the RFC 2543 fallback for branches without `z9hG4bK` (Request-URI, From tag, Call-ID, CSeq,
//! top Via; the To tag is compared after lookup).
//!
//! Keys are borrowed views of the message ([`MatchKey`]), hashed with a per-table keyed
//! SipHash (`RandomState`, so peers cannot aim branch collisions at one bucket) into a `u64`
//! index: a lookup allocates nothing. A live transaction's key is re-derived from the request
//! it stores, so the table keeps no key copies.

use std::borrow::Cow;
use std::collections::HashMap;
use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, BuildHasherDefault, Hash, Hasher};

use super::message::{MAGIC_COOKIE, MethodKind, TxRequest, TxResponse};
use super::table::TransactionKey;

/// A matching key borrowed from a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum MatchKey<'a> {
    /// §17.1.3.
    Client { branch: &'a str, method: &'a str },
    /// §17.2.3 (RFC 3261 branch). `sent_by` compares case-insensitively.
    Server {
        branch: &'a str,
        sent_by: &'a str,
        method: &'a str,
    },
    /// §17.2.3 RFC 2543 fallback. `top_via` has its whitespace removed.
    Rfc2543 {
        uri: &'a str,
        from_tag: &'a str,
        call_id: &'a str,
        cseq: u32,
        top_via: Cow<'a, str>,
        method: &'a str,
    },
}

/// The method a server request matches under: ACK matches its INVITE (§17.2.3).
fn server_method(req: &TxRequest) -> &str {
    if req.kind() == MethodKind::Ack {
        "INVITE"
    } else {
        req.method()
    }
}

impl<'a> MatchKey<'a> {
    /// The key of a request sent by a client transaction.
    pub(crate) fn client_for_request(req: &'a TxRequest) -> Option<Self> {
        Some(Self::Client {
            branch: req.branch()?,
            method: req.method(),
        })
    }

    /// The key a response matches under (§17.1.3).
    pub(crate) fn client_for_response(resp: &'a TxResponse) -> Option<Self> {
        Some(Self::Client {
            branch: resp.branch()?,
            method: resp.cseq_method(),
        })
    }

    /// The key a received request matches under (§17.2.3); `method` overrides the request's
    /// (to find the INVITE a CANCEL cancels).
    pub(crate) fn server(req: &'a TxRequest, method: Option<&'a str>) -> Self {
        let method = method.unwrap_or_else(|| server_method(req));
        match req.branch() {
            Some(b) if b.starts_with(MAGIC_COOKIE) => Self::Server {
                branch: b,
                sent_by: req.sent_by(),
                method,
            },
            _ => {
                let via = req.top_via().unwrap_or("");
                let top_via = if via.contains(char::is_whitespace) {
                    Cow::Owned(via.split_whitespace().collect())
                } else {
                    Cow::Borrowed(via)
                };
                Self::Rfc2543 {
                    uri: req.uri(),
                    from_tag: req.from_tag().unwrap_or(""),
                    call_id: req.call_id(),
                    cseq: req.cseq(),
                    top_via,
                    method,
                }
            }
        }
    }

    /// Whether this is a 2543 key (the To tag is then checked after lookup).
    pub(crate) fn is_rfc2543(&self) -> bool {
        matches!(self, Self::Rfc2543 { .. })
    }

    /// Whether two keys match (sent-by host case-insensitively).
    pub(crate) fn matches(&self, other: &Self) -> bool {
        match (self, other) {
            (
                Self::Server {
                    branch: b1,
                    sent_by: s1,
                    method: m1,
                },
                Self::Server {
                    branch: b2,
                    sent_by: s2,
                    method: m2,
                },
            ) => b1 == b2 && m1 == m2 && s1.eq_ignore_ascii_case(s2),
            (a, b) => a == b,
        }
    }

    fn hash_into<H: Hasher>(&self, h: &mut H) {
        match self {
            Self::Client { branch, method } => {
                h.write_u8(0);
                branch.hash(h);
                method.hash(h);
            }
            Self::Server {
                branch,
                sent_by,
                method,
            } => {
                h.write_u8(1);
                branch.hash(h);
                // Lower-cased on the fly, in stack chunks: no allocation.
                let mut buf = [0u8; 32];
                for chunk in sent_by.as_bytes().chunks(buf.len()) {
                    let out = &mut buf[..chunk.len()];
                    out.copy_from_slice(chunk);
                    out.make_ascii_lowercase();
                    h.write(out);
                }
                h.write_u8(0xff);
                method.hash(h);
            }
            Self::Rfc2543 {
                uri,
                from_tag,
                call_id,
                cseq,
                top_via,
                method,
            } => {
                h.write_u8(2);
                uri.hash(h);
                from_tag.hash(h);
                call_id.hash(h);
                cseq.hash(h);
                top_via.hash(h);
                method.hash(h);
            }
        }
    }
}

/// Hasher for keys that are already hashes.
#[derive(Default)]
pub(crate) struct IdentityHasher(u64);

impl Hasher for IdentityHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        // Only u64 keys are hashed; fold anything else in for completeness.
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

/// Transactions sharing one key hash (almost always one).
#[derive(Debug)]
enum Bucket {
    One(TransactionKey),
    Many(Vec<TransactionKey>),
}

/// Hash index from matching keys to live transactions.
#[derive(Debug, Default)]
pub(crate) struct KeyIndex {
    state: RandomState,
    map: HashMap<u64, Bucket, BuildHasherDefault<IdentityHasher>>,
    len: usize,
}

impl KeyIndex {
    pub(crate) fn hash(&self, key: &MatchKey<'_>) -> u64 {
        let mut h = self.state.build_hasher();
        key.hash_into(&mut h);
        h.finish()
    }

    /// Candidates with the same hash; the caller confirms with [`MatchKey::matches`].
    pub(crate) fn candidates(&self, hash: u64) -> &[TransactionKey] {
        match self.map.get(&hash) {
            Some(Bucket::One(k)) => std::slice::from_ref(k),
            Some(Bucket::Many(v)) => v,
            None => &[],
        }
    }

    pub(crate) fn insert(&mut self, hash: u64, key: TransactionKey) {
        self.len += 1;
        match self.map.get_mut(&hash) {
            None => {
                self.map.insert(hash, Bucket::One(key));
            }
            Some(Bucket::One(k)) => {
                let first = *k;
                self.map.insert(hash, Bucket::Many(vec![first, key]));
            }
            Some(Bucket::Many(v)) => v.push(key),
        }
    }

    pub(crate) fn remove(&mut self, hash: u64, key: TransactionKey) {
        let now_empty = match self.map.get_mut(&hash) {
            Some(Bucket::One(k)) if *k == key => true,
            Some(Bucket::Many(v)) => {
                if let Some(pos) = v.iter().position(|k| *k == key) {
                    v.swap_remove(pos);
                    self.len -= 1;
                }
                if let [only] = v.as_slice() {
                    let only = *only;
                    self.map.insert(hash, Bucket::One(only));
                }
                false
            }
            _ => false,
        };
        if now_empty {
            self.map.remove(&hash);
            self.len -= 1;
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Give back the capacity beyond what the live keys need.
    pub(crate) fn shrink(&mut self) {
        self.map.shrink_to_fit();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colliding_hashes_keep_every_transaction() {
        let mut idx = KeyIndex::default();
        let (a, b, c) = (
            TransactionKey::for_test(1),
            TransactionKey::for_test(2),
            TransactionKey::for_test(3),
        );
        idx.insert(7, a);
        idx.insert(7, b);
        idx.insert(7, c);
        assert_eq!(idx.candidates(7), [a, b, c]);
        idx.remove(7, b);
        idx.remove(7, TransactionKey::for_test(9));
        assert_eq!(idx.len(), 2);
        idx.remove(7, a);
        assert_eq!(idx.candidates(7), [c]);
        idx.remove(7, c);
        assert!(idx.candidates(7).is_empty());
        assert_eq!(idx.len(), 0);
    }

    #[test]
    fn sent_by_hashes_case_insensitively() {
        let idx = KeyIndex::default();
        let k1 = MatchKey::Server {
            branch: "z9hG4bK1",
            sent_by: "Host.Example.COM:5060",
            method: "INVITE",
        };
        let k2 = MatchKey::Server {
            branch: "z9hG4bK1",
            sent_by: "host.example.com:5060",
            method: "INVITE",
        };
        assert_eq!(idx.hash(&k1), idx.hash(&k2));
        assert!(k1.matches(&k2));
    }
}
