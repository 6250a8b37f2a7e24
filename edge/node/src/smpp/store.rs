//! SMPP store-and-forward (`smpp.yaml` `store_and_forward:`, ours; upstream has none): a
//! redb file shared by every core with three tables:
//!
//! - `queue`: our message id → a `submit_via`/`submit_multi_via`/`data_via(..., store=True)`
//!   request not yet answered by the SMSC, with the time it was accepted (for `expire_secs`). The ESME's submit_sm_resp (our id) leaves only once its record is committed
//!   (redb's default durability: fsync before `commit` returns). The records a core makes in
//!   one loop turn share one commit (group commit).
//! - `ids`: `bind NUL smsc_message_id` → our id and the ESME's system_id, written in the same
//!   commit that removes the message from `queue`, so a receipt is matched after a restart.
//!   Only messages that asked for a receipt (`registered_delivery`) are mapped. A
//!   submit_multi expects one receipt per destination: `ids_left` counts the receipts still
//!   expected after the next one, and the map entry goes with the last.
//! - `receipts`: receipts rewritten to our id, waiting for (or being delivered to) a bound
//!   session of their ESME's system_id; removed when the ESME answers deliver_sm_resp ROK.
//!   Failure receipts the node writes itself (a stored message dropped: the SMSC's permanent
//!   error, attempts exhausted or expired) join the same table in the commit that drops it.
//!
//! Ownership: a bind's queued messages are driven by the core that owns the bind; receipts
//! are held in one shared in-memory outbox (mirroring the table) that each core drains into
//! its own ESME sessions. The file is loaded once, before the reactors start.

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use redb::{Database, ReadableTable, TableDefinition};
use siphon_script::{SmppSend, SmppVia};

use super::config::StoreConfig;

const QUEUE: TableDefinition<'_, u64, &[u8]> = TableDefinition::new("queue");
const IDS: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("ids");
const RECEIPTS: TableDefinition<'_, u64, &[u8]> = TableDefinition::new("receipts");
const META: TableDefinition<'_, &str, u64> = TableDefinition::new("meta");
const IDS_LEFT: TableDefinition<'_, &str, u32> = TableDefinition::new("ids_left");

/// Why the store could not open or write.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The file could not be created, opened or read.
    #[error("SMPP store {path}: {reason}")]
    Open {
        /// The file.
        path: PathBuf,
        /// What redb said.
        reason: String,
    },
    /// A commit failed (nothing of it is visible).
    #[error("SMPP store commit: {0}")]
    Commit(String),
}

/// One change, applied in order within a commit.
#[derive(Debug)]
pub(super) enum Op {
    /// A message was accepted: `(our id, the request (bind in `session_id`, ESME in
    /// `via.store`), accepted at (Unix seconds))`.
    Queue(u64, Box<SmppSend>, u64),
    /// It left the queue (answered ROK, or dropped).
    Unqueue(u64),
    /// Its receipt will name `smsc_id` on `bind`.
    MapId {
        /// `bind NUL smsc_id`.
        key: String,
        /// Our id.
        ours: u64,
        /// The ESME's system_id.
        esme: String,
        /// Receipts expected (a submit_multi: one per destination).
        receipts: u32,
    },
    /// A receipt was matched: the map entry goes with the last one expected.
    UnmapId(String),
    /// A receipt waits for its ESME: `(seq, the deliver_sm; session_id = esme system_id)`.
    Receipt(u64, Box<SmppSend>),
    /// It was delivered.
    Unreceipt(u64),
}

/// Counters (`siphon_smpp_store_*`).
#[derive(Debug, Default)]
pub struct StoreMetrics {
    /// Messages accepted into the queue.
    pub queued: AtomicU64,
    /// Attempts that failed transiently and were rescheduled.
    pub retried: AtomicU64,
    /// Messages the SMSC accepted.
    pub delivered: AtomicU64,
    /// Messages dropped: a permanent error, attempts exhausted or expired.
    pub dropped: AtomicU64,
    /// ... of which attempts exhausted (`retry.max_attempts`) or expired (`expire_secs`).
    pub expired: AtomicU64,
    /// Failure receipts (stat:REJECTD / UNDELIV) queued for the ESME of a dropped message.
    pub failure_receipts: AtomicU64,
    /// Submits refused with ESME_RMSGQFUL (queue full).
    pub refused: AtomicU64,
    /// Messages in the queue now.
    pub depth: AtomicU64,
    /// Receipts matched and queued for their ESME.
    pub receipts_queued: AtomicU64,
    /// Receipts the ESME acknowledged.
    pub receipts_delivered: AtomicU64,
    /// Receipts waiting now.
    pub receipts_depth: AtomicU64,
    /// Receipts refused (outbox full): answered ESME_RMSGQFUL to the SMSC.
    pub receipts_refused: AtomicU64,
}

