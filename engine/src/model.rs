//! The compact internal form of decoded telemetry.
//!
//! A [`SpanBatch`] keeps the request buffer it was decoded from and refers to names inside it by
//! offset ([`StrRef`]), so decoding a span allocates nothing per span: the spans are plain-old-data
//! records in one `Vec`. Every `StrRef` handed out is valid UTF-8 — that is checked once, when it is
//! created, which is why the constructors live here and the fields are private.

use bytes::Bytes;

/// Nanoseconds since the Unix epoch (OTLP's `*_unix_nano`).
pub type UnixNanos = u64;

/// Identifies one source of event time: an OTLP receiver or one assigned Kafka partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SourceId(pub u32);

/// A validated UTF-8 string inside a batch ([`SpanBatch`], or a metric batch where it is also
/// named `MStr`): in the request buffer or in the batch arena.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct StrRef {
    start: u32,
    /// Length; the top bit set means "in the arena" rather than in the request buffer.
    len: u32,
}

const ARENA_BIT: u32 = 1 << 31;

impl StrRef {
    /// The empty string.
    pub const EMPTY: StrRef = StrRef { start: 0, len: 0 };

    pub fn len(&self) -> usize {
        (self.len & !ARENA_BIT) as usize
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// `buf[start..start + len]`, validated as UTF-8.
    #[inline]
    pub(crate) fn in_request(buf: &[u8], start: usize, len: usize) -> Result<StrRef, StrError> {
        let end = start.checked_add(len).ok_or(StrError::OutOfBounds)?;
        let bytes = buf.get(start..end).ok_or(StrError::OutOfBounds)?;
        if len >= ARENA_BIT as usize || end > u32::MAX as usize {
            return Err(StrError::OutOfBounds);
        }
        // Names are nearly always ASCII; `is_ascii` is a word-at-a-time check.
        if !bytes.is_ascii() {
            std::str::from_utf8(bytes).map_err(|_| StrError::InvalidUtf8)?;
        }
        Ok(StrRef {
            start: start as u32,
            len: len as u32,
        })
    }

    /// `s`, copied to the end of `arena`.
    #[inline]
    pub(crate) fn in_arena(arena: &mut Vec<u8>, s: &str) -> Result<StrRef, StrError> {
        let start = arena.len();
        if start + s.len() >= ARENA_BIT as usize {
            return Err(StrError::OutOfBounds);
        }
        arena.extend_from_slice(s.as_bytes());
        Ok(StrRef {
            start: start as u32,
            len: s.len() as u32 | ARENA_BIT,
        })
    }

    /// Where the bytes are: `(in the arena, start)`.
    #[inline]
    pub(crate) fn place(&self) -> (bool, usize) {
        (self.len & ARENA_BIT != 0, self.start as usize)
    }

    /// Shortens the string to at most `max` bytes at a UTF-8 boundary, given its text
    /// `resolved`; whether it was cut.
    pub(crate) fn truncate(&mut self, resolved: &str, max: usize) -> bool {
        if self.len() <= max {
            return false;
        }
        let cut = utf8_prefix_len(resolved, max);
        self.len = (self.len & ARENA_BIT) | cut as u32;
        true
    }
}

/// OTLP span kind, numbered as in the protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
#[repr(u8)]
pub enum SpanKind {
    #[default]
    Unspecified = 0,
    Internal = 1,
    Server = 2,
    Client = 3,
    Producer = 4,
    Consumer = 5,
}

impl SpanKind {
    pub const ALL: [SpanKind; 6] = [
        SpanKind::Unspecified,
        SpanKind::Internal,
        SpanKind::Server,
        SpanKind::Client,
        SpanKind::Producer,
        SpanKind::Consumer,
    ];

    /// From the protocol number; unknown values map to `Unspecified` (as the proto3 rules say).
    pub fn from_i32(v: i32) -> SpanKind {
        match v {
            1 => SpanKind::Internal,
            2 => SpanKind::Server,
            3 => SpanKind::Client,
            4 => SpanKind::Producer,
            5 => SpanKind::Consumer,
            _ => SpanKind::Unspecified,
        }
    }

    /// The label value the spanmetrics connector uses (`SPAN_KIND_SERVER`, …).
    pub fn as_label(&self) -> &'static str {
        match self {
            SpanKind::Unspecified => "SPAN_KIND_UNSPECIFIED",
            SpanKind::Internal => "SPAN_KIND_INTERNAL",
            SpanKind::Server => "SPAN_KIND_SERVER",
            SpanKind::Client => "SPAN_KIND_CLIENT",
            SpanKind::Producer => "SPAN_KIND_PRODUCER",
            SpanKind::Consumer => "SPAN_KIND_CONSUMER",
        }
    }
}

