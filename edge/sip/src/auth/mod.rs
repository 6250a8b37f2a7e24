//! Digest authentication for SIP, server side: challenges (401/407) and verification.
//!
//! RFC 3261 §22 (SIP use of digest, 401 `WWW-Authenticate` / 407 `Proxy-Authenticate`),
//! RFC 7616 (HTTP digest: SHA-256, `-sess`, `stale`, `nc`), RFC 8760 (SHA-256 and
//! SHA-512/256 in SIP), RFC 2617 (MD5, the default algorithm).
//!
//! What it owns: header parsing/formatting ([`header`]), hash arithmetic ([`digest`]),
//! stateless nonces ([`nonce`]), the nonce-count replay window ([`replay`]), the user store
//! ([`users`]) and [`DigestAuth`], which ties them together for the `auth` script namespace
//! (`require_www_digest`, `require_proxy_digest`, `verify_digest`, `generate_nonce`,
//! `validate_nonce`; config keys `auth.realm`, `auth.nonce_ttl_secs`, `auth.nonce_secret`,
//! `auth.users`, `auth.digest_uri_check`). What it does not own: reading headers out of a
//! message and attaching the challenge to a response (the node does that with the strings
//! built here), other backends (HTTP, database, Diameter), AKA.
//!
//! Policy choices:
//! - Every request without valid credentials gets the same challenge, whatever the username:
//!   challenges never depend on the user, and verifying an unknown user runs the same hash
//!   work against a dummy secret and fails with the same [`AuthError::BadResponse`] as a wrong
//!   password (no user enumeration).
//! - Offered algorithms default to MD5 then SHA-256, all with `qop="auth"`. RFC 8760 §2.4
//!   prefers SHA-256 first, but many deployed UAs (SIPp among them) answer the first
//!   challenge they see and know only MD5; upstream SIPhon lists MD5 first too. A UA that
//!   supports SHA-256 picks it from the second challenge. `DigestConfig::algorithms` reorders.
//!   [`Offer::One`] asks for a single challenge (the node uses it over UDP, where the source
//!   can be forged: a 401 must not amplify a spoofed request). `qop` is required by default,
//!   because without it there is no `nc` and so no replay protection beyond the nonce TTL.
//! - `stale=true` is sent when the nonce is authentic but expired and the response was right
//!   for it (RFC 7616 §3.3), and when a correct response reused an `nc` (the UA retries with
//!   a fresh nonce without asking its user).
//! - Response comparison is constant-time ([`digest::ct_eq`]).

pub mod digest;
pub mod header;
mod message;
pub mod nonce;
pub mod replay;
pub mod users;

use std::time::{Duration, SystemTime};

pub use digest::Algorithm;
pub use header::{AuthHeaderError, AuthParam, DigestChallenge, DigestCredentials};
pub use message::credential_values;
pub use nonce::{NonceId, NonceIssuer, NonceStatus};
pub use replay::{NcRejection, NonceCountTracker};
pub use users::{Credential, MemoryUserStore, UserStore};

use digest::{QopInput, ResponseInput, compute_response, ct_eq};

/// Which of the two digest exchanges (RFC 3261 §22.2 user agent, §22.3 proxy).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AuthKind {
    /// 401 + `WWW-Authenticate` / `Authorization` (registrars, UAS).
    Www,
    /// 407 + `Proxy-Authenticate` / `Proxy-Authorization` (proxies).
    Proxy,
}

impl AuthKind {
    /// 401 or 407.
    #[must_use]
    pub const fn status(self) -> u16 {
        match self {
            Self::Www => 401,
            Self::Proxy => 407,
        }
    }

    /// `Unauthorized` or `Proxy Authentication Required`.
    #[must_use]
    pub const fn reason(self) -> &'static str {
        match self {
            Self::Www => "Unauthorized",
            Self::Proxy => "Proxy Authentication Required",
        }
    }

    /// The response header that carries the challenge.
    #[must_use]
    pub const fn challenge_header(self) -> &'static str {
        match self {
            Self::Www => "WWW-Authenticate",
            Self::Proxy => "Proxy-Authenticate",
        }
    }

    /// The request header that carries the credentials.
    #[must_use]
    pub const fn credentials_header(self) -> &'static str {
        match self {
            Self::Www => "Authorization",
            Self::Proxy => "Proxy-Authorization",
        }
    }
}

