//! Primitive SMPP 3.4 data types (§3.1): Integer (1, 2, 4 octets, big-endian), C-Octet-String
//! (NUL-terminated, maximum length counts the NUL), the fixed 17-octet time form (§7.1.1),
//! Octet-String (length given elsewhere), and borrowed lists of repeated items (TLVs,
//! submit_multi destinations). Decoding borrows from the input; encoding appends to the
//! caller's `Vec<u8>`. PDU layouts are in `pdu`.

use core::fmt;
use core::marker::PhantomData;

use crate::error::{DecodeError, DecodeErrorKind, EncodeError, EncodeErrorKind, Field};

/// A cursor over one PDU. Offsets in errors are relative to the start of that PDU.
#[derive(Clone, Debug)]
#[doc(hidden)]
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    #[inline]
    pub(crate) const fn new(buf: &'a [u8], pos: usize) -> Self {
        Self { buf, pos }
    }

    #[inline]
    pub(crate) const fn pos(&self) -> usize {
        self.pos
    }

    #[inline]
    pub(crate) const fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    #[inline]
    pub(crate) const fn err(&self, field: Field, kind: DecodeErrorKind) -> DecodeError {
        DecodeError {
            field,
            kind,
            offset: self.pos,
        }
    }

    #[inline]
    pub(crate) fn u8(&mut self, field: Field) -> Result<u8, DecodeError> {
        match self.buf.get(self.pos) {
            Some(&b) => {
                self.pos += 1;
                Ok(b)
            }
            None => Err(self.err(field, DecodeErrorKind::UnexpectedEnd)),
        }
    }

    #[inline]
    pub(crate) fn u16(&mut self, field: Field) -> Result<u16, DecodeError> {
        let b = self.bytes(field, 2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    #[inline]
    pub(crate) fn bytes(&mut self, field: Field, n: usize) -> Result<&'a [u8], DecodeError> {
        match self.buf.get(self.pos..self.pos + n) {
            Some(b) => {
                self.pos += n;
                Ok(b)
            }
            None => Err(self.err(field, DecodeErrorKind::UnexpectedEnd)),
        }
    }

    /// A C-Octet-String of at most `max` octets including the NUL; returns it without the NUL.
    #[inline]
    pub(crate) fn cstr(&mut self, field: Field, max: usize) -> Result<&'a [u8], DecodeError> {
        let avail = &self.buf[self.pos..];
        let window = &avail[..avail.len().min(max)];
        // SMPP strings are short (≤ 65 octets): a plain scan beats memchr's dispatch here.
        match window.iter().position(|&b| b == 0) {
            Some(n) => {
                let s = &window[..n];
                self.pos += n + 1;
                Ok(s)
            }
            None if window.len() < max => Err(self.err(field, DecodeErrorKind::UnexpectedEnd)),
            None => Err(self.err(field, DecodeErrorKind::Unterminated { max })),
        }
    }

    /// A time C-Octet-String (§7.1.1): empty, or exactly 16 characters plus NUL.
    #[inline]
    pub(crate) fn time(&mut self, field: Field) -> Result<&'a [u8], DecodeError> {
        let start = self.pos;
        let s = self.cstr(field, 17)?;
        if s.is_empty() || s.len() == 16 {
            Ok(s)
        } else {
            Err(DecodeError {
                field,
                kind: DecodeErrorKind::BadTimeLength { len: s.len() },
                offset: start,
            })
        }
    }

    /// Fails with `TrailingBytes` when anything is left.
    #[inline]
    pub(crate) fn finish(&self) -> Result<(), DecodeError> {
        match self.remaining() {
            0 => Ok(()),
            count => Err(self.err(Field::Body, DecodeErrorKind::TrailingBytes { count })),
        }
    }
}

/// Appends a C-Octet-String of at most `max` octets including the NUL.
#[inline]
pub(crate) fn put_cstr(
    out: &mut Vec<u8>,
    field: Field,
    s: &[u8],
    max: usize,
) -> Result<(), EncodeError> {
    if s.len() >= max {
        return Err(EncodeError {
            field,
            kind: EncodeErrorKind::TooLong {
                len: s.len() + 1,
                max,
            },
        });
    }
    if s.contains(&0) {
        return Err(EncodeError {
            field,
            kind: EncodeErrorKind::InteriorNul,
        });
    }
    out.extend_from_slice(s);
    out.push(0);
    Ok(())
}

