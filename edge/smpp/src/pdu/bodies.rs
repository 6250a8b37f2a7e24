//! PDU bodies of SMPP 3.4 §4 (one struct per layout; deliver_sm shares submit_sm's), each with
//! its decoder (borrowing from the PDU) and encoder (appending to the caller's buffer). Field
//! maxima are the spec's, C-Octet-String lengths counting the NUL (§4.1–§4.12).

use crate::codec::{Item, List, Reader, put_cstr, put_time};
use crate::command::CommandStatus;
use crate::error::{DecodeError, DecodeErrorKind, EncodeError, EncodeErrorKind, Field};
use crate::tlv::{TlvTag, Tlvs};

/// Largest short_message (§5.2.21).
pub const MAX_SHORT_MESSAGE: usize = 254;
/// Most destinations in one submit_multi (§5.2.24).
pub const MAX_DESTS: usize = 254;

#[inline]
fn short_message<'a>(r: &mut Reader<'a>) -> Result<&'a [u8], DecodeError> {
    let at = r.pos();
    let len = usize::from(r.u8(Field::SmLength)?);
    if len > MAX_SHORT_MESSAGE {
        return Err(DecodeError {
            field: Field::SmLength,
            kind: DecodeErrorKind::TooLong {
                len,
                max: MAX_SHORT_MESSAGE,
            },
            offset: at,
        });
    }
    r.bytes(Field::ShortMessage, len)
}

/// Rejects a PDU carrying both short_message and message_payload.
#[inline]
fn check_payload(sm: &[u8], tlvs: &Tlvs<'_>, at: usize) -> Result<(), DecodeError> {
    if !sm.is_empty() && tlvs.get(TlvTag::MESSAGE_PAYLOAD).is_some() {
        return Err(DecodeError {
            field: Field::ShortMessage,
            kind: DecodeErrorKind::PayloadConflict,
            offset: at,
        });
    }
    Ok(())
}

#[inline]
fn put_short_message(out: &mut Vec<u8>, sm: &[u8], tlvs: &Tlvs<'_>) -> Result<(), EncodeError> {
    if sm.len() > MAX_SHORT_MESSAGE {
        return Err(EncodeError {
            field: Field::ShortMessage,
            kind: EncodeErrorKind::TooLong {
                len: sm.len(),
                max: MAX_SHORT_MESSAGE,
            },
        });
    }
    if !sm.is_empty() && tlvs.get(TlvTag::MESSAGE_PAYLOAD).is_some() {
        return Err(EncodeError {
            field: Field::ShortMessage,
            kind: EncodeErrorKind::PayloadConflict,
        });
    }
    #[allow(clippy::cast_possible_truncation, reason = "checked <= 254 above")]
    out.push(sm.len() as u8);
    out.extend_from_slice(sm);
    Ok(())
}

/// bind_transmitter, bind_receiver and bind_transceiver (§4.1.1, §4.1.3, §4.1.5).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Bind<'a> {
    /// system_id, ≤ 15 characters.
    pub system_id: &'a [u8],
    /// password, ≤ 8 characters.
    pub password: &'a [u8],
    /// system_type, ≤ 12 characters.
    pub system_type: &'a [u8],
    /// interface_version: 0x34 for this spec.
    pub interface_version: u8,
    /// addr_ton.
    pub addr_ton: u8,
    /// addr_npi.
    pub addr_npi: u8,
    /// address_range, ≤ 40 characters.
    pub address_range: &'a [u8],
}

impl<'a> Bind<'a> {
    pub(crate) fn read(r: &mut Reader<'a>) -> Result<Self, DecodeError> {
        Ok(Self {
            system_id: r.cstr(Field::SystemId, 16)?,
            password: r.cstr(Field::Password, 9)?,
            system_type: r.cstr(Field::SystemType, 13)?,
            interface_version: r.u8(Field::InterfaceVersion)?,
            addr_ton: r.u8(Field::AddrTon)?,
            addr_npi: r.u8(Field::AddrNpi)?,
            address_range: r.cstr(Field::AddressRange, 41)?,
        })
    }

    pub(crate) fn write(&self, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        put_cstr(out, Field::SystemId, self.system_id, 16)?;
        put_cstr(out, Field::Password, self.password, 9)?;
        put_cstr(out, Field::SystemType, self.system_type, 13)?;
        out.extend_from_slice(&[self.interface_version, self.addr_ton, self.addr_npi]);
        put_cstr(out, Field::AddressRange, self.address_range, 41)
    }
}