/// Digest settings (the `auth:` section of `siphon.yaml`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DigestConfig {
    /// `auth.realm`: the protection space used when a call does not name one.
    pub realm: String,
    /// Algorithms offered, one challenge each, in this order (default MD5, SHA-256);
    /// [`Offer::One`] narrows a challenge to one of them.
    pub algorithms: Vec<Algorithm>,
    /// `auth.nonce_ttl_secs` (default 300 s): older nonces are answered with `stale=true`.
    pub nonce_ttl: Duration,
    /// How far in the future a nonce's issue time may be (clock skew between nodes sharing
    /// `auth.nonce_secret`; default 3 s, Kamailio's `nonce_auth_max_drift`).
    pub max_nonce_drift: Duration,
    /// Refuse responses without `qop` (RFC 2069 style). Default true.
    pub qop_required: bool,
    /// `opaque` sent in challenges and required back unchanged, if set.
    pub opaque: Option<String>,
    /// How many nonces the nonce-count table tracks (default 262 144; about 20 MiB at most).
    pub nc_capacity: usize,
    /// `auth.digest_uri_check`: how the `uri` directive is held against the Request-URI
    /// (default [`DigestUriCheck::Relaxed`]).
    pub uri_check: DigestUriCheck,
    /// Hosts that name this node (`domain.local`, listen and advertised addresses): a
    /// [`DigestUriCheck::Relaxed`] `uri` directive may name one of them instead of the
    /// Request-URI's host. Domains compare case-insensitively, addresses by value.
    pub local_hosts: Vec<String>,
}

impl DigestConfig {
    /// Defaults for `realm`.
    #[must_use]
    pub fn new(realm: &str) -> Self {
        Self {
            realm: realm.to_owned(),
            algorithms: vec![Algorithm::Md5, Algorithm::Sha256],
            nonce_ttl: Duration::from_secs(300),
            max_nonce_drift: Duration::from_secs(3),
            qop_required: true,
            opaque: None,
            nc_capacity: 262_144,
            uri_check: DigestUriCheck::Relaxed,
            local_hosts: Vec::new(),
        }
    }
}

/// `auth.digest_uri_check`: how the digest `uri` directive (RFC 7616 §3.4.6, RFC 2617
/// §3.2.2) is compared with the Request-URI, for `Authorization` and `Proxy-Authorization`
/// alike. The response is always computed over the directive's own text and the nonce count
/// stops replays whichever mode is set; the check only limits which request a set of
/// credentials may be presented with.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum DigestUriCheck {
    /// Same scheme (`sip`/`sips`); the host is the Request-URI's or one of
    /// [`DigestConfig::local_hosts`]; the port is not compared; a user part, when the
    /// directive has one, is the Request-URI's. UAs write the address they sent to: SIPp's
    /// `[authentication]` writes `sip:<proxy ip>:<port>` whatever the Request-URI.
    #[default]
    Relaxed,
    /// The directive is the Request-URI: byte-equal, or equivalent by RFC 3261 §19.1.4
    /// (scheme, user, host, port, the parameters it names), as RFC 2617/7616 ask.
    Strict,
    /// Not checked (Kamailio and upstream SIPhon do not check it).
    Off,
}

impl DigestUriCheck {
    /// The setting's name in `siphon.yaml`.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Relaxed => "relaxed",
            Self::Strict => "strict",
            Self::Off => "off",
        }
    }
}

