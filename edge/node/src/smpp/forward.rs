//! Store-and-forward on the reactor side (see [`super::store`] for the file):
//!
//! - `submit_via(..., store=True)` arrives on the bind's owning core ([`SmppCore::store_submit`]):
//!   over `max_queue` it is answered ESME_RMSGQFUL; otherwise its record joins this turn's
//!   batch and the script's await completes with our id once the batch is committed
//!   ([`SmppCore::flush_store`]).
//! - Queued messages wait per bind, ordered by their next attempt; `pump` moves the due ones
//!   into the bind's send queue while it is bound. Their outcome comes back through
//!   [`SmppCore::complete`]: ROK removes the record and maps the SMSC's id to ours; a
//!   transient failure (connection lost or down, ESME_RTHROTTLED, ESME_RMSGQFUL,
//!   ESME_RSYSERR) schedules another attempt (`retry.initial_secs` doubling to `max_secs`);
//!   anything else drops the message, logged and counted.
//! - A receipt (deliver_sm with esm_class bit 2) on a bind whose id is in the map is answered
//!   by the node, not the script: rewritten to our id, committed to the receipts table, then
//!   acknowledged to the SMSC, and delivered by whichever core holds a bound receiver or
//!   transceiver session of the ESME's system_id (checked every [`TICK`]).

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use siphon_reactor::Cx;
use siphon_script::SmppSend;
use siphon_smpp::{Body, CommandId, CommandStatus, SequenceNumber, SessionState, SubmitSm};

use super::store::{self, Op};
use super::{Conn, SmppCore, TIMER_BIT, binds};

/// `worker` of a send made from the store (its token is our message id).
pub(super) const STORE_WORKER: usize = usize::MAX;
/// ... of a receipt towards an ESME (its token is the receipt's sequence number).
pub(super) const RECEIPT_WORKER: usize = usize::MAX - 1;
/// Timer token bit of the store's periodic check.
pub(super) const STORE_BIT: u64 = 1 << 59;
/// Status for `store=True` without `store_and_forward` (RuntimeError in the script).
const NO_STORE: u32 = 0xFFFF_FFFA;
/// How often each core retries due messages and drains receipts into its ESME sessions.
pub(super) const TICK: Duration = Duration::from_millis(200);
/// Receipts put on one ESME session per tick at most.
const RECEIPTS_PER_TICK: usize = 64;

/// Worth another attempt: the SMSC is unreachable or said "later".
fn transient(status: u32) -> bool {
    status == binds::LOST
        || status == binds::NOT_BOUND
        || status == CommandStatus::ESME_RTHROTTLED.0
        || status == CommandStatus::ESME_RMSGQFUL.0
        || status == CommandStatus::ESME_RSYSERR.0
}

impl SmppCore {
    /// The store's first tick and the messages of this core's binds found in the file.
    pub(super) fn start_store(&mut self, cx: &mut Cx<'_, crate::engine::Msg>) {
        let Some(st) = self.shared.store.clone() else {
            return;
        };
        let now = cx.now();
        for b in &mut self.binds {
            for (id, mut s) in st.take_loaded(&b.cfg.name) {
                s.worker = STORE_WORKER;
                s.token = id;
                b.stored.insert((now, id), s);
            }
        }
        cx.set_timer(TICK, TIMER_BIT | STORE_BIT);
    }

    /// The periodic check: commit, send what is due, deliver receipts.
    pub(super) fn store_tick(&mut self, cx: &mut Cx<'_, crate::engine::Msg>) {
        cx.set_timer(TICK, TIMER_BIT | STORE_BIT);
        self.flush_store(cx);
        let now = Instant::now();
        let due: Vec<_> = self
            .binds
            .iter()
            .filter(|b| {
                b.stored
                    .first_key_value()
                    .is_some_and(|((at, _), _)| *at <= now)
            })
            .filter_map(|b| b.conn)
            .collect();
        for conn in due {
            self.after(cx, conn);
        }
        self.deliver_receipts(cx);
        self.flush_store(cx);
    }

    /// `submit_via(..., store=True)` on the bind's owning core.
    pub(super) fn store_submit(&mut self, s: Box<SmppSend>) {
        let Some(st) = self.shared.store.clone() else {
            return self
                .host
                .complete_smpp(s.worker, s.token, NO_STORE, String::new());
        };
        let Some(i) = self
            .binds
            .iter()
            .position(|b| b.cfg.name == s.session_id && !b.is_retired())
        else {
            return self
                .host
                .complete_smpp(s.worker, s.token, binds::NOT_BOUND, String::new());
        };
        if !self.binds[i].can_transmit() || s.command != "submit_sm" {
            return self
                .host
                .complete_smpp(s.worker, s.token, binds::NOT_TX, String::new());
        }
        if !st.reserve() {
            st.metrics.refused.fetch_add(1, Ordering::Relaxed);
            return self.host.complete_smpp(
                s.worker,
                s.token,
                CommandStatus::ESME_RMSGQFUL.0,
                String::new(),
            );
        }
        let id = st.next_id();
        let (worker, token) = (s.worker, s.token);
        let mut rec = s;
        rec.worker = STORE_WORKER;
        rec.token = id;
        self.store_ops.push(Op::Queue(id, rec.clone()));
        self.store_acks.push((worker, token, i, id, rec));
    }

