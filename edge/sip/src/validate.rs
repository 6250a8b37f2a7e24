//! Request validation (RFC 3261 §16.3 for a proxy, §8.2.1–8.2.3 for a UAS): the checks that turn
//! a well-framed request into an early final response. Returns a typed [`Rejection`] carrying
//! the status, a reason phrase and any header the response must carry (Unsupported for 420,
//! Accept for 415). Loop detection (§16.3 step 4, 482) is a separate hook, [`check_loop`],
//! because only the proxy core knows its own Via branch scheme.
//!
//! Order: version (505), mandatory and single-value headers and typed-header syntax (400),
//! CSeq method (400, or 501 for an unknown method), Request-URI scheme (416) and headers (400),
//! Max-Forwards (483, proxy), Proxy-Require / Require (420), Content-Type (415, UAS).

use crate::error::HeaderError;
use crate::header_name::HeaderName;
use crate::headers::Via;
use crate::message::Message;
use crate::method::{Method, StatusCode};
use crate::uri::Uri;

/// The element doing the validation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// A proxy (§16.3): checks Max-Forwards and Proxy-Require; forwards unknown media types.
    Proxy,
    /// A UAS or registrar (§8.2): checks Require and Content-Type; Max-Forwards 0 is fine.
    Uas,
}

/// What the validating element supports.
#[derive(Debug, Clone, Copy)]
pub struct ValidationConfig<'c> {
    /// Proxy or UAS checks.
    pub role: Role,
    /// Request-URI schemes served (lower case). Default: sip, sips, tel.
    pub schemes: &'c [&'c str],
    /// Option tags understood (for Proxy-Require / Require). Default: none.
    pub extensions: &'c [&'c str],
    /// UAS only: accepted body media types as `type/subtype` (lower case); `None` accepts all.
    pub accept: Option<&'c [&'c str]>,
}

impl ValidationConfig<'static> {
    /// Proxy defaults: sip/sips/tel, no extensions.
    pub const PROXY: Self = Self {
        role: Role::Proxy,
        schemes: &["sip", "sips", "tel"],
        extensions: &[],
        accept: None,
    };
    /// UAS defaults: sip/sips/tel, no extensions, bodies must be `application/sdp`.
    pub const UAS: Self = Self {
        role: Role::Uas,
        schemes: &["sip", "sips", "tel"],
        extensions: &[],
        accept: Some(&["application/sdp"]),
    };
}

impl Default for ValidationConfig<'static> {
    fn default() -> Self {
        Self::PROXY
    }
}

/// Why a request was rejected.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RejectKind {
    /// Not a request at all.
    NotARequest,
    /// SIP-Version is not 2.0.
    VersionNotSupported,
    /// A mandatory header is missing.
    MissingHeader(HeaderName),
    /// A single-value header appears more than once.
    DuplicateHeader(HeaderName),
    /// A known header's value is malformed.
    MalformedHeader(HeaderError),
    /// The CSeq method differs from the Request-Line method.
    CSeqMethodMismatch,
    /// The Request-URI scheme is not served.
    UnsupportedUriScheme,
    /// The Request-URI carries `?headers` (not allowed there, §19.1.5).
    UriHeadersInRequestUri,
    /// Max-Forwards is 0 (proxy).
    TooManyHops,
    /// Loop detected (§16.3 step 4).
    LoopDetected,
    /// Proxy-Require / Require lists option tags not supported; they are in `unsupported`.
    BadExtension,
    /// The body's media type is not accepted (UAS).
    UnsupportedMediaType,
}

/// A validation failure: the response to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// Status code of the response.
    pub status: StatusCode,
    /// Reason phrase to use.
    pub reason: &'static str,
    /// What was wrong.
    pub kind: RejectKind,
    /// Headers the response must carry, e.g. `(Unsupported, "foo, bar")` for 420 or
    /// `(Accept, "application/sdp")` for 415.
    pub headers: Vec<(HeaderName, String)>,
}

impl Rejection {
    fn new(status: u16, kind: RejectKind) -> Self {
        let status = StatusCode(status);
        Self {
            status,
            reason: status.canonical_reason(),
            kind,
            headers: Vec::new(),
        }
    }

    fn bad(kind: RejectKind, reason: &'static str) -> Self {
        Self {
            reason,
            ..Self::new(400, kind)
        }
    }
}

