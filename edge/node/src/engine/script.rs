//! The bridge to the script worker: proxy-core events become script events (requests,
//! held replies, failures), and the actions that come back become routing decisions (answer,
//! relay, fork, re-target, relay or drop a reply), with the script's edits of the request or
//! reply applied first.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bytes::Bytes;
use siphon_reactor::Cx;
use siphon_script::{Disposition, Event, EventKind, ForkStrategy, Meta, SipMessage};
use siphon_sip::Message;
use siphon_sip::proxy::{Answer, ContextId, Hooks, ProxyError, ProxyEvent, ReplyId};
use siphon_sip::transaction::{Remote, TxRequest, TxResponse};

use super::{CtxInfo, Dest, Engine, Msg, Parked, Pending, ScriptFlags, Spec, transport_name};
use crate::metrics::DropReason;

impl Engine {
    pub(super) fn proxy_event(&mut self, cx: &mut Cx<'_, Msg>, ev: ProxyEvent) {
        match ev {
            ProxyEvent::Request {
                ctx,
                request,
                source,
            } => self.submit_to_script(cx, ctx, &request, source),
            ProxyEvent::Stateless {
                request, routed, ..
            } => {
                // ACK for a 2xx of a dialog we record-routed: it names us in its Route (popped
                // by the proxy core); the next hop is the remaining Route or the R-URI. Any
                // other ACK with no transaction is dropped and counted: relaying it would make
                // the node an open relay and reflector (and a loop when it names us again).
                let next = siphon_sip::proxy::next_hop_uri(&request).to_string();
                // Our own address and port (domain names of ours may also name a
                // registered user's contact host, e.g. 127.0.0.1 in the loopback example).
                let back_to_us = siphon_sip::proxy::is_local(&next, &self.shared.interfaces, &[]);
                if !routed || back_to_us {
                    self.m.dropped(DropReason::UnroutedAck);
                    return;
                }
                match self.locate_now(&next) {
                    Dest::Ready(Ok(v)) if !v.is_empty() => {
                        self.proxy.forward_stateless(&request, None, v[0]);
                    }
                    Dest::Ready(_) => self.m.dropped(DropReason::UnresolvedAck),
                    Dest::Lookup(req) => {
                        if !self.park(vec![req], Parked::Ack { request }) {
                            self.m.dropped(DropReason::UnresolvedAck);
                        }
                    }
                }
            }
            ProxyEvent::Reply {
                ctx,
                reply,
                response,
            } => {
                self.submit_response(cx.now(), ctx, Some(reply), &response);
            }
            ProxyEvent::Failure { ctx, response } => {
                self.submit_response(cx.now(), ctx, None, &response);
            }
            ProxyEvent::Completed { ctx, .. } => {
                self.ctx_info.remove(&ctx);
            }
            ProxyEvent::UacResponse { key, response } => {
                if let Some((worker, token)) = self.outbound.remove(&key) {
                    let reply = response.and_then(|r| script_view(r.message(), r.bytes()));
                    self.shared.host.complete_outbound(worker, token, reply);
                }
            }
            _ => {}
        }
    }

    fn submit_to_script(
        &mut self,
        cx: &mut Cx<'_, Msg>,
        ctx: ContextId,
        request: &TxRequest,
        source: Remote,
    ) {
        let now = cx.now();
        let Some(msg) = script_view(request.message(), request.bytes()) else {
            let _ = self.proxy.respond(now, ctx, 400, "Bad Request");
            return;
        };
        let meta = Meta {
            transport: transport_name(source.transport),
            source: source.addr,
        };
        let request = Arc::new(msg);
        let register = request.method() == "REGISTER";
        let invite = request.method() == "INVITE";
        let id = self.next_event_id();
        let ev = Event {
            id,
            core: self.core,
            kind: EventKind::Request,
            request: Arc::clone(&request),
            reply: None,
            meta,
            request_id: None,
        };
        if self.shared.host.submit(ev).is_err() {
            self.m.dropped(DropReason::QueueFull);
            self.answer_busy(now, ctx);
            return;
        }
        self.m.transactions.fetch_add(1, Ordering::Relaxed);
        self.track_event(id, now, invite);
        self.pending.insert(
            id,
            Pending::Request {
                ctx,
                info: CtxInfo {
                    request,
                    request_id: id,
                    register,
                    meta,
                },
            },
        );
    }

