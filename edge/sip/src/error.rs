//! Error types of the SIP message layer: framing/parse errors (the message cannot be used at
//! all, RFC 3261 §7 and §18.3) and typed-header errors (the message frames, one header value is
//! malformed, RFC 3261 §25). Display text is not API; branch on the kinds.

use crate::header_name::HeaderName;

/// What was wrong with the bytes when a message could not be framed or its start line and
/// header boundaries could not be parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ParseErrorKind {
    /// Only CRLF / whitespace: a keep-alive, not a message.
    #[error("empty message (keep-alive)")]
    Empty,
    /// The header section is not terminated by an empty line.
    #[error("header section not terminated")]
    Truncated,
    /// The start line is neither a Request-Line nor a Status-Line.
    #[error("malformed start line")]
    InvalidStartLine,
    /// The method is not a token.
    #[error("malformed method")]
    InvalidMethod,
    /// The Request-URI does not parse (spaces, `<>`, bad host, ...).
    #[error("malformed Request-URI")]
    InvalidRequestUri,
    /// The SIP-Version is not `SIP/<digits>.<digits>`.
    #[error("malformed SIP version")]
    InvalidVersion,
    /// The status code is not three digits in 100..=699.
    #[error("malformed status code")]
    InvalidStatusCode,
    /// A header line has no `:` or its name is not a token.
    #[error("malformed header line")]
    InvalidHeaderLine,
    /// Content-Length is not a non-negative decimal number.
    #[error("malformed Content-Length")]
    InvalidContentLength,
    /// Several Content-Length headers disagree.
    #[error("conflicting Content-Length values")]
    ConflictingContentLength,
    /// Content-Length is larger than the bytes that follow the header section (datagram).
    #[error("body shorter than Content-Length")]
    BodyTruncated,
    /// A stream message lacks Content-Length (RFC 3261 §18.3: mandatory on streams).
    #[error("Content-Length missing on a stream transport")]
    MissingContentLength,
    /// The message is larger than the configured maximum.
    #[error("message too large")]
    TooLarge,
    /// More header lines than the parser accepts.
    #[error("too many headers")]
    TooManyHeaders,
}

/// A message could not be framed or parsed. `offset` is the byte offset of the fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{kind} at byte {offset}")]
pub struct ParseError {
    /// What went wrong.
    pub kind: ParseErrorKind,
    /// Byte offset (from the start of the message buffer) where it went wrong.
    pub offset: usize,
}

impl ParseError {
    pub(crate) fn new(kind: ParseErrorKind, offset: usize) -> Self {
        Self { kind, offset }
    }
}

/// Why a typed header accessor failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HeaderErrorKind {
    /// A mandatory header is absent.
    #[error("missing")]
    Missing,
    /// The value is not valid UTF-8.
    #[error("not UTF-8")]
    NotUtf8,
    /// The value does not match the header's grammar.
    #[error("malformed value")]
    Syntax,
    /// An empty element in a comma-separated list (`a,,b`) or an empty parameter (`;;`).
    #[error("empty list element or parameter")]
    Empty,
    /// A number is out of its range (CSeq > 2^32-1, Max-Forwards > 255, port > 65535).
    #[error("number out of range")]
    OutOfRange,
    /// A quoted string is not terminated.
    #[error("unterminated quoted string")]
    UnterminatedQuote,
    /// The URI inside the value does not parse.
    #[error("malformed URI")]
    Uri,
}

/// A typed header accessor failed: which header and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("header {header:?}: {kind}")]
pub struct HeaderError {
    /// The header that failed.
    pub header: HeaderName,
    /// Why.
    pub kind: HeaderErrorKind,
}

impl HeaderError {
    pub(crate) fn new(header: HeaderName, kind: HeaderErrorKind) -> Self {
        Self { header, kind }
    }
}

/// A URI did not parse (RFC 3261 §19.1, RFC 3966, RFC 3986).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum UriError {
    /// No `scheme:` prefix.
    #[error("missing or malformed scheme")]
    Scheme,
    /// Illegal character in the user or password part.
    #[error("malformed userinfo")]
    UserInfo,
    /// The host is empty or malformed (including an IPv6 address without `[]`).
    #[error("malformed host")]
    Host,
    /// The port is not a number in 0..=65535.
    #[error("malformed port")]
    Port,
    /// A `;param` is malformed or empty.
    #[error("malformed parameter")]
    Param,
    /// A `?header` is malformed.
    #[error("malformed header part")]
    Headers,
    /// Illegal character (space, `<`, `>`, `"`, control) anywhere in the URI.
    #[error("illegal character")]
    Char,
}
