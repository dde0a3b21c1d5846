//! The zero-copy scanner of `ExportTraceServiceRequest` (the engine's hot path).
//!
//! Walks the protobuf wire format directly: no prost object tree, no allocation per span (the
//! batch's vectors are reserved once from a cheap pre-count). The whole request is validated the
//! way prost would (framing, wire types of known fields, UTF-8 of every string, nesting depth), so a
//! request is either read completely or refused completely — never half-read.
//!
//! Semantics it must keep equal to the reference decoder of the tests (which works on prost
//! structs): the last occurrence of a scalar field wins, repeated `resource` / `status` / attribute
//! values merge as prost merges them, and attribute lookups take the FIRST attribute with the key.
//! It must not aggregate or look at more than the fields listed in `SpanRecord`.

use super::sampling::{self, Number};
use super::wire::{enter, expect_wt, malformed, Fault, Reader, WT_LEN};
use super::{DecodeError, DecodeSettings, Rejections, TraceDecodeOutcome};
use bytes::Bytes;
use redwatch_engine::model::{
    ResourceRecord, SourceId, SpanBatch, SpanKind, SpanRecord, StatusCode, StrError, StrRef,
    UnixNanos,
};
use redwatch_engine::time::{TimeCheck, TimePolicy};
use std::fmt::Write as _;

const SERVICE_NAME: &[u8] = b"service.name";

/// An attribute value as the decoder uses it (the last `AnyValue` oneof field seen).
#[derive(Debug, Clone, Copy, PartialEq)]
enum Value {
    /// No oneof field (an empty `AnyValue`, or none at all).
    Unset,
    /// Array, key-value list, bytes or string index: not usable as a dimension or a number.
    Other,
    /// Absolute byte range of a UTF-8 string in the request.
    Str(usize, usize),
    Bool(bool),
    Int(i64),
    Double(f64),
}

impl Value {
    fn is_scalar(&self) -> bool {
        !matches!(self, Value::Unset | Value::Other)
    }
}

/// The first attribute found with a given key.
#[derive(Debug, Clone, Copy)]
struct Slot {
    found: bool,
    value: Value,
}

impl Slot {
    const EMPTY: Slot = Slot {
        found: false,
        value: Value::Unset,
    };

    #[inline(always)]
    fn offer(&mut self, v: Value) {
        if !self.found {
            *self = Slot {
                found: true,
                value: v,
            };
        }
    }

    fn number(&self) -> Option<Number> {
        match self.value {
            Value::Int(i) if self.found => Some(Number::Int(i)),
            Value::Double(d) if self.found => Some(Number::Double(d)),
            _ => None,
        }
    }
}

fn str_fault(field: &'static str) -> impl Fn(StrError) -> Fault {
    move |e| match e {
        StrError::InvalidUtf8 => Fault::InvalidUtf8 { field },
        StrError::OutOfBounds => malformed("string beyond the 2 GiB limit of a batch", 0),
    }
}

/// Decodes an `ExportTraceServiceRequest` (see [`super::decode_traces_proto`]).
pub(super) fn decode(
    buf: Bytes,
    source: SourceId,
    settings: &DecodeSettings,
    policy: &TimePolicy,
    now: UnixNanos,
) -> Result<TraceDecodeOutcome, DecodeError> {
    let n_dims = settings.dim_keys.len().min(usize::from(u16::MAX));
    let data = buf.clone();
    let mut batch = SpanBatch::new(source, buf, n_dims as u16);
    let expected = count_spans(&data);
    batch.spans.reserve_exact(expected);
    batch
        .dim_values
        .reserve_exact(expected.saturating_mul(n_dims));
    let mut sc = Scanner {
        dim_keys: &settings.dim_keys[..n_dims],
        policy,
        now,
        batch,
        res_service: Slot::EMPTY,
        res_dims: vec![Slot::EMPTY; n_dims],
        res_dim_refs: vec![None; n_dims],
        span_dims: vec![Slot::EMPTY; n_dims],
        adjusted_count: Slot::EMPTY,
        probability: Slot::EMPTY,
        ratio: Slot::EMPTY,
        fmt: String::new(),
        bool_refs: [None; 2],
        received: 0,
        rejected: Rejections::default(),
        missing_service: 0,
    };
    sc.request(Reader::new(&data))?;
    let message = super::span_rejection_message(&sc.rejected, policy);
    Ok(TraceDecodeOutcome {
        batch: sc.batch,
        received: sc.received,
        rejected: sc.rejected,
        spans_missing_service_name: sc.missing_service,
        message,
    })
}

