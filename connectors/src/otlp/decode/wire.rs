//! Protobuf wire-format primitives for the zero-copy scanners.
//!
//! Owns the framing rules (keys, varints, lengths, fixed-width values) and their errors, mirroring
//! what prost accepts so that a request the scanner reads is a request prost would read. It knows
//! nothing about OTLP messages. Errors are an empty marker ([`Fault`]) so the hot path's results
//! stay in registers; the details become a [`DecodeError`] once, at the API boundary.

use super::DecodeError;
use std::cell::Cell;

pub(crate) const WT_VARINT: u8 = 0;
pub(crate) const WT_I64: u8 = 1;
pub(crate) const WT_LEN: u8 = 2;
pub(crate) const WT_I32: u8 = 5;

/// Deepest message nesting accepted, counting the request itself as depth 0. Equals prost's
/// `RECURSION_LIMIT`: prost refuses a sub-message at depth 101 and any unknown field inside a
/// message at depth 100.
pub(crate) const MAX_DEPTH: u32 = 100;

/// A scan stopped. Deliberately empty, so that every `Result` on the hot path fits in registers;
/// what went wrong is recorded by the (cold) constructors in a thread-local and collected by
/// [`Fault::into_error`] at the API boundary. Decoding is synchronous, so nothing can interleave
/// between recording a fault and collecting it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Fault(());

