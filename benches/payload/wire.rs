//! A minimal walk over encoded protobuf: where a request's fixed64 timestamps are, so a
//! pre-encoded payload can be moved to the present without encoding it again.

#![allow(dead_code)]

pub(super) fn read_varint(buf: &[u8], pos: &mut usize) -> u64 {
    let mut v = 0u64;
    let mut shift = 0;
    while let Some(&b) = buf.get(*pos) {
        *pos += 1;
        v |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            break;
        }
        shift += 7;
    }
    v
}

/// Calls `f(field, wire_type, value_start, value_end)` for every field of the message in
/// `buf[from..to]`.
pub(super) fn for_each_field(
    buf: &[u8],
    from: usize,
    to: usize,
    f: &mut dyn FnMut(u64, u64, usize, usize),
) {
    let mut pos = from;
    while pos < to {
        let tag = read_varint(buf, &mut pos);
        let (field, wire) = (tag >> 3, tag & 7);
        let start = pos;
        let end = match wire {
            0 => {
                read_varint(buf, &mut pos);
                pos
            }
            1 => pos + 8,
            2 => {
                let len = read_varint(buf, &mut pos) as usize;
                pos + len
            }
            5 => pos + 4,
            _ => return, // groups are not used by OTLP
        };
        let start = if wire == 2 { pos } else { start };
        f(field, wire, start, end);
        pos = end;
    }
}

/// Calls `f(span_start, span_end)` for the bytes of every `Span` in an encoded
/// `ExportTraceServiceRequest` (resource_spans = 1, ResourceSpans.scope_spans = 2,
/// ScopeSpans.spans = 2).
fn for_each_span(buf: &[u8], f: &mut dyn FnMut(usize, usize)) {
    for_each_field(buf, 0, buf.len(), &mut |fld, w, s, e| {
        if (fld, w) != (1, 2) {
            return;
        }
        for_each_field(buf, s, e, &mut |fld, w, s, e| {
            if (fld, w) != (2, 2) {
                return;
            }
            for_each_field(buf, s, e, &mut |fld, w, s, e| {
                if (fld, w) == (2, 2) {
                    f(s, e);
                }
            });
        });
    });
}

/// Offsets of every span's `start_time_unix_nano` (7) and `end_time_unix_nano` (8).
pub(super) fn span_time_offsets(buf: &[u8]) -> Vec<(u32, u32)> {
    let mut out = Vec::new();
    for_each_span(buf, &mut |s, e| {
        let (mut start, mut end) = (None, None);
        for_each_field(buf, s, e, &mut |f, w, s, _| match (f, w) {
            (7, 1) => start = Some(s as u32),
            (8, 1) => end = Some(s as u32),
            _ => {}
        });
        if let (Some(a), Some(b)) = (start, end) {
            out.push((a, b));
        }
    });
    out
}

/// Offsets of `Span.start_time_unix_nano` (7), `Span.end_time_unix_nano` (8) and
/// `Span.Event.time_unix_nano` (1) in an encoded `ExportTraceServiceRequest`.
pub(super) fn timestamp_offsets(buf: &[u8]) -> Vec<u32> {
    let mut out = Vec::new();
    for_each_span(buf, &mut |s, e| {
        for_each_field(buf, s, e, &mut |f, w, s, e| match (f, w) {
            (7, 1) | (8, 1) => out.push(s as u32),
            // Span.events = 11
            (11, 2) => for_each_field(buf, s, e, &mut |f, w, s, _| {
                if (f, w) == (1, 1) {
                    out.push(s as u32);
                }
            }),
            _ => {}
        });
    });
    out
}
