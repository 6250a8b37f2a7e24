//! Requests scripts originate (`proxy.send_request`, a SUBSCRIBE's NOTIFY): headers filled
//! in, next hop located, sent through the proxy core, the final answer routed back to the
//! waiting script.

use siphon_reactor::Cx;
use siphon_script::OutboundRequest;

use super::{Dest, Engine, Msg, Parked};
use crate::metrics::DropReason;

impl Engine {
    /// Send `first` (requests that follow an answer: a SUBSCRIBE's NOTIFY), then what scripts
    /// queued with `proxy.send_request`. The next hop is `next_hop`, else the first Route,
    /// else the Request-URI; missing From/To/Call-ID/CSeq are generated.
    pub(super) fn send_outbound(&mut self, cx: &mut Cx<'_, Msg>, first: Vec<OutboundRequest>) {
        let now = cx.now();
        let mut first = first.into_iter();
        while let Some(req) = first.next().or_else(|| self.shared.host.poll_outbound()) {
            let mut parts = siphon_sip::transaction::RequestParts {
                method: req.method.clone(),
                uri: req.ruri.clone(),
                body: req.body.clone().unwrap_or_default(),
                ..Default::default()
            };
            let mut cseq = None;
            for (name, value) in &req.headers {
                match name.to_ascii_lowercase().as_str() {
                    "from" | "f" => parts.from = value.clone(),
                    "to" | "t" => parts.to = value.clone(),
                    "call-id" | "i" => parts.call_id = value.clone(),
                    "cseq" => cseq = value.split_whitespace().next().and_then(|n| n.parse().ok()),
                    "route" => parts.routes.push(value.clone()),
                    "max-forwards" => parts.max_forwards = value.trim().parse().ok(),
                    "via" | "v" | "content-length" | "l" => {}
                    _ => parts.headers.push((name.clone(), value.clone())),
                }
            }
            self.next_id += 1;
            let tag = format!("{:x}{:x}", self.core, self.next_id);
            let host = self
                .shared
                .interfaces
                .first()
                .map(|i| i.addr.to_string())
                .unwrap_or_default();
            if parts.from.is_empty() {
                parts.from = format!("<sip:siphon@{host}>;tag={tag}");
            }
            if parts.to.is_empty() {
                parts.to = format!("<{}>", req.ruri);
            }
            if parts.call_id.is_empty() {
                parts.call_id = format!("{tag}-{}@{host}", req.token);
            }
            parts.cseq = cseq.unwrap_or(1);
            let next = req
                .next_hop
                .clone()
                .or_else(|| {
                    parts
                        .routes
                        .first()
                        .map(|r| siphon_sip::proxy::strip_angle(r).to_string())
                })
                .unwrap_or_else(|| req.ruri.clone());
            let wait = req.wait_for_response.then_some((req.worker, req.token));
            let dest = match self.locate_now(&next) {
                Dest::Ready(Ok(v)) => v.first().copied(),
                Dest::Ready(Err(_)) => None,
                Dest::Lookup(lr) => {
                    if !self.park(
                        vec![lr],
                        Parked::Outbound {
                            parts: Box::new(parts),
                            wait,
                        },
                    ) {
                        self.m.dropped(DropReason::Stray);
                        if let Some((worker, token)) = wait {
                            self.shared.host.complete_outbound(worker, token, None);
                        }
                    }
                    continue;
                }
            };
            let sent = dest.map(|dest| self.proxy.send_request(now, dest, parts));
            match sent {
                Some(Ok(key)) if req.wait_for_response => {
                    self.outbound.insert(key, (req.worker, req.token));
                }
                Some(Ok(_)) => {}
                _ => {
                    self.m.dropped(DropReason::Stray);
                    if req.wait_for_response {
                        self.shared
                            .host
                            .complete_outbound(req.worker, req.token, None);
                    }
                }
            }
        }
        self.drain(cx);
    }

    pub(super) fn next_event_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }
}
