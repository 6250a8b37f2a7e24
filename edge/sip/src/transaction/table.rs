//! The transaction table (RFC 3261 §17): a slab of live transactions, a hash index of matching
//! keys for O(1) lookup, a deadline heap for the timers and the output queues. The state
//! machines themselves are in `client.rs` and `server.rs`.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::client::{ClientTxn, OnResponse, OnTimer};
use super::key::{KeyIndex, MatchKey};
use super::message::{MAGIC_COOKIE, MethodKind, TxRequest, TxResponse};
use super::server::{OnRequest, ServerTxn};
use super::timer::{Deadline, Timer, TimerConfig, TimerTable};
use super::{State, TransactionError};

/// Transport of a flow. Reliable transports skip retransmissions and zero the wait timers
/// (§17.1.1.2, §17.1.2.2, §17.2.1, §17.2.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Transport {
    /// UDP (unreliable).
    Udp,
    /// TCP.
    Tcp,
    /// TLS over TCP.
    Tls,
    /// SCTP.
    Sctp,
    /// WebSocket.
    Ws,
    /// Secure WebSocket.
    Wss,
}

impl Transport {
    /// Whether the transport is reliable (everything but UDP).
    pub fn is_reliable(self) -> bool {
        !matches!(self, Self::Udp)
    }
}

/// Where a message came from or goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Remote {
    /// Peer address.
    pub addr: SocketAddr,
    /// Transport.
    pub transport: Transport,
}

/// Handle of a live transaction (slot index + generation), `Copy` like quinn's
/// `ConnectionHandle`. A stale handle is detected, never aliased.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TransactionKey {
    index: u32,
    generation: u32,
}

#[cfg(test)]
impl TransactionKey {
    pub(crate) fn for_test(index: u32) -> Self {
        Self {
            index,
            generation: 0,
        }
    }
}

/// Configuration of the layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Config {
    /// T1/T2/T4 and friends.
    pub timers: TimerConfig,
    /// Send 100 Trying for an INVITE server transaction (§17.2.1, §16.2), after
    /// [`Self::trying_delay`] unless a provisional or final response went out first.
    pub send_trying: bool,
    /// How long the 100 Trying waits for the TU's own response (RFC 3261 §17.2.1: 200 ms;
    /// `Duration::ZERO` sends it as soon as the transaction is created). A callee that rings
    /// within the delay saves one datagram per call.
    pub trying_delay: Duration,
    /// RFC 6026 INVITE handling (default): after a 2xx both INVITE transactions wait in
    /// Accepted (Timers L/M, 64*T1) instead of terminating, so that a retransmitted INVITE is
    /// absorbed rather than seen as a new request, and 2xx retransmissions are matched.
    /// `false` gives the original RFC 3261 §17 behaviour.
    pub accepted_state: bool,
    /// Transactions kept only to absorb retransmissions (Completed, Confirmed, Accepted: the
    /// key and the last response, waiting for Timers J/K/I/L/M); past it the oldest of them
    /// ends early ([`TransactionLayer::evicted`]). 0 = no cap.
    pub max_lingering: usize,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            timers: TimerConfig::default(),
            send_trying: true,
            trying_delay: Duration::from_millis(200),
            accepted_state: true,
            max_lingering: 0,
        }
    }
}

/// A message to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outgoing {
    /// A request (original, retransmission or generated ACK).
    Request(TxRequest),
    /// A response (original, retransmission or generated 100 Trying).
    Response(TxResponse),
}

impl Outgoing {
    /// The bytes to put on the wire.
    pub fn bytes(&self) -> &bytes::Bytes {
        match self {
            Self::Request(r) => r.bytes(),
            Self::Response(r) => r.bytes(),
        }
    }
}

/// One datagram/stream write to perform.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    /// Destination.
    pub destination: Remote,
    /// What to send.
    pub message: Outgoing,
}

