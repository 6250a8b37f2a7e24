//! Typed codec errors: which field (§4 PDU definitions), what was wrong, and where (byte
//! offset in the PDU). Also the map from a decode failure to the `command_status` the spec
//! says to answer with (§5.1.3). Session-level errors live in `session`.

use crate::command::CommandStatus;
use crate::tlv::TlvTag;

/// A field of an SMPP PDU, named as in the spec, so errors say which one was bad.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
#[allow(missing_docs, reason = "variant names are the spec field names")]
pub enum Field {
    CommandLength,
    CommandId,
    /// Octets left over after the last field of the body.
    Body,
    SystemId,
    Password,
    SystemType,
    InterfaceVersion,
    AddrTon,
    AddrNpi,
    AddressRange,
    ServiceType,
    SourceAddrTon,
    SourceAddrNpi,
    SourceAddr,
    DestAddrTon,
    DestAddrNpi,
    DestinationAddr,
    EsmClass,
    ProtocolId,
    PriorityFlag,
    ScheduleDeliveryTime,
    ValidityPeriod,
    RegisteredDelivery,
    ReplaceIfPresentFlag,
    DataCoding,
    SmDefaultMsgId,
    SmLength,
    ShortMessage,
    MessageId,
    FinalDate,
    MessageState,
    ErrorCode,
    NumberOfDests,
    DestFlag,
    DlName,
    NoUnsuccess,
    ErrorStatusCode,
    EsmeAddrTon,
    EsmeAddrNpi,
    EsmeAddr,
    /// The TLV section, or one TLV by tag.
    Tlv(TlvTag),
}

impl Field {
    /// The `command_status` to answer a request whose `self` field was malformed (§5.1.3).
    pub const fn status(self) -> CommandStatus {
        match self {
            Self::CommandLength | Self::Body => CommandStatus::ESME_RINVCMDLEN,
            Self::CommandId => CommandStatus::ESME_RINVCMDID,
            Self::SystemId => CommandStatus::ESME_RINVSYSID,
            Self::Password => CommandStatus::ESME_RINVPASWD,
            Self::SystemType => CommandStatus::ESME_RINVSYSTYP,
            Self::ServiceType => CommandStatus::ESME_RINVSERTYP,
            Self::SourceAddr => CommandStatus::ESME_RINVSRCADR,
            Self::SourceAddrTon => CommandStatus::ESME_RINVSRCTON,
            Self::SourceAddrNpi => CommandStatus::ESME_RINVSRCNPI,
            Self::DestinationAddr | Self::EsmeAddr => CommandStatus::ESME_RINVDSTADR,
            Self::DestAddrTon => CommandStatus::ESME_RINVDSTTON,
            Self::DestAddrNpi => CommandStatus::ESME_RINVDSTNPI,
            Self::EsmClass => CommandStatus::ESME_RINVESMCLASS,
            Self::PriorityFlag => CommandStatus::ESME_RINVPRTFLG,
            Self::ScheduleDeliveryTime => CommandStatus::ESME_RINVSCHED,
            Self::ValidityPeriod => CommandStatus::ESME_RINVEXPIRY,
            Self::RegisteredDelivery => CommandStatus::ESME_RINVREGDLVFLG,
            Self::ReplaceIfPresentFlag => CommandStatus::ESME_RINVREPFLAG,
            Self::SmDefaultMsgId => CommandStatus::ESME_RINVDFTMSGID,
            Self::SmLength | Self::ShortMessage => CommandStatus::ESME_RINVMSGLEN,
            Self::MessageId => CommandStatus::ESME_RINVMSGID,
            Self::NumberOfDests => CommandStatus::ESME_RINVNUMDESTS,
            Self::DestFlag => CommandStatus::ESME_RINVDESTFLAG,
            Self::DlName => CommandStatus::ESME_RINVDLNAME,
            Self::Tlv(_) => CommandStatus::ESME_RINVOPTPARSTREAM,
            _ => CommandStatus::ESME_RSYSERR,
        }
    }
}

/// What was wrong with a field.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum DecodeErrorKind {
    /// The PDU ended inside the field.
    UnexpectedEnd,
    /// A C-Octet-String had no NUL within its maximum length (which counts the NUL).
    Unterminated {
        /// Maximum length including the NUL.
        max: usize,
    },
    /// A time field (schedule_delivery_time, validity_period, final_date) was neither empty
    /// nor exactly 16 characters plus NUL (§7.1.1).
    BadTimeLength {
        /// Characters before the NUL.
        len: usize,
    },
    /// A length-prefixed value is longer than the spec allows.
    TooLong {
        /// Length found.
        len: usize,
        /// Maximum allowed.
        max: usize,
    },
    /// Octets left after the last field.
    TrailingBytes {
        /// How many.
        count: usize,
    },
    /// command_length is below 16 or disagrees with the octets handed to the decoder.
    LengthMismatch {
        /// command_length from the header.
        command_length: u32,
        /// Octets available.
        available: usize,
    },
    /// command_id is not an SMPP 3.4 command.
    UnknownCommandId {
        /// The wire value.
        command_id: u32,
    },
    /// A TLV of a fixed-width standard tag had the wrong length (ESME_RINVPARLEN).
    TlvLength {
        /// Length on the wire.
        len: u16,
        /// Length the spec gives the tag.
        expected: u16,
    },
    /// short_message and the message_payload TLV are both present (§5.3.2.32: mutually
    /// exclusive).
    PayloadConflict,
    /// A field value outside its defined range (dest_flag, number_of_dests).
    InvalidValue {
        /// The value found.
        value: u32,
    },
}

/// A PDU could not be decoded. Says which field, what was wrong and at which byte offset
/// (from the start of the PDU). [`DecodeError::status`] gives the status to answer with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("malformed {field:?} at offset {offset}: {kind:?}")]
pub struct DecodeError {
    /// The field that was malformed.
    pub field: Field,
    /// What was wrong with it.
    pub kind: DecodeErrorKind,
    /// Byte offset of the field from the start of the PDU.
    pub offset: usize,
}

impl DecodeError {
    /// The `command_status` the spec asks for in the response (or generic_nack).
    pub const fn status(&self) -> CommandStatus {
        match (self.field, self.kind) {
            (Field::Tlv(_), DecodeErrorKind::TlvLength { .. }) => CommandStatus::ESME_RINVPARLEN,
            (_, DecodeErrorKind::UnknownCommandId { .. }) => CommandStatus::ESME_RINVCMDID,
            (_, DecodeErrorKind::LengthMismatch { .. }) => CommandStatus::ESME_RINVCMDLEN,
            (field, _) => field.status(),
        }
    }
}

/// What was wrong with a value handed to the encoder.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum EncodeErrorKind {
    /// Longer than the spec allows (for C-Octet-Strings `max` counts the NUL).
    TooLong {
        /// Length given.
        len: usize,
        /// Maximum allowed.
        max: usize,
    },
    /// A C-Octet-String contained a NUL octet.
    InteriorNul,
    /// A time field that is neither empty nor exactly 16 characters.
    BadTimeLength {
        /// Length given.
        len: usize,
    },
    /// short_message and the message_payload TLV were both given (§5.3.2.32).
    PayloadConflict,
}

/// A PDU could not be encoded; the output buffer is left as it was.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("cannot encode {field:?}: {kind:?}")]
pub struct EncodeError {
    /// The field that was bad.
    pub field: Field,
    /// What was wrong with it.
    pub kind: EncodeErrorKind,
}
