//! Optional parameters (TLVs, SMPP 3.4 §3.2.4 and §5.3): the 44 standard tags by name and tag,
//! their fixed widths where the spec gives one (a wrong length is ESME_RINVPARLEN), and the
//! borrowed [`Tlv`] item. Unknown and vendor tags are kept as they are and re-encoded
//! verbatim. Which PDU may carry which TLV is not enforced (peers disagree in practice).

use core::fmt;

use crate::codec::{Item, List, Reader};
use crate::error::{DecodeError, DecodeErrorKind, EncodeError, EncodeErrorKind, Field};

/// A TLV tag (§5.3.2). Any u16 is representable; the constants are the SMPP 3.4 tags.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TlvTag(pub u16);

macro_rules! tags {
    ($( $konst:ident = $value:literal, $name:literal, $width:expr; )*) => {
        #[allow(missing_docs, reason = "the constant name is the spec name")]
        impl TlvTag {
            $( pub const $konst: Self = Self($value); )*

            /// Every standard tag.
            pub const ALL: &'static [Self] = &[$( Self::$konst, )*];

            /// The spec name (`"message_payload"`), `None` for unknown or vendor tags.
            pub const fn name(self) -> Option<&'static str> {
                match self.0 {
                    $( $value => Some($name), )*
                    _ => None,
                }
            }

            /// The fixed value length the spec gives this tag, `None` when variable or unknown.
            pub const fn fixed_len(self) -> Option<u16> {
                match self.0 {
                    $( $value => $width, )*
                    _ => None,
                }
            }
        }
    };
}

tags! {
    DEST_ADDR_SUBUNIT = 0x0005, "dest_addr_subunit", Some(1);
    DEST_NETWORK_TYPE = 0x0006, "dest_network_type", Some(1);
    DEST_BEARER_TYPE = 0x0007, "dest_bearer_type", Some(1);
    DEST_TELEMATICS_ID = 0x0008, "dest_telematics_id", Some(2);
    SOURCE_ADDR_SUBUNIT = 0x000D, "source_addr_subunit", Some(1);
    SOURCE_NETWORK_TYPE = 0x000E, "source_network_type", Some(1);
    SOURCE_BEARER_TYPE = 0x000F, "source_bearer_type", Some(1);
    // 3.4 says 1 octet, several stacks send 2: not checked.
    SOURCE_TELEMATICS_ID = 0x0010, "source_telematics_id", None;
    QOS_TIME_TO_LIVE = 0x0017, "qos_time_to_live", Some(4);
    PAYLOAD_TYPE = 0x0019, "payload_type", Some(1);
    ADDITIONAL_STATUS_INFO_TEXT = 0x001D, "additional_status_info_text", None;
    RECEIPTED_MESSAGE_ID = 0x001E, "receipted_message_id", None;
    MS_MSG_WAIT_FACILITIES = 0x0030, "ms_msg_wait_facilities", Some(1);
    PRIVACY_INDICATOR = 0x0201, "privacy_indicator", Some(1);
    SOURCE_SUBADDRESS = 0x0202, "source_subaddress", None;
    DEST_SUBADDRESS = 0x0203, "dest_subaddress", None;
    USER_MESSAGE_REFERENCE = 0x0204, "user_message_reference", Some(2);
    USER_RESPONSE_CODE = 0x0205, "user_response_code", Some(1);
    SOURCE_PORT = 0x020A, "source_port", Some(2);
    DESTINATION_PORT = 0x020B, "destination_port", Some(2);
    SAR_MSG_REF_NUM = 0x020C, "sar_msg_ref_num", Some(2);
    LANGUAGE_INDICATOR = 0x020D, "language_indicator", Some(1);
    SAR_TOTAL_SEGMENTS = 0x020E, "sar_total_segments", Some(1);
    SAR_SEGMENT_SEQNUM = 0x020F, "sar_segment_seqnum", Some(1);
    SC_INTERFACE_VERSION = 0x0210, "sc_interface_version", Some(1);
    CALLBACK_NUM_PRES_IND = 0x0302, "callback_num_pres_ind", Some(1);
    CALLBACK_NUM_ATAG = 0x0303, "callback_num_atag", None;
    NUMBER_OF_MESSAGES = 0x0304, "number_of_messages", Some(1);
    CALLBACK_NUM = 0x0381, "callback_num", None;
    DPF_RESULT = 0x0420, "dpf_result", Some(1);
    SET_DPF = 0x0421, "set_dpf", Some(1);
    MS_AVAILABILITY_STATUS = 0x0422, "ms_availability_status", Some(1);
    NETWORK_ERROR_CODE = 0x0423, "network_error_code", Some(3);
    MESSAGE_PAYLOAD = 0x0424, "message_payload", None;
    DELIVERY_FAILURE_REASON = 0x0425, "delivery_failure_reason", Some(1);
    MORE_MESSAGES_TO_SEND = 0x0426, "more_messages_to_send", Some(1);
    MESSAGE_STATE = 0x0427, "message_state", Some(1);
    USSD_SERVICE_OP = 0x0501, "ussd_service_op", Some(1);
    DISPLAY_TIME = 0x1201, "display_time", Some(1);
    SMS_SIGNAL = 0x1203, "sms_signal", Some(2);
    MS_VALIDITY = 0x1204, "ms_validity", Some(1);
    ALERT_ON_MESSAGE_DELIVERY = 0x130C, "alert_on_message_delivery", Some(0);
    ITS_REPLY_TYPE = 0x1380, "its_reply_type", Some(1);
    ITS_SESSION_INFO = 0x1383, "its_session_info", Some(2);
}

