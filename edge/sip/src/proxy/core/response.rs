//! RFC 3261 §16.7 response processing: branch responses (provisionals forwarded, 2xx at once,
//! the best final when no branch is pending), responses the TU builds itself, replies and
//! failures held for the TU, the upstream send, forgetting a finished context, stray 2xx
//! retransmissions, and RFC 3262 reliable provisionals (RSeq, PRACK).

use std::cmp::Reverse;
use std::time::Instant;

use super::{
    Answer, BranchState, ClientBranch, ContextId, Held, Proxy, ProxyError, ProxyEvent, Reliable,
    ReplyId,
};
use crate::proxy::branch::owner_core;
use crate::proxy::route::via_destination;
use crate::proxy::select::{best_branch_response, upstream_form};
use crate::transaction::{Outgoing, State, TransactionKey, Transmit, TxRequest, TxResponse};

impl Proxy {
    /// The TU answers the context itself (e.g. 404, 403, or a redirect).
    pub fn respond(
        &mut self,
        now: Instant,
        ctx: ContextId,
        status: u16,
        reason: &str,
    ) -> Result<(), ProxyError> {
        self.respond_with(now, ctx, status, reason, Vec::new(), None)
    }

    /// [`Self::respond`] with extra header fields (challenges, Contact lists of a registrar
    /// 200, Min-Expires, Unsupported) and an optional body given as (content type, bytes).
    pub fn respond_with(
        &mut self,
        now: Instant,
        ctx: ContextId,
        status: u16,
        reason: &str,
        headers: Vec<(String, String)>,
        body: Option<(String, Vec<u8>)>,
    ) -> Result<(), ProxyError> {
        self.answer(
            now,
            ctx,
            Answer {
                status,
                reason: reason.to_owned(),
                headers,
                body,
                ..Answer::default()
            },
        )
    }

    /// The TU answers the context with a response it shaped: extra headers and body, its own
    /// To tag, and RFC 3262 reliability for a 101-199 (`Require: 100rel` and `RSeq` when the
    /// request supports 100rel; retransmitted from T1, doubling, until the PRACK, which the
    /// proxy answers itself; after 64*T1 without one the request gets a 500).
    pub fn answer(
        &mut self,
        now: Instant,
        ctx: ContextId,
        answer: Answer,
    ) -> Result<(), ProxyError> {
        let local = self.local_tag();
        let t1 = self.config.transactions.timers.t1;
        let c = self.contexts.get(&ctx).ok_or(ProxyError::UnknownContext)?;
        if c.final_sent {
            return Err(ProxyError::AlreadyAnswered);
        }
        let Answer {
            status,
            reason,
            mut headers,
            body,
            to_tag,
            reliable,
        } = answer;
        let tag = to_tag.unwrap_or(local);
        let mut response = TxResponse::to_request(&c.request, status, &reason, Some(&tag));
        // §3: only a 101-199 to a request whose UAC supports 100rel, one at a time.
        let rseq = (reliable
            && (101..200).contains(&status)
            && c.reliable.is_none()
            && supports_100rel(&c.request))
        .then(|| c.rseq.wrapping_add(1).max(1));
        if let Some(rseq) = rseq {
            headers.push(("Require".into(), "100rel".into()));
            headers.push(("RSeq".into(), rseq.to_string()));
        }
        if !headers.is_empty() || body.is_some() {
            let mut parts = response.parts();
            parts.headers.extend(headers);
            if let Some((content_type, bytes)) = body {
                parts.headers.push(("Content-Type".into(), content_type));
                parts.body = bytes;
            }
            response = TxResponse::build(parts);
        }
        let call_id: Box<str> = c.request.call_id().into();
        self.send_upstream(now, ctx, response.clone())?;
        if let Some(rseq) = rseq
            && let Some(c) = self.contexts.get_mut(&ctx)
        {
            c.rseq = rseq;
            c.reliable = Some(Reliable {
                rseq,
                response,
                next: now + t1,
                interval: t1,
                deadline: now + t1 * 64,
            });
            self.prack.insert((call_id, rseq), ctx);
            self.prack_timers.push(Reverse((now + t1, ctx)));
        }
        if status >= 200 {
            // The TU ended the context: stop the branches (§16.7 step 10).
            self.cancel_pending(now, ctx);
            self.maybe_remove(ctx);
        }
        self.drain_transactions(now, 0);
        Ok(())
    }

