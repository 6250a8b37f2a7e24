//! Script faults and overload, seen from one core's engine (issue 17; findings §3, §4).
//!
//! Owns: shedding before the work (a stateless 503 with Retry-After, before validation and
//! before any transaction exists, so a shed INVITE holds no Timer G/H state), answering for a
//! stalled script worker, the TU deadline of a script that never answers
//! (`transaction.timeout_secs`, `invite_timeout_secs` → 408, and the handler's asyncio task
//! cancelled), and the live queue-depth gauge.
//! Does not own noticing a stall or interrupting a handler: that is the scripting host's
//! watchdog (`siphon_script`, `watchdog.rs`), read here through `HostHandle::stalled`.
//!
//! A child module of `engine` (it reaches the engine's private state); the engine calls in at
//! four points: [`Engine::shed_early`] per request, [`Engine::track_event`] per script event,
//! [`Engine::fault_turn`] at the end of each loop turn, and the [`FAULT_TIMER`] token.

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use siphon_reactor::{Cx, TimerId};
use siphon_sip::Message;
use siphon_sip::proxy::{Answer, ContextId, ProxyError};
use siphon_sip::transaction::{Remote, TxRequest};

use super::{Engine, Msg, Pending};
use crate::metrics::ShedReason;

/// Token of the reactor timer for the next script deadline.
pub(super) const FAULT_TIMER: u64 = 2;

/// Length of one reactor-load window (see [`Faults::saturated`]).
const LOAD_WINDOW: Duration = Duration::from_millis(100);

/// The throughput-based depth limit never goes below this (bursts of a few events are normal).
const MIN_SHED_DEPTH: usize = 16;

/// How late a script deadline may be noticed.
const DEADLINE_SLACK: Duration = Duration::from_millis(50);

/// Overload and script-deadline settings shared by every core.
#[derive(Debug, Clone, Copy)]
pub struct FaultConfig {
    /// Queue depth at which new INVITEs and REGISTERs are shed (`usize::MAX`: only when full).
    pub shed_depth: usize,
    /// Estimated queue wait at which they are shed: the depth limit is also the worker's
    /// measured throughput times this (`tuning.overload_queue_delay_ms`; zero: off).
    pub shed_delay: Duration,
    /// Retry-After of every 503 sent here.
    pub retry_after_secs: u32,
    /// Also shed new INVITEs and REGISTERs while the reactor itself is saturated (it did not
    /// sleep once in the last 100 ms): `tuning.overload_shed_on_saturation`.
    pub shed_on_saturation: bool,
    /// How long a script may take to answer a non-INVITE request, a reply or a failure
    /// (`transaction.timeout_secs`).
    pub timeout: Duration,
    /// The same for an INVITE (`transaction.invite_timeout_secs`).
    pub invite_timeout: Duration,
}

impl Default for FaultConfig {
    fn default() -> Self {
        Self {
            shed_depth: 256,
            shed_delay: Duration::from_millis(50),
            retry_after_secs: 2,
            shed_on_saturation: true,
            timeout: Duration::from_secs(5),
            invite_timeout: Duration::from_secs(30),
        }
    }
}

/// One core's deadlines and stall state.
#[derive(Debug, Default)]
pub(super) struct Faults {
    /// (deadline, event id) of non-INVITE requests and of replies/failures, oldest first.
    short: VecDeque<(Instant, u64)>,
    /// The same for INVITEs.
    long: VecDeque<(Instant, u64)>,
    /// Armed [`FAULT_TIMER`].
    timer: Option<(TimerId, Instant)>,
    /// The pending events of the current stall were answered.
    swept: bool,
    /// Start of the current reactor-load window and the reactor's sleep count then.
    window: Option<(Instant, u64)>,
    /// The worker's events handled, and its nanoseconds of work, at the window start.
    worker_events: u64,
    worker_work: u64,
    /// Depth limit from the worker's measured rate (`shed_delay` worth of its work).
    delay_depth: Option<usize>,
    /// The reactor did not sleep once during the last whole window: it is saturated and the
    /// kernel queues (and soon drops) datagrams, so new INVITEs and REGISTERs are shed.
    saturated: bool,
}

impl Faults {
    /// The reactor timer fired.
    pub(super) fn timer_fired(&mut self, id: TimerId) {
        if self.timer.is_some_and(|(t, _)| t == id) {
            self.timer = None;
        }
    }
}

