//! Nonce-count replay protection: for every nonce in use, the highest `nc` accepted and a
//! 64-entry window below it (the IPsec anti-replay scheme), in a bounded, sharded table.
//!
//! RFC 7616 §3.4 and §5.5: the server checks that `nc` was not used before with this nonce.
//! A repeated `nc` is refused; an `nc` up to 63 below the highest is accepted once (requests
//! sent in parallel over one nonce may arrive out of order); anything older is refused.
//!
//! The table is bounded: when a shard is full, its oldest entry is dropped and the shard's
//! *watermark* rises to that nonce's issue time. A nonce that is not in the table and was
//! issued at or before the watermark is refused (as stale, so the client retries with a fresh
//! nonce) instead of being accepted as new: eviction can never reopen a replay.
//! Entries older than the nonce TTL are dropped first, since stale nonces are refused anyway.
//! Shared by all cores (`Send + Sync`, `&self` methods, one `Mutex` per shard).

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use super::nonce::NonceId;

/// Width of the out-of-order window below the highest `nc`.
pub const WINDOW: u32 = 64;
const SHARDS: usize = 16;

/// Why an `nc` was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NcRejection {
    /// This `nc` was already used with this nonce, or `nc` is 0.
    Replayed,
    /// More than [`WINDOW`] below the highest `nc` seen for this nonce.
    TooOld,
    /// The nonce's window was evicted from the bounded table; its state is unknown.
    Forgotten,
}

#[derive(Debug, Clone, Copy)]
struct Window {
    highest: u32,
    /// Bit `i` set: `highest - i` was used.
    seen: u64,
}

#[derive(Debug, Default)]
struct Shard {
    map: HashMap<NonceId, Window>,
    order: VecDeque<NonceId>,
    watermark: Option<u64>,
}

/// Bounded per-nonce `nc` windows.
#[derive(Debug)]
pub struct NonceCountTracker {
    shards: Vec<Mutex<Shard>>,
    per_shard: usize,
}

impl NonceCountTracker {
    /// A tracker holding about `capacity` nonces in total (at least one per shard).
    #[must_use]
    pub fn new(capacity: usize) -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Mutex::new(Shard::default())).collect(),
            per_shard: capacity.div_ceil(SHARDS).max(1),
        }
    }

    /// Records `nc` for the nonce `id` if it was not used before.
    ///
    /// `now_secs` and `ttl_secs` let expired entries be dropped before live ones.
    pub fn check_and_record(
        &self,
        id: NonceId,
        nc: u32,
        now_secs: u64,
        ttl_secs: u64,
    ) -> Result<(), NcRejection> {
        if nc == 0 {
            return Err(NcRejection::Replayed);
        }
        // The counter increments per issued nonce, so it spreads nonces evenly.
        let idx = usize::try_from(id.counter % SHARDS as u64).unwrap_or(0);
        let mut shard = match self.shards[idx].lock() {
            Ok(g) => g,
            // A panic while holding the lock cannot leave a window half-updated in a way that
            // reopens a replay (each update is a single assignment), so keep going.
            Err(p) => p.into_inner(),
        };
        if let Some(w) = shard.map.get_mut(&id) {
            return advance(w, nc);
        }
        if shard.watermark.is_some_and(|wm| id.issued_secs <= wm) {
            return Err(NcRejection::Forgotten);
        }
        // Drop expired entries (they are refused as stale before reaching here).
        while let Some(front) = shard.order.front().copied() {
            if now_secs.saturating_sub(front.issued_secs) > ttl_secs {
                shard.order.pop_front();
                shard.map.remove(&front);
            } else {
                break;
            }
        }
        while shard.map.len() >= self.per_shard {
            let Some(old) = shard.order.pop_front() else {
                break;
            };
            shard.map.remove(&old);
            shard.watermark = Some(shard.watermark.unwrap_or(0).max(old.issued_secs));
        }
        shard.map.insert(
            id,
            Window {
                highest: nc,
                seen: 1,
            },
        );
        shard.order.push_back(id);
        Ok(())
    }

    /// Number of nonces currently tracked.
    #[must_use]
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| {
                s.lock()
                    .map_or_else(|p| p.into_inner().map.len(), |g| g.map.len())
            })
            .sum()
    }

    /// Whether no nonce is tracked.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn advance(w: &mut Window, nc: u32) -> Result<(), NcRejection> {
    if nc > w.highest {
        let shift = nc - w.highest;
        w.seen = if shift >= 64 { 0 } else { w.seen << shift };
        w.seen |= 1;
        w.highest = nc;
        return Ok(());
    }
    let back = w.highest - nc;
    if back >= WINDOW {
        return Err(NcRejection::TooOld);
    }
    let bit = 1u64 << back;
    if w.seen & bit != 0 {
        return Err(NcRejection::Replayed);
    }
    w.seen |= bit;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(secs: u64, counter: u64) -> NonceId {
        NonceId {
            issued_secs: secs,
            counter,
        }
    }

    #[test]
    fn replay_and_reorder() {
        let t = NonceCountTracker::new(1024);
        let n = id(100, 1);
        assert_eq!(t.check_and_record(n, 1, 100, 300), Ok(()));
        assert_eq!(
            t.check_and_record(n, 1, 100, 300),
            Err(NcRejection::Replayed)
        );
        assert_eq!(t.check_and_record(n, 3, 100, 300), Ok(()));
        // 2 arrives late: accepted once.
        assert_eq!(t.check_and_record(n, 2, 100, 300), Ok(()));
        assert_eq!(
            t.check_and_record(n, 2, 100, 300),
            Err(NcRejection::Replayed)
        );
        assert_eq!(t.check_and_record(n, 100, 100, 300), Ok(()));
        assert_eq!(
            t.check_and_record(n, 36, 100, 300),
            Err(NcRejection::TooOld)
        );
        assert_eq!(t.check_and_record(n, 37, 100, 300), Ok(()));
        assert_eq!(
            t.check_and_record(n, 0, 100, 300),
            Err(NcRejection::Replayed)
        );
        // Other nonces are independent.
        assert_eq!(t.check_and_record(id(100, 2), 1, 100, 300), Ok(()));
    }

    #[test]
    fn eviction_never_reopens_replay() {
        // 16 shards x 1 entry; counters 0, 16, 32 share shard 0.
        let t = NonceCountTracker::new(16);
        assert_eq!(t.check_and_record(id(10, 0), 1, 10, 300), Ok(()));
        assert_eq!(t.check_and_record(id(11, 16), 1, 11, 300), Ok(()));
        // id(10, 0) was evicted: a replay of its nc=1 is refused as forgotten.
        assert_eq!(
            t.check_and_record(id(10, 0), 1, 11, 300),
            Err(NcRejection::Forgotten)
        );
        // A newer nonce is still accepted.
        assert_eq!(t.check_and_record(id(12, 32), 1, 12, 300), Ok(()));
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn expired_entries_dropped_without_watermark() {
        let t = NonceCountTracker::new(16);
        assert_eq!(t.check_and_record(id(10, 0), 1, 10, 300), Ok(()));
        // 400 s later the first entry is expired and removed, not evicted.
        assert_eq!(t.check_and_record(id(400, 16), 1, 400, 300), Ok(()));
        assert_eq!(t.check_and_record(id(401, 32), 1, 401, 300), Ok(()));
        assert!(!t.is_empty());
    }
}
