//! `registrar.backend: local`: the in-memory location store plus an embedded redb file, so
//! registrations survive a restart and a `kill -9`.
//!
//! Reads (lookups, INVITE routing) are served from memory only. Every committed update of an
//! AoR records the AoR's new binding list, encoded, in a pending map *under the memory
//! shard's lock* (so two updates of one AoR reach the file in the order they were applied)
//! and takes a sequence number from the [`CommitLog`]. One writer thread drains the whole
//! pending map into one redb write transaction and commits it (redb's default durability:
//! fsync before `commit` returns), then advances the log. That is group commit: while one
//! fsync runs, every REGISTER that arrives queues for the next one (and commits start at most
//! every 2 ms), so the cost of an fsync is shared by a batch instead of paid per REGISTER.
//! The worker holds each 200 OK until its sequence number is committed
//! (`worker.rs`), so a 200 never leaves before its binding is on disk, and the interpreter
//! keeps routing in the meantime; past the commit timeout it answers 503 instead.
//!
//! The file has two tables: `bindings` (AoR → its bindings) and `log` (commit number → the
//! batch). A commit appends its batch to `log`; past 4 MiB of log, one transaction applies
//! the log to `bindings` and deletes it, and opening the file does the same first. (Updating `bindings` in place at every commit rewrote one 4 KiB leaf per AoR
//! per commit; appending touches the last leaf, and a fold rewrites each leaf once.) After a
//! failed commit the writer rewrites the whole file from memory.
//!
//! Why redb (README "Dependency notes"): pure Rust, ACID with checksummed copy-on-write
//! commits (a torn write is never visible after a crash), no C toolchain, maintained.
//!
//! On open the file is read once: bindings that expired while the node was down are dropped
//! (and deleted from the file); the rest are loaded into memory before the script host
//! starts, so before the node binds its SIP sockets and before `/ready` answers 200.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use redb::{Database, ReadableTable, ReadableTableMetadata, TableDefinition};
use siphon_sip::registrar::{
    Aor, Binding, Commit, Expired, LocationStore, MemoryLocationStore, StoreError,
};

use super::codec::{decode_stored, encode_compact};
use super::{BackendStats, CommitLog, StateLog};
use crate::shared::lock;

const TABLE: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("bindings");

/// Commits not folded into [`TABLE`] yet: commit number → that batch's AoR updates
/// ([`encode_batch`]). Appending one entry per commit touches the tree's last leaf only,
/// where updating the AoRs in place rewrote one leaf page per AoR at every commit (most of
/// the writer's CPU under load).
const LOG: TableDefinition<'_, u64, &[u8]> = TableDefinition::new("log");

/// Log bytes past which the writer folds the log into [`TABLE`] (one transaction that
/// rewrites each touched leaf once, however many AoRs it holds).
const FOLD_AT: u64 = 4 << 20;

/// Most entries the writer's reused batch map may keep room for between batches.
const SPARE_CAP: usize = 4096;

/// Least time between the starts of two commits (see [`writer`]).
const MIN_COMMIT_INTERVAL: Duration = Duration::from_millis(2);

/// Why the local store could not open.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LocalStoreError {
    /// The file could not be created, opened or repaired.
    #[error("cannot open registrar store {path}: {reason}")]
    Open {
        /// The file.
        path: std::path::PathBuf,
        /// What redb said.
        reason: String,
    },
}

#[derive(Default)]
struct Pending {
    /// AoR → its binding list after the latest update, already encoded
    /// ([`encode_compact`]; `None`: remove the AoR).
    map: HashMap<Aor, Option<Vec<u8>>>,
    /// Sequence number of the latest update in `map`.
    seq: u64,
    shutdown: bool,
}

struct Inner {
    /// What lookups read, and what the writer rewrites the file from after a failure.
    mem: MemoryLocationStore,
    pending: Mutex<Pending>,
    cv: Condvar,
    commits: Arc<CommitLog>,
    stats: Arc<BackendStats>,
}

