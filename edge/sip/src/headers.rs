//! Typed header views, parsed on demand from the raw values (RFC 3261 §20, grammar §25.1):
//! Via, From/To, Call-ID, CSeq, Contact, Route/Record-Route/Path, Max-Forwards, Content-Type,
//! Expires, Allow, Supported/Require/Proxy-Require/Unsupported. Each view borrows the message.
//! Authorization / *-Authenticate are parsed in `crate::auth`; here they are raw values only.
//!
//! List headers (§7.3.1) are iterated element by element across all their header lines;
//! commas inside quotes and `<>` do not split. An empty element or parameter is an error.

use crate::error::{HeaderError, HeaderErrorKind as K};
use crate::header_name::HeaderName;
use crate::message::Message;
use crate::method::Method;
use crate::syntax::{is_lws, is_token, parse_digits, quoted_len, split_commas, trim_lws};
use crate::uri::{Host, Params, Uri, check_header_params, parse_host};

/// A Call-ID value (`word ["@" word]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CallId<'a>(pub &'a str);

impl<'a> CallId<'a> {
    /// The Call-ID text.
    pub fn as_str(&self) -> &'a str {
        self.0
    }
}

/// A CSeq value: sequence number and method.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CSeq<'a> {
    /// The sequence number (0..=2^32-1).
    pub seq: u32,
    /// The method, classified.
    pub method: Method,
    /// The method as written (needed for extension methods).
    pub method_str: &'a str,
}

/// A `name-addr` or `addr-spec` with header parameters: From, To, Contact, Route,
/// Record-Route, Path, Refer-To...
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NameAddr<'a> {
    /// The display name as written: quoted (with its quotes) or a run of tokens.
    pub display_name: Option<&'a str>,
    /// The URI.
    pub uri: Uri<'a>,
    /// Was the URI enclosed in `<>`?
    pub angle: bool,
    /// Header parameters after the URI (`;tag=...;expires=...`).
    pub params: Params<'a>,
}

impl<'a> NameAddr<'a> {
    /// The `tag` parameter (From/To).
    pub fn tag(&self) -> Option<&'a str> {
        self.params.value("tag")
    }

    /// The display name with quotes and escapes removed.
    pub fn display_name_unquoted(&self) -> Option<std::borrow::Cow<'a, str>> {
        self.display_name.map(crate::uri::unquote)
    }
}

/// One Contact value: `*` or an address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Contact<'a> {
    /// `Contact: *` (REGISTER removal of all bindings).
    Wildcard,
    /// An address with its contact parameters.
    Address(NameAddr<'a>),
}

impl<'a> Contact<'a> {
    /// The address, unless this is `*`.
    pub fn address(&self) -> Option<&NameAddr<'a>> {
        match self {
            Contact::Wildcard => None,
            Contact::Address(a) => Some(a),
        }
    }

    /// The `expires` contact parameter (values above 2^32-1 saturate).
    pub fn expires(&self) -> Option<u32> {
        let v = self.address()?.params.value("expires")?;
        parse_digits(v.as_bytes()).map(|n| u32::try_from(n).unwrap_or(u32::MAX))
    }

    /// The `q` parameter in thousandths (`q=0.5` → 500), validated 0..=1000.
    pub fn q_millis(&self) -> Option<u16> {
        parse_qvalue(self.address()?.params.value("q")?)
    }
}

/// `qvalue = ("0" ["." 0*3DIGIT]) / ("1" ["." 0*3("0")])` in thousandths.
fn parse_qvalue(v: &str) -> Option<u16> {
    let (int, frac) = v.split_once('.').unwrap_or((v, ""));
    if frac.len() > 3 || !frac.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let mut f: u16 = 0;
    for i in 0..3 {
        f = f * 10 + frac.as_bytes().get(i).map_or(0, |c| u16::from(c - b'0'));
    }
    match int {
        "0" => Some(f),
        "1" if f == 0 => Some(1000),
        _ => None,
    }
}