    /// RFC 3262 §3: a reliable provisional's retransmission time came (`at`): send it again
    /// with a doubled interval, or give up after 64*T1 and reject the request with a 500.
    pub(super) fn on_prack_timer(&mut self, now: Instant, ctx: ContextId, at: Instant) {
        let tag = self.local_tag();
        let Some(c) = self.contexts.get_mut(&ctx) else {
            return;
        };
        let Some(r) = c.reliable.as_mut().filter(|r| r.next == at) else {
            return;
        };
        if c.final_sent {
            c.reliable = None;
            return;
        }
        if now >= r.deadline {
            let rseq = r.rseq;
            c.reliable = None;
            let key: (Box<str>, u32) = (c.request.call_id().into(), rseq);
            let response =
                TxResponse::to_request(&c.request, 500, "Server Internal Error", Some(&tag));
            self.prack.remove(&key);
            let _ = self.send_upstream(now, ctx, response);
            self.maybe_remove(ctx);
            return;
        }
        r.interval *= 2;
        r.next = now + r.interval;
        let (next, response) = (r.next, r.response.clone());
        self.prack_timers.push(Reverse((next, ctx)));
        let _ = self.send_upstream(now, ctx, response);
    }

    /// A PRACK for one of our reliable provisionals (RFC 3262 §7.2: `RAck: rseq cseq method`):
    /// stop its retransmission and answer the PRACK with a 200. `false` when it is not ours
    /// (it is then proxied like any request).
    pub(super) fn on_prack(
        &mut self,
        now: Instant,
        key: TransactionKey,
        prack: &TxRequest,
    ) -> bool {
        let Some((rseq, cseq)) = prack.header_values("RAck").next().and_then(parse_rack) else {
            return false;
        };
        let id: (Box<str>, u32) = (prack.call_id().into(), rseq);
        let Some(&ctx) = self.prack.get(&id) else {
            return false;
        };
        let Some(c) = self.contexts.get_mut(&ctx) else {
            self.prack.remove(&id);
            return false;
        };
        if c.request.cseq() != cseq {
            return false;
        }
        self.prack.remove(&id);
        c.reliable = None;
        let _ = self
            .txns
            .send_response(now, key, TxResponse::to_request(prack, 200, "OK", None));
        true
    }

    /// Send the best response offered by [`ProxyEvent::Failure`].
    pub fn relay_failure(&mut self, now: Instant, ctx: ContextId) -> Result<(), ProxyError> {
        let c = self
            .contexts
            .get_mut(&ctx)
            .ok_or(ProxyError::UnknownContext)?;
        let best = c.failure.take().ok_or(ProxyError::NothingHeld)?;
        self.send_upstream(now, ctx, upstream_form(best))?;
        self.maybe_remove(ctx);
        self.drain_transactions(now, 0);
        Ok(())
    }

    /// Let a held reply continue: provisionals and 2xx go upstream, other finals join the
    /// response selection.
    pub fn relay_reply(&mut self, now: Instant, reply: ReplyId) -> Result<(), ProxyError> {
        let h = self.held.remove(&reply).ok_or(ProxyError::NothingHeld)?;
        let status = h.response.status();
        if status < 200 {
            if self
                .contexts
                .get(&h.ctx)
                .is_some_and(|c| !c.final_sent && !c.cancelled)
            {
                let _ = self.send_upstream(now, h.ctx, h.response);
            }
        } else {
            if let Some(c) = self.contexts.get_mut(&h.ctx) {
                c.held = c.held.saturating_sub(1);
            }
            self.apply_final(now, h.ctx, h.response);
        }
        self.drain_transactions(now, 0);
        Ok(())
    }

    /// [`Self::relay_reply`] with the TU's edit of the held response (a script's header
    /// changes in `on_reply`) sent in its place. An edit that changed the status code is
    /// refused ([`ProxyError::EditedStatus`]) and the reply stays held.
    pub fn relay_reply_with(
        &mut self,
        now: Instant,
        reply: ReplyId,
        response: TxResponse,
    ) -> Result<(), ProxyError> {
        let h = self.held.get_mut(&reply).ok_or(ProxyError::NothingHeld)?;
        if h.response.status() != response.status() {
            return Err(ProxyError::EditedStatus);
        }
        h.response = response;
        self.relay_reply(now, reply)
    }

    /// Discard a held reply: it is not forwarded and takes no part in response selection.
    pub fn drop_reply(&mut self, now: Instant, reply: ReplyId) -> Result<(), ProxyError> {
        let h = self.held.remove(&reply).ok_or(ProxyError::NothingHeld)?;
        if h.response.status() >= 200 {
            if let Some(c) = self.contexts.get_mut(&h.ctx) {
                c.held = c.held.saturating_sub(1);
            }
            self.check_complete(now, h.ctx);
        }
        self.drain_transactions(now, 0);
        Ok(())
    }