/// The memory store with a group-committed redb file behind it.
pub struct LocalLocationStore {
    inner: Arc<Inner>,
    writer: Mutex<Option<JoinHandle<()>>>,
}

impl std::fmt::Debug for LocalLocationStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalLocationStore").finish_non_exhaustive()
    }
}

impl LocalLocationStore {
    /// Open (or create) the file at `path`, load what has not expired at `now`, and start
    /// the writer thread; a REGISTER's 200 OK waits at most `commit_timeout` for its commit.
    /// Returns the store and the number of bindings loaded.
    pub fn open(
        path: &Path,
        now: SystemTime,
        commit_timeout: Duration,
        log: StateLog,
    ) -> Result<(Self, usize), LocalStoreError> {
        ignore_sigxfsz();
        let err = |e: &dyn std::fmt::Display| LocalStoreError::Open {
            path: path.to_owned(),
            reason: e.to_string(),
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| err(&e))?;
        }
        let db = Database::create(path).map_err(|e| err(&e))?;
        // Commits logged but not folded before the last stop go into the table first.
        fold(&db).map_err(|e| err(&e))?;
        let mem = MemoryLocationStore::new();
        let mut loaded = 0usize;
        let mut gone: Vec<String> = Vec::new();
        {
            let w = db.begin_write().map_err(|e| err(&e))?;
            {
                let table = w.open_table(TABLE).map_err(|e| err(&e))?;
                for item in table.iter().map_err(|e| err(&e))? {
                    let (k, v) = item.map_err(|e| err(&e))?;
                    let aor_s = k.value();
                    let Ok(aor) = Aor::from_uri(aor_s) else {
                        gone.push(aor_s.to_owned());
                        continue;
                    };
                    let Some(mut list) = decode_stored(v.value()) else {
                        log(
                            true,
                            &format!("registrar store: undecodable entry for {aor_s}; dropped"),
                        );
                        gone.push(aor_s.to_owned());
                        continue;
                    };
                    list.retain(|b| !b.is_expired(now));
                    if list.is_empty() {
                        gone.push(aor_s.to_owned());
                        continue;
                    }
                    loaded += list.len();
                    let _ = mem.update(&aor, &mut |l| {
                        *l = std::mem::take(&mut list);
                        Commit::Yes
                    });
                }
            }
            {
                let mut table = w.open_table(TABLE).map_err(|e| err(&e))?;
                for k in &gone {
                    table.remove(k.as_str()).map_err(|e| err(&e))?;
                }
            }
            w.commit().map_err(|e| err(&e))?;
        }
        if !gone.is_empty() {
            log(
                false,
                &format!(
                    "registrar store: dropped {} AoRs that expired while the node was down",
                    gone.len()
                ),
            );
        }
        let stats = Arc::new(BackendStats::default());
        stats.up.store(true, Ordering::Relaxed);
        let inner = Arc::new(Inner {
            mem,
            pending: Mutex::new(Pending::default()),
            cv: Condvar::new(),
            commits: CommitLog::with_hold_limit(commit_timeout),
            stats,
        });
        let w = Arc::clone(&inner);
        let file = path.to_owned();
        let writer = std::thread::Builder::new()
            .name("siphon-regstore".into())
            .spawn(move || writer(&w, db, &file, &log))
            .map_err(|e| err(&e))?;
        Ok((
            Self {
                inner,
                writer: Mutex::new(Some(writer)),
            },
            loaded,
        ))
    }

    /// The commit log the worker holds 200 OKs against.
    pub fn commits(&self) -> &Arc<CommitLog> {
        &self.inner.commits
    }

    /// Counters for `/metrics`.
    pub fn stats(&self) -> &Arc<BackendStats> {
        &self.inner.stats
    }

    fn record(&self, aor: &Aor, list: &[Binding]) {
        // Encoded here, not copied for the writer: one allocation instead of a clone of
        // every string of every binding, and the writer's batch is plain bytes.
        let value = (!list.is_empty()).then(|| encode_compact(list));
        let mut p = lock(&self.inner.pending);
        let was_empty = p.map.is_empty();
        p.map.insert(aor.clone(), value);
        p.seq = self.inner.commits.next();
        self.inner
            .stats
            .queued
            .store(p.map.len() as u64, Ordering::Relaxed);
        drop(p);
        // The writer only waits while the map is empty; a notify costs a futex syscall.
        if was_empty {
            self.inner.cv.notify_one();
        }
    }

    /// Stop the writer after it committed what is pending.
    pub fn close(&self) {
        lock(&self.inner.pending).shutdown = true;
        self.inner.cv.notify_one();
        if let Some(t) = lock(&self.writer).take() {
            let _ = t.join();
        }
    }
}