/// One Via value (RFC 3261 §20.42, §18.2.1, RFC 3581).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Via<'a> {
    /// Protocol name (`SIP`).
    pub protocol: &'a str,
    /// Protocol version (`2.0`).
    pub version: &'a str,
    /// Transport as written (`UDP`, `TCP`, `TLS`, `SCTP`, `WS`, or anything else).
    pub transport: &'a str,
    /// sent-by host.
    pub host: Host<'a>,
    /// sent-by host as written (IPv6 with brackets).
    pub host_raw: &'a str,
    /// sent-by port.
    pub port: Option<u16>,
    /// Via parameters.
    pub params: Params<'a>,
}

impl<'a> Via<'a> {
    /// The `branch` parameter.
    pub fn branch(&self) -> Option<&'a str> {
        self.params.value("branch")
    }

    /// Does the branch start with the RFC 3261 magic cookie `z9hG4bK`?
    pub fn has_rfc3261_branch(&self) -> bool {
        self.branch().is_some_and(|b| b.starts_with("z9hG4bK"))
    }

    /// The `received` parameter.
    pub fn received(&self) -> Option<&'a str> {
        self.params.value("received")
    }

    /// `rport`: `None` absent, `Some(None)` present without value, `Some(Some(p))` with a port.
    pub fn rport(&self) -> Option<Option<u16>> {
        self.params
            .get("rport")
            .map(|v| v.and_then(|p| p.parse().ok()))
    }

    /// The `maddr` parameter.
    pub fn maddr(&self) -> Option<&'a str> {
        self.params.value("maddr")
    }

    /// The `ttl` parameter.
    pub fn ttl(&self) -> Option<u8> {
        self.params.value("ttl").and_then(|t| t.parse().ok())
    }

    /// Is the transport (case-insensitively) `t`?
    pub fn transport_is(&self, t: &str) -> bool {
        self.transport.eq_ignore_ascii_case(t)
    }
}

/// A media type (`Content-Type`, RFC 3261 §20.15).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MediaType<'a> {
    /// Top-level type (`application`).
    pub ty: &'a str,
    /// Subtype (`sdp`).
    pub subtype: &'a str,
    /// Parameters (`;charset=...`).
    pub params: Params<'a>,
}

impl MediaType<'_> {
    /// Does it match `ty/subtype` (case-insensitive)?
    pub fn is(&self, ty: &str, subtype: &str) -> bool {
        self.ty.eq_ignore_ascii_case(ty) && self.subtype.eq_ignore_ascii_case(subtype)
    }
}

// ---------------------------------------------------------------------------------------------
// Element parsers (crate-visible so the fuzz targets and other modules can reuse them).

/// A small cursor over a header value.
struct Cur<'a> {
    s: &'a str,
    i: usize,
}

impl<'a> Cur<'a> {
    fn new(s: &'a str) -> Self {
        Self { s, i: 0 }
    }
    fn b(&self) -> &'a [u8] {
        self.s.as_bytes()
    }
    fn skip_lws(&mut self) {
        while self.i < self.s.len() && is_lws(self.b()[self.i]) {
            self.i += 1;
        }
    }
    fn peek(&self) -> Option<u8> {
        self.b().get(self.i).copied()
    }
    fn eat(&mut self, c: u8) -> bool {
        if self.peek() == Some(c) {
            self.i += 1;
            true
        } else {
            false
        }
    }
    fn token(&mut self) -> Result<&'a str, K> {
        let st = self.i;
        while self.i < self.s.len() && is_token(self.b()[self.i]) {
            self.i += 1;
        }
        if st == self.i {
            Err(K::Syntax)
        } else {
            Ok(&self.s[st..self.i])
        }
    }
    fn rest(&self) -> &'a str {
        &self.s[self.i..]
    }
}