impl StoreMetrics {
    /// Prometheus text.
    pub fn render(&self, out: &mut String) {
        use std::fmt::Write;
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        for (name, kind, v) in [
            ("queued_total", "counter", &self.queued),
            ("retried_total", "counter", &self.retried),
            ("delivered_total", "counter", &self.delivered),
            ("dropped_total", "counter", &self.dropped),
            ("expired_total", "counter", &self.expired),
            ("failure_receipts_total", "counter", &self.failure_receipts),
            ("refused_total", "counter", &self.refused),
            ("queue_depth", "gauge", &self.depth),
            ("receipts_queued_total", "counter", &self.receipts_queued),
            (
                "receipts_delivered_total",
                "counter",
                &self.receipts_delivered,
            ),
            ("receipts_refused_total", "counter", &self.receipts_refused),
            ("receipts_depth", "gauge", &self.receipts_depth),
        ] {
            let _ = writeln!(
                out,
                "# TYPE siphon_smpp_store_{name} {kind}\nsiphon_smpp_store_{name} {}",
                g(v)
            );
        }
    }
}

/// Records by id, in file order: `(our id, the request, accepted at (Unix seconds))`.
type Records = Vec<(u64, Box<SmppSend>, u64)>;
/// Receipts waiting, in arrival order.
type Waiting = VecDeque<(u64, Box<SmppSend>)>;

/// The open store.
pub struct Store {
    db: Database,
    /// The settings.
    pub cfg: StoreConfig,
    next_id: AtomicU64,
    next_receipt: AtomicU64,
    /// Counters.
    pub metrics: StoreMetrics,
    /// Loaded at open: bind name → its queued messages (taken by the owning core).
    loaded: Mutex<HashMap<String, Records>>,
    /// ESME system_id → receipts waiting (seq, deliver_sm).
    outbox: Mutex<HashMap<String, Waiting>>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("path", &self.cfg.path)
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Store {
    /// Open (or create) the file and load what it holds.
    pub fn open(cfg: StoreConfig) -> Result<Self, StoreError> {
        let path = cfg.path.clone();
        let err = |e: &dyn std::fmt::Display| StoreError::Open {
            path: path.clone(),
            reason: e.to_string(),
        };
        if let Some(dir) = path.parent()
            && !dir.as_os_str().is_empty()
        {
            std::fs::create_dir_all(dir).map_err(|e| err(&e))?;
        }
        let db = Database::create(&path).map_err(|e| err(&e))?;
        let mut loaded: HashMap<String, Records> = HashMap::new();
        let mut outbox: HashMap<String, Waiting> = HashMap::new();
        let (mut next_id, mut next_receipt) = (1u64, 1u64);
        let (mut depth, mut rdepth) = (0u64, 0u64);
        {
            let w = db.begin_write().map_err(|e| err(&e))?;
            {
                let q = w.open_table(QUEUE).map_err(|e| err(&e))?;
                for item in q.iter().map_err(|e| err(&e))? {
                    let (k, v) = item.map_err(|e| err(&e))?;
                    let id = k.value();
                    next_id = next_id.max(id + 1);
                    match decode(v.value()) {
                        Some((s, born)) => {
                            depth += 1;
                            loaded.entry(s.session_id.clone()).or_default().push((
                                id,
                                Box::new(s),
                                born,
                            ));
                        }
                        None => tracing::warn!(id, "SMPP store: unreadable queue record skipped"),
                    }
                }
                let r = w.open_table(RECEIPTS).map_err(|e| err(&e))?;
                for item in r.iter().map_err(|e| err(&e))? {
                    let (k, v) = item.map_err(|e| err(&e))?;
                    let seq = k.value();
                    next_receipt = next_receipt.max(seq + 1);
                    if let Some((s, _)) = decode(v.value()) {
                        rdepth += 1;
                        outbox
                            .entry(s.session_id.clone())
                            .or_default()
                            .push_back((seq, Box::new(s)));
                    }
                }
                let _ = w.open_table(IDS).map_err(|e| err(&e))?;
                let _ = w.open_table(IDS_LEFT).map_err(|e| err(&e))?;
                let m = w.open_table(META).map_err(|e| err(&e))?;
                if let Some(v) = m.get("next_id").map_err(|e| err(&e))? {
                    next_id = next_id.max(v.value());
                }
            }
            w.commit().map_err(|e| err(&e))?;
        }
        tracing::info!(path = %path.display(), queued = depth, receipts = rdepth, "SMPP store opened");
        let metrics = StoreMetrics::default();
        metrics.depth.store(depth, Ordering::Relaxed);
        metrics.receipts_depth.store(rdepth, Ordering::Relaxed);
        Ok(Self {
            db,
            cfg,
            next_id: AtomicU64::new(next_id),
            next_receipt: AtomicU64::new(next_receipt),
            metrics,
            loaded: Mutex::new(loaded),
            outbox: Mutex::new(outbox),
        })
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.cfg.path
    }

    /// A new message id (ours); persisted with the next commit that queues it.
    pub(super) fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// A new receipt sequence number.
    pub(super) fn next_receipt(&self) -> u64 {
        self.next_receipt.fetch_add(1, Ordering::Relaxed)
    }

    /// Reserve a queue slot; false when the queue is at `max_queue`.
    pub(super) fn reserve(&self) -> bool {
        let max = self.cfg.max_queue as u64;
        self.metrics
            .depth
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |d| {
                (d < max).then_some(d + 1)
            })
            .is_ok()
    }

