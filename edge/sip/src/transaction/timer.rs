//! Transaction timers as data: the `Timer` names of RFC 3261 §17 (Table 4, A to K; L and M
//! from RFC 6026 §8), their configurable base values T1/T2/T4 (§17.1.1.1), and a
//! per-transaction table of deadlines.
//! Nothing here reads a clock; deadlines are computed from the `now` the caller passes in.

use std::time::{Duration, Instant};

/// One timer of RFC 3261 Table 4 (plus RFC 6026's L and M). `TimerC` is the proxy's INVITE
/// timer (§16.6 item 11), run by the proxy core.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Timer {
    /// INVITE client request retransmission (unreliable transports), starts at T1, doubles.
    TimerA,
    /// INVITE client transaction timeout, 64*T1.
    TimerB,
    /// Proxy INVITE transaction timeout (> 3 min), used by the proxy core.
    TimerC,
    /// Wait time for response retransmissions in INVITE client Completed (32 s / 0).
    TimerD,
    /// Non-INVITE client request retransmission, T1 doubling up to T2.
    TimerE,
    /// Non-INVITE client transaction timeout, 64*T1.
    TimerF,
    /// INVITE server final response retransmission, T1 doubling up to T2.
    TimerG,
    /// Wait time for ACK receipt, 64*T1.
    TimerH,
    /// Wait time for ACK retransmissions, T4 / 0.
    TimerI,
    /// Wait time for non-INVITE request retransmissions, 64*T1 / 0.
    TimerJ,
    /// Wait time for non-INVITE response retransmissions, T4 / 0.
    TimerK,
    /// RFC 6026: INVITE server Accepted state, absorbs INVITE retransmissions, 64*T1.
    TimerL,
    /// RFC 6026: INVITE client Accepted state, passes 2xx retransmissions up, 64*T1.
    TimerM,
}

/// When a timer is due ([`crate::transaction::TransactionLayer::poll_deadline`]). Ordered by
/// time; at the same time a timer that must be on time sorts first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Deadline {
    /// The earliest deadline.
    pub at: Instant,
    /// It only ends a wait ([`Timer::is_wait`]): firing it somewhat late changes nothing on
    /// the wire.
    pub wait: bool,
}

impl Timer {
    /// The timers that only end a transaction's wait for retransmissions (D, I, J, K and
    /// RFC 6026's L and M): when one fires the transaction just ends, so it may fire late.
    /// At a few hundred calls per second four of them come due per call.
    #[must_use]
    pub fn is_wait(self) -> bool {
        matches!(
            self,
            Self::TimerD | Self::TimerI | Self::TimerJ | Self::TimerK | Self::TimerL | Self::TimerM
        )
    }

    /// Every timer, in table order.
    pub const VALUES: [Self; 13] = [
        Self::TimerA,
        Self::TimerB,
        Self::TimerC,
        Self::TimerD,
        Self::TimerE,
        Self::TimerF,
        Self::TimerG,
        Self::TimerH,
        Self::TimerI,
        Self::TimerJ,
        Self::TimerK,
        Self::TimerL,
        Self::TimerM,
    ];
}

/// Base timer values (RFC 3261 §17.1.1.1 and Table 4). Defaults: T1 500 ms, T2 4 s, T4 5 s,
/// Timer D 32 s, Timer C 180 s.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimerConfig {
    /// RTT estimate.
    pub t1: Duration,
    /// Maximum retransmit interval for non-INVITE requests and INVITE responses.
    pub t2: Duration,
    /// Maximum duration a message remains in the network.
    pub t4: Duration,
    /// Timer D for unreliable transports ("at least 32 seconds").
    pub timer_d: Duration,
    /// Timer C of a proxy's INVITE branch ("greater than 3 minutes").
    pub timer_c: Duration,
}

impl Default for TimerConfig {
    fn default() -> Self {
        Self {
            t1: Duration::from_millis(500),
            t2: Duration::from_secs(4),
            t4: Duration::from_secs(5),
            timer_d: Duration::from_secs(32),
            timer_c: Duration::from_secs(181),
        }
    }
}

impl TimerConfig {
    /// 64*T1: Timers B, F, H and J.
    pub fn sixty_four_t1(&self) -> Duration {
        self.t1 * 64
    }
}

/// Deadlines of one transaction (quinn's `TimerTable`, compacted). No state of RFC 3261
/// Figures 5 to 8 runs more than two timers at once (A+B, E+F, G+H, else one of D, I, J, K,
/// L, M), so the table has two slots of (timer, deadline), not one per [`Timer`]: 48 bytes
/// instead of 208 per transaction.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct TimerTable {
    slots: [Option<(Timer, Instant)>; 2],
}

impl TimerTable {
    /// Arm `timer` at `at` (re-arm it when it runs already).
    pub(crate) fn set(&mut self, timer: Timer, at: Instant) {
        let slot = match self
            .slots
            .iter()
            .position(|s| s.is_some_and(|(t, _)| t == timer))
        {
            Some(i) => i,
            None => {
                // The state machines stop a state's timers before arming the next state's.
                debug_assert!(self.slots.iter().any(Option::is_none), "a third timer");
                self.slots.iter().position(Option::is_none).unwrap_or(1)
            }
        };
        self.slots[slot] = Some((timer, at));
    }

    pub(crate) fn get(&self, timer: Timer) -> Option<Instant> {
        self.slots
            .iter()
            .flatten()
            .find(|(t, _)| *t == timer)
            .map(|&(_, at)| at)
    }

    pub(crate) fn stop(&mut self, timer: Timer) {
        for s in &mut self.slots {
            if s.is_some_and(|(t, _)| t == timer) {
                *s = None;
            }
        }
    }

    pub(crate) fn stop_all(&mut self) {
        self.slots = [None; 2];
    }

    /// The armed timers and their deadlines.
    pub(crate) fn armed(&self) -> impl Iterator<Item = (Timer, Instant)> + '_ {
        self.slots.iter().flatten().copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_slots_rearm_and_stop() {
        #[allow(clippy::disallowed_methods)] // any instant will do
        let t0 = Instant::now();
        let mut t = TimerTable::default();
        t.set(Timer::TimerA, t0);
        t.set(Timer::TimerB, t0 + Duration::from_secs(32));
        t.set(Timer::TimerA, t0 + Duration::from_secs(1));
        assert_eq!(t.get(Timer::TimerA), Some(t0 + Duration::from_secs(1)));
        assert_eq!(t.get(Timer::TimerB), Some(t0 + Duration::from_secs(32)));
        t.stop(Timer::TimerA);
        assert_eq!(t.get(Timer::TimerA), None);
        t.set(Timer::TimerD, t0);
        assert_eq!(t.armed().count(), 2);
        t.stop_all();
        assert_eq!(t.armed().count(), 0);
        assert!(size_of::<TimerTable>() <= 48);
    }
}
