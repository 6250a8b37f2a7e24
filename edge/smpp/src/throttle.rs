//! Inbound rate limiting as data: a token bucket per session (siphon-smpp `max_msg_per_sec`,
//! `throttle_action: pace|reject`). `reject` answers ESME_RTHROTTLED (0x58, SMPP 3.4 §5.1.3);
//! `pace` delays the response until a token is due, so the peer's window gives backpressure.
//! No clock is read: callers pass `now`.

use std::time::{Duration, Instant};

/// What to do when a request finds the bucket empty.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ThrottleAction {
    /// Delay the response until a token is due (upstream default).
    #[default]
    Pace,
    /// Answer ESME_RTHROTTLED at once; the request is not dispatched.
    Reject,
}

/// Rate limit configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ThrottleConfig {
    /// Sustained requests per second; 0 turns throttling off.
    pub per_second: u32,
    /// Bucket size (requests allowed back to back); at least 1.
    pub burst: u32,
    /// Outcome when the bucket is empty.
    pub action: ThrottleAction,
}

/// The outcome for one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ThrottleDecision {
    /// Go ahead.
    Allow,
    /// Go ahead, but hold the response until this instant.
    Pace(Instant),
    /// Answer ESME_RTHROTTLED.
    Reject,
}

/// A token bucket. Tokens are counted in nanoseconds of "credit" to stay exact in integers.
#[derive(Clone, Debug)]
pub struct TokenBucket {
    config: ThrottleConfig,
    /// Nanoseconds per token.
    interval: u64,
    /// The instant at which the bucket is next empty-with-one-token ("theoretical arrival
    /// time" of GCRA): a request at `now` is free when `tat - burst*interval <= now`.
    tat: Option<Instant>,
}

impl TokenBucket {
    /// A bucket for `config`.
    pub fn new(config: ThrottleConfig) -> Self {
        let interval = if config.per_second == 0 {
            0
        } else {
            1_000_000_000 / u64::from(config.per_second)
        };
        Self {
            config,
            interval,
            tat: None,
        }
    }

    /// The configuration.
    pub const fn config(&self) -> &ThrottleConfig {
        &self.config
    }

    /// Takes one token at `now` (generic cell rate algorithm, equivalent to a token bucket).
    pub fn take(&mut self, now: Instant) -> ThrottleDecision {
        if self.interval == 0 {
            return ThrottleDecision::Allow;
        }
        let step = Duration::from_nanos(self.interval);
        let window = step * self.config.burst.max(1);
        let tat = self.tat.map_or(now, |t| t.max(now));
        // Earliest instant this request conforms.
        let earliest = tat.checked_sub(window).map_or(now, |e| (e + step).max(now));
        if earliest <= now {
            self.tat = Some(tat + step);
            return ThrottleDecision::Allow;
        }
        match self.config.action {
            ThrottleAction::Reject => ThrottleDecision::Reject,
            ThrottleAction::Pace => {
                self.tat = Some(tat + step);
                ThrottleDecision::Pace(earliest)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[expect(
        clippy::disallowed_methods,
        reason = "tests need one real Instant as origin"
    )]
    fn t0() -> Instant {
        Instant::now()
    }

    #[test]
    fn reject_after_burst_then_refill() {
        let t = t0();
        let mut b = TokenBucket::new(ThrottleConfig {
            per_second: 10,
            burst: 2,
            action: ThrottleAction::Reject,
        });
        assert_eq!(b.take(t), ThrottleDecision::Allow);
        assert_eq!(b.take(t), ThrottleDecision::Allow);
        assert_eq!(b.take(t), ThrottleDecision::Reject);
        assert_eq!(
            b.take(t + Duration::from_millis(99)),
            ThrottleDecision::Reject
        );
        assert_eq!(
            b.take(t + Duration::from_millis(100)),
            ThrottleDecision::Allow
        );
        assert_eq!(
            b.take(t + Duration::from_millis(100)),
            ThrottleDecision::Reject
        );
        // Idle for long: only `burst` tokens accumulate.
        let later = t + Duration::from_secs(10);
        assert_eq!(b.take(later), ThrottleDecision::Allow);
        assert_eq!(b.take(later), ThrottleDecision::Allow);
        assert_eq!(b.take(later), ThrottleDecision::Reject);
    }

    #[test]
    fn pace_spaces_responses() {
        let t = t0();
        let mut b = TokenBucket::new(ThrottleConfig {
            per_second: 10,
            burst: 1,
            action: ThrottleAction::Pace,
        });
        assert_eq!(b.take(t), ThrottleDecision::Allow);
        assert_eq!(
            b.take(t),
            ThrottleDecision::Pace(t + Duration::from_millis(100))
        );
        assert_eq!(
            b.take(t),
            ThrottleDecision::Pace(t + Duration::from_millis(200))
        );
    }

    #[test]
    fn zero_rate_is_off() {
        let t = t0();
        let mut b = TokenBucket::new(ThrottleConfig {
            per_second: 0,
            burst: 0,
            action: ThrottleAction::Reject,
        });
        for _ in 0..1000 {
            assert_eq!(b.take(t), ThrottleDecision::Allow);
        }
    }
}
