//! SMPP bench tools on our codec (`siphon-smpp`), usable from the command line
//! (`smpp-bench smsc|load`, see `main.rs`) and from tests:
//!
//! - [`smsc`]: an SMSC simulator with SMPPSim's knobs: binds accepted (any or one
//!   system_id/password), submit_sm/submit_multi/data_sm answered with a message_id, delivery
//!   receipts after a delay for a ratio of `registered_delivery` submits, error and throttle
//!   rates, MO deliver_sm traffic, and PDUs injected by a test; [`smsc::Smsc::kill`] drops
//!   every connection at once (an SMSC dying mid-flow).
//! - [`load`]: a bounded load generator: binds, a sequential warm-up of `window` submits, then
//!   `count` submits per bind with at most `window` in flight; submit_sm/s (total over wall
//!   time and the sum of per-bind rates), nearest-rank p50/p90/p99/p999, and every error
//!   counted by cause.
//!
//! Blocking std sockets and one thread per connection: the tools are peers, not the system
//! under test.

pub mod load;
pub mod smsc;

/// A small xorshift generator for the simulator's rates (no dependency, seedable).
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// Seeded generator (a zero seed is replaced).
    pub fn new(seed: u64) -> Self {
        Self(seed | 1)
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        (x >> 11) as f64 / (1u64 << 53) as f64
    }
}
