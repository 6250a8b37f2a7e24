//! Presence state shared by every core: an event state compositor for PUBLISH (RFC 3903) and a
//! notifier for SUBSCRIBE (RFC 6665, RFC 3856 `presence` with PIDF bodies), reached through
//! the `presence` namespace (siphon-core-api.md §1.13) and the request-aware paths in
//! `native.rs`.
//!
//! The store is bounded (documents and subscriptions have limits, an answer at the limit and
//! counters) and expires on its own: [`Presence::sweep`] runs on the host's timer thread.
//! NOTIFY requests come out of here as [`Notify`] values (headers, body, target) and go out
//! through the node's `proxy.send_request` path; nothing here touches a socket.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::shared::lock;

/// The event package this notifier serves.
pub const PRESENCE_EVENT: &str = "presence";
/// The body type of a presence document (RFC 3863).
pub const PIDF: &str = "application/pidf+xml";

/// Limits of the presence store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PresenceLimits {
    /// Publications (one per SIP-ETag) held at once; a new one beyond it is refused.
    pub max_documents: usize,
    /// Subscriptions held at once; a new one beyond it is refused.
    pub max_subscriptions: usize,
    /// Shortest PUBLISH/SUBSCRIBE Expires accepted (423 below it), seconds.
    pub min_expires: u32,
    /// Longest Expires granted (longer requests are shortened), seconds.
    pub max_expires: u32,
    /// Largest document body, bytes.
    pub max_body: usize,
}

impl Default for PresenceLimits {
    fn default() -> Self {
        Self {
            max_documents: 100_000,
            max_subscriptions: 100_000,
            min_expires: 60,
            max_expires: 86_400,
            max_body: 65_536,
        }
    }
}

/// Why the compositor or the notifier refused a request: each maps to a SIP answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PresenceError {
    /// RFC 3903 §6 step 3: the event package is not one this compositor serves (489).
    #[error("event package {0:?} is not supported")]
    BadEvent(String),
    /// RFC 3903 §6 step 4: SIP-If-Match names no publication held here (412).
    #[error("no publication has entity-tag {0:?}")]
    UnknownEtag(String),
    /// RFC 3903 §6 step 5/6: an initial PUBLISH without a body (400).
    #[error("an initial PUBLISH needs a body")]
    MissingBody,
    /// Expires shorter than the minimum (423 with Min-Expires).
    #[error("expires {0} is below the minimum {1}")]
    TooBrief(u32, u32),
    /// The store is at its limit (503 with Retry-After).
    #[error("the presence store is full")]
    Full,
    /// The body is larger than the limit (413).
    #[error("the document is larger than {0} bytes")]
    TooLarge(usize),
}

impl PresenceError {
    /// The SIP status, reason phrase and extra headers for this refusal.
    pub fn answer(&self) -> (u16, &'static str, Vec<(String, String)>) {
        match self {
            Self::BadEvent(_) => (
                489,
                "Bad Event",
                vec![("Allow-Events".into(), PRESENCE_EVENT.into())],
            ),
            Self::UnknownEtag(_) => (412, "Conditional Request Failed", Vec::new()),
            Self::MissingBody => (400, "Bad Request", Vec::new()),
            Self::TooBrief(_, min) => (
                423,
                "Interval Too Brief",
                vec![("Min-Expires".into(), min.to_string())],
            ),
            Self::Full => (
                503,
                "Service Unavailable",
                vec![("Retry-After".into(), "60".into())],
            ),
            Self::TooLarge(_) => (413, "Request Entity Too Large", Vec::new()),
        }
    }
}

/// The state of a subscription (RFC 6665 §4.1.3 `Subscription-State` values).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubState {
    /// Created by `subscribe()` without a dialog: nothing can be sent to it yet.
    Init,
    /// Established.
    Active,
}

impl SubState {
    /// Upstream's spelling (`subscribers()[i]["state"]`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Init => "init",
            Self::Active => "active",
        }
    }
}

