//! Message framing (RFC 3261 §18.3, RFC 5626 §3.5.1 keep-alives).
//!
//! - Datagrams: [`parse_datagram`]. One message per datagram; octets beyond Content-Length are
//!   ignored; without Content-Length the body is the rest of the datagram; a Content-Length
//!   larger than what is there is an error (`BodyTruncated`).
//! - Streams: [`StreamFramer`]. Content-Length is mandatory; CRLFCRLF is a keep-alive ping and
//!   a lone CRLF a pong; messages may arrive split over many reads or several in one read. After
//!   an error the stream cannot be resynchronised: close the connection.

use bytes::{Bytes, BytesMut};

use crate::error::{ParseError, ParseErrorKind as K};
use crate::message::Message;
use crate::parser::{Limits, find_head_end, parse_head};

/// Parse one datagram (see the module docs). A datagram of only CR/LF is `ParseErrorKind::Empty`
/// (a keep-alive: ignore it).
pub fn parse_datagram(datagram: impl Into<Bytes>) -> Result<Message, ParseError> {
    Message::parse(datagram)
}

/// What a stream yields.
#[derive(Debug, Clone)]
pub enum StreamItem {
    /// A complete message.
    Message(Message),
    /// A CRLFCRLF keep-alive ping (answer with a single CRLF pong, RFC 5626 §3.5.1).
    Ping,
    /// A single CRLF (a pong, or a stray line end before a message).
    Pong,
}

/// Cuts messages out of a byte stream (TCP, TLS, WebSocket-less SCTP streams).
///
/// Feed bytes with [`Self::push`] (or read into [`Self::buffer_mut`]), then call
/// [`Self::poll_item`] until it returns `Ok(None)`. Received bytes are frozen into each
/// [`Message`] without a copy.
#[derive(Debug, Default)]
pub struct StreamFramer {
    buf: BytesMut,
    /// Where the search for the end of the header section resumes.
    scanned: usize,
    limits: Limits,
    failed: Option<ParseError>,
}

impl StreamFramer {
    /// A framer with the default limits (64 KiB messages).
    pub fn new() -> Self {
        Self::default()
    }

    /// A framer with explicit limits.
    pub fn with_limits(limits: Limits) -> Self {
        Self {
            limits,
            ..Self::default()
        }
    }

