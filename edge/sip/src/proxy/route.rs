//! Routing helpers of the proxy core: our interfaces and whether a URI names us, Route
//! processing of a received request (RFC 3261 §16.4: strict-route fix-up and popping our own
//! Route values), strict next-hop handling of a forwarded copy (§16.6 item 6), `received`/`rport`
//! on the top Via (RFC 3261 §18.2.1, RFC 3581 §4) and where a response goes (§18.2.2 with
//! RFC 3581 §4: `received` and `rport`).
//!
//! URIs are handled as text here: only the host, port and `lr` are looked at.

use std::net::{IpAddr, SocketAddr};

use crate::transaction::{Remote, RequestParts, Transport, header_param, via_sent_by};

/// One of our listening interfaces, as advertised in Via and Record-Route.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Interface {
    /// Advertised address and port.
    pub addr: SocketAddr,
    /// Transport.
    pub transport: Transport,
}

/// Transport token for Via (`UDP`, `TCP`...).
pub fn via_transport(t: Transport) -> &'static str {
    match t {
        Transport::Udp => "UDP",
        Transport::Tcp => "TCP",
        Transport::Tls => "TLS",
        Transport::Sctp => "SCTP",
        Transport::Ws => "WS",
        Transport::Wss => "WSS",
    }
}

fn transport_from_token(token: &str) -> Transport {
    match token.to_ascii_uppercase().as_str() {
        "TCP" => Transport::Tcp,
        "TLS" => Transport::Tls,
        "SCTP" => Transport::Sctp,
        "WS" => Transport::Ws,
        "WSS" => Transport::Wss,
        _ => Transport::Udp,
    }
}

impl Interface {
    /// The Via value this interface puts on a forwarded request.
    pub fn via(&self, branch: &str) -> String {
        // Written piece by piece, not by `format!` (issue 16: per forwarded request).
        let mut out = String::with_capacity(64 + branch.len());
        out.push_str("SIP/2.0/");
        out.push_str(via_transport(self.transport));
        out.push(' ');
        push_socket_addr(&mut out, self.addr);
        out.push_str(";branch=");
        out.push_str(branch);
        out.push_str(";rport");
        out
    }

    /// The Record-Route value for this interface (loose routing, `lr`).
    pub fn record_route(&self) -> String {
        let mut out = String::with_capacity(64);
        out.push_str("<sip:");
        push_socket_addr(&mut out, self.addr);
        if self.transport != Transport::Udp {
            out.push_str(";transport=");
            out.push_str(&via_transport(self.transport).to_ascii_lowercase());
        }
        out.push_str(";lr>");
        out
    }
}

/// Append a decimal number.
fn push_decimal(out: &mut String, v: u16) {
    let mut buf = [0u8; 5];
    let mut n = v;
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    for &b in &buf[i..] {
        out.push(char::from(b));
    }
}

/// Append an IP address as its `Display` writes it (IPv4 digit by digit; IPv6 through `fmt`).
fn push_ip(out: &mut String, ip: IpAddr) {
    match ip {
        IpAddr::V4(v4) => {
            for (i, o) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    out.push('.');
                }
                push_decimal(out, u16::from(o));
            }
        }
        IpAddr::V6(v6) => {
            use std::fmt::Write as _;
            let _ = write!(out, "{v6}");
        }
    }
}

/// Append a socket address as its `Display` writes it (`a.b.c.d:port`, `[v6]:port`).
fn push_socket_addr(out: &mut String, addr: SocketAddr) {
    match addr {
        SocketAddr::V4(a) => {
            push_ip(out, IpAddr::V4(*a.ip()));
            out.push(':');
            push_decimal(out, a.port());
        }
        SocketAddr::V6(a) => {
            use std::fmt::Write as _;
            let _ = write!(out, "{a}");
        }
    }
}

/// The URI inside a name-addr (`"A" <sip:x>;p` → `sip:x`) or the value itself.
pub fn strip_angle(value: &str) -> &str {
    let v = value.trim();
    match (v.find('<'), v.rfind('>')) {
        (Some(a), Some(b)) if a < b => &v[a + 1..b],
        _ => v,
    }
}