/// Best-effort count of the spans in a request, for reserving the batch (framing errors are left
/// to the real scan; the count so far is returned).
fn count_spans(data: &[u8]) -> usize {
    fn walk(data: &[u8], n: &mut usize) -> Result<(), Fault> {
        let mut r = Reader::new(data);
        while r.has_more() {
            let (f, wt) = r.key()?;
            if f != 1 || wt != WT_LEN {
                r.skip_value(wt)?;
                continue;
            }
            let range = r.len_delim()?;
            let mut rs = r.sub(range);
            while rs.has_more() {
                let (f, wt) = rs.key()?;
                if f != 2 || wt != WT_LEN {
                    rs.skip_value(wt)?;
                    continue;
                }
                let range = rs.len_delim()?;
                let mut ss = rs.sub(range);
                while ss.has_more() {
                    let (f, wt) = ss.key()?;
                    if f == 2 && wt == WT_LEN {
                        *n += 1;
                    }
                    ss.skip_value(wt)?;
                }
            }
        }
        Ok(())
    }
    let mut n = 0;
    let _ = walk(data, &mut n);
    n
}

struct Scanner<'s> {
    dim_keys: &'s [String],
    policy: &'s TimePolicy,
    now: UnixNanos,
    batch: SpanBatch,
    /// Lookups in the current resource's attributes.
    res_service: Slot,
    res_dims: Vec<Slot>,
    /// The current resource's dimension values, resolved once per resource.
    res_dim_refs: Vec<Option<StrRef>>,
    /// Lookups in the current span's attributes.
    span_dims: Vec<Slot>,
    adjusted_count: Slot,
    probability: Slot,
    ratio: Slot,
    /// Scratch for formatting numbers.
    fmt: String,
    /// Arena copies of "false" and "true", made on first use.
    bool_refs: [Option<StrRef>; 2],
    received: u64,
    rejected: Rejections,
    missing_service: u64,
}

