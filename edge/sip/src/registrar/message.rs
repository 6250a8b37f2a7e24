//! Adapter from a parsed REGISTER ([`crate::Message`]) to a [`RegisterRequest`]
//! (RFC 3261 §10.3 steps 5–7 read To, Call-ID, CSeq, Expires, Contact; RFC 3327 Path).
//!
//! Anything malformed here is a 400 Bad Request ([`RegisterParseError`]); policy decisions
//! (423, 500, 403) are [`super::Registrar::register`]'s.

use crate::{Contact, HeaderError, HeaderName, Message, Method};

use super::{Aor, AorError, ContactBinding, ContactEntry, Q, RegisterRequest};

/// Why a message could not be read as a REGISTER (answer 400, or 405 for `NotRegister`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RegisterParseError {
    /// Not a REGISTER request (local misuse).
    #[error("not a REGISTER request")]
    NotRegister,
    /// A header the registrar needs is missing or malformed.
    #[error("bad header: {0}")]
    Header(#[from] HeaderError),
    /// The To URI is not a usable address-of-record.
    #[error("bad address-of-record: {0}")]
    Aor(#[from] AorError),
    /// A Contact `q` or `expires` parameter does not parse.
    #[error("bad contact parameter {name}")]
    ContactParam {
        /// `q` or `expires`.
        name: &'static str,
    },
}

impl RegisterRequest {
    /// Reads the registrar's inputs from a REGISTER. `received`, `auth_user` and
    /// `flow_token` are left empty for the node/script to fill in.
    pub fn from_message(msg: &Message) -> Result<Self, RegisterParseError> {
        if msg.method() != Some(Method::Register) {
            return Err(RegisterParseError::NotRegister);
        }
        let to = msg.to()?;
        let aor = Aor::from_uri(to.uri.as_str())?;
        let call_id = msg.call_id()?;
        let cseq = msg.cseq()?;
        let mut req = Self::new(aor, call_id.as_str(), cseq.seq);
        req.expires = msg.expires()?;
        for c in msg.contacts() {
            let c = c?;
            let entry = match &c {
                Contact::Wildcard => ContactEntry::Star,
                Contact::Address(a) => {
                    let q = match a.params.get("q") {
                        None => None,
                        Some(v) => Some(
                            v.and_then(Q::parse)
                                .ok_or(RegisterParseError::ContactParam { name: "q" })?,
                        ),
                    };
                    let expires = match a.params.get("expires") {
                        None => None,
                        Some(_) => Some(
                            c.expires()
                                .ok_or(RegisterParseError::ContactParam { name: "expires" })?,
                        ),
                    };
                    let params = a
                        .params
                        .iter()
                        .filter(|(n, _)| {
                            !n.eq_ignore_ascii_case("q") && !n.eq_ignore_ascii_case("expires")
                        })
                        .map(|(n, v)| (n.to_owned(), v.map(str::to_owned)))
                        .collect();
                    ContactEntry::Binding(ContactBinding {
                        uri: a.uri.as_str().to_owned(),
                        q,
                        expires,
                        params,
                    })
                }
            };
            req.contacts.push(entry);
        }
        for p in msg.paths() {
            let p = p?;
            req.path
                .push(format!("<{}>{}", p.uri.as_str(), p.params.as_str()));
        }
        req.user_agent = msg
            .headers_named(HeaderName::UserAgent)
            .next()
            .and_then(|f| f.value_str())
            .map(str::to_owned);
        Ok(req)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Message {
        Message::parse_slice(s.replace('\n', "\r\n").as_bytes()).unwrap()
    }

    const REG: &str = "REGISTER sip:example.com SIP/2.0
Via: SIP/2.0/UDP 192.0.2.4:5060;branch=z9hG4bKnashds7
Max-Forwards: 70
To: Alice <sip:Alice@Example.com>
From: Alice <sip:Alice@Example.com>;tag=456248
Call-ID: 843817637684230@998sdasdh09
CSeq: 1826 REGISTER
Path: <sip:p1.example.net;lr>, <sip:p2.example.net;lr>
User-Agent: phone/1.0
Contact: <sip:alice@192.0.2.4>;q=0.7;expires=600;+sip.instance=\"<urn:uuid:1>\";reg-id=1
Contact: <sip:alice@198.51.100.1>
Expires: 7200
Content-Length: 0

";

    #[test]
    fn reads_register() {
        let r = RegisterRequest::from_message(&parse(REG)).unwrap();
        assert_eq!(r.aor.as_str(), "sip:Alice@example.com");
        assert_eq!(r.call_id, "843817637684230@998sdasdh09");
        assert_eq!(r.cseq, 1826);
        assert_eq!(r.expires, Some(7200));
        assert_eq!(
            r.path,
            ["<sip:p1.example.net;lr>", "<sip:p2.example.net;lr>"]
        );
        assert_eq!(r.user_agent.as_deref(), Some("phone/1.0"));
        assert_eq!(r.contacts.len(), 2);
        let ContactEntry::Binding(c) = &r.contacts[0] else {
            panic!("binding expected");
        };
        assert_eq!(c.uri, "sip:alice@192.0.2.4");
        assert_eq!(c.q, Q::from_millis(700));
        assert_eq!(c.expires, Some(600));
        assert_eq!(
            c.params,
            [
                (
                    "+sip.instance".to_owned(),
                    Some("\"<urn:uuid:1>\"".to_owned())
                ),
                ("reg-id".to_owned(), Some("1".to_owned()))
            ]
        );
    }

    #[test]
    fn star_and_errors() {
        let star = REG
            .replace(
                "Contact: <sip:alice@192.0.2.4>;q=0.7;expires=600;+sip.instance=\"<urn:uuid:1>\";reg-id=1\nContact: <sip:alice@198.51.100.1>\n",
                "Contact: *\n",
            )
            .replace("Expires: 7200", "Expires: 0");
        let r = RegisterRequest::from_message(&parse(&star)).unwrap();
        assert_eq!(r.contacts, [ContactEntry::Star]);
        assert_eq!(r.expires, Some(0));

        let bad_q = REG.replace("q=0.7", "q=7");
        // Refused either by the Contact parser or by the q check here: a 400 both ways.
        assert!(RegisterRequest::from_message(&parse(&bad_q)).is_err());
        let invite = REG
            .replace("REGISTER sip", "INVITE sip")
            .replace("1826 REGISTER", "1826 INVITE");
        assert_eq!(
            RegisterRequest::from_message(&parse(&invite)),
            Err(RegisterParseError::NotRegister)
        );
    }
}
