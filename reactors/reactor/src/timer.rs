//! Hierarchical timer wheel owned by one reactor (one per core, never shared).
//!
//! Six levels of 64 slots with a 1 ms tick cover about 2 000 years, so there is no overflow
//! list. Insert and cancel are O(1); `advance` touches only occupied slots, found through a
//! per-level occupancy bitmap, so a reactor that slept for minutes does not walk empty ticks.
//! Entries on higher levels cascade down when their slot comes due (the classic Varghese &
//! Lauck scheme, as in the Linux kernel and tokio). Time is passed in by the caller: the wheel
//! never reads a clock, which keeps it deterministic in tests.

const LEVELS: usize = 6;
const SLOT_BITS: u32 = 6;
const SLOTS: usize = 1 << SLOT_BITS;

/// Handle to a scheduled timer; stale handles (fired or cancelled) are detected.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TimerId {
    index: u32,
    generation: u32,
}

#[derive(Debug)]
struct Entry<T> {
    deadline: u64,
    generation: u32,
    /// `None` once fired or cancelled; the index is freed when its slot is next processed.
    value: Option<T>,
    /// Still referenced from a slot list.
    linked: bool,
}

/// A timer wheel keyed by ticks (the runtime uses milliseconds since it started).
#[derive(Debug)]
pub struct TimerWheel<T> {
    elapsed: u64,
    slots: Vec<Vec<u32>>,
    occupied: [u64; LEVELS],
    entries: Vec<Entry<T>>,
    free: Vec<u32>,
    live: usize,
}

impl<T> Default for TimerWheel<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> TimerWheel<T> {
    /// An empty wheel at tick 0.
    pub fn new() -> Self {
        Self {
            elapsed: 0,
            slots: (0..LEVELS * SLOTS).map(|_| Vec::new()).collect(),
            occupied: [0; LEVELS],
            entries: Vec::new(),
            free: Vec::new(),
            live: 0,
        }
    }

    /// The tick up to which every due timer has been returned.
    pub fn elapsed(&self) -> u64 {
        self.elapsed
    }

    /// Number of timers scheduled and not yet fired or cancelled.
    pub fn len(&self) -> usize {
        self.live
    }

    /// True when no timer is scheduled.
    pub fn is_empty(&self) -> bool {
        self.live == 0
    }

    /// Schedule `value` at `deadline` (a tick). A deadline in the past fires on the next advance.
    pub fn insert(&mut self, deadline: u64, value: T) -> TimerId {
        let index = match self.free.pop() {
            Some(i) => {
                let e = &mut self.entries[i as usize];
                e.generation = e.generation.wrapping_add(1);
                e.deadline = deadline;
                e.value = Some(value);
                i
            }
            None => {
                self.entries.push(Entry {
                    deadline,
                    generation: 0,
                    value: Some(value),
                    linked: false,
                });
                (self.entries.len() - 1) as u32
            }
        };
        self.live += 1;
        self.link(index);
        TimerId {
            index,
            generation: self.entries[index as usize].generation,
        }
    }

    /// Cancel a timer; returns its value if it was still pending.
    pub fn cancel(&mut self, id: TimerId) -> Option<T> {
        let e = self.entries.get_mut(id.index as usize)?;
        if e.generation != id.generation {
            return None;
        }
        let v = e.value.take()?;
        self.live -= 1;
        Some(v)
    }

    fn link(&mut self, index: u32) {
        let deadline = self.entries[index as usize].deadline.max(self.elapsed + 1);
        let level = Self::level_for(self.elapsed, deadline);
        let slot = ((deadline >> (SLOT_BITS * level as u32)) as usize) & (SLOTS - 1);
        self.slots[level * SLOTS + slot].push(index);
        self.occupied[level] |= 1 << slot;
        self.entries[index as usize].linked = true;
    }

    fn level_for(elapsed: u64, deadline: u64) -> usize {
        let masked = (elapsed ^ deadline) | (SLOTS as u64 - 1);
        let significant = 63 - masked.leading_zeros();
        ((significant / SLOT_BITS) as usize).min(LEVELS - 1)
    }

    /// The tick at which the earliest occupied slot comes due, if any timer is scheduled.
    /// It may be earlier than the real deadline (a cascade point), never later.
    pub fn next_deadline(&self) -> Option<u64> {
        self.next_slot().map(|(_, _, t)| t)
    }