/// What the transaction layer tells its TU.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// A new request created server transaction `key`. For a CANCEL, `cancels` is the INVITE
    /// server transaction it matches (§9.2), if any.
    Request {
        /// The new server transaction.
        key: TransactionKey,
        /// The request.
        request: TxRequest,
        /// Where it came from.
        source: Remote,
        /// For CANCEL: the INVITE server transaction it targets.
        cancels: Option<TransactionKey>,
    },
    /// An ACK that matched no server transaction (ACK for a 2xx, §17.2.3): passed to the TU.
    Ack {
        /// The ACK.
        request: TxRequest,
        /// Where it came from.
        source: Remote,
    },
    /// A response for client transaction `key` (retransmissions are absorbed).
    Response {
        /// The client transaction.
        key: TransactionKey,
        /// The response.
        response: TxResponse,
    },
    /// A response that matched no client transaction (§17.1.3 / §18.1.2; a proxy forwards
    /// 2xx retransmissions statelessly, §16.7).
    StrayResponse {
        /// The response.
        response: TxResponse,
        /// Where it came from.
        source: Remote,
    },
    /// Timer B/F (client: no final response) or H (server: no ACK) fired.
    Timeout {
        /// The transaction.
        key: TransactionKey,
        /// Which timer.
        timer: Timer,
    },
    /// The TU reported a transport failure for this transaction.
    TransportError {
        /// The transaction.
        key: TransactionKey,
    },
    /// The transaction reached Terminated and left the table.
    Terminated {
        /// The transaction.
        key: TransactionKey,
    },
}

#[derive(Debug)]
enum Machine {
    Client {
        sm: ClientTxn,
        ack: Option<TxRequest>,
    },
    Server {
        sm: ServerTxn,
        /// The last response sent, kept to retransmit (not kept for a 2xx in Accepted: the
        /// UAS retransmits those end to end, RFC 6026 §8.5).
        last: Option<Last>,
        /// Whether any response was sent.
        answered: bool,
    },
}

/// What a live transaction keeps of its request.
#[derive(Debug)]
enum Kept {
    /// The whole request: to retransmit it (Timers A/E), answer it with 100 Trying, build the
    /// ACK for a non-2xx final, or match it under RFC 2543 rules.
    Request(TxRequest),
    /// Completed, Confirmed or Accepted with an RFC 3261 key: only the key is still needed
    /// (retransmissions are absorbed or answered from [`Last`]).
    Key(KeyText),
}

/// The text of an RFC 3261 matching key (§17.1.3 / §17.2.3) in one allocation: branch, then
/// sent-by (server side), then the method.
#[derive(Debug)]
struct KeyText {
    text: Box<str>,
    branch: u32,
    sent_by: u32,
}

impl KeyText {
    fn of(key: &MatchKey<'_>) -> Option<Self> {
        let (branch, sent_by, method) = match key {
            MatchKey::Client { branch, method } => (*branch, "", *method),
            MatchKey::Server {
                branch,
                sent_by,
                method,
            } => (*branch, *sent_by, *method),
            MatchKey::Rfc2543 { .. } => return None,
        };
        Some(Self {
            text: [branch, sent_by, method].concat().into(),
            branch: u32::try_from(branch.len()).ok()?,
            sent_by: u32::try_from(sent_by.len()).ok()?,
        })
    }

    fn key(&self, client: bool) -> MatchKey<'_> {
        let (b, s) = (
            self.branch as usize,
            self.branch as usize + self.sent_by as usize,
        );
        let (branch, sent_by, method) = (
            self.text.get(..b).unwrap_or(""),
            self.text.get(b..s).unwrap_or(""),
            self.text.get(s..).unwrap_or(""),
        );
        if client {
            MatchKey::Client { branch, method }
        } else {
            MatchKey::Server {
                branch,
                sent_by,
                method,
            }
        }
    }
}

/// The last response of a server transaction, kept to retransmit.
#[derive(Debug)]
enum Last {
    Response(TxResponse),
    /// Once the request is no longer kept (Completed): only its bytes, viewed again when a
    /// retransmission is due (rare: a retransmitted request, or Timer G).
    Bytes(bytes::Bytes),
}

impl Last {
    fn response(&self) -> Option<TxResponse> {
        match self {
            Self::Response(r) => Some(r.clone()),
            Self::Bytes(b) => crate::Message::parse(b.clone())
                .ok()
                .and_then(|m| TxResponse::try_from(&m).ok()),
        }
    }
}

#[derive(Debug)]
struct Entry {
    machine: Machine,
    kept: Kept,
    remote: Remote,
    /// Hash of the entry's matching key in the index.
    key_hash: u64,
}

