//! Bytes in: parse one message, answer what never reaches a transaction (keep-alives dropped,
//! the `security:` screen, overload shedding, RFC 3261 §16.3 validation, draining, the
//! per-core transaction cap) statelessly, hand responses of another core's transactions over
//! the mesh, and pass the rest to the proxy core.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::Instant;

use bytes::Bytes;
use siphon_reactor::Cx;
use siphon_sip::proxy::owner_core;
use siphon_sip::transaction::{Remote, Transport, TxRequest, TxResponse};
use siphon_sip::validate::{ValidationConfig, validate_request};
use siphon_sip::{Message, ParseErrorKind};

use super::{Engine, Msg};
use crate::metrics::DropReason;

impl Engine {
    fn interface_index(&self, transport: Transport) -> usize {
        self.shared
            .interfaces
            .iter()
            .position(|i| i.transport == transport)
            .unwrap_or(0)
    }

    /// One complete message from `peer`.
    pub(super) fn handle_bytes(
        &mut self,
        cx: &mut Cx<'_, Msg>,
        transport: Transport,
        peer: SocketAddr,
        data: Bytes,
    ) {
        let msg = match Message::parse(data.clone()) {
            Ok(m) => m,
            Err(e) if e.kind == ParseErrorKind::Empty => return, // keep-alive
            Err(e) => {
                // RFC 4475 §3.1.2: a 400 naming the fault, if it still reads as a request.
                let (status, reason) = siphon_sip::salvage::parse_error_reply(&e);
                let source = Remote {
                    addr: peer,
                    transport,
                };
                self.reply_salvaged(cx, source, &data, status.0, reason);
                return;
            }
        };
        let now = cx.now();
        let source = Remote {
            addr: peer,
            transport,
        };
        if msg.is_response() {
            self.handle_response(cx, source, msg);
            return;
        }
        let method = msg.method_str().unwrap_or("");
        if self.screen(&msg, peer, now) {
            return;
        }
        self.m.request(method);
        if self.shed_early(cx, &msg, source, method) {
            return;
        }
        if let Err(rej) = validate_request(&msg, &ValidationConfig::PROXY) {
            let headers = rej
                .headers
                .iter()
                .map(|(n, v)| (n.as_str().to_string(), v.clone()))
                .collect();
            self.reply_stateless(cx, &msg, source, rej.status.0, rej.reason, headers);
            return;
        }
        let Ok(tx) = TxRequest::try_from(&msg) else {
            self.reply_stateless(cx, &msg, source, 400, "Bad Request", Vec::new());
            return;
        };
        if method == "INVITE"
            && tx.to_tag().is_none()
            && self.shared.draining.load(Ordering::Relaxed)
        {
            self.reply_stateless(cx, &msg, source, 503, "Service Unavailable", Vec::new());
            return;
        }
        if self.over_transaction_cap(method, &tx) {
            let retry = self.shared.limits.retry_after_secs.to_string();
            let headers = vec![("Retry-After".to_owned(), retry)];
            self.reply_stateless(cx, &msg, source, 503, "Service Unavailable", headers);
            return;
        }
        let iface = self.interface_index(transport);
        self.proxy.handle_request(now, source, iface, tx);
        self.drain(cx);
    }

    fn handle_response(&mut self, cx: &mut Cx<'_, Msg>, source: Remote, msg: Message) {
        // The transaction layer's view first: its top Via branch names the owning core, so
        // the Via is not parsed a second time for it (issue 16). A response it cannot use is
        // still handed to the core its (parsed) Via names, which drops it there.
        let usable = TxResponse::try_from(&msg);
        let branch = match &usable {
            Ok(r) => r.branch().and_then(owner_core),
            Err(_) => msg
                .top_via()
                .ok()
                .and_then(|v| v.branch().and_then(owner_core)),
        };
        if let Some(owner) = branch.map(usize::from)
            && owner != self.core
            && owner < cx.cores()
        {
            self.m.mesh_forwards.fetch_add(1, Ordering::Relaxed);
            let fwd = Msg::Inbound {
                transport: source.transport,
                peer: source.addr,
                data: msg.bytes().clone(),
            };
            if cx.forward(owner, fwd).is_err() {
                self.m.dropped(DropReason::QueueFull);
            }
            return;
        }
        match usable {
            Ok(r) => {
                let now = cx.now();
                self.proxy.handle_response(now, source, r);
                self.drain(cx);
            }
            Err(_) => self.m.dropped(DropReason::Malformed),
        }
    }

