//! The location service (RFC 3261 §10.2, §10.3): stored bindings, the [`LocationStore`]
//! trait every backend implements, and the in-memory backend (`registrar.backend: memory`).
//!
//! The store is shared by every core (DESIGN.md "State shared by all cores"): it is
//! `Send + Sync`, every method takes `&self`, and it is object-safe so the node holds an
//! `Arc<dyn LocationStore>`. Registrar policy (expiry rules, ordering, Call-ID/CSeq checks)
//! lives in [`super::Registrar`]; the store only keeps bindings and applies an update to one
//! AOR atomically ([`LocationStore::update`]). A Redis or SQL backend implements the same
//! trait (write-through, A4.1 of the reliability notes); expiry is always judged against the
//! `now` passed in, never against a clock of the store's own.

use std::collections::HashMap;
use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::sync::RwLock;
use std::time::SystemTime;

use super::Q;
use super::uri::{Aor, ContactKey};

/// One registered contact of an AOR.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binding {
    /// Identity of the binding within its AOR (normalised URI, or instance + reg-id).
    pub key: ContactKey,
    /// The contact URI as registered (without angle brackets).
    pub uri: String,
    /// The `q` parameter, if given ([`Binding::effective_q`] treats absent as 1).
    pub q: Option<Q>,
    /// Other Contact header parameters (not `q`, not `expires`), name and raw value, in order.
    pub params: Vec<(String, Option<String>)>,
    /// When the binding expires.
    pub expires_at: SystemTime,
    /// When the binding was first created (`Contact.age_secs` counts from the last refresh,
    /// see `updated_at`).
    pub registered_at: SystemTime,
    /// When the binding was last created or refreshed.
    pub updated_at: SystemTime,
    /// Call-ID of the REGISTER that last wrote it.
    pub call_id: String,
    /// CSeq number of the REGISTER that last wrote it.
    pub cseq: u32,
    /// The REGISTER's Path header values, in order (RFC 3327 §5.3).
    pub path: Vec<String>,
    /// Where the REGISTER came from (`received`, for NAT traversal), if the node recorded it.
    pub received: Option<String>,
    /// The REGISTER's User-Agent.
    pub user_agent: Option<String>,
    /// `+sip.instance` without quotes and angle brackets (RFC 5626 §4.1, RFC 5627).
    pub instance_id: Option<String>,
    /// `reg-id` (RFC 5626 §4.2).
    pub reg_id: Option<u32>,
    /// Opaque token for flow-based routing, set by the script.
    pub flow_token: Option<String>,
    /// The digest user that registered it.
    pub auth_user: Option<String>,
}

impl Binding {
    /// Whether the binding has expired at `now`.
    #[must_use]
    pub fn is_expired(&self, now: SystemTime) -> bool {
        self.expires_at <= now
    }

    /// Whole seconds left at `now` (0 when expired).
    #[must_use]
    pub fn remaining_secs(&self, now: SystemTime) -> u32 {
        self.expires_at
            .duration_since(now)
            .map_or(0, |d| u32::try_from(d.as_secs()).unwrap_or(u32::MAX))
    }

    /// Whole seconds since the last refresh.
    #[must_use]
    pub fn age_secs(&self, now: SystemTime) -> u64 {
        now.duration_since(self.updated_at)
            .map_or(0, |d| d.as_secs())
    }

    /// The q-value used for ordering: absent counts as 1.0.
    #[must_use]
    pub fn effective_q(&self) -> Q {
        self.q.unwrap_or(Q::ONE)
    }