impl TlvTag {
    /// Looks a tag up by spec name, case-insensitively, with an optional `TLV_` prefix.
    pub fn from_name(name: &str) -> Option<Self> {
        let bare = match name.get(..4) {
            Some(p) if p.eq_ignore_ascii_case("TLV_") => &name[4..],
            _ => name,
        };
        Self::ALL
            .iter()
            .copied()
            .find(|t| t.name().is_some_and(|n| n.eq_ignore_ascii_case(bare)))
    }
}

impl fmt::Debug for TlvTag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(n) => f.write_str(n),
            None => write!(f, "TlvTag({:#06x})", self.0),
        }
    }
}

/// One TLV, borrowing its value.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Tlv<'a> {
    /// The tag.
    pub tag: TlvTag,
    /// The value octets (a C-Octet-String value keeps its NUL).
    pub value: &'a [u8],
}

impl<'a> Tlv<'a> {
    /// A TLV with raw value octets.
    #[inline]
    pub const fn new(tag: TlvTag, value: &'a [u8]) -> Self {
        Self { tag, value }
    }

    /// The value as an integer of its width (1, 2 or 4 octets), `None` for other widths.
    #[inline]
    pub fn as_int(&self) -> Option<u32> {
        match *self.value {
            [a] => Some(u32::from(a)),
            [a, b] => Some(u32::from(u16::from_be_bytes([a, b]))),
            [a, b, c, d] => Some(u32::from_be_bytes([a, b, c, d])),
            _ => None,
        }
    }

    /// The value as a C-Octet-String: up to the first NUL (or the whole value without one).
    #[inline]
    pub fn as_cstr(&self) -> &'a [u8] {
        match memchr::memchr(0, self.value) {
            Some(n) => &self.value[..n],
            None => self.value,
        }
    }
}

impl fmt::Debug for Tlv<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}={:02x?}", self.tag, self.value)
    }
}

impl<'a> Item<'a> for Tlv<'a> {
    #[inline]
    fn read(r: &mut Reader<'a>) -> Result<Self, DecodeError> {
        let at = r.pos();
        let tag = TlvTag(r.u16(Field::Tlv(TlvTag(0)))?);
        let field = Field::Tlv(tag);
        let len = r.u16(field)?;
        if let Some(expected) = tag.fixed_len()
            && expected != len
        {
            return Err(DecodeError {
                field,
                kind: DecodeErrorKind::TlvLength { len, expected },
                offset: at,
            });
        }
        let value = r.bytes(field, usize::from(len))?;
        Ok(Self { tag, value })
    }

    #[inline]
    fn write(&self, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        let field = Field::Tlv(self.tag);
        let len = u16::try_from(self.value.len()).map_err(|_| EncodeError {
            field,
            kind: EncodeErrorKind::TooLong {
                len: self.value.len(),
                max: usize::from(u16::MAX),
            },
        })?;
        if let Some(expected) = self.tag.fixed_len()
            && expected != len
        {
            return Err(EncodeError {
                field,
                kind: EncodeErrorKind::TooLong {
                    len: usize::from(len),
                    max: usize::from(expected),
                },
            });
        }
        out.extend_from_slice(&self.tag.0.to_be_bytes());
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(self.value);
        Ok(())
    }
}

