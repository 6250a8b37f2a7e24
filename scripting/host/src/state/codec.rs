//! The stored forms of a binding.
//!
//! - Redis: one JSON object per contact with upstream SIPhon's `StoredContact` field names
//!   (`uri`, `q`, `expires_secs`, `expires_at`, `registered_at_epoch`, `call_id`, `cseq`,
//!   `source_addr`, `source_transport`, `sip_instance`, `reg_id`, `path`, `flow_token`,
//!   `params`, `kind`) so either side can read the other's Redis keys, plus our own fields
//!   (millisecond times, `received`, `user_agent`, `auth_user`, the binding key). Unknown
//!   fields are ignored and ours are optional.
//! - The local redb file (ours alone): [`encode_compact`], a length-prefixed binary list of
//!   an AoR's bindings. It is built under the memory shard's lock on the REGISTER's thread, so
//!   it must be cheap: one allocation, no text formatting (JSON cost 4x the CPU and 3x the
//!   bytes, and every byte is copied, checksummed and written again at each commit).
//!   [`decode_stored`] also reads the JSON arrays earlier builds wrote.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use siphon_sip::registrar::{Binding, ContactKey, Q};

/// One contact as stored.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StoredContact {
    /// Contact URI.
    pub uri: String,
    /// q as a float (1.0 when the contact gave none).
    pub q: f32,
    /// Seconds left when written.
    pub expires_secs: u64,
    /// Absolute expiry, Unix seconds.
    #[serde(default)]
    pub expires_at: Option<u64>,
    /// Last refresh, Unix seconds (upstream's name).
    #[serde(default)]
    pub registered_at_epoch: Option<u64>,
    /// Call-ID of the REGISTER that wrote it.
    pub call_id: String,
    /// Its CSeq.
    pub cseq: u32,
    /// `ip:port` the REGISTER came from.
    #[serde(default)]
    pub source_addr: Option<String>,
    /// Its transport (`udp`, `tcp`, `tls`).
    #[serde(default)]
    pub source_transport: Option<String>,
    /// `+sip.instance`.
    #[serde(default)]
    pub sip_instance: Option<String>,
    /// `reg-id`.
    #[serde(default)]
    pub reg_id: Option<u32>,
    /// Path header values.
    #[serde(default)]
    pub path: Vec<String>,
    /// Flow token set by the script.
    #[serde(default)]
    pub flow_token: Option<String>,
    /// Other Contact parameters.
    #[serde(default)]
    pub params: Vec<(String, Option<String>)>,
    /// `ue` (upstream also has `as`).
    #[serde(default)]
    pub kind: Option<String>,
    /// Ours: q in thousandths as given (absent when the contact gave none).
    #[serde(default)]
    pub q_millis: Option<u16>,
    /// Ours: expiry, Unix milliseconds.
    #[serde(default)]
    pub expires_at_ms: Option<u64>,
    /// Ours: first registration, Unix milliseconds.
    #[serde(default)]
    pub first_registered_ms: Option<u64>,
    /// Ours: last refresh, Unix milliseconds.
    #[serde(default)]
    pub updated_at_ms: Option<u64>,
    /// Ours: the `received` URI (`sip:ip:port;transport=x`).
    #[serde(default)]
    pub received: Option<String>,
    /// Ours: User-Agent.
    #[serde(default)]
    pub user_agent: Option<String>,
    /// Ours: digest user.
    #[serde(default)]
    pub auth_user: Option<String>,
    /// Ours: the binding key within its AoR.
    #[serde(default)]
    pub key: Option<String>,
}

fn ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn from_ms(v: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(v)
}

/// `sip:1.2.3.4:5060;transport=udp` → (`1.2.3.4:5060`, `udp`).
fn split_received(r: &str) -> (Option<String>, Option<String>) {
    let rest = r.strip_prefix("sip:").unwrap_or(r);
    let (addr, params) = rest.split_once(';').unwrap_or((rest, ""));
    let transport = params
        .split(';')
        .find_map(|p| p.strip_prefix("transport="))
        .map(str::to_owned);
    (Some(addr.to_owned()), transport)
}

