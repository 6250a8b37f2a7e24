//! The SMPP 3.4 session state machine (§2.3 states, §2.4 operations, §2.8 error handling,
//! §7.2 timers), sans-IO in the quinn style: inputs are `handle_*(now, …)`, outputs are
//! `poll_*()` and the transmit buffer. Both roles: the SMSC side accepting binds and the ESME
//! side binding out. Owns sequence numbers, the send window with per-request response timers,
//! enquire_link on idle, the inactivity and session-init timers, the unbind handshake,
//! generic_nack and status answers for bad PDUs, and inbound throttling. It does not own the
//! socket, the framer's buffer, or any policy (bind authentication, routing): those are the
//! caller's.
//!
//! # Driving a session
//!
//! ```text
//! on bytes:    framer.push(bytes); while let Some(f) = framer.next_frame()? {
//!                  match session.handle_frame(now, f) { Inbound::Request(pdu) => app, .. } }
//!              on framer error: session.handle_frame_error(now, err)
//! on timer:    session.handle_timeout(now)
//! on close:    session.handle_close(now)
//! then drain:  session.poll_event() until None; write session.transmit(), then
//!              session.advance_transmit(written); re-arm the timer at session.poll_timeout().
//! ```
//! When the state is [`SessionState::Closed`], flush the transmit buffer and close.

mod rules;
#[cfg(test)]
mod tests;

pub use rules::{Role, SessionState, request_allowed};

use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasherDefault, Hasher};
use std::time::{Duration, Instant};

use crate::command::{CommandId, CommandStatus, Header, SequenceNumber};
use crate::error::{DecodeError, EncodeError};
use crate::framer::FrameError;
use crate::pdu::{Body, Pdu, generic_nack};
use crate::throttle::{ThrottleConfig, ThrottleDecision, TokenBucket};

/// Session timers and limits. Defaults are upstream siphon-smpp's server defaults.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SessionConfig {
    /// Most of our requests awaiting a response (the send window).
    pub window: usize,
    /// Most peer requests awaiting our response (paced responses held back included);
    /// beyond it the session answers ESME_RMSGQFUL itself.
    pub inbound_window: usize,
    /// connect → bound deadline (§7.2 session_init_timer).
    pub session_init_timeout: Duration,
    /// Idle time after which we send enquire_link (§7.2 enquire_link_timer); `None`: never.
    pub enquire_link_interval: Option<Duration>,
    /// Time without any PDU other than enquire_link after which we unbind (§7.2
    /// inactivity_timer); `None`: never.
    pub inactivity_timeout: Option<Duration>,
    /// request → response deadline (§7.2 response_timer).
    pub response_timeout: Duration,
    /// Unbind when one of our requests times out (siphon-smpp does this for ESMEs).
    pub unbind_on_response_timeout: bool,
    /// Inbound rate limit for submit_sm, data_sm and submit_multi (SMSC role only).
    pub throttle: Option<ThrottleConfig>,
}

impl Default for SessionConfig {
    fn default() -> Self {
        Self {
            window: 64,
            inbound_window: 64,
            session_init_timeout: Duration::from_millis(5_000),
            enquire_link_interval: Some(Duration::from_millis(30_000)),
            inactivity_timeout: Some(Duration::from_millis(300_000)),
            response_timeout: Duration::from_millis(30_000),
            unbind_on_response_timeout: false,
            throttle: None,
        }
    }
}

/// Misuse of the session by the caller (a bug or a race with the peer), never peer input.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SessionError {
    /// The request may not be sent in the current state (table 2-1).
    #[error("{command} may not be sent in state {state:?}")]
    InvalidState {
        /// Current state.
        state: SessionState,
        /// The request.
        command: CommandId,
    },
    /// The send window is full; wait for a response.
    #[error("send window full ({window} outstanding)")]
    WindowFull {
        /// The configured window.
        window: usize,
    },
    /// `send_request` was given a response body.
    #[error("{command} is not a request")]
    NotARequest {
        /// The command given.
        command: CommandId,
    },
    /// No peer request with this sequence number awaits a response.
    #[error("no request {sequence} awaits a response")]
    NoSuchRequest {
        /// The sequence number given.
        sequence: SequenceNumber,
    },
    /// The response does not answer the request (e.g. deliver_sm_resp to a submit_sm).
    #[error("{response} does not answer {request}")]
    WrongResponse {
        /// The request awaiting an answer.
        request: CommandId,
        /// The response given.
        response: CommandId,
    },
    /// The PDU could not be encoded.
    #[error(transparent)]
    Encode(#[from] EncodeError),
}

