//! Header names (RFC 3261 §7.3.3, §20): case-insensitive recognition of the headers the node
//! understands, including the compact forms of §7.3.3 and the IANA registry (`i m e l c f s k t v`,
//! `o r u b x a j d y n`). Unknown names are `HeaderName::Other`; their bytes stay in the message.

macro_rules! header_names {
    ($( $(#[$doc:meta])* $var:ident = $canon:literal $(, $compact:literal)? ;)*) => {
        /// A recognised SIP header name. `Other` is any header not listed here.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[repr(u8)]
        #[non_exhaustive]
        pub enum HeaderName {
            $( $(#[$doc])* $var, )*
            /// A header this crate does not know by name; see the raw name.
            Other,
        }

        impl HeaderName {
            /// Number of variants (including `Other`); used to size per-name index tables.
            pub const COUNT: usize = Self::ALL.len() + 1;

            /// Every recognised name (all variants but `Other`).
            pub const ALL: &'static [HeaderName] = &[$(HeaderName::$var,)*];

            /// The canonical (long) form of the name, as written on output.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $( HeaderName::$var => $canon, )*
                    HeaderName::Other => "",
                }
            }

            /// The compact form (RFC 3261 §7.3.3), if the header has one.
            pub const fn compact(self) -> Option<char> {
                match self {
                    $( HeaderName::$var => header_names!(@compact $($compact)?), )*
                    HeaderName::Other => None,
                }
            }

        }
    };
    (@compact $c:literal) => { Some($c) };
    (@compact) => { None };
}

header_names! {
    /// `Via` / `v`.
    Via = "Via", 'v';
    /// `From` / `f`.
    From = "From", 'f';
    /// `To` / `t`.
    To = "To", 't';
    /// `Call-ID` / `i`.
    CallId = "Call-ID", 'i';
    /// `CSeq`.
    CSeq = "CSeq";
    /// `Contact` / `m`.
    Contact = "Contact", 'm';
    /// `Max-Forwards`.
    MaxForwards = "Max-Forwards";
    /// `Route`.
    Route = "Route";
    /// `Record-Route`.
    RecordRoute = "Record-Route";
    /// `Content-Length` / `l`.
    ContentLength = "Content-Length", 'l';
    /// `Content-Type` / `c`.
    ContentType = "Content-Type", 'c';
    /// `Content-Encoding` / `e`.
    ContentEncoding = "Content-Encoding", 'e';
    /// `Expires`.
    Expires = "Expires";
    /// `Min-Expires`.
    MinExpires = "Min-Expires";
    /// `Allow`.
    Allow = "Allow";
    /// `Supported` / `k`.
    Supported = "Supported", 'k';
    /// `Require`.
    Require = "Require";
    /// `Proxy-Require`.
    ProxyRequire = "Proxy-Require";
    /// `Unsupported`.
    Unsupported = "Unsupported";
    /// `Authorization`.
    Authorization = "Authorization";
    /// `Proxy-Authorization`.
    ProxyAuthorization = "Proxy-Authorization";
    /// `WWW-Authenticate`.
    WwwAuthenticate = "WWW-Authenticate";
    /// `Proxy-Authenticate`.
    ProxyAuthenticate = "Proxy-Authenticate";
    /// `Authentication-Info`.
    AuthenticationInfo = "Authentication-Info";
    /// `Path` (RFC 3327).
    Path = "Path";
    /// `Accept`.
    Accept = "Accept";
    /// `Subject` / `s`.
    Subject = "Subject", 's';
    /// `User-Agent`.
    UserAgent = "User-Agent";
    /// `Server`.
    Server = "Server";
    /// `Date`.
    Date = "Date";
    /// `Timestamp`.
    Timestamp = "Timestamp";
    /// `Warning`.
    Warning = "Warning";
    /// `Retry-After`.
    RetryAfter = "Retry-After";
    /// `Event` / `o` (RFC 6665).
    Event = "Event", 'o';
    /// `Allow-Events` / `u` (RFC 6665).
    AllowEvents = "Allow-Events", 'u';
    /// `Refer-To` / `r` (RFC 3515).
    ReferTo = "Refer-To", 'r';
    /// `Referred-By` / `b` (RFC 3892).
    ReferredBy = "Referred-By", 'b';
    /// `Session-Expires` / `x` (RFC 4028).
    SessionExpires = "Session-Expires", 'x';
    /// `Accept-Contact` / `a` (RFC 3841).
    AcceptContact = "Accept-Contact", 'a';
    /// `Reject-Contact` / `j` (RFC 3841).
    RejectContact = "Reject-Contact", 'j';
    /// `Request-Disposition` / `d` (RFC 3841).
    RequestDisposition = "Request-Disposition", 'd';
    /// `Identity` / `y` (RFC 8224).
    Identity = "Identity", 'y';
    /// `Identity-Info` / `n` (RFC 4474).
    IdentityInfo = "Identity-Info", 'n';
    /// `RSeq` (RFC 3262).
    RSeq = "RSeq";
    /// `RAck` (RFC 3262).
    RAck = "RAck";
}

/// Case-insensitive comparison of a token against a lower-case name made of letters and `-`.
/// OR-ing 0x20 folds exactly the upper-case letters onto lower case for token characters
/// (`-` and CR are the only octets folding onto `-`, and CR is not a token character).
#[inline]
fn eq_fold(input: &[u8], lower: &[u8]) -> bool {
    input.len() == lower.len() && input.iter().zip(lower).all(|(a, b)| (a | 0x20) == *b)
}

impl HeaderName {
    /// Recognise a header name (long or compact form, any case). Unknown names give `Other`.
    pub fn from_bytes(name: &[u8]) -> Self {
        if name.is_empty() {
            return Self::Other;
        }
        if name.len() == 1 {
            return match name[0].to_ascii_lowercase() {
                b'v' => Self::Via,
                b'f' => Self::From,
                b't' => Self::To,
                b'i' => Self::CallId,
                b'm' => Self::Contact,
                b'l' => Self::ContentLength,
                b'c' => Self::ContentType,
                b'e' => Self::ContentEncoding,
                b'k' => Self::Supported,
                b's' => Self::Subject,
                b'o' => Self::Event,
                b'u' => Self::AllowEvents,
                b'r' => Self::ReferTo,
                b'b' => Self::ReferredBy,
                b'x' => Self::SessionExpires,
                b'a' => Self::AcceptContact,
                b'j' => Self::RejectContact,
                b'd' => Self::RequestDisposition,
                b'y' => Self::Identity,
                b'n' => Self::IdentityInfo,
                _ => Self::Other,
            };
        }
        // Dispatch on (length, folded first letter), then one folded comparison.
        match (name.len(), name[0] | 0x20) {
            (2, b't') => {
                if eq_fold(name, b"to") {
                    Self::To
                } else {
                    Self::Other
                }
            }
            (3, b'v') => {
                if eq_fold(name, b"via") {
                    Self::Via
                } else {
                    Self::Other
                }
            }
            (4, b'c') => {
                if eq_fold(name, b"cseq") {
                    Self::CSeq
                } else {
                    Self::Other
                }
            }
            (4, b'd') => {
                if eq_fold(name, b"date") {
                    Self::Date
                } else {
                    Self::Other
                }
            }
            (4, b'f') => {
                if eq_fold(name, b"from") {
                    Self::From
                } else {
                    Self::Other
                }
            }
            (4, b'p') => {
                if eq_fold(name, b"path") {
                    Self::Path
                } else {
                    Self::Other
                }
            }
            (4, b'r') => {
                if eq_fold(name, b"rseq") {
                    Self::RSeq
                } else if eq_fold(name, b"rack") {
                    Self::RAck
                } else {
                    Self::Other
                }
            }
            (5, b'a') => {
                if eq_fold(name, b"allow") {
                    Self::Allow
                } else {
                    Self::Other
                }
            }
            (5, b'e') => {
                if eq_fold(name, b"event") {
                    Self::Event
                } else {
                    Self::Other
                }
            }
            (5, b'r') => {
                if eq_fold(name, b"route") {
                    Self::Route
                } else {
                    Self::Other
                }
            }
            (6, b'a') => {
                if eq_fold(name, b"accept") {
                    Self::Accept
                } else {
                    Self::Other
                }
            }
            (6, b's') => {
                if eq_fold(name, b"server") {
                    Self::Server
                } else {
                    Self::Other
                }
            }
            (7, b'c') => {
                if eq_fold(name, b"call-id") {
                    Self::CallId
                } else if eq_fold(name, b"contact") {
                    Self::Contact
                } else {
                    Self::Other
                }
            }
            (7, b'e') => {
                if eq_fold(name, b"expires") {
                    Self::Expires
                } else {
                    Self::Other
                }
            }
            (7, b'r') => {
                if eq_fold(name, b"require") {
                    Self::Require
                } else {
                    Self::Other
                }
            }
            (7, b's') => {
                if eq_fold(name, b"subject") {
                    Self::Subject
                } else {
                    Self::Other
                }
            }
            (7, b'w') => {
                if eq_fold(name, b"warning") {
                    Self::Warning
                } else {
                    Self::Other
                }
            }
            (8, b'i') => {
                if eq_fold(name, b"identity") {
                    Self::Identity
                } else {
                    Self::Other
                }
            }
            (8, b'r') => {
                if eq_fold(name, b"refer-to") {
                    Self::ReferTo
                } else {
                    Self::Other
                }
            }
            (9, b's') => {
                if eq_fold(name, b"supported") {
                    Self::Supported
                } else {
                    Self::Other
                }
            }
            (9, b't') => {
                if eq_fold(name, b"timestamp") {
                    Self::Timestamp
                } else {
                    Self::Other
                }
            }
            (10, b'u') => {
                if eq_fold(name, b"user-agent") {
                    Self::UserAgent
                } else {
                    Self::Other
                }
            }
            (11, b'm') => {
                if eq_fold(name, b"min-expires") {
                    Self::MinExpires
                } else {
                    Self::Other
                }
            }
            (11, b'r') => {
                if eq_fold(name, b"retry-after") {
                    Self::RetryAfter
                } else if eq_fold(name, b"referred-by") {
                    Self::ReferredBy
                } else {
                    Self::Other
                }
            }
            (11, b'u') => {
                if eq_fold(name, b"unsupported") {
                    Self::Unsupported
                } else {
                    Self::Other
                }
            }
            (12, b'a') => {
                if eq_fold(name, b"allow-events") {
                    Self::AllowEvents
                } else {
                    Self::Other
                }
            }
            (12, b'c') => {
                if eq_fold(name, b"content-type") {
                    Self::ContentType
                } else {
                    Self::Other
                }
            }
            (12, b'm') => {
                if eq_fold(name, b"max-forwards") {
                    Self::MaxForwards
                } else {
                    Self::Other
                }
            }
            (12, b'r') => {
                if eq_fold(name, b"record-route") {
                    Self::RecordRoute
                } else {
                    Self::Other
                }
            }
            (13, b'a') => {
                if eq_fold(name, b"authorization") {
                    Self::Authorization
                } else {
                    Self::Other
                }
            }
            (13, b'i') => {
                if eq_fold(name, b"identity-info") {
                    Self::IdentityInfo
                } else {
                    Self::Other
                }
            }
            (13, b'p') => {
                if eq_fold(name, b"proxy-require") {
                    Self::ProxyRequire
                } else {
                    Self::Other
                }
            }
            (14, b'a') => {
                if eq_fold(name, b"accept-contact") {
                    Self::AcceptContact
                } else {
                    Self::Other
                }
            }
            (14, b'c') => {
                if eq_fold(name, b"content-length") {
                    Self::ContentLength
                } else {
                    Self::Other
                }
            }
            (14, b'r') => {
                if eq_fold(name, b"reject-contact") {
                    Self::RejectContact
                } else {
                    Self::Other
                }
            }
            (15, b's') => {
                if eq_fold(name, b"session-expires") {
                    Self::SessionExpires
                } else {
                    Self::Other
                }
            }
            (16, b'c') => {
                if eq_fold(name, b"content-encoding") {
                    Self::ContentEncoding
                } else {
                    Self::Other
                }
            }
            (16, b'w') => {
                if eq_fold(name, b"www-authenticate") {
                    Self::WwwAuthenticate
                } else {
                    Self::Other
                }
            }
            (18, b'p') => {
                if eq_fold(name, b"proxy-authenticate") {
                    Self::ProxyAuthenticate
                } else {
                    Self::Other
                }
            }
            (19, b'a') => {
                if eq_fold(name, b"authentication-info") {
                    Self::AuthenticationInfo
                } else {
                    Self::Other
                }
            }
            (19, b'p') => {
                if eq_fold(name, b"proxy-authorization") {
                    Self::ProxyAuthorization
                } else {
                    Self::Other
                }
            }
            (19, b'r') => {
                if eq_fold(name, b"request-disposition") {
                    Self::RequestDisposition
                } else {
                    Self::Other
                }
            }
            _ => Self::Other,
        }
    }

    /// Recognise a header name given as text.
    pub fn from_name(name: &str) -> Self {
        Self::from_bytes(name.as_bytes())
    }

    /// Headers whose value is a comma-separated list (RFC 3261 §7.3.1), so several header lines
    /// may be combined and one line may carry several values.
    pub const fn is_list(self) -> bool {
        matches!(
            self,
            Self::Via
                | Self::Contact
                | Self::Route
                | Self::RecordRoute
                | Self::Allow
                | Self::Supported
                | Self::Require
                | Self::ProxyRequire
                | Self::Unsupported
                | Self::Path
                | Self::Accept
                | Self::AllowEvents
                | Self::Warning
                | Self::ContentEncoding
                | Self::AcceptContact
                | Self::RejectContact
                | Self::RequestDisposition
        )
    }
}

impl std::fmt::Display for HeaderName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::HeaderName;

    #[test]
    fn compact_and_case_insensitive() {
        assert_eq!(HeaderName::from_bytes(b"v"), HeaderName::Via);
        assert_eq!(HeaderName::from_bytes(b"V"), HeaderName::Via);
        assert_eq!(
            HeaderName::from_bytes(b"MaX-fOrWaRdS"),
            HeaderName::MaxForwards
        );
        assert_eq!(HeaderName::from_bytes(b"call-id"), HeaderName::CallId);
        assert_eq!(
            HeaderName::from_bytes(b"www-authenticate"),
            HeaderName::WwwAuthenticate
        );
        assert_eq!(HeaderName::from_bytes(b"C%6Fntact"), HeaderName::Other);
        assert_eq!(HeaderName::from_bytes(b"l"), HeaderName::ContentLength);
        assert_eq!(HeaderName::from_bytes(b"Q"), HeaderName::Other);
        assert_eq!(HeaderName::Contact.compact(), Some('m'));
        assert_eq!(HeaderName::CSeq.compact(), None);
        const { assert!(HeaderName::COUNT > 40) };
        for &h in HeaderName::ALL {
            assert_eq!(HeaderName::from_name(h.as_str()), h, "{h:?}");
            assert_eq!(HeaderName::from_name(&h.as_str().to_ascii_uppercase()), h);
            if let Some(c) = h.compact() {
                assert_eq!(HeaderName::from_name(&c.to_string()), h);
            }
        }
        assert_eq!(HeaderName::from_bytes(b""), HeaderName::Other);
        assert_eq!(HeaderName::from_bytes(b"Vib"), HeaderName::Other);
    }
}
