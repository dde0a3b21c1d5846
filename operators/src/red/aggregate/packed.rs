//! The packed form of a [`RedAgg`] held by an emitted window while it waits for late data
//! (`WindowAggregate::pack`): the same values, bit for bit, in a few hundred bytes instead of
//! the inline aggregate plus its sparse sketch and bucket vectors.
//!
//! Owns: that byte layout. Inside a process it is the emitted windows' form; between the
//! instances of one fleet it is the exact state of a share or a merged window (the Kafka
//! record header of the shuffle and results topics, which puts a version byte in front; see
//! docs/fleet.md): instances of one fleet run the same redwatch version. Must not: lose or round
//! anything — unpacking gives an aggregate equal to the packed one, so re-emissions after late
//! data and merges of shares are exact; nor panic or allocate beyond its input on bytes it did
//! not make (`try_unpack` answers `None`).
//!
//! Layout: a flags byte (statuses present, integral calls, integral bucket weights, exemplars
//! present), `min_ms` and `max_ms` (durations: see `put_ms`), per present status its calls
//! (varint when integral, else f64 LE) and `sum_ms` (f64 LE), the bucket count, each bucket as
//! code gap and weight (varint when integral, else f64 LE), each present exemplar (ids,
//! duration), then the rest is [`QuantileSketch::pack_state`]'s output.

use super::{BucketCounts, Exemplar, RedAgg, STATUSES};
use crate::red::sketch::{put_varint, QuantileSketch};

const FLAG_INTEGRAL_CALLS: u8 = 1 << 3;
const FLAG_INTEGRAL_BUCKETS: u8 = 1 << 4;
const FLAG_SLOWEST: u8 = 1 << 5;
const FLAG_FAILED: u8 = 1 << 6;

/// `w` as an integer when the varint round trip gives back the very same bits.
fn exact_u64(w: f64) -> Option<u64> {
    // 2^53: every integer up to it is an f64.
    if (0.0..=9_007_199_254_740_992.0).contains(&w) && (w as u64 as f64).to_bits() == w.to_bits() {
        Some(w as u64)
    } else {
        None
    }
}

fn put_f64(out: &mut Vec<u8>, v: f64) {
    out.extend_from_slice(&v.to_le_bytes());
}

/// A span duration in ms. Durations are whole nanoseconds divided by 10⁶ (see
/// `Span::duration_ms`), so most are written as `ns << 1` (4–5 bytes for typical latencies); any
/// other value as the tag 1 and its 8 bytes. Exact either way.
fn put_ms(out: &mut Vec<u8>, v: f64) {
    let ns = (v * 1e6).round();
    if (0.0..9.0e15).contains(&ns) && (ns as u64 as f64 / 1e6).to_bits() == v.to_bits() {
        put_varint(out, (ns as u64) << 1);
    } else {
        put_varint(out, 1);
        put_f64(out, v);
    }
}

fn put_exemplar(out: &mut Vec<u8>, e: &Exemplar) {
    out.extend_from_slice(&e.trace_id);
    out.extend_from_slice(&e.span_id);
    put_ms(out, e.duration_ms);
}

struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take<const N: usize>(&mut self) -> Option<[u8; N]> {
        let (head, rest) = self.bytes.split_first_chunk::<N>()?;
        self.bytes = rest;
        Some(*head)
    }

    fn f64(&mut self) -> Option<f64> {
        self.take::<8>().map(f64::from_le_bytes)
    }

    fn varint(&mut self) -> Option<u64> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let [b] = self.take::<1>()?;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Some(v);
            }
        }
        None
    }

    fn weight(&mut self, integral: bool) -> Option<f64> {
        if integral {
            self.varint().map(|v| v as f64)
        } else {
            self.f64()
        }
    }

    /// What [`put_ms`] wrote.
    fn ms(&mut self) -> Option<f64> {
        match self.varint()? {
            1 => self.f64(),
            v if v & 1 == 0 => Some((v >> 1) as f64 / 1e6),
            _ => None,
        }
    }

    fn exemplar(&mut self) -> Option<Exemplar> {
        Some(Exemplar {
            trace_id: self.take::<16>()?,
            span_id: self.take::<8>()?,
            duration_ms: self.ms()?,
        })
    }
}