    /// The Contact header field value for a 200 OK to REGISTER (RFC 3261 §10.3 step 8):
    /// `<uri>;expires=N[;q=..][;params]`, with the remaining lifetime at `now`.
    #[must_use]
    pub fn contact_header_value(&self, now: SystemTime) -> String {
        let mut s = String::with_capacity(self.uri.len() + 32);
        s.push('<');
        s.push_str(&self.uri);
        s.push_str(">;expires=");
        s.push_str(&self.remaining_secs(now).to_string());
        if let Some(q) = self.q {
            s.push_str(";q=");
            s.push_str(&q.to_string());
        }
        for (name, value) in &self.params {
            if name.eq_ignore_ascii_case("q") || name.eq_ignore_ascii_case("expires") {
                continue;
            }
            s.push(';');
            s.push_str(name);
            if let Some(v) = value {
                s.push('=');
                s.push_str(v);
            }
        }
        s
    }
}

/// Orders bindings for lookup: highest q first, then most recently refreshed, then URI.
pub fn sort_for_lookup(bindings: &mut [Binding]) {
    bindings.sort_by(|a, b| {
        b.effective_q()
            .cmp(&a.effective_q())
            .then_with(|| b.updated_at.cmp(&a.updated_at))
            .then_with(|| a.uri.cmp(&b.uri))
    });
}

/// A backend failure. The memory store never fails; remote backends map their errors here.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The backend could not be reached or timed out; the operation may be retried.
    #[error("location store unavailable")]
    Unavailable,
    /// The backend returned data that does not decode as bindings.
    #[error("location store returned corrupt data for an AOR")]
    Corrupt,
}

/// Whether an [`LocationStore::update`] closure wants its changes kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Commit {
    /// Keep the changes made to the list.
    Yes,
    /// Discard them; the AOR stays as it was.
    No,
}

/// AORs with the bindings a sweep removed.
pub type Expired = Vec<(Aor, Vec<Binding>)>;

/// Storage for bindings, keyed by AOR. Object-safe, `Send + Sync`, `&self` everywhere.
pub trait LocationStore: Send + Sync {
    /// All stored bindings of `aor` (expired ones included until swept; any order).
    fn get(&self, aor: &Aor) -> Result<Vec<Binding>, StoreError>;

    /// Atomically applies `f` to the bindings of `aor` (an empty list when unknown): no other
    /// update of this AOR runs in between. Changes are kept only if `f` returns
    /// [`Commit::Yes`]; an AOR left with no bindings is removed. Returns `f`'s answer.
    fn update(
        &self,
        aor: &Aor,
        f: &mut dyn FnMut(&mut Vec<Binding>) -> Commit,
    ) -> Result<Commit, StoreError>;

    /// Inserts a binding or replaces the one with the same key.
    fn upsert(&self, aor: &Aor, binding: Binding) -> Result<(), StoreError> {
        let mut slot = Some(binding);
        self.update(aor, &mut |list| {
            if let Some(b) = slot.take() {
                match list.iter_mut().find(|x| x.key == b.key) {
                    Some(x) => *x = b,
                    None => list.push(b),
                }
            }
            Commit::Yes
        })
        .map(|_| ())
    }

    /// Removes one binding; returns it if it existed.
    fn remove(&self, aor: &Aor, key: &ContactKey) -> Result<Option<Binding>, StoreError> {
        let mut removed = None;
        self.update(aor, &mut |list| {
            if let Some(i) = list.iter().position(|b| &b.key == key) {
                removed = Some(list.remove(i));
                Commit::Yes
            } else {
                Commit::No
            }
        })?;
        Ok(removed)
    }

    /// Removes every binding of `aor`; returns them.
    fn remove_aor(&self, aor: &Aor) -> Result<Vec<Binding>, StoreError> {
        let mut removed = Vec::new();
        self.update(aor, &mut |list| {
            removed = std::mem::take(list);
            Commit::Yes
        })?;
        Ok(removed)
    }

    /// Removes every binding expired at `now`; returns them grouped by AOR.
    fn sweep_expired(&self, now: SystemTime) -> Result<Expired, StoreError>;

    /// Number of AORs with at least one stored binding (`registrar.aor_count()`).
    fn aor_count(&self) -> Result<usize, StoreError>;

    /// Number of stored bindings (`siphon_registrations_active`).
    fn binding_count(&self) -> Result<usize, StoreError>;
}