impl Drop for LocalLocationStore {
    fn drop(&mut self) {
        self.close();
    }
}

/// A write past `RLIMIT_FSIZE` raises SIGXFSZ, whose default action kills the process; with
/// it ignored the write fails with `EFBIG` and the store treats it as any failed commit
/// (replies held, then 503), as it does a full disk.
fn ignore_sigxfsz() {
    // SAFETY: installs the SIG_IGN disposition for one signal; no handler code runs, and no
    // other part of the node handles SIGXFSZ.
    unsafe {
        libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
    }
}

fn writer(inner: &Inner, db: Database, path: &Path, log: &StateLog) {
    // `None` after a failed commit: redb refuses every operation after an I/O error, and
    // its repair of a file that saw partial writes in a live process is not to be trusted
    // (seen: a panic freeing a page twice on the next commit). The writer then rewrites the
    // file from memory instead (see `rebuild`).
    let mut db = Some(db);
    let mut failing = false;
    let interval = MIN_COMMIT_INTERVAL;
    let mut last: Option<Instant> = None;
    // The map handed back after each commit, emptied with its capacity kept, so the next
    // batch does not regrow a fresh one insert by insert.
    let mut spare: HashMap<Aor, Option<Vec<u8>>> = HashMap::new();
    // Next log key and log bytes since the last fold (the log is empty after open).
    let (mut log_id, mut log_bytes) = (0u64, 0u64);
    loop {
        {
            let mut p = lock(&inner.pending);
            while p.map.is_empty() && !p.shutdown {
                p = inner
                    .cv
                    .wait(p)
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
            }
            if p.map.is_empty() && p.shutdown {
                return;
            }
        }
        // Group commit: start commits at most once per interval, so under load a batch
        // gathers what arrived meanwhile (the CPU cost of a commit is mostly per commit, not
        // per AoR); a write that finds the writer idle for longer is committed at once.
        if let Some(due) = last.map(|t| t + interval) {
            let now = Instant::now();
            if now < due {
                std::thread::sleep(due - now);
            }
        }
        last = Some(Instant::now());
        let (batch, seq) = {
            let mut p = lock(&inner.pending);
            (
                std::mem::replace(&mut p.map, std::mem::take(&mut spare)),
                p.seq,
            )
        };
        let n = batch.len() as u64;
        let result = match &db {
            Some(d) => std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                let bytes = append(d, &batch, log_id)?;
                log_id += 1;
                log_bytes += bytes;
                if log_bytes < FOLD_AT {
                    return Ok(());
                }
                // The batch is durable already; a failed fold only costs a rewrite.
                inner.commits.advance(seq);
                log_bytes = 0;
                fold(d)
            }))
            .unwrap_or_else(|_| Err("redb panicked during the commit".into())),
            // Every update taken above is in memory already, so the rewrite covers `seq`.
            None => {
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| rebuild(path, &inner.mem)))
                    .unwrap_or_else(|_| Err("redb panicked during the rewrite".into()))
                    .map(|d| {
                        // A fresh file: empty log.
                        (log_id, log_bytes) = (0, 0);
                        db = Some(d);
                    })
            }
        };
        match result {
            Ok(()) => {
                if failing {
                    log(false, "registrar store: writes succeed again");
                    failing = false;
                }
                inner.stats.commits.fetch_add(1, Ordering::Relaxed);
                inner.stats.writes.fetch_add(n, Ordering::Relaxed);
                inner
                    .stats
                    .queued
                    .store(lock(&inner.pending).map.len() as u64, Ordering::Relaxed);
                inner.commits.advance(seq);
                // Keep the map's room for the next batch, unless a burst made it large.
                if batch.capacity() <= SPARE_CAP {
                    spare = batch;
                    spare.clear();
                }
            }
            Err(e) => {
                inner.stats.errors.fetch_add(1, Ordering::Relaxed);
                if !failing {
                    log(
                        true,
                        &format!(
                            "registrar store: commit failed ({e}); 200 OKs are held until it \
                             succeeds, at most {} ms (then 503)",
                            inner.commits.hold_limit().as_millis()
                        ),
                    );
                    failing = true;
                }
                // Close the file, put the batch back under anything newer and retry (a
                // rewrite from memory) shortly; meanwhile workers answer the replies held
                // past the commit timeout with 503.
                db = None;
                let mut p = lock(&inner.pending);
                if p.shutdown {
                    log(
                        true,
                        &format!(
                            "registrar store: stopping with {} AoR updates not written ({e})",
                            p.map.len() + batch.len()
                        ),
                    );
                    return;
                }
                for (k, v) in batch {
                    p.map.entry(k).or_insert(v);
                }
                drop(p);
                inner.commits.nudge();
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
}

/// Write every AoR in memory to a fresh file beside `path`, then rename it over `path` and
/// open it. Used after a failed commit: it does not depend on the old file at all.
fn rebuild(path: &Path, mem: &MemoryLocationStore) -> Result<Database, String> {
    let e = |e: &dyn std::fmt::Display| e.to_string();
    let tmp = path.with_extension("rebuild");
    let _ = std::fs::remove_file(&tmp);
    let mut all: Vec<(String, Vec<u8>)> = Vec::new();
    mem.for_each(|aor, list| {
        if !list.is_empty() {
            all.push((aor.as_str().to_owned(), encode_compact(list)));
        }
    });
    all.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    {
        let db = Database::create(&tmp).map_err(|x| e(&x))?;
        let w = db.begin_write().map_err(|x| e(&x))?;
        {
            let mut t = w.open_table(TABLE).map_err(|x| e(&x))?;
            for (k, v) in &all {
                t.insert(k.as_str(), v.as_slice()).map_err(|x| e(&x))?;
            }
        }
        w.commit().map_err(|x| e(&x))?;
    }
    std::fs::rename(&tmp, path).map_err(|x| e(&x))?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|x| e(&x))?;
    }
    Database::create(path).map_err(|x| e(&x))
}

