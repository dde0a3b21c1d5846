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

use super::common::{key_value, resource_attributes, scope, scope_attributes, Kind, Slot, Value};
use super::sampling;
use super::wire::{
    check_utf8, container_children, container_header, malformed, Container, Fault, Reader, WT_LEN,
};
use super::{DecodeError, DecodeSettings, Rejections, TraceDecodeOutcome};
use bytes::Bytes;
use redwatch_engine::config::DimensionSource;
use redwatch_engine::model::{
    ResourceRecord, SourceId, SpanBatch, SpanKind, SpanRecord, StatusCode, StrError, StrRef,
    UnixNanos,
};
use redwatch_engine::time::{TimeCheck, TimePolicy};
use std::fmt::Write as _;

const SERVICE_NAME: &[u8] = b"service.name";

fn str_fault(field: &'static str) -> impl Fn(StrError) -> Fault {
    move |e| match e {
        StrError::InvalidUtf8 => Fault::invalid_utf8(field),
        StrError::OutOfBounds => malformed("string beyond the size limit of a batch", 0),
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
    if u32::try_from(buf.len()).is_err() {
        return Err(DecodeError::Malformed(
            "request larger than 4 GiB".to_string(),
        ));
    }
    let n_dims = settings.dim_keys.len().min(usize::from(u16::MAX));
    let data = buf.clone();
    let mut batch = SpanBatch::new(source, buf, n_dims as u16);
    // An acceptable span takes at least 20 bytes (key, length, start and end): the cap keeps a
    // request of empty spans from reserving 40 times its size.
    let expected = count_spans(&data).min(data.len() / 20);
    batch.spans.reserve_exact(expected);
    batch
        .dim_values
        .reserve_exact(expected.saturating_mul(n_dims));
    let dim_sources: Vec<DimensionSource> = (0..n_dims).map(|i| settings.source(i)).collect();
    let mut sc = Scanner {
        base: data.as_ptr() as usize,
        dim_keys: &settings.dim_keys[..n_dims],
        need_scope: dim_sources.iter().any(|s| s.reads_scope()),
        dim_sources,
        scope_dims: vec![Slot::EMPTY; n_dims],
        scope_dim_refs: vec![None; n_dims],
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
        dim_cache: vec![None; n_dims],
        received: 0,
        rejected: Rejections::default(),
        missing_service: 0,
    };
    sc.request(Reader::new(&data))
        .map_err(|f| f.into_error(&data))?;
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
                r.skip(f, wt, 0)?;
                continue;
            }
            let mut rs = Reader::new(r.len_delim()?);
            while rs.has_more() {
                let (f, wt) = rs.key()?;
                if f != 2 || wt != WT_LEN {
                    rs.skip(f, wt, 0)?;
                    continue;
                }
                let mut ss = Reader::new(rs.len_delim()?);
                while ss.has_more() {
                    let (f, wt) = ss.key()?;
                    if f == 2 && wt == WT_LEN {
                        *n += 1;
                        ss.len_delim()?;
                    } else {
                        ss.skip(f, wt, 0)?;
                    }
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
    /// Address of the request's first byte (strings are found by address, kept by offset).
    base: usize,
    dim_keys: &'s [String],
    /// Where each dimension is read from.
    dim_sources: Vec<DimensionSource>,
    /// Whether any dimension may come from the instrumentation scope (then each `ScopeSpans` is
    /// read in two passes, since its scope may follow its spans).
    need_scope: bool,
    /// Lookups in the current scope's attributes, and their values resolved once per scope.
    scope_dims: Vec<Slot>,
    scope_dim_refs: Vec<Option<StrRef>>,
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
    /// Per dimension, the last number or bool formatted into the arena and its reference.
    dim_cache: Vec<Option<(Value, StrRef)>>,
    received: u64,
    rejected: Rejections,
    missing_service: u64,
}

const RESOURCE_SPANS: Container = Container {
    header: "ResourceSpans.resource",
    children: "ResourceSpans.scope_spans",
    schema_url: "ResourceSpans.schema_url",
};

const SCOPE_SPANS: Container = Container {
    header: "ScopeSpans.scope",
    children: "ScopeSpans.spans",
    schema_url: "ScopeSpans.schema_url",
};

impl Scanner<'_> {
    fn request(&mut self, mut r: Reader<'_>) -> Result<(), Fault> {
        while r.has_more() {
            let (f, wt) = r.key()?;
            match f {
                1 => {
                    let (m, d) = r.message(wt, "ExportTraceServiceRequest.resource_spans", 0)?;
                    self.resource_spans(m, d)?;
                }
                _ => r.skip(f, wt, 0)?,
            }
        }
        Ok(())
    }

    fn resource_spans(&mut self, r: Reader<'_>, depth: u32) -> Result<(), Fault> {
        // Pass 1: the resource (protobuf does not promise it precedes the spans) and the framing
        // of this level.
        self.res_service = Slot::EMPTY;
        self.res_dims.fill(Slot::EMPTY);
        container_header(r, depth, &RESOURCE_SPANS, |m, d| self.resource(m, d))?;

        let resource = u32::try_from(self.batch.resources.len())
            .map_err(|_| malformed("too many resources", r.pos()))?;
        let service_name = match self.res_service.value {
            v if v.kind == Kind::Str => {
                let r = self.request_str(v.bits as usize, v.len as usize);
                Some(r.map_err(str_fault("service.name"))?)
            }
            _ => None,
        };
        self.batch.resources.push(ResourceRecord { service_name });
        for i in 0..self.res_dims.len() {
            self.res_dim_refs[i] = self.resolve(self.res_dims[i].value)?;
        }

        // Pass 2: the spans (everything else was checked in pass 1).
        container_children(r, depth, &RESOURCE_SPANS, |m, d| {
            self.scope_spans(m, d, resource, service_name.is_some())
        })
    }

    fn resource(&mut self, r: Reader<'_>, depth: u32) -> Result<(), Fault> {
        let (service, dims, keys) = (&mut self.res_service, &mut self.res_dims, self.dim_keys);
        resource_attributes(r, depth, |a| {
            let key = a.key;
            if key == SERVICE_NAME {
                service.offer(a.value);
            }
            for (slot, dk) in dims.iter_mut().zip(keys) {
                if key == dk.as_bytes() {
                    slot.offer(a.value);
                }
            }
        })
    }

    fn scope_spans(
        &mut self,
        mut r: Reader<'_>,
        depth: u32,
        resource: u32,
        has_service: bool,
    ) -> Result<(), Fault> {
        if self.need_scope {
            return self.scope_spans_two_pass(r, depth, resource, has_service);
        }
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
                _ => r.skip(f, wt, depth)?,
            }
        }
        Ok(())
    }

    /// `ScopeSpans` when dimensions read scope attributes: pass 1 reads the scope (wherever it
    /// is) and checks the framing of this level, pass 2 the spans.
    fn scope_spans_two_pass(
        &mut self,
        r: Reader<'_>,
        depth: u32,
        resource: u32,
        has_service: bool,
    ) -> Result<(), Fault> {
        self.scope_dims.fill(Slot::EMPTY);
        let (slots, keys) = (&mut self.scope_dims, self.dim_keys);
        container_header(r, depth, &SCOPE_SPANS, |m, d| {
            scope_attributes(m, d, |a| {
                for (slot, dk) in slots.iter_mut().zip(keys) {
                    if a.key == dk.as_bytes() {
                        slot.offer(a.value);
                    }
                }
            })
        })?;
        for i in 0..self.scope_dims.len() {
            self.scope_dim_refs[i] = if self.dim_sources[i].reads_scope() {
                self.resolve(self.scope_dims[i].value)?
            } else {
                None
            };
        }
        container_children(r, depth, &SCOPE_SPANS, |m, d| {
            self.span(m, d, resource, has_service)
        })
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
        let mut trace_id: &[u8] = &[];
        let mut span_id: &[u8] = &[];
        let mut parent_span_id: &[u8] = &[];
        let mut trace_state: &[u8] = &[];
        // Offsets of kept strings are taken from their addresses: a default must lie in the request.
        let mut name: &[u8] = r.empty();
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
                5 => {
                    // Only the last name is kept, and `request_str` validates it then; earlier
                    // ones are validated here, since prost refuses any invalid occurrence.
                    check_utf8(name, "Span.name")?;
                    name = r.string_unchecked(wt, "Span.name")?;
                }
                6 => kind = r.varint_field(wt, "Span.kind")? as i32,
                7 => start = r.fixed64_field(wt, "Span.start_time_unix_nano")?,
                8 => end = r.fixed64_field(wt, "Span.end_time_unix_nano")?,
                9 => {
                    let (m, d) = r.message(wt, "Span.attributes", depth)?;
                    let a = key_value(m, d)?;
                    self.span_attribute(a.key, a.value);
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
                _ => r.skip(f, wt, depth)?,
            }
        }

        self.received += 1;
        let check = if start == 0 || start > end {
            TimeCheck::Invalid
        } else {
            self.policy.check(end, self.now)
        };
        let counter = match check {
            TimeCheck::Ok => None,
            TimeCheck::Invalid => Some(&mut self.rejected.invalid_timestamp),
            TimeCheck::Future => Some(&mut self.rejected.future_timestamp),
            TimeCheck::Late => Some(&mut self.rejected.late),
        };
        if let Some(counter) = counter {
            *counter += 1;
            return check_utf8(name, "Span.name");
        }

        let name = self
            .request_str(name.as_ptr() as usize, name.len())
            .map_err(str_fault("Span.name"))?;
        let dims = u32::try_from(self.batch.dim_values.len())
            .map_err(|_| malformed("too many dimension values", r.pos()))?;
        for i in 0..self.span_dims.len() {
            let slot = self.span_dims[i];
            let source = self.dim_sources[i];
            let from_span = matches!(source, DimensionSource::Any | DimensionSource::Span);
            let v = if !from_span || !slot.found || !slot.value.is_scalar() {
                match source {
                    DimensionSource::Any => self.scope_dim_refs[i].or(self.res_dim_refs[i]),
                    DimensionSource::Span => None,
                    DimensionSource::Resource => self.res_dim_refs[i],
                    DimensionSource::Scope => self.scope_dim_refs[i],
                }
            } else if slot.value.kind == Kind::Str {
                self.resolve(slot.value)?
            } else {
                // Numbers and bools repeat (status codes, ports): format each value once.
                match self.dim_cache[i] {
                    Some((v, r)) if v == slot.value => Some(r),
                    _ => {
                        let r = self.resolve(slot.value)?;
                        self.dim_cache[i] = r.map(|r| (slot.value, r));
                        r
                    }
                }
            };
            self.batch.dim_values.push(v);
        }
        let weight = sampling::adjusted_count_weight(self.adjusted_count.number())
            .or_else(|| sampling::probability_weight(self.probability.number()))
            .or_else(|| sampling::probability_weight(self.ratio.number()))
            .or_else(|| sampling::tracestate_weight(trace_state))
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

    /// A `StrRef` to `len` bytes at address `addr` of the request.
    fn request_str(&self, addr: usize, len: usize) -> Result<StrRef, StrError> {
        self.batch.request_str(addr - self.base, len)
    }

    /// The string a dimension value stands for: request strings by reference, numbers and bools
    /// formatted into the batch arena.
    fn resolve(&mut self, v: Value) -> Result<Option<StrRef>, Fault> {
        let arena = str_fault("dimension value");
        let r = match v.kind {
            Kind::Unset | Kind::Other => return Ok(None),
            Kind::Str => {
                let r = self.request_str(v.bits as usize, v.len as usize);
                r.map_err(str_fault("AnyValue.string_value"))?
            }
            Kind::Bool => {
                let b = if v.bits != 0 { "true" } else { "false" };
                self.batch.arena_str(b).map_err(arena)?
            }
            Kind::Int => {
                self.fmt.clear();
                let _ = write!(self.fmt, "{}", v.bits as i64);
                self.batch.arena_str(&self.fmt).map_err(arena)?
            }
            Kind::Double => {
                self.fmt.clear();
                let _ = write!(self.fmt, "{}", f64::from_bits(v.bits));
                self.batch.arena_str(&self.fmt).map_err(arena)?
            }
        };
        Ok(Some(r))
    }
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
            _ => r.skip(f, wt, depth)?,
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
            _ => r.skip(f, wt, depth)?,
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
            _ => r.skip(f, wt, depth)?,
        }
    }
    Ok(code)
}