/// OTLP status code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
#[repr(u8)]
pub enum StatusCode {
    #[default]
    Unset = 0,
    Ok = 1,
    Error = 2,
}

impl StatusCode {
    pub const ALL: [StatusCode; 3] = [StatusCode::Unset, StatusCode::Ok, StatusCode::Error];

    pub fn from_i32(v: i32) -> StatusCode {
        match v {
            1 => StatusCode::Ok,
            2 => StatusCode::Error,
            _ => StatusCode::Unset,
        }
    }

    pub fn as_label(&self) -> &'static str {
        match self {
            StatusCode::Unset => "STATUS_CODE_UNSET",
            StatusCode::Ok => "STATUS_CODE_OK",
            StatusCode::Error => "STATUS_CODE_ERROR",
        }
    }
}

/// One decoded span: only what the operators use.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SpanRecord {
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
    pub parent_span_id: [u8; 8],
    pub start: UnixNanos,
    /// The span's event time.
    pub end: UnixNanos,
    /// Adjusted count: how many real spans this sampled span stands for (1.0 when unsampled).
    pub weight: f64,
    pub name: StrRef,
    /// Index into [`SpanBatch::resources`].
    pub resource: u32,
    /// Index of this span's first value in [`SpanBatch::dim_values`]; it has
    /// [`SpanBatch::dims_per_span`] of them.
    pub dims: u32,
    pub kind: SpanKind,
    pub status: StatusCode,
}

impl SpanRecord {
    /// Duration in nanoseconds (0 when the end precedes the start).
    pub fn duration_ns(&self) -> u64 {
        self.end.saturating_sub(self.start)
    }

    /// Duration in milliseconds, the unit of the RED histograms.
    pub fn duration_ms(&self) -> f64 {
        self.duration_ns() as f64 / 1e6
    }
}

/// What a resource contributes to its spans.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ResourceRecord {
    /// `service.name`, if the resource has a string one.
    pub service_name: Option<StrRef>,
}

/// Decoded spans of one request (or one Kafka message), plus the buffers their names live in.
#[derive(Debug, Clone)]
pub struct SpanBatch {
    pub source: SourceId,
    /// The share the spans belong to: the source Kafka partition, whose results are kept and
    /// written apart (docs/kafka-exactness.md); `None` for spans received over OTLP.
    pub share: Option<u32>,
    buf: Bytes,
    arena: Vec<u8>,
    pub resources: Vec<ResourceRecord>,
    pub spans: Vec<SpanRecord>,
    /// Configured dimension values, `dims_per_span` per span; `None` = attribute absent.
    pub dim_values: Vec<Option<StrRef>>,
    pub dims_per_span: u16,
}

impl SpanBatch {
    /// An empty batch whose `StrRef`s will point into `buf`.
    pub fn new(source: SourceId, buf: Bytes, dims_per_span: u16) -> Self {
        SpanBatch {
            source,
            share: None,
            buf,
            arena: Vec::new(),
            resources: Vec::new(),
            spans: Vec::new(),
            dim_values: Vec::new(),
            dims_per_span,
        }
    }

    /// Validates `buf[start..start+len]` as UTF-8 and returns a reference to it.
    pub fn request_str(&self, start: usize, len: usize) -> Result<StrRef, StrError> {
        StrRef::in_request(&self.buf, start, len)
    }

    /// Copies `s` into the batch arena (for values that are not verbatim in the request, such as
    /// formatted numbers or JSON-decoded strings).
    pub fn arena_str(&mut self, s: &str) -> Result<StrRef, StrError> {
        StrRef::in_arena(&mut self.arena, s)
    }

    /// The string behind `r`.
    pub fn str(&self, r: StrRef) -> &str {
        let len = r.len();
        let start = r.start as usize;
        let bytes = if r.len & ARENA_BIT != 0 {
            &self.arena[start..start + len]
        } else {
            &self.buf[start..start + len]
        };
        // Every StrRef was validated when it was created (see `request_str` / `arena_str`);
        // a StrRef from another batch is a programming error that shows as "" rather than UB.
        std::str::from_utf8(bytes).unwrap_or("")
    }