    /// Give a slot back (dropped, delivered, or its commit failed).
    pub(super) fn release(&self) {
        let _ = self
            .metrics
            .depth
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |d| d.checked_sub(1));
    }

    /// The queued messages of `bind` found at open (once).
    pub(super) fn take_loaded(&self, bind: &str) -> Records {
        lock(&self.loaded).remove(bind).unwrap_or_default()
    }

    /// Apply `ops` in one write transaction and commit it durably.
    pub(super) fn commit(&self, ops: &[Op]) -> Result<(), StoreError> {
        let e = |e: &dyn std::fmt::Display| StoreError::Commit(e.to_string());
        let w = self.db.begin_write().map_err(|x| e(&x))?;
        {
            let mut q = w.open_table(QUEUE).map_err(|x| e(&x))?;
            let mut ids = w.open_table(IDS).map_err(|x| e(&x))?;
            let mut r = w.open_table(RECEIPTS).map_err(|x| e(&x))?;
            let mut m = w.open_table(META).map_err(|x| e(&x))?;
            let mut left = w.open_table(IDS_LEFT).map_err(|x| e(&x))?;
            let mut top = 0u64;
            for op in ops {
                match op {
                    Op::Queue(id, s, born) => {
                        top = top.max(*id + 1);
                        q.insert(*id, encode(s, *born).as_slice())
                            .map_err(|x| e(&x))?;
                    }
                    Op::Unqueue(id) => {
                        q.remove(*id).map_err(|x| e(&x))?;
                    }
                    Op::MapId {
                        key,
                        ours,
                        esme,
                        receipts,
                    } => {
                        let mut v = ours.to_be_bytes().to_vec();
                        v.extend_from_slice(esme.as_bytes());
                        ids.insert(key.as_str(), v.as_slice()).map_err(|x| e(&x))?;
                        if *receipts > 1 {
                            left.insert(key.as_str(), *receipts - 1)
                                .map_err(|x| e(&x))?;
                        }
                    }
                    Op::UnmapId(key) => {
                        let more = left
                            .get(key.as_str())
                            .map_err(|x| e(&x))?
                            .map_or(0, |v| v.value());
                        if more > 1 {
                            left.insert(key.as_str(), more - 1).map_err(|x| e(&x))?;
                        } else if more == 1 {
                            left.remove(key.as_str()).map_err(|x| e(&x))?;
                        } else {
                            ids.remove(key.as_str()).map_err(|x| e(&x))?;
                        }
                    }
                    Op::Receipt(seq, s) => {
                        r.insert(*seq, encode(s, 0).as_slice()).map_err(|x| e(&x))?;
                    }
                    Op::Unreceipt(seq) => {
                        r.remove(*seq).map_err(|x| e(&x))?;
                    }
                }
            }
            if top > 0 {
                let cur = m
                    .get("next_id")
                    .map_err(|x| e(&x))?
                    .map_or(0, |v| v.value());
                if top > cur {
                    m.insert("next_id", top).map_err(|x| e(&x))?;
                }
            }
        }
        w.commit().map_err(|x| e(&x))
    }

    /// Our id and the ESME's system_id for a receipt naming `smsc_id` on `bind`.
    pub(super) fn lookup(&self, bind: &str, smsc_id: &str) -> Option<(u64, String)> {
        let r = self.db.begin_read().ok()?;
        let t = r.open_table(IDS).ok()?;
        let v = t.get(map_key(bind, smsc_id).as_str()).ok()??;
        let v = v.value();
        let ours = u64::from_be_bytes(v.get(..8)?.try_into().ok()?);
        Some((ours, String::from_utf8_lossy(v.get(8..)?).into_owned()))
    }

    /// Receipts waiting, all ESMEs.
    pub(super) fn receipts_waiting(&self) -> u64 {
        self.metrics.receipts_depth.load(Ordering::Relaxed)
    }

    /// A committed receipt joins the outbox of its ESME.
    pub(super) fn push_receipt(&self, seq: u64, s: Box<SmppSend>) {
        self.metrics.receipts_depth.fetch_add(1, Ordering::Relaxed);
        lock(&self.outbox)
            .entry(s.session_id.clone())
            .or_default()
            .push_back((seq, s));
    }

    /// Up to `n` receipts for `esme`, taken out of the outbox (in flight).
    pub(super) fn take_receipts(&self, esme: &str, n: usize) -> Vec<(u64, Box<SmppSend>)> {
        let mut o = lock(&self.outbox);
        let Some(q) = o.get_mut(esme) else {
            return Vec::new();
        };
        let k = n.min(q.len());
        q.drain(..k).collect()
    }

    /// A receipt in flight was not acknowledged: back to the head of its outbox.
    pub(super) fn return_receipt(&self, seq: u64, s: Box<SmppSend>) {
        lock(&self.outbox)
            .entry(s.session_id.clone())
            .or_default()
            .push_front((seq, s));
    }

    /// A receipt was acknowledged (its `Unreceipt` is committed separately).
    pub(super) fn receipt_done(&self) {
        let _ =
            self.metrics
                .receipts_depth
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |d| d.checked_sub(1));
        self.metrics
            .receipts_delivered
            .fetch_add(1, Ordering::Relaxed);
    }
}