    /// Offer a branch reply (`on_reply`, per-relay callbacks, `on_register_reply`) or the
    /// best failure (`on_failure`) to the script; without a context to show, relay at once.
    fn submit_response(
        &mut self,
        now: Instant,
        ctx: ContextId,
        held: Option<ReplyId>,
        response: &TxResponse,
    ) {
        let parsed = script_view(response.message(), response.bytes());
        let Some((info, reply)) = self.ctx_info.get(&ctx).cloned().zip(parsed) else {
            self.release(now, ctx, held);
            return;
        };
        let kind = match held {
            None => EventKind::Failure,
            Some(_) if info.register => EventKind::RegisterReply,
            Some(_) => EventKind::Reply,
        };
        let id = self.next_event_id();
        let ev = Event {
            id,
            core: self.core,
            kind,
            request: Arc::clone(&info.request),
            reply: Some(Arc::new(reply)),
            meta: info.meta,
            request_id: Some(info.request_id),
        };
        if self.shared.host.submit(ev).is_err() {
            self.m.dropped(DropReason::QueueFull);
            self.release(now, ctx, held);
            return;
        }
        let p = match held {
            Some(reply) => Pending::Reply { ctx, reply },
            None => Pending::Failure { ctx },
        };
        self.pending.insert(id, p);
        self.track_event(id, now, false);
    }

    /// Let the proxy core do what it would have done without the hook.
    fn release(&mut self, now: Instant, ctx: ContextId, held: Option<ReplyId>) {
        let _ = match held {
            Some(r) => self.proxy.relay_reply(now, r),
            None => self.proxy.relay_failure(now, ctx),
        };
    }

    /// Re-read which hooks the loaded script has (after reloads), at most once a second.
    fn refresh_flags(&mut self, now: Instant) {
        if self
            .flags_checked
            .is_some_and(|t| now.duration_since(t) < Duration::from_secs(1))
        {
            return;
        }
        self.flags_checked = Some(now);
        let h = &self.shared.host;
        let has = |kind: &str| {
            h.metric_value("siphon_script_handlers_by_kind", &[kind])
                .is_some_and(|n| n > 0.0)
        };
        self.flags = ScriptFlags {
            on_reply: has("proxy.on_reply"),
            on_failure: has("proxy.on_failure"),
            on_register_reply: has("proxy.on_register_reply"),
        };
    }

    /// Targets of a `relay`/`fork` decision, resolved where that needs no waiting (flows, IP
    /// literals, cache hits). A fork branch to a registered Contact carries the binding's Path
    /// as its Route set and goes over the binding's flow, else to the top Path value, else to
    /// its URI. `None`: a relay with no next hop at all.
    fn targets(&self, ctx: ContextId, d: &Disposition) -> Option<Vec<Spec>> {
        match d {
            Disposition::Relay { next_hop, flow, .. } => {
                let dest = match self.live_flow(*flow) {
                    Some(f) => Dest::Ready(Ok(vec![f])),
                    None => {
                        let target = next_hop.clone().or_else(|| self.proxy.next_hop(ctx))?;
                        self.locate_now(&target)
                    }
                };
                Some(vec![Spec {
                    uri: None,
                    q: 1000,
                    routes: Vec::new(),
                    dest,
                }])
            }
            Disposition::Fork { targets, strategy } => {
                let n = targets.len();
                let ts: Vec<Spec> = targets
                    .iter()
                    .enumerate()
                    .map(|(i, t)| {
                        let dest = match self.live_flow(t.flow) {
                            Some(f) => Dest::Ready(Ok(vec![f])),
                            None => self.locate_now(
                                t.routes.first().map_or(t.uri.as_str(), String::as_str),
                            ),
                        };
                        let q = match strategy {
                            ForkStrategy::Parallel => 1000,
                            _ => u16::try_from(1000 - (i * 1000 / n.max(1))).unwrap_or(0),
                        };
                        Spec {
                            uri: Some(siphon_sip::proxy::strip_angle(&t.uri).to_string()),
                            q,
                            routes: t.routes.clone(),
                            dest,
                        }
                    })
                    .collect();
                Some(ts)
            }
            _ => None,
        }
    }

