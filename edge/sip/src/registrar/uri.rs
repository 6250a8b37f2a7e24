//! Registrar keys: the address-of-record ([`Aor`], RFC 3261 §10.3 step 5) and the identity
//! of a binding within an AOR ([`ContactKey`], §10.3 step 7 and RFC 5626 §6).
//!
//! These work on URI text so the registrar does not depend on the full URI parser; the
//! normalisation is deliberately small and documented on each function. `registrar.*`
//! script calls that take a URI run it through [`Aor::from_uri`], so writes and reads agree.

use std::fmt;

/// A normalised address-of-record, e.g. `sip:alice@example.com`.
///
/// Normalisation (the same for `save` and `lookup`): display name and angle brackets
/// dropped; `sip:` assumed when no scheme is given; scheme and host lower-cased; URI
/// parameters, headers and password dropped; the default port dropped (5060 for `sip`,
/// 5061 for `sips`). The user part keeps its case (RFC 3261 §19.1.4). Other schemes
/// (`tel:`, ...) are kept as given apart from the scheme's case.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Aor(String);

/// Why a string is not an address-of-record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AorError {
    /// Empty after trimming.
    #[error("empty address-of-record")]
    Empty,
    /// A `sip`/`sips` URI without a host.
    #[error("address-of-record has no host")]
    NoHost,
}

impl Aor {
    /// Normalises a URI (or a name-addr such as `"Bob" <sip:bob@x>`) into an AOR.
    pub fn from_uri(uri: &str) -> Result<Self, AorError> {
        let s = strip_name_addr(uri);
        if s.is_empty() {
            return Err(AorError::Empty);
        }
        let (scheme, rest) = match s.split_once(':') {
            Some((sch, rest)) if is_scheme(sch) => (sch.to_ascii_lowercase(), rest),
            _ => ("sip".to_owned(), s),
        };
        if scheme != "sip" && scheme != "sips" {
            return Ok(Self(format!("{scheme}:{rest}")));
        }
        let (user, hostport) = match rest.split_once('@') {
            Some((u, h)) => (Some(u.split(':').next().unwrap_or(u)), h),
            None => (None, rest),
        };
        let hostport = hostport.split([';', '?']).next().unwrap_or(hostport).trim();
        let (host, port) = split_host_port(hostport);
        if host.is_empty() {
            return Err(AorError::NoHost);
        }
        let default = if scheme == "sips" { "5061" } else { "5060" };
        let mut out = String::with_capacity(rest.len() + 5);
        out.push_str(&scheme);
        out.push(':');
        if let Some(u) = user {
            push_unescaped(&mut out, u);
            out.push('@');
        }
        out.push_str(&host.to_ascii_lowercase());
        if let Some(p) = port.filter(|p| *p != default) {
            out.push(':');
            out.push_str(p);
        }
        Ok(Self(out))
    }

    /// The normalised text.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The user part, if any (`alice` in `sip:alice@example.com`).
    #[must_use]
    pub fn user(&self) -> Option<&str> {
        let rest = self.0.split_once(':')?.1;
        rest.split_once('@').map(|(u, _)| u)
    }
}

impl fmt::Display for Aor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Identity of a binding within its AOR.
///
/// With both `+sip.instance` and `reg-id` (RFC 5626 §6) the binding is the (instance,
/// reg-id) pair, so a UA that changes its contact address replaces its binding. Otherwise it
/// is the contact URI normalised for comparison (RFC 3261 §19.1.4): scheme and host
/// lower-cased, URI parameters lower-cased and sorted, user part as written. Unlike §19.1.4,
/// a parameter present in only one of two URIs makes them differ; that can only split one
/// device into two bindings (both expire), never merge two devices into one.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ContactKey(String);

impl ContactKey {
    /// The key for a contact URI (angle brackets allowed).
    #[must_use]
    pub fn from_uri(uri: &str) -> Self {
        let s = strip_name_addr(uri);
        let (scheme, rest) = match s.split_once(':') {
            Some((sch, rest)) if is_scheme(sch) => (sch.to_ascii_lowercase(), rest),
            _ => (String::new(), s),
        };
        let (user, hostpart) = match rest.split_once('@') {
            Some((u, h)) => (Some(u), h),
            None => (None, rest),
        };
        let (hostport, tail) = match hostpart.find([';', '?']) {
            Some(i) => hostpart.split_at(i),
            None => (hostpart, ""),
        };
        let (params, headers) = match tail.split_once('?') {
            Some((p, h)) => (p, Some(h)),
            None => (tail, None),
        };
        let mut ps: Vec<String> = params
            .split(';')
            .filter(|p| !p.is_empty())
            .map(str::to_ascii_lowercase)
            .collect();
        ps.sort_unstable();
        let mut out = scheme;
        out.push(':');
        if let Some(u) = user {
            push_unescaped(&mut out, u);
            out.push('@');
        }
        out.push_str(&hostport.to_ascii_lowercase());
        for p in ps {
            out.push(';');
            out.push_str(&p);
        }
        if let Some(h) = headers {
            let mut hs: Vec<&str> = h.split('&').collect();
            hs.sort_unstable();
            out.push('?');
            out.push_str(&hs.join("&"));
        }
        Self(out)
    }