/// The dialog of a subscription: what an in-dialog NOTIFY needs (RFC 6665 §4.4.1,
/// RFC 3261 §12.2.1.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubDialog {
    /// Call-ID of the SUBSCRIBE.
    pub call_id: String,
    /// The subscriber's tag (the SUBSCRIBE's From tag; the NOTIFY's To tag).
    pub from_tag: String,
    /// Our tag (the SUBSCRIBE's To tag; the NOTIFY's From tag).
    pub to_tag: String,
    /// Route set (the SUBSCRIBE's Record-Route values, in order).
    pub route_set: Vec<String>,
    /// Dialog local URI (the SUBSCRIBE's To URI): the NOTIFY's From.
    pub local_uri: String,
    /// Dialog remote URI (the SUBSCRIBE's From URI): the NOTIFY's To.
    pub remote_uri: String,
    /// CSeq of the last NOTIFY sent in this dialog.
    pub cseq: u32,
}

/// One watcher of one resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscription {
    /// `sub-…` identifier.
    pub id: String,
    /// The watcher: its Contact (remote target) for dialog subscriptions.
    pub subscriber: String,
    /// The watched resource (normalised entity URI).
    pub resource: String,
    /// Event package.
    pub event: String,
    /// State.
    pub state: SubState,
    /// Granted duration from `since`.
    pub expires: Duration,
    /// When it was created or last refreshed.
    pub since: Instant,
    /// Dialog state, for `subscribe_dialog` subscriptions.
    pub dialog: Option<SubDialog>,
}

impl Subscription {
    /// Seconds left (0 once due).
    pub fn remaining(&self, now: Instant) -> u64 {
        (self.since + self.expires)
            .saturating_duration_since(now)
            .as_secs()
    }

    fn due(&self, now: Instant) -> bool {
        self.since + self.expires <= now
    }
}

/// One publication (RFC 3903 §4: one SIP-ETag).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Publication {
    etag: String,
    content_type: String,
    body: String,
    expires_at: Instant,
    seq: u64,
}

/// What a PUBLISH asks the compositor to do (RFC 3903 §4).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PublishRequest<'a> {
    /// Presentity.
    pub entity: &'a str,
    /// `Event` header package (None: absent).
    pub event: Option<&'a str>,
    /// `SIP-If-Match`.
    pub if_match: Option<&'a str>,
    /// Requested duration in seconds (0 removes).
    pub expires: u32,
    /// Body; None or empty for a refresh or a removal.
    pub body: Option<&'a str>,
    /// Content type of the body.
    pub content_type: Option<&'a str>,
}

/// What the compositor did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Published {
    /// The entity-tag for the 2xx (`SIP-ETag`), new on every success (RFC 3903 §6 step 8).
    pub etag: String,
    /// Granted duration (the 2xx `Expires`), 0 for a removal.
    pub expires: u32,
    /// NOTIFYs for the resource's watchers when the composed state changed.
    pub notifies: Vec<Notify>,
}

/// A NOTIFY to send within a subscription's dialog.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notify {
    /// Subscription it belongs to.
    pub subscription: String,
    /// Request-URI: the subscriber's Contact.
    pub ruri: String,
    /// Headers (From, To, Call-ID, CSeq, Route…, Contact, Event, Subscription-State,
    /// Content-Type, Max-Forwards).
    pub headers: Vec<(String, String)>,
    /// Body.
    pub body: Option<Vec<u8>>,
}

/// Counters of the presence store.
#[derive(Debug, Default)]
pub struct PresenceCounters {
    /// Publications accepted (initial, refresh, modify, remove).
    pub published: AtomicU64,
    /// PUBLISH refusals (412, 489, 423, 503 …).
    pub publish_refused: AtomicU64,
    /// Subscriptions created.
    pub subscribed: AtomicU64,
    /// SUBSCRIBE refusals.
    pub subscribe_refused: AtomicU64,
    /// NOTIFYs built.
    pub notifies: AtomicU64,
    /// Publications and subscriptions removed by expiry.
    pub expired: AtomicU64,
}

#[derive(Debug, Default)]
struct State {
    docs: HashMap<String, Vec<Publication>>,
    etags: HashMap<String, String>,
    subs: HashMap<String, Subscription>,
    by_resource: HashMap<String, Vec<String>>,
    by_dialog: HashMap<(String, String), String>,
    seq: u64,
    contact: String,
}

/// The shared presence store.
#[derive(Debug)]
pub struct Presence {
    limits: PresenceLimits,
    state: Mutex<State>,
    /// Counters (exported on the metrics endpoint by the node).
    pub counters: PresenceCounters,
    salt: u64,
}

impl Default for Presence {
    fn default() -> Self {
        Self::new(PresenceLimits::default())
    }
}