    /// A routing decision (for a new request, or a re-target from `on_failure`).
    fn route(
        &mut self,
        now: Instant,
        ctx: ContextId,
        d: Disposition,
        record_route: bool,
    ) -> Result<(), ProxyError> {
        match d {
            Disposition::Reply {
                status,
                reason,
                headers,
                body,
                reliable,
                to_tag,
                ..
            } => self.proxy.answer(
                now,
                ctx,
                Answer {
                    status,
                    reason,
                    headers,
                    body,
                    to_tag,
                    reliable,
                },
            ),
            Disposition::Relay { .. } | Disposition::Fork { .. } => {
                let fork = matches!(d, Disposition::Fork { .. });
                match self.targets(ctx, &d) {
                    Some(specs) if specs.iter().any(|s| matches!(s.dest, Dest::Lookup(_))) => {
                        // A name to resolve: the context waits in the proxy core, the decision
                        // here, until the resolver thread answers (Msg::Resolved).
                        let lookups = specs
                            .iter()
                            .filter_map(|s| match &s.dest {
                                Dest::Lookup(r) => Some(r.clone()),
                                Dest::Ready(_) => None,
                            })
                            .collect();
                        let parked = Parked::Route {
                            ctx,
                            specs,
                            fork,
                            record_route,
                        };
                        if self.park(lookups, parked) {
                            Ok(())
                        } else {
                            self.proxy.respond(now, ctx, 503, "Service Unavailable")
                        }
                    }
                    Some(specs) if !specs.is_empty() => {
                        self.forward_specs(now, ctx, specs, fork, record_route)
                    }
                    _ if fork => self.proxy.respond(now, ctx, 480, "Temporarily Unavailable"),
                    _ => self.proxy.respond(now, ctx, 503, "Service Unavailable"),
                }
            }
            _ => {
                self.m.dropped(DropReason::NoAction);
                self.proxy.abandon(ctx);
                Ok(())
            }
        }
    }

