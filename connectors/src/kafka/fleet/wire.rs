//! The exact state a fleet record carries (docs/fleet.md): the Kafka header
//! [`STATE_HEADER`] of every shuffle and results record. The record's value stays the OTLP
//! spanmetrics request any consumer can read (`records.rs`); the header holds what the merge
//! needs and OTLP cannot say exactly: the share, the window spec, the series, and the whole
//! aggregate with its quantile sketch and exemplars. Pure: no I/O.
//!
//! Layout: version byte 1; share, window label (each a varint length + UTF-8); window size and
//! window start (u64 LE); flags (bit 0 primary spec, bit 1 overflow series); span kind (its
//! protocol number); service name, span name, the dimension count (varint) and values; then the
//! rest is `RedAgg::pack_bytes`.

use redwatch_engine::model::SpanKind;
use redwatch_operators::red::sketch::put_varint;
use redwatch_operators::red::{RedAgg, RedRow, SeriesKey};
use std::sync::Arc;

/// The header that carries a record's exact state.
pub const STATE_HEADER: &str = "redwatch.red";
const VERSION: u8 = 1;
const PRIMARY: u8 = 1;
const OVERFLOW: u8 = 2;

fn put_str(out: &mut Vec<u8>, s: &str) {
    put_varint(out, s.len() as u64);
    out.extend_from_slice(s.as_bytes());
}

/// The header value for `row` in share `share`.
pub fn encode(row: &RedRow, share: &str) -> Vec<u8> {
    let s = &row.series;
    let mut out = Vec::with_capacity(128);
    out.push(VERSION);
    put_str(&mut out, share);
    put_str(&mut out, &row.window_size);
    out.extend_from_slice(&row.window_size_ns.to_le_bytes());
    out.extend_from_slice(&row.start.to_le_bytes());
    out.push(if row.primary { PRIMARY } else { 0 } | if s.overflow { OVERFLOW } else { 0 });
    out.push(s.kind as u8);
    put_str(&mut out, &s.service_name);
    put_str(&mut out, &s.span_name);
    put_varint(&mut out, s.dims.len() as u64);
    for d in s.dims.iter() {
        put_str(&mut out, d);
    }
    out.extend_from_slice(&row.total.pack_bytes());
    out
}

/// Why a header could not be read (counted per reason, the record is skipped).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("the record has no redwatch.red header")]
    Missing,
    #[error("unknown header version {0} (every instance of a fleet runs one redwatch version)")]
    Version(u8),
    #[error("the header is cut short or malformed")]
    Malformed,
}

impl WireError {
    /// The `reason` label of the rejection counter.
    pub fn reason(&self) -> &'static str {
        match self {
            WireError::Missing => "missing_state",
            WireError::Version(_) => "unknown_version",
            WireError::Malformed => "malformed_state",
        }
    }
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], WireError> {
        if self.0.len() < n {
            return Err(WireError::Malformed);
        }
        let (h, t) = self.0.split_at(n);
        self.0 = t;
        Ok(h)
    }

    fn u8(&mut self) -> Result<u8, WireError> {
        Ok(self.take(1)?[0])
    }

    fn u64(&mut self) -> Result<u64, WireError> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }

    fn varint(&mut self) -> Result<u64, WireError> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.u8()?;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(WireError::Malformed)
    }

    fn str(&mut self) -> Result<&'a str, WireError> {
        let n = self.varint()?;
        let n = usize::try_from(n).map_err(|_| WireError::Malformed)?;
        std::str::from_utf8(self.take(n)?).map_err(|_| WireError::Malformed)
    }
}

/// The share and the final row a header describes (`share: None`, `first: false`, no delta).
pub fn decode(header: Option<&[u8]>) -> Result<(Arc<str>, RedRow), WireError> {
    let bytes = header.ok_or(WireError::Missing)?;
    let mut r = Reader(bytes);
    let v = r.u8()?;
    if v != VERSION {
        return Err(WireError::Version(v));
    }
    let share: Arc<str> = r.str()?.into();
    let window_size: Arc<str> = r.str()?.into();
    let window_size_ns = r.u64()?;
    let start = r.u64()?;
    let flags = r.u8()?;
    let kind = SpanKind::from_i32(i32::from(r.u8()?));
    let service_name: Arc<str> = r.str()?.into();
    let span_name: Arc<str> = r.str()?.into();
    let n = r.varint()?;
    // Every value takes at least its length byte: nothing is allocated beyond the input.
    if window_size_ns == 0 || n > r.0.len() as u64 {
        return Err(WireError::Malformed);
    }
    let mut dims = Vec::with_capacity(n as usize);
    for _ in 0..n {
        dims.push(Arc::<str>::from(r.str()?));
    }
    let total = RedAgg::try_unpack(r.0).ok_or(WireError::Malformed)?;
    let end = start
        .checked_add(window_size_ns)
        .ok_or(WireError::Malformed)?;
    Ok((
        share,
        RedRow {
            window_size,
            window_size_ns,
            primary: flags & PRIMARY != 0,
            start,
            end,
            series: Arc::new(SeriesKey {
                service_name,
                span_name,
                kind,
                dims: dims.into_boxed_slice(),
                overflow: flags & OVERFLOW != 0,
            }),
            share: None,
            is_final: true,
            first: false,
            total,
            delta: None,
        },
    ))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use redwatch_engine::model::StatusCode;

    pub(crate) fn row(service: &str, start: u64, durations: &[f64]) -> RedRow {
        let mut total = RedAgg::default();
        for (i, d) in durations.iter().enumerate() {
            let status = if i % 3 == 0 {
                StatusCode::Error
            } else {
                StatusCode::Unset
            };
            total.add_span(status, *d, 1, 1.0, &[i as u8; 16], &[1; 8]);
        }
        RedRow {
            window_size: "10s".into(),
            window_size_ns: 10_000_000_000,
            primary: true,
            start,
            end: start + 10_000_000_000,
            series: Arc::new(SeriesKey {
                service_name: service.into(),
                span_name: "GET /x|y".into(),
                kind: SpanKind::Server,
                dims: vec![Arc::<str>::from("eu"), Arc::<str>::from("")].into_boxed_slice(),
                overflow: false,
            }),
            share: Some(3),
            is_final: true,
            first: true,
            total,
            delta: None,
        }
    }

    #[test]
    fn a_row_round_trips_exactly_with_its_share() {
        let r = row("cart", 1_700_000_000_000_000_000, &[1.5, 20.0, 333.25]);
        let bytes = encode(&r, "otlp_spans:3");
        let (share, back) = decode(Some(&bytes)).unwrap();
        assert_eq!(&*share, "otlp_spans:3");
        assert_eq!(back.total, r.total);
        assert_eq!(back.series, r.series);
        assert_eq!((back.start, back.end, back.primary), (r.start, r.end, true));
        assert_eq!(&*back.window_size, "10s");
    }

    #[test]
    fn bad_headers_are_refused_not_panicked_on() {
        let r = row("cart", 10, &[1.0]);
        let bytes = encode(&r, "s");
        assert_eq!(decode(None).unwrap_err(), WireError::Missing);
        let mut v2 = bytes.clone();
        v2[0] = 2;
        assert_eq!(decode(Some(&v2)).unwrap_err(), WireError::Version(2));
        for cut in 0..bytes.len() {
            assert!(decode(Some(&bytes[..cut])).is_err(), "cut at {cut}");
        }
        let mut huge = vec![VERSION];
        huge.extend_from_slice(&[0xff; 12]);
        assert_eq!(decode(Some(&huge)).unwrap_err(), WireError::Malformed);
    }
}