impl StoredContact {
    /// The stored form of `b` at `now`.
    pub fn from_binding(b: &Binding, now: SystemTime) -> Self {
        let (source_addr, source_transport) =
            b.received.as_deref().map_or((None, None), split_received);
        Self {
            uri: b.uri.clone(),
            q: f32::from(b.effective_q().millis()) / 1000.0,
            expires_secs: u64::from(b.remaining_secs(now)),
            expires_at: Some(ms(b.expires_at) / 1000),
            registered_at_epoch: Some(ms(b.updated_at) / 1000),
            call_id: b.call_id.clone(),
            cseq: b.cseq,
            source_addr,
            source_transport,
            sip_instance: b.instance_id.clone(),
            reg_id: b.reg_id,
            path: b.path.clone(),
            flow_token: b.flow_token.clone(),
            params: b.params.clone(),
            kind: Some("ue".into()),
            q_millis: b.q.map(Q::millis),
            expires_at_ms: Some(ms(b.expires_at)),
            first_registered_ms: Some(ms(b.registered_at)),
            updated_at_ms: Some(ms(b.updated_at)),
            received: b.received.clone(),
            user_agent: b.user_agent.clone(),
            auth_user: b.auth_user.clone(),
            key: Some(b.key.as_str().to_owned()),
        }
    }

    /// The binding, or `None` when it is an AS contact (not routable) or its URI is empty.
    /// Entries written by upstream (no millisecond fields) get second precision.
    pub fn to_binding(&self) -> Option<Binding> {
        if self.uri.is_empty() || self.kind.as_deref().is_some_and(|k| k != "ue") {
            return None;
        }
        let expires_at = match (self.expires_at_ms, self.expires_at) {
            (Some(m), _) => from_ms(m),
            (None, Some(s)) => UNIX_EPOCH + Duration::from_secs(s),
            (None, None) => return None,
        };
        let updated_at = self
            .updated_at_ms
            .map(from_ms)
            .or_else(|| {
                self.registered_at_epoch
                    .map(|s| UNIX_EPOCH + Duration::from_secs(s))
            })
            .unwrap_or(UNIX_EPOCH);
        let key = match (&self.sip_instance, self.reg_id, self.key.as_deref()) {
            (Some(i), Some(r), Some(k)) if k.starts_with('~') => ContactKey::from_instance(i, r),
            _ => ContactKey::from_uri(&self.uri),
        };
        let q = match self.q_millis {
            Some(m) => Q::from_millis(m),
            // Upstream always writes q; 1.0 is what an absent q means.
            None if (self.q - 1.0).abs() < f32::EPSILON => None,
            // q is in [0, 1], so q * 1000 fits u16.
            None => Q::from_millis((self.q.clamp(0.0, 1.0) * 1000.0).round() as u16),
        };
        let received = self.received.clone().or_else(|| {
            self.source_addr
                .as_ref()
                .map(|a| match &self.source_transport {
                    Some(t) => format!("sip:{a};transport={t}"),
                    None => format!("sip:{a}"),
                })
        });
        Some(Binding {
            key,
            uri: self.uri.clone(),
            q,
            params: self.params.clone(),
            expires_at,
            registered_at: self.first_registered_ms.map_or(updated_at, from_ms),
            updated_at,
            call_id: self.call_id.clone(),
            cseq: self.cseq,
            path: self.path.clone(),
            received,
            user_agent: self.user_agent.clone(),
            instance_id: self.sip_instance.clone(),
            reg_id: self.reg_id,
            flow_token: self.flow_token.clone(),
            auth_user: self.auth_user.clone(),
        })
    }
}

/// A whole AoR's bindings as one JSON array (the redb value of earlier builds; tests).
pub fn encode_list(list: &[Binding], now: SystemTime) -> Vec<u8> {
    let v: Vec<StoredContact> = list
        .iter()
        .map(|b| StoredContact::from_binding(b, now))
        .collect();
    serde_json::to_vec(&v).unwrap_or_default()
}

/// Bindings of an AoR from [`encode_list`]'s bytes; `None` when they do not decode.
pub fn decode_list(bytes: &[u8]) -> Option<Vec<Binding>> {
    let v: Vec<StoredContact> = serde_json::from_slice(bytes).ok()?;
    Some(v.iter().filter_map(StoredContact::to_binding).collect())
}

/// First byte of [`encode_compact`]'s output (a JSON array starts with `[`).
const COMPACT_V1: u8 = 0xB1;