impl Entry {
    fn state(&self) -> State {
        match &self.machine {
            Machine::Client { sm, .. } => sm.state,
            Machine::Server { sm, .. } => sm.state,
        }
    }

    fn request(&self) -> Option<&TxRequest> {
        match &self.kept {
            Kept::Request(r) => Some(r),
            Kept::Key(_) => None,
        }
    }

    /// The matching key, re-derived from the stored request (or its kept text).
    fn match_key(&self) -> Option<MatchKey<'_>> {
        match (&self.kept, &self.machine) {
            (Kept::Key(k), m) => Some(k.key(matches!(m, Machine::Client { .. }))),
            (Kept::Request(r), Machine::Client { .. }) => MatchKey::client_for_request(r),
            (Kept::Request(r), Machine::Server { .. }) => Some(MatchKey::server(r, None)),
        }
    }

    /// In Completed, Confirmed or Accepted the request is no longer needed: keep its matching
    /// key (RFC 3261 keys only) and the last response's bytes. True when it shrank now.
    fn shrink(&mut self) -> bool {
        if matches!(self.kept, Kept::Key(_))
            || !matches!(
                self.state(),
                State::Completed | State::Confirmed | State::Accepted
            )
        {
            return false;
        }
        let Some(text) = self.match_key().as_ref().and_then(KeyText::of) else {
            return false;
        };
        self.kept = Kept::Key(text);
        if let Machine::Server {
            last: Some(last), ..
        } = &mut self.machine
            && let Last::Response(r) = last
        {
            *last = Last::Bytes(r.bytes().clone());
        }
        true
    }

    fn lingers(&self) -> bool {
        matches!(self.kept, Kept::Key(_))
    }

    fn is_client(&self) -> bool {
        matches!(self.machine, Machine::Client { .. })
    }

    fn timers(&self) -> TimerTable {
        match &self.machine {
            Machine::Client { sm, .. } => sm.timers,
            Machine::Server { sm, .. } => sm.timers,
        }
    }
}

#[derive(Debug, Default)]
struct Slot {
    generation: u32,
    entry: Option<Entry>,
}

/// The transaction table and its outputs. See the module docs for the drain order.
#[derive(Debug, Default)]
pub struct TransactionLayer {
    config: Config,
    slots: Vec<Slot>,
    free: Vec<u32>,
    index: KeyIndex,
    deadlines: BinaryHeap<Reverse<(Instant, TransactionKey, Timer)>>,
    /// INVITE server transactions whose 100 Trying is due then, unless they answered first.
    trying: BinaryHeap<Reverse<(Instant, TransactionKey)>>,
    transmits: VecDeque<Transmit>,
    events: VecDeque<Event>,
    /// Generation of slots made after the table was last emptied and given back (above every
    /// generation handed out before, so an old handle never names a new transaction).
    generation_floor: u32,
    /// Transactions that only absorb retransmissions now (shrunk), and the order they began
    /// to (oldest first; entries of transactions gone since are skipped and dropped).
    lingering: usize,
    linger_order: VecDeque<TransactionKey>,
    /// Lingering transactions ended early at [`Config::max_lingering`].
    evicted: u64,
}

/// Slots a table keeps when it is empty; beyond that its memory goes back to the allocator.
const IDLE_SLOTS: usize = 64;

