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
use super::timer::{Timer, TimerConfig, TimerTable};
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
}

impl Default for Config {
    fn default() -> Self {
        Self {
            timers: TimerConfig::default(),
            send_trying: true,
            trying_delay: Duration::from_millis(200),
            accepted_state: true,
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
        last: Option<TxResponse>,
    },
}

#[derive(Debug)]
struct Entry {
    machine: Machine,
    request: TxRequest,
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

    /// The matching key, re-derived from the stored request.
    fn match_key(&self) -> Option<MatchKey<'_>> {
        match &self.machine {
            Machine::Client { .. } => MatchKey::client_for_request(&self.request),
            Machine::Server { .. } => Some(MatchKey::server(&self.request, None)),
        }
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
}

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

    /// Whether no transaction is live.
    pub fn is_empty(&self) -> bool {
        self.index.len() == 0
    }

    /// State of a live transaction.
    pub fn state(&self, key: TransactionKey) -> Option<State> {
        self.entry(key).map(Entry::state)
    }

    /// The request that created a live transaction.
    pub fn request(&self, key: TransactionKey) -> Option<&TxRequest> {
        self.entry(key).map(|e| &e.request)
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
            let Machine::Server { sm, last } = &mut entry.machine else {
                return;
            };
            match sm.on_request(now, is_ack, last.is_some()) {
                OnRequest::ResendLast => {
                    if let Some(resp) = last.clone() {
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
            self.config.timers,
        );
        let key_hash = self.index.hash(&MatchKey::server(&request, None));
        let key = self.insert(Entry {
            machine: Machine::Server { sm, last: None },
            request: request.clone(),
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
        match sm.on_response(now, response.status()) {
            OnResponse::Deliver => self.events.push_back(Event::Response { key, response }),
            OnResponse::DeliverAndAck => {
                let built = entry.request.ack_for(&response);
                *ack = Some(built.clone());
                self.transmits.push_back(Transmit {
                    destination,
                    message: Outgoing::Request(built),
                });
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
            self.config.timers,
        );
        self.transmits.push_back(Transmit {
            destination,
            message: Outgoing::Request(request.clone()),
        });
        Ok(self.insert(Entry {
            machine: Machine::Client { sm, ack: None },
            request,
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
        let Machine::Server { sm, last } = &mut entry.machine else {
            return Err(TransactionError::WrongKind);
        };
        sm.on_send(now, response.status())?;
        *last = Some(response.clone());
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
        if !matches!(entry.machine, Machine::Server { last: None, .. }) {
            return;
        }
        let trying = TxResponse::to_request(&entry.request, 100, "Trying", None);
        // A server transaction that has sent nothing is in Proceeding: it accepts a 1xx.
        let _ = self.send_response(now, key, trying);
    }

    /// Whether the 100 Trying queued for `key` would still be sent.
    fn trying_pending(&self, key: TransactionKey) -> bool {
        self.entry(key)
            .is_some_and(|e| matches!(e.machine, Machine::Server { last: None, .. }))
    }

    /// Fire every timer due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
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
            let outcome = match &mut entry.machine {
                Machine::Client { sm, .. } => {
                    sm.timers.stop(timer);
                    sm.on_timer(now, timer)
                }
                Machine::Server { sm, .. } => {
                    sm.timers.stop(timer);
                    sm.on_timer(now, timer)
                }
            };
            match outcome {
                OnTimer::Retransmit => {
                    let message = match &entry.machine {
                        Machine::Client { .. } => Some(Outgoing::Request(entry.request.clone())),
                        Machine::Server { last, .. } => last.clone().map(Outgoing::Response),
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
        // 100 Trying of transactions that answered (or ended) meanwhile: never due.
        while let Some(&Reverse((_, key))) = self.trying.peek() {
            if self.trying_pending(key) {
                break;
            }
            self.trying.pop();
        }
        let trying = self.trying.peek().map(|Reverse((at, _))| *at);
        while let Some(&Reverse((at, key, timer))) = self.deadlines.peek() {
            if self
                .entry(key)
                .is_some_and(|e| e.timers().get(timer) == Some(at))
            {
                return Some(trying.map_or(at, |t| t.min(at)));
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
            if entry.request.to_tag() != request.to_tag() {
                return None;
            }
        }
        if let (
            true,
            Machine::Server {
                last: Some(last), ..
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
                self.slots.push(Slot::default());
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

    /// Push newly armed deadlines onto the heap, and remove the transaction if it terminated.
    fn after_change(&mut self, key: TransactionKey, before: TimerTable) {
        let Some(entry) = self.entry(key) else {
            return;
        };
        if entry.state() == State::Terminated {
            self.remove(key);
            return;
        }
        let after = entry.timers();
        for timer in Timer::VALUES {
            if let Some(at) = after.get(timer)
                && before.get(timer) != Some(at)
            {
                self.deadlines.push(Reverse((at, key, timer)));
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
        self.free.push(key.index);
        self.index.remove(entry.key_hash, key);
        self.events.push_back(Event::Terminated { key });
    }
}
