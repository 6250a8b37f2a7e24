//! Registrar: processing of REGISTER bindings, RFC 3261 §10.3, with Path (RFC 3327) and
//! the instance/reg-id binding identity of RFC 5626 §6. Sans-IO: `now` is an input.
//!
//! What it owns: the §10.3 steps that concern bindings (6: `Contact: *`; 7: expiry,
//! 423 Interval Too Brief, the max-expires clamp, add/refresh/remove, Call-ID/CSeq ordering,
//! all-or-nothing commit; 8: the Contact list of the 200 OK), lookup in q order, expiry
//! sweeps and change notifications (`@registrar.on_change`). Config keys (`registrar:`):
//! `default_expires` 3600, `max_expires` 7200, `min_expires` 0 (no minimum, so never 423),
//! `max_contacts` 0 (no limit), `enforce_auth_aor_match` false — SIPhon's defaults when
//! `siphon.yaml` leaves them unset.
//!
//! What it does not own: steps 1–4 (domain check, `Require`, authentication — see
//! [`crate::auth`]), reading the REGISTER (the node builds a [`RegisterRequest`]), sending the
//! response (the node attaches [`RegisterError::status`] / the Contact values built here),
//! and persistence beyond the [`LocationStore`] it is given.
//!
//! Too many contacts: when a REGISTER would leave an AOR with more than `max_contacts`
//! bindings it is refused as a whole, by default with **403 Forbidden** ("Too Many
//! Contacts"): a policy limit that the same request will keep hitting, so a final refusal
//! that RFC 3261 §21.4.4 says "SHOULD NOT be repeated" fits, and unlike 503 it does not make
//! the UA fail over to another registrar (RFC 3263) and spread the overflow. Deployments that
//! want Kamailio/OpenSIPS behaviour set [`TooManyContactsStatus::ServiceUnavailable`]: 503
//! with `Retry-After` set to when the oldest binding expires. Refreshes and removals are
//! never refused by the limit, only additions.

mod message;
mod store;
mod uri;

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

pub use message::RegisterParseError;
pub use store::{
    Binding, Commit, Expired, LocationStore, MemoryLocationStore, StoreError, sort_for_lookup,
};
pub use uri::{Aor, AorError, ContactKey};

/// A q-value (RFC 3261 §20.10 `qvalue`) in thousandths, 0..=1000.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Q(u16);

impl Q {
    /// q = 1.
    pub const ONE: Self = Self(1000);
    /// q = 0.
    pub const ZERO: Self = Self(0);

    /// From thousandths; `None` above 1000.
    #[must_use]
    pub const fn from_millis(m: u16) -> Option<Self> {
        if m <= 1000 { Some(Self(m)) } else { None }
    }

    /// Thousandths.
    #[must_use]
    pub const fn millis(self) -> u16 {
        self.0
    }

    /// Parses `qvalue = ("0" ["." 0*3DIGIT]) / ("1" ["." 0*3("0")])`.
    #[must_use]
    pub fn parse(s: &str) -> Option<Self> {
        let s = s.trim();
        let (int, frac) = s.split_once('.').unwrap_or((s, ""));
        if frac.len() > 3 || !frac.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let mut m: u16 = 0;
        for (i, b) in frac.bytes().enumerate() {
            m += u16::from(b - b'0') * [100, 10, 1][i];
        }
        match int {
            "0" => Some(Self(m)),
            "1" if m == 0 => Some(Self::ONE),
            _ => None,
        }
    }
}

/// `0`, `1`, `0.5`, `0.125`.
impl fmt::Display for Q {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            1000 => f.write_str("1"),
            0 => f.write_str("0"),
            m => {
                let s = format!("{m:03}");
                write!(f, "0.{}", s.trim_end_matches('0'))
            }
        }
    }
}

/// One Contact of a REGISTER, as the node read it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ContactBinding {
    /// The contact URI (angle brackets optional).
    pub uri: String,
    /// The `q` parameter.
    pub q: Option<Q>,
    /// The `expires` parameter (values above `u32::MAX` saturate, RFC 3261 §20.19).
    pub expires: Option<u32>,
    /// Every other Contact parameter: name and raw value (quotes kept), e.g.
    /// `("+sip.instance", Some("\"<urn:uuid:…>\""))`, `("reg-id", Some("1"))`.
    pub params: Vec<(String, Option<String>)>,
}