impl TransactionLayer {
    /// An empty table.
    pub fn new(config: Config) -> Self {
        Self {
            config,
            ..Self::default()
        }
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Number of live transactions.
    pub fn len(&self) -> usize {
        self.index.len()
    }

    /// Transactions still in progress (not yet Completed, Confirmed or Accepted): what a
    /// per-core cap on new work counts. The others only absorb retransmissions until their
    /// timers end them, and are bounded by [`Config::max_lingering`].
    pub fn in_progress(&self) -> usize {
        self.len() - self.lingering
    }

    /// Transactions kept only to absorb retransmissions (key and last response).
    pub fn lingering(&self) -> usize {
        self.lingering
    }

    /// Lingering transactions ended early because [`Config::max_lingering`] was reached.
    pub fn evicted(&self) -> u64 {
        self.evicted
    }

    /// Whether no transaction is live.
    pub fn is_empty(&self) -> bool {
        self.index.len() == 0
    }

    /// State of a live transaction.
    pub fn state(&self, key: TransactionKey) -> Option<State> {
        self.entry(key).map(Entry::state)
    }

    /// The request that created a live transaction, until it completes (Completed, Confirmed
    /// and Accepted transactions keep only their matching key).
    pub fn request(&self, key: TransactionKey) -> Option<&TxRequest> {
        self.entry(key).and_then(Entry::request)
    }

    /// The peer of a live transaction (destination of a client's request, source of a
    /// server's request).
    pub fn remote(&self, key: TransactionKey) -> Option<Remote> {
        self.entry(key).map(|e| e.remote)
    }

    /// The server transaction a request matches (§17.2.3), without touching it.
    pub fn find_server(&self, request: &TxRequest) -> Option<TransactionKey> {
        self.lookup_server(request, None)
    }

    /// A request arrived from `source` at `now`: absorb a retransmission, pass an unmatched ACK
    /// up, or create a server transaction (sending 100 Trying for INVITE).
    pub fn handle_request(&mut self, now: Instant, source: Remote, request: TxRequest) {
        let is_ack = request.kind() == MethodKind::Ack;
        if let Some(key) = self.lookup_server(&request, None) {
            let Some(entry) = slot_entry(&mut self.slots, key) else {
                return;
            };
            let before = entry.timers();
            let Machine::Server { sm, last, answered } = &mut entry.machine else {
                return;
            };
            match sm.on_request(now, is_ack, *answered, &self.config.timers) {
                OnRequest::ResendLast => {
                    if let Some(resp) = last.as_ref().and_then(Last::response) {
                        let destination = entry.remote;
                        self.transmits.push_back(Transmit {
                            destination,
                            message: Outgoing::Response(resp),
                        });
                    }
                }
                OnRequest::Absorb => {}
                OnRequest::PassAck => self.events.push_back(Event::Ack { request, source }),
            }
            self.after_change(key, before);
            return;
        }
        if is_ack {
            self.events.push_back(Event::Ack { request, source });
            return;
        }
        let cancels = (request.kind() == MethodKind::Cancel)
            .then(|| self.lookup_server(&request, Some("INVITE")))
            .flatten();
        let invite = request.kind() == MethodKind::Invite;
        let sm = ServerTxn::new(
            invite,
            source.transport.is_reliable(),
            self.config.accepted_state,
            &self.config.timers,
        );
        let key_hash = self.index.hash(&MatchKey::server(&request, None));
        let key = self.insert(Entry {
            machine: Machine::Server {
                sm,
                last: None,
                answered: false,
            },
            kept: Kept::Request(request.clone()),
            remote: source,
            key_hash,
        });
        if invite && self.config.send_trying {
            if self.config.trying_delay.is_zero() {
                self.send_trying(now, key);
            } else {
                self.trying
                    .push(Reverse((now + self.config.trying_delay, key)));
            }
        }
        self.events.push_back(Event::Request {
            key,
            request,
            source,
            cancels,
        });
    }

    /// A response arrived from `source` at `now`.
    pub fn handle_response(&mut self, now: Instant, source: Remote, response: TxResponse) {
        let found = MatchKey::client_for_response(&response).and_then(|k| self.find(&k, true));
        let Some(key) = found else {
            self.events
                .push_back(Event::StrayResponse { response, source });
            return;
        };
        let Some(entry) = slot_entry(&mut self.slots, key) else {
            return;
        };
        let before = entry.timers();
        let destination = entry.remote;
        let Machine::Client { sm, ack } = &mut entry.machine else {
            return;
        };
        match sm.on_response(now, response.status(), &self.config.timers) {
            OnResponse::Deliver => self.events.push_back(Event::Response { key, response }),
            OnResponse::DeliverAndAck => {
                // Calling or Proceeding until now: the request is still kept.
                if let Kept::Request(request) = &entry.kept {
                    let built = request.ack_for(&response);
                    *ack = Some(built.clone());
                    self.transmits.push_back(Transmit {
                        destination,
                        message: Outgoing::Request(built),
                    });
                }
                self.events.push_back(Event::Response { key, response });
            }
            OnResponse::ResendAck => {
                if let Some(built) = ack.clone() {
                    self.transmits.push_back(Transmit {
                        destination,
                        message: Outgoing::Request(built),
                    });
                }
            }
            OnResponse::Absorb => {}
        }
        self.after_change(key, before);
    }

    /// Start a client transaction for `request` to `destination` at `now` and send it.
    /// The request's top Via must carry an RFC 3261 branch (the TU generates it).
    pub fn send_request(
        &mut self,
        now: Instant,
        destination: Remote,
        request: TxRequest,
    ) -> Result<TransactionKey, TransactionError> {
        if request.kind() == MethodKind::Ack {
            return Err(TransactionError::AckTransaction);
        }
        if !request
            .branch()
            .is_some_and(|b| b.starts_with(MAGIC_COOKIE))
        {
            return Err(TransactionError::MissingBranch);
        }
        let match_key =
            MatchKey::client_for_request(&request).ok_or(TransactionError::MissingBranch)?;
        if self.find(&match_key, true).is_some() {
            return Err(TransactionError::DuplicateBranch);
        }
        let key_hash = self.index.hash(&match_key);
        let sm = ClientTxn::new(
            now,
            request.kind() == MethodKind::Invite,
            destination.transport.is_reliable(),
            self.config.accepted_state,
            &self.config.timers,
        );
        self.transmits.push_back(Transmit {
            destination,
            message: Outgoing::Request(request.clone()),
        });
        Ok(self.insert(Entry {
            machine: Machine::Client { sm, ack: None },
            kept: Kept::Request(request),
            remote: destination,
            key_hash,
        }))
    }

    /// The TU sends `response` on server transaction `key` at `now`.
    pub fn send_response(
        &mut self,
        now: Instant,
        key: TransactionKey,
        response: TxResponse,
    ) -> Result<(), TransactionError> {
        let entry = slot_entry(&mut self.slots, key).ok_or(TransactionError::UnknownTransaction)?;
        let before = entry.timers();
        let destination = entry.remote;
        let Machine::Server { sm, last, answered } = &mut entry.machine else {
            return Err(TransactionError::WrongKind);
        };
        sm.on_send(now, response.status(), &self.config.timers)?;
        *answered = true;
        *last = (sm.state != State::Accepted).then(|| Last::Response(response.clone()));
        self.transmits.push_back(Transmit {
            destination,
            message: Outgoing::Response(response),
        });
        self.after_change(key, before);
        Ok(())
    }

    /// The transport failed to deliver a message of transaction `key` (§17.1.4, §17.2.4):
    /// the transaction is Terminated and the TU told.
    pub fn handle_transport_error(&mut self, key: TransactionKey) {
        let Some(entry) = self.entry_mut(key) else {
            return;
        };
        match &mut entry.machine {
            Machine::Client { sm, .. } => sm.terminate(),
            Machine::Server { sm, .. } => sm.terminate(),
        }
        self.events.push_back(Event::TransportError { key });
        self.remove(key);
    }

    /// The TU gave up on server transaction `key` without answering (a script that recorded
    /// no action): it is removed silently; a retransmission creates a new one.
    pub fn abandon(&mut self, key: TransactionKey) {
        let Some(entry) = self.entry_mut(key) else {
            return;
        };
        match &mut entry.machine {
            Machine::Client { sm, .. } => sm.terminate(),
            Machine::Server { sm, .. } => sm.terminate(),
        }
        self.remove(key);
    }

    /// Send the 100 Trying of INVITE server transaction `key` if it has sent no response yet.
    fn send_trying(&mut self, now: Instant, key: TransactionKey) {
        let Some(entry) = self.entry(key) else {
            return;
        };
        if !matches!(
            entry.machine,
            Machine::Server {
                answered: false,
                ..
            }
        ) {
            return;
        }
        let Some(request) = entry.request() else {
            return;
        };
        let trying = TxResponse::to_request(request, 100, "Trying", None);
        // A server transaction that has sent nothing is in Proceeding: it accepts a 1xx.
        let _ = self.send_response(now, key, trying);
    }

    /// Whether the 100 Trying queued for `key` would still be sent.
    fn trying_pending(&self, key: TransactionKey) -> bool {
        self.entry(key).is_some_and(|e| {
            matches!(
                e.machine,
                Machine::Server {
                    answered: false,
                    ..
                }
            )
        })
    }

    /// Fire every timer due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.fire_timers(now);
        self.release_idle();
    }

