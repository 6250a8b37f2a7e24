//! Header-level wire types of SMPP 3.4: `command_id` (§5.1.2.1, table 5-1), `command_status`
//! (§5.1.3, table 5-2), `sequence_number` (§5.1.4) and the 16-octet PDU header (§3.2).
//! Bodies live in `pdu`; this file knows nothing about them.

use core::fmt;

/// Length of the SMPP header: command_length, command_id, command_status, sequence_number.
pub const HEADER_LEN: usize = 16;

/// Bit 31 of a command_id marks a response (§5.1.2.1).
const RESP_BIT: u32 = 0x8000_0000;

macro_rules! command_ids {
    ($( $(#[$doc:meta])* $variant:ident = $value:literal, $name:literal; )*) => {
        /// An SMPP 3.4 `command_id` (§5.1.2.1). The 5.0-only broadcast PDUs are out of scope.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[non_exhaustive]
        pub enum CommandId {
            $( $(#[$doc])* $variant, )*
        }

        impl CommandId {
            /// Every command id this crate knows, in table 5-1 order.
            pub const ALL: &'static [Self] = &[$( Self::$variant, )*];

            /// The command id for a wire value, `None` when it is not an SMPP 3.4 command.
            #[inline]
            pub const fn from_u32(value: u32) -> Option<Self> {
                match value {
                    $( $value => Some(Self::$variant), )*
                    _ => None,
                }
            }

            /// The wire value.
            #[inline]
            pub const fn as_u32(self) -> u32 {
                match self {
                    $( Self::$variant => $value, )*
                }
            }

            /// The spec name, e.g. `"submit_sm_resp"`.
            pub const fn name(self) -> &'static str {
                match self {
                    $( Self::$variant => $name, )*
                }
            }
        }
    };
}

command_ids! {
    /// generic_nack (§4.3.1).
    GenericNack = 0x8000_0000, "generic_nack";
    /// bind_receiver (§4.1.3).
    BindReceiver = 0x0000_0001, "bind_receiver";
    /// bind_receiver_resp (§4.1.4).
    BindReceiverResp = 0x8000_0001, "bind_receiver_resp";
    /// bind_transmitter (§4.1.1).
    BindTransmitter = 0x0000_0002, "bind_transmitter";
    /// bind_transmitter_resp (§4.1.2).
    BindTransmitterResp = 0x8000_0002, "bind_transmitter_resp";
    /// query_sm (§4.8.1).
    QuerySm = 0x0000_0003, "query_sm";
    /// query_sm_resp (§4.8.2).
    QuerySmResp = 0x8000_0003, "query_sm_resp";
    /// submit_sm (§4.4.1).
    SubmitSm = 0x0000_0004, "submit_sm";
    /// submit_sm_resp (§4.4.2).
    SubmitSmResp = 0x8000_0004, "submit_sm_resp";
    /// deliver_sm (§4.6.1).
    DeliverSm = 0x0000_0005, "deliver_sm";
    /// deliver_sm_resp (§4.6.2).
    DeliverSmResp = 0x8000_0005, "deliver_sm_resp";
    /// unbind (§4.2.1).
    Unbind = 0x0000_0006, "unbind";
    /// unbind_resp (§4.2.2).
    UnbindResp = 0x8000_0006, "unbind_resp";
    /// replace_sm (§4.10.1).
    ReplaceSm = 0x0000_0007, "replace_sm";
    /// replace_sm_resp (§4.10.2).
    ReplaceSmResp = 0x8000_0007, "replace_sm_resp";
    /// cancel_sm (§4.9.1).
    CancelSm = 0x0000_0008, "cancel_sm";
    /// cancel_sm_resp (§4.9.2).
    CancelSmResp = 0x8000_0008, "cancel_sm_resp";
    /// bind_transceiver (§4.1.5).
    BindTransceiver = 0x0000_0009, "bind_transceiver";
    /// bind_transceiver_resp (§4.1.6).
    BindTransceiverResp = 0x8000_0009, "bind_transceiver_resp";
    /// outbind (§4.1.7); it has no response.
    Outbind = 0x0000_000B, "outbind";
    /// enquire_link (§4.11.1).
    EnquireLink = 0x0000_0015, "enquire_link";
    /// enquire_link_resp (§4.11.2).
    EnquireLinkResp = 0x8000_0015, "enquire_link_resp";
    /// submit_multi (§4.5.1).
    SubmitMulti = 0x0000_0021, "submit_multi";
    /// submit_multi_resp (§4.5.2).
    SubmitMultiResp = 0x8000_0021, "submit_multi_resp";
    /// alert_notification (§4.12.1); it has no response.
    AlertNotification = 0x0000_0102, "alert_notification";
    /// data_sm (§4.7.1).
    DataSm = 0x0000_0103, "data_sm";
    /// data_sm_resp (§4.7.2).
    DataSmResp = 0x8000_0103, "data_sm_resp";
}

impl CommandId {
    /// True for responses (bit 31 set), generic_nack included.
    #[inline]
    pub const fn is_response(self) -> bool {
        self.as_u32() & RESP_BIT != 0
    }

    /// The response a request expects; `None` for responses, outbind and alert_notification.
    pub const fn response(self) -> Option<Self> {
        match self {
            Self::Outbind | Self::AlertNotification => None,
            _ if self.is_response() => None,
            _ => Self::from_u32(self.as_u32() | RESP_BIT),
        }
    }

    /// The request a response answers; `None` for requests and generic_nack.
    pub const fn request(self) -> Option<Self> {
        match self {
            Self::GenericNack => None,
            _ if !self.is_response() => None,
            _ => Self::from_u32(self.as_u32() & !RESP_BIT),
        }
    }

    /// True for bind_transmitter, bind_receiver and bind_transceiver.
    #[inline]
    pub const fn is_bind(self) -> bool {
        matches!(
            self,
            Self::BindTransmitter | Self::BindReceiver | Self::BindTransceiver
        )
    }
}

impl fmt::Display for CommandId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// An SMPP `command_status` (§5.1.3). Any u32 is representable (vendor codes 0x400–0x4FF
/// included); the named constants are table 5-2.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct CommandStatus(pub u32);

macro_rules! statuses {
    ($( $(#[$doc:meta])* $name:ident = $value:literal; )*) => {
        #[allow(missing_docs, reason = "the constant name is the spec name")]
        impl CommandStatus {
            $( $(#[$doc])* pub const $name: Self = Self($value); )*

            /// Every named status, in table 5-2 order.
            pub const ALL: &'static [Self] = &[$( Self::$name, )*];

            /// The spec name (`"ESME_RTHROTTLED"`), `None` for reserved or vendor codes.
            pub const fn name(self) -> Option<&'static str> {
                match self.0 {
                    $( $value => Some(stringify!($name)), )*
                    _ => None,
                }
            }
        }
    };
}

statuses! {
    ESME_ROK = 0x00;
    ESME_RINVMSGLEN = 0x01;
    ESME_RINVCMDLEN = 0x02;
    ESME_RINVCMDID = 0x03;
    ESME_RINVBNDSTS = 0x04;
    ESME_RALYBND = 0x05;
    ESME_RINVPRTFLG = 0x06;
    ESME_RINVREGDLVFLG = 0x07;
    ESME_RSYSERR = 0x08;
    ESME_RINVSRCADR = 0x0A;
    ESME_RINVDSTADR = 0x0B;
    ESME_RINVMSGID = 0x0C;
    ESME_RBINDFAIL = 0x0D;
    ESME_RINVPASWD = 0x0E;
    ESME_RINVSYSID = 0x0F;
    ESME_RCANCELFAIL = 0x11;
    ESME_RREPLACEFAIL = 0x13;
    ESME_RMSGQFUL = 0x14;
    ESME_RINVSERTYP = 0x15;
    ESME_RINVNUMDESTS = 0x33;
    ESME_RINVDLNAME = 0x34;
    ESME_RINVDESTFLAG = 0x40;
    ESME_RINVSUBREP = 0x42;
    ESME_RINVESMCLASS = 0x43;
    ESME_RCNTSUBDL = 0x44;
    ESME_RSUBMITFAIL = 0x45;
    ESME_RINVSRCTON = 0x48;
    ESME_RINVSRCNPI = 0x49;
    ESME_RINVDSTTON = 0x50;
    ESME_RINVDSTNPI = 0x51;
    ESME_RINVSYSTYP = 0x53;
    ESME_RINVREPFLAG = 0x54;
    ESME_RINVNUMMSGS = 0x55;
    ESME_RTHROTTLED = 0x58;
    ESME_RINVSCHED = 0x61;
    ESME_RINVEXPIRY = 0x62;
    ESME_RINVDFTMSGID = 0x63;
    ESME_RX_T_APPN = 0x64;
    ESME_RX_P_APPN = 0x65;
    ESME_RX_R_APPN = 0x66;
    ESME_RQUERYFAIL = 0x67;
    ESME_RINVOPTPARSTREAM = 0xC0;
    ESME_ROPTPARNOTALLWD = 0xC1;
    ESME_RINVPARLEN = 0xC2;
    ESME_RMISSINGOPTPARAM = 0xC3;
    ESME_RINVOPTPARAMVAL = 0xC4;
    ESME_RDELIVERYFAILURE = 0xFE;
    ESME_RUNKNOWNERR = 0xFF;
}

impl CommandStatus {
    /// True for ESME_ROK.
    #[inline]
    pub const fn is_ok(self) -> bool {
        self.0 == 0
    }

    /// Looks a status up by spec name, case-insensitively, with or without the `ESME_` prefix.
    pub fn from_name(name: &str) -> Option<Self> {
        let bare = strip_prefix_ci(name, "ESME_");
        Self::ALL
            .iter()
            .copied()
            .find(|s| s.name().is_some_and(|n| n[5..].eq_ignore_ascii_case(bare)))
    }
}

fn strip_prefix_ci<'a>(s: &'a str, prefix: &str) -> &'a str {
    match s.get(..prefix.len()) {
        Some(head) if head.eq_ignore_ascii_case(prefix) => &s[prefix.len()..],
        _ => s,
    }
}

impl fmt::Debug for CommandStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(n) => write!(f, "{n}"),
            None => write!(f, "CommandStatus({:#x})", self.0),
        }
    }
}

impl fmt::Display for CommandStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// An SMPP `sequence_number` (§5.1.4). Requests use 0x00000001–0x7FFFFFFF; a response echoes its
/// request's number; generic_nack may carry 0 when the offending number was unreadable.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct SequenceNumber(pub u32);

impl SequenceNumber {
    /// Highest number a request may carry.
    pub const MAX: u32 = 0x7FFF_FFFF;

    /// The number after this one, wrapping from 0x7FFFFFFF back to 1.
    #[inline]
    pub const fn next(self) -> Self {
        if self.0 >= Self::MAX {
            Self(1)
        } else {
            Self(self.0 + 1)
        }
    }
}

impl fmt::Display for SequenceNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// The 16-octet PDU header (§3.2) with the command id still raw, so a PDU with an unknown
/// command id can be answered with generic_nack using its sequence number.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// command_length: the whole PDU, header included.
    pub command_length: u32,
    /// command_id as on the wire.
    pub command_id: u32,
    /// command_status (0 in requests).
    pub command_status: CommandStatus,
    /// sequence_number.
    pub sequence_number: SequenceNumber,
}