/// Parse one Via element.
pub fn parse_via(s: &str) -> Result<Via<'_>, K> {
    if s.is_empty() {
        return Err(K::Empty);
    }
    let mut c = Cur::new(s);
    let protocol = c.token()?;
    c.skip_lws();
    if !c.eat(b'/') {
        return Err(K::Syntax);
    }
    c.skip_lws();
    let version = c.token()?;
    c.skip_lws();
    if !c.eat(b'/') {
        return Err(K::Syntax);
    }
    c.skip_lws();
    let transport = c.token()?;
    let before = c.i;
    c.skip_lws();
    if c.i == before {
        return Err(K::Syntax);
    }
    // sent-by host
    let hs = c.i;
    if c.peek() == Some(b'[') {
        let close = c.rest().find(']').ok_or(K::Syntax)?;
        c.i += close + 1;
    } else {
        while c.i < s.len() && {
            let ch = c.b()[c.i];
            ch.is_ascii_alphanumeric() || matches!(ch, b'.' | b'-' | b'_')
        } {
            c.i += 1;
        }
    }
    let host_raw = &s[hs..c.i];
    let host = parse_host(host_raw).map_err(|_| K::Syntax)?;
    let save = c.i;
    c.skip_lws();
    let mut port = None;
    if c.eat(b':') {
        c.skip_lws();
        let ps = c.i;
        while c.i < s.len() && c.b()[c.i].is_ascii_digit() {
            c.i += 1;
        }
        let v = parse_digits(&c.b()[ps..c.i]).ok_or(K::Syntax)?;
        port = Some(u16::try_from(v).map_err(|_| K::OutOfRange)?);
    } else {
        c.i = save;
    }
    let params = c.rest();
    check_header_params(params)?;
    Ok(Via {
        protocol,
        version,
        transport,
        host,
        host_raw,
        port,
        params: Params::new(params),
    })
}

/// Parse a name-addr / addr-spec with header parameters. `need_angle` forces the `<>` form
/// (Route, Record-Route, Path).
pub fn parse_name_addr(s: &str, need_angle: bool) -> Result<NameAddr<'_>, K> {
    if s.is_empty() {
        return Err(K::Empty);
    }
    let b = s.as_bytes();
    // Locate '<' at top level (outside a leading quoted string).
    let (display_name, lt) = if b[0] == b'"' {
        let q = quoted_len(b).ok_or(K::UnterminatedQuote)?;
        let mut i = q;
        while i < b.len() && is_lws(b[i]) {
            i += 1;
        }
        if b.get(i) != Some(&b'<') {
            return Err(K::Syntax);
        }
        (Some(&s[..q]), Some(i))
    } else {
        match memchr::memchr(b'<', b) {
            Some(lt) => {
                let dn = trim_lws(&s[..lt]);
                if !dn.bytes().all(|c| is_token(c) || is_lws(c)) {
                    return Err(K::Syntax);
                }
                (if dn.is_empty() { None } else { Some(dn) }, Some(lt))
            }
            None => (None, None),
        }
    };
    match lt {
        Some(lt) => {
            let gt = lt + memchr::memchr(b'>', &b[lt..]).ok_or(K::Syntax)?;
            let uri = Uri::parse(&s[lt + 1..gt]).map_err(|_| K::Uri)?;
            let params = &s[gt + 1..];
            check_header_params(params)?;
            Ok(NameAddr {
                display_name,
                uri,
                angle: true,
                params: Params::new(params),
            })
        }
        None => {
            if need_angle {
                return Err(K::Syntax);
            }
            // addr-spec: the URI ends at the first ';' or LWS; it may not contain '?' or ','.
            let end = b
                .iter()
                .position(|&c| c == b';' || is_lws(c))
                .unwrap_or(b.len());
            let uri_s = &s[..end];
            if uri_s.contains('?') {
                return Err(K::Uri);
            }
            let uri = Uri::parse(uri_s).map_err(|_| K::Uri)?;
            let params = &s[end..];
            check_header_params(params)?;
            Ok(NameAddr {
                display_name: None,
                uri,
                angle: false,
                params: Params::new(params),
            })
        }
    }
}

/// Parse one Contact element (`*` or an address; `q` and `expires` validated).
pub fn parse_contact(s: &str) -> Result<Contact<'_>, K> {
    if s == "*" {
        return Ok(Contact::Wildcard);
    }
    let c = Contact::Address(parse_name_addr(s, false)?);
    if let Some(a) = c.address() {
        if a.params.get("q").is_some() && c.q_millis().is_none() {
            return Err(K::Syntax);
        }
        if let Some(e) = a.params.get("expires") {
            if e.is_none_or(|v| parse_digits(v.as_bytes()).is_none()) {
                return Err(K::Syntax);
            }
        }
    }
    Ok(c)
}

fn parse_route(s: &str) -> Result<NameAddr<'_>, K> {
    parse_name_addr(s, true)
}