/// The `ids` key.
pub(super) fn map_key(bind: &str, smsc_id: &str) -> String {
    format!("{bind}\0{smsc_id}")
}

/// Our message id as the ESME sees it.
pub(super) fn our_id(id: u64) -> String {
    format!("S{id}")
}

fn put(out: &mut Vec<u8>, b: &[u8]) {
    out.extend_from_slice(&(b.len() as u32).to_be_bytes());
    out.extend_from_slice(b);
}

/// Record format 2: version octet, then length-prefixed fields; format 1 (no destinations,
/// no acceptance time) is still read.
fn encode(s: &SmppSend, born: u64) -> Vec<u8> {
    let mut o = Vec::with_capacity(64 + s.short_message.len() + s.tlvs.len());
    o.push(2);
    put(&mut o, s.session_id.as_bytes());
    put(&mut o, s.command.as_bytes());
    put(&mut o, s.source_addr.as_bytes());
    put(&mut o, s.destination_addr.as_bytes());
    put(&mut o, &s.short_message);
    put(&mut o, &s.octets);
    put(&mut o, s.service_type.as_bytes());
    put(&mut o, &s.tlvs);
    let v = s.via.as_deref().cloned().unwrap_or_default();
    put(&mut o, v.message_id.as_bytes());
    put(&mut o, v.schedule_delivery_time.as_bytes());
    put(&mut o, v.validity_period.as_bytes());
    put(&mut o, &[v.replace_if_present_flag, v.sm_default_msg_id]);
    put(&mut o, v.store.as_deref().unwrap_or("").as_bytes());
    put(&mut o, v.destinations.join("\0").as_bytes());
    put(&mut o, &born.to_be_bytes());
    o
}