/// bind_*_resp (§4.1.2, §4.1.4, §4.1.6); `sc_interface_version` travels as a TLV.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BindResp<'a> {
    /// system_id of the SMSC, ≤ 15 characters.
    pub system_id: &'a [u8],
    /// TLVs (sc_interface_version).
    pub tlvs: Tlvs<'a>,
}

impl<'a> BindResp<'a> {
    pub(crate) fn read(r: &mut Reader<'a>) -> Result<Self, DecodeError> {
        Ok(Self {
            system_id: r.cstr(Field::SystemId, 16)?,
            tlvs: List::read(r, None)?,
        })
    }

    pub(crate) fn write(&self, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        put_cstr(out, Field::SystemId, self.system_id, 16)?;
        self.tlvs.write(out)
    }
}

/// outbind (§4.1.7).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Outbind<'a> {
    /// system_id of the SMSC.
    pub system_id: &'a [u8],
    /// password.
    pub password: &'a [u8],
}

impl<'a> Outbind<'a> {
    pub(crate) fn read(r: &mut Reader<'a>) -> Result<Self, DecodeError> {
        Ok(Self {
            system_id: r.cstr(Field::SystemId, 16)?,
            password: r.cstr(Field::Password, 9)?,
        })
    }

    pub(crate) fn write(&self, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        put_cstr(out, Field::SystemId, self.system_id, 16)?;
        put_cstr(out, Field::Password, self.password, 9)
    }
}

/// submit_sm (§4.4.1) and deliver_sm (§4.6.1), which share one layout. In deliver_sm,
/// schedule_delivery_time, validity_period, replace_if_present_flag and sm_default_msg_id
/// are unused and should be empty/zero.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SubmitSm<'a> {
    /// service_type, ≤ 5 characters.
    pub service_type: &'a [u8],
    /// source_addr_ton.
    pub source_addr_ton: u8,
    /// source_addr_npi.
    pub source_addr_npi: u8,
    /// source_addr, ≤ 20 characters.
    pub source_addr: &'a [u8],
    /// dest_addr_ton.
    pub dest_addr_ton: u8,
    /// dest_addr_npi.
    pub dest_addr_npi: u8,
    /// destination_addr, ≤ 20 characters.
    pub destination_addr: &'a [u8],
    /// esm_class (0x04: delivery receipt, 0x40: UDHI).
    pub esm_class: u8,
    /// protocol_id.
    pub protocol_id: u8,
    /// priority_flag.
    pub priority_flag: u8,
    /// schedule_delivery_time: empty or 16 characters.
    pub schedule_delivery_time: &'a [u8],
    /// validity_period: empty or 16 characters.
    pub validity_period: &'a [u8],
    /// registered_delivery.
    pub registered_delivery: u8,
    /// replace_if_present_flag.
    pub replace_if_present_flag: u8,
    /// data_coding.
    pub data_coding: u8,
    /// sm_default_msg_id.
    pub sm_default_msg_id: u8,
    /// short_message, ≤ 254 octets (sm_length is derived).
    pub short_message: &'a [u8],
    /// TLVs.
    pub tlvs: Tlvs<'a>,
}

/// deliver_sm has submit_sm's layout (§4.6.1).
pub type DeliverSm<'a> = SubmitSm<'a>;

impl<'a> SubmitSm<'a> {
    #[inline]
    pub(crate) fn read(r: &mut Reader<'a>) -> Result<Self, DecodeError> {
        let mut s = Self {
            service_type: r.cstr(Field::ServiceType, 6)?,
            source_addr_ton: r.u8(Field::SourceAddrTon)?,
            source_addr_npi: r.u8(Field::SourceAddrNpi)?,
            source_addr: r.cstr(Field::SourceAddr, 21)?,
            dest_addr_ton: r.u8(Field::DestAddrTon)?,
            dest_addr_npi: r.u8(Field::DestAddrNpi)?,
            destination_addr: r.cstr(Field::DestinationAddr, 21)?,
            esm_class: r.u8(Field::EsmClass)?,
            protocol_id: r.u8(Field::ProtocolId)?,
            priority_flag: r.u8(Field::PriorityFlag)?,
            schedule_delivery_time: r.time(Field::ScheduleDeliveryTime)?,
            validity_period: r.time(Field::ValidityPeriod)?,
            registered_delivery: r.u8(Field::RegisteredDelivery)?,
            replace_if_present_flag: r.u8(Field::ReplaceIfPresentFlag)?,
            data_coding: r.u8(Field::DataCoding)?,
            sm_default_msg_id: r.u8(Field::SmDefaultMsgId)?,
            ..Self::default()
        };
        let at = r.pos();
        s.short_message = short_message(r)?;
        s.tlvs = List::read(r, None)?;
        check_payload(s.short_message, &s.tlvs, at)?;
        Ok(s)
    }

