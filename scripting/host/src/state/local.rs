//! `registrar.backend: local`: the in-memory location store plus an embedded redb file, so
//! registrations survive a restart and a `kill -9`.
//!
//! Reads (lookups, INVITE routing) are served from memory only. Every committed update of an
//! AoR records the AoR's new binding list in a pending map *under the memory shard's lock*
//! (so two updates of one AoR reach the file in the order they were applied) and takes a
//! sequence number from the [`CommitLog`]. One writer thread drains the whole pending map into
//! one redb write transaction and commits it (redb's default durability: fsync before
//! `commit` returns), then advances the log. That is group commit: while one fsync runs, every
//! REGISTER that arrives queues for the next one, so the cost of an fsync is shared by a batch
//! instead of paid per REGISTER. The worker holds each 200 OK until its sequence number is
//! committed (`worker.rs`), so a 200 never leaves before its binding is on disk, and the
//! interpreter keeps routing in the meantime.
//!
//! Why redb (README "Dependency notes"): pure Rust, ACID with checksummed copy-on-write
//! commits (a torn write is never visible after a crash), no C toolchain, maintained.
//!
//! On open the file is read once: bindings that expired while the node was down are dropped
//! (and deleted from the file); the rest are loaded into memory before the script host
//! starts, so before the node binds its SIP sockets and before `/ready` answers 200.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use redb::{Database, ReadableTable, TableDefinition};
use siphon_sip::registrar::{
    Aor, Binding, Commit, Expired, LocationStore, MemoryLocationStore, StoreError,
};

use super::codec::{decode_stored, encode_compact};
use super::{BackendStats, CommitLog, StateLog};
use crate::shared::lock;

const TABLE: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("bindings");

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
            Some(d) => std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| commit(d, &batch)))
                .unwrap_or_else(|_| Err("redb panicked during the commit".into())),
            // Every update taken above is in memory already, so the rewrite covers `seq`.
            None => {
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| rebuild(path, &inner.mem)))
                    .unwrap_or_else(|_| Err("redb panicked during the rewrite".into()))
                    .map(|d| {
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

fn commit(db: &Database, batch: &HashMap<Aor, Option<Vec<u8>>>) -> Result<(), String> {
    let e = |e: &dyn std::fmt::Display| e.to_string();
    // In key order: consecutive inserts land in the leaf the previous one made writable.
    let mut sorted: Vec<_> = batch.iter().collect();
    sorted.sort_unstable_by(|a, b| a.0.as_str().cmp(b.0.as_str()));
    let w = db.begin_write().map_err(|x| e(&x))?;
    {
        let mut t = w.open_table(TABLE).map_err(|x| e(&x))?;
        for (aor, value) in sorted {
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