/// Why credentials were not accepted. Every variant is answered with a fresh challenge
/// ([`DigestAuth::challenge_reply`]); [`AuthError::is_stale`] says whether it carries
/// `stale=true`. Display text is for logs, not for the wire.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    /// No credentials for this realm in the request.
    #[error("no credentials")]
    MissingCredentials,
    /// The credentials header does not parse.
    #[error("malformed credentials: {0}")]
    Malformed(#[from] AuthHeaderError),
    /// Credentials for another realm.
    #[error("credentials for another realm")]
    RealmMismatch,
    /// An algorithm that is not offered (or unknown).
    #[error("algorithm not offered")]
    UnsupportedAlgorithm,
    /// A `qop` other than `auth` (e.g. `auth-int`).
    #[error("unsupported qop")]
    UnsupportedQop,
    /// No `qop`, and the configuration requires one.
    #[error("qop required")]
    QopRequired,
    /// `qop` (or a `-sess` algorithm) without `cnonce`/`nc`.
    #[error("qop without cnonce or nc")]
    MissingQopParams,
    /// `userhash=true` (RFC 7616 §3.4.4) is not supported.
    #[error("userhash not supported")]
    UserHashUnsupported,
    /// `opaque` missing or changed.
    #[error("opaque mismatch")]
    OpaqueMismatch,
    /// The `uri` directive does not name the Request-URI (RFC 7616 §3.4.6) as
    /// [`DigestConfig::uri_check`] understands it.
    #[error("digest uri does not match the request-uri")]
    UriMismatch,
    /// The nonce was not issued by us (or for another realm, or tampered with).
    #[error("invalid nonce")]
    InvalidNonce,
    /// Right response for an authentic nonce that outlived its TTL.
    #[error("stale nonce")]
    StaleNonce,
    /// Wrong response: wrong password, or a user that does not exist (indistinguishable).
    #[error("wrong response")]
    BadResponse,
    /// A correct response that reuses a nonce count.
    #[error("nonce count replay ({0:?})")]
    NonceCountReplay(NcRejection),
}

impl AuthError {
    /// Whether the new challenge should say `stale=true`.
    #[must_use]
    pub fn is_stale(&self) -> bool {
        matches!(self, Self::StaleNonce | Self::NonceCountReplay(_))
    }

    /// Whether the credentials could not be parsed at all.
    #[must_use]
    pub fn is_malformed(&self) -> bool {
        matches!(self, Self::Malformed(_))
    }

    /// Whether credentials were present and checked against a user (counts as a failed
    /// authentication for `security.failed_auth_ban`), as opposed to absent or stale.
    #[must_use]
    pub fn is_failure(&self) -> bool {
        !matches!(self, Self::MissingCredentials | Self::StaleNonce)
    }
}

/// A successful verification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthOk {
    /// The authenticated user (`request.auth_user`).
    pub username: String,
    /// The realm it authenticated in.
    pub realm: String,
    /// The algorithm the client used.
    pub algorithm: Algorithm,
}

/// The 401/407 to send: status, reason, and one challenge header value per algorithm.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChallengeReply {
    /// 401 or 407.
    pub status: u16,
    /// Reason phrase.
    pub reason: &'static str,
    /// `WWW-Authenticate` or `Proxy-Authenticate`.
    pub header_name: &'static str,
    /// One header field value per offered algorithm, in preference order.
    pub header_values: Vec<String>,
}

/// Does the `uri` directive name the Request-URI, as `check` understands it? See
/// [`DigestUriCheck`]; `local_hosts` are the hosts [`DigestUriCheck::Relaxed`] also accepts.
fn digest_uri_matches(
    check: DigestUriCheck,
    local_hosts: &[String],
    request_uri: &str,
    directive: &str,
) -> bool {
    if check == DigestUriCheck::Off || request_uri == directive {
        return true;
    }
    let (Ok(r), Ok(d)) = (crate::Uri::parse(request_uri), crate::Uri::parse(directive)) else {
        return false;
    };
    if check == DigestUriCheck::Strict {
        return r.equivalent(&d);
    }
    let (Some(r), Some(d)) = (r.as_sip(), d.as_sip()) else {
        return false;
    };
    if r.secure != d.secure {
        return false;
    }
    if let Some(user) = d.user_decoded()
        && r.user_decoded() != Some(user)
    {
        return false;
    }
    r.host.equivalent(&d.host) || local_hosts.iter().any(|h| names_host(h, &d.host))
}

/// Does a configured host (`example.com`, `192.0.2.1`, `::1` or `[::1]`) name `host`?
fn names_host(entry: &str, host: &crate::uri::Host<'_>) -> bool {
    use crate::uri::Host;
    let own = match entry.parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V4(a)) => Host::Ipv4(a),
        Ok(std::net::IpAddr::V6(a)) => Host::Ipv6(a),
        Err(_) => match crate::uri::parse_host(entry) {
            Ok(h) => h,
            Err(_) => return false,
        },
    };
    own.equivalent(host)
}

/// What the verifier needs to know about the request being authenticated.
#[derive(Debug, Clone, Copy, Default)]
pub struct RequestInfo<'a> {
    /// The request method (`REGISTER`, `INVITE`, ...).
    pub method: &'a str,
    /// The Request-URI as sent, to compare with the `uri` directive; `None` skips the check
    /// (for example when verifying on behalf of a B2BUA call whose URI was rewritten).
    pub request_uri: Option<&'a str>,
    /// The realm to check against; `None` uses `auth.realm`.
    pub realm: Option<&'a str>,
    /// A secret given by the script (`password=` / `ha1=`), instead of the user store.
    pub secret: Option<&'a Credential>,
}