/// The 400 reason phrase for a malformed `h`, naming it (RFC 4475 §3.1.2 expects the fault
/// to be named).
fn malformed(h: HeaderName) -> &'static str {
    match h {
        HeaderName::Via => "Malformed Via",
        HeaderName::From => "Malformed From",
        HeaderName::To => "Malformed To",
        HeaderName::CallId => "Malformed Call-ID",
        HeaderName::CSeq => "Malformed CSeq",
        HeaderName::Contact => "Malformed Contact",
        HeaderName::MaxForwards => "Malformed Max-Forwards",
        HeaderName::Route => "Malformed Route",
        HeaderName::RecordRoute => "Malformed Record-Route",
        HeaderName::Expires => "Malformed Expires",
        HeaderName::ContentType => "Malformed Content-Type",
        HeaderName::ProxyRequire => "Malformed Proxy-Require",
        HeaderName::Require => "Malformed Require",
        _ => "Malformed Header",
    }
}

const MANDATORY: [HeaderName; 5] = [
    HeaderName::To,
    HeaderName::From,
    HeaderName::CallId,
    HeaderName::CSeq,
    HeaderName::Via,
];

const SINGLE: [HeaderName; 8] = [
    HeaderName::To,
    HeaderName::From,
    HeaderName::CallId,
    HeaderName::CSeq,
    HeaderName::MaxForwards,
    HeaderName::ContentLength,
    HeaderName::ContentType,
    HeaderName::Expires,
];

/// Validate a request (see the module docs for the order of checks).
pub fn validate_request(msg: &Message, cfg: &ValidationConfig<'_>) -> Result<(), Rejection> {
    if !msg.is_request() {
        return Err(Rejection::bad(RejectKind::NotARequest, "Bad Request"));
    }
    if !msg.is_sip_2_0() {
        return Err(Rejection::new(505, RejectKind::VersionNotSupported));
    }
    for h in MANDATORY {
        if msg.header(h).is_none() {
            let reason = match h {
                HeaderName::To => "Missing To",
                HeaderName::From => "Missing From",
                HeaderName::CallId => "Missing Call-ID",
                HeaderName::CSeq => "Missing CSeq",
                _ => "Missing Via",
            };
            return Err(Rejection::bad(RejectKind::MissingHeader(h), reason));
        }
    }
    for h in SINGLE {
        if msg.count_of(h) > 1 {
            return Err(Rejection::bad(
                RejectKind::DuplicateHeader(h),
                "Duplicate Header",
            ));
        }
    }
    msg.check_typed_headers()
        .map_err(|e| Rejection::bad(RejectKind::MalformedHeader(e), malformed(e.header)))?;
    let cseq = msg
        .cseq()
        .map_err(|e| Rejection::bad(RejectKind::MalformedHeader(e), "Malformed CSeq"))?;
    let method = msg.method().unwrap_or(Method::Extension);
    if Some(cseq.method_str) != msg.method_str() {
        return Err(if method == Method::Extension {
            Rejection::new(501, RejectKind::CSeqMethodMismatch)
        } else {
            Rejection::bad(RejectKind::CSeqMethodMismatch, "CSeq Method Mismatch")
        });
    }
    // The parser checked a received Request-URI already: its scheme as written (compared
    // without case, as `Uri::scheme` names the known ones) and whether it has headers; a
    // start line written without that check is parsed here.
    let checked = match msg.request_uri_checked() {
        Some(c) => Some(c),
        None => msg.request_uri().map(|uri| {
            let text = uri.as_str();
            let scheme = text.split_once(':').map_or(text, |(s, _)| s);
            (scheme, matches!(&uri, Uri::Sip(s) if s.headers.is_some()))
        }),
    };
    if let Some((scheme, headers)) = checked {
        if !cfg.schemes.iter().any(|s| s.eq_ignore_ascii_case(scheme)) {
            return Err(Rejection::new(416, RejectKind::UnsupportedUriScheme));
        }
        if headers {
            return Err(Rejection::bad(
                RejectKind::UriHeadersInRequestUri,
                "Headers In Request-URI",
            ));
        }
    }
    if cfg.role == Role::Proxy {
        if let Ok(Some(0)) = msg.max_forwards() {
            return Err(Rejection::new(483, RejectKind::TooManyHops));
        }
    }
    let req_header = match cfg.role {
        Role::Proxy => HeaderName::ProxyRequire,
        Role::Uas => HeaderName::Require,
    };
    // ACK and CANCEL are not rejected for Require (§8.2.2.3); Proxy-Require still applies.
    let skip_require = cfg.role == Role::Uas && matches!(method, Method::Ack | Method::Cancel);
    if !skip_require {
        let tags = msg
            .option_tags(req_header)
            .map_err(|e| Rejection::bad(RejectKind::MalformedHeader(e), malformed(e.header)))?;
        let unknown: Vec<&str> = tags
            .into_iter()
            .filter(|t| !cfg.extensions.iter().any(|s| s.eq_ignore_ascii_case(t)))
            .collect();
        if !unknown.is_empty() {
            let mut r = Rejection::new(420, RejectKind::BadExtension);
            r.headers
                .push((HeaderName::Unsupported, unknown.join(", ")));
            return Err(r);
        }
    }
    if let (Role::Uas, Some(accept)) = (cfg.role, cfg.accept) {
        if !msg.body().is_empty() {
            if let Ok(Some(ct)) = msg.content_type() {
                let ok = accept.iter().any(|a| match a.split_once('/') {
                    Some((t, s)) => ct.is(t, s),
                    None => false,
                });
                if !ok {
                    let mut r = Rejection::new(415, RejectKind::UnsupportedMediaType);
                    r.headers.push((HeaderName::Accept, accept.join(", ")));
                    return Err(r);
                }
            }
        }
    }
    Ok(())
}