fn parse_token_elem(s: &str) -> Result<&str, K> {
    if s.is_empty() {
        return Err(K::Empty);
    }
    if s.bytes().all(is_token) {
        Ok(s)
    } else {
        Err(K::Syntax)
    }
}

/// Parse a CSeq value.
pub fn parse_cseq(s: &str) -> Result<CSeq<'_>, K> {
    let mut c = Cur::new(s);
    let ds = c.i;
    while c.i < s.len() && c.b()[c.i].is_ascii_digit() {
        c.i += 1;
    }
    let n = parse_digits(&c.b()[ds..c.i]).ok_or(K::Syntax)?;
    let seq = u32::try_from(n).map_err(|_| K::OutOfRange)?;
    let before = c.i;
    c.skip_lws();
    if c.i == before {
        return Err(K::Syntax);
    }
    let m = c.token()?;
    if c.i != s.len() {
        return Err(K::Syntax);
    }
    Ok(CSeq {
        seq,
        method: Method::from_name(m),
        method_str: m,
    })
}

/// Is `s` a valid Call-ID (`word ["@" word]`)?
fn parse_call_id(s: &str) -> Result<CallId<'_>, K> {
    let word = |w: &str| {
        !w.is_empty()
            && w.bytes().all(|c| {
                is_token(c)
                    || matches!(
                        c,
                        b'(' | b')'
                            | b'<'
                            | b'>'
                            | b':'
                            | b'\\'
                            | b'"'
                            | b'/'
                            | b'['
                            | b']'
                            | b'?'
                            | b'{'
                            | b'}'
                    )
            })
    };
    let ok = match s.split_once('@') {
        Some((a, b)) => word(a) && word(b),
        None => word(s),
    };
    if ok { Ok(CallId(s)) } else { Err(K::Syntax) }
}

fn parse_media_type(s: &str) -> Result<MediaType<'_>, K> {
    let mut c = Cur::new(s);
    let ty = c.token()?;
    c.skip_lws();
    if !c.eat(b'/') {
        return Err(K::Syntax);
    }
    c.skip_lws();
    let subtype = c.token()?;
    let params = c.rest();
    check_header_params(params)?;
    Ok(MediaType {
        ty,
        subtype,
        params: Params::new(params),
    })
}

fn parse_u32(s: &str) -> Result<u32, K> {
    let n = parse_digits(s.as_bytes()).ok_or(K::Syntax)?;
    u32::try_from(n).map_err(|_| K::OutOfRange)
}

// ---------------------------------------------------------------------------------------------
// List iteration across header lines.

/// Iterator over the elements of a list header across all its lines. Items are `Result`s so
/// one bad element does not hide the others.
pub struct ListIter<'m, T> {
    msg: &'m Message,
    name: HeaderName,
    next_header: usize,
    cur: Option<(&'m str, crate::syntax::CommaSplit<'m>)>,
    parse: fn(&'m str) -> Result<T, K>,
}

impl<'m, T> ListIter<'m, T> {
    fn new(msg: &'m Message, name: HeaderName, parse: fn(&'m str) -> Result<T, K>) -> Self {
        Self {
            msg,
            name,
            next_header: 0,
            cur: None,
            parse,
        }
    }
}