    /// After a load peak the table is sized for it: once every transaction has ended, give the
    /// slots, the index and the queues back (memory returns to its idle size). Called by
    /// [`Self::handle_timeout`]; a caller that drains the events after it calls it again.
    pub fn release_idle(&mut self) {
        if !self.is_empty() {
            return;
        }
        if self.slots.len() > IDLE_SLOTS {
            let top = self.slots.iter().map(|s| s.generation).max().unwrap_or(0);
            self.generation_floor = top.wrapping_add(1);
            self.slots = Vec::new();
            self.free = Vec::new();
            self.index.shrink();
            self.deadlines.shrink_to_fit();
            self.trying.shrink_to_fit();
            self.linger_order = VecDeque::new();
        }
        if self.events.is_empty() && self.events.capacity() > IDLE_SLOTS {
            self.events = VecDeque::new();
        }
        if self.transmits.is_empty() && self.transmits.capacity() > IDLE_SLOTS {
            self.transmits = VecDeque::new();
        }
    }

    fn fire_timers(&mut self, now: Instant) {
        while let Some(&Reverse((at, key))) = self.trying.peek() {
            if at > now {
                break;
            }
            self.trying.pop();
            self.send_trying(now, key);
        }
        while let Some(&Reverse((at, key, timer))) = self.deadlines.peek() {
            if at > now {
                break;
            }
            self.deadlines.pop();
            let Some(entry) = slot_entry(&mut self.slots, key) else {
                continue;
            };
            let mut before = entry.timers();
            if before.get(timer) != Some(at) {
                continue; // stale heap entry: the timer was stopped or re-armed
            }
            before.stop(timer);
            let destination = entry.remote;
            let config = &self.config.timers;
            let outcome = match &mut entry.machine {
                Machine::Client { sm, .. } => {
                    sm.timers.stop(timer);
                    sm.on_timer(now, timer, config)
                }
                Machine::Server { sm, .. } => {
                    sm.timers.stop(timer);
                    sm.on_timer(now, timer, config)
                }
            };
            match outcome {
                OnTimer::Retransmit => {
                    let message = match &entry.machine {
                        Machine::Client { .. } => entry.request().cloned().map(Outgoing::Request),
                        Machine::Server { last, .. } => last
                            .as_ref()
                            .and_then(Last::response)
                            .map(Outgoing::Response),
                    };
                    if let Some(message) = message {
                        self.transmits.push_back(Transmit {
                            destination,
                            message,
                        });
                    }
                }
                OnTimer::Timeout => self.events.push_back(Event::Timeout { key, timer }),
                OnTimer::Terminate | OnTimer::Ignore => {}
            }
            self.after_change(key, before);
        }
    }