impl ContactBinding {
    /// A contact with just a URI.
    #[must_use]
    pub fn new(uri: &str) -> Self {
        Self {
            uri: uri.to_owned(),
            ..Self::default()
        }
    }
}

/// The Contact header fields of a REGISTER.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ContactEntry {
    /// `Contact: *` (remove all bindings; RFC 3261 §10.2.2).
    Star,
    /// A contact to add, refresh or (with expires 0) remove.
    Binding(ContactBinding),
}

/// The parts of a REGISTER the registrar needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegisterRequest {
    /// The AOR (from the To header, normalised).
    pub aor: Aor,
    /// The Call-ID.
    pub call_id: String,
    /// The CSeq number.
    pub cseq: u32,
    /// The `Expires` header, if present.
    pub expires: Option<u32>,
    /// All Contact values in order; empty for a query ("fetch bindings", §10.2.3).
    pub contacts: Vec<ContactEntry>,
    /// Path header values in order (RFC 3327), stored with every binding written.
    pub path: Vec<String>,
    /// Source of the REGISTER (`received`), if the node records it.
    pub received: Option<String>,
    /// User-Agent header.
    pub user_agent: Option<String>,
    /// The digest user that authenticated this REGISTER, if any.
    pub auth_user: Option<String>,
    /// Script-supplied flow token (`registrar.save(..., flow_token=)`).
    pub flow_token: Option<String>,
}

impl RegisterRequest {
    /// A request for `aor` with the given Call-ID and CSeq and nothing else.
    #[must_use]
    pub fn new(aor: Aor, call_id: &str, cseq: u32) -> Self {
        Self {
            aor,
            call_id: call_id.to_owned(),
            cseq,
            expires: None,
            contacts: Vec::new(),
            path: Vec::new(),
            received: None,
            user_agent: None,
            auth_user: None,
            flow_token: None,
        }
    }
}

/// The status to refuse REGISTERs that exceed `max_contacts` with (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TooManyContactsStatus {
    /// 403 Forbidden (default).
    #[default]
    Forbidden,
    /// 503 Service Unavailable with Retry-After.
    ServiceUnavailable,
}

/// Registrar settings (`registrar:` in `siphon.yaml`, `registrar.configure(...)`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistrarConfig {
    /// Lifetime when neither the contact nor the request gives one (seconds).
    pub default_expires: u32,
    /// Longer requested lifetimes are shortened to this (seconds).
    pub max_expires: u32,
    /// Shorter non-zero lifetimes are refused with 423 and `Min-Expires` (seconds); 0: no
    /// minimum.
    pub min_expires: u32,
    /// Most bindings per AOR; 0 means no limit.
    pub max_contacts: usize,
    /// The status for exceeding `max_contacts`.
    pub too_many_contacts: TooManyContactsStatus,
    /// Refuse (403) a REGISTER whose authenticated user is not the AOR's user part.
    pub enforce_auth_aor_match: bool,
}

impl Default for RegistrarConfig {
    fn default() -> Self {
        Self {
            default_expires: 3600,
            max_expires: 7200,
            min_expires: 0,
            max_contacts: 0,
            too_many_contacts: TooManyContactsStatus::Forbidden,
            enforce_auth_aor_match: false,
        }
    }
}

/// What changed for an AOR (`@registrar.on_change(aor, event_type, contacts)`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ChangeKind {
    /// New bindings were added.
    Registered,
    /// Existing bindings were refreshed.
    Refreshed,
    /// Bindings were removed by the UA (expires 0, `*`) or by the script.
    Deregistered,
    /// Bindings reached their expiry.
    Expired,
}

impl ChangeKind {
    /// `registered`, `refreshed`, `deregistered`, `expired`.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Registered => "registered",
            Self::Refreshed => "refreshed",
            Self::Deregistered => "deregistered",
            Self::Expired => "expired",
        }
    }
}

/// One change notification: the AOR, the kind, and the bindings it concerns (for
/// `Registered`/`Refreshed` their new state, for `Deregistered`/`Expired` their last state).
/// One operation yields at most one event per kind, in the order expired, deregistered,
/// registered, refreshed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistrarEvent {
    /// The AOR.
    pub aor: Aor,
    /// What happened.
    pub kind: ChangeKind,
    /// The bindings concerned.
    pub contacts: Vec<Binding>,
}