    /// Commit this turn's batch (one fsync), then answer the scripts whose messages it holds.
    pub(super) fn flush_store(&mut self, cx: &mut Cx<'_, crate::engine::Msg>) {
        let kicked = self.commit_store();
        for i in kicked {
            if let Some(conn) = self.binds.get(i).and_then(|b| b.conn) {
                self.after(cx, conn);
            }
        }
    }

    /// [`Self::flush_store`] without the sends; returns the binds with new messages.
    fn commit_store(&mut self) -> Vec<usize> {
        if self.store_ops.is_empty() && self.store_acks.is_empty() {
            return Vec::new();
        }
        let Some(st) = self.shared.store.clone() else {
            return Vec::new();
        };
        let ops = std::mem::take(&mut self.store_ops);
        let acks = std::mem::take(&mut self.store_acks);
        let result = st.commit(&ops);
        if let Err(e) = &result {
            // Removals and id maps of this batch are lost too: those messages may be sent
            // again after a restart (at-least-once), and their receipts go to the script.
            tracing::error!(error = %e, ops = ops.len(), "SMPP store: commit failed");
        }
        let now = Instant::now();
        let mut kicked = Vec::new();
        for (worker, token, i, id, rec) in acks {
            if result.is_ok() {
                st.metrics.queued.fetch_add(1, Ordering::Relaxed);
                self.host.complete_smpp(worker, token, 0, store::our_id(id));
                if let Some(b) = self.binds.get_mut(i) {
                    b.stored.insert((now, id), rec);
                    kicked.push(i);
                }
            } else {
                st.release();
                self.host.complete_smpp(
                    worker,
                    token,
                    CommandStatus::ESME_RSYSERR.0,
                    String::new(),
                );
            }
        }
        kicked.sort_unstable();
        kicked.dedup();
        kicked
    }

    /// Every completion of a send: the script's, or the store's own.
    pub(super) fn complete(&mut self, worker: usize, token: u64, status: u32, mid: String) {
        match worker {
            STORE_WORKER => self.store_done(token, status, &mid),
            RECEIPT_WORKER => self.receipt_done(token, status),
            _ => self.host.complete_smpp(worker, token, status, mid),
        }
    }

    fn store_done(&mut self, id: u64, status: u32, mid: &str) {
        let Some(st) = self.shared.store.clone() else {
            return;
        };
        let Some((i, s)) = self.store_inflight.remove(&id) else {
            return;
        };
        let Some(b) = self.binds.get_mut(i) else {
            return;
        };
        if status == 0 {
            st.metrics.delivered.fetch_add(1, Ordering::Relaxed);
            st.release();
            b.attempts.remove(&id);
            self.store_ops.push(Op::Unqueue(id));
            let esme = s.via.as_deref().and_then(|v| v.store.clone());
            if let Some(esme) = esme.filter(|e| !e.is_empty())
                && !mid.is_empty()
            {
                self.store_ops.push(Op::MapId {
                    key: store::map_key(&b.cfg.name, mid),
                    ours: id,
                    esme,
                });
            }
        } else if transient(status) && !b.is_retired() {
            st.metrics.retried.fetch_add(1, Ordering::Relaxed);
            let n = b.attempts.entry(id).or_insert(0);
            *n = n.saturating_add(1);
            let r = &st.cfg.retry;
            let secs = r
                .initial_secs
                .saturating_mul(1u64 << (*n - 1).min(20))
                .min(r.max_secs);
            b.stored
                .insert((Instant::now() + Duration::from_secs(secs), id), s);
        } else if transient(status) {
            // The bind was removed by a reload: the message stays in the file.
            b.stored.insert((Instant::now(), id), s);
        } else {
            st.metrics.dropped.fetch_add(1, Ordering::Relaxed);
            st.release();
            b.attempts.remove(&id);
            self.store_ops.push(Op::Unqueue(id));
            tracing::warn!(
                bind = %b.cfg.name,
                id = %store::our_id(id),
                status = %format!("0x{status:08x}"),
                "SMPP store: message dropped on a permanent error"
            );
        }
    }

    fn receipt_done(&mut self, seq: u64, status: u32) {
        let Some(st) = self.shared.store.clone() else {
            return;
        };
        let Some(r) = self.receipt_inflight.remove(&seq) else {
            return;
        };
        if status == 0 {
            st.receipt_done();
            self.store_ops.push(Op::Unreceipt(seq));
        } else {
            st.return_receipt(seq, r);
        }
    }

