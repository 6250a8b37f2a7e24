//! Store-and-forward on the reactor side (see [`super::store`] for the file):
//!
//! - `submit_via`/`submit_multi_via`/`data_via(..., store=True)` arrive on the bind's owning
//!   core ([`SmppCore::store_submit`]): over `max_queue` they are answered ESME_RMSGQFUL;
//!   otherwise the record joins this turn's batch and the script's await completes with our
//!   id once the batch is committed ([`SmppCore::flush_store`]).
//! - Queued messages wait per bind, ordered by their next attempt; `pump` moves the due ones
//!   into the bind's send queue while it is bound. Their outcome comes back through
//!   [`SmppCore::complete`]: ROK removes the record and maps the SMSC's id to ours; a
//!   transient failure (connection lost or down, ESME_RTHROTTLED, ESME_RMSGQFUL,
//!   ESME_RSYSERR) schedules another attempt (`retry.initial_secs` doubling to `max_secs`)
//!   until `retry.max_attempts` or `expire_secs` (swept every [`SWEEP`] too, bind up or
//!   down); anything else drops the message, logged and counted. A dropped message whose
//!   request asked for a receipt (`registered_delivery` 1 or 2) and named an ESME gives that
//!   ESME a failure receipt (stat:REJECTD on a permanent error, UNDELIV when attempts ran
//!   out or it expired; err: the SMSC's last command_status in hex), committed with the drop.
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
/// How often each core looks for expired messages (`expire_secs`).
const SWEEP: Duration = Duration::from_secs(1);

/// What the node keeps beside a stored message (the record is in [`binds::OutBind::stored`]
/// or on the wire).
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct StoredMeta {
    /// Failed attempts since the node started.
    pub(super) attempts: u32,
    /// Accepted at (Unix seconds; kept in the file).
    pub(super) born: u64,
    /// The SMSC's status on the last failed attempt (0: it never answered).
    pub(super) last: u32,
}

/// A script awaiting the commit that holds its message.
pub(super) struct StoreAck {
    worker: usize,
    token: u64,
    bind: usize,
    id: u64,
    born: u64,
    rec: Box<SmppSend>,
}