/// A batch as one log value: per AoR its name, then 1 and its [`encode_compact`] value, or 0
/// (removed). Lengths are LEB128 varints.
fn encode_batch(batch: &HashMap<Aor, Option<Vec<u8>>>) -> Vec<u8> {
    use super::codec::{put_str, put_varint};
    let size: usize = batch
        .iter()
        .map(|(k, v)| k.as_str().len() + v.as_ref().map_or(0, Vec::len) + 21)
        .sum();
    let mut out = Vec::with_capacity(size);
    for (aor, value) in batch {
        put_str(&mut out, aor.as_str());
        match value {
            Some(v) => {
                out.push(1);
                put_varint(&mut out, v.len() as u64);
                out.extend_from_slice(v);
            }
            None => out.push(0),
        }
    }
    out
}

/// [`encode_batch`]'s records into `into` (later ones replace earlier ones); `None` when
/// the value is damaged (what decoded before the damage is kept).
fn decode_batch(bytes: &[u8], into: &mut BTreeMap<String, Option<Vec<u8>>>) -> Option<()> {
    let mut r = super::codec::Reader(bytes);
    while !r.0.is_empty() {
        let aor = r.str()?.to_owned();
        let value = match r.byte()? {
            0 => None,
            1 => {
                let n = r.small::<usize>()?;
                if n > r.0.len() {
                    return None;
                }
                let (v, rest) = r.0.split_at(n);
                r.0 = rest;
                Some(v.to_vec())
            }
            _ => return None,
        };
        into.insert(aor, value);
    }
    Some(())
}