    /// Receipts waiting for the ESMEs bound to this core.
    fn deliver_receipts(&mut self, cx: &mut Cx<'_, crate::engine::Msg>) {
        let Some(st) = self.shared.store.clone() else {
            return;
        };
        if st.receipts_waiting() == 0 {
            return;
        }
        let targets: Vec<_> = self
            .conns
            .iter()
            .filter(|(_, c)| {
                c.bind.is_none()
                    && c.registered
                    && matches!(
                        c.session.state(),
                        SessionState::BoundRx | SessionState::BoundTrx
                    )
            })
            .map(|(k, c)| {
                (
                    *k,
                    c.system_id.clone(),
                    c.session_id.clone(),
                    c.session.window_available(),
                )
            })
            .collect();
        let now = cx.now();
        for (conn, system_id, session_id, room) in targets {
            let got = st.take_receipts(&system_id, room.min(RECEIPTS_PER_TICK));
            if got.is_empty() {
                continue;
            }
            for (seq, r) in got {
                let mut out = (*r).clone();
                out.session_id = session_id.clone();
                out.worker = RECEIPT_WORKER;
                out.token = seq;
                out.via = None;
                self.receipt_inflight.insert(seq, r);
                let _ = self.send(now, &out);
            }
            self.after(cx, conn);
        }
    }

    /// A deliver_sm on bind connection `c`: a receipt for a stored message is answered here
    /// (true); anything else goes to the script (false).
    pub(super) fn stored_receipt(
        &mut self,
        now: Instant,
        c: &mut Conn,
        sequence: SequenceNumber,
        m: &SubmitSm<'_>,
    ) -> bool {
        let Some(st) = self.shared.store.clone() else {
            return false;
        };
        if m.esm_class & 0x04 == 0 {
            return false;
        }
        let Some(bind) = c
            .bind
            .and_then(|i| self.binds.get(i))
            .map(|b| b.cfg.name.clone())
        else {
            return false;
        };
        let mut raw = Vec::new();
        for tlv in m.tlvs.iter() {
            raw.extend_from_slice(&tlv.tag.0.to_be_bytes());
            raw.extend_from_slice(&(tlv.value.len() as u16).to_be_bytes());
            raw.extend_from_slice(tlv.value);
        }
        let Some(smsc_id) = store::receipt_id(m.short_message, &raw) else {
            return false;
        };
        // The map entry may still be in this turn's batch.
        let kicked = self.commit_store();
        self.store_kicks.extend(kicked);
        let Some((ours, esme)) = st.lookup(&bind, &smsc_id) else {
            return false;
        };
        let resp = Body::empty_response(CommandId::DeliverSm).unwrap_or(Body::GenericNack);
        if st.receipts_waiting() >= st.cfg.max_receipts as u64 {
            st.metrics.receipts_refused.fetch_add(1, Ordering::Relaxed);
            let _ = c
                .session
                .send_response(now, sequence, CommandStatus::ESME_RMSGQFUL, &resp);
            return true;
        }
        let (text, tlvs) = store::rewrite(m.short_message, &raw, &store::our_id(ours));
        let seq = st.next_receipt();
        let r = Box::new(SmppSend {
            core: 0,
            worker: RECEIPT_WORKER,
            token: seq,
            session_id: esme,
            command: "deliver_sm".into(),
            source_addr: String::from_utf8_lossy(m.source_addr).into_owned(),
            destination_addr: String::from_utf8_lossy(m.destination_addr).into_owned(),
            short_message: text,
            octets: [
                m.source_addr_ton,
                m.source_addr_npi,
                m.dest_addr_ton,
                m.dest_addr_npi,
                m.esm_class,
                m.protocol_id,
                m.priority_flag,
                m.registered_delivery,
                m.data_coding,
            ],
            service_type: String::from_utf8_lossy(m.service_type).into_owned(),
            tlvs,
            via: None,
        });
        let key = store::map_key(&bind, &smsc_id);
        let status = match st.commit(&[Op::UnmapId(key), Op::Receipt(seq, r.clone())]) {
            Ok(()) => {
                st.metrics.receipts_queued.fetch_add(1, Ordering::Relaxed);
                st.push_receipt(seq, r);
                CommandStatus::ESME_ROK
            }
            Err(e) => {
                tracing::error!(error = %e, "SMPP store: receipt not stored; the SMSC may retry");
                CommandStatus::ESME_RSYSERR
            }
        };
        let _ = c.session.send_response(now, sequence, status, &resp);
        true
    }

    /// Binds whose messages a commit inside input handling made ready.
    pub(super) fn kick_stored(&mut self, cx: &mut Cx<'_, crate::engine::Msg>) {
        for i in std::mem::take(&mut self.store_kicks) {
            if let Some(conn) = self.binds.get(i).and_then(|b| b.conn) {
                self.after(cx, conn);
            }
        }
    }
}
