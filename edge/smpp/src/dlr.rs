//! Delivery receipts (SMPP 3.4 Appendix B, de-facto form, and §5.3.2.12/§5.3.2.35 TLVs):
//! parse `id: sub: dlvrd: submit date: done date: stat: err: text:` bodies (keys matched
//! case-insensitively, longest first, at word starts) together with the receipted_message_id
//! and message_state TLVs, and build both for the reverse direction. Upstream precedence
//! (siphon-smpp 1.4): the text body wins; the TLVs fill in `id` and `stat` when the body lacks
//! them, so a TLV-only receipt still parses.

use crate::pdu::SubmitSm;
use crate::tlv::{Tlv, TlvTag, Tlvs};

/// message_state values (§5.2.28) with their receipt `stat:` names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
#[allow(missing_docs, reason = "spec names")]
pub enum MessageState {
    Enroute = 1,
    Delivered = 2,
    Expired = 3,
    Deleted = 4,
    Undeliverable = 5,
    Accepted = 6,
    Unknown = 7,
    Rejected = 8,
}

impl MessageState {
    const ALL: [Self; 8] = [
        Self::Enroute,
        Self::Delivered,
        Self::Expired,
        Self::Deleted,
        Self::Undeliverable,
        Self::Accepted,
        Self::Unknown,
        Self::Rejected,
    ];

    /// The state for a message_state value.
    pub fn from_u8(v: u8) -> Option<Self> {
        Self::ALL.get(usize::from(v).checked_sub(1)?).copied()
    }

    /// The wire value.
    pub const fn as_u8(self) -> u8 {
        self as u8
    }

    /// The 7-character `stat:` text (`DELIVRD`, `UNDELIV`, …).
    pub const fn stat(self) -> &'static str {
        match self {
            Self::Enroute => "ENROUTE",
            Self::Delivered => "DELIVRD",
            Self::Expired => "EXPIRED",
            Self::Deleted => "DELETED",
            Self::Undeliverable => "UNDELIV",
            Self::Accepted => "ACCEPTD",
            Self::Unknown => "UNKNOWN",
            Self::Rejected => "REJECTD",
        }
    }

    /// The state for a `stat:` text, case-insensitively.
    pub fn from_stat(s: &[u8]) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|m| m.stat().as_bytes().eq_ignore_ascii_case(s))
    }
}

/// A parsed delivery receipt; every field borrows from the PDU.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Receipt<'a> {
    /// `id:` (or receipted_message_id when the body has none).
    pub id: Option<&'a [u8]>,
    /// `sub:`.
    pub sub: Option<&'a [u8]>,
    /// `dlvrd:`.
    pub dlvrd: Option<&'a [u8]>,
    /// `submit date:`.
    pub submit_date: Option<&'a [u8]>,
    /// `done date:`.
    pub done_date: Option<&'a [u8]>,
    /// `stat:` (or the message_state TLV's name when the body has none).
    pub stat: Option<&'a [u8]>,
    /// `err:`.
    pub err: Option<&'a [u8]>,
    /// `text:` (runs to the end of the body).
    pub text: Option<&'a [u8]>,
    /// The message_state TLV, when present.
    pub message_state: Option<u8>,
    /// The whole text body the receipt was parsed from.
    pub raw: &'a [u8],
}

#[derive(Clone, Copy)]
enum Key {
    SubmitDate,
    DoneDate,
    Dlvrd,
    Stat,
    Text,
    Sub,
    Err,
    Id,
}

/// Keys, longest first so `submit date` wins over a shorter key.
const KEYS: [(&[u8], Key); 8] = [
    (b"submit date", Key::SubmitDate),
    (b"done date", Key::DoneDate),
    (b"dlvrd", Key::Dlvrd),
    (b"stat", Key::Stat),
    (b"text", Key::Text),
    (b"sub", Key::Sub),
    (b"err", Key::Err),
    (b"id", Key::Id),
];

/// The key whose `:` is at `colon`, if one ends there and starts at a word boundary; returns
/// the key and the offset where it starts. Longest keys are tried first.
fn key_before(body: &[u8], colon: usize) -> Option<(Key, usize)> {
    let last = body.get(colon.checked_sub(1)?)?.to_ascii_lowercase();
    KEYS.iter().find_map(|&(k, key)| {
        // Cheap filter first: the key's last letter is the octet before the colon.
        if k[k.len() - 1] != last {
            return None;
        }
        let start = colon.checked_sub(k.len())?;
        let boundary = start == 0 || body[start - 1].is_ascii_whitespace();
        (boundary && body[start..colon].eq_ignore_ascii_case(k)).then_some((key, start))
    })
}

fn trim(s: &[u8]) -> &[u8] {
    s.trim_ascii()
}