/// Append `batch` to the log as entry `id` and commit; returns the bytes logged.
fn append(db: &Database, batch: &HashMap<Aor, Option<Vec<u8>>>, id: u64) -> Result<u64, String> {
    let e = |e: &dyn std::fmt::Display| e.to_string();
    let value = encode_batch(batch);
    let w = db.begin_write().map_err(|x| e(&x))?;
    {
        let mut t = w.open_table(LOG).map_err(|x| e(&x))?;
        t.insert(id, value.as_slice()).map_err(|x| e(&x))?;
    }
    w.commit().map_err(|x| e(&x))?;
    Ok(value.len() as u64)
}

/// Apply every logged batch, in order, to the bindings table and empty the log, in one
/// transaction (a crash leaves either the log or its result, never half of it).
fn fold(db: &Database) -> Result<(), String> {
    let e = |e: &dyn std::fmt::Display| e.to_string();
    let w = db.begin_write().map_err(|x| e(&x))?;
    let mut merged = BTreeMap::new();
    {
        let log = w.open_table(LOG).map_err(|x| e(&x))?;
        if log.is_empty().map_err(|x| e(&x))? {
            return Ok(());
        }
        for item in log.iter().map_err(|x| e(&x))? {
            let (_, v) = item.map_err(|x| e(&x))?;
            // redb checksums its pages, so damage is not expected; what decodes is kept.
            let _ = decode_batch(v.value(), &mut merged);
        }
    }
    {
        // In key order: each leaf of the table is rewritten once.
        let mut t = w.open_table(TABLE).map_err(|x| e(&x))?;
        for (aor, value) in &merged {
            match value {
                Some(v) => {
                    t.insert(aor.as_str(), v.as_slice()).map_err(|x| e(&x))?;
                }
                None => {
                    t.remove(aor.as_str()).map_err(|x| e(&x))?;
                }
            }
        }
    }
    w.delete_table(LOG).map_err(|x| e(&x))?;
    w.commit().map_err(|x| e(&x))
}

impl LocationStore for LocalLocationStore {
    fn get(&self, aor: &Aor) -> Result<Vec<Binding>, StoreError> {
        self.inner.mem.get(aor)
    }

    fn update(
        &self,
        aor: &Aor,
        f: &mut dyn FnMut(&mut Vec<Binding>) -> Commit,
    ) -> Result<Commit, StoreError> {
        // Record inside the shard lock: the file sees updates of one AoR in memory's order.
        self.inner.mem.update(aor, &mut |list| {
            let answer = f(list);
            if answer == Commit::Yes {
                self.record(aor, list);
            }
            answer
        })
    }

    fn sweep_expired(&self, now: SystemTime) -> Result<Expired, StoreError> {
        let out = self.inner.mem.sweep_expired(now)?;
        for (aor, _) in &out {
            // Write what is left now (under the lock, after any concurrent refresh).
            self.update(aor, &mut |_| Commit::Yes)?;
        }
        Ok(out)
    }

    fn aor_count(&self) -> Result<usize, StoreError> {
        self.inner.mem.aor_count()
    }