/// Why a request of ours got no (usable) response.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum FailReason {
    /// response_timeout passed.
    Timeout,
    /// The response could not be decoded.
    MalformedResponse(DecodeError),
    /// The session closed first.
    Closed,
}

/// Why the session closed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum CloseReason {
    /// The unbind handshake completed.
    Unbound,
    /// No bind within session_init_timeout.
    SessionInitTimeout,
    /// enquire_link got no response within response_timeout.
    EnquireLinkTimeout,
    /// unbind got no response, or the peer did not close after our unbind_resp.
    UnbindTimeout,
    /// command_length was invalid; the stream cannot be resynchronised.
    FramingError,
    /// The connection went away (`handle_close`).
    ConnectionLost,
}

/// Something the caller should know that is not the answer to a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// The session is bound (either role).
    Bound {
        /// BoundTx, BoundRx or BoundTrx.
        state: SessionState,
    },
    /// Our bind was refused (ESME role); the session stays Open.
    BindFailed {
        /// The status in bind_*_resp or generic_nack.
        status: CommandStatus,
    },
    /// unbind was sent or received; no new requests are accepted.
    Unbinding {
        /// True when the peer sent the unbind.
        by_peer: bool,
    },
    /// Nothing but enquire_link for inactivity_timeout; the session is unbinding.
    Inactive,
    /// A request of ours failed.
    RequestFailed {
        /// Its sequence number.
        sequence: SequenceNumber,
        /// Its command.
        command: CommandId,
        /// Why.
        reason: FailReason,
    },
    /// The session is closed.
    Closed {
        /// Why.
        reason: CloseReason,
    },
}

/// What the session made of a frame the session absorbed itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Handled {
    /// enquire_link answered.
    EnquireLink,
    /// A response to one of the session's own requests (enquire_link, unbind).
    OwnResponse(CommandId),
    /// unbind answered; the session is Unbound.
    Unbind,
    /// Refused with this status (state rules, window, throttle, unknown command).
    Rejected(CommandStatus),
    /// Malformed; answered with `error.status()` (response or generic_nack).
    Malformed(DecodeError),
    /// A response nobody was waiting for; dropped.
    UnexpectedResponse,
    /// The session is closed; the frame was dropped.
    Closed,
}

/// The outcome of [`Session::handle_frame`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Inbound<'a> {
    /// A peer request for the application. Answer it with [`Session::send_response`] (outbind
    /// and alert_notification take no answer). A bind request's answer binds the session.
    Request(Pdu<'a>),
    /// The answer (a response or generic_nack) to our request `request`.
    Response {
        /// The PDU.
        pdu: Pdu<'a>,
        /// The request it answers.
        request: CommandId,
    },
    /// The session dealt with it.
    Handled(Handled),
}

/// Hasher for sequence-number keys: one multiply (Fibonacci hashing) instead of SipHash. The
/// keys are peer-chosen, but the maps are capped by the windows, so collisions cannot grow
/// past a window's worth of probing.
#[derive(Default)]
struct SeqHasher(u64);

impl Hasher for SeqHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }

    fn write_u32(&mut self, n: u32) {
        let h = u64::from(n).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        self.0 = h ^ (h >> 32);
    }
}

type SeqMap<V> = HashMap<u32, V, BuildHasherDefault<SeqHasher>>;

#[derive(Clone, Copy, Debug)]
struct Outstanding {
    command: CommandId,
    /// Sent by the session itself (enquire_link, unbind), not by the caller.
    internal: bool,
}

#[derive(Clone, Copy, Debug)]
struct Pending {
    command: CommandId,
    release_at: Option<Instant>,
}

/// One SMPP session. See the module doc for the drive loop.
#[derive(Debug)]
pub struct Session {
    role: Role,
    state: SessionState,
    config: SessionConfig,
    next_seq: SequenceNumber,
    outstanding: SeqMap<Outstanding>,
    /// (deadline, sequence) in send order; deadlines are monotone, stale entries skipped.
    expiry: VecDeque<(Instant, u32)>,
    inbound: SeqMap<Pending>,
    paced: Vec<(Instant, Vec<u8>)>,
    tx: Vec<u8>,
    tx_start: usize,
    events: VecDeque<Event>,
    opened_at: Instant,
    last_rx: Instant,
    last_activity: Instant,
    enquire_pending: bool,
    bind_pending: bool,
    unbind_deadline: Option<Instant>,
    throttle: Option<TokenBucket>,
}