/// Host (lower-case, without IPv6 brackets) and explicit port of a SIP URI.
pub fn uri_host_port(uri: &str) -> Option<(String, Option<u16>)> {
    let uri = strip_angle(uri);
    let (_, rest) = uri.split_once(':')?; // scheme
    let rest = rest.rsplit_once('@').map_or(rest, |(_, h)| h);
    let hostport = &rest[..rest.find([';', '?']).unwrap_or(rest.len())];
    if let Some(v6) = hostport.strip_prefix('[') {
        let (host, after) = v6.split_once(']')?;
        let port = after.strip_prefix(':').and_then(|p| p.parse().ok());
        return Some((host.to_ascii_lowercase(), port));
    }
    match hostport.rsplit_once(':') {
        Some((h, p)) => Some((h.to_ascii_lowercase(), p.parse().ok())),
        None => Some((hostport.to_ascii_lowercase(), None)),
    }
}

/// Whether a URI carries the `lr` parameter.
pub fn uri_has_lr(uri: &str) -> bool {
    let uri = strip_angle(uri);
    let params = &uri[uri.find(';').unwrap_or(uri.len())..];
    let params = &params[..params.find('?').unwrap_or(params.len())];
    params.split(';').any(|p| {
        p.split('=')
            .next()
            .is_some_and(|k| k.trim().eq_ignore_ascii_case("lr"))
    })
}

/// Whether `uri` names this proxy: one of `interfaces` (address and port, default 5060) or
/// one of `domains` (any port).
pub fn is_local(uri: &str, interfaces: &[Interface], domains: &[String]) -> bool {
    let Some((host, port)) = uri_host_port(uri) else {
        return false;
    };
    host_port_is_local(&host, port, interfaces, domains)
}

/// Whether a Via sent-by (`host[:port]`) names one of `interfaces`: [`is_local`] of
/// `sip:<sent-by>`, without building that URI (issue 16: once per response and per Via of a
/// new request).
pub fn sent_by_is_local(sent_by: &str, interfaces: &[Interface]) -> bool {
    if sent_by.contains(['<', '>', '@', '?', ';']) || sent_by.trim() != sent_by {
        return is_local(&format!("sip:{sent_by}"), interfaces, &[]);
    }
    let (host, port) = match sent_by.strip_prefix('[') {
        Some(v6) => {
            let Some((host, after)) = v6.split_once(']') else {
                return false;
            };
            (host, after.strip_prefix(':').and_then(|p| p.parse().ok()))
        }
        None => match sent_by.rsplit_once(':') {
            Some((h, p)) => (h, p.parse().ok()),
            None => (sent_by, None),
        },
    };
    host_port_is_local(host, port, interfaces, &[])
}

fn host_port_is_local(
    host: &str,
    port: Option<u16>,
    interfaces: &[Interface],
    domains: &[String],
) -> bool {
    if domains.iter().any(|d| d.eq_ignore_ascii_case(host)) {
        return true;
    }
    let Ok(ip) = host.parse::<IpAddr>() else {
        return false;
    };
    let port = port.unwrap_or(5060);
    interfaces
        .iter()
        .any(|i| i.addr.ip() == ip && i.addr.port() == port)
}

/// Whether `uri` is one we put in a Record-Route: no user part, host and port of one of our
/// interfaces. A user at one of our domains is a normal target, not a strict-routed request.
pub fn is_our_record_route(uri: &str, interfaces: &[Interface]) -> bool {
    !strip_angle(uri).contains('@') && is_local(uri, interfaces, &[])
}

/// §16.4 on a received request: the strict-route fix-up (the Request-URI is a URI we put in a
/// Record-Route: restore the real target from the last Route value), then pop every top Route
/// value that names us (two of them after a double Record-Route).
pub fn preprocess_routes(parts: &mut RequestParts, interfaces: &[Interface], domains: &[String]) {
    if is_our_record_route(&parts.uri, interfaces)
        && let Some(last) = parts.routes.pop()
    {
        parts.uri = strip_angle(&last).to_string();
    }
    while parts
        .routes
        .first()
        .is_some_and(|r| is_local(r, interfaces, domains))
    {
        parts.routes.remove(0);
    }
}

/// The URI a request goes to next (after [`preprocess_routes`]): the top Route value, else the
/// Request-URI (RFC 3261 §16.6 item 7 / §16.12). Resolving it to an address (RFC 3263) is the
/// caller's job.
pub fn next_hop_uri(request: &crate::transaction::TxRequest) -> &str {
    request
        .route_values()
        .next()
        .map_or_else(|| request.uri(), strip_angle)
}

/// §16.6 item 6 on a forwarded copy: if the top Route is a strict router (no `lr`), the
/// Request-URI goes to the end of the Route set and the top Route becomes the Request-URI.
pub fn strict_next_hop(parts: &mut RequestParts) {
    if let Some(top) = parts.routes.first()
        && !uri_has_lr(top)
    {
        let top = parts.routes.remove(0);
        let old = std::mem::replace(&mut parts.uri, strip_angle(&top).to_string());
        parts.routes.push(format!("<{old}>"));
    }
}