    /// Answer without a transaction (validation failures, overload).
    pub(super) fn reply_stateless(
        &mut self,
        cx: &mut Cx<'_, Msg>,
        msg: &Message,
        source: Remote,
        status: u16,
        reason: &str,
        headers: Vec<(String, String)>,
    ) {
        if msg.method_str() == Some("ACK") {
            return; // never answer an ACK
        }
        let Ok(tx) = TxRequest::try_from(msg) else {
            self.reply_salvaged(cx, source, msg.as_bytes(), status, reason);
            return;
        };
        if status == 400 {
            self.m.malformed_answered.fetch_add(1, Ordering::Relaxed);
        }
        let resp =
            TxResponse::to_request(&tx, status, reason, Some(&format!("{:x}", self.next_id)));
        let resp = if headers.is_empty() {
            resp
        } else {
            let mut parts = resp.parts();
            parts.headers.extend(headers);
            TxResponse::build(parts)
        };
        self.m.response(status);
        // A 400 answers a request whose Via is not trusted: back to where it came from.
        let dest = if status == 400 {
            source
        } else {
            stateless_destination(tx.top_via().unwrap_or(""), source)
        };
        self.send(cx, dest, resp.bytes().clone());
    }

    /// Answer a request that cannot be used as parsed from what a lenient read of its bytes
    /// recovers (`siphon_sip::salvage`, RFC 4475 §3.1.2). Its Via is not trusted, so the
    /// answer goes back to the packet's source (the address RFC 3261 §18.2.2 `received` with
    /// RFC 3581 `rport` names; over TCP/TLS, the same connection). An ACK is never answered;
    /// bytes that cannot be read as a request are dropped and counted as malformed.
    fn reply_salvaged(
        &mut self,
        cx: &mut Cx<'_, Msg>,
        source: Remote,
        bytes: &[u8],
        status: u16,
        reason: &str,
    ) {
        let salvaged = match siphon_sip::salvage::salvage_request(bytes) {
            Ok(s) if !s.is_ack() => s,
            _ => {
                self.m.dropped(DropReason::Malformed);
                return;
            }
        };
        if status == 400 {
            self.m.malformed_answered.fetch_add(1, Ordering::Relaxed);
        }
        self.m.response(status);
        let tag = format!("{:x}", self.next_id);
        let resp = salvaged.response(siphon_sip::StatusCode(status), reason, Some(&tag));
        self.send(cx, source, Bytes::from(resp));
    }
}

/// Where a stateless answer goes (RFC 3261 §18.2.2 with RFC 3581): back over a stream on the
/// connection it came from; over UDP to the packet's source address (`received`), and to its
/// source port when the top Via asks with `rport`, else to the sent-by port. Never to a host
/// the sender merely wrote into its Via. (A 400 goes to the packet's source address and port.)
fn stateless_destination(top_via: &str, source: Remote) -> Remote {
    if source.transport.is_reliable() {
        return source;
    }
    let stamped = siphon_sip::proxy::stamp_received(top_via, source.addr);
    match siphon_sip::proxy::via_destination(&stamped) {
        Some(r) if r.addr.ip() == source.addr.ip() => Remote {
            addr: r.addr,
            transport: source.transport,
        },
        _ => source,
    }
}

/// Issue 17: the `security:` screen and the transaction cap (logic in security.rs, limits.rs).
impl Engine {
    /// Whether a parsed request must be dropped unanswered: scanner User-Agent, or over the
    /// rate limit (which may ban the source; later datagrams then stop before the parse).
    fn screen(&self, msg: &Message, peer: SocketAddr, now: Instant) -> bool {
        let sec = &self.shared.security;
        if !sec.active() {
            return false;
        }
        let ua = msg.header_str("User-Agent");
        sec.check_request(peer.ip(), ua, now) != crate::security::Verdict::Allow
    }

    /// Whether a request that would create a transaction must get 503 because this core's
    /// table is at `limits.max_transactions_per_core` transactions in progress (finished ones
    /// waiting out Timer J/L/M have their own cap and are ended early there instead). ACK
    /// creates none; CANCEL and retransmissions of live transactions are always let through.
    /// An in-dialog request (To tag) may use up to twice the cap, so that the BYEs of calls
    /// already admitted still end them while new requests are refused; past that it gets 503.
    fn over_transaction_cap(&self, method: &str, tx: &TxRequest) -> bool {
        let layer = self.proxy.transactions();
        let cap = self.shared.limits.max_transactions;
        let used = layer.in_progress().max(self.proxy.contexts());
        if !cap_refuses(method, tx, used, cap) {
            return false;
        }
        if layer.find_server(tx).is_some() {
            return false;
        }
        self.shared
            .limits
            .counters
            .transactions_refused
            .fetch_add(1, Ordering::Relaxed);
        true
    }
}

