//! Cutting a TCP byte stream into SMPP PDUs (SMPP 3.4 §3.2: command_length counts the whole
//! PDU, header included). Checks command_length (at least 16, at most a configured maximum),
//! holds partial PDUs across reads and yields several PDUs from one read. [`frame_len`] works on
//! the caller's own receive buffer without copying; [`Framer`] owns a buffer for callers that
//! want one. A bad command_length leaves the stream unsynchronised: the framer stays failed.

use crate::command::{HEADER_LEN, SequenceNumber};

/// Default largest PDU accepted (a submit_multi with 254 destinations and a full TLV section
/// stays well under it).
pub const DEFAULT_MAX_PDU_LEN: u32 = 64 * 1024;

/// command_length was out of bounds. The stream cannot be resynchronised after this; answer
/// with generic_nack(ESME_RINVCMDLEN) (the session does) and close.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    /// command_length below the 16-octet header.
    #[error("command_length {command_length} is shorter than the header")]
    TooShort {
        /// The value read.
        command_length: u32,
        /// The PDU's sequence number, when its header was complete.
        sequence: Option<SequenceNumber>,
    },
    /// command_length above the configured maximum.
    #[error("command_length {command_length} exceeds the maximum {max}")]
    TooLong {
        /// The value read.
        command_length: u32,
        /// The configured maximum.
        max: u32,
        /// The PDU's sequence number, when its header was complete.
        sequence: Option<SequenceNumber>,
    },
}

impl FrameError {
    /// The offending PDU's sequence number, if its header was readable.
    pub const fn sequence(&self) -> Option<SequenceNumber> {
        match self {
            Self::TooShort { sequence, .. } | Self::TooLong { sequence, .. } => *sequence,
        }
    }
}

/// Length of the complete PDU at the start of `buf`: `Ok(None)` when more octets are needed.
#[inline]
pub fn frame_len(buf: &[u8], max: u32) -> Result<Option<usize>, FrameError> {
    let Some(head) = buf.get(..4) else {
        return Ok(None);
    };
    let command_length = u32::from_be_bytes([head[0], head[1], head[2], head[3]]);
    let sequence = buf
        .get(12..16)
        .map(|s| SequenceNumber(u32::from_be_bytes([s[0], s[1], s[2], s[3]])));
    if (command_length as usize) < HEADER_LEN {
        return Err(FrameError::TooShort {
            command_length,
            sequence,
        });
    }
    if command_length > max {
        return Err(FrameError::TooLong {
            command_length,
            max,
            sequence,
        });
    }
    let len = command_length as usize;
    Ok((buf.len() >= len).then_some(len))
}

/// A stream framer with its own buffer: [`Framer::push`] received octets, then call
/// [`Framer::next_frame`] until it returns `Ok(None)`.
#[derive(Debug)]
pub struct Framer {
    buf: Vec<u8>,
    start: usize,
    max: u32,
    failed: Option<FrameError>,
}

impl Default for Framer {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_PDU_LEN)
    }
}

impl Framer {
    /// A framer accepting PDUs up to `max_pdu_len` octets.
    pub fn new(max_pdu_len: u32) -> Self {
        Self {
            buf: Vec::new(),
            start: 0,
            max: max_pdu_len,
            failed: None,
        }
    }

    /// Appends received octets.
    pub fn push(&mut self, data: &[u8]) {
        if self.start > 0 && self.start == self.buf.len() {
            self.buf.clear();
            self.start = 0;
        } else if self.start > 0 && self.start >= self.buf.len() / 2 {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        self.buf.extend_from_slice(data);
    }

    /// The next complete PDU, `Ok(None)` when more octets are needed. After an error every
    /// further call returns the same error.
    pub fn next_frame(&mut self) -> Result<Option<&[u8]>, FrameError> {
        if let Some(e) = self.failed {
            return Err(e);
        }
        let pending = &self.buf[self.start..];
        match frame_len(pending, self.max) {
            Ok(Some(n)) => {
                let at = self.start;
                self.start += n;
                Ok(Some(&self.buf[at..at + n]))
            }
            Ok(None) => Ok(None),
            Err(e) => {
                self.failed = Some(e);
                Err(e)
            }
        }
    }

    /// Octets held that do not yet form a whole PDU.
    pub fn buffered(&self) -> usize {
        self.buf.len() - self.start
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enquire(seq: u8) -> [u8; 16] {
        [0, 0, 0, 16, 0, 0, 0, 0x15, 0, 0, 0, 0, 0, 0, 0, seq]
    }

    #[test]
    fn partial_reads_and_many_per_read() {
        let mut stream = Vec::new();
        for s in 1..=5 {
            stream.extend_from_slice(&enquire(s));
        }
        // Every split point of the stream yields the same five frames.
        for split in 0..stream.len() {
            let mut f = Framer::default();
            let mut seen = Vec::new();
            for chunk in [&stream[..split], &stream[split..]] {
                f.push(chunk);
                while let Some(frame) = f.next_frame().unwrap() {
                    seen.push(frame[15]);
                }
            }
            assert_eq!(seen, [1, 2, 3, 4, 5], "split at {split}");
            assert_eq!(f.buffered(), 0);
        }
        // Byte by byte.
        let mut f = Framer::default();
        let mut seen = 0;
        for b in &stream {
            f.push(core::slice::from_ref(b));
            while f.next_frame().unwrap().is_some() {
                seen += 1;
            }
        }
        assert_eq!(seen, 5);
    }

    #[test]
    fn length_bounds() {
        assert_eq!(frame_len(&[0, 0, 0], 100), Ok(None));
        assert_eq!(
            frame_len(&[0, 0, 0, 15], 100),
            Err(FrameError::TooShort {
                command_length: 15,
                sequence: None
            })
        );
        let mut big = enquire(9);
        big[2] = 1; // 272 > 100
        assert_eq!(
            frame_len(&big, 100),
            Err(FrameError::TooLong {
                command_length: 272,
                max: 100,
                sequence: Some(SequenceNumber(9))
            })
        );
        let mut f = Framer::new(100);
        f.push(&big);
        assert!(f.next_frame().is_err());
        f.push(&enquire(1));
        assert!(f.next_frame().is_err(), "a failed framer stays failed");
    }
}