/// Loop detection hook (§16.3 step 4): `is_loop` is called for each Via value and returns true
/// when the Via is one this proxy inserted for this very request (same sent-by and the branch
/// it would compute again). Malformed Via values are skipped (validation reports them).
pub fn check_loop(
    msg: &Message,
    mut is_loop: impl FnMut(&Via<'_>) -> bool,
) -> Result<(), Rejection> {
    for v in msg.vias().flatten() {
        if is_loop(&v) {
            return Err(Rejection::new(482, RejectKind::LoopDetected));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn malformed_header_reason_names_the_header() {
        for (name, reason) in [
            ("scalar02", "Malformed CSeq"),
            ("quotbal", "Malformed To"),
            ("badinv01", "Malformed Via"),
            ("regbadct", "Malformed Contact"),
        ] {
            let path = format!(
                "{}/tests/corpus/rfc4475/{name}.dat",
                std::env::var("CARGO_MANIFEST_DIR").expect("cargo test sets CARGO_MANIFEST_DIR")
            );
            let m = Message::parse(std::fs::read(path).expect("corpus")).expect(name);
            let r = validate_request(&m, &ValidationConfig::PROXY).expect_err(name);
            assert_eq!(
                (r.status, r.reason),
                (StatusCode::BAD_REQUEST, reason),
                "{name}"
            );
        }
    }

    /// The Request-URI checks give the same answer on a received request (the parser's
    /// finding) and on one whose Request-URI an edit wrote (parsed here).
    #[test]
    fn request_uri_scheme_and_headers_as_received_and_as_edited() {
        let request = |uri: &str| {
            format!(
                "OPTIONS {uri} SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.7;branch=z9hG4bK1\r\n\
                 Max-Forwards: 70\r\nFrom: <sip:a@192.0.2.7>;tag=1\r\nTo: <sip:b@192.0.2.1>\r\n\
                 Call-ID: v-1\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
            )
        };
        for (uri, status) in [
            ("sip:b@192.0.2.1", None),
            ("SIPS:b@192.0.2.1", None),
            ("tel:+15551234", None),
            ("sip:a?b@192.0.2.1", None),
            ("sip:b@192.0.2.1?Subject=x", Some(400)),
            ("SIP:b@192.0.2.1;lr?h=1", Some(400)),
            ("nobodyKnowsThisScheme:x", Some(416)),
            ("http://example.com/x?y", Some(416)),
        ] {
            let received = Message::parse(request(uri).into_bytes()).expect(uri);
            let got = validate_request(&received, &ValidationConfig::PROXY)
                .err()
                .map(|r| r.status.0);
            assert_eq!(got, status, "received {uri}");
            let base = Message::parse(request("sip:x@192.0.2.9").into_bytes()).expect("base");
            let mut ed = base.edit();
            ed.set_request_uri(uri).expect(uri);
            let edited = ed.to_message();
            assert_eq!(edited.request_uri_str(), Some(uri));
            let got = validate_request(&edited, &ValidationConfig::PROXY)
                .err()
                .map(|r| r.status.0);
            assert_eq!(got, status, "edited {uri}");
        }
    }
}
