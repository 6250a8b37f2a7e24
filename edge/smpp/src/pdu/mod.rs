//! Whole PDUs (SMPP 3.4 §3.2 and §4): [`Pdu`] = header fields + a [`Body`] per command id.
//! [`Pdu::decode`] takes exactly one framed PDU and borrows every string, octet string and TLV
//! from it (no allocation); [`Pdu::encode`] appends to the caller's buffer. Framing a byte
//! stream is `framer`'s job; which PDU a session may send or accept is `session`'s.

mod bodies;
#[cfg(test)]
pub(crate) mod tests;

pub use bodies::{
    AlertNotification, Bind, BindResp, CancelSm, DataSm, DataSmResp, DeliverSm, Dest, MAX_DESTS,
    MAX_SHORT_MESSAGE, MessageIdResp, Outbind, QuerySm, QuerySmResp, ReplaceSm, SubmitMulti,
    SubmitMultiResp, SubmitSm, UnsuccessSme,
};

use crate::codec::Reader;
use crate::command::{CommandId, CommandStatus, HEADER_LEN, Header, SequenceNumber};
use crate::error::{DecodeError, DecodeErrorKind, EncodeError, EncodeErrorKind, Field};

/// The body of a PDU, one variant per SMPP 3.4 command.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
#[allow(missing_docs, reason = "variant names are the spec command names")]
pub enum Body<'a> {
    GenericNack,
    BindReceiver(Bind<'a>),
    BindReceiverResp(BindResp<'a>),
    BindTransmitter(Bind<'a>),
    BindTransmitterResp(BindResp<'a>),
    BindTransceiver(Bind<'a>),
    BindTransceiverResp(BindResp<'a>),
    QuerySm(QuerySm<'a>),
    QuerySmResp(QuerySmResp<'a>),
    SubmitSm(SubmitSm<'a>),
    SubmitSmResp(MessageIdResp<'a>),
    DeliverSm(DeliverSm<'a>),
    DeliverSmResp(MessageIdResp<'a>),
    Unbind,
    UnbindResp,
    ReplaceSm(ReplaceSm<'a>),
    ReplaceSmResp,
    CancelSm(CancelSm<'a>),
    CancelSmResp,
    Outbind(Outbind<'a>),
    EnquireLink,
    EnquireLinkResp,
    SubmitMulti(SubmitMulti<'a>),
    SubmitMultiResp(SubmitMultiResp<'a>),
    AlertNotification(AlertNotification<'a>),
    DataSm(DataSm<'a>),
    DataSmResp(DataSmResp<'a>),
}

impl<'a> Body<'a> {
    /// The command id this body is sent under.
    pub const fn command_id(&self) -> CommandId {
        match self {
            Self::GenericNack => CommandId::GenericNack,
            Self::BindReceiver(_) => CommandId::BindReceiver,
            Self::BindReceiverResp(_) => CommandId::BindReceiverResp,
            Self::BindTransmitter(_) => CommandId::BindTransmitter,
            Self::BindTransmitterResp(_) => CommandId::BindTransmitterResp,
            Self::BindTransceiver(_) => CommandId::BindTransceiver,
            Self::BindTransceiverResp(_) => CommandId::BindTransceiverResp,
            Self::QuerySm(_) => CommandId::QuerySm,
            Self::QuerySmResp(_) => CommandId::QuerySmResp,
            Self::SubmitSm(_) => CommandId::SubmitSm,
            Self::SubmitSmResp(_) => CommandId::SubmitSmResp,
            Self::DeliverSm(_) => CommandId::DeliverSm,
            Self::DeliverSmResp(_) => CommandId::DeliverSmResp,
            Self::Unbind => CommandId::Unbind,
            Self::UnbindResp => CommandId::UnbindResp,
            Self::ReplaceSm(_) => CommandId::ReplaceSm,
            Self::ReplaceSmResp => CommandId::ReplaceSmResp,
            Self::CancelSm(_) => CommandId::CancelSm,
            Self::CancelSmResp => CommandId::CancelSmResp,
            Self::Outbind(_) => CommandId::Outbind,
            Self::EnquireLink => CommandId::EnquireLink,
            Self::EnquireLinkResp => CommandId::EnquireLinkResp,
            Self::SubmitMulti(_) => CommandId::SubmitMulti,
            Self::SubmitMultiResp(_) => CommandId::SubmitMultiResp,
            Self::AlertNotification(_) => CommandId::AlertNotification,
            Self::DataSm(_) => CommandId::DataSm,
            Self::DataSmResp(_) => CommandId::DataSmResp,
        }
    }

    /// The body a response to `request` carries when it has no fields set: what an error
    /// response decodes to when the peer sent the header only. `None` for commands that have
    /// no response.
    pub fn empty_response(request: CommandId) -> Option<Self> {
        let resp = request.response()?;
        Some(Self::empty(resp))
    }

    /// The default (all-empty) body of `id`.
    pub fn empty(id: CommandId) -> Self {
        match id {
            CommandId::GenericNack => Self::GenericNack,
            CommandId::BindReceiver => Self::BindReceiver(Bind::default()),
            CommandId::BindReceiverResp => Self::BindReceiverResp(BindResp::default()),
            CommandId::BindTransmitter => Self::BindTransmitter(Bind::default()),
            CommandId::BindTransmitterResp => Self::BindTransmitterResp(BindResp::default()),
            CommandId::BindTransceiver => Self::BindTransceiver(Bind::default()),
            CommandId::BindTransceiverResp => Self::BindTransceiverResp(BindResp::default()),
            CommandId::QuerySm => Self::QuerySm(QuerySm::default()),
            CommandId::QuerySmResp => Self::QuerySmResp(QuerySmResp::default()),
            CommandId::SubmitSm => Self::SubmitSm(SubmitSm::default()),
            CommandId::SubmitSmResp => Self::SubmitSmResp(MessageIdResp::default()),
            CommandId::DeliverSm => Self::DeliverSm(SubmitSm::default()),
            CommandId::DeliverSmResp => Self::DeliverSmResp(MessageIdResp::default()),
            CommandId::Unbind => Self::Unbind,
            CommandId::UnbindResp => Self::UnbindResp,
            CommandId::ReplaceSm => Self::ReplaceSm(ReplaceSm::default()),
            CommandId::ReplaceSmResp => Self::ReplaceSmResp,
            CommandId::CancelSm => Self::CancelSm(CancelSm::default()),
            CommandId::CancelSmResp => Self::CancelSmResp,
            CommandId::Outbind => Self::Outbind(Outbind::default()),
            CommandId::EnquireLink => Self::EnquireLink,
            CommandId::EnquireLinkResp => Self::EnquireLinkResp,
            CommandId::SubmitMulti => Self::SubmitMulti(SubmitMulti::default()),
            CommandId::SubmitMultiResp => Self::SubmitMultiResp(SubmitMultiResp::default()),
            CommandId::AlertNotification => Self::AlertNotification(AlertNotification::default()),
            CommandId::DataSm => Self::DataSm(DataSm::default()),
            CommandId::DataSmResp => Self::DataSmResp(DataSmResp::default()),
        }
    }

    #[inline]
    fn read(id: CommandId, r: &mut Reader<'a>) -> Result<Self, DecodeError> {
        Ok(match id {
            CommandId::SubmitSm => Self::SubmitSm(SubmitSm::read(r)?),
            CommandId::DeliverSm => Self::DeliverSm(SubmitSm::read(r)?),
            CommandId::SubmitSmResp => Self::SubmitSmResp(MessageIdResp::read(r)?),
            CommandId::DeliverSmResp => Self::DeliverSmResp(MessageIdResp::read(r)?),
            CommandId::GenericNack => Self::GenericNack,
            CommandId::BindReceiver => Self::BindReceiver(Bind::read(r)?),
            CommandId::BindReceiverResp => Self::BindReceiverResp(BindResp::read(r)?),
            CommandId::BindTransmitter => Self::BindTransmitter(Bind::read(r)?),
            CommandId::BindTransmitterResp => Self::BindTransmitterResp(BindResp::read(r)?),
            CommandId::BindTransceiver => Self::BindTransceiver(Bind::read(r)?),
            CommandId::BindTransceiverResp => Self::BindTransceiverResp(BindResp::read(r)?),
            CommandId::QuerySm => Self::QuerySm(QuerySm::read(r)?),
            CommandId::QuerySmResp => Self::QuerySmResp(QuerySmResp::read(r)?),
            CommandId::Unbind => Self::Unbind,
            CommandId::UnbindResp => Self::UnbindResp,
            CommandId::ReplaceSm => Self::ReplaceSm(ReplaceSm::read(r)?),
            CommandId::ReplaceSmResp => Self::ReplaceSmResp,
            CommandId::CancelSm => Self::CancelSm(CancelSm::read(r)?),
            CommandId::CancelSmResp => Self::CancelSmResp,
            CommandId::Outbind => Self::Outbind(Outbind::read(r)?),
            CommandId::EnquireLink => Self::EnquireLink,
            CommandId::EnquireLinkResp => Self::EnquireLinkResp,
            CommandId::SubmitMulti => Self::SubmitMulti(SubmitMulti::read(r)?),
            CommandId::SubmitMultiResp => Self::SubmitMultiResp(SubmitMultiResp::read(r)?),
            CommandId::AlertNotification => Self::AlertNotification(AlertNotification::read(r)?),
            CommandId::DataSm => Self::DataSm(DataSm::read(r)?),
            CommandId::DataSmResp => Self::DataSmResp(DataSmResp::read(r)?),
        })
    }

    #[inline]
    fn write(&self, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        match self {
            Self::SubmitSm(b) | Self::DeliverSm(b) => b.write(out),
            Self::SubmitSmResp(b) | Self::DeliverSmResp(b) => b.write(out),
            Self::BindReceiver(b) | Self::BindTransmitter(b) | Self::BindTransceiver(b) => {
                b.write(out)
            }
            Self::BindReceiverResp(b)
            | Self::BindTransmitterResp(b)
            | Self::BindTransceiverResp(b) => b.write(out),
            Self::QuerySm(b) => b.write(out),
            Self::QuerySmResp(b) => b.write(out),
            Self::ReplaceSm(b) => b.write(out),
            Self::CancelSm(b) => b.write(out),
            Self::Outbind(b) => b.write(out),
            Self::SubmitMulti(b) => b.write(out),
            Self::SubmitMultiResp(b) => b.write(out),
            Self::AlertNotification(b) => b.write(out),
            Self::DataSm(b) => b.write(out),
            Self::DataSmResp(b) => b.write(out),
            Self::GenericNack
            | Self::Unbind
            | Self::UnbindResp
            | Self::ReplaceSmResp
            | Self::CancelSmResp
            | Self::EnquireLink
            | Self::EnquireLinkResp => Ok(()),
        }
    }
}

/// One SMPP PDU: the header's status and sequence number plus the body (which fixes the
/// command id). Decoding borrows from the input; all fields are plain data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pdu<'a> {
    /// command_status (ESME_ROK in requests).
    pub status: CommandStatus,
    /// sequence_number.
    pub sequence: SequenceNumber,
    /// The body.
    pub body: Body<'a>,
}

impl<'a> Pdu<'a> {
    /// A request (status ESME_ROK).
    #[inline]
    pub const fn request(sequence: SequenceNumber, body: Body<'a>) -> Self {
        Self {
            status: CommandStatus::ESME_ROK,
            sequence,
            body,
        }
    }

    /// The command id.
    #[inline]
    pub const fn command_id(&self) -> CommandId {
        self.body.command_id()
    }

    /// Decodes exactly one PDU: `buf.len()` must equal command_length (use `framer` to cut a
    /// stream). Trailing octets after the last body field are an error; a response whose body
    /// is absent (the usual form of an error response) decodes to the empty body.
    #[inline]
    pub fn decode(buf: &'a [u8]) -> Result<Self, DecodeError> {
        let header = Header::parse(buf).ok_or(DecodeError {
            field: Field::CommandLength,
            kind: DecodeErrorKind::LengthMismatch {
                command_length: 0,
                available: buf.len(),
            },
            offset: 0,
        })?;
        Self::decode_with_header(&header, buf)
    }

    /// [`Pdu::decode`] with the header already parsed (saves re-reading it).
    #[inline]
    pub fn decode_with_header(header: &Header, buf: &'a [u8]) -> Result<Self, DecodeError> {
        let command_length = header.command_length;
        if (command_length as usize) != buf.len() || (command_length as usize) < HEADER_LEN {
            return Err(DecodeError {
                field: Field::CommandLength,
                kind: DecodeErrorKind::LengthMismatch {
                    command_length,
                    available: buf.len(),
                },
                offset: 0,
            });
        }
        let id = header.command().ok_or(DecodeError {
            field: Field::CommandId,
            kind: DecodeErrorKind::UnknownCommandId {
                command_id: header.command_id,
            },
            offset: 4,
        })?;
        let mut r = Reader::new(buf, HEADER_LEN);
        let body = if id.is_response() && r.remaining() == 0 {
            Body::empty(id)
        } else {
            let b = Body::read(id, &mut r)?;
            r.finish()?;
            b
        };
        Ok(Self {
            status: header.command_status,
            sequence: header.sequence_number,
            body,
        })
    }

    /// Appends the encoded PDU to `out` and returns its length. A response with a non-OK
    /// status and an all-empty body is written header-only (§4: "the body is not returned if
    /// command_status is non-zero"). On error `out` is left as it was.
    #[inline]
    pub fn encode(&self, out: &mut Vec<u8>) -> Result<usize, EncodeError> {
        let start = out.len();
        let id = self.body.command_id();
        out.extend_from_slice(&[0; 4]);
        out.extend_from_slice(&id.as_u32().to_be_bytes());
        out.extend_from_slice(&self.status.0.to_be_bytes());
        out.extend_from_slice(&self.sequence.0.to_be_bytes());
        let header_only = id.is_response() && !self.status.is_ok() && self.body == Body::empty(id);
        if !header_only && let Err(e) = self.body.write(out) {
            out.truncate(start);
            return Err(e);
        }
        let len = out.len() - start;
        let Ok(len32) = u32::try_from(len) else {
            out.truncate(start);
            return Err(EncodeError {
                field: Field::CommandLength,
                kind: EncodeErrorKind::TooLong {
                    len,
                    max: u32::MAX as usize,
                },
            });
        };
        out[start..start + 4].copy_from_slice(&len32.to_be_bytes());
        Ok(len)
    }

    /// A response to this request with `status` and an empty body; `None` when this PDU is a
    /// response, outbind or alert_notification.
    pub fn empty_response(&self, status: CommandStatus) -> Option<Pdu<'static>> {
        Some(Pdu {
            status,
            sequence: self.sequence,
            body: Body::empty_response(self.command_id())?,
        })
    }
}

/// A generic_nack (§4.3.1) carrying `status` for `sequence`.
pub const fn generic_nack(status: CommandStatus, sequence: SequenceNumber) -> Pdu<'static> {
    Pdu {
        status,
        sequence,
        body: Body::GenericNack,
    }
}