    /// Carry out the script's decisions for this core.
    pub(super) fn apply_actions(&mut self, cx: &mut Cx<'_, Msg>) {
        let now = cx.now();
        let mut any = false;
        let mut after = Vec::new();
        while let Some(mut a) = self.shared.host.poll(self.core) {
            any = true;
            after.append(&mut a.outbound);
            self.m.script_executions.fetch_add(1, Ordering::Relaxed);
            if a.script_error {
                self.m.script_errors.fetch_add(1, Ordering::Relaxed);
            }
            let Some(p) = self.pending.remove(&a.id) else {
                continue;
            };
            let result = match p {
                Pending::Request { ctx, info } => {
                    if let Some(edited) = &a.request
                        && self.set_edited_request(ctx, edited).is_err()
                    {
                        // The script's edit does not make a request we can forward: answer
                        // rather than forward something the script did not ask for.
                        if self.proxy.respond(now, ctx, 500, "Script Error").is_err() {
                            self.m.dropped(DropReason::Stray);
                        }
                        continue;
                    }
                    let (per_reply, per_failure) = match &a.disposition {
                        Disposition::Relay {
                            has_on_reply,
                            has_on_failure,
                            ..
                        } => (*has_on_reply, *has_on_failure),
                        _ => (false, false),
                    };
                    let forwarding = matches!(
                        a.disposition,
                        Disposition::Relay { .. } | Disposition::Fork { .. }
                    );
                    if forwarding {
                        self.refresh_flags(now);
                        let f = self.flags;
                        let hooks = Hooks {
                            replies: f.on_reply
                                || per_reply
                                || (info.register && f.on_register_reply),
                            failures: f.on_failure || per_failure,
                        };
                        if hooks != Hooks::default() {
                            let _ = self.proxy.set_hooks(ctx, hooks);
                            self.ctx_info.insert(ctx, info);
                        }
                    }
                    self.route(now, ctx, a.disposition, a.record_route)
                }
                Pending::Reply { ctx, reply } => match a.disposition {
                    Disposition::ForwardReply => match a.reply.as_deref().map(edited_response) {
                        Some(Ok(edited)) => self
                            .proxy
                            .relay_reply_with(now, reply, edited)
                            .or_else(|e| {
                                tracing::warn!(core = self.core, "reply edit not applied: {e}");
                                self.proxy.relay_reply(now, reply)
                            }),
                        Some(Err(e)) => {
                            tracing::warn!(core = self.core, "reply edit not applied: {e}");
                            self.proxy.relay_reply(now, reply)
                        }
                        None => self.proxy.relay_reply(now, reply),
                    },
                    Disposition::RejectReply { status, reason } => {
                        let _ = self.proxy.drop_reply(now, reply);
                        self.proxy.respond(now, ctx, status, &reason)
                    }
                    // upstream: a reply is dropped unless the handler relays it.
                    _ => self.proxy.drop_reply(now, reply),
                },
                Pending::Failure { ctx } => match a.disposition {
                    d @ (Disposition::Relay { .. }
                    | Disposition::Fork { .. }
                    | Disposition::Reply { .. }) => self.route(now, ctx, d, a.record_route),
                    // Upstream suppresses the error response when on_failure does not relay,
                    // leaving the caller to time out; we send the best response instead.
                    _ => self.proxy.relay_failure(now, ctx),
                },
            };
            if result.is_err() {
                self.m.dropped(DropReason::Stray);
            }
        }
        if !after.is_empty() {
            // After this batch's answers, so a SUBSCRIBE's 2xx leaves before its NOTIFY.
            self.send_outbound(cx, after);
        }
        if any {
            self.drain(cx);
        }
    }
}