    /// Append received bytes.
    pub fn push(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// The internal buffer, to receive into directly (append only).
    pub fn buffer_mut(&mut self) -> &mut BytesMut {
        &mut self.buf
    }

    /// Bytes buffered and not yet returned.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// The next complete item, `Ok(None)` when more bytes are needed. An error is final: every
    /// later call returns it again.
    pub fn poll_item(&mut self) -> Result<Option<StreamItem>, ParseError> {
        if let Some(e) = self.failed {
            return Err(e);
        }
        let r = self.poll_inner();
        if let Err(e) = r {
            self.failed = Some(e);
        }
        r
    }

    fn poll_inner(&mut self) -> Result<Option<StreamItem>, ParseError> {
        loop {
            match self.buf.first() {
                None => return Ok(None),
                Some(b'\r') => {
                    let b = &self.buf[..];
                    if b.starts_with(b"\r\n\r\n") {
                        let _ = self.buf.split_to(4);
                        self.scanned = 0;
                        return Ok(Some(StreamItem::Ping));
                    }
                    if b.len() >= 3 && b.starts_with(b"\r\n") && b[2] != b'\r' {
                        let _ = self.buf.split_to(2);
                        self.scanned = 0;
                        return Ok(Some(StreamItem::Pong));
                    }
                    if b.len() < 4 && b"\r\n\r\n".starts_with(b) {
                        return Ok(None);
                    }
                    return Err(ParseError::new(K::InvalidStartLine, 0));
                }
                Some(b'\n') => {
                    // Tolerate a bare LF between messages.
                    let _ = self.buf.split_to(1);
                    self.scanned = 0;
                }
                Some(_) => break,
            }
        }
        let Some(head_end) = find_head_end(&self.buf, self.scanned) else {
            if self.buf.len() > self.limits.max_message {
                return Err(ParseError::new(K::TooLarge, self.limits.max_message));
            }
            self.scanned = self.buf.len().saturating_sub(3);
            return Ok(None);
        };
        if head_end > self.limits.max_message {
            return Err(ParseError::new(K::TooLarge, self.limits.max_message));
        }
        let head = parse_head(&self.buf[..head_end], &self.limits)?;
        let cl = head
            .content_length
            .ok_or_else(|| ParseError::new(K::MissingContentLength, head.headers_end as usize))?;
        let total = head.body_start as usize + cl as usize;
        if total > self.limits.max_message {
            return Err(ParseError::new(K::TooLarge, self.limits.max_message));
        }
        if self.buf.len() < total {
            // Keep `scanned` at the head end so the next poll finds it at once.
            self.scanned = head_end.saturating_sub(3);
            return Ok(None);
        }
        let bytes = self.buf.split_to(total).freeze();
        self.scanned = 0;
        Ok(Some(StreamItem::Message(Message::from_parts(bytes, head))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const REQ: &[u8] = b"OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/TCP h;branch=z9hG4bK1\r\nContent-Length: 4\r\n\r\nbody";

    fn msgs(f: &mut StreamFramer) -> Vec<StreamItem> {
        let mut v = Vec::new();
        while let Some(i) = f.poll_item().unwrap() {
            v.push(i);
        }
        v
    }

    #[test]
    fn byte_by_byte_and_batched() {
        let mut f = StreamFramer::new();
        let mut got = 0;
        for &b in REQ.iter().chain(REQ) {
            f.push(&[b]);
            got += msgs(&mut f).len();
        }
        assert_eq!(got, 2);
        let mut all = b"\r\n\r\n".to_vec();
        all.extend_from_slice(REQ);
        all.extend_from_slice(REQ);
        all.extend_from_slice(b"\r\nOPT");
        let mut f = StreamFramer::new();
        f.push(&all);
        let items = msgs(&mut f);
        assert!(matches!(items[0], StreamItem::Ping));
        assert!(matches!(&items[1], StreamItem::Message(m) if m.body() == b"body"));
        assert!(matches!(items[2], StreamItem::Message(_)));
        assert!(matches!(items[3], StreamItem::Pong));
        assert_eq!(items.len(), 4);
        assert_eq!(f.buffered(), 3);
    }

    #[test]
    fn missing_negative_conflicting_cl() {
        for bad in [
            &b"OPTIONS sip:a@b SIP/2.0\r\nVia: x\r\n\r\n"[..],
            b"OPTIONS sip:a@b SIP/2.0\r\nContent-Length: -1\r\n\r\n",
            b"OPTIONS sip:a@b SIP/2.0\r\nl: 1\r\nContent-Length: 2\r\n\r\nxx",
        ] {
            let mut f = StreamFramer::new();
            f.push(bad);
            assert!(f.poll_item().is_err());
            assert!(f.poll_item().is_err(), "errors are sticky");
        }
    }

    #[test]
    fn oversize_rejected() {
        let mut f = StreamFramer::with_limits(Limits {
            max_message: 100,
            max_headers: 10,
        });
        f.push(&[b'A'; 200]);
        assert_eq!(f.poll_item().unwrap_err().kind, K::TooLarge);
    }

    #[test]
    fn datagram_trailing_and_missing_cl() {
        let mut d = REQ.to_vec();
        d.extend_from_slice(b"garbage");
        let m = parse_datagram(d).unwrap();
        assert_eq!(m.as_bytes(), REQ);
        let m = parse_datagram(&b"OPTIONS sip:a@b SIP/2.0\r\nVia: x\r\n\r\nrest"[..]).unwrap();
        assert_eq!(m.body(), b"rest");
        let e = parse_datagram(&b"OPTIONS sip:a@b SIP/2.0\r\nl: 10\r\n\r\nrest"[..]).unwrap_err();
        assert_eq!(e.kind, K::BodyTruncated);
        assert_eq!(parse_datagram(&b"\r\n\r\n"[..]).unwrap_err().kind, K::Empty);
    }
}