/// The digest authenticator shared by all cores (`Send + Sync`; every method takes `&self`).
#[derive(Debug)]
pub struct DigestAuth {
    config: DigestConfig,
    nonces: NonceIssuer,
    nc: NonceCountTracker,
}

impl DigestAuth {
    /// A new authenticator. `secret` keys the nonce HMAC (`auth.nonce_secret`, or 32 random
    /// bytes drawn by the node); `counter_seed` should be random (see [`NonceIssuer::new`]).
    #[must_use]
    pub fn new(config: DigestConfig, secret: &[u8], counter_seed: u64) -> Self {
        let nonces = NonceIssuer::new(
            secret,
            counter_seed,
            config.nonce_ttl,
            config.max_nonce_drift,
        );
        let nc = NonceCountTracker::new(config.nc_capacity);
        Self { config, nonces, nc }
    }

    /// The configuration.
    #[must_use]
    pub fn config(&self) -> &DigestConfig {
        &self.config
    }

    fn realm<'a>(&'a self, realm: Option<&'a str>) -> &'a str {
        realm.unwrap_or(&self.config.realm)
    }

    /// `auth.generate_nonce()`: a fresh nonce for `realm` (default `auth.realm`).
    #[must_use]
    pub fn generate_nonce(&self, now: SystemTime, realm: Option<&str>) -> String {
        self.nonces.issue(now, self.realm(realm))
    }

    /// `auth.validate_nonce(nonce)`: whether it is ours, for `realm`, and not expired.
    #[must_use]
    pub fn validate_nonce(&self, now: SystemTime, realm: Option<&str>, nonce: &str) -> bool {
        matches!(
            self.nonces.check(now, self.realm(realm), nonce),
            NonceStatus::Valid(_)
        )
    }

    /// The challenges to send, one per offered algorithm, sharing one fresh nonce.
    #[must_use]
    pub fn challenges(
        &self,
        now: SystemTime,
        realm: Option<&str>,
        stale: bool,
    ) -> Vec<DigestChallenge> {
        self.challenges_of(now, realm, stale, &self.config.algorithms)
    }

    /// The algorithms an [`Offer`] puts in a challenge, in preference order. `used` is the
    /// algorithm of the credentials that failed, if any.
    fn offered(&self, offer: Offer, used: Option<Algorithm>) -> &[Algorithm] {
        let all = self.config.algorithms.as_slice();
        match offer {
            Offer::All => all,
            Offer::One => {
                let i = used
                    .and_then(|u| all.iter().position(|a| *a == u))
                    .unwrap_or(0);
                all.get(i..=i).unwrap_or(all)
            }
        }
    }

    fn challenges_of(
        &self,
        now: SystemTime,
        realm: Option<&str>,
        stale: bool,
        algorithms: &[Algorithm],
    ) -> Vec<DigestChallenge> {
        let realm = self.realm(realm);
        let nonce = self.nonces.issue(now, realm);
        // A lone MD5 challenge leaves `algorithm` out: MD5 is what its absence means (RFC 2617
        // §3.2.1, RFC 7616 §3.3), and it is 15 bytes of a 401 a spoofed request can draw.
        let lone_md5 = matches!(algorithms, [Algorithm::Md5]);
        algorithms
            .iter()
            .map(|a| DigestChallenge {
                realm: realm.to_owned(),
                nonce: nonce.clone(),
                opaque: self.config.opaque.clone(),
                stale,
                algorithm: (!lone_md5).then(|| a.name().to_owned()),
                qop: vec!["auth".to_owned()],
                ..DigestChallenge::default()
            })
            .collect()
    }

    /// The full 401/407 to send: status, reason, header name and values.
    /// `error` is why the last attempt failed, if any (it decides `stale`).
    #[must_use]
    pub fn challenge_reply(
        &self,
        now: SystemTime,
        kind: AuthKind,
        realm: Option<&str>,
        error: Option<&AuthError>,
    ) -> ChallengeReply {
        self.reply_offering(now, kind, realm, error, &self.config.algorithms)
    }