// Flags of one binding in the compact form: which optional fields follow.
const F_INSTANCE_KEY: u16 = 1;
const F_Q: u16 = 1 << 1;
const F_RECEIVED: u16 = 1 << 2;
const F_USER_AGENT: u16 = 1 << 3;
const F_INSTANCE: u16 = 1 << 4;
const F_REG_ID: u16 = 1 << 5;
const F_FLOW: u16 = 1 << 6;
const F_AUTH_USER: u16 = 1 << 7;

pub(crate) fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

pub(crate) fn put_str(out: &mut Vec<u8>, s: &str) {
    put_varint(out, s.len() as u64);
    out.extend_from_slice(s.as_bytes());
}

/// An upper bound of one binding's compact size (so the output is allocated once).
fn compact_size(b: &Binding) -> usize {
    let opt = |s: &Option<String>| s.as_ref().map_or(0, |s| s.len() + 10);
    64 + b.uri.len()
        + b.call_id.len()
        + b.path.iter().map(|p| p.len() + 10).sum::<usize>()
        + b.params
            .iter()
            .map(|(n, v)| n.len() + v.as_ref().map_or(0, String::len) + 21)
            .sum::<usize>()
        + opt(&b.received)
        + opt(&b.user_agent)
        + opt(&b.instance_id)
        + opt(&b.flow_token)
        + opt(&b.auth_user)
}

/// A whole AoR's bindings in the local file's binary form: a version byte, the count, then
/// per binding its flags, URI, q, the three times (Unix milliseconds), Call-ID, CSeq, Path,
/// parameters and the optional fields the flags name. Strings are length-prefixed
/// (LEB128), so nothing is escaped or formatted.
pub fn encode_compact(list: &[Binding]) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + list.iter().map(compact_size).sum::<usize>());
    out.push(COMPACT_V1);
    put_varint(&mut out, list.len() as u64);
    for b in list {
        let mut flags = 0u16;
        let instance_key = b.key.as_str().starts_with('~');
        for (on, f) in [
            (instance_key, F_INSTANCE_KEY),
            (b.q.is_some(), F_Q),
            (b.received.is_some(), F_RECEIVED),
            (b.user_agent.is_some(), F_USER_AGENT),
            (b.instance_id.is_some(), F_INSTANCE),
            (b.reg_id.is_some(), F_REG_ID),
            (b.flow_token.is_some(), F_FLOW),
            (b.auth_user.is_some(), F_AUTH_USER),
        ] {
            if on {
                flags |= f;
            }
        }
        put_varint(&mut out, u64::from(flags));
        put_str(&mut out, &b.uri);
        if let Some(q) = b.q {
            put_varint(&mut out, u64::from(q.millis()));
        }
        put_varint(&mut out, ms(b.expires_at));
        put_varint(&mut out, ms(b.registered_at));
        put_varint(&mut out, ms(b.updated_at));
        put_str(&mut out, &b.call_id);
        put_varint(&mut out, u64::from(b.cseq));
        put_varint(&mut out, b.path.len() as u64);
        for p in &b.path {
            put_str(&mut out, p);
        }
        put_varint(&mut out, b.params.len() as u64);
        for (n, v) in &b.params {
            put_str(&mut out, n);
            match v {
                Some(v) => {
                    out.push(1);
                    put_str(&mut out, v);
                }
                None => out.push(0),
            }
        }
        for s in [&b.received, &b.user_agent, &b.instance_id]
            .into_iter()
            .flatten()
        {
            put_str(&mut out, s);
        }
        if let Some(r) = b.reg_id {
            put_varint(&mut out, u64::from(r));
        }
        for s in [&b.flow_token, &b.auth_user].into_iter().flatten() {
            put_str(&mut out, s);
        }
    }
    out
}

/// A cursor over [`encode_compact`]'s bytes; every read is bounds-checked.
pub(crate) struct Reader<'a>(pub(crate) &'a [u8]);