/// RFC 3261 §18.2.1 / RFC 3581 §4: add `received` when the sent-by host is not the source
/// address, and fill an empty `rport` with the source port (then `received` is always added).
pub fn stamp_received(via: &str, source: SocketAddr) -> String {
    let sent_by = via_sent_by(via);
    let host = sent_by
        .strip_prefix('[')
        .and_then(|h| h.split_once(']').map(|(h, _)| h))
        .unwrap_or_else(|| sent_by.rsplit_once(':').map_or(sent_by, |(h, _)| h));
    let rport = header_param(via, "rport");
    let rport_empty = rport == Some("");
    let host_matches = host.parse::<IpAddr>().is_ok_and(|ip| ip == source.ip());
    if host_matches && !rport_empty {
        return via.to_string();
    }
    let mut out = String::with_capacity(via.len() + 40);
    for (i, p) in via.split(';').enumerate() {
        let name = p.split('=').next().unwrap_or("").trim();
        if i > 0 && (name.eq_ignore_ascii_case("received") || name.eq_ignore_ascii_case("rport")) {
            continue;
        }
        if i > 0 {
            out.push(';');
        }
        out.push_str(p.trim_end());
    }
    out.push_str(";received=");
    push_ip(&mut out, source.ip());
    if rport.is_some() {
        out.push_str(";rport=");
        push_decimal(&mut out, source.port());
    }
    out
}

/// Where a response goes by its (new) top Via, RFC 3261 §18.2.2 with RFC 3581: to `received`
/// (or the sent-by host when it is an address) and to `rport` (or the sent-by port, or 5060).
/// `None` when the host is a name, which needs DNS (not done here).
pub fn via_destination(via: &str) -> Option<Remote> {
    let proto = via.split_whitespace().next()?;
    let transport = transport_from_token(proto.rsplit('/').next().unwrap_or("UDP"));
    let sent_by = via_sent_by(via);
    let (host, port) = uri_host_port(&format!("sip:{sent_by}"))?;
    let ip: IpAddr = match header_param(via, "received") {
        Some(r) => r.trim_matches(['[', ']']).parse().ok()?,
        None => host.parse().ok()?,
    };
    let port = header_param(via, "rport")
        .and_then(|p| p.parse().ok())
        .or(port)
        .unwrap_or(5060);
    Some(Remote {
        addr: SocketAddr::new(ip, port),
        transport,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn iface() -> Vec<Interface> {
        vec![Interface {
            addr: "192.0.2.1:5060".parse().unwrap(),
            transport: Transport::Udp,
        }]
    }

    #[test]
    fn uri_parts() {
        assert_eq!(
            uri_host_port("<sip:bob@Biloxi.com:5070;transport=tcp>"),
            Some(("biloxi.com".into(), Some(5070)))
        );
        assert_eq!(
            uri_host_port("sip:[2001:db8::1]:5061;lr"),
            Some(("2001:db8::1".into(), Some(5061)))
        );
        assert!(uri_has_lr("<sip:p1.example.com;lr>"));
        assert!(!uri_has_lr("<sip:p1.example.com;transport=udp>"));
        assert!(is_local("<sip:192.0.2.1;lr>", &iface(), &[]));
        assert!(!is_local("<sip:192.0.2.1:5070;lr>", &iface(), &[]));
        assert!(is_local(
            "sip:alice@example.com",
            &iface(),
            &["example.com".into()]
        ));
    }

    #[test]
    fn received_and_rport() {
        let src: SocketAddr = "203.0.113.9:41000".parse().unwrap();
        let v = stamp_received("SIP/2.0/UDP 10.1.1.1:5060;branch=z9hG4bKx;rport", src);
        assert_eq!(
            v,
            "SIP/2.0/UDP 10.1.1.1:5060;branch=z9hG4bKx;received=203.0.113.9;rport=41000"
        );
        let d = via_destination(&v).unwrap();
        assert_eq!(d.addr, src);
        // No rport: received only, reply to the sent-by port.
        let v = stamp_received("SIP/2.0/UDP 10.1.1.1:5070;branch=z9hG4bKx", src);
        assert_eq!(
            via_destination(&v).unwrap().addr,
            "203.0.113.9:5070".parse().unwrap()
        );
        // Sent-by is the source, no rport: unchanged.
        let same = "SIP/2.0/UDP 203.0.113.9:41000;branch=z9hG4bKx";
        assert_eq!(stamp_received(same, src), same);
    }
}