/// Appends a time C-Octet-String: empty or exactly 16 characters (§7.1.1).
#[inline]
pub(crate) fn put_time(out: &mut Vec<u8>, field: Field, s: &[u8]) -> Result<(), EncodeError> {
    if !(s.is_empty() || s.len() == 16) {
        return Err(EncodeError {
            field,
            kind: EncodeErrorKind::BadTimeLength { len: s.len() },
        });
    }
    put_cstr(out, field, s, 17)
}

/// One repeated item of a PDU (a TLV, a submit_multi destination, an unsuccess_sme).
pub trait Item<'a>: Sized + Copy {
    /// Reads one item.
    #[doc(hidden)]
    fn read(r: &mut Reader<'a>) -> Result<Self, DecodeError>;
    /// Appends one item.
    #[doc(hidden)]
    fn write(&self, out: &mut Vec<u8>) -> Result<(), EncodeError>;
}

/// A sequence of items that is either still in wire form (validated when the PDU was decoded,
/// iterated lazily, no allocation) or a slice the caller built for encoding.
#[derive(Clone, Copy)]
pub enum List<'a, T> {
    /// Validated wire octets of `count` items.
    Wire {
        /// Number of items.
        count: usize,
        /// Their octets, back to back.
        bytes: &'a [u8],
        /// Offset of `bytes` in the PDU (for error offsets; informational).
        offset: usize,
        #[doc(hidden)]
        _item: PhantomData<T>,
    },
    /// Items built by the caller.
    Items(&'a [T]),
}

impl<T> Default for List<'_, T> {
    fn default() -> Self {
        Self::Items(&[])
    }
}

impl<'a, T: Item<'a>> List<'a, T> {
    /// Items from a slice.
    #[inline]
    pub const fn from_slice(items: &'a [T]) -> Self {
        Self::Items(items)
    }

    /// Validates `count` items from the reader, or, with `count == None`, items up to the end.
    pub(crate) fn read(r: &mut Reader<'a>, count: Option<usize>) -> Result<Self, DecodeError> {
        let start = r.pos();
        let buf = r.buf;
        let mut n = 0;
        match count {
            Some(c) => {
                while n < c {
                    T::read(r)?;
                    n += 1;
                }
            }
            None => {
                while r.remaining() > 0 {
                    T::read(r)?;
                    n += 1;
                }
            }
        }
        Ok(Self::Wire {
            count: n,
            bytes: &buf[start..r.pos()],
            offset: start,
            _item: PhantomData,
        })
    }

    /// Number of items.
    #[inline]
    pub const fn len(&self) -> usize {
        match self {
            Self::Wire { count, .. } => *count,
            Self::Items(s) => s.len(),
        }
    }

    /// True when there are no items.
    #[inline]
    pub const fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Iterates the items.
    #[inline]
    pub fn iter(&self) -> ListIter<'a, T> {
        match *self {
            Self::Wire { bytes, .. } => ListIter::Wire(Reader::new(bytes, 0)),
            Self::Items(s) => ListIter::Items(s.iter()),
        }
    }

    pub(crate) fn write(&self, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        match *self {
            // Already validated wire octets go out verbatim (unknown TLVs round-trip exactly).
            Self::Wire { bytes, .. } => {
                out.extend_from_slice(bytes);
                Ok(())
            }
            Self::Items(s) => s.iter().try_for_each(|i| i.write(out)),
        }
    }
}

/// Iterator over a [`List`].
#[derive(Clone, Debug)]
pub enum ListIter<'a, T> {
    #[doc(hidden)]
    Wire(Reader<'a>),
    #[doc(hidden)]
    Items(core::slice::Iter<'a, T>),
}

impl<'a, T: Item<'a>> Iterator for ListIter<'a, T> {
    type Item = T;

    #[inline]
    fn next(&mut self) -> Option<T> {
        match self {
            // Validated at decode time, so a read error cannot happen; stop quietly if it did.
            Self::Wire(r) if r.remaining() > 0 => T::read(r).ok(),
            Self::Wire(_) => None,
            Self::Items(it) => it.next().copied(),
        }
    }
}

impl<'a, T: Item<'a> + PartialEq> PartialEq for List<'a, T> {
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len() && self.iter().eq(other.iter())
    }
}

impl<'a, T: Item<'a> + Eq> Eq for List<'a, T> {}

impl<'a, T: Item<'a> + fmt::Debug> fmt::Debug for List<'a, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}