#[derive(Debug, Clone, Copy)]
enum FaultInfo {
    /// Bad framing: what was wrong, and the address (in the request) where it was detected.
    Malformed { what: &'static str, at: usize },
    /// A known field arrived with a wire type its declaration does not allow.
    WrongWireType { field: &'static str, at: usize },
    /// A string field is not UTF-8.
    InvalidUtf8 { field: &'static str },
}

thread_local! {
    static LAST_FAULT: Cell<Option<FaultInfo>> = const { Cell::new(None) };
}

impl Fault {
    #[cold]
    #[inline(never)]
    fn record(info: FaultInfo) -> Fault {
        LAST_FAULT.with(|f| f.set(Some(info)));
        Fault(())
    }

    #[cold]
    pub(crate) fn malformed(what: &'static str, at: usize) -> Fault {
        Fault::record(FaultInfo::Malformed { what, at })
    }

    #[cold]
    pub(crate) fn wrong_wire_type(field: &'static str, at: usize) -> Fault {
        Fault::record(FaultInfo::WrongWireType { field, at })
    }

    #[cold]
    pub(crate) fn invalid_utf8(field: &'static str) -> Fault {
        Fault::record(FaultInfo::InvalidUtf8 { field })
    }

    /// The error this fault stands for (call once, where the scan of `request` gave up).
    #[cold]
    pub(crate) fn into_error(self, request: &[u8]) -> DecodeError {
        let base = request.as_ptr() as usize;
        let at = |addr: usize| match addr.checked_sub(base) {
            Some(off) if off <= request.len() => format!(" at byte {off}"),
            _ => String::new(),
        };
        match LAST_FAULT.with(|f| f.take()) {
            Some(FaultInfo::Malformed { what, at: addr }) => {
                DecodeError::Malformed(format!("{what}{}", at(addr)))
            }
            Some(FaultInfo::WrongWireType { field, at: addr }) => {
                DecodeError::Malformed(format!("wrong wire type for {field}{}", at(addr)))
            }
            Some(FaultInfo::InvalidUtf8 { field }) => DecodeError::InvalidUtf8 { field },
            None => DecodeError::Malformed("undescribed framing error".to_string()),
        }
    }
}

#[inline(always)]
pub(crate) fn malformed(what: &'static str, at: usize) -> Fault {
    Fault::malformed(what, at)
}

/// Checks that a known field has the wire type its declaration requires.
#[inline(always)]
pub(crate) fn expect_wt(wt: u8, want: u8, field: &'static str, at: usize) -> Result<(), Fault> {
    if wt == want {
        Ok(())
    } else {
        Err(Fault::wrong_wire_type(field, at))
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
    if is_ascii(bytes) || std::str::from_utf8(bytes).is_ok() {
        Ok(())
    } else {
        Err(Fault::invalid_utf8(field))
    }
}

/// Whether `b` is ASCII, a word at a time. `<[u8]>::is_ascii` goes byte by byte below 16 bytes,
/// which is most attribute keys and values; here 4 to 16 bytes take two overlapping loads.
#[inline(always)]
pub(crate) fn is_ascii(b: &[u8]) -> bool {
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let word = |c: &[u8; 8]| u64::from_le_bytes(*c);
    match (b.first_chunk::<8>(), b.last_chunk::<8>()) {
        (Some(first), Some(last)) => {
            let mut acc = word(first) | word(last);
            let mut rest = &b[8..];
            while let Some((c, tail)) = rest.split_first_chunk::<8>() {
                acc |= word(c);
                rest = tail;
            }
            acc & HIGH == 0
        }
        _ => match (b.first_chunk::<4>(), b.last_chunk::<4>()) {
            (Some(first), Some(last)) => {
                (u32::from_le_bytes(*first) | u32::from_le_bytes(*last)) & 0x8080_8080 == 0
            }
            _ => b.iter().fold(0u8, |acc, &x| acc | x) < 0x80,
        },
    }
}

/// Decodes a varint of 3 to 10 bytes at the start of `bytes`: (value, bytes used).
#[inline(never)]
fn varint_slow(bytes: &[u8]) -> Result<(u64, usize), Fault> {
    let at = bytes.as_ptr() as usize;
    let mut value = 0u64;
    for (i, &b) in bytes.iter().take(10).enumerate() {
        value |= u64::from(b & 0x7f) << (7 * i);
        if b < 0x80 {
            // The tenth byte may only carry the top bit of a u64 (as prost checks).
            if i == 9 && b >= 0x02 {
                return Err(malformed("varint overflows 64 bits", at));
            }
            return Ok((value, i + 1));
        }
    }
    if bytes.len() >= 10 {
        Err(malformed("varint longer than 10 bytes", at))
    } else {
        Err(malformed("truncated varint", at))
    }
}

/// Why a key that is not a known field's cannot be skipped, if it cannot.
#[cold]
#[inline(never)]
fn bad_unknown_key(field: u32, wt: u8, at: usize) -> Fault {
    if field == 0 {
        malformed("field number 0", at)
    } else if matches!(wt, 3 | 4) {
        malformed("group wire type (not used by OTLP)", at)
    } else {
        malformed("invalid wire type", at)
    }
}

/// Bytes taken by the value of an unknown field at the start of `bytes` (see [`Reader::skip`]).
#[inline(never)]
fn skip_unknown(bytes: &[u8], field: u32, wt: u8, depth: u32) -> Result<usize, Fault> {
    let mut r = Reader::new(bytes);
    if depth >= MAX_DEPTH {
        return Err(malformed("messages nested deeper than 100", r.pos()));
    }
    match wt {
        _ if field == 0 => return Err(bad_unknown_key(field, wt, r.pos())),
        WT_VARINT => r.varint().map(|_| ())?,
        WT_I64 => r.fixed64().map(|_| ())?,
        WT_LEN => r.len_delim().map(|_| ())?,
        WT_I32 => r.fixed32().map(|_| ())?,
        _ => return Err(bad_unknown_key(field, wt, r.pos())),
    }
    Ok(bytes.len() - r.rest.len())
}

/// The value of `bytes` if it is exactly one valid varint (used by fast paths that have the
/// whole field in hand).
#[inline(always)]
pub(crate) fn exact_varint(bytes: &[u8]) -> Option<u64> {
    match *bytes {
        [b0] if b0 < 0x80 => Some(u64::from(b0)),
        [b0, b1] if b0 >= 0x80 && b1 < 0x80 => Some(u64::from(b0 & 0x7f) | u64::from(b1) << 7),
        _ => match varint_slow(bytes) {
            Ok((v, n)) if n == bytes.len() => Some(v),
            _ => None,
        },
    }
}

/// A cursor over one message: the bytes of it not read yet. Two words, so it is passed in
/// registers. Returned slices borrow from the request; callers that need offsets subtract the
/// request's address.
#[derive(Clone, Copy)]
pub(crate) struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    pub(crate) fn new(message: &'a [u8]) -> Self {
        Reader { rest: message }
    }

    /// The bytes not read yet.
    #[inline(always)]
    pub(crate) fn rest(&self) -> &'a [u8] {
        self.rest
    }

    /// An empty slice at the reader's position (inside the request, unlike `&[]`).
    #[inline(always)]
    pub(crate) fn empty(&self) -> &'a [u8] {
        &self.rest[..0]
    }

    #[inline(always)]
    pub(crate) fn has_more(&self) -> bool {
        !self.rest.is_empty()
    }

    /// Address of the next byte: where faults are reported ([`Fault::into_error`] turns it into
    /// an offset in the request).
    #[inline(always)]
    pub(crate) fn pos(&self) -> usize {
        self.rest.as_ptr() as usize
    }

    #[inline(always)]
    pub(crate) fn varint(&mut self) -> Result<u64, Fault> {
        // One- and two-byte varints (keys, most lengths) inline; the rest out of line. The slow
        // path takes the slice by value so the reader itself can stay in registers.
        match *self.rest {
            [b0, ..] if b0 < 0x80 => {
                self.rest = &self.rest[1..];
                Ok(u64::from(b0))
            }
            [b0, b1, ..] if b1 < 0x80 => {
                self.rest = &self.rest[2..];
                Ok(u64::from(b0 & 0x7f) | u64::from(b1) << 7)
            }
            _ => {
                let (v, n) = varint_slow(self.rest)?;
                self.rest = &self.rest[n..];
                Ok(v)
            }
        }
    }

    /// Reads a field key: (field number, wire type). Only a key beyond 32 bits is refused here;
    /// a known field's wire type is checked where it is read, and field number 0 and undefined
    /// or group wire types (3, 4, 6, 7; groups are never used by OTLP) in [`Self::skip`], which
    /// is where any field that is not a known one ends up.
    #[inline(always)]
    pub(crate) fn key(&mut self) -> Result<(u32, u8), Fault> {
        let k = match *self.rest {
            [b0, ..] if b0 < 0x80 => {
                self.rest = &self.rest[1..];
                u32::from(b0)
            }
            [b0, b1, ..] if b1 < 0x80 => {
                self.rest = &self.rest[2..];
                u32::from(b0 & 0x7f) | u32::from(b1) << 7
            }
            _ => {
                let at = self.pos();
                let (k, n) = varint_slow(self.rest)?;
                let k = u32::try_from(k).map_err(|_| malformed("field key out of range", at))?;
                self.rest = &self.rest[n..];
                k
            }
        };
        Ok((k >> 3, (k & 7) as u8))
    }

    /// Reads a length prefix and returns the payload, which must lie within the current message.
    #[inline(always)]
    pub(crate) fn len_delim(&mut self) -> Result<&'a [u8], Fault> {
        let len = self.varint()?;
        if len > self.rest.len() as u64 {
            return Err(malformed("length beyond the enclosing message", self.pos()));
        }
        let (payload, rest) = self.rest.split_at(len as usize);
        self.rest = rest;
        Ok(payload)
    }