    #[inline]
    pub(crate) fn write(&self, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        put_cstr(out, Field::ServiceType, self.service_type, 6)?;
        out.extend_from_slice(&[self.source_addr_ton, self.source_addr_npi]);
        put_cstr(out, Field::SourceAddr, self.source_addr, 21)?;
        out.extend_from_slice(&[self.dest_addr_ton, self.dest_addr_npi]);
        put_cstr(out, Field::DestinationAddr, self.destination_addr, 21)?;
        out.extend_from_slice(&[self.esm_class, self.protocol_id, self.priority_flag]);
        put_time(
            out,
            Field::ScheduleDeliveryTime,
            self.schedule_delivery_time,
        )?;
        put_time(out, Field::ValidityPeriod, self.validity_period)?;
        out.extend_from_slice(&[
            self.registered_delivery,
            self.replace_if_present_flag,
            self.data_coding,
            self.sm_default_msg_id,
        ]);
        put_short_message(out, self.short_message, &self.tlvs)?;
        self.tlvs.write(out)
    }

    /// The message text: the message_payload TLV when present, else short_message.
    #[inline]
    pub fn body(&self) -> &'a [u8] {
        self.tlvs
            .value(TlvTag::MESSAGE_PAYLOAD)
            .unwrap_or(self.short_message)
    }
}

/// submit_sm_resp and deliver_sm_resp (§4.4.2, §4.6.2): just a message_id.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MessageIdResp<'a> {
    /// message_id, ≤ 64 characters (unused, empty, in deliver_sm_resp).
    pub message_id: &'a [u8],
}

impl<'a> MessageIdResp<'a> {
    #[inline]
    pub(crate) fn read(r: &mut Reader<'a>) -> Result<Self, DecodeError> {
        Ok(Self {
            message_id: r.cstr(Field::MessageId, 65)?,
        })
    }

    #[inline]
    pub(crate) fn write(&self, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        put_cstr(out, Field::MessageId, self.message_id, 65)
    }
}

/// data_sm (§4.7.1). Addresses may be up to 64 characters here.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DataSm<'a> {
    /// service_type.
    pub service_type: &'a [u8],
    /// source_addr_ton.
    pub source_addr_ton: u8,
    /// source_addr_npi.
    pub source_addr_npi: u8,
    /// source_addr, ≤ 64 characters.
    pub source_addr: &'a [u8],
    /// dest_addr_ton.
    pub dest_addr_ton: u8,
    /// dest_addr_npi.
    pub dest_addr_npi: u8,
    /// destination_addr, ≤ 64 characters.
    pub destination_addr: &'a [u8],
    /// esm_class.
    pub esm_class: u8,
    /// registered_delivery.
    pub registered_delivery: u8,
    /// data_coding.
    pub data_coding: u8,
    /// TLVs (the text travels as message_payload).
    pub tlvs: Tlvs<'a>,
}

impl<'a> DataSm<'a> {
    pub(crate) fn read(r: &mut Reader<'a>) -> Result<Self, DecodeError> {
        Ok(Self {
            service_type: r.cstr(Field::ServiceType, 6)?,
            source_addr_ton: r.u8(Field::SourceAddrTon)?,
            source_addr_npi: r.u8(Field::SourceAddrNpi)?,
            source_addr: r.cstr(Field::SourceAddr, 65)?,
            dest_addr_ton: r.u8(Field::DestAddrTon)?,
            dest_addr_npi: r.u8(Field::DestAddrNpi)?,
            destination_addr: r.cstr(Field::DestinationAddr, 65)?,
            esm_class: r.u8(Field::EsmClass)?,
            registered_delivery: r.u8(Field::RegisteredDelivery)?,
            data_coding: r.u8(Field::DataCoding)?,
            tlvs: List::read(r, None)?,
        })
    }

