//! The stored form of a binding, shared by the redb file and Redis: one JSON object per
//! contact with upstream SIPhon's `StoredContact` field names (`uri`, `q`, `expires_secs`,
//! `expires_at`, `registered_at_epoch`, `call_id`, `cseq`, `source_addr`, `source_transport`,
//! `sip_instance`, `reg_id`, `path`, `flow_token`, `params`, `kind`) so either side can read
//! the other's Redis keys, plus our own fields (millisecond times, `received`, `user_agent`,
//! `auth_user`, the binding key). Unknown fields are ignored and ours are optional.

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

/// A whole AoR's bindings as one JSON array (the redb value).
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