/// A processed REGISTER: the 200 OK content and the notifications.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegisterOutcome {
    /// All current bindings of the AOR after the update, in lookup order.
    pub bindings: Vec<Binding>,
    /// Change notifications to deliver to `@registrar.on_change`.
    pub events: Vec<RegistrarEvent>,
    /// The time the request was processed at.
    pub now: SystemTime,
}

impl RegisterOutcome {
    /// The Contact header values for the 200 OK, one per binding, each with its remaining
    /// `expires` (RFC 3261 §10.3 step 8). Empty when no binding remains (no Contact header).
    #[must_use]
    pub fn contact_header_values(&self) -> Vec<String> {
        self.bindings
            .iter()
            .map(|b| b.contact_header_value(self.now))
            .collect()
    }

    /// The header fields of the 200 OK besides the ones copied from the request: one
    /// `Contact` per binding (step 8) and, when the REGISTER's `Supported` lists `path`, its
    /// `Path` values echoed back (RFC 3327 §5.3).
    #[must_use]
    pub fn reply_headers(
        &self,
        req: &RegisterRequest,
        path_supported: bool,
    ) -> Vec<(&'static str, String)> {
        let mut h: Vec<(&'static str, String)> = self
            .contact_header_values()
            .into_iter()
            .map(|v| ("Contact", v))
            .collect();
        if path_supported {
            h.extend(req.path.iter().map(|p| ("Path", p.clone())));
        }
        h
    }
}

/// How a `Contact: *` was misused (400 Bad Request, RFC 3261 §10.3 step 6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum StarMisuse {
    /// `*` without `Expires: 0`.
    ExpiresNotZero,
    /// `*` together with other Contact values.
    WithOtherContacts,
}

/// Why a REGISTER was refused. [`RegisterError::status`] gives the response.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RegisterError {
    /// Misused `Contact: *` (400).
    #[error("invalid Contact: * ({0:?})")]
    InvalidStar(StarMisuse),
    /// A non-zero lifetime below `min_expires` (423, with `Min-Expires`).
    #[error("interval too brief: {requested}s < {min_expires}s")]
    IntervalTooBrief {
        /// The shortest lifetime requested.
        requested: u32,
        /// The value for the `Min-Expires` header.
        min_expires: u32,
    },
    /// Same Call-ID as a stored binding with a CSeq that is not higher (500, §10.3 step 7).
    #[error("out-of-order REGISTER: CSeq {cseq} <= stored {stored_cseq} for the same Call-ID")]
    OutOfOrder {
        /// The request's CSeq.
        cseq: u32,
        /// The stored binding's CSeq.
        stored_cseq: u32,
    },
    /// The AOR would exceed `max_contacts` (403, or 503 with Retry-After).
    #[error("too many contacts: {requested} > {max}")]
    TooManyContacts {
        /// The configured limit.
        max: usize,
        /// Bindings the AOR would have had.
        requested: usize,
        /// 403 or 503.
        status: TooManyContactsStatus,
        /// Seconds until the oldest binding expires (for Retry-After with 503).
        retry_after: u32,
    },
    /// The authenticated user does not own the AOR (403; `enforce_auth_aor_match`).
    #[error("authenticated user does not match the address-of-record")]
    AuthAorMismatch,
    /// The location store failed (500).
    #[error("location store: {0}")]
    Store(#[from] StoreError),
}

impl RegisterError {
    /// Status code and reason phrase of the response.
    #[must_use]
    pub fn status(&self) -> (u16, &'static str) {
        match self {
            Self::InvalidStar(_) => (400, "Bad Request"),
            Self::IntervalTooBrief { .. } => (423, "Interval Too Brief"),
            Self::OutOfOrder { .. } | Self::Store(_) => (500, "Server Internal Error"),
            Self::TooManyContacts {
                status: TooManyContactsStatus::Forbidden,
                ..
            } => (403, "Too Many Contacts"),
            Self::TooManyContacts { .. } => (503, "Too Many Contacts"),
            Self::AuthAorMismatch => (403, "Forbidden"),
        }
    }