impl Scanner<'_> {
    fn request(&mut self, mut r: Reader<'_>) -> Result<(), Fault> {
        while r.has_more() {
            let (f, wt) = r.key()?;
            match f {
                1 => {
                    let (m, d) = r.message(wt, "ExportTraceServiceRequest.resource_spans", 0)?;
                    self.resource_spans(m, d)?;
                }
                _ => r.skip(wt, 0)?,
            }
        }
        Ok(())
    }

    fn resource_spans(&mut self, r: Reader<'_>, depth: u32) -> Result<(), Fault> {
        // Pass 1: the resource (protobuf does not promise it precedes the spans) and the framing
        // of this level.
        self.res_service = Slot::EMPTY;
        self.res_dims.fill(Slot::EMPTY);
        let mut p = r;
        while p.has_more() {
            let (f, wt) = p.key()?;
            match f {
                1 => {
                    let (m, d) = p.message(wt, "ResourceSpans.resource", depth)?;
                    self.resource(m, d)?;
                }
                2 => {
                    expect_wt(wt, WT_LEN, "ResourceSpans.scope_spans", p.pos())?;
                    enter(depth, p.pos())?;
                    p.len_delim()?;
                }
                3 => {
                    p.string(wt, "ResourceSpans.schema_url")?;
                }
                _ => p.skip(wt, depth)?,
            }
        }

        let resource = u32::try_from(self.batch.resources.len())
            .map_err(|_| malformed("too many resources", r.pos()))?;
        let service_name = match self.res_service.value {
            Value::Str(s, e) => Some(
                self.batch
                    .request_str(s, e - s)
                    .map_err(str_fault("service.name"))?,
            ),
            _ => None,
        };
        self.batch.resources.push(ResourceRecord { service_name });
        for i in 0..self.res_dims.len() {
            self.res_dim_refs[i] = self.resolve(self.res_dims[i].value)?;
        }

        // Pass 2: the spans (everything else was checked in pass 1).
        let mut p = r;
        while p.has_more() {
            let (f, wt) = p.key()?;
            if f == 2 {
                let (m, d) = p.message(wt, "ResourceSpans.scope_spans", depth)?;
                self.scope_spans(m, d, resource, service_name.is_some())?;
            } else {
                p.skip_value(wt)?;
            }
        }
        Ok(())
    }

    fn resource(&mut self, mut r: Reader<'_>, depth: u32) -> Result<(), Fault> {
        while r.has_more() {
            let (f, wt) = r.key()?;
            match f {
                1 => {
                    let (m, d) = r.message(wt, "Resource.attributes", depth)?;
                    let ((ks, ke), v) = key_value(m, d)?;
                    let key = &r.request()[ks..ke];
                    if key == SERVICE_NAME {
                        self.res_service.offer(v);
                    }
                    for (slot, dk) in self.res_dims.iter_mut().zip(self.dim_keys) {
                        if key == dk.as_bytes() {
                            slot.offer(v);
                        }
                    }
                }
                2 => {
                    r.varint_field(wt, "Resource.dropped_attributes_count")?;
                }
                3 => {
                    let (m, d) = r.message(wt, "Resource.entity_refs", depth)?;
                    entity_ref(m, d)?;
                }
                _ => r.skip(wt, depth)?,
            }
        }
        Ok(())
    }

    fn scope_spans(
        &mut self,
        mut r: Reader<'_>,
        depth: u32,
        resource: u32,
        has_service: bool,
    ) -> Result<(), Fault> {
        while r.has_more() {
            let (f, wt) = r.key()?;
            match f {
                1 => {
                    let (m, d) = r.message(wt, "ScopeSpans.scope", depth)?;
                    scope(m, d)?;
                }
                2 => {
                    let (m, d) = r.message(wt, "ScopeSpans.spans", depth)?;
                    self.span(m, d, resource, has_service)?;
                }
                3 => {
                    r.string(wt, "ScopeSpans.schema_url")?;
                }
                _ => r.skip(wt, depth)?,
            }
        }
        Ok(())
    }

    #[inline]
    fn span_attribute(&mut self, key: &[u8], v: Value) {
        for (slot, dk) in self.span_dims.iter_mut().zip(self.dim_keys) {
            if key == dk.as_bytes() {
                slot.offer(v);
            }
        }
        if key.len() >= 14 && key.starts_with(b"sampling.") {
            match &key[9..] {
                b"adjusted_count" => self.adjusted_count.offer(v),
                b"probability" => self.probability.offer(v),
                b"ratio" => self.ratio.offer(v),
                _ => {}
            }
        }
    }

    fn span(
        &mut self,
        mut r: Reader<'_>,
        depth: u32,
        resource: u32,
        has_service: bool,
    ) -> Result<(), Fault> {
        let req = r.request();
        let mut trace_id: &[u8] = &[];
        let mut span_id: &[u8] = &[];
        let mut parent_span_id: &[u8] = &[];
        let mut trace_state = (0, 0);
        let mut name = (0, 0);
        let mut kind = 0i32;
        let mut start = 0u64;
        let mut end = 0u64;
        let mut status = 0i32;
        self.span_dims.fill(Slot::EMPTY);
        self.adjusted_count = Slot::EMPTY;
        self.probability = Slot::EMPTY;
        self.ratio = Slot::EMPTY;

        while r.has_more() {
            let (f, wt) = r.key()?;
            match f {
                1 => trace_id = r.bytes_field(wt, "Span.trace_id")?,
                2 => span_id = r.bytes_field(wt, "Span.span_id")?,
                3 => trace_state = r.string(wt, "Span.trace_state")?,
                4 => parent_span_id = r.bytes_field(wt, "Span.parent_span_id")?,
                5 => name = r.string(wt, "Span.name")?,
                6 => kind = r.varint_field(wt, "Span.kind")? as i32,
                7 => start = r.fixed64_field(wt, "Span.start_time_unix_nano")?,
                8 => end = r.fixed64_field(wt, "Span.end_time_unix_nano")?,
                9 => {
                    let (m, d) = r.message(wt, "Span.attributes", depth)?;
                    let ((ks, ke), v) = key_value(m, d)?;
                    self.span_attribute(&req[ks..ke], v);
                }
                10 => {
                    r.varint_field(wt, "Span.dropped_attributes_count")?;
                }
                11 => {
                    let (m, d) = r.message(wt, "Span.events", depth)?;
                    event(m, d)?;
                }
                12 => {
                    r.varint_field(wt, "Span.dropped_events_count")?;
                }
                13 => {
                    let (m, d) = r.message(wt, "Span.links", depth)?;
                    link(m, d)?;
                }
                14 => {
                    r.varint_field(wt, "Span.dropped_links_count")?;
                }
                15 => {
                    let (m, d) = r.message(wt, "Span.status", depth)?;
                    // A repeated status merges: a later code overrides, a missing one does not.
                    if let Some(code) = status_code(m, d)? {
                        status = code;
                    }
                }
                16 => {
                    r.fixed32_field(wt, "Span.flags")?;
                }
                _ => r.skip(wt, depth)?,
            }
        }

        self.received += 1;
        if start == 0 || start > end {
            self.rejected.invalid_timestamp += 1;
            return Ok(());
        }
        match self.policy.check(end, self.now) {
            TimeCheck::Ok => {}
            TimeCheck::Invalid => {
                self.rejected.invalid_timestamp += 1;
                return Ok(());
            }
            TimeCheck::Future => {
                self.rejected.future_timestamp += 1;
                return Ok(());
            }
            TimeCheck::Late => {
                self.rejected.late += 1;
                return Ok(());
            }
        }

        let name = self
            .batch
            .request_str(name.0, name.1 - name.0)
            .map_err(str_fault("Span.name"))?;
        let dims = u32::try_from(self.batch.dim_values.len())
            .map_err(|_| malformed("too many dimension values", r.pos()))?;
        for i in 0..self.span_dims.len() {
            let slot = self.span_dims[i];
            let v = if slot.found && slot.value.is_scalar() {
                self.resolve(slot.value)?
            } else {
                self.res_dim_refs[i]
            };
            self.batch.dim_values.push(v);
        }
        let weight = sampling::adjusted_count_weight(self.adjusted_count.number())
            .or_else(|| sampling::probability_weight(self.probability.number()))
            .or_else(|| sampling::probability_weight(self.ratio.number()))
            .or_else(|| sampling::tracestate_weight(&req[trace_state.0..trace_state.1]))
            .unwrap_or(1.0);
        if !has_service {
            self.missing_service += 1;
        }
        self.batch.spans.push(SpanRecord {
            trace_id: trace_id.try_into().unwrap_or([0; 16]),
            span_id: span_id.try_into().unwrap_or([0; 8]),
            parent_span_id: parent_span_id.try_into().unwrap_or([0; 8]),
            start,
            end,
            weight,
            name,
            resource,
            dims,
            kind: SpanKind::from_i32(kind),
            status: StatusCode::from_i32(status),
        });
        Ok(())
    }

    /// The string a dimension value stands for: request strings by reference, numbers and bools
    /// formatted into the batch arena.
    fn resolve(&mut self, v: Value) -> Result<Option<StrRef>, Fault> {
        let arena = str_fault("dimension value");
        let r = match v {
            Value::Unset | Value::Other => return Ok(None),
            Value::Str(s, e) => self
                .batch
                .request_str(s, e - s)
                .map_err(str_fault("AnyValue.string_value"))?,
            Value::Bool(b) => match self.bool_refs[usize::from(b)] {
                Some(r) => r,
                None => {
                    let r = self
                        .batch
                        .arena_str(if b { "true" } else { "false" })
                        .map_err(arena)?;
                    self.bool_refs[usize::from(b)] = Some(r);
                    r
                }
            },
            Value::Int(i) => {
                self.fmt.clear();
                let _ = write!(self.fmt, "{i}");
                self.batch.arena_str(&self.fmt).map_err(arena)?
            }
            Value::Double(d) => {
                self.fmt.clear();
                let _ = write!(self.fmt, "{d}");
                self.batch.arena_str(&self.fmt).map_err(arena)?
            }
        };
        Ok(Some(r))
    }
}

