//! Client transaction state machines, RFC 3261 §17.1: INVITE (§17.1.1, Figure 5: Calling,
//! Proceeding, Completed, Terminated; Timers A, B, D) and non-INVITE (§17.1.2, Figure 6: Trying,
//! Proceeding, Completed, Terminated; Timers E, F, K).
//!
//! This file owns only the state and the timers. It does not touch message bytes: it tells the
//! transaction table what to do (deliver, retransmit, send the ACK) and the table does it.

use std::time::{Duration, Instant};

use super::State;
use super::timer::{Timer, TimerConfig, TimerTable};

/// What the table does with a response that matched this client transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OnResponse {
    /// Pass the response to the TU.
    Deliver,
    /// Pass the response to the TU and send an ACK for it (INVITE, 300-699, §17.1.1.3).
    DeliverAndAck,
    /// A retransmitted non-2xx final in Completed: resend the ACK, do not tell the TU.
    ResendAck,
    /// A retransmission to drop.
    Absorb,
}

/// What the table does when a timer of this transaction fires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OnTimer {
    /// Send the stored message again (request for A/E, final response for G).
    Retransmit,
    /// Tell the TU the transaction timed out; the transaction is Terminated.
    Timeout,
    /// The transaction is Terminated quietly.
    Terminate,
    /// Nothing to do (a timer that no longer applies in this state).
    Ignore,
}

/// One client transaction's state and timers.
#[derive(Debug, Clone)]
pub(crate) struct ClientTxn {
    pub(crate) invite: bool,
    pub(crate) state: State,
    reliable: bool,
    accepted_state: bool,
    interval: Duration,
    pub(crate) timers: TimerTable,
}

impl ClientTxn {
    /// A new client transaction whose request is sent at `now` (§17.1.1.2 / §17.1.2.2).
    pub(crate) fn new(
        now: Instant,
        invite: bool,
        reliable: bool,
        accepted_state: bool,
        config: &TimerConfig,
    ) -> Self {
        let mut timers = TimerTable::default();
        let (retransmit, timeout, state) = if invite {
            (Timer::TimerA, Timer::TimerB, State::Calling)
        } else {
            (Timer::TimerE, Timer::TimerF, State::Trying)
        };
        if !reliable {
            timers.set(retransmit, now + config.t1);
        }
        timers.set(timeout, now + config.sixty_four_t1());
        Self {
            invite,
            state,
            reliable,
            accepted_state,
            interval: config.t1,
            timers,
        }
    }

    /// A response with `status` matched this transaction.
    pub(crate) fn on_response(
        &mut self,
        now: Instant,
        status: u16,
        config: &TimerConfig,
    ) -> OnResponse {
        let provisional = status < 200;
        if self.invite {
            match self.state {
                State::Calling | State::Proceeding if provisional => {
                    self.state = State::Proceeding;
                    // No retransmissions in Proceeding; Timer B only guards Calling.
                    self.timers.stop(Timer::TimerA);
                    self.timers.stop(Timer::TimerB);
                    OnResponse::Deliver
                }
                State::Calling | State::Proceeding if status < 300 => {
                    if self.accepted_state {
                        // RFC 6026 §8.4: Accepted, Timer M; later 2xx still go to the TU.
                        self.state = State::Accepted;
                        self.timers.stop_all();
                        self.timers.set(Timer::TimerM, now + config.sixty_four_t1());
                    } else {
                        self.terminate();
                    }
                    OnResponse::Deliver
                }
                State::Accepted if (200..300).contains(&status) => OnResponse::Deliver,
                State::Calling | State::Proceeding => {
                    self.state = State::Completed;
                    self.timers.stop_all();
                    let wait = if self.reliable {
                        Duration::ZERO
                    } else {
                        config.timer_d
                    };
                    self.timers.set(Timer::TimerD, now + wait);
                    OnResponse::DeliverAndAck
                }
                State::Completed if status >= 300 => OnResponse::ResendAck,
                _ => OnResponse::Absorb,
            }
        } else {
            match self.state {
                State::Trying | State::Proceeding if provisional => {
                    self.state = State::Proceeding;
                    OnResponse::Deliver
                }
                State::Trying | State::Proceeding => {
                    self.state = State::Completed;
                    self.timers.stop_all();
                    let wait = if self.reliable {
                        Duration::ZERO
                    } else {
                        config.t4
                    };
                    self.timers.set(Timer::TimerK, now + wait);
                    OnResponse::Deliver
                }
                _ => OnResponse::Absorb,
            }
        }
    }

    /// `timer` fired at `now`.
    pub(crate) fn on_timer(&mut self, now: Instant, timer: Timer, config: &TimerConfig) -> OnTimer {
        match (timer, self.state) {
            (Timer::TimerA, State::Calling) => {
                // §17.1.1.2: A doubles without a cap.
                self.interval *= 2;
                self.timers.set(Timer::TimerA, now + self.interval);
                OnTimer::Retransmit
            }
            (Timer::TimerB, State::Calling) => {
                self.terminate();
                OnTimer::Timeout
            }
            (Timer::TimerD | Timer::TimerK, State::Completed)
            | (Timer::TimerM, State::Accepted) => {
                self.terminate();
                OnTimer::Terminate
            }
            (Timer::TimerE, State::Trying) => {
                self.interval = (self.interval * 2).min(config.t2);
                self.timers.set(Timer::TimerE, now + self.interval);
                OnTimer::Retransmit
            }
            (Timer::TimerE, State::Proceeding) => {
                // §17.1.2.2: in Proceeding, E is reset to T2.
                self.interval = config.t2;
                self.timers.set(Timer::TimerE, now + config.t2);
                OnTimer::Retransmit
            }
            (Timer::TimerF, State::Trying | State::Proceeding) => {
                self.terminate();
                OnTimer::Timeout
            }
            _ => OnTimer::Ignore,
        }
    }

    /// The transport reported a failure sending our request (§17.1.4).
    pub(crate) fn terminate(&mut self) {
        self.state = State::Terminated;
        self.timers.stop_all();
    }
}
