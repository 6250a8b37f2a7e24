//! Adapter from a parsed request ([`crate::Message`]) to the verifier: the credentials
//! header values, method and Request-URI (RFC 3261 §22.2, §22.3).

use crate::{HeaderName, Message};

use super::AuthError;
use super::{AuthKind, AuthOk, ChallengeReply, Credential, DigestAuth, RequestInfo, UserStore};

/// All `Authorization` (or `Proxy-Authorization`) values of a request that are UTF-8.
#[must_use]
pub fn credential_values(msg: &Message, kind: AuthKind) -> Vec<&str> {
    let name = match kind {
        AuthKind::Www => HeaderName::Authorization,
        AuthKind::Proxy => HeaderName::ProxyAuthorization,
    };
    msg.headers_named(name)
        .filter_map(|f| f.value_str())
        .collect()
}

impl DigestAuth {
    /// `auth.require_www_digest(request, realm, password, ha1)` (kind `Www`) or
    /// `auth.require_proxy_digest(...)` (kind `Proxy`) on a parsed request: `Ok` with the
    /// user to store as `request.auth_user`, or the error and the 401/407 to reply with.
    /// The digest `uri` is checked against the Request-URI as written.
    pub fn require_message(
        &self,
        now: std::time::SystemTime,
        kind: AuthKind,
        msg: &Message,
        realm: Option<&str>,
        secret: Option<&Credential>,
        users: &dyn UserStore,
    ) -> Result<AuthOk, (AuthError, ChallengeReply)> {
        let info = RequestInfo {
            method: msg.method_str().unwrap_or(""),
            request_uri: msg.request_uri_str(),
            realm,
            secret,
        };
        self.require(now, kind, &info, credential_values(msg, kind), users)
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use super::super::{DigestChallenge, DigestConfig, MemoryUserStore, answer_challenge};
    use super::*;

    #[test]
    fn register_challenge_then_accept() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let auth = DigestAuth::new(DigestConfig::new("example.com"), b"k", 3);
        let users = MemoryUserStore::new();
        users.insert(None, "alice", Credential::Password("pw".into()));
        let base = "REGISTER sip:example.com SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.4;branch=z9hG4bK1\r\nMax-Forwards: 70\r\nTo: <sip:alice@example.com>\r\nFrom: <sip:alice@example.com>;tag=1\r\nCall-ID: a@b\r\nCSeq: 1 REGISTER\r\n";
        let first =
            Message::parse_slice(format!("{base}Content-Length: 0\r\n\r\n").as_bytes()).unwrap();
        let (e, reply) = auth
            .require_message(now, AuthKind::Www, &first, None, None, &users)
            .unwrap_err();
        assert_eq!(e, AuthError::MissingCredentials);
        assert_eq!(reply.status, 401);
        let ch = DigestChallenge::parse(&reply.header_values[0]).unwrap();
        let creds =
            answer_challenge(&ch, "alice", "pw", "REGISTER", "sip:example.com", 1, "cn").unwrap();
        let second = Message::parse_slice(
            format!("{base}Authorization: {creds}\r\nContent-Length: 0\r\n\r\n").as_bytes(),
        )
        .unwrap();
        assert_eq!(credential_values(&second, AuthKind::Www).len(), 1);
        assert!(credential_values(&second, AuthKind::Proxy).is_empty());
        let ok = auth
            .require_message(now, AuthKind::Www, &second, None, None, &users)
            .unwrap();
        assert_eq!(ok.username, "alice");
    }

    /// RFC 4475 §3.3.7 (regaut01): an unknown scheme is ignored, and an authenticating
    /// registrar answers 401 with a Digest challenge.
    #[test]
    fn rfc4475_regaut01_unknown_scheme_gets_challenge() {
        let raw = "REGISTER sip:example.com SIP/2.0\r\nTo: sip:j.user@example.com\r\nFrom: sip:j.user@example.com;tag=87321hj23128\r\nMax-Forwards: 8\r\nCall-ID: regaut01.0ha0isndaksdj\r\nCSeq: 9338 REGISTER\r\nVia: SIP/2.0/TCP 192.0.2.253;branch=z9hG4bKkdjuw\r\nAuthorization: NoOneKnowsThisScheme opaque-data=here\r\nContent-Length:0\r\n\r\n";
        let msg = Message::parse_slice(raw.as_bytes()).unwrap();
        let v = credential_values(&msg, AuthKind::Www);
        assert_eq!(
            super::super::DigestCredentials::parse(v[0]),
            Err(super::super::AuthHeaderError::UnsupportedScheme)
        );
        let auth = DigestAuth::new(DigestConfig::new("example.com"), b"k", 3);
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let (e, reply) = auth
            .require_message(
                now,
                AuthKind::Www,
                &msg,
                None,
                None,
                &MemoryUserStore::new(),
            )
            .unwrap_err();
        assert_eq!(e, AuthError::MissingCredentials);
        assert_eq!(reply.status, 401);
        assert!(DigestChallenge::parse(&reply.header_values[0]).is_ok());
    }
}