/// The transaction cap by the numbers, before [`Engine::over_transaction_cap`] lets the
/// retransmissions of live transactions through: with `used` transactions in progress against
/// `cap`, ACK and CANCEL always pass, an in-dialog request (To tag) until twice the cap, any
/// other request until the cap.
fn cap_refuses(method: &str, tx: &TxRequest, used: usize, cap: usize) -> bool {
    if method == "ACK" || method == "CANCEL" || used < cap {
        return false;
    }
    !(used < cap.saturating_mul(2) && tx.to_tag().is_some())
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use siphon_sip::Message;
    use siphon_sip::transaction::{Remote, Transport, TxRequest};

    use super::{cap_refuses, stateless_destination};

    fn remote(addr: &str, transport: Transport) -> Remote {
        Remote {
            addr: addr.parse::<SocketAddr>().expect("test address"),
            transport,
        }
    }

    fn request(method: &str, to: &str) -> TxRequest {
        let text = format!(
            "{method} sip:bob@192.0.2.1 SIP/2.0\r\n\
             Via: SIP/2.0/UDP 192.0.2.7:5060;branch=z9hG4bK1\r\n\
             Max-Forwards: 70\r\n\
             From: <sip:alice@192.0.2.7>;tag=a1\r\n\
             To: {to}\r\n\
             Call-ID: cap-1@192.0.2.7\r\n\
             CSeq: 1 {method}\r\n\
             Content-Length: 0\r\n\r\n"
        );
        let msg = Message::parse(text.into_bytes()).expect("test request parses");
        TxRequest::try_from(&msg).expect("test request is usable")
    }

    #[test]
    fn stateless_answer_over_a_stream_goes_back_on_its_connection() {
        let source = remote("192.0.2.7:40000", Transport::Tcp);
        let via = "SIP/2.0/TCP 198.51.100.9:5070;rport;branch=z9hG4bK1";
        assert_eq!(stateless_destination(via, source), source);
        let tls = remote("192.0.2.7:40001", Transport::Tls);
        assert_eq!(stateless_destination(via, tls), tls);
    }

    #[test]
    fn stateless_answer_over_udp_follows_rport_to_the_source_port() {
        let source = remote("192.0.2.7:40000", Transport::Udp);
        let via = "SIP/2.0/UDP 192.0.2.7:5060;rport;branch=z9hG4bK1";
        assert_eq!(stateless_destination(via, source), source);
    }

    #[test]
    fn stateless_answer_over_udp_without_rport_goes_to_the_sent_by_port() {
        let source = remote("192.0.2.7:40000", Transport::Udp);
        let via = "SIP/2.0/UDP 192.0.2.7:5062;branch=z9hG4bK1";
        assert_eq!(
            stateless_destination(via, source),
            remote("192.0.2.7:5062", Transport::Udp)
        );
    }

    #[test]
    fn stateless_answer_never_goes_to_a_host_the_via_merely_names() {
        // RFC 3261 §18.2.2: `received` (the packet's source address) wins over the sent-by
        // host; the port is still the sent-by port (no rport).
        let source = remote("192.0.2.7:40000", Transport::Udp);
        let via = "SIP/2.0/UDP 198.51.100.9:5070;branch=z9hG4bK1";
        assert_eq!(
            stateless_destination(via, source),
            remote("192.0.2.7:5070", Transport::Udp)
        );
        // A name in the Via: the source address, the default port.
        let named = "SIP/2.0/UDP pc33.example.com;branch=z9hG4bK1";
        assert_eq!(
            stateless_destination(named, source),
            remote("192.0.2.7:5060", Transport::Udp)
        );
        // With rport: the source address and port.
        let both = "SIP/2.0/UDP 198.51.100.9:5070;rport;branch=z9hG4bK1";
        assert_eq!(stateless_destination(both, source), source);
    }

    #[test]
    fn transaction_cap_refuses_new_requests_at_the_cap() {
        let invite = request("INVITE", "<sip:bob@192.0.2.1>");
        assert!(!cap_refuses("INVITE", &invite, 9, 10));
        assert!(cap_refuses("INVITE", &invite, 10, 10));
        assert!(cap_refuses("INVITE", &invite, 25, 10));
        let options = request("OPTIONS", "<sip:bob@192.0.2.1>");
        assert!(cap_refuses("OPTIONS", &options, 10, 10));
    }

    #[test]
    fn transaction_cap_always_lets_ack_and_cancel_through() {
        let ack = request("ACK", "<sip:bob@192.0.2.1>");
        let cancel = request("CANCEL", "<sip:bob@192.0.2.1>");
        for used in [10, 20, 1000] {
            assert!(!cap_refuses("ACK", &ack, used, 10));
            assert!(!cap_refuses("CANCEL", &cancel, used, 10));
        }
    }

    #[test]
    fn transaction_cap_admits_in_dialog_requests_up_to_twice_the_cap() {
        let bye = request("BYE", "<sip:bob@192.0.2.1>;tag=b1");
        assert!(!cap_refuses("BYE", &bye, 10, 10));
        assert!(!cap_refuses("BYE", &bye, 19, 10));
        assert!(cap_refuses("BYE", &bye, 20, 10));
        // A cap of zero refuses everything but ACK and CANCEL.
        assert!(cap_refuses("BYE", &bye, 0, 0));
    }
}