    pub(crate) fn write(&self, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        put_cstr(out, Field::ServiceType, self.service_type, 6)?;
        out.extend_from_slice(&[self.source_addr_ton, self.source_addr_npi]);
        put_cstr(out, Field::SourceAddr, self.source_addr, 65)?;
        out.extend_from_slice(&[self.dest_addr_ton, self.dest_addr_npi]);
        put_cstr(out, Field::DestinationAddr, self.destination_addr, 65)?;
        out.extend_from_slice(&[self.esm_class, self.registered_delivery, self.data_coding]);
        self.tlvs.write(out)
    }

    /// The message text (message_payload), empty when absent.
    pub fn body(&self) -> &'a [u8] {
        self.tlvs.value(TlvTag::MESSAGE_PAYLOAD).unwrap_or_default()
    }
}

/// data_sm_resp (§4.7.2).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DataSmResp<'a> {
    /// message_id.
    pub message_id: &'a [u8],
    /// TLVs (delivery_failure_reason, network_error_code, additional_status_info_text,
    /// dpf_result).
    pub tlvs: Tlvs<'a>,
}

impl<'a> DataSmResp<'a> {
    pub(crate) fn read(r: &mut Reader<'a>) -> Result<Self, DecodeError> {
        Ok(Self {
            message_id: r.cstr(Field::MessageId, 65)?,
            tlvs: List::read(r, None)?,
        })
    }

    pub(crate) fn write(&self, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        put_cstr(out, Field::MessageId, self.message_id, 65)?;
        self.tlvs.write(out)
    }
}

/// One submit_multi destination (§4.5.1.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dest<'a> {
    /// dest_flag 1: an SME address.
    Sme {
        /// dest_addr_ton.
        ton: u8,
        /// dest_addr_npi.
        npi: u8,
        /// destination_addr, ≤ 20 characters.
        addr: &'a [u8],
    },
    /// dest_flag 2: a distribution list name, ≤ 20 characters.
    DistributionList(&'a [u8]),
}

impl<'a> Item<'a> for Dest<'a> {
    fn read(r: &mut Reader<'a>) -> Result<Self, DecodeError> {
        let at = r.pos();
        match r.u8(Field::DestFlag)? {
            1 => Ok(Self::Sme {
                ton: r.u8(Field::DestAddrTon)?,
                npi: r.u8(Field::DestAddrNpi)?,
                addr: r.cstr(Field::DestinationAddr, 21)?,
            }),
            2 => Ok(Self::DistributionList(r.cstr(Field::DlName, 21)?)),
            v => Err(DecodeError {
                field: Field::DestFlag,
                kind: DecodeErrorKind::InvalidValue {
                    value: u32::from(v),
                },
                offset: at,
            }),
        }
    }

    fn write(&self, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        match *self {
            Self::Sme { ton, npi, addr } => {
                out.extend_from_slice(&[1, ton, npi]);
                put_cstr(out, Field::DestinationAddr, addr, 21)
            }
            Self::DistributionList(name) => {
                out.push(2);
                put_cstr(out, Field::DlName, name, 21)
            }
        }
    }
}

/// submit_multi (§4.5.1).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SubmitMulti<'a> {
    /// service_type.
    pub service_type: &'a [u8],
    /// source_addr_ton.
    pub source_addr_ton: u8,
    /// source_addr_npi.
    pub source_addr_npi: u8,
    /// source_addr.
    pub source_addr: &'a [u8],
    /// Destinations, 1..=254 (number_of_dests is derived).
    pub dests: List<'a, Dest<'a>>,
    /// esm_class.
    pub esm_class: u8,
    /// protocol_id.
    pub protocol_id: u8,
    /// priority_flag.
    pub priority_flag: u8,
    /// schedule_delivery_time.
    pub schedule_delivery_time: &'a [u8],
    /// validity_period.
    pub validity_period: &'a [u8],
    /// registered_delivery.
    pub registered_delivery: u8,
    /// replace_if_present_flag.
    pub replace_if_present_flag: u8,
    /// data_coding.
    pub data_coding: u8,
    /// sm_default_msg_id.
    pub sm_default_msg_id: u8,
    /// short_message.
    pub short_message: &'a [u8],
    /// TLVs.
    pub tlvs: Tlvs<'a>,
}