/// Why a script's edit of a message could not be used.
#[derive(Debug, thiserror::Error)]
enum EditError {
    /// An edit cannot be written (a CR/LF in a value, a Request-URI that does not parse).
    #[error("the edit cannot be written: {0}")]
    Write(#[from] siphon_sip::EditError),
    /// It parses but lacks what the transaction layer needs (Via, CSeq, Call-ID ...).
    #[error("the edited message is not usable: {0}")]
    Unusable(#[from] siphon_sip::transaction::FromMessageError),
    /// The proxy core refused it.
    #[error(transparent)]
    Proxy(#[from] ProxyError),
}

/// The script's view of a message the proxy core holds: the core's own parsed message (shared
/// bytes and header index, no second parse), or a parse of the bytes of one the core built.
fn script_view(view: Option<&Message>, bytes: &Bytes) -> Option<SipMessage> {
    match view {
        Some(m) => SipMessage::from_message(m.clone()).ok(),
        None => SipMessage::parse(bytes).ok(),
    }
}

/// A script's edited response as the transaction layer's response: the received bytes plus
/// the script's edits, written once by the core's `Editor` (indexed while written).
fn edited_response(edited: &SipMessage) -> Result<TxResponse, EditError> {
    let m = edited.to_message()?;
    Ok(TxResponse::try_from(&m)?)
}

impl Engine {
    /// Hand the script's edited request to the proxy core, which re-applies its own processing
    /// (received/rport, Route pop) to it; an edit that does not make a request is logged.
    fn set_edited_request(&mut self, ctx: ContextId, edited: &SipMessage) -> Result<(), EditError> {
        let result = edited
            .to_message()
            .map_err(EditError::from)
            .and_then(|m| Ok(TxRequest::try_from(&m)?))
            .and_then(|tx| Ok(self.proxy.set_request(ctx, tx)?));
        if let Err(e) = &result {
            tracing::warn!(core = self.core, "script edit of the request rejected: {e}");
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use siphon_script::SipMessage;
    use siphon_sip::proxy::ProxyError;

    use super::{EditError, edited_response, script_view};

    const OK: &str = "SIP/2.0 200 OK\r\n\
         Via: SIP/2.0/UDP 192.0.2.7:5060;branch=z9hG4bK1\r\n\
         From: <sip:alice@192.0.2.7>;tag=a1\r\n\
         To: <sip:bob@192.0.2.1>;tag=b1\r\n\
         Call-ID: edit-1@192.0.2.7\r\n\
         CSeq: 1 INVITE\r\n\
         Content-Length: 0\r\n\r\n";

    #[test]
    fn an_edited_reply_keeps_its_status_and_carries_the_edit() {
        let mut reply = SipMessage::parse(OK.as_bytes()).expect("test reply parses");
        reply.add_header("X-Edited", "yes");
        let tx = edited_response(&reply).expect("the edit is usable");
        assert_eq!(tx.status(), 200);
        assert!(
            String::from_utf8_lossy(tx.bytes()).contains("X-Edited: yes\r\n"),
            "the edit is on the wire"
        );
    }

    #[test]
    fn an_edit_that_cannot_be_written_is_a_write_error() {
        let mut reply = SipMessage::parse(OK.as_bytes()).expect("test reply parses");
        reply.set_header("To", "<sip:bob@192.0.2.1>;tag=b1\r\nX-Injected: 1");
        let err = edited_response(&reply).expect_err("a CR/LF in a value is refused");
        assert!(matches!(err, EditError::Write(_)), "{err:?}");
        assert!(err.to_string().starts_with("the edit cannot be written: "));
    }

    #[test]
    fn an_edit_without_what_the_transaction_layer_needs_is_unusable() {
        let mut reply = SipMessage::parse(OK.as_bytes()).expect("test reply parses");
        assert!(reply.remove_header("CSeq"));
        let err = edited_response(&reply).expect_err("no CSeq");
        assert!(matches!(err, EditError::Unusable(_)), "{err:?}");
        assert!(
            err.to_string()
                .starts_with("the edited message is not usable: ")
        );
        // A request is not a reply.
        let request = SipMessage::parse(
            b"OPTIONS sip:bob@192.0.2.1 SIP/2.0\r\n\
              Via: SIP/2.0/UDP 192.0.2.7:5060;branch=z9hG4bK2\r\n\
              From: <sip:alice@192.0.2.7>;tag=a1\r\n\
              To: <sip:bob@192.0.2.1>\r\n\
              Call-ID: edit-2@192.0.2.7\r\n\
              CSeq: 1 OPTIONS\r\n\
              Content-Length: 0\r\n\r\n",
        )
        .expect("test request parses");
        let err = edited_response(&request).expect_err("not a response");
        assert!(matches!(err, EditError::Unusable(_)), "{err:?}");
    }

    #[test]
    fn a_proxy_refusal_keeps_the_proxy_error_text() {
        let err = EditError::from(ProxyError::UnknownContext);
        assert!(matches!(err, EditError::Proxy(ProxyError::UnknownContext)));
        assert_eq!(err.to_string(), ProxyError::UnknownContext.to_string());
    }

    #[test]
    fn the_script_view_of_built_bytes_is_a_parse_of_them() {
        let bytes = Bytes::from_static(OK.as_bytes());
        let view = script_view(None, &bytes).expect("a reply parses");
        assert_eq!(view.status(), 200);
        assert!(script_view(None, &Bytes::from_static(b"\x00\x01 not sip")).is_none());
    }
}