impl Engine {
    /// Shed a request before it costs anything: everything but ACK and CANCEL while the
    /// script worker is stalled, and new (no To tag) INVITEs and REGISTERs while its queue is
    /// deeper than `tuning.overload_queue_depth`. In-dialog requests and responses are never
    /// shed for load. The answer is stateless. True when answered.
    pub(super) fn shed_early(
        &mut self,
        cx: &mut Cx<'_, Msg>,
        msg: &Message,
        source: Remote,
        method: &str,
    ) -> bool {
        if matches!(method, "ACK" | "CANCEL") {
            return false;
        }
        let host = &self.shared.host;
        let reason = if host.stalled(self.core) {
            ShedReason::Stalled
        } else if matches!(method, "INVITE" | "REGISTER") {
            let limit = self
                .faults
                .delay_depth
                .map_or(self.shared.faults.shed_depth, |d| {
                    d.min(self.shared.faults.shed_depth)
                });
            let reason = if host.queue_depth(self.core) >= limit {
                ShedReason::Overload
            } else if self.faults.saturated {
                ShedReason::Saturated
            } else {
                return false;
            };
            if !TxRequest::try_from(msg).is_ok_and(|tx| tx.to_tag().is_none()) {
                return false;
            }
            reason
        } else {
            return false;
        };
        self.m.shed[reason as usize].fetch_add(1, Ordering::Relaxed);
        let retry = vec![(
            "Retry-After".to_owned(),
            self.shared.faults.retry_after_secs.to_string(),
        )];
        self.reply_stateless(cx, msg, source, 503, "Service Unavailable", retry);
        true
    }

    /// A script event went to the worker: its answer is due by the transaction deadline.
    pub(super) fn track_event(&mut self, id: u64, now: Instant, invite: bool) {
        let f = self.shared.faults;
        if invite {
            self.faults.long.push_back((now + f.invite_timeout, id));
        } else {
            self.faults.short.push_back((now + f.timeout, id));
        }
    }

    /// End of a loop turn: publish the queue depth, answer for a stalled worker, give
    /// timed-out requests their 408, and arm the timer for the next deadline.
    pub(super) fn fault_turn(&mut self, cx: &mut Cx<'_, Msg>) {
        let depth = self.shared.host.queue_depth(self.core);
        self.m.queue_depth.store(depth as u64, Ordering::Relaxed);
        let now = cx.now();
        self.reactor_load(cx, now);
        let mut answered = false;
        if self.shared.host.stalled(self.core) {
            if !self.faults.swept {
                self.faults.swept = true;
                answered |= self.answer_for_stalled(now);
            }
        } else {
            self.faults.swept = false;
        }
        answered |= self.expire(now);
        if answered {
            self.drain(cx);
        }
        let next = match (self.faults.short.front(), self.faults.long.front()) {
            (Some(a), Some(b)) => Some(a.0.min(b.0)),
            (a, b) => a.or(b).map(|e| e.0),
        };
        // Deadlines are seconds long: 50 ms late is harmless and spares wake-ups.
        match (next, self.faults.timer) {
            (Some(at), None) => {
                let after = at.saturating_duration_since(now) + DEADLINE_SLACK;
                self.faults.timer = Some((cx.set_timer(after, FAULT_TIMER), at));
            }
            (Some(at), Some((id, armed))) if at < armed => {
                cx.cancel_timer(id);
                let after = at.saturating_duration_since(now) + DEADLINE_SLACK;
                self.faults.timer = Some((cx.set_timer(after, FAULT_TIMER), at));
            }
            _ => {}
        }
    }

    /// Close a reactor-load window every [`LOAD_WINDOW`]: saturated when the reactor went
    /// through it without sleeping once (it had work queued at every turn).
    fn reactor_load(&mut self, cx: &mut Cx<'_, Msg>, now: Instant) {
        if let Some((start, _)) = self.faults.window
            && now.duration_since(start) >= LOAD_WINDOW
        {
            // How many events the worker gets through in `shed_delay` of work: its rate per
            // second spent in turns that handled something. (Per second of wall time it would
            // be the offered load: at 200 events/s a 50 ms limit would shed a burst of 17
            // arriving in one receive batch, while the worker clears them in a millisecond.)
            let (events, work) = self.shared.host.worker_load(self.core);
            let done = events.saturating_sub(self.faults.worker_events);
            let spent = work.saturating_sub(self.faults.worker_work);
            self.faults.worker_events = events;
            self.faults.worker_work = work;
            let delay = self.shared.faults.shed_delay;
            self.faults.delay_depth = (!delay.is_zero() && done > 0 && spent > 0).then(|| {
                let per_sec = done as f64 * 1e9 / spent as f64;
                ((per_sec * delay.as_secs_f64()) as usize).max(MIN_SHED_DEPTH)
            });
        }
        if !self.shared.faults.shed_on_saturation {
            if self
                .faults
                .window
                .is_none_or(|(start, _)| now.duration_since(start) >= LOAD_WINDOW)
            {
                self.faults.window = Some((now, 0));
            }
            return;
        }
        let sleeps = cx.metrics().sleeps.load(Ordering::Relaxed);
        match self.faults.window {
            Some((start, s0)) if now.duration_since(start) >= LOAD_WINDOW => {
                let was = self.faults.saturated;
                self.faults.saturated = sleeps == s0;
                if self.faults.saturated != was {
                    tracing::info!(
                        core = self.core,
                        saturated = self.faults.saturated,
                        "reactor load: new INVITEs and REGISTERs {}",
                        if self.faults.saturated {
                            "get 503 with Retry-After"
                        } else {
                            "are admitted again"
                        }
                    );
                }
                self.faults.window = Some((now, sleeps));
            }
            Some(_) => {}
            None => self.faults.window = Some((now, sleeps)),
        }
    }