impl<'a> SubmitMulti<'a> {
    pub(crate) fn read(r: &mut Reader<'a>) -> Result<Self, DecodeError> {
        let service_type = r.cstr(Field::ServiceType, 6)?;
        let source_addr_ton = r.u8(Field::SourceAddrTon)?;
        let source_addr_npi = r.u8(Field::SourceAddrNpi)?;
        let source_addr = r.cstr(Field::SourceAddr, 21)?;
        let at = r.pos();
        let n = usize::from(r.u8(Field::NumberOfDests)?);
        if n == 0 || n > MAX_DESTS {
            return Err(DecodeError {
                field: Field::NumberOfDests,
                kind: DecodeErrorKind::InvalidValue {
                    #[allow(clippy::cast_possible_truncation, reason = "n <= 255")]
                    value: n as u32,
                },
                offset: at,
            });
        }
        Ok(Self {
            service_type,
            source_addr_ton,
            source_addr_npi,
            source_addr,
            dests: List::read(r, Some(n))?,
            esm_class: r.u8(Field::EsmClass)?,
            protocol_id: r.u8(Field::ProtocolId)?,
            priority_flag: r.u8(Field::PriorityFlag)?,
            schedule_delivery_time: r.time(Field::ScheduleDeliveryTime)?,
            validity_period: r.time(Field::ValidityPeriod)?,
            registered_delivery: r.u8(Field::RegisteredDelivery)?,
            replace_if_present_flag: r.u8(Field::ReplaceIfPresentFlag)?,
            data_coding: r.u8(Field::DataCoding)?,
            sm_default_msg_id: r.u8(Field::SmDefaultMsgId)?,
            short_message: short_message(r)?,
            tlvs: List::read(r, None)?,
        })
        .and_then(|s: Self| {
            check_payload(s.short_message, &s.tlvs, r.pos())?;
            Ok(s)
        })
    }

    pub(crate) fn write(&self, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        put_cstr(out, Field::ServiceType, self.service_type, 6)?;
        out.extend_from_slice(&[self.source_addr_ton, self.source_addr_npi]);
        put_cstr(out, Field::SourceAddr, self.source_addr, 21)?;
        let n = self.dests.len();
        if n == 0 || n > MAX_DESTS {
            return Err(EncodeError {
                field: Field::NumberOfDests,
                kind: EncodeErrorKind::TooLong {
                    len: n,
                    max: MAX_DESTS,
                },
            });
        }
        #[allow(clippy::cast_possible_truncation, reason = "checked <= 254 above")]
        out.push(n as u8);
        self.dests.write(out)?;
        out.extend_from_slice(&[self.esm_class, self.protocol_id, self.priority_flag]);
        put_time(
            out,
            Field::ScheduleDeliveryTime,
            self.schedule_delivery_time,
        )?;
        put_time(out, Field::ValidityPeriod, self.validity_period)?;
        out.extend_from_slice(&[
            self.registered_delivery,
            self.replace_if_present_flag,
            self.data_coding,
            self.sm_default_msg_id,
        ]);
        put_short_message(out, self.short_message, &self.tlvs)?;
        self.tlvs.write(out)
    }
}

/// One unsuccessful destination in submit_multi_resp (§4.5.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UnsuccessSme<'a> {
    /// dest_addr_ton.
    pub ton: u8,
    /// dest_addr_npi.
    pub npi: u8,
    /// destination_addr.
    pub addr: &'a [u8],
    /// error_status_code.
    pub error_status_code: CommandStatus,
}

impl<'a> Item<'a> for UnsuccessSme<'a> {
    fn read(r: &mut Reader<'a>) -> Result<Self, DecodeError> {
        let ton = r.u8(Field::DestAddrTon)?;
        let npi = r.u8(Field::DestAddrNpi)?;
        let addr = r.cstr(Field::DestinationAddr, 21)?;
        let b = r.bytes(Field::ErrorStatusCode, 4)?;
        Ok(Self {
            ton,
            npi,
            addr,
            error_status_code: CommandStatus(u32::from_be_bytes([b[0], b[1], b[2], b[3]])),
        })
    }

    fn write(&self, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        out.extend_from_slice(&[self.ton, self.npi]);
        put_cstr(out, Field::DestinationAddr, self.addr, 21)?;
        out.extend_from_slice(&self.error_status_code.0.to_be_bytes());
        Ok(())
    }
}

/// submit_multi_resp (§4.5.2).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SubmitMultiResp<'a> {
    /// message_id.
    pub message_id: &'a [u8],
    /// The destinations that failed (no_unsuccess is derived).
    pub unsuccess: List<'a, UnsuccessSme<'a>>,
}