impl RedAgg {
    /// Packs `self` (see the module doc).
    pub fn pack_bytes(&self) -> Box<[u8]> {
        let present: Vec<usize> = (0..STATUSES)
            .filter(|&s| self.calls[s].to_bits() != 0 || self.sum_ms[s].to_bits() != 0)
            .collect();
        let integral_calls = present.iter().all(|&s| exact_u64(self.calls[s]).is_some());
        let integral_buckets = self.buckets.iter().all(|(_, w)| exact_u64(w).is_some());
        let mut flags = 0u8;
        for &s in &present {
            flags |= 1 << s;
        }
        if integral_calls {
            flags |= FLAG_INTEGRAL_CALLS;
        }
        if integral_buckets {
            flags |= FLAG_INTEGRAL_BUCKETS;
        }
        if self.exemplars.slowest.is_some() {
            flags |= FLAG_SLOWEST;
        }
        if self.exemplars.failed.is_some() {
            flags |= FLAG_FAILED;
        }
        let mut out = Vec::with_capacity(256);
        out.push(flags);
        put_ms(&mut out, self.min_ms);
        put_ms(&mut out, self.max_ms);
        let put_weight = |out: &mut Vec<u8>, w: f64, integral: bool| match exact_u64(w) {
            Some(v) if integral => put_varint(out, v),
            _ => put_f64(out, w),
        };
        for &s in &present {
            put_weight(&mut out, self.calls[s], integral_calls);
            put_f64(&mut out, self.sum_ms[s]);
        }
        put_varint(&mut out, self.buckets.len() as u64);
        let mut previous = 0u16;
        for (code, w) in self.buckets.iter() {
            // Codes are sorted and distinct.
            put_varint(&mut out, u64::from(code - previous));
            put_weight(&mut out, w, integral_buckets);
            previous = code;
        }
        for e in [&self.exemplars.slowest, &self.exemplars.failed]
            .into_iter()
            .flatten()
        {
            put_exemplar(&mut out, e);
        }
        self.sketch.pack_state(&mut out);
        out.into_boxed_slice()
    }