impl Header {
    /// Reads the header from the first 16 octets; `None` when fewer are available.
    #[inline]
    pub fn parse(buf: &[u8]) -> Option<Self> {
        let h: &[u8; HEADER_LEN] = buf.get(..HEADER_LEN)?.try_into().ok()?;
        let word = |i: usize| u32::from_be_bytes([h[i], h[i + 1], h[i + 2], h[i + 3]]);
        Some(Self {
            command_length: word(0),
            command_id: word(4),
            command_status: CommandStatus(word(8)),
            sequence_number: SequenceNumber(word(12)),
        })
    }

    /// The command id, `None` when it is not an SMPP 3.4 command.
    #[inline]
    pub const fn command(&self) -> Option<CommandId> {
        CommandId::from_u32(self.command_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_and_pair_up() {
        for &id in CommandId::ALL {
            assert_eq!(CommandId::from_u32(id.as_u32()), Some(id));
            if let Some(resp) = id.response() {
                assert!(resp.is_response());
                assert_eq!(resp.request(), Some(id));
            }
        }
        assert_eq!(CommandId::Outbind.response(), None);
        assert_eq!(CommandId::AlertNotification.response(), None);
        assert_eq!(CommandId::GenericNack.request(), None);
        assert_eq!(CommandId::from_u32(0x0000_0111), None);
        assert_eq!(CommandId::ALL.len(), 27);
    }

    #[test]
    fn status_names() {
        assert_eq!(CommandStatus::ALL.len(), 48);
        assert_eq!(
            CommandStatus::ESME_RTHROTTLED.name(),
            Some("ESME_RTHROTTLED")
        );
        assert_eq!(
            CommandStatus::from_name("rthrottled"),
            Some(CommandStatus(0x58))
        );
        assert_eq!(
            CommandStatus::from_name("ESME_RINVESMCLASS"),
            Some(CommandStatus(0x43))
        );
        assert_eq!(CommandStatus::from_name("nope"), None);
        assert_eq!(
            format!("{:?}", CommandStatus(0x401)),
            "CommandStatus(0x401)"
        );
    }

    #[test]
    fn sequence_wraps() {
        assert_eq!(
            SequenceNumber(SequenceNumber::MAX).next(),
            SequenceNumber(1)
        );
        assert_eq!(SequenceNumber(0).next(), SequenceNumber(1));
    }
}