impl<'a> SubmitMultiResp<'a> {
    pub(crate) fn read(r: &mut Reader<'a>) -> Result<Self, DecodeError> {
        let message_id = r.cstr(Field::MessageId, 65)?;
        let n = usize::from(r.u8(Field::NoUnsuccess)?);
        Ok(Self {
            message_id,
            unsuccess: List::read(r, Some(n))?,
        })
    }

    pub(crate) fn write(&self, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        put_cstr(out, Field::MessageId, self.message_id, 65)?;
        let n = u8::try_from(self.unsuccess.len()).map_err(|_| EncodeError {
            field: Field::NoUnsuccess,
            kind: EncodeErrorKind::TooLong {
                len: self.unsuccess.len(),
                max: 255,
            },
        })?;
        out.push(n);
        self.unsuccess.write(out)
    }
}

/// query_sm (§4.8.1).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct QuerySm<'a> {
    /// message_id.
    pub message_id: &'a [u8],
    /// source_addr_ton.
    pub source_addr_ton: u8,
    /// source_addr_npi.
    pub source_addr_npi: u8,
    /// source_addr.
    pub source_addr: &'a [u8],
}

impl<'a> QuerySm<'a> {
    pub(crate) fn read(r: &mut Reader<'a>) -> Result<Self, DecodeError> {
        Ok(Self {
            message_id: r.cstr(Field::MessageId, 65)?,
            source_addr_ton: r.u8(Field::SourceAddrTon)?,
            source_addr_npi: r.u8(Field::SourceAddrNpi)?,
            source_addr: r.cstr(Field::SourceAddr, 21)?,
        })
    }

    pub(crate) fn write(&self, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        put_cstr(out, Field::MessageId, self.message_id, 65)?;
        out.extend_from_slice(&[self.source_addr_ton, self.source_addr_npi]);
        put_cstr(out, Field::SourceAddr, self.source_addr, 21)
    }
}

/// query_sm_resp (§4.8.2).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct QuerySmResp<'a> {
    /// message_id.
    pub message_id: &'a [u8],
    /// final_date: empty or 16 characters.
    pub final_date: &'a [u8],
    /// message_state (1 ENROUTE … 8 REJECTED).
    pub message_state: u8,
    /// error_code (network specific).
    pub error_code: u8,
}

impl<'a> QuerySmResp<'a> {
    pub(crate) fn read(r: &mut Reader<'a>) -> Result<Self, DecodeError> {
        Ok(Self {
            message_id: r.cstr(Field::MessageId, 65)?,
            final_date: r.time(Field::FinalDate)?,
            message_state: r.u8(Field::MessageState)?,
            error_code: r.u8(Field::ErrorCode)?,
        })
    }

    pub(crate) fn write(&self, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        put_cstr(out, Field::MessageId, self.message_id, 65)?;
        put_time(out, Field::FinalDate, self.final_date)?;
        out.extend_from_slice(&[self.message_state, self.error_code]);
        Ok(())
    }
}

/// cancel_sm (§4.9.1).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CancelSm<'a> {
    /// service_type.
    pub service_type: &'a [u8],
    /// message_id (empty: cancel by addresses and service_type).
    pub message_id: &'a [u8],
    /// source_addr_ton.
    pub source_addr_ton: u8,
    /// source_addr_npi.
    pub source_addr_npi: u8,
    /// source_addr.
    pub source_addr: &'a [u8],
    /// dest_addr_ton.
    pub dest_addr_ton: u8,
    /// dest_addr_npi.
    pub dest_addr_npi: u8,
    /// destination_addr.
    pub destination_addr: &'a [u8],
}

impl<'a> CancelSm<'a> {
    pub(crate) fn read(r: &mut Reader<'a>) -> Result<Self, DecodeError> {
        Ok(Self {
            service_type: r.cstr(Field::ServiceType, 6)?,
            message_id: r.cstr(Field::MessageId, 65)?,
            source_addr_ton: r.u8(Field::SourceAddrTon)?,
            source_addr_npi: r.u8(Field::SourceAddrNpi)?,
            source_addr: r.cstr(Field::SourceAddr, 21)?,
            dest_addr_ton: r.u8(Field::DestAddrTon)?,
            dest_addr_npi: r.u8(Field::DestAddrNpi)?,
            destination_addr: r.cstr(Field::DestinationAddr, 21)?,
        })
    }

