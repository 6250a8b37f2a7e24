//! RFC 3261 §16.6 request forwarding: the TU's targets into q-ordered groups, one client
//! branch per target (Via, Record-Route, Max-Forwards, the §18.1.1 switch to TCP by size),
//! Timer C (§16.8), fail-over to the next address of a target (RFC 3263 §4.3), transport
//! failures, and §16.11 stateless forwarding (ACK for 2xx).

use std::cmp::Reverse;
use std::collections::VecDeque;
use std::time::Instant;

use super::{BranchState, ClientBranch, ContextId, Proxy, ProxyError, Target};
use crate::proxy::branch::{Branch, stateless_branch};
use crate::proxy::relay::{BranchEdits, relay_request};
use crate::proxy::route::strict_next_hop;
use crate::transaction::{Outgoing, Remote, TransactionKey, Transmit, TxRequest, TxResponse};

impl Proxy {
    /// §16.8: Timer C fired. A branch with a provisional is CANCELled; either way the branch
    /// counts as a 408 and its later non-2xx final is ignored.
    pub(super) fn on_timer_c(&mut self, now: Instant, key: TransactionKey, at: Instant) {
        let Some(&(ctx, idx)) = self.branch_of.get(&key) else {
            return;
        };
        let Some(b) = self
            .contexts
            .get_mut(&ctx)
            .and_then(|c| c.branches.get_mut(idx))
        else {
            return;
        };
        if b.timer_c != Some(at) {
            return; // re-armed by a provisional
        }
        b.timer_c = None;
        let cancel =
            (b.state == BranchState::Proceeding).then(|| (b.destination, b.request.cancel()));
        if matches!(b.state, BranchState::Trying | BranchState::Proceeding) {
            if let Some((dest, cancel)) = cancel {
                let _ = self.txns.send_request(now, dest, cancel);
            }
            self.on_branch_final(now, ctx, idx, None, 408, "Request Timeout");
        }
    }

    /// The TU's routing decision: forward the context's request to `targets`, inserting
    /// Record-Route when `record_route` is set.
    pub fn forward(
        &mut self,
        now: Instant,
        ctx: ContextId,
        targets: Vec<Target>,
        record_route: bool,
    ) -> Result<(), ProxyError> {
        if targets.is_empty() {
            return Err(ProxyError::NoTargets);
        }
        let c = self
            .contexts
            .get_mut(&ctx)
            .ok_or(ProxyError::UnknownContext)?;
        if c.final_sent {
            return Err(ProxyError::AlreadyAnswered);
        }
        c.record_route = record_route;
        c.failure = None;
        let mut sorted = targets;
        sorted.sort_by_key(|t| Reverse(t.q));
        let mut groups: VecDeque<Vec<Target>> = VecDeque::new();
        for t in sorted {
            match groups.back_mut() {
                Some(g) if g[0].q == t.q => g.push(t),
                _ => groups.push_back(vec![t]),
            }
        }
        c.groups = groups;
        self.start_next_group(now, ctx);
        self.drain_transactions(now, 0);
        Ok(())
    }

    /// Forward a request statelessly (§16.11): ACK for 2xx. Max-Forwards is decremented and
    /// a Via with a deterministic branch pushed; no transaction is created.
    pub fn forward_stateless(
        &mut self,
        request: &TxRequest,
        uri: Option<&str>,
        destination: Remote,
    ) {
        let branch = stateless_branch(self.config.core, request);
        let iface = self.interface_for(destination);
        let via = iface.via(branch.as_str());
        // The received bytes plus edits (Route processing already done on the parts).
        if let Some(msg) = request.message() {
            let edits = BranchEdits {
                top_via: request.top_via(),
                interfaces: &self.config.interfaces,
                domains: &self.config.domains,
                uri,
                routes: &[],
                record_routes: &[],
                via: Some(&via),
            };
            if let Some(out) = relay_request(msg, &edits)
                .ok()
                .and_then(|m| TxRequest::try_from(&m).ok())
            {
                self.transmits.push_back(Transmit {
                    destination,
                    message: Outgoing::Request(out),
                });
                return;
            }
        }
        let mut parts = request.parts();
        if let Some(u) = uri {
            parts.uri = u.to_string();
        }
        parts.max_forwards = Some(parts.max_forwards.map_or(70, |m| m.saturating_sub(1)));
        strict_next_hop(&mut parts);
        parts.vias.insert(0, via);
        self.transmits.push_back(Transmit {
            destination,
            message: Outgoing::Request(TxRequest::build(parts)),
        });
    }