    /// Header fields the response must carry: `Min-Expires` for 423, `Retry-After` for 503.
    #[must_use]
    pub fn extra_headers(&self) -> Vec<(&'static str, String)> {
        match self {
            Self::IntervalTooBrief { min_expires, .. } => {
                vec![("Min-Expires", min_expires.to_string())]
            }
            Self::TooManyContacts {
                status: TooManyContactsStatus::ServiceUnavailable,
                retry_after,
                ..
            } => vec![("Retry-After", retry_after.to_string())],
            _ => Vec::new(),
        }
    }
}

/// The registrar: policy over a shared [`LocationStore`]. `Send + Sync`; one per node.
pub struct Registrar {
    config: RegistrarConfig,
    store: Arc<dyn LocationStore>,
}

impl fmt::Debug for Registrar {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Registrar")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// A contact after its lifetime was decided.
struct Planned<'a> {
    contact: &'a ContactBinding,
    key: ContactKey,
    expires: u32,
    instance_id: Option<String>,
    reg_id: Option<u32>,
}

impl Registrar {
    /// A registrar over `store`.
    #[must_use]
    pub fn new(config: RegistrarConfig, store: Arc<dyn LocationStore>) -> Self {
        Self { config, store }
    }

    /// The configuration.
    #[must_use]
    pub fn config(&self) -> &RegistrarConfig {
        &self.config
    }

    /// The store.
    #[must_use]
    pub fn store(&self) -> &Arc<dyn LocationStore> {
        &self.store
    }

    /// Processes a REGISTER at `now` (RFC 3261 §10.3 steps 6–8). All contacts are applied or
    /// none: on `Err` the AOR is unchanged.
    pub fn register(
        &self,
        now: SystemTime,
        req: &RegisterRequest,
    ) -> Result<RegisterOutcome, RegisterError> {
        if self.config.enforce_auth_aor_match {
            if let Some(user) = &req.auth_user {
                if req.aor.user() != Some(user.as_str()) {
                    return Err(RegisterError::AuthAorMismatch);
                }
            }
        }
        let star = req.contacts.iter().any(|c| matches!(c, ContactEntry::Star));
        if star {
            if req.contacts.len() > 1 {
                return Err(RegisterError::InvalidStar(StarMisuse::WithOtherContacts));
            }
            if req.expires != Some(0) {
                return Err(RegisterError::InvalidStar(StarMisuse::ExpiresNotZero));
            }
        }
        let plan = self.plan(req)?;

        let mut result: Option<Result<RegisterOutcome, RegisterError>> = None;
        self.store.update(&req.aor, &mut |list| {
            let r = self.apply(now, req, star, &plan, list);
            let commit = if r.is_ok() { Commit::Yes } else { Commit::No };
            result = Some(r);
            commit
        })?;
        result.unwrap_or(Err(RegisterError::Store(StoreError::Unavailable)))
    }