impl<'m, T> Iterator for ListIter<'m, T> {
    type Item = Result<T, HeaderError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some((s, split)) = &mut self.cur {
                if let Some(r) = split.next() {
                    let s: &'m str = s;
                    // Ranges from split_commas are on ASCII delimiters, so they are char
                    // boundaries of `s`.
                    let elem = s.get(r).unwrap_or("");
                    return Some((self.parse)(elem).map_err(|k| HeaderError::new(self.name, k)));
                }
                self.cur = None;
            }
            let headers = &self.msg.head().headers;
            let idx = (self.next_header..headers.len()).find(|&i| headers[i].name == self.name)?;
            self.next_header = idx + 1;
            let raw = self.msg.slice(headers[idx].value);
            match self.msg.text(raw) {
                Some(s) => self.cur = Some((s, split_commas(s.as_bytes()))),
                None => return Some(Err(HeaderError::new(self.name, K::NotUtf8))),
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Accessors on Message.

fn first_elem(s: &str) -> &str {
    let r = split_commas(s.as_bytes()).next().unwrap_or(0..0);
    s.get(r).unwrap_or("")
}

impl Message {
    fn typed<'m, T>(
        &'m self,
        name: HeaderName,
        f: impl FnOnce(&'m str) -> Result<T, K>,
    ) -> Result<T, HeaderError> {
        f(trim_lws(self.required_str(name)?)).map_err(|k| HeaderError::new(name, k))
    }

    fn typed_opt<'m, T>(
        &'m self,
        name: HeaderName,
        f: impl FnOnce(&'m str) -> Result<T, K>,
    ) -> Result<Option<T>, HeaderError> {
        match self.optional_str(name)? {
            None => Ok(None),
            Some(s) => f(s).map(Some).map_err(|k| HeaderError::new(name, k)),
        }
    }

    /// The topmost Via value (first element of the first Via line).
    pub fn top_via(&self) -> Result<Via<'_>, HeaderError> {
        self.typed(HeaderName::Via, |s| parse_via(first_elem(s)))
    }

    /// All Via values, top first.
    pub fn vias(&self) -> ListIter<'_, Via<'_>> {
        ListIter::new(self, HeaderName::Via, parse_via)
    }

    /// Call-ID.
    pub fn call_id(&self) -> Result<CallId<'_>, HeaderError> {
        self.typed(HeaderName::CallId, parse_call_id)
    }