/// A record and the time it was accepted (format 1: now).
fn decode(mut b: &[u8]) -> Option<(SmppSend, u64)> {
    let version = *b.first()?;
    if version != 1 && version != 2 {
        return None;
    }
    b = &b[1..];
    let mut next = || -> Option<Vec<u8>> {
        let n = u32::from_be_bytes(b.get(..4)?.try_into().ok()?) as usize;
        let v = b.get(4..4 + n)?.to_vec();
        b = &b[4 + n..];
        Some(v)
    };
    let s = |v: Vec<u8>| String::from_utf8_lossy(&v).into_owned();
    let session_id = s(next()?);
    let command = s(next()?);
    let source_addr = s(next()?);
    let destination_addr = s(next()?);
    let short_message = next()?;
    let octets: [u8; 9] = next()?.try_into().ok()?;
    let service_type = s(next()?);
    let tlvs = next()?;
    let message_id = s(next()?);
    let schedule_delivery_time = s(next()?);
    let validity_period = s(next()?);
    let flags = next()?;
    let store = s(next()?);
    let (destinations, born) = if version == 2 {
        let d = s(next()?);
        let born = u64::from_be_bytes(next()?.try_into().ok()?);
        let d = if d.is_empty() {
            Vec::new()
        } else {
            d.split('\0').map(str::to_owned).collect()
        };
        (d, born)
    } else {
        (Vec::new(), unix_now())
    };
    let send = SmppSend {
        core: 0,
        worker: 0,
        token: 0,
        session_id,
        command,
        source_addr,
        destination_addr,
        short_message,
        octets,
        service_type,
        tlvs,
        via: Some(Box::new(SmppVia {
            message_id,
            destinations,
            schedule_delivery_time,
            validity_period,
            replace_if_present_flag: flags.first().copied().unwrap_or(0),
            sm_default_msg_id: flags.get(1).copied().unwrap_or(0),
            store: Some(store),
        })),
    };
    Some((send, born))
}

/// Seconds since the Unix epoch (0 before it).
pub(super) fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// `YYMMDDhhmm` (UTC) of a Unix time: a receipt's `submit date:` / `done date:`.
pub(super) fn receipt_date(unix: u64) -> String {
    let days = (unix / 86_400) as i64;
    let rem = unix % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{:02}{m:02}{d:02}{:02}{:02}",
        y.rem_euclid(100),
        rem / 3600,
        rem % 3600 / 60
    )
}

/// The receipt's id as the SMSC wrote it: TLV receipted_message_id, else `id:` in the text.
pub(super) fn receipt_id(text: &[u8], tlvs: &[u8]) -> Option<String> {
    if let Some(v) = tlv_value(tlvs, 0x001E) {
        let v = v.split(|b| *b == 0).next().unwrap_or(&[]);
        if !v.is_empty() {
            return Some(String::from_utf8_lossy(v).into_owned());
        }
    }
    let (start, end) = text_id_span(text)?;
    Some(String::from_utf8_lossy(&text[start..end]).into_owned())
}

/// The span of the value of `id:` in a receipt text (at the start or after a space).
fn text_id_span(text: &[u8]) -> Option<(usize, usize)> {
    let lower = text.to_ascii_lowercase();
    let mut from = 0;
    while let Some(p) = lower.get(from..)?.windows(3).position(|w| w == b"id:") {
        let at = from + p;
        if at == 0 || lower.get(at - 1) == Some(&b' ') {
            let start = at + 3;
            let end = text
                .get(start..)?
                .iter()
                .position(|b| *b == b' ')
                .map_or(text.len(), |n| start + n);
            return Some((start, end));
        }
        from = at + 3;
    }
    None
}

pub(super) fn tlv_value(tlvs: &[u8], tag: u16) -> Option<&[u8]> {
    let mut b = tlvs;
    while b.len() >= 4 {
        let t = u16::from_be_bytes([b[0], b[1]]);
        let n = u16::from_be_bytes([b[2], b[3]]) as usize;
        let v = b.get(4..4 + n)?;
        if t == tag {
            return Some(v);
        }
        b = &b[4 + n..];
    }
    None
}