type Shard = RwLock<HashMap<Aor, Vec<Binding>>>;

/// In-memory location store: AORs spread over shards, each a `HashMap` behind an `RwLock`,
/// so cores registering different AORs rarely contend. Lookups take a read lock.
#[derive(Debug)]
pub struct MemoryLocationStore {
    shards: Box<[Shard]>,
    hasher: RandomState,
}

impl Default for MemoryLocationStore {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryLocationStore {
    /// A store with 64 shards.
    #[must_use]
    pub fn new() -> Self {
        Self::with_shards(64)
    }

    /// A store with `n` shards (at least 1).
    #[must_use]
    pub fn with_shards(n: usize) -> Self {
        Self {
            shards: (0..n.max(1)).map(|_| RwLock::default()).collect(),
            hasher: RandomState::new(),
        }
    }

    /// Call `f` with every AOR and its bindings, one shard at a time under its read lock
    /// (consistent per shard; updates of other shards may interleave). A durable backend
    /// rewrites its file from it.
    pub fn for_each(&self, mut f: impl FnMut(&Aor, &[Binding])) {
        for shard in &*self.shards {
            for (aor, list) in read(shard).iter() {
                f(aor, list);
            }
        }
    }

    fn shard(&self, aor: &Aor) -> &Shard {
        let h = self.hasher.hash_one(aor.as_str());
        let n = self.shards.len() as u64;
        // n >= 1, and h % n < n fits usize because n came from a usize.
        let i = usize::try_from(h % n).unwrap_or(0);
        &self.shards[i]
    }
}

// A poisoned lock means a panic in another thread mid-update. Updates replace whole
// binding lists, so the data is still consistent: recover instead of failing every core.
fn read(s: &Shard) -> std::sync::RwLockReadGuard<'_, HashMap<Aor, Vec<Binding>>> {
    s.read().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn write(s: &Shard) -> std::sync::RwLockWriteGuard<'_, HashMap<Aor, Vec<Binding>>> {
    s.write().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl LocationStore for MemoryLocationStore {
    fn get(&self, aor: &Aor) -> Result<Vec<Binding>, StoreError> {
        Ok(read(self.shard(aor)).get(aor).cloned().unwrap_or_default())
    }

    fn update(
        &self,
        aor: &Aor,
        f: &mut dyn FnMut(&mut Vec<Binding>) -> Commit,
    ) -> Result<Commit, StoreError> {
        let mut map = write(self.shard(aor));
        let mut list = map.get(aor).cloned().unwrap_or_default();
        let answer = f(&mut list);
        if answer == Commit::Yes {
            if list.is_empty() {
                map.remove(aor);
            } else {
                // A pushed-to Vec has room for 4 bindings (~1.3 KiB); most AORs keep one.
                list.shrink_to_fit();
                map.insert(aor.clone(), list);
            }
        }
        Ok(answer)
    }

    fn sweep_expired(&self, now: SystemTime) -> Result<Expired, StoreError> {
        let mut out = Vec::new();
        for shard in &*self.shards {
            // Check under the read lock first so a sweep with nothing to do never blocks
            // registrations.
            if !read(shard)
                .values()
                .any(|l| l.iter().any(|b| b.is_expired(now)))
            {
                continue;
            }
            let mut map = write(shard);
            map.retain(|aor, list| {
                if list.iter().any(|b| b.is_expired(now)) {
                    let (gone, keep): (Vec<_>, Vec<_>) =
                        list.drain(..).partition(|b| b.is_expired(now));
                    *list = keep;
                    out.push((aor.clone(), gone));
                }
                !list.is_empty()
            });
        }
        Ok(out)
    }

    fn aor_count(&self) -> Result<usize, StoreError> {
        Ok(self.shards.iter().map(|s| read(s).len()).sum())
    }

    fn binding_count(&self) -> Result<usize, StoreError> {
        Ok(self
            .shards
            .iter()
            .map(|s| read(s).values().map(Vec::len).sum::<usize>())
            .sum())
    }
}