    fn reply_offering(
        &self,
        now: SystemTime,
        kind: AuthKind,
        realm: Option<&str>,
        error: Option<&AuthError>,
        algorithms: &[Algorithm],
    ) -> ChallengeReply {
        let stale = error.is_some_and(AuthError::is_stale);
        ChallengeReply {
            status: kind.status(),
            reason: kind.reason(),
            header_name: kind.challenge_header(),
            header_values: self
                .challenges_of(now, realm, stale, algorithms)
                .iter()
                .map(ToString::to_string)
                .collect(),
        }
    }

    /// Picks and parses the credentials for `realm` from all `Authorization` (or
    /// `Proxy-Authorization`) header values of a request. A value for another realm or scheme
    /// is skipped; if none matches, the first parse error is returned, else
    /// [`AuthError::MissingCredentials`].
    pub fn find_credentials<'v>(
        &self,
        values: impl IntoIterator<Item = &'v str>,
        realm: Option<&str>,
    ) -> Result<DigestCredentials, AuthError> {
        let realm = self.realm(realm);
        let mut first_err = None;
        for v in values {
            match DigestCredentials::parse(v) {
                Ok(c) if c.realm == realm => return Ok(c),
                Ok(_) | Err(AuthHeaderError::UnsupportedScheme) => {}
                Err(e) => {
                    first_err.get_or_insert(e);
                }
            }
        }
        Err(first_err.map_or(AuthError::MissingCredentials, AuthError::Malformed))
    }

    /// Verifies one set of credentials at `now`, looking the user up in `users` unless
    /// `req.secret` is given. On success the nonce count is recorded.
    pub fn verify(
        &self,
        now: SystemTime,
        req: &RequestInfo<'_>,
        c: &DigestCredentials,
        users: &dyn UserStore,
    ) -> Result<AuthOk, AuthError> {
        let realm = self.realm(req.realm);
        if c.realm != realm {
            return Err(AuthError::RealmMismatch);
        }
        if c.userhash {
            return Err(AuthError::UserHashUnsupported);
        }
        let algorithm = c
            .algorithm()
            .filter(|a| self.config.algorithms.contains(a))
            .ok_or(AuthError::UnsupportedAlgorithm)?;
        if self
            .config
            .opaque
            .as_ref()
            .is_some_and(|o| c.opaque.as_deref() != Some(o.as_str()))
        {
            return Err(AuthError::OpaqueMismatch);
        }
        let qop = match c.qop.as_deref() {
            Some(q) if q.eq_ignore_ascii_case("auth") => {
                let (Some(_), Some(nc)) = (&c.cnonce, c.nc) else {
                    return Err(AuthError::MissingQopParams);
                };
                Some(QopInput { nc, qop: q })
            }
            Some(_) => return Err(AuthError::UnsupportedQop),
            None if self.config.qop_required => return Err(AuthError::QopRequired),
            None if algorithm.is_session() && c.cnonce.is_none() => {
                return Err(AuthError::MissingQopParams);
            }
            None => None,
        };
        if req.request_uri.is_some_and(|uri| {
            !digest_uri_matches(self.config.uri_check, &self.config.local_hosts, uri, &c.uri)
        }) {
            return Err(AuthError::UriMismatch);
        }
        let (id, stale) = match self.nonces.check(now, realm, &c.nonce) {
            NonceStatus::Valid(id) => (id, false),
            NonceStatus::Stale(id) => (id, true),
            NonceStatus::Invalid => return Err(AuthError::InvalidNonce),
        };

        // Same work for known and unknown users: an unknown user (or an HA1 for another
        // hash) is checked against a dummy secret and then fails regardless.
        let looked_up;
        let secret = match req.secret {
            Some(s) => Some(s),
            None => {
                looked_up = users.lookup(realm, &c.username);
                looked_up.as_ref()
            }
        };
        let ha1 = secret.and_then(|s| s.ha1_for(algorithm, &c.username, realm));
        let known = ha1.is_some();
        let ha1 = ha1.unwrap_or_else(|| {
            algorithm
                .base()
                .ha1(&c.username, realm, "\u{0}siphon-unknown-user")
        });
        let expected = compute_response(&ResponseInput {
            algorithm,
            ha1: &ha1,
            nonce: &c.nonce,
            cnonce: c.cnonce.as_deref().unwrap_or(""),
            qop,
            method: req.method,
            uri: &c.uri,
        });
        let given = c.response.to_ascii_lowercase();
        let matches = ct_eq(expected.as_bytes(), given.as_bytes());
        if !(matches && known) {
            return Err(AuthError::BadResponse);
        }
        if stale {
            return Err(AuthError::StaleNonce);
        }
        if let Some(q) = qop {
            self.nc
                .check_and_record(
                    id,
                    q.nc,
                    nonce::unix_secs(now),
                    self.config.nonce_ttl.as_secs(),
                )
                .map_err(AuthError::NonceCountReplay)?;
        }
        Ok(AuthOk {
            username: c.username.clone(),
            realm: realm.to_owned(),
            algorithm,
        })
    }

    /// `auth.require_www_digest` / `require_proxy_digest` in one call: finds the credentials
    /// among a request's `Authorization` (`Proxy-Authorization`) header values and verifies
    /// them; on failure returns why and the 401/407 to send.
    pub fn require<'v>(
        &self,
        now: SystemTime,
        kind: AuthKind,
        req: &RequestInfo<'_>,
        header_values: impl IntoIterator<Item = &'v str>,
        users: &dyn UserStore,
    ) -> Result<AuthOk, (AuthError, ChallengeReply)> {
        self.require_offering(now, kind, req, header_values, users, Offer::All)
    }

    /// [`DigestAuth::require`] with the challenge set on failure chosen by `offer`:
    /// [`Offer::One`] where the source address can be forged (UDP), so that a spoofed
    /// request draws one challenge, not one per configured algorithm.
    pub fn require_offering<'v>(
        &self,
        now: SystemTime,
        kind: AuthKind,
        req: &RequestInfo<'_>,
        header_values: impl IntoIterator<Item = &'v str>,
        users: &dyn UserStore,
        offer: Offer,
    ) -> Result<AuthOk, (AuthError, ChallengeReply)> {
        let credentials = self.find_credentials(header_values, req.realm);
        let result = match &credentials {
            Ok(c) => self.verify(now, req, c, users),
            Err(e) => Err(e.clone()),
        };
        result.map_err(|e| {
            let used = credentials.ok().and_then(|c| c.algorithm());
            let algorithms = self.offered(offer, used);
            let reply = self.reply_offering(now, kind, req.realm, Some(&e), algorithms);
            (e, reply)
        })
    }
}