    /// The dimension values of one span.
    pub fn dims_of(&self, span: &SpanRecord) -> &[Option<StrRef>] {
        let start = span.dims as usize;
        self.dim_values
            .get(start..start + self.dims_per_span as usize)
            .unwrap_or(&[])
    }

    /// The `service.name` of a span's resource.
    pub fn service_of(&self, span: &SpanRecord) -> Option<StrRef> {
        self.resources
            .get(span.resource as usize)
            .and_then(|r| r.service_name)
    }

    /// Largest event time in the batch.
    pub fn max_event_time(&self) -> Option<UnixNanos> {
        self.spans.iter().map(|s| s.end).max()
    }

    pub fn len(&self) -> usize {
        self.spans.len()
    }

    pub fn is_empty(&self) -> bool {
        self.spans.is_empty()
    }

    /// Shortens `r` to at most `max` bytes at a UTF-8 boundary; whether it was cut.
    fn truncate_ref(&self, r: &mut StrRef, max: usize) -> bool {
        r.truncate(self.str(*r), max)
    }

    /// Caps every string the batch hands to operators (span names, service names, dimension
    /// values) at `max` bytes (`receivers.otlp.limits.max_string_bytes`), cutting at a UTF-8
    /// boundary as the OpenTelemetry SDK's attribute length limits do. Returns how many were cut.
    pub fn truncate_strings(&mut self, max: usize) -> u64 {
        let mut n = 0;
        let mut spans = std::mem::take(&mut self.spans);
        for s in spans.iter_mut() {
            n += self.truncate_ref(&mut s.name, max) as u64;
        }
        self.spans = spans;
        let mut resources = std::mem::take(&mut self.resources);
        for r in resources.iter_mut() {
            if let Some(sn) = r.service_name.as_mut() {
                n += self.truncate_ref(sn, max) as u64;
            }
        }
        self.resources = resources;
        let mut dims = std::mem::take(&mut self.dim_values);
        for d in dims.iter_mut().flatten() {
            n += self.truncate_ref(d, max) as u64;
        }
        self.dim_values = dims;
        n
    }

    /// Bytes this batch keeps alive (request buffer, arena, records).
    pub fn retained_bytes(&self) -> usize {
        self.buf.len()
            + self.arena.capacity()
            + self.spans.capacity() * std::mem::size_of::<SpanRecord>()
            + self.resources.capacity() * std::mem::size_of::<ResourceRecord>()
            + self.dim_values.capacity() * std::mem::size_of::<Option<StrRef>>()
    }
}

/// Why a string could not be referenced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum StrError {
    #[error("string is not valid UTF-8")]
    InvalidUtf8,
    #[error("string lies outside the message")]
    OutOfBounds,
}

/// The length of the longest prefix of `s` that is at most `max` bytes and ends on a UTF-8
/// character boundary (how a string over `receivers.otlp.limits.max_string_bytes` is cut).
pub fn utf8_prefix_len(s: &str, max: usize) -> usize {
    let mut cut = max.min(s.len());
    while cut > 0 && !s.is_char_boundary(cut) {
        cut -= 1;
    }
    cut
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_are_cut_at_a_character_boundary() {
        assert_eq!(utf8_prefix_len("abcdef", 4), 4);
        assert_eq!(utf8_prefix_len("abc", 10), 3);
        // "é" is two bytes: a cut inside it falls back to before it.
        assert_eq!(utf8_prefix_len("aé", 2), 1);
        assert_eq!(utf8_prefix_len("aé", 3), 3);
        assert_eq!(utf8_prefix_len("€", 2), 0);
    }

    #[test]
    fn str_refs_resolve_from_request_and_arena() {
        let mut b = SpanBatch::new(SourceId(0), Bytes::from_static(b"xxhelloyy"), 0);
        let r = b.request_str(2, 5).unwrap();
        let a = b.arena_str("world").unwrap();
        assert_eq!(b.str(r), "hello");
        assert_eq!(b.str(a), "world");
        assert_eq!(r.len(), 5);
        assert_eq!(a.len(), 5);
    }

    #[test]
    fn invalid_utf8_and_out_of_bounds_are_refused() {
        let b = SpanBatch::new(SourceId(0), Bytes::from_static(b"ab\xff"), 0);
        assert_eq!(b.request_str(0, 3), Err(StrError::InvalidUtf8));
        assert_eq!(b.request_str(2, 5), Err(StrError::OutOfBounds));
        assert_eq!(b.request_str(usize::MAX, 2), Err(StrError::OutOfBounds));
    }
}