impl Session {
    /// A new session in state Open, at `now` (the connection was just established).
    pub fn new(role: Role, config: SessionConfig, now: Instant) -> Self {
        Self {
            role,
            state: SessionState::Open,
            config,
            next_seq: SequenceNumber(1),
            outstanding: SeqMap::default(),
            expiry: VecDeque::new(),
            inbound: SeqMap::default(),
            paced: Vec::new(),
            tx: Vec::new(),
            tx_start: 0,
            events: VecDeque::new(),
            opened_at: now,
            last_rx: now,
            last_activity: now,
            enquire_pending: false,
            bind_pending: false,
            unbind_deadline: None,
            throttle: config
                .throttle
                .filter(|t| t.per_second > 0 && role == Role::Smsc)
                .map(TokenBucket::new),
        }
    }

    /// Our role.
    pub const fn role(&self) -> Role {
        self.role
    }

    /// Current state.
    pub const fn state(&self) -> SessionState {
        self.state
    }

    /// The configuration.
    pub const fn config(&self) -> &SessionConfig {
        &self.config
    }

    /// Our requests awaiting a response (the caller's and the session's own).
    pub fn outstanding(&self) -> usize {
        self.outstanding.len()
    }

    /// Room left in the send window.
    pub fn window_available(&self) -> usize {
        self.config.window.saturating_sub(self.outstanding.len())
    }

    /// Octets to write to the connection, oldest first.
    #[must_use]
    pub fn transmit(&self) -> &[u8] {
        &self.tx[self.tx_start..]
    }

    /// Marks `n` octets of [`Session::transmit`] as written.
    pub fn advance_transmit(&mut self, n: usize) {
        self.tx_start = (self.tx_start + n).min(self.tx.len());
        if self.tx_start == self.tx.len() {
            self.tx.clear();
            self.tx_start = 0;
        }
    }

    /// The next event, if any. Drain after every `handle_*` call.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// When [`Session::handle_timeout`] should next be called; `None` when no timer runs.
    #[must_use]
    pub fn poll_timeout(&mut self) -> Option<Instant> {
        if self.state == SessionState::Closed {
            return None;
        }
        while let Some(&(_, seq)) = self.expiry.front() {
            if self.outstanding.contains_key(&seq) {
                break;
            }
            self.expiry.pop_front();
        }
        let mut t = self.expiry.front().map(|&(d, _)| d);
        let mut at = |d: Instant| t = Some(t.map_or(d, |x| x.min(d)));
        match self.state {
            SessionState::Open => at(self.opened_at + self.config.session_init_timeout),
            SessionState::Unbound => {
                if let Some(d) = self.unbind_deadline {
                    at(d);
                }
            }
            _ => {
                if let Some(i) = self.config.enquire_link_interval
                    && !self.enquire_pending
                {
                    at(self.last_rx + i);
                }
                if let Some(i) = self.config.inactivity_timeout {
                    at(self.last_activity + i);
                }
            }
        }
        for &(d, _) in &self.paced {
            at(d);
        }
        t
    }

    /// Sends a request; returns the sequence number it was given. Checks the state rules
    /// (table 2-1) and the window. A bind is only for the ESME role, in state Open.
    pub fn send_request(
        &mut self,
        now: Instant,
        body: &Body<'_>,
    ) -> Result<SequenceNumber, SessionError> {
        let command = body.command_id();
        if command.is_response() {
            return Err(SessionError::NotARequest { command });
        }
        if !request_allowed(self.role, self.state, command)
            || (command.is_bind() && self.bind_pending)
        {
            return Err(SessionError::InvalidState {
                state: self.state,
                command,
            });
        }
        if command.response().is_some() && self.outstanding.len() >= self.config.window {
            return Err(SessionError::WindowFull {
                window: self.config.window,
            });
        }
        self.send_request_unchecked(now, body, false)
    }

    fn send_request_unchecked(
        &mut self,
        now: Instant,
        body: &Body<'_>,
        internal: bool,
    ) -> Result<SequenceNumber, SessionError> {
        let command = body.command_id();
        let sequence = self.next_seq;
        Pdu::request(sequence, *body).encode(&mut self.tx)?;
        self.next_seq = sequence.next();
        if command.response().is_some() {
            let deadline = now + self.config.response_timeout;
            self.outstanding
                .insert(sequence.0, Outstanding { command, internal });
            self.expiry.push_back((deadline, sequence.0));
        }
        match command {
            CommandId::EnquireLink => self.enquire_pending = true,
            CommandId::Unbind => {
                self.state = SessionState::Unbound;
                self.events.push_back(Event::Unbinding { by_peer: false });
            }
            c if c.is_bind() => self.bind_pending = true,
            _ => {}
        }
        if command != CommandId::EnquireLink {
            self.last_activity = now;
        }
        Ok(sequence)
    }