    fn next_slot(&self) -> Option<(usize, usize, u64)> {
        for level in 0..LEVELS {
            let shift = SLOT_BITS * level as u32;
            let pos = ((self.elapsed >> shift) as usize) & (SLOTS - 1);
            let ahead = self.occupied[level] & (u64::MAX << pos);
            if ahead != 0 {
                let slot = ahead.trailing_zeros() as u64;
                let span_bits = shift + SLOT_BITS;
                let base = if span_bits >= 64 {
                    0
                } else {
                    self.elapsed & !((1u64 << span_bits) - 1)
                };
                return Some((level, slot as usize, base + (slot << shift)));
            }
        }
        None
    }

    /// Move time forward to `now` and append every timer due at or before it to `fired`.
    pub fn advance(&mut self, now: u64, fired: &mut Vec<(TimerId, T)>) {
        while let Some((level, slot, t)) = self.next_slot() {
            if t > now {
                break;
            }
            self.elapsed = self.elapsed.max(t);
            self.occupied[level] &= !(1u64 << slot);
            let list = std::mem::take(&mut self.slots[level * SLOTS + slot]);
            for &index in &list {
                let e = &mut self.entries[index as usize];
                e.linked = false;
                if e.value.is_none() {
                    self.free.push(index);
                    continue;
                }
                if e.deadline <= self.elapsed || level == 0 {
                    let v = e.value.take().expect("checked above");
                    self.live -= 1;
                    fired.push((
                        TimerId {
                            index,
                            generation: e.generation,
                        },
                        v,
                    ));
                    self.free.push(index);
                } else {
                    self.link(index);
                }
            }
            // Keep the list's allocation for reuse.
            let mut list = list;
            list.clear();
            if self.slots[level * SLOTS + slot].is_empty() {
                self.slots[level * SLOTS + slot] = list;
            }
        }
        self.elapsed = self.elapsed.max(now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(w: &mut TimerWheel<u32>, now: u64) -> Vec<u32> {
        let mut out = Vec::new();
        w.advance(now, &mut out);
        out.into_iter().map(|(_, v)| v).collect()
    }

    #[test]
    fn fires_in_order_across_levels() {
        let mut w = TimerWheel::new();
        let deadlines = [
            1u64, 5, 63, 64, 65, 100, 4095, 4096, 5000, 300_000, 20_000_000,
        ];
        for (i, d) in deadlines.iter().enumerate() {
            w.insert(*d, i as u32);
        }
        assert_eq!(w.len(), deadlines.len());
        for (i, d) in deadlines.iter().enumerate() {
            assert!(drain(&mut w, d - 1).is_empty(), "nothing before {d}");
            assert_eq!(drain(&mut w, *d), vec![i as u32], "timer {i} at {d}");
        }
        assert!(w.is_empty());
        assert_eq!(w.next_deadline(), None);
    }

    #[test]
    fn big_jump_fires_everything_and_next_deadline_never_late() {
        let mut w = TimerWheel::new();
        let mut x: u64 = 12345;
        let mut all = Vec::new();
        for i in 0..2000u32 {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let d = 1 + (x >> 33) % 1_000_000;
            all.push(d);
            w.insert(d, i);
        }
        let mut now = 0;
        let mut count = 0;
        while let Some(n) = w.next_deadline() {
            assert!(n > now);
            let fired = {
                let mut out = Vec::new();
                w.advance(n, &mut out);
                out
            };
            for (_, v) in &fired {
                // next_deadline is never later than the earliest deadline, so each timer fires
                // exactly at its tick: neither early nor late.
                assert_eq!(all[*v as usize], n);
            }
            count += fired.len();
            now = n;
        }
        assert_eq!(count, 2000);
    }

    #[test]
    fn cancel_and_stale_ids() {
        let mut w = TimerWheel::new();
        let a = w.insert(10, 1u32);
        let b = w.insert(10, 2u32);
        assert_eq!(w.cancel(a), Some(1));
        assert_eq!(w.cancel(a), None);
        assert_eq!(drain(&mut w, 10), vec![2]);
        assert_eq!(w.cancel(b), None, "fired timer cannot be cancelled");
        let c = w.insert(3, 3u32); // in the past: fires on the next advance
        assert_ne!(c, a);
        assert_eq!(drain(&mut w, 11), vec![3]);
    }
}