    #[inline(always)]
    pub(crate) fn fixed64(&mut self) -> Result<u64, Fault> {
        match self.rest.split_first_chunk::<8>() {
            Some((b, rest)) => {
                self.rest = rest;
                Ok(u64::from_le_bytes(*b))
            }
            None => Err(malformed("truncated fixed64", self.pos())),
        }
    }

    #[inline(always)]
    pub(crate) fn fixed32(&mut self) -> Result<u32, Fault> {
        match self.rest.split_first_chunk::<4>() {
            Some((b, rest)) => {
                self.rest = rest;
                Ok(u32::from_le_bytes(*b))
            }
            None => Err(malformed("truncated fixed32", self.pos())),
        }
    }

    /// Skips a field that is not a known one, checking its key and framing. An unknown field
    /// inside a message at the depth limit is refused, as prost does.
    #[inline(always)]
    pub(crate) fn skip(&mut self, field: u32, wt: u8, depth: u32) -> Result<(), Fault> {
        // Out of line and by value, so that the reader does not have to live in memory.
        let n = skip_unknown(self.rest, field, wt, depth)?;
        self.rest = &self.rest[n..];
        Ok(())
    }

    /// Skips a field whose key and framing have been checked before (a second pass).
    #[inline]
    pub(crate) fn skip_checked(&mut self, wt: u8) -> Result<(), Fault> {
        self.skip(1, wt, 0)
    }