/// `KeyValue`: its key's range (empty when absent) and the value as merged by prost.
#[inline]
fn key_value(mut r: Reader<'_>, depth: u32) -> Result<((usize, usize), Value), Fault> {
    let mut key = (0, 0);
    let mut value = Value::Unset;
    while r.has_more() {
        let (f, wt) = r.key()?;
        match f {
            1 => key = r.string(wt, "KeyValue.key")?,
            2 => {
                let (m, d) = r.message(wt, "KeyValue.value", depth)?;
                // A repeated value merges into the first: only a set oneof replaces it.
                let v = any_value(m, d)?;
                if v != Value::Unset {
                    value = v;
                }
            }
            3 => {
                r.varint_field(wt, "KeyValue.key_strindex")?;
            }
            _ => r.skip(wt, depth)?,
        }
    }
    Ok((key, value))
}

/// `AnyValue`: the last oneof field wins; nested arrays and lists are validated, not kept.
fn any_value(mut r: Reader<'_>, depth: u32) -> Result<Value, Fault> {
    let mut v = Value::Unset;
    while r.has_more() {
        let (f, wt) = r.key()?;
        v = match f {
            1 => {
                let (s, e) = r.string(wt, "AnyValue.string_value")?;
                Value::Str(s, e)
            }
            2 => Value::Bool(r.varint_field(wt, "AnyValue.bool_value")? != 0),
            3 => Value::Int(r.varint_field(wt, "AnyValue.int_value")? as i64),
            4 => Value::Double(f64::from_bits(
                r.fixed64_field(wt, "AnyValue.double_value")?,
            )),
            5 => {
                let (m, d) = r.message(wt, "AnyValue.array_value", depth)?;
                array_value(m, d)?;
                Value::Other
            }
            6 => {
                let (m, d) = r.message(wt, "AnyValue.kvlist_value", depth)?;
                key_values(m, d, "KeyValueList.values")?;
                Value::Other
            }
            7 => {
                r.bytes_field(wt, "AnyValue.bytes_value")?;
                Value::Other
            }
            8 => {
                r.varint_field(wt, "AnyValue.string_value_strindex")?;
                Value::Other
            }
            _ => {
                r.skip(wt, depth)?;
                continue;
            }
        };
    }
    Ok(v)
}

