//! Request methods (RFC 3261 §7.1, §27.4 registry) and status codes (RFC 3261 §7.2, §21).
//! Method names are case-sensitive (§7.1): `invite` is an extension method, not INVITE.

/// A SIP request method. Extension methods are `Method::Extension`; compare their names with
/// `Message::method_str()` (two different extension methods are both `Extension`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Method {
    /// INVITE (RFC 3261).
    Invite,
    /// ACK (RFC 3261).
    Ack,
    /// BYE (RFC 3261).
    Bye,
    /// CANCEL (RFC 3261).
    Cancel,
    /// REGISTER (RFC 3261).
    Register,
    /// OPTIONS (RFC 3261).
    Options,
    /// INFO (RFC 6086).
    Info,
    /// PRACK (RFC 3262).
    Prack,
    /// UPDATE (RFC 3311).
    Update,
    /// SUBSCRIBE (RFC 6665).
    Subscribe,
    /// NOTIFY (RFC 6665).
    Notify,
    /// REFER (RFC 3515).
    Refer,
    /// MESSAGE (RFC 3428).
    Message,
    /// PUBLISH (RFC 3903).
    Publish,
    /// Any other token.
    Extension,
}

impl Method {
    /// Classify a method token (case-sensitive).
    pub fn from_bytes(m: &[u8]) -> Self {
        match m {
            b"INVITE" => Self::Invite,
            b"ACK" => Self::Ack,
            b"BYE" => Self::Bye,
            b"CANCEL" => Self::Cancel,
            b"REGISTER" => Self::Register,
            b"OPTIONS" => Self::Options,
            b"INFO" => Self::Info,
            b"PRACK" => Self::Prack,
            b"UPDATE" => Self::Update,
            b"SUBSCRIBE" => Self::Subscribe,
            b"NOTIFY" => Self::Notify,
            b"REFER" => Self::Refer,
            b"MESSAGE" => Self::Message,
            b"PUBLISH" => Self::Publish,
            _ => Self::Extension,
        }
    }

    /// Classify a method given as text.
    pub fn from_name(m: &str) -> Self {
        Self::from_bytes(m.as_bytes())
    }

    /// The method name; `None` for `Extension` (its name lives in the message).
    pub const fn as_str(self) -> Option<&'static str> {
        Some(match self {
            Self::Invite => "INVITE",
            Self::Ack => "ACK",
            Self::Bye => "BYE",
            Self::Cancel => "CANCEL",
            Self::Register => "REGISTER",
            Self::Options => "OPTIONS",
            Self::Info => "INFO",
            Self::Prack => "PRACK",
            Self::Update => "UPDATE",
            Self::Subscribe => "SUBSCRIBE",
            Self::Notify => "NOTIFY",
            Self::Refer => "REFER",
            Self::Message => "MESSAGE",
            Self::Publish => "PUBLISH",
            Self::Extension => return None,
        })
    }
}

/// A response status code, 100..=699 when it comes from the parser.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StatusCode(pub u16);