impl<'a> Reader<'a> {
    pub(crate) fn byte(&mut self) -> Option<u8> {
        let (&b, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(b)
    }

    pub(crate) fn varint(&mut self) -> Option<u64> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.byte()?;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Some(v);
            }
        }
        None
    }

    pub(crate) fn small<T: TryFrom<u64>>(&mut self) -> Option<T> {
        T::try_from(self.varint()?).ok()
    }

    pub(crate) fn str(&mut self) -> Option<&'a str> {
        let n = self.small::<usize>()?;
        if n > self.0.len() {
            return None;
        }
        let (s, rest) = self.0.split_at(n);
        self.0 = rest;
        std::str::from_utf8(s).ok()
    }

    fn string(&mut self) -> Option<String> {
        self.str().map(str::to_owned)
    }

    fn opt_string(&mut self, present: bool) -> Option<Option<String>> {
        if present {
            self.string().map(Some)
        } else {
            Some(None)
        }
    }

    /// A count of items each at least one byte long (so a corrupt count cannot reserve more
    /// than the input holds).
    fn count(&mut self) -> Option<usize> {
        let n = self.small::<usize>()?;
        (n <= self.0.len()).then_some(n)
    }
}

fn decode_one_compact(r: &mut Reader<'_>) -> Option<Binding> {
    let flags = r.small::<u16>()?;
    let has = |f: u16| flags & f != 0;
    let uri = r.string()?;
    let q = if has(F_Q) {
        Some(Q::from_millis(r.small()?)?)
    } else {
        None
    };
    let expires_at = from_ms(r.varint()?);
    let registered_at = from_ms(r.varint()?);
    let updated_at = from_ms(r.varint()?);
    let call_id = r.string()?;
    let cseq = r.small()?;
    let n = r.count()?;
    let mut path = Vec::with_capacity(n);
    for _ in 0..n {
        path.push(r.string()?);
    }
    let n = r.count()?;
    let mut params = Vec::with_capacity(n);
    for _ in 0..n {
        let name = r.string()?;
        let value = match r.byte()? {
            0 => None,
            1 => Some(r.string()?),
            _ => return None,
        };
        params.push((name, value));
    }
    let received = r.opt_string(has(F_RECEIVED))?;
    let user_agent = r.opt_string(has(F_USER_AGENT))?;
    let instance_id = r.opt_string(has(F_INSTANCE))?;
    let reg_id = if has(F_REG_ID) {
        Some(r.small()?)
    } else {
        None
    };
    let flow_token = r.opt_string(has(F_FLOW))?;
    let auth_user = r.opt_string(has(F_AUTH_USER))?;
    let key = match (&instance_id, reg_id) {
        (Some(i), Some(id)) if has(F_INSTANCE_KEY) => ContactKey::from_instance(i, id),
        _ => ContactKey::from_uri(&uri),
    };
    Some(Binding {
        key,
        uri,
        q,
        params,
        expires_at,
        registered_at,
        updated_at,
        call_id,
        cseq,
        path,
        received,
        user_agent,
        instance_id,
        reg_id,
        flow_token,
        auth_user,
    })
}

/// Bindings of an AoR from [`encode_compact`]'s bytes; `None` when they do not decode
/// (truncated, trailing bytes, bad UTF-8, unknown version).
pub fn decode_compact(bytes: &[u8]) -> Option<Vec<Binding>> {
    let mut r = Reader(bytes);
    if r.byte()? != COMPACT_V1 {
        return None;
    }
    let n = r.count()?;
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        out.push(decode_one_compact(&mut r)?);
    }
    r.0.is_empty().then_some(out)
}

/// A redb value of any build: the compact form, or the JSON array earlier builds wrote.
pub fn decode_stored(bytes: &[u8]) -> Option<Vec<Binding>> {
    match bytes.first() {
        Some(&COMPACT_V1) => decode_compact(bytes),
        _ => decode_list(bytes),
    }
}

/// One contact as a JSON string (a Redis hash value).
pub fn encode_one(b: &Binding, now: SystemTime) -> String {
    serde_json::to_string(&StoredContact::from_binding(b, now)).unwrap_or_default()
}

/// One contact from a Redis hash value.
pub fn decode_one(s: &str) -> Option<Binding> {
    serde_json::from_str::<StoredContact>(s).ok()?.to_binding()
}

#[cfg(test)]
mod tests {
    use super::*;
    use siphon_sip::registrar::ContactKey;