fn array_value(mut r: Reader<'_>, depth: u32) -> Result<(), Fault> {
    while r.has_more() {
        let (f, wt) = r.key()?;
        match f {
            1 => {
                let (m, d) = r.message(wt, "ArrayValue.values", depth)?;
                any_value(m, d)?;
            }
            _ => r.skip(wt, depth)?,
        }
    }
    Ok(())
}

/// A message whose only known field is `repeated KeyValue` number 1 (`KeyValueList`).
fn key_values(mut r: Reader<'_>, depth: u32, field: &'static str) -> Result<(), Fault> {
    while r.has_more() {
        let (f, wt) = r.key()?;
        match f {
            1 => {
                let (m, d) = r.message(wt, field, depth)?;
                key_value(m, d)?;
            }
            _ => r.skip(wt, depth)?,
        }
    }
    Ok(())
}

fn entity_ref(mut r: Reader<'_>, depth: u32) -> Result<(), Fault> {
    while r.has_more() {
        let (f, wt) = r.key()?;
        match f {
            1 => r.string(wt, "EntityRef.schema_url").map(|_| ())?,
            2 => r.string(wt, "EntityRef.type").map(|_| ())?,
            3 => r.string(wt, "EntityRef.id_keys").map(|_| ())?,
            4 => r.string(wt, "EntityRef.description_keys").map(|_| ())?,
            _ => r.skip(wt, depth)?,
        }
    }
    Ok(())
}

fn scope(mut r: Reader<'_>, depth: u32) -> Result<(), Fault> {
    while r.has_more() {
        let (f, wt) = r.key()?;
        match f {
            1 => r.string(wt, "InstrumentationScope.name").map(|_| ())?,
            2 => r.string(wt, "InstrumentationScope.version").map(|_| ())?,
            3 => {
                let (m, d) = r.message(wt, "InstrumentationScope.attributes", depth)?;
                key_value(m, d)?;
            }
            4 => r
                .varint_field(wt, "InstrumentationScope.dropped_attributes_count")
                .map(|_| ())?,
            _ => r.skip(wt, depth)?,
        }
    }
    Ok(())
}

fn event(mut r: Reader<'_>, depth: u32) -> Result<(), Fault> {
    while r.has_more() {
        let (f, wt) = r.key()?;
        match f {
            1 => r.fixed64_field(wt, "Event.time_unix_nano").map(|_| ())?,
            2 => r.string(wt, "Event.name").map(|_| ())?,
            3 => {
                let (m, d) = r.message(wt, "Event.attributes", depth)?;
                key_value(m, d)?;
            }
            4 => r
                .varint_field(wt, "Event.dropped_attributes_count")
                .map(|_| ())?,
            _ => r.skip(wt, depth)?,
        }
    }
    Ok(())
}

fn link(mut r: Reader<'_>, depth: u32) -> Result<(), Fault> {
    while r.has_more() {
        let (f, wt) = r.key()?;
        match f {
            1 => r.bytes_field(wt, "Link.trace_id").map(|_| ())?,
            2 => r.bytes_field(wt, "Link.span_id").map(|_| ())?,
            3 => r.string(wt, "Link.trace_state").map(|_| ())?,
            4 => {
                let (m, d) = r.message(wt, "Link.attributes", depth)?;
                key_value(m, d)?;
            }
            5 => r
                .varint_field(wt, "Link.dropped_attributes_count")
                .map(|_| ())?,
            6 => r.fixed32_field(wt, "Link.flags").map(|_| ())?,
            _ => r.skip(wt, depth)?,
        }
    }
    Ok(())
}

/// `Status`: the last `code` in it, if any.
fn status_code(mut r: Reader<'_>, depth: u32) -> Result<Option<i32>, Fault> {
    let mut code = None;
    while r.has_more() {
        let (f, wt) = r.key()?;
        match f {
            2 => r.string(wt, "Status.message").map(|_| ())?,
            3 => code = Some(r.varint_field(wt, "Status.code")? as i32),
            _ => r.skip(wt, depth)?,
        }
    }
    Ok(code)
}