    fn hold(&mut self, ctx: ContextId, response: TxResponse) {
        self.counter += 1;
        let reply = ReplyId(self.counter);
        if response.status() >= 200
            && let Some(c) = self.contexts.get_mut(&ctx)
        {
            c.held += 1;
        }
        self.events.push_back(ProxyEvent::Reply {
            ctx,
            reply,
            response: response.clone(),
        });
        self.held.insert(reply, Held { ctx, response });
    }

    pub(super) fn on_branch_response(
        &mut self,
        now: Instant,
        key: TransactionKey,
        response: TxResponse,
    ) {
        let Some(&(ctx, idx)) = self.branch_of.get(&key) else {
            // A 2xx retransmission passed up by an Accepted branch whose context is gone
            // (RFC 6026 §8.4: forwarded upstream); anything else is a CANCEL's own response.
            if (200..300).contains(&response.status()) && response.cseq_method() == "INVITE" {
                self.forward_stray(&response);
            }
            return;
        };
        let status = response.status();
        let upstream = response.without_top_via();
        if status < 200 {
            let Some(c) = self.contexts.get_mut(&ctx) else {
                return;
            };
            let Some(b) = c.branches.get_mut(idx) else {
                return;
            };
            if b.state == BranchState::Trying {
                b.state = BranchState::Proceeding;
                if b.cancel_when_provisional {
                    let cancel = b.request.cancel();
                    let dest = b.destination;
                    b.state = BranchState::Cancelling;
                    let _ = self.txns.send_request(now, dest, cancel);
                }
            }
            // §16.7 step 2: a 101-199 resets Timer C.
            if status > 100 && b.timer_c.is_some() {
                let at = now + self.config.transactions.timers.timer_c;
                b.timer_c = Some(at);
                self.timer_c.push(Reverse((at, key)));
            }
            // §16.7 step 5: 101-199 forwarded, 100 not.
            if status > 100 && !c.final_sent && !c.cancelled {
                if c.hooks.replies {
                    self.hold(ctx, upstream);
                } else {
                    let _ = self.send_upstream(now, ctx, upstream);
                }
            }
            return;
        }
        // RFC 3263 §4.3: a 503 from one address of the next hop sends the request to the next.
        if status == 503 && self.fail_over(now, ctx, idx, key) {
            return;
        }
        self.on_branch_final(now, ctx, idx, Some(upstream), status, "");
    }

    pub(super) fn on_branch_final(
        &mut self,
        now: Instant,
        ctx: ContextId,
        idx: usize,
        response: Option<TxResponse>,
        status: u16,
        reason: &str,
    ) {
        let tag = self.local_tag();
        let Some(c) = self.contexts.get_mut(&ctx) else {
            return;
        };
        let ok = (200..300).contains(&status);
        if let Some(b) = c.branches.get_mut(idx) {
            if b.state == BranchState::Done && !ok {
                return; // already has a final (Timer C); a late 487 changes nothing
            }
            b.state = BranchState::Done;
            b.timer_c = None;
        }
        let received = response.is_some();
        let response = response
            .unwrap_or_else(|| TxResponse::to_request(&c.request, status, reason, Some(&tag)));
        if received && c.hooks.replies {
            self.hold(ctx, response);
            return;
        }
        self.apply_final(now, ctx, response);
    }

    /// A branch's final response takes effect (§16.7 steps 4-5, 10).
    fn apply_final(&mut self, now: Instant, ctx: ContextId, response: TxResponse) {
        let status = response.status();
        let Some(c) = self.contexts.get_mut(&ctx) else {
            return;
        };
        if (200..300).contains(&status) {
            // §16.7 step 5: every 2xx goes upstream at once.
            let _ = self.send_upstream(now, ctx, response);
            if self.contexts.get(&ctx).is_some_and(|c| c.invite) {
                self.cancel_pending(now, ctx);
            }
            self.maybe_remove(ctx);
            return;
        }
        if status >= 600 {
            c.got_6xx = true;
            c.finals.push(response);
            self.cancel_pending(now, ctx);
        } else {
            c.finals.push(response);
        }
        self.check_complete(now, ctx);
    }