    pub(crate) fn write(&self, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        put_cstr(out, Field::ServiceType, self.service_type, 6)?;
        put_cstr(out, Field::MessageId, self.message_id, 65)?;
        out.extend_from_slice(&[self.source_addr_ton, self.source_addr_npi]);
        put_cstr(out, Field::SourceAddr, self.source_addr, 21)?;
        out.extend_from_slice(&[self.dest_addr_ton, self.dest_addr_npi]);
        put_cstr(out, Field::DestinationAddr, self.destination_addr, 21)
    }
}

/// replace_sm (§4.10.1).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReplaceSm<'a> {
    /// message_id.
    pub message_id: &'a [u8],
    /// source_addr_ton.
    pub source_addr_ton: u8,
    /// source_addr_npi.
    pub source_addr_npi: u8,
    /// source_addr.
    pub source_addr: &'a [u8],
    /// schedule_delivery_time.
    pub schedule_delivery_time: &'a [u8],
    /// validity_period.
    pub validity_period: &'a [u8],
    /// registered_delivery.
    pub registered_delivery: u8,
    /// sm_default_msg_id.
    pub sm_default_msg_id: u8,
    /// short_message.
    pub short_message: &'a [u8],
}

impl<'a> ReplaceSm<'a> {
    pub(crate) fn read(r: &mut Reader<'a>) -> Result<Self, DecodeError> {
        Ok(Self {
            message_id: r.cstr(Field::MessageId, 65)?,
            source_addr_ton: r.u8(Field::SourceAddrTon)?,
            source_addr_npi: r.u8(Field::SourceAddrNpi)?,
            source_addr: r.cstr(Field::SourceAddr, 21)?,
            schedule_delivery_time: r.time(Field::ScheduleDeliveryTime)?,
            validity_period: r.time(Field::ValidityPeriod)?,
            registered_delivery: r.u8(Field::RegisteredDelivery)?,
            sm_default_msg_id: r.u8(Field::SmDefaultMsgId)?,
            short_message: short_message(r)?,
        })
    }

    pub(crate) fn write(&self, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        put_cstr(out, Field::MessageId, self.message_id, 65)?;
        out.extend_from_slice(&[self.source_addr_ton, self.source_addr_npi]);
        put_cstr(out, Field::SourceAddr, self.source_addr, 21)?;
        put_time(
            out,
            Field::ScheduleDeliveryTime,
            self.schedule_delivery_time,
        )?;
        put_time(out, Field::ValidityPeriod, self.validity_period)?;
        out.extend_from_slice(&[self.registered_delivery, self.sm_default_msg_id]);
        put_short_message(out, self.short_message, &Tlvs::default())
    }
}

/// alert_notification (§4.12.1).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AlertNotification<'a> {
    /// source_addr_ton.
    pub source_addr_ton: u8,
    /// source_addr_npi.
    pub source_addr_npi: u8,
    /// source_addr (the MS now available), ≤ 64 characters.
    pub source_addr: &'a [u8],
    /// esme_addr_ton.
    pub esme_addr_ton: u8,
    /// esme_addr_npi.
    pub esme_addr_npi: u8,
    /// esme_addr, ≤ 64 characters.
    pub esme_addr: &'a [u8],
    /// TLVs (ms_availability_status).
    pub tlvs: Tlvs<'a>,
}

impl<'a> AlertNotification<'a> {
    pub(crate) fn read(r: &mut Reader<'a>) -> Result<Self, DecodeError> {
        Ok(Self {
            source_addr_ton: r.u8(Field::SourceAddrTon)?,
            source_addr_npi: r.u8(Field::SourceAddrNpi)?,
            source_addr: r.cstr(Field::SourceAddr, 65)?,
            esme_addr_ton: r.u8(Field::EsmeAddrTon)?,
            esme_addr_npi: r.u8(Field::EsmeAddrNpi)?,
            esme_addr: r.cstr(Field::EsmeAddr, 65)?,
            tlvs: List::read(r, None)?,
        })
    }

    pub(crate) fn write(&self, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        out.extend_from_slice(&[self.source_addr_ton, self.source_addr_npi]);
        put_cstr(out, Field::SourceAddr, self.source_addr, 65)?;
        out.extend_from_slice(&[self.esme_addr_ton, self.esme_addr_npi]);
        put_cstr(out, Field::EsmeAddr, self.esme_addr, 65)?;
        self.tlvs.write(out)
    }
}