/// `sip:user@host` of a URI (name-addr or addr-spec), without parameters, scheme and host in
/// lower case: the key documents and subscriptions are filed under.
pub fn entity_key(uri: &str) -> String {
    let a = crate::message::addr_uri(uri);
    let a = a.split(['?', ';']).next().unwrap_or(a).trim();
    match a.split_once(':') {
        Some((scheme, rest)) => {
            let (user, host) = match rest.rsplit_once('@') {
                Some((u, h)) => (Some(u), h),
                None => (None, rest),
            };
            let mut out = scheme.to_ascii_lowercase();
            out.push(':');
            if let Some(u) = user {
                out.push_str(u);
                out.push('@');
            }
            out.push_str(&host.to_ascii_lowercase());
            out
        }
        None => a.to_owned(),
    }
}

/// The `tag` parameter of a From/To value.
pub fn tag_of(value: &str) -> Option<&str> {
    let params = match value.rfind('>') {
        Some(i) => &value[i + 1..],
        None => value.split_once(';').map_or("", |(_, p)| p),
    };
    params.split(';').find_map(|p| {
        let (k, v) = p.split_once('=')?;
        k.trim().eq_ignore_ascii_case("tag").then(|| v.trim())
    })
}

/// A neutral document for a presentity with no live publication (RFC 3856 §6.8: the state
/// a watcher is told when nothing is published).
pub fn neutral_pidf(entity: &str) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<presence xmlns=\"urn:ietf:params:xml:ns:pidf\" entity=\"{}\">\n<tuple id=\"siphon\"><status><basic>closed</basic></status></tuple>\n</presence>\n",
        entity
            .replace('&', "&amp;")
            .replace('"', "&quot;")
            .replace('<', "&lt;")
    )
}