    /// A known string field, UTF-8 validated.
    #[inline(always)]
    pub(crate) fn string(&mut self, wt: u8, field: &'static str) -> Result<&'a [u8], Fault> {
        let s = self.string_unchecked(wt, field)?;
        check_utf8(s, field)?;
        Ok(s)
    }

    /// A known string field whose UTF-8 the caller checks later (exactly once).
    #[inline(always)]
    pub(crate) fn string_unchecked(
        &mut self,
        wt: u8,
        field: &'static str,
    ) -> Result<&'a [u8], Fault> {
        expect_wt(wt, WT_LEN, field, self.pos())?;
        self.len_delim()
    }

    /// A known varint field (int32/int64/uint32/bool/enum).
    #[inline(always)]
    pub(crate) fn varint_field(&mut self, wt: u8, field: &'static str) -> Result<u64, Fault> {
        expect_wt(wt, WT_VARINT, field, self.pos())?;
        self.varint()
    }

    /// A known fixed64/double field.
    #[inline(always)]
    pub(crate) fn fixed64_field(&mut self, wt: u8, field: &'static str) -> Result<u64, Fault> {
        expect_wt(wt, WT_I64, field, self.pos())?;
        self.fixed64()
    }

    /// A known fixed32 field.
    #[inline(always)]
    pub(crate) fn fixed32_field(&mut self, wt: u8, field: &'static str) -> Result<u32, Fault> {
        expect_wt(wt, WT_I32, field, self.pos())?;
        self.fixed32()
    }

    /// A known bytes field.
    #[inline(always)]
    pub(crate) fn bytes_field(&mut self, wt: u8, field: &'static str) -> Result<&'a [u8], Fault> {
        expect_wt(wt, WT_LEN, field, self.pos())?;
        self.len_delim()
    }

    /// A known sub-message field: its reader and its depth.
    #[inline(always)]
    pub(crate) fn message(
        &mut self,
        wt: u8,
        field: &'static str,
        depth: u32,
    ) -> Result<(Reader<'a>, u32), Fault> {
        expect_wt(wt, WT_LEN, field, self.pos())?;
        let d = enter(depth, self.pos())?;
        let payload = self.len_delim()?;
        Ok((Reader::new(payload), d))
    }
}

/// The field names of a container message (`ResourceSpans`, `ScopeMetrics`, ...): field 1 its
/// header message, field 2 its repeated children, field 3 its `schema_url`.
pub(crate) struct Container {
    pub header: &'static str,
    pub children: &'static str,
    pub schema_url: &'static str,
}

/// Pass 1 over a container: hands the header message(s) to `header`, checks the framing of the
/// children without reading them, validates `schema_url` and skips unknown fields.
#[inline]
pub(crate) fn container_header<'a>(
    mut p: Reader<'a>,
    depth: u32,
    names: &Container,
    mut header: impl FnMut(Reader<'a>, u32) -> Result<(), Fault>,
) -> Result<(), Fault> {
    while p.has_more() {
        let (f, wt) = p.key()?;
        match f {
            1 => {
                let (m, d) = p.message(wt, names.header, depth)?;
                header(m, d)?;
            }
            2 => {
                expect_wt(wt, WT_LEN, names.children, p.pos())?;
                enter(depth, p.pos())?;
                p.len_delim()?;
            }
            3 => {
                p.string(wt, names.schema_url)?;
            }
            _ => p.skip(f, wt, depth)?,
        }
    }
    Ok(())
}

/// Pass 2 over a container already checked by [`container_header`]: hands each child message
/// to `child`.
#[inline]
pub(crate) fn container_children<'a>(
    mut p: Reader<'a>,
    depth: u32,
    names: &Container,
    mut child: impl FnMut(Reader<'a>, u32) -> Result<(), Fault>,
) -> Result<(), Fault> {
    while p.has_more() {
        let (f, wt) = p.key()?;
        if f == 2 {
            let (m, d) = p.message(wt, names.children, depth)?;
            child(m, d)?;
        } else {
            p.skip_checked(wt)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn is_ascii_matches_std_for_every_length_and_position() {
        for len in 0..40 {
            let ascii = vec![b'a'; len];
            assert!(is_ascii(&ascii), "{len}");
            for i in 0..len {
                let mut v = ascii.clone();
                v[i] = 0x80 | (i as u8);
                assert!(!is_ascii(&v), "{len} {i}");
                assert_eq!(is_ascii(&v), v.is_ascii());
            }
        }
    }
}