    /// Step 7, first half: the lifetime of every contact, 423 and the clamp.
    fn plan<'a>(&self, req: &'a RegisterRequest) -> Result<Vec<Planned<'a>>, RegisterError> {
        let mut plan = Vec::with_capacity(req.contacts.len());
        let mut too_brief: Option<u32> = None;
        for entry in &req.contacts {
            let ContactEntry::Binding(c) = entry else {
                continue;
            };
            let requested = c
                .expires
                .or(req.expires)
                .unwrap_or(self.config.default_expires);
            if requested != 0 && requested < self.config.min_expires {
                too_brief = Some(too_brief.map_or(requested, |t| t.min(requested)));
            }
            let expires = requested.min(self.config.max_expires);
            let instance_id = param(c, "+sip.instance").map(|v| {
                v.trim_matches('"')
                    .trim_start_matches('<')
                    .trim_end_matches('>')
                    .to_owned()
            });
            let reg_id = param(c, "reg-id").and_then(|v| v.trim_matches('"').parse().ok());
            let key = match (&instance_id, reg_id) {
                (Some(i), Some(r)) => ContactKey::from_instance(i, r),
                _ => ContactKey::from_uri(&c.uri),
            };
            plan.push(Planned {
                contact: c,
                key,
                expires,
                instance_id,
                reg_id,
            });
        }
        if let Some(requested) = too_brief {
            return Err(RegisterError::IntervalTooBrief {
                requested,
                min_expires: self.config.min_expires,
            });
        }
        Ok(plan)
    }

    /// Step 6/7, second half: applies the plan to the AOR's bindings (inside the store's
    /// atomic update) and builds the outcome.
    fn apply(
        &self,
        now: SystemTime,
        req: &RegisterRequest,
        star: bool,
        plan: &[Planned<'_>],
        list: &mut Vec<Binding>,
    ) -> Result<RegisterOutcome, RegisterError> {
        let mut expired = Vec::new();
        let mut removed = Vec::new();
        let mut added = Vec::new();
        let mut refreshed: Vec<Binding> = Vec::new();

        // Bindings past their lifetime no longer exist (§10.3: "expired bindings").
        let (gone, live): (Vec<_>, Vec<_>) = list.drain(..).partition(|b| b.is_expired(now));
        expired.extend(gone);
        *list = live;
        let before = list.len();

        let check_order = |b: &Binding| -> Result<(), RegisterError> {
            if b.call_id == req.call_id && req.cseq <= b.cseq {
                return Err(RegisterError::OutOfOrder {
                    cseq: req.cseq,
                    stored_cseq: b.cseq,
                });
            }
            Ok(())
        };

        if star {
            for b in list.iter() {
                check_order(b)?;
            }
            removed.append(list);
        }

        let mut touched: Vec<&ContactKey> = Vec::new();
        for p in plan {
            let pos = list.iter().position(|b| b.key == p.key);
            // A contact repeated within one request is applied again without the CSeq check
            // (the first occurrence already wrote this request's CSeq).
            let repeat = touched.contains(&&p.key);
            if let (Some(i), false) = (pos, repeat) {
                check_order(&list[i])?;
            }
            touched.push(&p.key);
            match (pos, p.expires) {
                (Some(i), 0) => {
                    let b = list.remove(i);
                    refreshed.retain(|r| r.key != b.key);
                    let n = added.len();
                    added.retain(|a: &Binding| a.key != b.key);
                    // Added and removed by the same request: nothing to report.
                    if added.len() == n {
                        removed.push(b);
                    }
                }
                (None, 0) => {}
                (Some(i), _) => {
                    let b = &mut list[i];
                    self.write_binding(b, now, req, p);
                    let b = b.clone();
                    if let Some(a) = added.iter_mut().find(|a| a.key == b.key) {
                        *a = b;
                    } else if let Some(r) = refreshed.iter_mut().find(|r| r.key == b.key) {
                        *r = b;
                    } else {
                        refreshed.push(b);
                    }
                }
                (None, _) => {
                    let mut b = Binding {
                        key: p.key.clone(),
                        uri: String::new(),
                        q: None,
                        params: Vec::new(),
                        expires_at: now,
                        registered_at: now,
                        updated_at: now,
                        call_id: String::new(),
                        cseq: 0,
                        path: Vec::new(),
                        received: None,
                        user_agent: None,
                        instance_id: None,
                        reg_id: None,
                        flow_token: None,
                        auth_user: None,
                    };
                    self.write_binding(&mut b, now, req, p);
                    list.push(b.clone());
                    added.push(b);
                }
            }
        }

        let max = self.config.max_contacts;
        if max > 0 && list.len() > max && list.len() > before {
            let retry_after = list
                .iter()
                .filter(|b| !added.iter().any(|a| a.key == b.key))
                .map(|b| b.remaining_secs(now))
                .min()
                .unwrap_or(0);
            return Err(RegisterError::TooManyContacts {
                max,
                requested: list.len(),
                status: self.config.too_many_contacts,
                retry_after,
            });
        }

        let mut bindings = list.clone();
        sort_for_lookup(&mut bindings);
        let mut events = Vec::new();
        for (kind, contacts) in [
            (ChangeKind::Expired, expired),
            (ChangeKind::Deregistered, removed),
            (ChangeKind::Registered, added),
            (ChangeKind::Refreshed, refreshed),
        ] {
            if !contacts.is_empty() {
                events.push(RegistrarEvent {
                    aor: req.aor.clone(),
                    kind,
                    contacts,
                });
            }
        }
        Ok(RegisterOutcome {
            bindings,
            events,
            now,
        })
    }

    fn write_binding(
        &self,
        b: &mut Binding,
        now: SystemTime,
        req: &RegisterRequest,
        p: &Planned<'_>,
    ) {
        let c = p.contact;
        b.uri = strip_brackets(&c.uri).to_owned();
        b.q = c.q;
        b.params = c
            .params
            .iter()
            .filter(|(n, _)| !n.eq_ignore_ascii_case("q") && !n.eq_ignore_ascii_case("expires"))
            .cloned()
            .collect();
        b.expires_at = now + Duration::from_secs(u64::from(p.expires));
        b.updated_at = now;
        b.call_id.clone_from(&req.call_id);
        b.cseq = req.cseq;
        b.path.clone_from(&req.path);
        b.received.clone_from(&req.received);
        b.user_agent.clone_from(&req.user_agent);
        b.instance_id.clone_from(&p.instance_id);
        b.reg_id = p.reg_id;
        b.flow_token.clone_from(&req.flow_token);
        b.auth_user.clone_from(&req.auth_user);
    }

    /// `registrar.lookup(uri)`: the live bindings of `aor` at `now`, highest q first (ties:
    /// most recently refreshed first).
    pub fn lookup(&self, now: SystemTime, aor: &Aor) -> Result<Vec<Binding>, StoreError> {
        let mut v = self.store.get(aor)?;
        v.retain(|b| !b.is_expired(now));
        sort_for_lookup(&mut v);
        Ok(v)
    }

    /// `registrar.is_registered(uri)`.
    pub fn is_registered(&self, now: SystemTime, aor: &Aor) -> Result<bool, StoreError> {
        Ok(self.store.get(aor)?.iter().any(|b| !b.is_expired(now)))
    }

    /// `registrar.remove(uri)`: drops every binding of `aor` (event `deregistered`).
    pub fn remove(&self, now: SystemTime, aor: &Aor) -> Result<Option<RegistrarEvent>, StoreError> {
        self.take_all(now, aor, ChangeKind::Deregistered)
    }

    /// `registrar.expire(uri)`: expires every binding of `aor` now (event `expired`).
    pub fn expire(&self, now: SystemTime, aor: &Aor) -> Result<Option<RegistrarEvent>, StoreError> {
        self.take_all(now, aor, ChangeKind::Expired)
    }

    fn take_all(
        &self,
        now: SystemTime,
        aor: &Aor,
        kind: ChangeKind,
    ) -> Result<Option<RegistrarEvent>, StoreError> {
        let mut gone = self.store.remove_aor(aor)?;
        gone.retain(|b| !b.is_expired(now));
        Ok((!gone.is_empty()).then(|| RegistrarEvent {
            aor: aor.clone(),
            kind,
            contacts: gone,
        }))
    }

    /// `registrar.remove_contact(aor, contact)`: drops one binding (event `deregistered`).
    pub fn remove_contact(
        &self,
        now: SystemTime,
        aor: &Aor,
        contact_uri: &str,
    ) -> Result<Option<RegistrarEvent>, StoreError> {
        let key = ContactKey::from_uri(contact_uri);
        let mut removed = None;
        self.store.update(aor, &mut |list| match list
            .iter()
            .position(|b| b.key == key || ContactKey::from_uri(&b.uri) == key)
        {
            Some(i) => {
                removed = Some(list.remove(i));
                Commit::Yes
            }
            None => Commit::No,
        })?;
        Ok(removed
            .filter(|b| !b.is_expired(now))
            .map(|b| RegistrarEvent {
                aor: aor.clone(),
                kind: ChangeKind::Deregistered,
                contacts: vec![b],
            }))
    }

    /// Removes every binding expired at `now` and returns one `expired` event per AOR. The
    /// node calls this from a timer (every few seconds) on one core.
    pub fn sweep(&self, now: SystemTime) -> Result<Vec<RegistrarEvent>, StoreError> {
        Ok(self
            .store
            .sweep_expired(now)?
            .into_iter()
            .map(|(aor, contacts)| RegistrarEvent {
                aor,
                kind: ChangeKind::Expired,
                contacts,
            })
            .collect())
    }

    /// `registrar.aor_count()`.
    pub fn aor_count(&self) -> Result<usize, StoreError> {
        self.store.aor_count()
    }
}

fn param<'a>(c: &'a ContactBinding, name: &str) -> Option<&'a str> {
    c.params
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .and_then(|(_, v)| v.as_deref())
}

fn strip_brackets(s: &str) -> &str {
    let s = s.trim();
    s.strip_prefix('<')
        .and_then(|x| x.strip_suffix('>'))
        .unwrap_or(s)
}

#[cfg(test)]
mod tests;