impl<'a> Receipt<'a> {
    /// Parses a receipt from a text body and the PDU's TLVs. `None` when the body holds no
    /// `key:` and neither receipt TLV is present.
    pub fn parse(body: &'a [u8], tlvs: &Tlvs<'a>) -> Option<Self> {
        let mut r = Self {
            raw: body,
            ..Self::default()
        };
        let mut found = false;
        // (key, value start) of the key being read.
        let mut current: Option<(Key, usize)> = None;
        for colon in memchr::memchr_iter(b':', body) {
            let Some((key, kstart)) = key_before(body, colon) else {
                continue;
            };
            if let Some((k, s)) = current.take() {
                // Keys are letters and spaces, so a key never starts before the previous
                // value does.
                r.set(k, trim(&body[s..kstart.max(s)]));
            }
            found = true;
            if matches!(key, Key::Text) {
                r.text = Some(trim(&body[colon + 1..]));
                break;
            }
            current = Some((key, colon + 1));
        }
        if let Some((k, s)) = current {
            r.set(k, trim(&body[s..]));
        }
        let rmid = tlvs.cstr(TlvTag::RECEIPTED_MESSAGE_ID);
        let state = tlvs
            .int(TlvTag::MESSAGE_STATE)
            .and_then(|v| u8::try_from(v).ok());
        if !found && rmid.is_none() && state.is_none() {
            return None;
        }
        if r.id.is_none() {
            r.id = rmid;
        }
        r.message_state = state;
        if r.stat.is_none() {
            r.stat = state
                .and_then(MessageState::from_u8)
                .map(|m| m.stat().as_bytes());
        }
        Some(r)
    }

    /// Parses the receipt carried by a deliver_sm (body = message_payload, else short_message).
    pub fn from_deliver_sm(pdu: &SubmitSm<'a>) -> Option<Self> {
        Self::parse(pdu.body(), &pdu.tlvs)
    }

    fn set(&mut self, key: Key, v: &'a [u8]) {
        let slot = match key {
            Key::SubmitDate => &mut self.submit_date,
            Key::DoneDate => &mut self.done_date,
            Key::Dlvrd => &mut self.dlvrd,
            Key::Stat => &mut self.stat,
            Key::Text => &mut self.text,
            Key::Sub => &mut self.sub,
            Key::Err => &mut self.err,
            Key::Id => &mut self.id,
        };
        if slot.is_none() {
            *slot = Some(v);
        }
    }

    /// The receipt's final state: `stat:` text mapped to a state, else the TLV.
    pub fn state(&self) -> Option<MessageState> {
        self.stat
            .and_then(MessageState::from_stat)
            .or_else(|| self.message_state.and_then(MessageState::from_u8))
    }
}

/// What a receipt we send says; [`ReceiptBuilder::write_text`] renders the Appendix B body and
/// [`ReceiptBuilder::tlvs`] the matching TLVs, for a deliver_sm with esm_class 0x04.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReceiptBuilder<'a> {
    /// Our message id (the one returned in submit_sm_resp).
    pub id: &'a [u8],
    /// Messages submitted (`sub:`), usually 1.
    pub submitted: u16,
    /// Messages delivered (`dlvrd:`).
    pub delivered: u16,
    /// `YYMMDDhhmm`.
    pub submit_date: &'a [u8],
    /// `YYMMDDhhmm`.
    pub done_date: &'a [u8],
    /// Final state.
    pub state: MessageState,
    /// Network error code (`err:`, three digits).
    pub err: u16,
    /// First characters of the message (`text:`, at most 20 are written).
    pub text: &'a [u8],
}

impl<'a> ReceiptBuilder<'a> {
    /// Appends `id:… sub:001 dlvrd:001 submit date:… done date:… stat:DELIVRD err:000 text:…`.
    pub fn write_text(&self, out: &mut Vec<u8>) {
        use std::io::Write as _;
        let text = &self.text[..self.text.len().min(20)];
        out.extend_from_slice(b"id:");
        out.extend_from_slice(self.id);
        // Writing into a Vec cannot fail.
        let _ = write!(
            out,
            " sub:{:03} dlvrd:{:03} submit date:",
            self.submitted, self.delivered
        );
        out.extend_from_slice(self.submit_date);
        out.extend_from_slice(b" done date:");
        out.extend_from_slice(self.done_date);
        let _ = write!(out, " stat:{} err:{:03} text:", self.state.stat(), self.err);
        out.extend_from_slice(text);
    }

