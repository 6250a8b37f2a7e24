//! Which requests each side may send in each session state (SMPP 3.4 §2.3 and §2.4, table 2-1;
//! checklist §4.3). Responses are not listed: a response is acceptable whenever it answers an
//! outstanding request, and generic_nack always is.

use crate::command::CommandId;

/// Which end of the session we are.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    /// External Short Message Entity: binds out to an SMSC.
    Esme,
    /// Short Message Service Centre side: accepts binds.
    Smsc,
}

impl Role {
    /// The other end.
    pub const fn peer(self) -> Self {
        match self {
            Self::Esme => Self::Smsc,
            Self::Smsc => Self::Esme,
        }
    }
}

/// SMPP session states (§2.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SessionState {
    /// TCP connected, not bound.
    Open,
    /// Bound as transmitter (ESME → SMSC traffic).
    BoundTx,
    /// Bound as receiver (SMSC → ESME traffic).
    BoundRx,
    /// Bound as transceiver (both).
    BoundTrx,
    /// unbind sent or received; waiting for unbind_resp or for the close.
    Unbound,
    /// Finished; the reactor should flush the transmit buffer and close the connection.
    Closed,
}

impl SessionState {
    /// Every state.
    pub const ALL: [Self; 6] = [
        Self::Open,
        Self::BoundTx,
        Self::BoundRx,
        Self::BoundTrx,
        Self::Unbound,
        Self::Closed,
    ];

    /// True in BoundTx, BoundRx and BoundTrx.
    pub const fn is_bound(self) -> bool {
        matches!(self, Self::BoundTx | Self::BoundRx | Self::BoundTrx)
    }

    /// The state a successful bind of this kind leads to.
    pub const fn after_bind(bind: CommandId) -> Option<Self> {
        match bind {
            CommandId::BindTransmitter => Some(Self::BoundTx),
            CommandId::BindReceiver => Some(Self::BoundRx),
            CommandId::BindTransceiver => Some(Self::BoundTrx),
            _ => None,
        }
    }
}

/// True when `sender` may send request `id` in `state` (table 2-1). Binds in a bound state
/// are refused with ESME_RALYBND rather than ESME_RINVBNDSTS; the session checks that first.
pub fn request_allowed(sender: Role, state: SessionState, id: CommandId) -> bool {
    use CommandId as C;
    use SessionState as S;
    match (sender, state) {
        (_, S::Unbound | S::Closed) => false,
        // enquire_link before bind is tolerated in practice (checklist §4.3).
        (Role::Esme, S::Open) => id.is_bind() || id == C::EnquireLink,
        (Role::Smsc, S::Open) => id == C::Outbind,
        (Role::Esme, S::BoundTx | S::BoundTrx) => matches!(
            id,
            C::SubmitSm
                | C::SubmitMulti
                | C::DataSm
                | C::QuerySm
                | C::CancelSm
                | C::ReplaceSm
                | C::EnquireLink
                | C::Unbind
        ),
        (Role::Esme, S::BoundRx) | (Role::Smsc, S::BoundTx) => {
            matches!(id, C::EnquireLink | C::Unbind)
        }
        (Role::Smsc, S::BoundRx | S::BoundTrx) => matches!(
            id,
            C::DeliverSm | C::DataSm | C::AlertNotification | C::EnquireLink | C::Unbind
        ),
    }
}