    pub(super) fn start_next_group(&mut self, now: Instant, ctx: ContextId) {
        let Some(c) = self.contexts.get_mut(&ctx) else {
            return;
        };
        let Some(group) = c.groups.pop_front() else {
            return;
        };
        for target in group {
            self.send_branch(now, ctx, target, None, true);
        }
        self.check_complete(now, ctx);
    }

    /// Build and send one client branch of `ctx` to `target.destination`: a new branch at the
    /// end of the context's list, or in place of branch `replace` (RFC 3263 §4.3 failover: a
    /// new client transaction with a new Via branch, the same request otherwise).
    fn send_branch(
        &mut self,
        now: Instant,
        ctx: ContextId,
        target: Target,
        replace: Option<usize>,
        may_switch: bool,
    ) {
        let core = self.config.core;
        let Some(c) = self.contexts.get_mut(&ctx) else {
            return;
        };
        let in_iface = self.config.interfaces.get(c.interface).copied();
        self.counter += 1;
        let branch = Branch::new(core, c.loop_hash, self.counter);
        let ifs = &self.config.interfaces;
        let out_iface = ifs
            .iter()
            .find(|i| {
                i.transport == target.destination.transport
                    && i.addr.is_ipv4() == target.destination.addr.is_ipv4()
            })
            .or_else(|| ifs.first())
            .copied();
        // §16.6 item 4, with a second value when the request changes interface (the
        // "double Record-Route" of RFC 5658): top = side facing the callee.
        let mut record_routes = Vec::new();
        if c.record_route {
            if let Some(o) = out_iface
                && Some(o) != in_iface
            {
                record_routes.push(o.record_route());
            }
            if let Some(i) = in_iface {
                record_routes.push(i.record_route());
            }
        }
        let via = out_iface.map(|o| o.via(branch.as_str()));
        // The received bytes plus this branch's edits, written once (no re-encode).
        let relayed = c.request.message().and_then(|msg| {
            let edits = BranchEdits {
                top_via: c.request.top_via(),
                interfaces: ifs,
                domains: &self.config.domains,
                uri: target.uri.as_deref(),
                routes: &target.routes,
                record_routes: &record_routes,
                via: via.as_deref(),
            };
            relay_request(msg, &edits)
                .ok()
                .and_then(|m| TxRequest::try_from(&m).ok())
        });
        let request = match relayed {
            Some(r) => r,
            None => Self::encode_branch(&c.request, &target, &record_routes, via),
        };
        self.send_built_branch(now, ctx, target, replace, may_switch, request);
    }

    /// A branch request re-encoded from the parts (requests the proxy built itself, without a
    /// message-layer view).
    fn encode_branch(
        request: &TxRequest,
        target: &Target,
        record_routes: &[String],
        via: Option<String>,
    ) -> TxRequest {
        let mut parts = request.parts();
        if let Some(uri) = &target.uri {
            parts.uri.clone_from(uri);
        }
        // RFC 3327 §5.3: a binding's Path becomes this branch's Route set.
        if !target.routes.is_empty() {
            parts.routes.clone_from(&target.routes);
        }
        // §16.6 item 3.
        parts.max_forwards = Some(parts.max_forwards.map_or(70, |m| m.saturating_sub(1)));
        for rr in record_routes.iter().rev() {
            parts.record_routes.insert(0, rr.clone());
        }
        strict_next_hop(&mut parts);
        if let Some(v) = via {
            parts.vias.insert(0, v);
        }
        TxRequest::build(parts)
    }