/// Which of the configured algorithms a 401/407 offers ([`DigestAuth::require_offering`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum Offer {
    /// One challenge per configured algorithm, in their order (RFC 7616 §3.7, RFC 8760).
    #[default]
    All,
    /// One challenge: the algorithm of the failed credentials when it is configured (a UA
    /// whose nonce went stale keeps its algorithm), else the first configured one. Keeps a
    /// 401 to a spoofed UDP request about as large as the request (amplification).
    One,
}

/// Client side: the credentials answering `challenge` for `username`/`password` (for the
/// outbound REGISTER client and B2BUA 401/407 retries, and for tests). Uses `qop=auth` when
/// offered. `None` when the challenge's algorithm is not implemented.
#[must_use]
pub fn answer_challenge(
    challenge: &DigestChallenge,
    username: &str,
    password: &str,
    method: &str,
    uri: &str,
    nc: u32,
    cnonce: &str,
) -> Option<DigestCredentials> {
    let algorithm = challenge.algorithm()?;
    let ha1 = algorithm.base().ha1(username, &challenge.realm, password);
    let auth = challenge.qop.iter().any(|q| q.eq_ignore_ascii_case("auth"));
    let qop = auth.then_some(QopInput { nc, qop: "auth" });
    let uses_cnonce = auth || algorithm.is_session();
    let response = compute_response(&ResponseInput {
        algorithm,
        ha1: &ha1,
        nonce: &challenge.nonce,
        cnonce: if uses_cnonce { cnonce } else { "" },
        qop,
        method,
        uri,
    });
    Some(DigestCredentials {
        username: username.to_owned(),
        realm: challenge.realm.clone(),
        nonce: challenge.nonce.clone(),
        uri: uri.to_owned(),
        response,
        algorithm: challenge.algorithm.clone(),
        cnonce: uses_cnonce.then(|| cnonce.to_owned()),
        opaque: challenge.opaque.clone(),
        qop: auth.then(|| "auth".to_owned()),
        nc: auth.then_some(nc),
        userhash: false,
        extra: Vec::new(),
    })
}

#[cfg(test)]
mod tests;