    /// The next time [`Self::handle_timeout`] must be called, if any timer is armed.
    #[must_use]
    pub fn poll_timeout(&mut self) -> Option<Instant> {
        self.poll_deadline().map(|d| d.at)
    }

    /// [`Self::poll_timeout`], saying also whether that earliest timer only ends a
    /// transaction's wait ([`Timer::is_wait`]): a caller may then wake a little later and
    /// fire many such timers at once.
    #[must_use]
    pub fn poll_deadline(&mut self) -> Option<Deadline> {
        // 100 Trying of transactions that answered (or ended) meanwhile: never due.
        while let Some(&Reverse((_, key))) = self.trying.peek() {
            if self.trying_pending(key) {
                break;
            }
            self.trying.pop();
        }
        let trying = self.trying.peek().map(|Reverse((at, _))| Deadline {
            at: *at,
            wait: false,
        });
        while let Some(&Reverse((at, key, timer))) = self.deadlines.peek() {
            if self
                .entry(key)
                .is_some_and(|e| e.timers().get(timer) == Some(at))
            {
                let d = Deadline {
                    at,
                    wait: timer.is_wait(),
                };
                return Some(trying.map_or(d, |t| t.min(d)));
            }
            self.deadlines.pop();
        }
        trying
    }

    /// The next message to send.
    #[must_use]
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    /// The next event for the TU.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    fn lookup_server(&self, request: &TxRequest, method: Option<&str>) -> Option<TransactionKey> {
        let mk = MatchKey::server(request, method);
        let key = self.find(&mk, false)?;
        let entry = self.entry(key)?;
        if mk.is_rfc2543() && request.kind() != MethodKind::Ack && method.is_none() {
            // §17.2.3 (2543): the To tag must match too, except for the ACK (whose To tag
            // is the one we put in our response) and a CANCEL's lookup of its INVITE.
            if entry.request().and_then(TxRequest::to_tag) != request.to_tag() {
                return None;
            }
        }
        if let (
            true,
            Machine::Server {
                last: Some(Last::Response(last)),
                ..
            },
        ) = (
            mk.is_rfc2543() && request.kind() == MethodKind::Ack,
            &entry.machine,
        ) {
            if last.to_tag() != request.to_tag() {
                return None;
            }
        }
        Some(key)
    }

    /// The live transaction of the given side whose key matches `mk`.
    fn find(&self, mk: &MatchKey<'_>, client: bool) -> Option<TransactionKey> {
        let hash = self.index.hash(mk);
        self.index.candidates(hash).iter().copied().find(|&k| {
            self.entry(k).is_some_and(|e| {
                e.is_client() == client && e.match_key().is_some_and(|own| own.matches(mk))
            })
        })
    }

    fn entry(&self, key: TransactionKey) -> Option<&Entry> {
        let slot = self.slots.get(key.index as usize)?;
        if slot.generation != key.generation {
            return None;
        }
        slot.entry.as_ref()
    }

    fn entry_mut(&mut self, key: TransactionKey) -> Option<&mut Entry> {
        slot_entry(&mut self.slots, key)
    }
}

