//! Transaction layer, RFC 3261 §17, sans-IO.
//!
//! Owns the four transaction state machines (INVITE/non-INVITE × client/server, §17.1.1,
//! §17.1.2, §17.2.1, §17.2.2, with RFC 6026's Accepted state for INVITE unless
//! [`Config::accepted_state`] is off), timers A to M as data, matching (§17.1.3, §17.2.3 and
//! the RFC 2543 fallback), CANCEL-to-INVITE matching (§9.2), 100 Trying for INVITE, the ACK for
//! non-2xx finals and absorption of retransmissions. It does not own sockets, a clock, message
//! parsing, dialogs or routing: the caller passes `now` and already-parsed messages in, and
//! drains what to send, when to wake up and what to tell the TU.
//!
//! [`TransactionLayer`] is the entry point (quinn's `Endpoint` shape):
//! - inputs: [`TransactionLayer::handle_request`], [`TransactionLayer::handle_response`],
//!   [`TransactionLayer::send_request`], [`TransactionLayer::send_response`],
//!   [`TransactionLayer::handle_timeout`], [`TransactionLayer::handle_transport_error`];
//! - outputs: [`TransactionLayer::poll_transmit`], [`TransactionLayer::poll_event`],
//!   [`TransactionLayer::poll_timeout`].
//!
//! Drain order after every input: `poll_transmit` until `None`, then `poll_event` until `None`,
//! then re-arm the wake-up from `poll_timeout`.

mod adapt;
mod client;
mod key;
mod message;
mod server;
mod table;
mod timer;

#[cfg(test)]
pub(crate) mod sim;
#[cfg(test)]
mod tests;

pub use adapt::FromMessageError;
pub use message::{
    MAGIC_COOKIE, MethodKind, RequestParts, ResponseParts, TxRequest, TxResponse, header_param,
    via_sent_by,
};
pub use table::{
    Config, Event, Outgoing, Remote, TransactionKey, TransactionLayer, Transmit, Transport,
};
pub use timer::{Deadline, Timer, TimerConfig};

/// Transaction states, named as in RFC 3261 Figures 5 to 8.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum State {
    /// INVITE client: request sent, no response yet.
    Calling,
    /// Non-INVITE client/server: request sent or received, no response yet.
    Trying,
    /// A provisional response was received (client) or the request is being worked on (server).
    Proceeding,
    /// A final response was received or sent; absorbing retransmissions.
    Completed,
    /// INVITE server: the ACK for the non-2xx final arrived.
    Confirmed,
    /// RFC 6026: a 2xx was sent (server) or received (client); retransmissions of the INVITE
    /// are absorbed and further 2xx pass through until Timer L / Timer M.
    Accepted,
    /// Done; the transaction is removed from the table.
    Terminated,
}

/// Misuse of the transaction layer by its caller (the TU).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TransactionError {
    /// The key names no live transaction (terminated or never existed).
    #[error("no such transaction")]
    UnknownTransaction,
    /// A response was sent in a state that does not allow it (e.g. a second final).
    #[error("cannot send {status} in state {state:?}")]
    InvalidState {
        /// State of the transaction.
        state: State,
        /// Status the TU tried to send.
        status: u16,
    },
    /// The key names a client transaction where a server transaction was required, or back.
    #[error("wrong kind of transaction for this operation")]
    WrongKind,
    /// A request to send has no top Via branch with the magic cookie.
    #[error("request has no RFC 3261 branch in its top Via")]
    MissingBranch,
    /// A client transaction with the same branch and method already exists.
    #[error("a transaction with this branch and method already exists")]
    DuplicateBranch,
    /// ACK is never sent through a client transaction (§17.1.1.3 / §13.2.2.4).
    #[error("ACK does not create a client transaction")]
    AckTransaction,
}
