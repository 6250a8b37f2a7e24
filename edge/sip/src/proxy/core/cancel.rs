//! RFC 3261 §16.10 CANCEL: answer it, CANCEL the pending branches of its INVITE (§9.1: a
//! branch without a provisional gets its CANCEL when one arrives), and drop a context the TU
//! left without a decision.

use std::time::Instant;

use super::{BranchState, ContextId, Proxy};
use crate::transaction::{TransactionKey, TxRequest, TxResponse};

impl Proxy {
    /// The TU decided nothing (SIPhon: no action is a silent drop): forget the context and
    /// its server transaction without answering. A retransmission starts over.
    pub fn abandon(&mut self, ctx: ContextId) {
        let Some(c) = self.contexts.get(&ctx) else {
            return;
        };
        if c.final_sent || !c.branches.is_empty() {
            return;
        }
        self.contexts.remove(&ctx);
        self.txns.abandon(ctx.0);
    }

    /// §16.10: answer the CANCEL, cancel the pending branches of its INVITE.
    pub(super) fn on_cancel(
        &mut self,
        now: Instant,
        key: TransactionKey,
        cancel: &TxRequest,
        cancels: Option<TransactionKey>,
    ) {
        let ctx = cancels
            .map(ContextId)
            .filter(|c| self.contexts.contains_key(c));
        let tag = self.local_tag();
        // The INVITE's server transaction still runs (its context may be gone once answered):
        // the CANCEL matched a transaction (§9.2).
        let (status, reason) = if cancels.is_some() {
            (200, "OK")
        } else {
            (481, "Call/Transaction Does Not Exist")
        };
        let _ = self.txns.send_response(
            now,
            key,
            TxResponse::to_request(cancel, status, reason, Some(&tag)),
        );
        let Some(ctx) = ctx else {
            return;
        };
        let Some(c) = self.contexts.get_mut(&ctx) else {
            return;
        };
        if c.final_sent {
            return;
        }
        c.cancelled = true;
        c.groups.clear();
        let pending = c.branches.iter().any(|b| {
            matches!(
                b.state,
                BranchState::Trying | BranchState::Proceeding | BranchState::Cancelling
            )
        });
        if !pending {
            c.failure = None;
            // Not forwarded yet: answer the INVITE now.
            let response =
                TxResponse::to_request(&c.request, 487, "Request Terminated", Some(&tag));
            let _ = self.send_upstream(now, ctx, response);
            return;
        }
        self.cancel_pending(now, ctx);
        // Branches that never answered cannot be CANCELled yet and do not hold the 487 back.
        self.check_complete(now, ctx);
    }

    /// CANCEL every branch still without a final (§16.7 step 10, §16.10); branches without a
    /// provisional get it when one arrives (§9.1).
    pub(super) fn cancel_pending(&mut self, now: Instant, ctx: ContextId) {
        let Some(c) = self.contexts.get_mut(&ctx) else {
            return;
        };
        c.groups.clear();
        if !c.invite {
            return;
        }
        let mut to_send = Vec::new();
        for b in &mut c.branches {
            match b.state {
                BranchState::Proceeding => {
                    to_send.push((b.destination, b.request.cancel()));
                    b.state = BranchState::Cancelling;
                }
                BranchState::Trying => b.cancel_when_provisional = true,
                BranchState::Cancelling | BranchState::Done => {}
            }
        }
        for (dest, cancel) in to_send {
            // The CANCEL's own transaction is not tracked: its 200 is absorbed as a response
            // of an unknown branch.
            let _ = self.txns.send_request(now, dest, cancel);
        }
    }
}