/// The live entry behind `key` (a free function so that callers can borrow the other fields).
fn slot_entry(slots: &mut [Slot], key: TransactionKey) -> Option<&mut Entry> {
    {
        let slot = slots.get_mut(key.index as usize)?;
        if slot.generation != key.generation {
            return None;
        }
        slot.entry.as_mut()
    }
}

impl TransactionLayer {
    fn insert(&mut self, entry: Entry) -> TransactionKey {
        let key_hash = entry.key_hash;
        let index = match self.free.pop() {
            Some(i) => i,
            None => {
                self.slots.push(Slot {
                    generation: self.generation_floor,
                    entry: None,
                });
                u32::try_from(self.slots.len() - 1).unwrap_or(u32::MAX)
            }
        };
        let slot = &mut self.slots[index as usize];
        slot.entry = Some(entry);
        let key = TransactionKey {
            index,
            generation: slot.generation,
        };
        self.index.insert(key_hash, key);
        self.after_change(key, TimerTable::default());
        key
    }

    /// Push newly armed deadlines onto the heap, drop what a completed transaction no
    /// longer needs, and remove the transaction if it terminated.
    fn after_change(&mut self, key: TransactionKey, before: TimerTable) {
        let Some(entry) = slot_entry(&mut self.slots, key) else {
            return;
        };
        if entry.state() == State::Terminated {
            self.remove(key);
            return;
        }
        let shrank = entry.shrink();
        for (timer, at) in entry.timers().armed() {
            if before.get(timer) != Some(at) {
                self.deadlines.push(Reverse((at, key, timer)));
            }
        }
        if shrank {
            self.lingering += 1;
            self.linger_order.push_back(key);
            self.evict_lingering();
        }
    }

    /// Past [`Config::max_lingering`], end the oldest lingering transactions early (a late
    /// retransmission of their request is then seen as new). Also drops the queue's entries
    /// for transactions that ended meanwhile, so it stays about as long as the count.
    fn evict_lingering(&mut self) {
        let cap = self.config.max_lingering;
        while let Some(&front) = self.linger_order.front() {
            let alive = self.entry(front).is_some_and(Entry::lingers);
            if alive && (cap == 0 || self.lingering <= cap) {
                break;
            }
            self.linger_order.pop_front();
            if alive {
                self.evicted += 1;
                self.remove(front);
            }
        }
    }

    fn remove(&mut self, key: TransactionKey) {
        let Some(slot) = self.slots.get_mut(key.index as usize) else {
            return;
        };
        if slot.generation != key.generation {
            return;
        }
        let Some(entry) = slot.entry.take() else {
            return;
        };
        slot.generation = slot.generation.wrapping_add(1);
        if entry.lingers() {
            self.lingering -= 1;
        }
        self.free.push(key.index);
        self.index.remove(entry.key_hash, key);
        self.events.push_back(Event::Terminated { key });
    }
}