/// Why a stored message is dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DropWhy {
    /// The SMSC refused it for good: stat:REJECTD.
    Rejected,
    /// `retry.max_attempts` ran out, or `expire_secs` passed: stat:UNDELIV.
    Exhausted,
}

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
            for (id, mut s, born) in st.take_loaded(&b.cfg.name) {
                s.worker = STORE_WORKER;
                s.token = id;
                b.stored.insert((now, id), s);
                b.meta.insert(
                    id,
                    StoredMeta {
                        born,
                        ..StoredMeta::default()
                    },
                );
            }
        }
        cx.set_timer(TICK, TIMER_BIT | STORE_BIT);
    }

    /// The periodic check: commit, send what is due, deliver receipts.
    pub(super) fn store_tick(&mut self, cx: &mut Cx<'_, crate::engine::Msg>) {
        cx.set_timer(TICK, TIMER_BIT | STORE_BIT);
        self.flush_store(cx);
        let now = Instant::now();
        if self.next_sweep.is_none_or(|at| at <= now) {
            self.next_sweep = Some(now + SWEEP);
            self.sweep_expired();
        }
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
        if !self.binds[i].can_transmit()
            || !matches!(
                s.command.as_str(),
                "submit_sm" | "submit_sm_multi" | "data_sm"
            )
        {
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
        let born = store::unix_now();
        let (worker, token) = (s.worker, s.token);
        let mut rec = s;
        rec.worker = STORE_WORKER;
        rec.token = id;
        self.store_ops.push(Op::Queue(id, rec.clone(), born));
        self.store_acks.push(StoreAck {
            worker,
            token,
            bind: i,
            id,
            born,
            rec,
        });
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
        let receipts = std::mem::take(&mut self.store_receipts);
        let result = st.commit(&ops);
        match &result {
            Ok(()) => {
                for (seq, r) in receipts {
                    st.metrics.receipts_queued.fetch_add(1, Ordering::Relaxed);
                    st.metrics.failure_receipts.fetch_add(1, Ordering::Relaxed);
                    st.push_receipt(seq, r);
                }
            }
            Err(e) => {
                // Removals, id maps and failure receipts of this batch are lost too: those
                // messages may be sent again after a restart (at-least-once), and their
                // receipts go to the script.
                tracing::error!(error = %e, ops = ops.len(), "SMPP store: commit failed");
            }
        }
        let now = Instant::now();
        let mut kicked = Vec::new();
        for StoreAck {
            worker,
            token,
            bind: i,
            id,
            born,
            rec,
        } in acks
        {
            if result.is_ok() {
                st.metrics.queued.fetch_add(1, Ordering::Relaxed);
                self.host.complete_smpp(worker, token, 0, store::our_id(id));
                if let Some(b) = self.binds.get_mut(i) {
                    b.stored.insert((now, id), rec);
                    b.meta.insert(
                        id,
                        StoredMeta {
                            born,
                            ..StoredMeta::default()
                        },
                    );
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
            b.meta.remove(&id);
            self.store_ops.push(Op::Unqueue(id));
            let esme = s.via.as_deref().and_then(|v| v.store.clone());
            // Only a message that asked for a receipt is mapped (the map waits for it).
            if let Some(esme) = esme.filter(|e| !e.is_empty())
                && !mid.is_empty()
                && s.octets[7] & 0x03 != 0
            {
                let receipts = match s.command.as_str() {
                    "submit_sm_multi" => s.via.as_deref().map_or(1, |v| v.destinations.len()),
                    _ => 1,
                };
                self.store_ops.push(Op::MapId {
                    key: store::map_key(&b.cfg.name, mid),
                    ours: id,
                    esme,
                    receipts: u32::try_from(receipts.max(1)).unwrap_or(u32::MAX),
                });
            }
            return;
        }
        // The SMSC's own status (a generic_nack carries it in `mid`).
        let smsc_status = match status {
            binds::NACKED => mid.parse().unwrap_or(CommandStatus::ESME_RSYSERR.0),
            s if s >= NO_STORE => 0,
            s => s,
        };
        if transient(status) && !b.is_retired() {
            st.metrics.retried.fetch_add(1, Ordering::Relaxed);
            let m = b.meta.entry(id).or_default();
            m.attempts = m.attempts.saturating_add(1);
            if smsc_status != 0 {
                m.last = smsc_status;
            }
            let n = m.attempts;
            let r = &st.cfg.retry;
            let expired = st.cfg.expire_secs > 0
                && store::unix_now() >= m.born.saturating_add(st.cfg.expire_secs);
            if (r.max_attempts > 0 && n >= r.max_attempts) || expired {
                let last = m.last;
                return self.drop_stored(i, id, &s, last, DropWhy::Exhausted);
            }
            let secs = r
                .initial_secs
                .saturating_mul(1u64 << (n - 1).min(20))
                .min(r.max_secs);
            b.stored
                .insert((Instant::now() + Duration::from_secs(secs), id), s);
        } else if transient(status) {
            // The bind was removed by a reload: the message stays in the file.
            b.stored.insert((Instant::now(), id), s);
        } else {
            self.drop_stored(i, id, &s, smsc_status, DropWhy::Rejected);
        }
    }

    /// Messages of every bind of this core (not on the wire) past `expire_secs`.
    fn sweep_expired(&mut self) {
        let Some(st) = self.shared.store.clone() else {
            return;
        };
        if st.cfg.expire_secs == 0 {
            return;
        }
        let now = store::unix_now();
        for i in 0..self.binds.len() {
            let b = &mut self.binds[i];
            let gone: Vec<(Instant, u64)> = b
                .stored
                .keys()
                .filter(|(_, id)| {
                    b.meta
                        .get(id)
                        .is_some_and(|m| now >= m.born.saturating_add(st.cfg.expire_secs))
                })
                .copied()
                .collect();
            for key in gone {
                let Some(s) = self.binds[i].stored.remove(&key) else {
                    continue;
                };
                let last = self.binds[i].meta.get(&key.1).map_or(0, |m| m.last);
                self.drop_stored(i, key.1, &s, last, DropWhy::Exhausted);
            }
        }
    }

    /// Drop stored message `id` of bind `i` (its record goes in this turn's commit), with a
    /// failure receipt per destination for its ESME when it asked for one.
    fn drop_stored(&mut self, i: usize, id: u64, s: &SmppSend, status: u32, why: DropWhy) {
        let Some(st) = self.shared.store.clone() else {
            return;
        };
        let Some(b) = self.binds.get_mut(i) else {
            return;
        };
        st.metrics.dropped.fetch_add(1, Ordering::Relaxed);
        if why == DropWhy::Exhausted {
            st.metrics.expired.fetch_add(1, Ordering::Relaxed);
        }
        st.release();
        let born = b.meta.remove(&id).map_or(0, |m| m.born);
        self.store_ops.push(Op::Unqueue(id));
        tracing::warn!(
            bind = %b.cfg.name,
            id = %store::our_id(id),
            status = %format!("0x{status:08x}"),
            reason = if why == DropWhy::Rejected { "permanent error" } else { "attempts exhausted or expired" },
            "SMPP store: message dropped"
        );
        let esme = s
            .via
            .as_deref()
            .and_then(|v| v.store.as_deref())
            .unwrap_or("");
        if esme.is_empty() || !matches!(s.octets[7] & 0x03, 1 | 2) {
            return;
        }
        let dests: Vec<&str> = match s.command.as_str() {
            "submit_sm_multi" => s
                .via
                .as_deref()
                .map(|v| v.destinations.iter().map(String::as_str).collect())
                .unwrap_or_default(),
            _ => vec![s.destination_addr.as_str()],
        };
        for dest in dests {
            let waiting = st.receipts_waiting() + self.store_receipts.len() as u64;
            if waiting >= st.cfg.max_receipts as u64 {
                st.metrics.receipts_refused.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(id = %store::our_id(id), "SMPP store: failure receipt dropped: receipts full");
                continue;
            }
            let r = Box::new(failure_receipt(id, s, dest, esme, born, status, why));
            let seq = st.next_receipt();
            self.store_ops.push(Op::Receipt(seq, r.clone()));
            self.store_receipts.push((seq, r));
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

/// The node's own receipt for a dropped message `id` (SMPP 3.4 appendix B text, with
/// receipted_message_id and message_state TLVs), from `dest` back to the message's source.
fn failure_receipt(
    id: u64,
    s: &SmppSend,
    dest: &str,
    esme: &str,
    born: u64,
    status: u32,
    why: DropWhy,
) -> SmppSend {
    let ours = store::our_id(id);
    let (stat, state) = match why {
        DropWhy::Rejected => ("REJECTD", 8u8),
        DropWhy::Exhausted => ("UNDELIV", 5u8),
    };
    let body = if s.command == "data_sm" {
        store::tlv_value(&s.tlvs, 0x0424).unwrap_or(&[])
    } else {
        &s.short_message
    };
    let mut text = format!(
        "id:{ours} sub:001 dlvrd:000 submit date:{} done date:{} stat:{stat} err:{:03x} text:",
        store::receipt_date(born),
        store::receipt_date(store::unix_now()),
        status
    )
    .into_bytes();
    text.extend_from_slice(body.get(..20).unwrap_or(body));
    let mut tlvs = Vec::with_capacity(ours.len() + 10);
    tlvs.extend_from_slice(&0x001Eu16.to_be_bytes());
    tlvs.extend_from_slice(&((ours.len() + 1) as u16).to_be_bytes());
    tlvs.extend_from_slice(ours.as_bytes());
    tlvs.push(0);
    tlvs.extend_from_slice(&0x0427u16.to_be_bytes());
    tlvs.extend_from_slice(&1u16.to_be_bytes());
    tlvs.push(state);
    let o = s.octets;
    SmppSend {
        core: 0,
        worker: RECEIPT_WORKER,
        token: 0,
        session_id: esme.to_owned(),
        command: "deliver_sm".into(),
        // deliver_sm addresses hold 20 characters (a data_sm's hold 64).
        source_addr: dest.chars().take(20).collect(),
        destination_addr: s.source_addr.chars().take(20).collect(),
        short_message: text,
        octets: [o[2], o[3], o[0], o[1], 0x04, 0, 0, 0, 0],
        service_type: s.service_type.clone(),
        tlvs,
        via: None,
    }
}
