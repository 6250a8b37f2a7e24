//! Server transaction state machines, RFC 3261 §17.2: INVITE (§17.2.1, Figure 7: Proceeding,
//! Completed, Confirmed, Terminated; Timers G, H, I) and non-INVITE (§17.2.2, Figure 8: Trying,
//! Proceeding, Completed, Terminated; Timer J).
//!
//! State and timers only; the transaction table owns the response bytes and sends them.

use std::time::{Duration, Instant};

use super::client::OnTimer;
use super::timer::{Timer, TimerConfig, TimerTable};
use super::{State, TransactionError};

/// What the table does with a request retransmission (or ACK) matching this transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OnRequest {
    /// Send the most recent response again.
    ResendLast,
    /// Drop it.
    Absorb,
    /// RFC 6026: an ACK in Accepted goes to the TU (it acknowledges the 2xx).
    PassAck,
}

/// One server transaction's state and timers.
#[derive(Debug, Clone)]
pub(crate) struct ServerTxn {
    pub(crate) invite: bool,
    pub(crate) state: State,
    reliable: bool,
    accepted_state: bool,
    /// Whether a provisional response went out. Until then the client is in Calling and
    /// retransmits the INVITE itself (Timer A), and each retransmission gets the final
    /// response again, so Timer G is not needed; see [`Self::on_send`].
    sent_provisional: bool,
    interval: Duration,
    pub(crate) timers: TimerTable,
}

impl ServerTxn {
    /// A server transaction created for a new request (§17.2.1: INVITE starts in Proceeding,
    /// §17.2.2: non-INVITE in Trying).
    pub(crate) fn new(
        invite: bool,
        reliable: bool,
        accepted_state: bool,
        config: &TimerConfig,
    ) -> Self {
        Self {
            invite,
            state: if invite {
                State::Proceeding
            } else {
                State::Trying
            },
            reliable,
            accepted_state,
            sent_provisional: false,
            interval: config.t1,
            timers: TimerTable::default(),
        }
    }

    /// A retransmission of the request (or, for INVITE, an ACK) arrived at `now`.
    /// `have_response` says whether a response was sent already.
    pub(crate) fn on_request(
        &mut self,
        now: Instant,
        is_ack: bool,
        have_response: bool,
        config: &TimerConfig,
    ) -> OnRequest {
        if is_ack {
            if self.state == State::Accepted {
                return OnRequest::PassAck;
            }
            if self.invite && self.state == State::Completed {
                // §17.2.1: ACK for a non-2xx final: Confirmed, stop G and H, start I.
                self.state = State::Confirmed;
                self.timers.stop_all();
                let wait = if self.reliable {
                    Duration::ZERO
                } else {
                    config.t4
                };
                self.timers.set(Timer::TimerI, now + wait);
            }
            return OnRequest::Absorb;
        }
        match self.state {
            State::Proceeding | State::Completed if have_response => OnRequest::ResendLast,
            _ => OnRequest::Absorb,
        }
    }

    /// The TU sends a response with `status` at `now`.
    pub(crate) fn on_send(
        &mut self,
        now: Instant,
        status: u16,
        config: &TimerConfig,
    ) -> Result<(), TransactionError> {
        let provisional = status < 200;
        match self.state {
            State::Trying | State::Proceeding if provisional => {
                self.state = State::Proceeding;
                self.sent_provisional = true;
                Ok(())
            }
            State::Proceeding if self.invite && status < 300 => {
                if self.accepted_state {
                    // RFC 6026 §8.5: Accepted; INVITE retransmissions are absorbed until L.
                    self.state = State::Accepted;
                    self.timers.set(Timer::TimerL, now + config.sixty_four_t1());
                } else {
                    // §17.2.1: a 2xx ends the transaction; the TU retransmits 2xx end to end.
                    self.state = State::Terminated;
                    self.timers.stop_all();
                }
                Ok(())
            }
            // RFC 6026 §8.7: further 2xx from the TU (retransmissions, other forks) pass.
            State::Accepted if (200..300).contains(&status) => Ok(()),
            State::Proceeding if self.invite => {
                self.state = State::Completed;
                // §17.2.1 Timer G covers a lost final response once the client stopped
                // retransmitting (it got a provisional: §17.1.1.2, Proceeding). A client that
                // got none is still in Calling and resends the INVITE on Timer A; every
                // retransmission gets this response again (`on_request` → ResendLast), so
                // nothing is lost without G, and a spoofed INVITE answered at once is
                // answered once, not ten times over 32 s (amplification, bench/hostile).
                if !self.reliable && self.sent_provisional {
                    self.timers.set(Timer::TimerG, now + config.t1);
                }
                self.timers.set(Timer::TimerH, now + config.sixty_four_t1());
                Ok(())
            }
            State::Trying | State::Proceeding => {
                self.state = State::Completed;
                let wait = if self.reliable {
                    Duration::ZERO
                } else {
                    config.sixty_four_t1()
                };
                self.timers.set(Timer::TimerJ, now + wait);
                Ok(())
            }
            state => Err(TransactionError::InvalidState { state, status }),
        }
    }

    /// `timer` fired at `now`.
    pub(crate) fn on_timer(&mut self, now: Instant, timer: Timer, config: &TimerConfig) -> OnTimer {
        match (timer, self.state) {
            (Timer::TimerG, State::Completed) => {
                self.interval = (self.interval * 2).min(config.t2);
                self.timers.set(Timer::TimerG, now + self.interval);
                OnTimer::Retransmit
            }
            (Timer::TimerH, State::Completed) => {
                self.terminate();
                OnTimer::Timeout
            }
            (Timer::TimerI, State::Confirmed)
            | (Timer::TimerJ, State::Completed)
            | (Timer::TimerL, State::Accepted) => {
                self.terminate();
                OnTimer::Terminate
            }
            _ => OnTimer::Ignore,
        }
    }

    /// Transport failure or TU abort: Terminated.
    pub(crate) fn terminate(&mut self) {
        self.state = State::Terminated;
        self.timers.stop_all();
    }
}