    /// CSeq.
    pub fn cseq(&self) -> Result<CSeq<'_>, HeaderError> {
        self.typed(HeaderName::CSeq, parse_cseq)
    }

    /// From.
    pub fn from(&self) -> Result<NameAddr<'_>, HeaderError> {
        self.typed(HeaderName::From, |s| parse_name_addr(s, false))
    }

    /// To.
    pub fn to(&self) -> Result<NameAddr<'_>, HeaderError> {
        self.typed(HeaderName::To, |s| parse_name_addr(s, false))
    }

    /// The From tag (`None` if absent, e.g. RFC 2543 peers).
    pub fn from_tag(&self) -> Result<Option<&str>, HeaderError> {
        self.from().map(|f| f.tag())
    }

    /// The To tag.
    pub fn to_tag(&self) -> Result<Option<&str>, HeaderError> {
        self.to().map(|t| t.tag())
    }

    /// All Contact values.
    pub fn contacts(&self) -> ListIter<'_, Contact<'_>> {
        ListIter::new(self, HeaderName::Contact, parse_contact)
    }

    /// All Route values, top first.
    pub fn routes(&self) -> ListIter<'_, NameAddr<'_>> {
        ListIter::new(self, HeaderName::Route, parse_route)
    }

    /// All Record-Route values, top first.
    pub fn record_routes(&self) -> ListIter<'_, NameAddr<'_>> {
        ListIter::new(self, HeaderName::RecordRoute, parse_route)
    }

    /// All Path values (RFC 3327).
    pub fn paths(&self) -> ListIter<'_, NameAddr<'_>> {
        ListIter::new(self, HeaderName::Path, parse_route)
    }

    /// The topmost Route value, if any.
    pub fn top_route(&self) -> Result<Option<NameAddr<'_>>, HeaderError> {
        self.typed_opt(HeaderName::Route, |s| parse_route(first_elem(s)))
    }

    /// Max-Forwards (0..=255).
    pub fn max_forwards(&self) -> Result<Option<u8>, HeaderError> {
        self.typed_opt(HeaderName::MaxForwards, |s| {
            let n = parse_digits(s.as_bytes()).ok_or(K::Syntax)?;
            u8::try_from(n).map_err(|_| K::OutOfRange)
        })
    }

    /// Expires (delta-seconds).
    pub fn expires(&self) -> Result<Option<u32>, HeaderError> {
        self.typed_opt(HeaderName::Expires, parse_u32)
    }

    /// Min-Expires (delta-seconds).
    pub fn min_expires(&self) -> Result<Option<u32>, HeaderError> {
        self.typed_opt(HeaderName::MinExpires, parse_u32)
    }

    /// Content-Type.
    pub fn content_type(&self) -> Result<Option<MediaType<'_>>, HeaderError> {
        self.typed_opt(HeaderName::ContentType, parse_media_type)
    }

    /// Allow: method tokens.
    pub fn allow(&self) -> ListIter<'_, &str> {
        ListIter::new(self, HeaderName::Allow, parse_token_elem)
    }

    /// Supported: option tags. (An empty `Supported:` yields one `Empty` error; use
    /// [`Self::option_tags`] to treat it as no tags.)
    pub fn supported(&self) -> ListIter<'_, &str> {
        ListIter::new(self, HeaderName::Supported, parse_token_elem)
    }

    /// Require: option tags.
    pub fn require(&self) -> ListIter<'_, &str> {
        ListIter::new(self, HeaderName::Require, parse_token_elem)
    }

    /// Proxy-Require: option tags.
    pub fn proxy_require(&self) -> ListIter<'_, &str> {
        ListIter::new(self, HeaderName::ProxyRequire, parse_token_elem)
    }

    /// Option tags of `name` (Supported, Require, Proxy-Require, Unsupported) collected; an
    /// entirely empty header line counts as no tags.
    pub fn option_tags(&self, name: HeaderName) -> Result<Vec<&str>, HeaderError> {
        let mut out = Vec::new();
        for f in self.headers_named(name) {
            let s = f
                .value_str()
                .ok_or_else(|| HeaderError::new(name, K::NotUtf8))?;
            if trim_lws(s).is_empty() {
                continue;
            }
            for r in split_commas(s.as_bytes()) {
                let e = s.get(r).unwrap_or("");
                out.push(parse_token_elem(e).map_err(|k| HeaderError::new(name, k))?);
            }
        }
        Ok(out)
    }

    /// Run every typed accessor this module offers over the headers present, returning the
    /// first failure. Request validation uses it to answer 400 for malformed known headers.
    pub fn check_typed_headers(&self) -> Result<(), HeaderError> {
        for f in self.headers() {
            let name = f.name;
            if !matches!(
                name,
                HeaderName::Via
                    | HeaderName::Contact
                    | HeaderName::Route
                    | HeaderName::RecordRoute
                    | HeaderName::Path
                    | HeaderName::From
                    | HeaderName::To
                    | HeaderName::CallId
                    | HeaderName::CSeq
                    | HeaderName::MaxForwards
                    | HeaderName::Expires
                    | HeaderName::MinExpires
                    | HeaderName::ContentType
                    | HeaderName::Allow
                    | HeaderName::Supported
                    | HeaderName::Require
                    | HeaderName::ProxyRequire
                    | HeaderName::Unsupported
            ) {
                // Not a typed header: no UTF-8 pass over its value (issue 16).
                continue;
            }
            let s = f
                .value_str()
                .ok_or_else(|| HeaderError::new(name, K::NotUtf8));
            let err = |k| HeaderError::new(name, k);
            match name {
                HeaderName::Via => {
                    for r in split_commas(s?.as_bytes()) {
                        parse_via(s?.get(r).unwrap_or("")).map_err(err)?;
                    }
                }
                HeaderName::Contact => {
                    for r in split_commas(s?.as_bytes()) {
                        parse_contact(s?.get(r).unwrap_or("")).map_err(err)?;
                    }
                }
                HeaderName::Route | HeaderName::RecordRoute | HeaderName::Path => {
                    for r in split_commas(s?.as_bytes()) {
                        parse_route(s?.get(r).unwrap_or("")).map_err(err)?;
                    }
                }
                HeaderName::From | HeaderName::To => {
                    parse_name_addr(s?, false).map_err(err)?;
                }
                HeaderName::CallId => {
                    parse_call_id(s?).map_err(err)?;
                }
                HeaderName::CSeq => {
                    parse_cseq(s?).map_err(err)?;
                }
                HeaderName::MaxForwards => {
                    let n = parse_digits(s?.as_bytes()).ok_or_else(|| err(K::Syntax))?;
                    u8::try_from(n).map_err(|_| err(K::OutOfRange))?;
                }
                HeaderName::Expires | HeaderName::MinExpires => {
                    parse_u32(s?).map_err(err)?;
                }
                HeaderName::ContentType => {
                    parse_media_type(s?).map_err(err)?;
                }
                HeaderName::Allow
                | HeaderName::Supported
                | HeaderName::Require
                | HeaderName::ProxyRequire
                | HeaderName::Unsupported => {
                    let s = s?;
                    if !trim_lws(s).is_empty() {
                        for r in split_commas(s.as_bytes()) {
                            parse_token_elem(s.get(r).unwrap_or("")).map_err(err)?;
                        }
                    }
                }
                _ => {}
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn via_with_folds() {
        let v = parse_via("SIP  /   2.0\r\n /UDP\r\n    192.0.2.2;branch=390skdjuw").unwrap();
        assert_eq!((v.protocol, v.version, v.transport), ("SIP", "2.0", "UDP"));
        assert_eq!(v.host_raw, "192.0.2.2");
        assert_eq!(v.branch(), Some("390skdjuw"));
        let v =
            parse_via("SIP/2.0/UDP [2001:db8::9:1]:6050;received=2001:db8::9:255;rport").unwrap();
        assert_eq!(v.port, Some(6050));
        assert_eq!(v.received(), Some("2001:db8::9:255"));
        assert_eq!(v.rport(), Some(None));
        assert!(parse_via("SIP/2.0/UDP 192.0.2.15;;").is_err());
        assert!(parse_via(";").is_err());
        assert!(parse_via("").is_err());
        let v = parse_via("SIP/2.0/UDP host : 5060 ; rport=1234").unwrap();
        assert_eq!(v.port, Some(5060));
        assert_eq!(v.rport(), Some(Some(1234)));
    }

    #[test]
    fn name_addr_forms() {
        let a = parse_name_addr(
            "\"J Rosenberg \\\\\\\"\"       <sip:jdrosen@example.com>\r\n  ;\r\n  tag = 98asjd8",
            false,
        )
        .unwrap();
        assert_eq!(a.tag(), Some("98asjd8"));
        assert_eq!(a.display_name, Some("\"J Rosenberg \\\\\\\"\""));
        let a = parse_name_addr("caller<sip:caller@example.com>;tag=323", false).unwrap();
        assert_eq!(a.display_name, Some("caller"));
        let a = parse_name_addr("sip:+19725552222@gw1.example.net;unknownparam", false).unwrap();
        assert!(a.params.contains("unknownparam"));
        assert!(a.uri.as_sip().unwrap().params.is_empty());
        let a = parse_name_addr("<sip:+19725552222@gw1.example.net;unknownparam>", false).unwrap();
        assert!(a.uri.as_sip().unwrap().params.contains("unknownparam"));
        assert_eq!(
            parse_name_addr("\"Mr. J. User <sip:j.user@example.com>", false),
            Err(K::UnterminatedQuote)
        );
        assert!(
            parse_name_addr("Bell, Alexander <sip:a.g.bell@example.com>;tag=43", false).is_err()
        );
        assert!(parse_name_addr("< sip:t.watson@example.org >", false).is_err());
        assert!(
            parse_name_addr(
                "sip:user@example.com?Route=%3Csip:sip.example.com%3E",
                false
            )
            .is_err()
        );
        assert!(parse_name_addr("\"Joe\" <sip:joe@example.org>;;;;", false).is_err());
        assert!(parse_name_addr("sip:a@b", true).is_err());
    }

    #[test]
    fn contact_params() {
        let Contact::Address(a) = parse_contact("<sip:a@b>;expires=280297596632815;q=0.7").unwrap()
        else {
            panic!()
        };
        let c = Contact::Address(a);
        assert_eq!(c.expires(), Some(u32::MAX));
        assert_eq!(c.q_millis(), Some(700));
        assert_eq!(parse_contact("*"), Ok(Contact::Wildcard));
        assert!(parse_contact("<sip:a@b>;q=2").is_err());
        assert_eq!(parse_qvalue("1.000"), Some(1000));
        assert_eq!(parse_qvalue("0.33"), Some(330));
    }

    #[test]
    fn cseq_and_call_id() {
        let c = parse_cseq("0009\r\n  INVITE").unwrap();
        assert_eq!((c.seq, c.method), (9, Method::Invite));
        assert_eq!(
            parse_cseq("36893488147419103232 REGISTER"),
            Err(K::OutOfRange)
        );
        assert!(parse_cseq("1").is_err());
        assert!(parse_cseq("1 INVITE x").is_err());
        assert!(parse_call_id("intmeth.word%ZK-!.*_+'@word`~)(><:\\/\"][?}{").is_ok());
        assert!(parse_call_id("a b").is_err());
    }
}
