//! The leaf fields of a metric data point on the wire: bucket counts, explicit bounds,
//! quantiles and exemplars (validated and skipped as prost would), and zigzag decoding.

use super::super::common::key_value;
use super::super::wire::{malformed, Fault, Reader, WT_LEN};

pub(super) fn zigzag32(v: u32) -> i32 {
    ((v >> 1) as i32) ^ -((v & 1) as i32)
}

/// A `repeated fixed64` / `repeated double` field: packed (one length-delimited run of 8-byte
/// values) or one value per occurrence, as prost accepts both.
pub(super) fn repeated_fixed64(
    r: &mut Reader<'_>,
    wt: u8,
    field: &'static str,
    mut push: impl FnMut(u64),
) -> Result<(), Fault> {
    match wt {
        WT_LEN => {
            let at = r.pos();
            let payload = r.len_delim()?;
            if payload.len() % 8 != 0 {
                return Err(malformed(
                    "packed fixed64 run not a multiple of 8 bytes",
                    at,
                ));
            }
            for c in payload.chunks_exact(8) {
                let mut b = [0u8; 8];
                b.copy_from_slice(c);
                push(u64::from_le_bytes(b));
            }
            Ok(())
        }
        _ => {
            push(r.fixed64_field(wt, field)?);
            Ok(())
        }
    }
}

/// `ExponentialHistogramDataPoint.Buckets`: offset (last wins), counts appended.
pub(super) fn buckets(
    mut r: Reader<'_>,
    depth: u32,
    offset: &mut i32,
    counts: &mut Vec<u64>,
) -> Result<(), Fault> {
    while r.has_more() {
        let (f, wt) = r.key()?;
        match f {
            1 => *offset = zigzag32(r.varint_field(wt, "Buckets.offset")? as u32),
            2 => match wt {
                WT_LEN => {
                    let mut p = Reader::new(r.len_delim()?);
                    while p.has_more() {
                        counts.push(p.varint()?);
                    }
                }
                _ => counts.push(r.varint_field(wt, "Buckets.bucket_counts")?),
            },
            _ => r.skip(f, wt, depth)?,
        }
    }
    Ok(())
}

pub(super) fn value_at_quantile(mut r: Reader<'_>, depth: u32) -> Result<(f64, f64), Fault> {
    let (mut q, mut v) = (0.0, 0.0);
    while r.has_more() {
        let (f, wt) = r.key()?;
        match f {
            1 => q = f64::from_bits(r.fixed64_field(wt, "ValueAtQuantile.quantile")?),
            2 => v = f64::from_bits(r.fixed64_field(wt, "ValueAtQuantile.value")?),
            _ => r.skip(f, wt, depth)?,
        }
    }
    Ok((q, v))
}

pub(super) fn exemplar(mut r: Reader<'_>, depth: u32) -> Result<(), Fault> {
    while r.has_more() {
        let (f, wt) = r.key()?;
        match f {
            7 => {
                let (m, d) = r.message(wt, "Exemplar.filtered_attributes", depth)?;
                key_value(m, d)?;
            }
            2 | 3 | 6 => {
                r.fixed64_field(wt, "Exemplar value or time")?;
            }
            4 | 5 => {
                r.bytes_field(wt, "Exemplar id")?;
            }
            _ => r.skip(f, wt, depth)?,
        }
    }
    Ok(())
}