impl Presence {
    /// An empty store with these limits.
    pub fn new(limits: PresenceLimits) -> Self {
        let salt = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64)
            ^ u64::from(std::process::id()).rotate_left(32);
        Self {
            limits,
            state: Mutex::new(State::default()),
            counters: PresenceCounters::default(),
            salt,
        }
    }

    /// The limits in force.
    pub fn limits(&self) -> PresenceLimits {
        self.limits
    }

    fn next_id(&self, st: &mut State, prefix: &str) -> String {
        st.seq += 1;
        // Not guessable from the outside (an ETag is a capability to modify a publication).
        let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ self.salt;
        for b in st.seq.to_le_bytes() {
            h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
        format!("{prefix}{:x}{h:016x}", st.seq)
    }

    /// The duration granted for a requested Expires (0 stays 0; 423 below the minimum).
    pub fn grant(&self, requested: u32) -> Result<u32, PresenceError> {
        if requested == 0 {
            return Ok(0);
        }
        if requested < self.limits.min_expires {
            return Err(PresenceError::TooBrief(requested, self.limits.min_expires));
        }
        Ok(requested.min(self.limits.max_expires))
    }

    /// RFC 3903 §6: process a PUBLISH for `presence` (initial, refresh, modify, remove).
    pub fn publish(
        &self,
        now: Instant,
        req: &PublishRequest<'_>,
    ) -> Result<Published, PresenceError> {
        let out = self.publish_inner(now, req);
        let c = if out.is_ok() {
            &self.counters.published
        } else {
            &self.counters.publish_refused
        };
        c.fetch_add(1, Ordering::Relaxed);
        out
    }

    fn publish_inner(
        &self,
        now: Instant,
        req: &PublishRequest<'_>,
    ) -> Result<Published, PresenceError> {
        let event = req
            .event
            .map(|e| e.split(';').next().unwrap_or(e).trim().to_ascii_lowercase());
        match event.as_deref() {
            Some(PRESENCE_EVENT) => {}
            Some(other) => return Err(PresenceError::BadEvent(other.to_owned())),
            None => return Err(PresenceError::BadEvent(String::new())),
        }
        let body = req.body.filter(|b| !b.is_empty());
        if let Some(b) = body
            && b.len() > self.limits.max_body
        {
            return Err(PresenceError::TooLarge(self.limits.max_body));
        }
        let entity = entity_key(req.entity);
        let mut st = lock(&self.state);
        // RFC 3903 §6 step 4: the ETag must name a live publication of this entity.
        let existing = match req.if_match {
            Some(tag) => {
                let tag = tag.trim();
                let live = st.etags.get(tag) == Some(&entity)
                    && st
                        .docs
                        .get(&entity)
                        .is_some_and(|v| v.iter().any(|p| p.etag == tag && p.expires_at > now));
                if !live {
                    return Err(PresenceError::UnknownEtag(tag.to_owned()));
                }
                Some(tag.to_owned())
            }
            None if body.is_none() => return Err(PresenceError::MissingBody),
            None => None,
        };
        let granted = self.grant(req.expires)?;
        if granted == 0 {
            // Removal (RFC 3903 §4.5).
            let Some(tag) = existing else {
                return Err(PresenceError::MissingBody);
            };
            st.etags.remove(&tag);
            if let Some(v) = st.docs.get_mut(&entity) {
                v.retain(|p| p.etag != tag);
                if v.is_empty() {
                    st.docs.remove(&entity);
                }
            }
            let notifies = self.notify_watchers(&mut st, now, &entity);
            return Ok(Published {
                etag: tag,
                expires: 0,
                notifies,
            });
        }
        if existing.is_none() && st.etags.len() >= self.limits.max_documents {
            return Err(PresenceError::Full);
        }
        let etag = self.next_id(&mut st, "e");
        st.seq += 1;
        let seq = st.seq;
        let expires_at = now + Duration::from_secs(u64::from(granted));
        let changed = body.is_some();
        match existing {
            Some(old) => {
                st.etags.remove(&old);
                if let Some(p) = st
                    .docs
                    .get_mut(&entity)
                    .and_then(|v| v.iter_mut().find(|p| p.etag == old))
                {
                    p.etag.clone_from(&etag);
                    p.expires_at = expires_at;
                    if let Some(b) = body {
                        b.clone_into(&mut p.body);
                        p.content_type = req.content_type.unwrap_or(PIDF).to_owned();
                        p.seq = seq;
                    }
                }
            }
            None => {
                st.docs
                    .entry(entity.clone())
                    .or_default()
                    .push(Publication {
                        etag: etag.clone(),
                        content_type: req.content_type.unwrap_or(PIDF).to_owned(),
                        body: body.unwrap_or_default().to_owned(),
                        expires_at,
                        seq,
                    });
            }
        }
        st.etags.insert(etag.clone(), entity.clone());
        let notifies = if changed {
            self.notify_watchers(&mut st, now, &entity)
        } else {
            Vec::new()
        };
        Ok(Published {
            etag,
            expires: granted,
            notifies,
        })
    }

    /// The composed state of `entity`: the most recently published live document.
    pub fn lookup(&self, now: Instant, entity: &str) -> Option<(String, String)> {
        let st = lock(&self.state);
        Self::composed(&st, now, &entity_key(entity))
    }

    fn composed(st: &State, now: Instant, entity: &str) -> Option<(String, String)> {
        st.docs
            .get(entity)?
            .iter()
            .filter(|p| p.expires_at > now)
            .max_by_key(|p| p.seq)
            .map(|p| (p.content_type.clone(), p.body.clone()))
    }

    /// Number of entities with a live publication.
    pub fn document_count(&self, now: Instant) -> usize {
        let st = lock(&self.state);
        st.docs
            .values()
            .filter(|v| v.iter().any(|p| p.expires_at > now))
            .count()
    }

    /// Number of subscriptions held.
    pub fn subscription_count(&self) -> usize {
        lock(&self.state).subs.len()
    }

    /// Add a subscription; `Err(Full)` at the limit.
    pub fn add(
        &self,
        now: Instant,
        subscriber: &str,
        resource: &str,
        event: &str,
        expires: u32,
        dialog: Option<SubDialog>,
    ) -> Result<String, PresenceError> {
        let mut st = lock(&self.state);
        if st.subs.len() >= self.limits.max_subscriptions {
            self.counters
                .subscribe_refused
                .fetch_add(1, Ordering::Relaxed);
            return Err(PresenceError::Full);
        }
        let id = self.next_id(&mut st, "sub-");
        let resource = entity_key(resource);
        if let Some(d) = &dialog {
            st.by_dialog
                .insert((d.call_id.clone(), d.from_tag.clone()), id.clone());
        }
        st.by_resource
            .entry(resource.clone())
            .or_default()
            .push(id.clone());
        let state = if dialog.is_some() {
            SubState::Active
        } else {
            SubState::Init
        };
        st.subs.insert(
            id.clone(),
            Subscription {
                id: id.clone(),
                subscriber: subscriber.to_owned(),
                resource,
                event: event.to_owned(),
                state,
                expires: Duration::from_secs(u64::from(expires)),
                since: now,
                dialog,
            },
        );
        self.counters.subscribed.fetch_add(1, Ordering::Relaxed);
        Ok(id)
    }

    /// Remove a subscription; whether it existed.
    pub fn remove(&self, id: &str) -> bool {
        Self::remove_locked(&mut lock(&self.state), id).is_some()
    }

    fn remove_locked(st: &mut State, id: &str) -> Option<Subscription> {
        let s = st.subs.remove(id)?;
        if let Some(v) = st.by_resource.get_mut(&s.resource) {
            v.retain(|x| x != id);
            if v.is_empty() {
                st.by_resource.remove(&s.resource);
            }
        }
        if let Some(d) = &s.dialog {
            st.by_dialog
                .remove(&(d.call_id.clone(), d.from_tag.clone()));
        }
        Some(s)
    }

    /// Reset a subscription's timer to `expires` seconds from now; whether it existed.
    pub fn refresh(&self, now: Instant, id: &str, expires: u32) -> bool {
        let mut st = lock(&self.state);
        match st.subs.get_mut(id) {
            Some(s) => {
                s.since = now;
                s.expires = Duration::from_secs(u64::from(expires));
                true
            }
            None => false,
        }
    }

    /// The subscription of a dialog `(Call-ID, subscriber's From tag)`.
    pub fn find_by_dialog(&self, call_id: &str, from_tag: &str) -> Option<String> {
        lock(&self.state)
            .by_dialog
            .get(&(call_id.to_owned(), from_tag.to_owned()))
            .cloned()
    }

    /// A copy of a subscription.
    pub fn get(&self, id: &str) -> Option<Subscription> {
        lock(&self.state).subs.get(id).cloned()
    }

    /// Live subscriptions of a resource.
    pub fn subscribers(&self, now: Instant, resource: &str) -> Vec<Subscription> {
        let st = lock(&self.state);
        st.by_resource
            .get(&entity_key(resource))
            .map(|ids| {
                ids.iter()
                    .filter_map(|i| st.subs.get(i))
                    .filter(|s| !s.due(now))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Build an in-dialog NOTIFY for subscription `id` (CSeq incremented). A state starting
    /// with `terminated` removes the subscription (RFC 6665 §4.4.1). `None`: unknown id or a
    /// subscription without dialog state.
    pub fn notify(
        &self,
        id: &str,
        body: Option<&str>,
        content_type: Option<&str>,
        state: &str,
        contact: &str,
    ) -> Option<Notify> {
        let mut st = lock(&self.state);
        let n = Self::build_notify(&mut st, id, body, content_type, state, contact)?;
        self.counters.notifies.fetch_add(1, Ordering::Relaxed);
        Some(n)
    }

    fn build_notify(
        st: &mut State,
        id: &str,
        body: Option<&str>,
        content_type: Option<&str>,
        state: &str,
        contact: &str,
    ) -> Option<Notify> {
        let s = st.subs.get_mut(id)?;
        let d = s.dialog.as_mut()?;
        d.cseq = d.cseq.saturating_add(1);
        let mut headers = vec![
            (
                "From".to_owned(),
                format!("<{}>;tag={}", d.local_uri, d.to_tag),
            ),
            (
                "To".to_owned(),
                format!("<{}>;tag={}", d.remote_uri, d.from_tag),
            ),
            ("Call-ID".to_owned(), d.call_id.clone()),
            ("CSeq".to_owned(), format!("{} NOTIFY", d.cseq)),
            ("Max-Forwards".to_owned(), "70".to_owned()),
        ];
        for r in &d.route_set {
            headers.push(("Route".to_owned(), r.clone()));
        }
        headers.push(("Contact".to_owned(), format!("<{contact}>")));
        headers.push(("Event".to_owned(), s.event.clone()));
        headers.push(("Subscription-State".to_owned(), state.to_owned()));
        if let (Some(ct), Some(_)) = (content_type, body) {
            headers.push(("Content-Type".to_owned(), ct.to_owned()));
        }
        let n = Notify {
            subscription: id.to_owned(),
            ruri: s.subscriber.clone(),
            headers,
            body: body.map(|b| b.as_bytes().to_vec()),
        };
        if state.trim_start().starts_with("terminated") {
            Self::remove_locked(st, id);
        }
        Some(n)
    }

    /// The NOTIFY telling a presence watcher the current composed state (`active;expires=N`).
    fn state_notify(st: &mut State, now: Instant, id: &str, contact: &str) -> Option<Notify> {
        let s = st.subs.get(id)?;
        let remaining = s.remaining(now);
        let resource = s.resource.clone();
        let (ct, body) = Self::composed(st, now, &resource)
            .unwrap_or_else(|| (PIDF.into(), neutral_pidf(&resource)));
        let state = format!("active;expires={remaining}");
        Self::build_notify(st, id, Some(&body), Some(&ct), &state, contact)
    }

    fn notify_watchers(&self, st: &mut State, now: Instant, entity: &str) -> Vec<Notify> {
        let ids: Vec<String> = st
            .by_resource
            .get(entity)
            .map(|v| {
                v.iter()
                    .filter(|i| {
                        st.subs.get(*i).is_some_and(|s| {
                            s.event == PRESENCE_EVENT && s.dialog.is_some() && !s.due(now)
                        })
                    })
                    .cloned()
                    .collect()
            })
            .unwrap_or_default();
        let contact = st.contact.clone();
        let out: Vec<Notify> = ids
            .iter()
            .filter_map(|id| Self::state_notify(st, now, id, &contact))
            .collect();
        self.counters
            .notifies
            .fetch_add(out.len() as u64, Ordering::Relaxed);
        out
    }

    /// Set the Contact URI our NOTIFYs carry (the node's own address).
    pub fn set_contact(&self, contact: &str) {
        contact.clone_into(&mut lock(&self.state).contact);
    }

    /// The Contact URI our NOTIFYs carry.
    pub fn contact(&self) -> String {
        lock(&self.state).contact.clone()
    }

    /// RFC 6665 notifier for `presence`: a SUBSCRIBE (new, refresh or, with `expires` 0,
    /// removal) for an existing subscription `id`: the NOTIFY that follows its 2xx.
    pub fn after_subscribe(&self, now: Instant, id: &str, expires: u32) -> Option<Notify> {
        let mut st = lock(&self.state);
        let contact = st.contact.clone();
        let n = if expires == 0 {
            let resource = st.subs.get(id)?.resource.clone();
            let (ct, body) = Self::composed(&st, now, &resource)
                .unwrap_or_else(|| (PIDF.into(), neutral_pidf(&resource)));
            Self::build_notify(
                &mut st,
                id,
                Some(&body),
                Some(&ct),
                "terminated;reason=timeout",
                &contact,
            )
        } else {
            let s = st.subs.get_mut(id)?;
            s.since = now;
            s.expires = Duration::from_secs(u64::from(expires));
            Self::state_notify(&mut st, now, id, &contact)
        };
        if n.is_some() {
            self.counters.notifies.fetch_add(1, Ordering::Relaxed);
        }
        n
    }

    /// Whether the compositor holds live state for `entity` (this node is its presence agent).
    pub fn has_state(&self, now: Instant, entity: &str) -> bool {
        let st = lock(&self.state);
        Self::composed(&st, now, &entity_key(entity)).is_some()
    }

    /// Drop expired publications and subscriptions. Returns the NOTIFYs that follow: the new
    /// composed state to the watchers of an entity that lost a publication, and
    /// `terminated;reason=timeout` to each expired dialog subscription.
    pub fn sweep(&self, now: Instant) -> Vec<Notify> {
        let mut st = lock(&self.state);
        let mut changed = Vec::new();
        let mut gone = Vec::new();
        for (entity, v) in &mut st.docs {
            let before = v.len();
            v.retain(|p| {
                let live = p.expires_at > now;
                if !live {
                    gone.push(p.etag.clone());
                }
                live
            });
            if v.len() != before {
                changed.push(entity.clone());
            }
        }
        st.docs.retain(|_, v| !v.is_empty());
        let mut expired = gone.len() as u64;
        for tag in gone {
            st.etags.remove(&tag);
        }
        let contact = st.contact.clone();
        let mut out = Vec::new();
        let due: Vec<String> = st
            .subs
            .values()
            .filter(|s| s.due(now))
            .map(|s| s.id.clone())
            .collect();
        for id in due {
            expired += 1;
            let resource = st.subs.get(&id).map(|s| s.resource.clone());
            let body = resource.as_deref().map(|r| {
                Self::composed(&st, now, r).unwrap_or_else(|| (PIDF.into(), neutral_pidf(r)))
            });
            let n = match &body {
                Some((ct, b)) => Self::build_notify(
                    &mut st,
                    &id,
                    Some(b),
                    Some(ct),
                    "terminated;reason=timeout",
                    &contact,
                ),
                None => None,
            };
            match n {
                Some(n) => out.push(n),
                None => {
                    Self::remove_locked(&mut st, &id);
                }
            }
        }
        drop(st);
        for entity in changed {
            let mut st = lock(&self.state);
            out.extend(self.notify_watchers(&mut st, now, &entity));
        }
        self.counters.expired.fetch_add(expired, Ordering::Relaxed);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn publish<'a>(
        entity: &'a str,
        body: Option<&'a str>,
        if_match: Option<&'a str>,
        expires: u32,
    ) -> PublishRequest<'a> {
        PublishRequest {
            entity,
            event: Some("presence"),
            if_match,
            expires,
            body,
            content_type: Some(PIDF),
        }
    }

    fn dialog(call: &str, ftag: &str) -> SubDialog {
        SubDialog {
            call_id: call.into(),
            from_tag: ftag.into(),
            to_tag: "n1".into(),
            route_set: vec!["<sip:10.0.0.9;lr>".into()],
            local_uri: "sip:alice@example.com".into(),
            remote_uri: "sip:bob@example.com".into(),
            cseq: 0,
        }
    }

    #[test]
    fn compositor_initial_refresh_modify_remove() {
        let p = Presence::default();
        let t0 = Instant::now();
        let a = p
            .publish(
                t0,
                &publish("sip:alice@Example.com", Some("<a/>"), None, 3600),
            )
            .unwrap();
        assert_eq!(a.expires, 3600);
        assert_eq!(
            p.lookup(t0, "<sip:alice@example.com>;x=y").map(|d| d.1),
            Some("<a/>".into())
        );
        // Refresh: no body, new ETag, same document.
        let r = p
            .publish(
                t0,
                &publish("sip:alice@example.com", None, Some(&a.etag), 600),
            )
            .unwrap();
        assert_ne!(r.etag, a.etag);
        assert!(r.notifies.is_empty());
        // The old ETag is gone (RFC 3903 §6 step 8).
        assert_eq!(
            p.publish(
                t0,
                &publish("sip:alice@example.com", None, Some(&a.etag), 600)
            ),
            Err(PresenceError::UnknownEtag(a.etag.clone()))
        );
        // Modify.
        let m = p
            .publish(
                t0,
                &publish("sip:alice@example.com", Some("<b/>"), Some(&r.etag), 600),
            )
            .unwrap();
        assert_eq!(p.lookup(t0, "sip:alice@example.com").unwrap().1, "<b/>");
        // Remove.
        let x = p
            .publish(
                t0,
                &publish("sip:alice@example.com", None, Some(&m.etag), 0),
            )
            .unwrap();
        assert_eq!(x.expires, 0);
        assert_eq!(p.lookup(t0, "sip:alice@example.com"), None);
        assert_eq!(p.document_count(t0), 0);
    }

    #[test]
    fn compositor_refusals() {
        let p = Presence::new(PresenceLimits {
            max_documents: 1,
            ..PresenceLimits::default()
        });
        let t0 = Instant::now();
        let mut bad = publish("sip:a@x", Some("<a/>"), None, 3600);
        bad.event = Some("dialog");
        assert_eq!(p.publish(t0, &bad).unwrap_err().answer().0, 489);
        assert_eq!(
            p.publish(t0, &publish("sip:a@x", Some("<a/>"), Some("nope"), 60))
                .unwrap_err()
                .answer()
                .0,
            412
        );
        assert_eq!(
            p.publish(t0, &publish("sip:a@x", None, None, 60))
                .unwrap_err()
                .answer()
                .0,
            400
        );
        assert_eq!(
            p.publish(t0, &publish("sip:a@x", Some("<a/>"), None, 5))
                .unwrap_err()
                .answer(),
            (
                423,
                "Interval Too Brief",
                vec![("Min-Expires".into(), "60".into())]
            )
        );
        p.publish(t0, &publish("sip:a@x", Some("<a/>"), None, 60))
            .unwrap();
        assert_eq!(
            p.publish(t0, &publish("sip:b@x", Some("<b/>"), None, 60)),
            Err(PresenceError::Full)
        );
        assert_eq!(p.counters.publish_refused.load(Ordering::Relaxed), 5);
    }

    #[test]
    fn notifier_dialog_notify_on_change_and_expiry() {
        let p = Presence::default();
        p.set_contact("sip:127.0.0.1:5060");
        let t0 = Instant::now();
        let a = p
            .publish(
                t0,
                &publish("sip:alice@example.com", Some("<a/>"), None, 3600),
            )
            .unwrap();
        let id = p
            .add(
                t0,
                "sip:bob@10.0.0.2:5070",
                "sip:alice@example.com",
                "presence",
                600,
                Some(dialog("c1", "b1")),
            )
            .unwrap();
        assert_eq!(p.find_by_dialog("c1", "b1").as_deref(), Some(id.as_str()));
        let first = p.after_subscribe(t0, &id, 600).unwrap();
        assert_eq!(first.ruri, "sip:bob@10.0.0.2:5070");
        assert_eq!(first.body.as_deref(), Some(&b"<a/>"[..]));
        let h = |n: &Notify, k: &str| {
            n.headers
                .iter()
                .find(|(x, _)| x == k)
                .map(|(_, v)| v.clone())
                .unwrap_or_default()
        };
        assert_eq!(h(&first, "From"), "<sip:alice@example.com>;tag=n1");
        assert_eq!(h(&first, "To"), "<sip:bob@example.com>;tag=b1");
        assert_eq!(h(&first, "CSeq"), "1 NOTIFY");
        assert_eq!(h(&first, "Route"), "<sip:10.0.0.9;lr>");
        assert_eq!(h(&first, "Subscription-State"), "active;expires=600");
        assert_eq!(h(&first, "Contact"), "<sip:127.0.0.1:5060>");
        // A modify notifies the watcher with the next CSeq.
        let m = p
            .publish(
                t0,
                &publish("sip:alice@example.com", Some("<b/>"), Some(&a.etag), 3600),
            )
            .unwrap();
        assert_eq!(m.notifies.len(), 1);
        assert_eq!(h(&m.notifies[0], "CSeq"), "2 NOTIFY");
        assert_eq!(m.notifies[0].body.as_deref(), Some(&b"<b/>"[..]));
        // Expiry of the subscription: a terminated NOTIFY and the subscription is gone.
        let later = t0 + Duration::from_secs(601);
        let out = p.sweep(later);
        assert_eq!(out.len(), 1);
        assert_eq!(
            h(&out[0], "Subscription-State"),
            "terminated;reason=timeout"
        );
        assert_eq!(p.subscription_count(), 0);
        assert_eq!(p.find_by_dialog("c1", "b1"), None);
        // Expiry of the document: gone from lookup.
        assert!(p.sweep(t0 + Duration::from_secs(3601)).is_empty());
        assert_eq!(p.document_count(t0 + Duration::from_secs(3601)), 0);
    }

    #[test]
    fn unsubscribe_sends_terminated_and_limits_hold() {
        let p = Presence::new(PresenceLimits {
            max_subscriptions: 1,
            ..PresenceLimits::default()
        });
        let t0 = Instant::now();
        let id = p
            .add(
                t0,
                "sip:b@h",
                "sip:a@x",
                "presence",
                60,
                Some(dialog("c", "t")),
            )
            .unwrap();
        assert_eq!(
            p.add(t0, "sip:c@h", "sip:a@x", "presence", 60, None),
            Err(PresenceError::Full)
        );
        let n = p.after_subscribe(t0, &id, 0).unwrap();
        assert!(
            n.headers
                .iter()
                .any(|(k, v)| k == "Subscription-State" && v.starts_with("terminated"))
        );
        assert_eq!(p.subscription_count(), 0);
        // A subscription without a dialog cannot be notified.
        let id = p
            .add(t0, "sip:c@h", "sip:a@x", "presence", 60, None)
            .unwrap();
        assert!(p.notify(&id, None, None, "active", "sip:me").is_none());
        assert!(p.remove(&id));
        assert!(!p.remove(&id));
    }

    #[test]
    fn keys_and_tags() {
        assert_eq!(
            entity_key("\"A\" <SIP:alice@EXAMPLE.com;transport=udp>"),
            "sip:alice@example.com"
        );
        assert_eq!(entity_key("sip:example.com"), "sip:example.com");
        assert_eq!(tag_of("<sip:a@b>;tag=x1;y"), Some("x1"));
        assert_eq!(tag_of("sip:a@b;tag=x2"), Some("x2"));
        assert_eq!(tag_of("<sip:a@b;tag=no>"), None);
    }
}