    /// The worker is stuck: answer every request waiting for it (503 with Retry-After) except
    /// the one it is running (the watchdog's exception answers that one 500), and let replies
    /// and failures waiting for it go on as if no hook were set. Late actions are ignored.
    fn answer_for_stalled(&mut self, now: Instant) -> bool {
        let running = self.shared.host.current_event(self.core);
        let ids: Vec<u64> = self
            .pending
            .keys()
            .copied()
            .filter(|id| Some(*id) != running)
            .collect();
        let n = ids.len();
        for id in ids {
            if let Some(p) = self.pending.remove(&id) {
                self.give_up(now, id, p, 503, "Service Unavailable");
            }
        }
        if n > 0 {
            tracing::warn!(
                core = self.core,
                answered = n,
                "script worker stalled: requests waiting for it answered 503 with Retry-After"
            );
        }
        n > 0
    }

    /// Requests whose script did not answer by their deadline get 408. Entries of events
    /// already answered are dropped on the way, so the front is the oldest one still waiting
    /// (under normal load the queues are empty between turns and no timer is armed).
    fn expire(&mut self, now: Instant) -> bool {
        let mut n = 0;
        for long in [false, true] {
            loop {
                let q = if long {
                    &self.faults.long
                } else {
                    &self.faults.short
                };
                let Some(&(at, id)) = q.front() else { break };
                let waiting = self.pending.contains_key(&id);
                if waiting && at > now {
                    break;
                }
                if long {
                    self.faults.long.pop_front();
                } else {
                    self.faults.short.pop_front();
                }
                if let Some(p) = waiting.then(|| self.pending.remove(&id)).flatten() {
                    n += 1;
                    self.give_up(now, id, p, 408, "Request Timeout");
                }
            }
        }
        if n > 0 {
            self.m.script_timeouts.fetch_add(n, Ordering::Relaxed);
            tracing::warn!(
                core = self.core,
                requests = n,
                "script handlers gave no answer by transaction.timeout_secs / invite_timeout_secs: \
                 answered 408 (or relayed the reply they held)"
            );
        }
        n > 0
    }

    /// The worker's queue is full: 503 with Retry-After for a request that has a context.
    pub(super) fn answer_busy(&mut self, now: Instant, ctx: ContextId) {
        self.m.shed[ShedReason::QueueFull as usize].fetch_add(1, Ordering::Relaxed);
        if self
            .answer_request(now, ctx, 503, "Service Unavailable")
            .is_err()
        {
            self.m.dropped(crate::metrics::DropReason::Stray);
        }
    }

    /// Answer a request's context without the script (a 503 carries Retry-After).
    fn answer_request(
        &mut self,
        now: Instant,
        ctx: ContextId,
        status: u16,
        reason: &str,
    ) -> Result<(), ProxyError> {
        let headers = if status == 503 {
            vec![(
                "Retry-After".to_owned(),
                self.shared.faults.retry_after_secs.to_string(),
            )]
        } else {
            Vec::new()
        };
        self.proxy.answer(
            now,
            ctx,
            Answer {
                status,
                reason: reason.to_owned(),
                headers,
                body: None,
                to_tag: None,
                reliable: false,
            },
        )
    }

    /// Finish what pending script event `id` stood for without the script, and cancel its
    /// handler if it is suspended on an await (it would hold its slot and task forever).
    fn give_up(&mut self, now: Instant, id: u64, p: Pending, status: u16, reason: &str) {
        self.shared.host.cancel_event(self.core, id);
        let result = match p {
            Pending::Request { ctx, .. } => self.answer_request(now, ctx, status, reason),
            Pending::Reply { reply, .. } => self.proxy.relay_reply(now, reply),
            Pending::Failure { ctx } => self.proxy.relay_failure(now, ctx),
        };
        if result.is_err() {
            // The context ended meanwhile (CANCEL, transport failure).
            self.m.dropped(crate::metrics::DropReason::Stray);
        }
    }
}