    /// When no branch is pending: next sequential group, or the best response upstream.
    pub(super) fn check_complete(&mut self, now: Instant, ctx: ContextId) {
        let tag = self.local_tag();
        let Some(c) = self.contexts.get(&ctx) else {
            return;
        };
        if c.final_sent {
            self.maybe_remove(ctx);
            return;
        }
        // Pending branches block the answer, except those cancelled before any provisional
        // (their CANCEL cannot even be sent yet, §9.1; they may take until Timer B).
        let blocking = |b: &ClientBranch| match b.state {
            BranchState::Trying => !b.cancel_when_provisional,
            BranchState::Proceeding | BranchState::Cancelling => true,
            BranchState::Done => false,
        };
        if c.held > 0 || c.failure.is_some() || c.branches.iter().any(blocking) {
            return;
        }
        let hooks = c.hooks;
        if !c.groups.is_empty() && !c.cancelled && !c.got_6xx {
            self.start_next_group(now, ctx);
            return;
        }
        // The branch's own status: `on_failure` sees a 503 as a 503; upstream gets a 500.
        let mut best = best_branch_response(&c.finals).unwrap_or_else(|| {
            TxResponse::to_request(&c.request, 408, "Request Timeout", Some(&tag))
        });
        if c.cancelled && best.status() < 600 {
            best = TxResponse::to_request(&c.request, 487, "Request Terminated", best.to_tag());
        } else if hooks.failures {
            if let Some(c) = self.contexts.get_mut(&ctx) {
                c.failure = Some(best.clone());
                c.finals.clear();
            }
            self.events.push_back(ProxyEvent::Failure {
                ctx,
                response: best,
            });
            return;
        }
        let _ = self.send_upstream(now, ctx, upstream_form(best));
        self.maybe_remove(ctx);
    }

    /// Send a response on the context's server transaction; once it has terminated (after a
    /// first 2xx), further 2xx go straight to the upstream peer.
    pub(super) fn send_upstream(
        &mut self,
        now: Instant,
        ctx: ContextId,
        response: TxResponse,
    ) -> Result<(), ProxyError> {
        let c = self
            .contexts
            .get_mut(&ctx)
            .ok_or(ProxyError::UnknownContext)?;
        let status = response.status();
        let is_final = status >= 200;
        if is_final && c.final_sent && !(200..300).contains(&status) {
            return Err(ProxyError::AlreadyAnswered);
        }
        if is_final && !c.final_sent {
            c.final_sent = true;
            c.groups.clear();
            if let Some(r) = c.reliable.take() {
                self.prack.remove(&(c.request.call_id().into(), r.rseq));
            }
            self.events.push_back(ProxyEvent::Completed { ctx, status });
        }
        let server = self.txns.state(ctx.0);
        let late_2xx = (200..300).contains(&status)
            && matches!(server, Some(State::Completed | State::Confirmed));
        if server.is_some() && !late_2xx {
            self.txns.send_response(now, ctx.0, response)?;
        } else {
            let source = c.source;
            self.transmits.push_back(Transmit {
                destination: source,
                message: Outgoing::Response(response),
            });
        }
        Ok(())
    }

    /// Forget a context as soon as it can no longer act: its final response is sent and no
    /// branch can still bring a response it must process (each branch transaction ended, or
    /// waits in Completed / Accepted). The server transaction goes on alone (it absorbs or
    /// answers retransmissions, passes the ACK of a 2xx up); 2xx retransmissions that an
    /// Accepted branch passes up are relayed by their Via ([`Self::forward_stray`]).
    pub(super) fn maybe_remove(&mut self, ctx: ContextId) {
        let Some(c) = self.contexts.get(&ctx) else {
            return;
        };
        let live_branch = c.branches.iter().any(|b| {
            matches!(
                self.txns.state(b.key),
                Some(State::Calling | State::Trying | State::Proceeding)
            )
        });
        if c.final_sent && c.held == 0 && !live_branch {
            if let Some(c) = self.contexts.remove(&ctx) {
                for b in &c.branches {
                    self.branch_of.remove(&b.key);
                }
            }
        }
    }

    /// §16.7 / §18.1.2: a response with no client transaction (a retransmitted 2xx): pop our
    /// Via and send it to the next one.
    pub(super) fn forward_stray(&mut self, response: &TxResponse) {
        let Some(top) = response.top_via() else {
            return;
        };
        if !self.is_ours(top) || response.branch().and_then(owner_core).is_none() {
            return;
        }
        let upstream = response.without_top_via();
        let Some(dest) = upstream.top_via().and_then(via_destination) else {
            return;
        };
        self.transmits.push_back(Transmit {
            destination: dest,
            message: Outgoing::Response(upstream),
        });
    }
}

/// Whether the request's `Supported` or `Require` (RFC 3262 §3) lists `100rel`.
fn supports_100rel(request: &TxRequest) -> bool {
    ["Supported", "k", "Require"].iter().any(|name| {
        request
            .header_values(name)
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case("100rel"))
    })
}

/// `RAck: rseq cseq method` (RFC 3262 §7.2) as (RSeq, CSeq number).
fn parse_rack(value: &str) -> Option<(u32, u32)> {
    let mut it = value.split_whitespace();
    let rseq = it.next()?.parse().ok()?;
    let cseq = it.next()?.parse().ok()?;
    Some((rseq, cseq))
}