/// The receipt with `ours` in place of the SMSC's id (text `id:` and TLV 0x001E).
pub(super) fn rewrite(text: &[u8], tlvs: &[u8], ours: &str) -> (Vec<u8>, Vec<u8>) {
    let text = match text_id_span(text) {
        Some((s, e)) => {
            let mut t = text[..s].to_vec();
            t.extend_from_slice(ours.as_bytes());
            t.extend_from_slice(&text[e..]);
            t
        }
        None => text.to_vec(),
    };
    let mut out = Vec::with_capacity(tlvs.len() + ours.len());
    let mut b = tlvs;
    while b.len() >= 4 {
        let t = u16::from_be_bytes([b[0], b[1]]);
        let n = u16::from_be_bytes([b[2], b[3]]) as usize;
        let Some(v) = b.get(4..4 + n) else {
            break;
        };
        if t == 0x001E {
            out.extend_from_slice(&t.to_be_bytes());
            out.extend_from_slice(&((ours.len() + 1) as u16).to_be_bytes());
            out.extend_from_slice(ours.as_bytes());
            out.push(0);
        } else {
            out.extend_from_slice(&b[..4]);
            out.extend_from_slice(v);
        }
        b = &b[4 + n..];
    }
    (text, out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn receipt_ids_are_found_and_rewritten() {
        let text = b"id:0000002a sub:001 dlvrd:001 stat:DELIVRD err:000 text:hi";
        let tlvs = [
            0x00, 0x1E, 0x00, 0x09, b'0', b'0', b'0', b'0', b'0', b'0', b'2', b'a', 0,
        ];
        assert_eq!(receipt_id(text, &tlvs).as_deref(), Some("0000002a"));
        assert_eq!(receipt_id(text, &[]).as_deref(), Some("0000002a"));
        let (t, v) = rewrite(text, &tlvs, "S7");
        assert_eq!(
            t,
            b"id:S7 sub:001 dlvrd:001 stat:DELIVRD err:000 text:hi".to_vec()
        );
        assert_eq!(v, vec![0x00, 0x1E, 0x00, 0x03, b'S', b'7', 0]);
        // "msgid:" is not "id:".
        assert_eq!(receipt_id(b"msgid:1 id:2", &[]).as_deref(), Some("2"));
    }

    #[test]
    fn records_round_trip_and_survive_reopen() {
        let dir = std::env::temp_dir().join(format!("siphon-smpp-store-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let cfg = StoreConfig {
            path: dir.join("q.redb"),
            retry: super::super::config::StoreRetry::default(),
            max_queue: 2,
            max_receipts: 2,
            expire_secs: 0,
        };
        let send = SmppSend {
            core: 0,
            worker: 0,
            token: 0,
            session_id: "up".into(),
            command: "submit_sm".into(),
            source_addr: "1".into(),
            destination_addr: "2".into(),
            short_message: b"hello".to_vec(),
            octets: [1, 1, 1, 1, 0, 0, 0, 1, 0],
            service_type: String::new(),
            tlvs: Vec::new(),
            via: Some(Box::new(SmppVia {
                store: Some("esme".into()),
                ..SmppVia::default()
            })),
        };
        {
            let st = Store::open(cfg.clone()).expect("open");
            assert!(st.reserve() && st.reserve() && !st.reserve());
            let (a, b) = (st.next_id(), st.next_id());
            let mut multi = send.clone();
            multi.command = "submit_sm_multi".into();
            if let Some(v) = multi.via.as_deref_mut() {
                v.destinations = vec!["31".into(), "32".into()];
            }
            st.commit(&[
                Op::Queue(a, Box::new(send.clone()), 1_700_000_000),
                Op::Queue(b, Box::new(multi), 1_700_000_001),
                Op::Unqueue(a),
                Op::MapId {
                    key: map_key("up", "x1"),
                    ours: a,
                    esme: "esme".into(),
                    receipts: 1,
                },
                Op::MapId {
                    key: map_key("up", "m1"),
                    ours: b,
                    esme: "esme".into(),
                    receipts: 2,
                },
            ])
            .expect("commit");
        }
        let st = Store::open(cfg).expect("reopen");
        let got = st.take_loaded("up");
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].1.short_message, b"hello");
        assert_eq!(got[0].1.command, "submit_sm_multi");
        let dests = got[0].1.via.as_deref().map(|v| v.destinations.clone());
        assert_eq!(dests, Some(vec!["31".to_owned(), "32".to_owned()]));
        assert_eq!(got[0].2, 1_700_000_001);
        assert_eq!(st.lookup("up", "x1"), Some((1, "esme".into())));
        assert!(st.next_id() > got[0].0);
        // A submit_multi's map entry stays until its last receipt.
        st.commit(&[Op::UnmapId(map_key("up", "m1"))])
            .expect("commit");
        assert_eq!(st.lookup("up", "m1"), Some((2, "esme".into())));
        st.commit(&[Op::UnmapId(map_key("up", "m1"))])
            .expect("commit");
        assert_eq!(st.lookup("up", "m1"), None);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn receipt_dates_are_utc_yymmddhhmm() {
        assert_eq!(receipt_date(0), "7001010000");
        // 2026-12-06 09:35:00 UTC.
        assert_eq!(receipt_date(1_796_549_700), "2612060935");
        // 2024-02-29 23:59 UTC (leap day).
        assert_eq!(receipt_date(1_709_251_140), "2402292359");
    }
}