    /// The aggregate [`Self::pack_bytes`] packed; `None` for any other bytes.
    pub fn try_unpack(bytes: &[u8]) -> Option<RedAgg> {
        let mut r = Reader { bytes };
        let [flags] = r.take::<1>()?;
        let mut a = RedAgg {
            min_ms: r.ms()?,
            max_ms: r.ms()?,
            ..RedAgg::default()
        };
        for s in 0..STATUSES {
            if flags & (1 << s) != 0 {
                a.calls[s] = r.weight(flags & FLAG_INTEGRAL_CALLS != 0)?;
                a.sum_ms[s] = r.f64()?;
            }
        }
        let n = r.varint()?;
        // Each bucket takes at least two bytes: no allocation beyond what the input describes.
        if n > r.bytes.len() as u64 / 2 {
            return None;
        }
        let mut pairs = Vec::with_capacity(n as usize);
        let mut code = 0u16;
        for _ in 0..n {
            code = code.checked_add(u16::try_from(r.varint()?).ok()?)?;
            pairs.push((code, r.weight(flags & FLAG_INTEGRAL_BUCKETS != 0)?));
        }
        a.buckets = BucketCounts::from_sorted(pairs);
        if flags & FLAG_SLOWEST != 0 {
            a.exemplars.slowest = Some(r.exemplar()?);
        }
        if flags & FLAG_FAILED != 0 {
            a.exemplars.failed = Some(r.exemplar()?);
        }
        a.sketch = QuantileSketch::unpack_state(r.bytes).ok()?;
        Some(a)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::red::Buckets;
    use proptest::prelude::*;
    use redwatch_engine::model::StatusCode;
    use redwatch_engine::window::{WindowAggregate, WindowStore};

    fn agg(spans: &[(u8, f64, f64, u8)]) -> RedAgg {
        let b = Buckets::new(vec![0.5, 2.0, 10.0, 100.0, 1000.0]);
        let mut a = RedAgg::default();
        for &(s, d, w, id) in spans {
            let status = StatusCode::ALL[usize::from(s) % StatusCode::ALL.len()];
            a.add_span(status, d, b.index(d), w, &[id; 16], &[id; 8]);
        }
        a
    }

    fn spans() -> impl Strategy<Value = Vec<(u8, f64, f64, u8)>> {
        prop::collection::vec(
            (
                0u8..3,
                prop_oneof![Just(0.0), 1e-9f64..1e-3, (-5.0f64..12.0).prop_map(f64::exp)],
                prop_oneof![3 => Just(1.0f64), 1 => (1u32..1000).prop_map(f64::from), 1 => 0.001f64..50.0],
                any::<u8>(),
            ),
            0..400,
        )
    }

    proptest! {
        #[test]
        fn pack_round_trips_bit_for_bit(spans in spans(), merged in spans()) {
            let mut a = agg(&spans);
            a.merge(&agg(&merged));
            let packed = a.pack_bytes();
            let b = RedAgg::try_unpack(&packed).expect("own packing");
            prop_assert_eq!(&b, &a);
            for s in 0..STATUSES {
                prop_assert_eq!(b.calls[s].to_bits(), a.calls[s].to_bits());
                prop_assert_eq!(b.sum_ms[s].to_bits(), a.sum_ms[s].to_bits());
            }
            prop_assert_eq!(b.sketch.to_bytes(), a.sketch.to_bytes());
            prop_assert_eq!(&b.pack_bytes(), &packed);
            // Truncated bytes are refused, never a panic.
            for len in 0..packed.len() {
                let _ = RedAgg::try_unpack(&packed[..len]);
            }
        }
    }

    #[test]
    fn packed_is_much_smaller_than_live() {
        // 100 spans of one series in a 10 s window: log-normal-ish durations around 30 ms.
        let spans: Vec<_> = (0..100u32)
            .map(|i| {
                let u = f64::from(i * 37 % 100) / 100.0;
                (
                    u8::from(i % 20 == 0) * 2,
                    30.0 * (1.6 * (u - 0.5)).exp(),
                    1.0,
                    i as u8,
                )
            })
            .collect();
        let mut a = agg(&spans);
        a.shrink_to_fit();
        let live = std::mem::size_of::<RedAgg>() + a.heap_bytes();
        let packed = a.pack_bytes().len();
        assert!(packed * 2 < live, "packed {packed} B, live {live} B");
    }

    /// A RedAgg that does not pack: the reference the packing window store must agree with.
    #[derive(Debug, Default, Clone, PartialEq)]
    struct Unpacked(RedAgg);

    impl WindowAggregate for Unpacked {
        fn merge(&mut self, o: &Self) {
            self.0.merge(&o.0);
        }
    }

    type Row = (u64, u32, bool, bool, RedAgg, RedAgg);

    fn rows<A: WindowAggregate>(
        s: &mut WindowStore<u32, A>,
        wm: u64,
        get: impl Fn(&A) -> &RedAgg,
    ) -> Vec<Row> {
        let mut out = Vec::new();
        s.advance(wm, |e| {
            out.push((
                e.start,
                *e.key,
                e.first,
                e.window_first,
                get(e.total).clone(),
                get(e.delta).clone(),
            ))
        });
        out.sort_by_key(|r| (r.0, r.1));
        out
    }

    proptest! {
        /// Late data into packed windows re-emits exactly what a store that never packs emits.
        #[test]
        fn packed_windows_emit_the_same_rows(
            steps in prop::collection::vec(
                prop_oneof![
                    4 => (0u64..60, 0u32..4, spans()).prop_map(|(t, k, s)| (Some((t, k, s)), 0)),
                    1 => (0u64..15).prop_map(|d| (None, d)),
                ],
                1..40,
            ),
        ) {
            let mut packing: WindowStore<u32, RedAgg> = WindowStore::new(10, 20);
            let mut plain: WindowStore<u32, Unpacked> = WindowStore::new(10, 20);
            let mut wm = 0;
            for (span, advance) in steps {
                match span {
                    Some((t, k, s)) => {
                        let delta = agg(&s);
                        let r1 = packing.merge(t, &k, &delta);
                        let r2 = plain.merge(t, &k, &Unpacked(delta));
                        prop_assert_eq!(r1, r2);
                    }
                    None => {
                        wm += advance;
                        let a = rows(&mut packing, wm, |a| a);
                        let b = rows(&mut plain, wm, |a| &a.0);
                        prop_assert_eq!(a, b);
                        prop_assert_eq!(packing.entry_count(), plain.entry_count());
                    }
                }
            }
        }
    }
}