    /// Starts the unbind handshake (§4.2). The session closes when unbind_resp arrives, or
    /// after response_timeout.
    pub fn unbind(&mut self, now: Instant) -> Result<SequenceNumber, SessionError> {
        if !self.state.is_bound() {
            return Err(SessionError::InvalidState {
                state: self.state,
                command: CommandId::Unbind,
            });
        }
        self.send_request_unchecked(now, &Body::Unbind, true)
    }

    /// Answers the peer request `sequence`. A bind_*_resp with ESME_ROK binds the session
    /// (SMSC role). A response to a paced request is held until its release time.
    pub fn send_response(
        &mut self,
        now: Instant,
        sequence: SequenceNumber,
        status: CommandStatus,
        body: &Body<'_>,
    ) -> Result<(), SessionError> {
        let Some(&pending) = self.inbound.get(&sequence.0) else {
            return Err(SessionError::NoSuchRequest { sequence });
        };
        let response = body.command_id();
        if response != CommandId::GenericNack && pending.command.response() != Some(response) {
            return Err(SessionError::WrongResponse {
                request: pending.command,
                response,
            });
        }
        let pdu = Pdu {
            status,
            sequence,
            body: *body,
        };
        match pending.release_at {
            Some(t) if t > now => {
                let mut buf = Vec::new();
                pdu.encode(&mut buf)?;
                self.paced.push((t, buf));
            }
            _ => {
                pdu.encode(&mut self.tx)?;
            }
        }
        self.inbound.remove(&sequence.0);
        self.last_activity = now;
        if pending.command.is_bind()
            && self.state == SessionState::Open
            && response != CommandId::GenericNack
            && status.is_ok()
            && let Some(state) = SessionState::after_bind(pending.command)
        {
            self.state = state;
            self.events.push_back(Event::Bound { state });
        }
        Ok(())
    }