    /// The receipted_message_id and message_state TLVs. `id_buf` receives the id plus its NUL
    /// (C-Octet-String value) and `state_buf` the state octet; the TLVs borrow them.
    pub fn tlvs<'b>(&self, id_buf: &'b mut Vec<u8>, state_buf: &'b mut [u8; 1]) -> [Tlv<'b>; 2] {
        id_buf.clear();
        id_buf.extend_from_slice(self.id);
        id_buf.push(0);
        state_buf[0] = self.state.as_u8();
        [
            Tlv::new(TlvTag::RECEIPTED_MESSAGE_ID, id_buf),
            Tlv::new(TlvTag::MESSAGE_STATE, state_buf),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_text_form_case_insensitively() {
        let body = b"id:0 sub:001 dlvrd:001 submit date:2611261903 done date:2611261903 \
                     stat:DELIVRD err:000 Text:hello id: world";
        let r = Receipt::parse(body, &Tlvs::default()).unwrap();
        assert_eq!(r.id, Some(&b"0"[..]));
        assert_eq!(r.sub, Some(&b"001"[..]));
        assert_eq!(r.dlvrd, Some(&b"001"[..]));
        assert_eq!(r.submit_date, Some(&b"2611261903"[..]));
        assert_eq!(r.done_date, Some(&b"2611261903"[..]));
        assert_eq!(r.stat, Some(&b"DELIVRD"[..]));
        assert_eq!(r.err, Some(&b"000"[..]));
        assert_eq!(r.text, Some(&b"hello id: world"[..]));
        assert_eq!(r.state(), Some(MessageState::Delivered));
        assert_eq!(r.message_state, None);
    }

    #[test]
    fn upper_case_keys_and_missing_ones() {
        let r = Receipt::parse(b"ID:abc123 STAT:UNDELIV ERR:034", &Tlvs::default()).unwrap();
        assert_eq!(r.id, Some(&b"abc123"[..]));
        assert_eq!(r.stat, Some(&b"UNDELIV"[..]));
        assert_eq!(r.err, Some(&b"034"[..]));
        assert_eq!(r.sub, None);
        assert_eq!(r.text, None);
        assert_eq!(r.state(), Some(MessageState::Undeliverable));
    }

    #[test]
    fn tlv_form_and_precedence() {
        let tlvs_arr = [
            Tlv::new(TlvTag::RECEIPTED_MESSAGE_ID, b"XYZ\0"),
            Tlv::new(TlvTag::MESSAGE_STATE, &[5]),
        ];
        let tlvs = Tlvs::from_slice(&tlvs_arr);
        // TLV-only receipt.
        let r = Receipt::parse(b"", &tlvs).unwrap();
        assert_eq!(r.id, Some(&b"XYZ"[..]));
        assert_eq!(r.stat, Some(&b"UNDELIV"[..]));
        assert_eq!(r.message_state, Some(5));
        // The text body wins where it has the key.
        let r = Receipt::parse(b"id:body stat:DELIVRD", &tlvs).unwrap();
        assert_eq!(r.id, Some(&b"body"[..]));
        assert_eq!(r.stat, Some(&b"DELIVRD"[..]));
        assert_eq!(r.message_state, Some(5));
        // Nothing at all.
        assert_eq!(Receipt::parse(b"hello world", &Tlvs::default()), None);
        // "valid:" is not "id:" (keys start at word boundaries).
        assert_eq!(Receipt::parse(b"valid:1", &Tlvs::default()), None);
    }

    #[test]
    fn build_then_parse() {
        let b = ReceiptBuilder {
            id: b"m-42",
            submitted: 1,
            delivered: 1,
            submit_date: b"2611261903",
            done_date: b"2611261904",
            state: MessageState::Delivered,
            err: 0,
            text: b"a message longer than twenty characters",
        };
        let mut text = Vec::new();
        b.write_text(&mut text);
        assert_eq!(
            text,
            b"id:m-42 sub:001 dlvrd:001 submit date:2611261903 done date:2611261904 \
              stat:DELIVRD err:000 text:a message longer tha"
        );
        let (mut id, mut st) = (Vec::new(), [0]);
        let arr = b.tlvs(&mut id, &mut st);
        let tlvs = Tlvs::from_slice(&arr);
        let r = Receipt::parse(&text, &tlvs).unwrap();
        assert_eq!(r.id, Some(&b"m-42"[..]));
        assert_eq!(r.done_date, Some(&b"2611261904"[..]));
        assert_eq!(r.state(), Some(MessageState::Delivered));
        assert_eq!(r.message_state, Some(2));
        for v in 1..=8 {
            let m = MessageState::from_u8(v).unwrap();
            assert_eq!(MessageState::from_stat(m.stat().as_bytes()), Some(m));
        }
        assert_eq!(MessageState::from_u8(0), None);
        assert_eq!(MessageState::from_u8(9), None);
    }
}