    /// Send one built branch request (see [`Self::send_branch`]).
    fn send_built_branch(
        &mut self,
        now: Instant,
        ctx: ContextId,
        target: Target,
        replace: Option<usize>,
        may_switch: bool,
        request: TxRequest,
    ) {
        let ifs = &self.config.interfaces;
        // RFC 3261 §18.1.1: too close to the path MTU for UDP, switch to TCP (the Via and the
        // Record-Route then name our TCP interface), keeping UDP as the fallback.
        if may_switch
            && target.destination.transport == crate::transaction::Transport::Udp
            && request.bytes().len() + 200 > self.config.udp_mtu
            && ifs.iter().any(|i| {
                i.transport == crate::transaction::Transport::Tcp
                    && i.addr.is_ipv4() == target.destination.addr.is_ipv4()
            })
        {
            let mut target = target;
            target.fallbacks.insert(0, target.destination);
            target.destination.transport = crate::transaction::Transport::Tcp;
            self.mtu_switches += 1;
            return self.send_branch(now, ctx, target, replace, false);
        }
        let destination = target.destination;
        let timer_c = now + self.config.transactions.timers.timer_c;
        match self.txns.send_request(now, destination, request.clone()) {
            Ok(key) => {
                let Some(c) = self.contexts.get_mut(&ctx) else {
                    return;
                };
                let idx = replace.unwrap_or(c.branches.len());
                self.branch_of.insert(key, (ctx, idx));
                let timer_c = c.invite.then_some(timer_c);
                if let Some(at) = timer_c {
                    self.timer_c.push(Reverse((at, key)));
                }
                let b = ClientBranch {
                    key,
                    request,
                    destination,
                    target,
                    state: BranchState::Trying,
                    cancel_when_provisional: false,
                    timer_c,
                };
                match c.branches.get_mut(idx) {
                    Some(slot) => *slot = b,
                    None => c.branches.push(b),
                }
            }
            Err(_) => {
                // Cannot happen with our unique branches; treat like a transport error.
                let Some(c) = self.contexts.get_mut(&ctx) else {
                    return;
                };
                c.finals.push(TxResponse::to_request(
                    &c.request,
                    503,
                    "Service Unavailable",
                    None,
                ));
                if let Some(b) = replace.and_then(|i| c.branches.get_mut(i)) {
                    b.state = BranchState::Done;
                    b.timer_c = None;
                }
            }
        }
    }

    /// RFC 3263 §4.3: branch `idx` of `ctx` (client transaction `key`) failed with a transport
    /// error, a timeout or a 503; when its target has another address and the context still
    /// wants answers, send the request there instead and return true.
    pub(super) fn fail_over(
        &mut self,
        now: Instant,
        ctx: ContextId,
        idx: usize,
        key: TransactionKey,
    ) -> bool {
        let Some(c) = self.contexts.get_mut(&ctx) else {
            return false;
        };
        if c.final_sent || c.cancelled || c.got_6xx {
            return false;
        }
        let Some(b) = c.branches.get_mut(idx) else {
            return false;
        };
        if b.key != key
            || b.target.fallbacks.is_empty()
            || !matches!(b.state, BranchState::Trying | BranchState::Proceeding)
        {
            return false;
        }
        let mut target = b.target.clone();
        let failed = b.destination;
        target.destination = target.fallbacks.remove(0);
        // RFC 3261 §18.1.1: the TCP attempt made for the request's size failed; the UDP retry
        // to the same address must not switch to TCP again.
        let mtu_fallback = failed.transport == crate::transaction::Transport::Tcp
            && target.destination.transport == crate::transaction::Transport::Udp
            && failed.addr == target.destination.addr;
        b.state = BranchState::Done;
        b.timer_c = None;
        self.branch_of.remove(&key);
        self.send_branch(now, ctx, target, Some(idx), !mtu_fallback);
        true
    }

    /// The transport to `destination` failed (TCP/TLS connect refused or reset, a write
    /// error): every client transaction to it fails now (RFC 3261 §8.1.3.1, §16.7), moving on
    /// to the next address of its target (RFC 3263 §4.3) or counting as a 503, without
    /// waiting for Timer B/F.
    pub fn transport_failed(&mut self, now: Instant, destination: Remote) {
        let mut keys: Vec<TransactionKey> = self
            .contexts
            .values()
            .flat_map(|c| c.branches.iter())
            .filter(|b| {
                b.destination == destination
                    && matches!(b.state, BranchState::Trying | BranchState::Proceeding)
            })
            .map(|b| b.key)
            .collect();
        keys.extend(
            self.uac
                .iter()
                .filter(|(_, d)| **d == destination)
                .map(|(k, _)| *k),
        );
        if keys.is_empty() {
            return;
        }
        for key in keys {
            self.txns.handle_transport_error(key);
        }
        self.drain_transactions(now, 0);
    }
}