    /// Feeds one framed PDU (from [`crate::Framer`] or [`crate::frame_len`]) received at `now`.
    pub fn handle_frame<'a>(&mut self, now: Instant, frame: &'a [u8]) -> Inbound<'a> {
        if self.state == SessionState::Closed {
            return Inbound::Handled(Handled::Closed);
        }
        let Some(header) = Header::parse(frame) else {
            self.handle_frame_error(
                now,
                FrameError::TooShort {
                    command_length: 0,
                    sequence: None,
                },
            );
            return Inbound::Handled(Handled::Closed);
        };
        self.last_rx = now;
        let sequence = header.sequence_number;
        let Some(id) = header.command() else {
            return self.reject_nack(CommandStatus::ESME_RINVCMDID, sequence);
        };
        if id.is_response() {
            return self.handle_response(now, id, &header, frame);
        }
        self.handle_request(now, id, &header, frame)
    }

    fn reject_nack(&mut self, status: CommandStatus, sequence: SequenceNumber) -> Inbound<'static> {
        self.queue(&generic_nack(status, sequence));
        Inbound::Handled(Handled::Rejected(status))
    }

    /// Queues a PDU built by the session; these never fail to encode.
    fn queue(&mut self, pdu: &Pdu<'_>) {
        let _ = pdu.encode(&mut self.tx);
    }

    /// Answers a request with a header-only response (or generic_nack when it has none).
    fn answer_status(&mut self, id: CommandId, status: CommandStatus, sequence: SequenceNumber) {
        match Body::empty_response(id) {
            Some(body) => self.queue(&Pdu {
                status,
                sequence,
                body,
            }),
            None => self.queue(&generic_nack(status, sequence)),
        }
    }

    fn handle_request<'a>(
        &mut self,
        now: Instant,
        id: CommandId,
        header: &Header,
        frame: &'a [u8],
    ) -> Inbound<'a> {
        let sequence = header.sequence_number;
        let peer = self.role.peer();
        if id.is_bind() && peer == Role::Esme && (self.state.is_bound() || self.bind_pending_in()) {
            self.answer_status(id, CommandStatus::ESME_RALYBND, sequence);
            return Inbound::Handled(Handled::Rejected(CommandStatus::ESME_RALYBND));
        }
        if !request_allowed(peer, self.state, id) {
            self.answer_status(id, CommandStatus::ESME_RINVBNDSTS, sequence);
            return Inbound::Handled(Handled::Rejected(CommandStatus::ESME_RINVBNDSTS));
        }
        let pdu = match Pdu::decode_with_header(header, frame) {
            Ok(p) => p,
            Err(e) => {
                self.answer_status(id, e.status(), sequence);
                return Inbound::Handled(Handled::Malformed(e));
            }
        };
        match id {
            CommandId::EnquireLink => {
                self.queue(&Pdu {
                    status: CommandStatus::ESME_ROK,
                    sequence,
                    body: Body::EnquireLinkResp,
                });
                return Inbound::Handled(Handled::EnquireLink);
            }
            CommandId::Unbind => {
                self.queue(&Pdu {
                    status: CommandStatus::ESME_ROK,
                    sequence,
                    body: Body::UnbindResp,
                });
                self.state = SessionState::Unbound;
                self.unbind_deadline = Some(now + self.config.response_timeout);
                self.last_activity = now;
                self.events.push_back(Event::Unbinding { by_peer: true });
                return Inbound::Handled(Handled::Unbind);
            }
            _ => {}
        }
        self.last_activity = now;
        if id.response().is_none() {
            // outbind, alert_notification: nothing to answer or track.
            return Inbound::Request(pdu);
        }
        // Held (paced) responses count too: a peer ignoring its window cannot grow them.
        if self.inbound.len() + self.paced.len() >= self.config.inbound_window {
            self.answer_status(id, CommandStatus::ESME_RMSGQFUL, sequence);
            return Inbound::Handled(Handled::Rejected(CommandStatus::ESME_RMSGQFUL));
        }
        let mut release_at = None;
        if matches!(
            id,
            CommandId::SubmitSm | CommandId::DataSm | CommandId::SubmitMulti
        ) && let Some(bucket) = self.throttle.as_mut()
        {
            match bucket.take(now) {
                ThrottleDecision::Allow => {}
                ThrottleDecision::Pace(t) => release_at = Some(t),
                ThrottleDecision::Reject => {
                    self.answer_status(id, CommandStatus::ESME_RTHROTTLED, sequence);
                    return Inbound::Handled(Handled::Rejected(CommandStatus::ESME_RTHROTTLED));
                }
            }
        }
        self.inbound.insert(
            sequence.0,
            Pending {
                command: id,
                release_at,
            },
        );
        Inbound::Request(pdu)
    }

    /// A bind from the peer is already awaiting our answer.
    fn bind_pending_in(&self) -> bool {
        self.inbound.values().any(|p| p.command.is_bind())
    }

    fn handle_response<'a>(
        &mut self,
        now: Instant,
        id: CommandId,
        header: &Header,
        frame: &'a [u8],
    ) -> Inbound<'a> {
        let sequence = header.sequence_number;
        let Some(&out) = self.outstanding.get(&sequence.0) else {
            return Inbound::Handled(Handled::UnexpectedResponse);
        };
        if id != CommandId::GenericNack && id.request() != Some(out.command) {
            return Inbound::Handled(Handled::UnexpectedResponse);
        }
        self.outstanding.remove(&sequence.0);
        // Answered entries stay in `expiry` until they reach its front; compact when a stuck
        // request at the front lets them pile up (amortised O(1)).
        if self.expiry.len() > 2 * self.outstanding.len() + 64 {
            let live = &self.outstanding;
            self.expiry.retain(|(_, seq)| live.contains_key(seq));
        }
        let pdu = match Pdu::decode_with_header(header, frame) {
            Ok(p) => p,
            Err(e) => {
                self.events.push_back(Event::RequestFailed {
                    sequence,
                    command: out.command,
                    reason: FailReason::MalformedResponse(e),
                });
                self.after_response(now, out.command, CommandStatus::ESME_RSYSERR);
                return Inbound::Handled(Handled::Malformed(e));
            }
        };
        self.after_response(now, out.command, pdu.status);
        if out.internal {
            Inbound::Handled(Handled::OwnResponse(id))
        } else {
            Inbound::Response {
                pdu,
                request: out.command,
            }
        }
    }

    /// State effects of the answer to our request `command`.
    fn after_response(&mut self, now: Instant, command: CommandId, status: CommandStatus) {
        match command {
            CommandId::EnquireLink => self.enquire_pending = false,
            CommandId::Unbind => self.close(CloseReason::Unbound),
            c if c.is_bind() => {
                self.bind_pending = false;
                self.last_activity = now;
                match SessionState::after_bind(c) {
                    Some(state) if status.is_ok() && self.state == SessionState::Open => {
                        self.state = state;
                        self.events.push_back(Event::Bound { state });
                    }
                    _ => self.events.push_back(Event::BindFailed { status }),
                }
            }
            _ => self.last_activity = now,
        }
    }

    /// A framing error from the framer: answers generic_nack(ESME_RINVCMDLEN) with the
    /// offending sequence number (0 when unreadable) and closes (§2.8).
    pub fn handle_frame_error(&mut self, _now: Instant, err: FrameError) {
        if self.state == SessionState::Closed {
            return;
        }
        self.queue(&generic_nack(
            CommandStatus::ESME_RINVCMDLEN,
            err.sequence().unwrap_or_default(),
        ));
        self.close(CloseReason::FramingError);
    }

    /// The connection is gone.
    pub fn handle_close(&mut self, _now: Instant) {
        if self.state == SessionState::Closed {
            return;
        }
        let reason = if self.state == SessionState::Unbound {
            CloseReason::Unbound
        } else {
            CloseReason::ConnectionLost
        };
        self.close(reason);
    }

    /// Runs every timer due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.state == SessionState::Closed {
            return;
        }
        // Paced responses whose time has come.
        if !self.paced.is_empty() {
            let mut i = 0;
            while i < self.paced.len() {
                if self.paced[i].0 <= now {
                    let (_, buf) = self.paced.swap_remove(i);
                    self.tx.extend_from_slice(&buf);
                } else {
                    i += 1;
                }
            }
        }
        if self.state == SessionState::Open
            && now >= self.opened_at + self.config.session_init_timeout
        {
            self.close(CloseReason::SessionInitTimeout);
            return;
        }
        // Response timers.
        let mut unbind_now = false;
        while let Some(&(deadline, seq)) = self.expiry.front() {
            if deadline > now {
                break;
            }
            self.expiry.pop_front();
            let Some(out) = self.outstanding.remove(&seq) else {
                continue;
            };
            match out.command {
                CommandId::EnquireLink if out.internal => {
                    self.close(CloseReason::EnquireLinkTimeout);
                    return;
                }
                CommandId::Unbind => {
                    self.close(CloseReason::UnbindTimeout);
                    return;
                }
                command => {
                    if command.is_bind() {
                        self.bind_pending = false;
                    }
                    if command == CommandId::EnquireLink {
                        self.enquire_pending = false;
                    }
                    self.events.push_back(Event::RequestFailed {
                        sequence: SequenceNumber(seq),
                        command,
                        reason: FailReason::Timeout,
                    });
                    unbind_now |= self.config.unbind_on_response_timeout;
                }
            }
        }
        if self.state == SessionState::Unbound
            && let Some(d) = self.unbind_deadline
            && now >= d
        {
            self.close(CloseReason::UnbindTimeout);
            return;
        }
        if !self.state.is_bound() {
            return;
        }
        if let Some(i) = self.config.inactivity_timeout
            && now >= self.last_activity + i
        {
            self.events.push_back(Event::Inactive);
            unbind_now = true;
        }
        if unbind_now {
            let _ = self.send_request_unchecked(now, &Body::Unbind, true);
            return;
        }
        if let Some(i) = self.config.enquire_link_interval
            && !self.enquire_pending
            && now >= self.last_rx + i
        {
            let _ = self.send_request_unchecked(now, &Body::EnquireLink, true);
        }
    }

    fn close(&mut self, reason: CloseReason) {
        self.state = SessionState::Closed;
        let mut failed: Vec<_> = self.outstanding.drain().collect();
        failed.sort_by_key(|&(seq, _)| seq);
        for (seq, out) in failed {
            if !out.internal {
                self.events.push_back(Event::RequestFailed {
                    sequence: SequenceNumber(seq),
                    command: out.command,
                    reason: FailReason::Closed,
                });
            }
        }
        self.expiry.clear();
        self.inbound.clear();
        self.paced.clear();
        self.unbind_deadline = None;
        self.events.push_back(Event::Closed { reason });
    }

    #[cfg(test)]
    pub(crate) fn force_state(&mut self, state: SessionState) {
        self.state = state;
    }
}
