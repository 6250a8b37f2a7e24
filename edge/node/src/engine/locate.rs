//! Where routing decisions go (RFC 3263): next hops known now (live flows, IP literals,
//! resolver cache hits), decisions parked for the resolver thread (at most `MAX_PARKED`), and
//! their continuation when it answers.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use siphon_reactor::Cx;
use siphon_sip::locate::{LocateError, Request as LocateRequest};
use siphon_sip::proxy::{ContextId, ProxyError, Target};
use siphon_sip::transaction::Remote;

use super::{Dest, Engine, MAX_PARKED, Msg, Parked, Spec};
use crate::metrics::DropReason;

impl Engine {
    /// A captured flow (`Contact.flow`) that can still be used: UDP always, a stream while its
    /// connection is open (RFC 5626 §5.3: reuse the flow; a closed one falls back to the URI).
    pub(super) fn live_flow(&self, flow: Option<Remote>) -> Option<Remote> {
        flow.filter(|f| {
            !f.transport.is_reliable() || self.by_peer.contains_key(&(f.transport, f.addr))
        })
    }

    /// Where `uri` points, if that is known without waiting: an IP literal (no DNS) or a
    /// cache hit; else the lookup to submit. Never blocks.
    pub(super) fn locate_now(&self, uri: &str) -> Dest {
        let req = match LocateRequest::from_uri(uri) {
            Ok(r) => r,
            Err(e) => return Dest::Ready(Err(e)),
        };
        let seed = self.seed();
        match self.shared.dns.cached(&req, seed) {
            Some(r) => Dest::Ready(r),
            None => Dest::Lookup(req),
        }
    }

    /// Randomness for RFC 2782 weighted selection (differs per decision and core): a
    /// SplitMix64 step over a process-wide sequence, not a clock read per routing decision
    /// (issue 16).
    fn seed(&self) -> u64 {
        static SEQ: AtomicU64 = AtomicU64::new(0);
        let mut z = SEQ
            .fetch_add(0x9e37_79b9_7f4a_7c15, Ordering::Relaxed)
            .wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        z ^ (self.next_id.rotate_left(17)) ^ ((self.core as u64) << 48)
    }

    /// Submit `requests` to the resolver and park `what` until the answer; false when the
    /// table of waiting decisions is full or the resolver refuses (the caller fails it now).
    pub(super) fn park(&mut self, requests: Vec<LocateRequest>, what: Parked) -> bool {
        if self.parked.len() >= MAX_PARKED {
            self.shared
                .dns
                .metrics()
                .rejected
                .fetch_add(1, Ordering::Relaxed);
            return false;
        }
        let id = self.next_event_id();
        let seed = self.seed();
        if self
            .shared
            .dns
            .submit(self.core, id, requests, seed)
            .is_err()
        {
            return false;
        }
        self.parked.insert(id, what);
        true
    }

    /// A relay/fork decision whose targets are all known: forward, or answer when none
    /// resolved (408 when DNS timed out, else 503 for a relay and 480 for a fork).
    pub(super) fn forward_specs(
        &mut self,
        now: Instant,
        ctx: ContextId,
        specs: Vec<Spec>,
        fork: bool,
        record_route: bool,
    ) -> Result<(), ProxyError> {
        let mut timed_out = false;
        let mut ts = Vec::new();
        for s in specs {
            match s.dest {
                Dest::Ready(Ok(mut v)) if !v.is_empty() => {
                    let destination = v.remove(0);
                    ts.push(Target {
                        uri: s.uri,
                        destination,
                        q: s.q,
                        routes: s.routes,
                        fallbacks: v,
                    });
                }
                Dest::Ready(Err(LocateError::Timeout)) => timed_out = true,
                _ => {}
            }
        }
        if !ts.is_empty() {
            self.proxy.forward(now, ctx, ts, record_route)
        } else if timed_out {
            self.proxy.respond(now, ctx, 408, "Request Timeout")
        } else if fork {
            self.proxy.respond(now, ctx, 480, "Temporarily Unavailable")
        } else {
            self.proxy.respond(now, ctx, 503, "Service Unavailable")
        }
    }

    /// The resolver answered lookup `r.id`: continue what waited for it.
    pub(super) fn on_resolved(&mut self, cx: &mut Cx<'_, Msg>, r: crate::dns::Resolved) {
        let Some(p) = self.parked.remove(&r.id) else {
            return;
        };
        let now = cx.now();
        let mut results = r.results.into_iter();
        match p {
            Parked::Route {
                ctx,
                mut specs,
                fork,
                record_route,
            } => {
                for s in &mut specs {
                    if matches!(s.dest, Dest::Lookup(_)) {
                        s.dest = Dest::Ready(results.next().unwrap_or(Err(LocateError::Failed)));
                    }
                }
                if self
                    .forward_specs(now, ctx, specs, fork, record_route)
                    .is_err()
                {
                    // The context ended while it waited (CANCEL, or answered meanwhile).
                    self.m.dropped(DropReason::Stray);
                }
            }
            Parked::Ack { request } => match results.next() {
                Some(Ok(v)) if !v.is_empty() => {
                    self.proxy.forward_stateless(&request, None, v[0]);
                }
                _ => self.m.dropped(DropReason::UnresolvedAck),
            },
            Parked::Outbound { parts, wait } => {
                let sent = match results.next() {
                    Some(Ok(v)) if !v.is_empty() => self.proxy.send_request(now, v[0], *parts).ok(),
                    _ => None,
                };
                match (sent, wait) {
                    (Some(key), Some(w)) => {
                        self.outbound.insert(key, w);
                    }
                    (Some(_), None) => {}
                    (None, w) => {
                        self.m.dropped(DropReason::Stray);
                        if let Some((worker, token)) = w {
                            self.shared.host.complete_outbound(worker, token, None);
                        }
                    }
                }
            }
        }
        self.drain(cx);
    }
}