    fn binding_count(&self) -> Result<usize, StoreError> {
        self.inner.mem.binding_count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use siphon_sip::registrar::ContactKey;
    use std::time::UNIX_EPOCH;

    fn b(uri: &str, now: SystemTime, secs: u64) -> Binding {
        Binding {
            key: ContactKey::from_uri(uri),
            uri: uri.into(),
            q: None,
            params: Vec::new(),
            expires_at: now + Duration::from_secs(secs),
            registered_at: now,
            updated_at: now,
            call_id: "c".into(),
            cseq: 1,
            path: vec!["<sip:p.example.com;lr>".into()],
            received: Some("sip:127.0.0.1:5070;transport=udp".into()),
            user_agent: None,
            instance_id: None,
            reg_id: None,
            flow_token: Some("f".into()),
            auth_user: None,
        }
    }

    fn quiet() -> StateLog {
        Arc::new(|_, _| {})
    }

    #[test]
    fn fold_applies_logged_batches_in_order() {
        let dir = std::env::temp_dir().join(format!("siphon-fold-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let db = Database::create(dir.join("f.redb")).unwrap();
        let now = SystemTime::now();
        let a = Aor::from_uri("sip:a@example.com").unwrap();
        let c = Aor::from_uri("sip:c@example.com").unwrap();
        let va = encode_compact(&[b("sip:a@10.0.0.1", now, 60)]);
        let vc = encode_compact(&[b("sip:c@10.0.0.3", now, 60)]);
        let vc2 = encode_compact(&[b("sip:c@10.0.0.4", now, 60)]);
        let batches: [HashMap<Aor, Option<Vec<u8>>>; 3] = [
            [(a.clone(), Some(va)), (c.clone(), Some(vc))].into(),
            [(a.clone(), None)].into(),
            [(c.clone(), Some(vc2.clone()))].into(),
        ];
        for (i, batch) in batches.iter().enumerate() {
            append(&db, batch, i as u64).unwrap();
        }
        fold(&db).unwrap();
        let r = db.begin_read().unwrap();
        let t = r.open_table(TABLE).unwrap();
        assert!(t.get(a.as_str()).unwrap().is_none());
        assert_eq!(t.get(c.as_str()).unwrap().unwrap().value(), vc2.as_slice());
        assert!(
            r.open_table(LOG)
                .is_err_and(|e| matches!(e, redb::TableError::TableDoesNotExist(_)))
        );
        let mut m = BTreeMap::new();
        assert_eq!(decode_batch(&[3, b'x'], &mut m), None);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn survives_reopen_and_drops_expired() {
        let dir = std::env::temp_dir().join(format!("siphon-local-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let path = dir.join("reg.redb");
        // Whole milliseconds: the stored form keeps millisecond precision.
        let now = UNIX_EPOCH
            + Duration::from_millis(
                SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .unwrap()
                    .as_millis() as u64,
            );
        let (s, n) = LocalLocationStore::open(&path, now, Duration::from_secs(4), quiet()).unwrap();
        assert_eq!(n, 0);
        let a = Aor::from_uri("sip:alice@example.com").unwrap();
        let c = Aor::from_uri("sip:carol@example.com").unwrap();
        s.upsert(&a, b("sip:alice@10.0.0.1", now, 600)).unwrap();
        s.upsert(&c, b("sip:carol@10.0.0.3", now, 1)).unwrap();
        let t = s.commits().ticket();
        s.close();
        assert!(s.commits().done() >= t);
        drop(s);
        let later = now + Duration::from_secs(5);
        let (s, n) =
            LocalLocationStore::open(&path, later, Duration::from_secs(4), quiet()).unwrap();
        assert_eq!(n, 1);
        assert_eq!(s.get(&a).unwrap(), vec![b("sip:alice@10.0.0.1", now, 600)]);
        assert!(s.get(&c).unwrap().is_empty());
        s.remove_aor(&a).unwrap();
        drop(s);
        let (_, n) =
            LocalLocationStore::open(&path, later, Duration::from_secs(4), quiet()).unwrap();
        assert_eq!(n, 0);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