impl StatusCode {
    /// 100 Trying.
    pub const TRYING: Self = Self(100);
    /// 200 OK.
    pub const OK: Self = Self(200);
    /// 400 Bad Request.
    pub const BAD_REQUEST: Self = Self(400);
    /// 401 Unauthorized.
    pub const UNAUTHORIZED: Self = Self(401);
    /// 403 Forbidden.
    pub const FORBIDDEN: Self = Self(403);
    /// 404 Not Found.
    pub const NOT_FOUND: Self = Self(404);
    /// 405 Method Not Allowed.
    pub const METHOD_NOT_ALLOWED: Self = Self(405);
    /// 407 Proxy Authentication Required.
    pub const PROXY_AUTHENTICATION_REQUIRED: Self = Self(407);
    /// 408 Request Timeout.
    pub const REQUEST_TIMEOUT: Self = Self(408);
    /// 415 Unsupported Media Type.
    pub const UNSUPPORTED_MEDIA_TYPE: Self = Self(415);
    /// 416 Unsupported URI Scheme.
    pub const UNSUPPORTED_URI_SCHEME: Self = Self(416);
    /// 420 Bad Extension.
    pub const BAD_EXTENSION: Self = Self(420);
    /// 423 Interval Too Brief.
    pub const INTERVAL_TOO_BRIEF: Self = Self(423);
    /// 481 Call/Transaction Does Not Exist.
    pub const CALL_TRANSACTION_DOES_NOT_EXIST: Self = Self(481);
    /// 482 Loop Detected.
    pub const LOOP_DETECTED: Self = Self(482);
    /// 483 Too Many Hops.
    pub const TOO_MANY_HOPS: Self = Self(483);
    /// 487 Request Terminated.
    pub const REQUEST_TERMINATED: Self = Self(487);
    /// 500 Server Internal Error.
    pub const SERVER_INTERNAL_ERROR: Self = Self(500);
    /// 501 Not Implemented.
    pub const NOT_IMPLEMENTED: Self = Self(501);
    /// 503 Service Unavailable.
    pub const SERVICE_UNAVAILABLE: Self = Self(503);
    /// 505 Version Not Supported.
    pub const VERSION_NOT_SUPPORTED: Self = Self(505);

    /// The numeric code.
    pub const fn as_u16(self) -> u16 {
        self.0
    }

    /// 1xx.
    pub const fn is_provisional(self) -> bool {
        self.0 >= 100 && self.0 < 200
    }

    /// 2xx.
    pub const fn is_success(self) -> bool {
        self.0 >= 200 && self.0 < 300
    }

    /// ≥ 200.
    pub const fn is_final(self) -> bool {
        self.0 >= 200
    }

    /// The class digit (1..=6).
    pub const fn class(self) -> u16 {
        self.0 / 100
    }

    /// The RFC 3261 §21 reason phrase for well-known codes, else a class-generic phrase.
    pub const fn canonical_reason(self) -> &'static str {
        match self.0 {
            100 => "Trying",
            180 => "Ringing",
            181 => "Call Is Being Forwarded",
            182 => "Queued",
            183 => "Session Progress",
            200 => "OK",
            202 => "Accepted",
            300 => "Multiple Choices",
            301 => "Moved Permanently",
            302 => "Moved Temporarily",
            305 => "Use Proxy",
            380 => "Alternative Service",
            400 => "Bad Request",
            401 => "Unauthorized",
            402 => "Payment Required",
            403 => "Forbidden",
            404 => "Not Found",
            405 => "Method Not Allowed",
            406 => "Not Acceptable",
            407 => "Proxy Authentication Required",
            408 => "Request Timeout",
            410 => "Gone",
            413 => "Request Entity Too Large",
            414 => "Request-URI Too Long",
            415 => "Unsupported Media Type",
            416 => "Unsupported URI Scheme",
            420 => "Bad Extension",
            421 => "Extension Required",
            423 => "Interval Too Brief",
            480 => "Temporarily Unavailable",
            481 => "Call/Transaction Does Not Exist",
            482 => "Loop Detected",
            483 => "Too Many Hops",
            484 => "Address Incomplete",
            485 => "Ambiguous",
            486 => "Busy Here",
            487 => "Request Terminated",
            488 => "Not Acceptable Here",
            491 => "Request Pending",
            493 => "Undecipherable",
            500 => "Server Internal Error",
            501 => "Not Implemented",
            502 => "Bad Gateway",
            503 => "Service Unavailable",
            504 => "Server Time-out",
            505 => "Version Not Supported",
            513 => "Message Too Large",
            600 => "Busy Everywhere",
            603 => "Decline",
            604 => "Does Not Exist Anywhere",
            606 => "Not Acceptable",
            _ => match self.0 / 100 {
                1 => "Provisional",
                2 => "Success",
                3 => "Redirection",
                4 => "Client Error",
                5 => "Server Error",
                _ => "Global Failure",
            },
        }
    }
}

impl std::fmt::Display for StatusCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)
    }
}