    fn binding() -> Binding {
        let now = UNIX_EPOCH + Duration::from_millis(1_700_000_000_123);
        Binding {
            key: ContactKey::from_instance("urn:uuid:1", 2),
            uri: "sip:alice@10.0.0.1:5062;transport=tcp".into(),
            q: Q::from_millis(500),
            params: vec![("+sip.instance".into(), Some("\"<urn:uuid:1>\"".into()))],
            expires_at: now + Duration::from_secs(600),
            registered_at: now - Duration::from_secs(60),
            updated_at: now,
            call_id: "c1".into(),
            cseq: 7,
            path: vec!["<sip:edge.example.com;lr>".into()],
            received: Some("sip:10.0.0.1:5062;transport=tcp".into()),
            user_agent: Some("ua/1".into()),
            instance_id: Some("urn:uuid:1".into()),
            reg_id: Some(2),
            flow_token: Some("tok".into()),
            auth_user: Some("alice".into()),
        }
    }

    #[test]
    fn round_trip_keeps_every_field() {
        let b = binding();
        let now = b.updated_at;
        let back = decode_list(&encode_list(std::slice::from_ref(&b), now)).unwrap();
        assert_eq!(back, vec![b.clone()]);
        assert_eq!(decode_one(&encode_one(&b, now)), Some(b));
    }

    #[test]
    fn compact_round_trip_and_older_json() {
        let full = binding();
        let mut bare = binding();
        bare.key = ContactKey::from_uri("sip:bob@192.0.2.1");
        bare.uri = "sip:bob@192.0.2.1".into();
        bare.q = None;
        bare.params = vec![("ob".into(), None), ("x".into(), Some(String::new()))];
        bare.path.clear();
        bare.received = None;
        bare.user_agent = None;
        bare.instance_id = None;
        bare.reg_id = None;
        bare.flow_token = None;
        bare.auth_user = None;
        // Instance and reg-id present but the binding keyed by its URI.
        let mut uri_keyed = binding();
        uri_keyed.key = ContactKey::from_uri(&uri_keyed.uri);
        let list = vec![full.clone(), bare, uri_keyed];
        let bytes = encode_compact(&list);
        assert_eq!(decode_compact(&bytes).as_ref(), Some(&list));
        assert_eq!(decode_stored(&bytes), Some(list.clone()));
        assert!(bytes.len() * 2 < encode_list(&list, full.updated_at).len());
        // Files written by earlier builds (JSON arrays) still load.
        let json = encode_list(std::slice::from_ref(&full), full.updated_at);
        assert_eq!(decode_stored(&json), Some(vec![full]));
        assert_eq!(decode_compact(&encode_compact(&[])), Some(Vec::new()));
    }

    #[test]
    fn compact_rejects_damage() {
        let bytes = encode_compact(&[binding(), binding()]);
        // Every truncation, and one trailing byte, is refused rather than misread.
        for n in 0..bytes.len() {
            assert_eq!(decode_compact(&bytes[..n]), None, "truncated at {n}");
        }
        let mut long = bytes.clone();
        long.push(0);
        assert_eq!(decode_compact(&long), None);
        // A huge count or string length fails without allocating it.
        assert_eq!(
            decode_compact(&[COMPACT_V1, 0xff, 0xff, 0xff, 0xff, 0x0f]),
            None
        );
        let mut bad_len = vec![COMPACT_V1, 1, 0];
        bad_len.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 0x0f]);
        assert_eq!(decode_compact(&bad_len), None);
        // Flipping any byte never panics.
        for i in 0..bytes.len() {
            let mut b = bytes.clone();
            b[i] ^= 0x5a;
            let _ = decode_compact(&b);
        }
    }

    #[test]
    fn reads_upstream_shaped_entries() {
        let s = r#"{"uri":"sip:bob@192.0.2.1","q":1.0,"expires_secs":30,"expires_at":4000000000,
            "registered_at_epoch":3999999970,"call_id":"x","cseq":1,"source_addr":"192.0.2.1:5060",
            "source_transport":"udp","sip_instance":null,"reg_id":null,"path":[],"kind":"ue"}"#;
        let b = decode_one(s).unwrap();
        assert_eq!(b.q, None);
        assert_eq!(
            b.received.as_deref(),
            Some("sip:192.0.2.1:5060;transport=udp")
        );
        assert_eq!(b.key, ContactKey::from_uri("sip:bob@192.0.2.1"));
        assert!(decode_one(&s.replace("\"ue\"", "\"as\"")).is_none());
    }
}