/// The TLV section of a PDU.
pub type Tlvs<'a> = List<'a, Tlv<'a>>;

impl<'a> List<'a, Tlv<'a>> {
    /// The first TLV with this tag.
    #[inline]
    pub fn get(&self, tag: TlvTag) -> Option<Tlv<'a>> {
        self.iter().find(|t| t.tag == tag)
    }

    /// The value octets of the first TLV with this tag.
    #[inline]
    pub fn value(&self, tag: TlvTag) -> Option<&'a [u8]> {
        self.get(tag).map(|t| t.value)
    }

    /// The first TLV with this tag as an integer of its width.
    #[inline]
    pub fn int(&self, tag: TlvTag) -> Option<u32> {
        self.get(tag).and_then(|t| t.as_int())
    }

    /// The first TLV with this tag as a C-Octet-String (without its NUL).
    #[inline]
    pub fn cstr(&self, tag: TlvTag) -> Option<&'a [u8]> {
        self.get(tag).map(|t| t.as_cstr())
    }

    /// Decodes a TLV section that runs to the end of `buf`.
    pub fn decode(buf: &'a [u8]) -> Result<Self, DecodeError> {
        Self::read(&mut Reader::new(buf, 0), None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_widths() {
        assert_eq!(TlvTag::ALL.len(), 44);
        assert_eq!(
            TlvTag::from_name("TLV_MESSAGE_PAYLOAD"),
            Some(TlvTag(0x0424))
        );
        assert_eq!(
            TlvTag::from_name("receipted_message_id"),
            Some(TlvTag(0x001E))
        );
        assert_eq!(TlvTag::from_name("nope"), None);
        assert_eq!(TlvTag::NETWORK_ERROR_CODE.fixed_len(), Some(3));
        assert_eq!(format!("{:?}", TlvTag(0x1403)), "TlvTag(0x1403)");
        for t in TlvTag::ALL {
            assert_eq!(TlvTag::from_name(t.name().unwrap()), Some(*t));
        }
    }

    #[test]
    fn unknown_tags_round_trip_and_lookup() {
        let wire = [
            0x14, 0x03, 0x00, 0x03, b'a', b'b', b'c', // vendor tag
            0x04, 0x27, 0x00, 0x01, 0x02, // message_state = 2
            0x00, 0x1E, 0x00, 0x03, b'i', b'd', 0x00, // receipted_message_id "id"
        ];
        let tlvs = Tlvs::decode(&wire).unwrap();
        assert_eq!(tlvs.len(), 3);
        assert_eq!(tlvs.value(TlvTag(0x1403)), Some(&b"abc"[..]));
        assert_eq!(tlvs.int(TlvTag::MESSAGE_STATE), Some(2));
        assert_eq!(tlvs.cstr(TlvTag::RECEIPTED_MESSAGE_ID), Some(&b"id"[..]));
        let mut out = Vec::new();
        tlvs.write(&mut out).unwrap();
        assert_eq!(out, wire);
        let items = [
            Tlv::new(TlvTag(0x1403), b"abc"),
            Tlv::new(TlvTag::MESSAGE_STATE, &[2]),
            Tlv::new(TlvTag::RECEIPTED_MESSAGE_ID, b"id\0"),
        ];
        assert_eq!(Tlvs::from_slice(&items), tlvs);
    }

    #[test]
    fn wrong_width_and_truncation() {
        let e = Tlvs::decode(&[0x04, 0x27, 0x00, 0x02, 0x00, 0x02]).unwrap_err();
        assert_eq!(e.field, Field::Tlv(TlvTag::MESSAGE_STATE));
        assert_eq!(e.status(), crate::CommandStatus::ESME_RINVPARLEN);
        let e = Tlvs::decode(&[0x14, 0x03, 0x00, 0x05, 0x00]).unwrap_err();
        assert_eq!(e.kind, DecodeErrorKind::UnexpectedEnd);
        assert_eq!(e.status(), crate::CommandStatus::ESME_RINVOPTPARSTREAM);
        let e = Tlvs::decode(&[0x14]).unwrap_err();
        assert_eq!(e.kind, DecodeErrorKind::UnexpectedEnd);
        let mut out = Vec::new();
        let bad = [Tlv::new(TlvTag::MESSAGE_STATE, &[1, 2])];
        assert!(Tlvs::from_slice(&bad).write(&mut out).is_err());
    }
}
