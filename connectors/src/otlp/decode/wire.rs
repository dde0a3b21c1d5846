//! Protobuf wire-format primitives for the zero-copy scanners.
//!
//! Owns the framing rules (keys, varints, lengths, fixed-width values) and their errors, mirroring
//! what prost accepts so that a request the scanner reads is a request prost would read. It knows
//! nothing about OTLP messages. Errors are a small `Copy` type ([`Fault`]) so the hot path passes
//! them in registers; they become a [`DecodeError`] once, at the API boundary.

use super::DecodeError;

pub(crate) const WT_VARINT: u8 = 0;
pub(crate) const WT_I64: u8 = 1;
pub(crate) const WT_LEN: u8 = 2;
pub(crate) const WT_I32: u8 = 5;

/// Deepest message nesting accepted, counting the request itself as depth 0. Equals prost's
/// `RECURSION_LIMIT`: prost refuses a sub-message at depth 101 and any unknown field inside a
/// message at depth 100.
pub(crate) const MAX_DEPTH: u32 = 100;

/// Why a scan stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fault {
    /// Bad framing: what was wrong, and the byte offset in the request where it was detected.
    Malformed { what: &'static str, at: usize },
    /// A known field arrived with a wire type its declaration does not allow.
    WrongWireType { field: &'static str, at: usize },
    /// A string field is not UTF-8.
    InvalidUtf8 { field: &'static str },
}

impl From<Fault> for DecodeError {
    #[cold]
    fn from(f: Fault) -> DecodeError {
        match f {
            Fault::Malformed { what, at } => DecodeError::Malformed(format!("{what} at byte {at}")),
            Fault::WrongWireType { field, at } => {
                DecodeError::Malformed(format!("wrong wire type for {field} at byte {at}"))
            }
            Fault::InvalidUtf8 { field } => DecodeError::InvalidUtf8 { field },
        }
    }
}

#[cold]
#[inline(never)]
pub(crate) fn malformed(what: &'static str, at: usize) -> Fault {
    Fault::Malformed { what, at }
}

/// Checks that a known field has the wire type its declaration requires.
#[inline(always)]
pub(crate) fn expect_wt(wt: u8, want: u8, field: &'static str, at: usize) -> Result<(), Fault> {
    if wt == want {
        Ok(())
    } else {
        Err(Fault::WrongWireType { field, at })
    }
}

/// The depth of a sub-message of a message at `depth`, or an error past the limit.
#[inline(always)]
pub(crate) fn enter(depth: u32, at: usize) -> Result<u32, Fault> {
    if depth >= MAX_DEPTH {
        Err(malformed("messages nested deeper than 100", at))
    } else {
        Ok(depth + 1)
    }
}

/// Validates UTF-8 (ASCII, the common case, takes the fast path).
#[inline(always)]
pub(crate) fn check_utf8(bytes: &[u8], field: &'static str) -> Result<(), Fault> {
    if bytes.is_ascii() || std::str::from_utf8(bytes).is_ok() {
        Ok(())
    } else {
        Err(Fault::InvalidUtf8 { field })
    }
}

/// A cursor over one message: `buf[pos..end]`, where `buf` is the whole request so that offsets
/// stay absolute (string references point into the request).
#[derive(Clone, Copy)]
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    end: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Reader {
            buf,
            pos: 0,
            end: buf.len(),
        }
    }

    /// A reader over `buf[start..end]` of the same request (a range returned by [`Self::len_delim`]).
    #[inline(always)]
    pub(crate) fn sub(&self, (start, end): (usize, usize)) -> Reader<'a> {
        Reader {
            buf: self.buf,
            pos: start,
            end,
        }
    }

    #[inline(always)]
    pub(crate) fn has_more(&self) -> bool {
        self.pos < self.end
    }

    #[inline(always)]
    pub(crate) fn pos(&self) -> usize {
        self.pos
    }

    /// The whole request.
    #[inline(always)]
    pub(crate) fn request(&self) -> &'a [u8] {
        self.buf
    }

    #[inline(always)]
    pub(crate) fn varint(&mut self) -> Result<u64, Fault> {
        if self.pos < self.end {
            let b = self.buf[self.pos];
            if b < 0x80 {
                self.pos += 1;
                return Ok(u64::from(b));
            }
        }
        self.varint_slow()
    }

    #[inline(never)]
    fn varint_slow(&mut self) -> Result<u64, Fault> {
        let start = self.pos;
        let mut value = 0u64;
        for i in 0..10 {
            if self.pos >= self.end {
                return Err(malformed("truncated varint", start));
            }
            let b = self.buf[self.pos];
            self.pos += 1;
            value |= u64::from(b & 0x7f) << (7 * i);
            if b < 0x80 {
                // The tenth byte may only carry the top bit of a u64 (as prost checks).
                if i == 9 && b >= 0x02 {
                    return Err(malformed("varint overflows 64 bits", start));
                }
                return Ok(value);
            }
        }
        Err(malformed("varint longer than 10 bytes", start))
    }

    /// Reads a field key: (field number, wire type). Refuses field number 0, keys beyond 32 bits,
    /// and the wire types protobuf does not define; also the deprecated group wire types (3, 4),
    /// which OTLP never uses.
    #[inline(always)]
    pub(crate) fn key(&mut self) -> Result<(u32, u8), Fault> {
        let at = self.pos;
        let k = self.varint()?;
        if k > u64::from(u32::MAX) {
            return Err(malformed("field key out of range", at));
        }
        let wt = (k & 7) as u8;
        let field = (k as u32) >> 3;
        match wt {
            WT_VARINT | WT_I64 | WT_LEN | WT_I32 => {}
            3 | 4 => return Err(malformed("group wire type (not used by OTLP)", at)),
            _ => return Err(malformed("invalid wire type", at)),
        }
        if field == 0 {
            return Err(malformed("field number 0", at));
        }
        Ok((field, wt))
    }

    /// Reads a length prefix and returns the absolute range of the payload, which must lie within
    /// the current message.
    #[inline(always)]
    pub(crate) fn len_delim(&mut self) -> Result<(usize, usize), Fault> {
        let at = self.pos;
        let len = self.varint()?;
        if len > (self.end - self.pos) as u64 {
            return Err(malformed("length beyond the enclosing message", at));
        }
        let start = self.pos;
        self.pos += len as usize;
        Ok((start, self.pos))
    }

    /// The bytes of a length-delimited field.
    #[inline(always)]
    pub(crate) fn bytes(&mut self) -> Result<&'a [u8], Fault> {
        let (s, e) = self.len_delim()?;
        Ok(&self.buf[s..e])
    }

    #[inline(always)]
    pub(crate) fn fixed64(&mut self) -> Result<u64, Fault> {
        match self.buf[self.pos..self.end].first_chunk::<8>() {
            Some(b) => {
                self.pos += 8;
                Ok(u64::from_le_bytes(*b))
            }
            None => Err(malformed("truncated fixed64", self.pos)),
        }
    }

    #[inline(always)]
    pub(crate) fn fixed32(&mut self) -> Result<u32, Fault> {
        match self.buf[self.pos..self.end].first_chunk::<4>() {
            Some(b) => {
                self.pos += 4;
                Ok(u32::from_le_bytes(*b))
            }
            None => Err(malformed("truncated fixed32", self.pos)),
        }
    }

    /// Skips a field this scanner does not use, checking its framing. An unknown field inside a
    /// message at the depth limit is refused, as prost does.
    #[inline]
    pub(crate) fn skip(&mut self, wt: u8, depth: u32) -> Result<(), Fault> {
        if depth >= MAX_DEPTH {
            return Err(malformed("messages nested deeper than 100", self.pos));
        }
        self.skip_value(wt)
    }

    /// Skips the value of a known scalar field (framing only).
    #[inline]
    pub(crate) fn skip_value(&mut self, wt: u8) -> Result<(), Fault> {
        match wt {
            WT_VARINT => self.varint().map(|_| ()),
            WT_I64 => self.fixed64().map(|_| ()),
            WT_LEN => self.len_delim().map(|_| ()),
            _ => self.fixed32().map(|_| ()),
        }
    }

    /// A known string field: validates UTF-8 and returns its absolute range.
    #[inline(always)]
    pub(crate) fn string(&mut self, wt: u8, field: &'static str) -> Result<(usize, usize), Fault> {
        expect_wt(wt, WT_LEN, field, self.pos)?;
        let r = self.len_delim()?;
        check_utf8(&self.buf[r.0..r.1], field)?;
        Ok(r)
    }

    /// A known varint field (int32/int64/uint32/bool/enum).
    #[inline(always)]
    pub(crate) fn varint_field(&mut self, wt: u8, field: &'static str) -> Result<u64, Fault> {
        expect_wt(wt, WT_VARINT, field, self.pos)?;
        self.varint()
    }

    /// A known fixed64/double field.
    #[inline(always)]
    pub(crate) fn fixed64_field(&mut self, wt: u8, field: &'static str) -> Result<u64, Fault> {
        expect_wt(wt, WT_I64, field, self.pos)?;
        self.fixed64()
    }

    /// A known fixed32 field.
    #[inline(always)]
    pub(crate) fn fixed32_field(&mut self, wt: u8, field: &'static str) -> Result<u32, Fault> {
        expect_wt(wt, WT_I32, field, self.pos)?;
        self.fixed32()
    }

    /// A known bytes field.
    #[inline(always)]
    pub(crate) fn bytes_field(&mut self, wt: u8, field: &'static str) -> Result<&'a [u8], Fault> {
        expect_wt(wt, WT_LEN, field, self.pos)?;
        self.bytes()
    }

    /// A known sub-message field: its reader and its depth.
    #[inline(always)]
    pub(crate) fn message(
        &mut self,
        wt: u8,
        field: &'static str,
        depth: u32,
    ) -> Result<(Reader<'a>, u32), Fault> {
        expect_wt(wt, WT_LEN, field, self.pos)?;
        let d = enter(depth, self.pos)?;
        let r = self.len_delim()?;
        Ok((self.sub(r), d))
    }
}