    /// The key for an RFC 5626 flow: instance id and reg-id.
    #[must_use]
    pub fn from_instance(instance: &str, reg_id: u32) -> Self {
        // `~` cannot start a URI scheme, so these never collide with URI keys.
        Self(format!("~{instance};reg-id={reg_id}"))
    }

    /// The key text.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Appends `s` with `%XX` escapes of unreserved characters decoded and other escapes
/// hex upper-cased, so equivalent spellings compare equal (RFC 3261 §19.1.4).
fn push_unescaped(out: &mut String, s: &str) {
    let b = s.as_bytes();
    let mut i = 0;
    let mut run = 0;
    while i < b.len() {
        if b[i] == b'%'
            && i + 2 < b.len()
            && b[i + 1].is_ascii_hexdigit()
            && b[i + 2].is_ascii_hexdigit()
        {
            out.push_str(&s[run..i]);
            let hex = &s[i + 1..i + 3];
            match u8::from_str_radix(hex, 16) {
                Ok(c) if c.is_ascii_alphanumeric() || b"-_.!~*'()".contains(&c) => {
                    out.push(char::from(c));
                }
                _ => {
                    out.push('%');
                    out.push_str(&hex.to_ascii_uppercase());
                }
            }
            i += 3;
            run = i;
        } else {
            i += 1;
        }
    }
    out.push_str(&s[run..]);
}

/// The addr-spec inside a name-addr (`"Bob" <sip:b@x>;tag=1` → `sip:b@x`), trimmed.
fn strip_name_addr(s: &str) -> &str {
    let s = s.trim();
    match (s.find('<'), s.rfind('>')) {
        (Some(a), Some(b)) if a < b => s[a + 1..b].trim(),
        _ => s,
    }
}

fn is_scheme(s: &str) -> bool {
    let mut b = s.bytes();
    b.next().is_some_and(|c| c.is_ascii_alphabetic())
        && b.all(|c| c.is_ascii_alphanumeric() || matches!(c, b'+' | b'-' | b'.'))
}

/// Splits `host[:port]`, with IPv6 references in brackets.
fn split_host_port(hp: &str) -> (&str, Option<&str>) {
    if hp.starts_with('[') {
        if let Some(end) = hp.find(']') {
            let port = hp[end + 1..].strip_prefix(':');
            return (&hp[..=end], port);
        }
        return (hp, None);
    }
    match hp.rsplit_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (hp, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aor_normalisation() {
        let cases = [
            ("sip:alice@Example.COM", "sip:alice@example.com"),
            (
                "<sip:alice@example.com:5060;transport=tcp>",
                "sip:alice@example.com",
            ),
            (
                "\"Alice\" <SIP:alice@example.com>;tag=x",
                "sip:alice@example.com",
            ),
            ("alice@example.com", "sip:alice@example.com"),
            ("sips:alice@example.com:5061", "sips:alice@example.com"),
            ("sips:alice@example.com:5060", "sips:alice@example.com:5060"),
            (
                "sip:alice:pw@example.com?subject=x",
                "sip:alice@example.com",
            ),
            ("sip:Alice@[2001:DB8::1]:5060", "sip:Alice@[2001:db8::1]"),
            ("sip:example.com", "sip:example.com"),
            (
                "tel:+1-555-0100;phone-context=x",
                "tel:+1-555-0100;phone-context=x",
            ),
        ];
        for (input, want) in cases {
            assert_eq!(Aor::from_uri(input).unwrap().as_str(), want, "{input}");
        }
        assert_eq!(
            Aor::from_uri("sip:alice@example.com").unwrap().user(),
            Some("alice")
        );
        assert_eq!(Aor::from_uri("sip:example.com").unwrap().user(), None);
        assert_eq!(
            Aor::from_uri("sip:%61lice%3b%c3@example.com")
                .unwrap()
                .as_str(),
            "sip:alice%3B%C3@example.com"
        );
        assert_eq!(Aor::from_uri("  "), Err(AorError::Empty));
        assert_eq!(Aor::from_uri("sip:alice@"), Err(AorError::NoHost));
    }

    #[test]
    fn contact_keys() {
        let a = ContactKey::from_uri("<sip:bob@PC33.example.com;transport=TCP;ob>");
        let b = ContactKey::from_uri("SIP:bob@pc33.example.com;ob;transport=tcp");
        assert_eq!(a, b);
        assert_eq!(
            a,
            ContactKey::from_uri("sip:b%6Fb@pc33.example.com;ob;transport=tcp")
        );
        assert_ne!(
            a,
            ContactKey::from_uri("sip:Bob@pc33.example.com;ob;transport=tcp")
        );
        assert_ne!(
            a,
            ContactKey::from_uri("sip:bob@pc33.example.com:5070;ob;transport=tcp")
        );
        assert_ne!(
            ContactKey::from_instance("urn:uuid:1", 1),
            ContactKey::from_instance("urn:uuid:1", 2)
        );
    }
}
