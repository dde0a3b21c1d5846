//! Property test: a hopping window spec (`windows.extra: [{size, slide}]`) equals the union of
//! the primary windows it covers, plus the spans that came after their primary window was purged
//! while the hopping window was not (a coarser spec takes what its purged primary window no
//! longer can).
//!
//! Random spans with out-of-order event times (some late, some beyond lateness) are interleaved
//! with random watermark advances. After a final flush, every hopping window's last emission must
//! equal that — counts, sums, buckets, min/max and the sketch's bins — its emissions' deltas must
//! add up to it, and every hopping window that covers a primary window with data must exist.

use proptest::prelude::*;
use redwatch_engine::config::ExtraWindow;
use redwatch_engine::fixtures::{span_batch, SpanFixture};
use redwatch_engine::model::{SourceId, StatusCode};
use redwatch_engine::telemetry::Registry;
use redwatch_engine::window::WindowAggregate;
use redwatch_operators::layout::SpanSections;
use redwatch_operators::red::{RedAgg, RedOperator, RedRow, RedSink};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

const MS: u64 = 1_000_000;
const BASE: u64 = 1_700_000_000_000 * MS;
const SIZE: u64 = 1000 * MS;
const HOP_SIZE: u64 = 4000 * MS;
const HOP_SLIDE: u64 = 2000 * MS;
const LATENESS: u64 = 2000 * MS;
const BOUNDS: usize = 4;

#[derive(Default)]
struct Capture(Mutex<Vec<RedRow>>);

impl RedSink for Capture {
    fn on_final(&self, rows: &[RedRow]) {
        self.0.lock().unwrap().extend_from_slice(rows);
    }
}

fn config() -> SpanSections {
    let mut c = SpanSections::default();
    c.windows.size = Duration::from_nanos(SIZE);
    c.windows.rollups = vec![];
    c.windows.extra = vec![ExtraWindow {
        size: Some(Duration::from_nanos(HOP_SIZE)),
        slide: Some(Duration::from_nanos(HOP_SLIDE)),
        ..Default::default()
    }];
    c.windows.allowed_lateness = Duration::from_nanos(LATENESS);
    c.red.buckets_ms = vec![2.0, 10.0, 100.0, 1000.0];
    c
}

#[derive(Debug, Clone)]
enum Step {
    Span {
        offset_ms: u64,
        op: u8,
        status: u8,
        duration_ms: f64,
        weight: u8,
    },
    Advance(u64),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        6 => (0u64..14_000, 0u8..3, 0u8..3, 0.0..5_000.0f64, 1u8..4).prop_map(
            |(offset_ms, op, status, duration_ms, weight)| Step::Span { offset_ms, op, status, duration_ms, weight }
        ),
        1 => (0u64..3_000).prop_map(Step::Advance),
    ]
}

/// What a test compares: everything exact except the float sum (merge order differs).
#[derive(Debug, PartialEq)]
struct Facts {
    calls: Vec<f64>,
    buckets: Vec<Vec<f64>>,
    min_ms: f64,
    max_ms: f64,
    bins: Vec<(i16, f32)>,
}

fn facts(a: &RedAgg) -> Facts {
    Facts {
        calls: a.calls.to_vec(),
        buckets: StatusCode::ALL
            .iter()
            .map(|s| a.bucket_counts(*s, BOUNDS))
            .collect(),
        min_ms: a.min_ms,
        max_ms: a.max_ms,
        bins: a.sketch.bins().collect(),
    }
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, .. ProptestConfig::default() })]

    #[test]
    fn hopping_windows_equal_the_union_of_the_covered_primary_windows(
        steps in proptest::collection::vec(step(), 1..250)
    ) {
        let registry = Registry::new();
        let capture = Arc::new(Capture::default());
        let cfg = config();
        let mut op = RedOperator::new(&cfg.windows, &cfg.red, vec![capture.clone()], &registry);
        let mut wm = BASE;
        // Spans late for their primary window, per hopping window that still took them.
        let mut extra: BTreeMap<(u64, String), RedAgg> = BTreeMap::new();
        for st in &steps {
            match st {
                Step::Advance(ms) => {
                    wm += ms * MS;
                    op.advance(wm);
                }
                Step::Span { offset_ms, op: o, status, duration_ms, weight } => {
                    let f = SpanFixture::new("svc", &format!("op-{o}"), BASE + offset_ms * MS, *duration_ms)
                        .status(StatusCode::ALL[*status as usize])
                        .weight(f64::from(*weight));
                    let end = f.end;
                    let pstart = end - end % SIZE;
                    if pstart + SIZE + LATENESS <= wm {
                        let ms = f.end.saturating_sub(f.start) as f64 / 1e6;
                        let mut one = RedAgg::default();
                        let bucket = op.buckets().index(ms);
                        one.add_span(f.status, ms, bucket, f.weight, &f.trace_id, &f.span_id);
                        let mut s = pstart - pstart % HOP_SLIDE;
                        while s + HOP_SIZE >= pstart + SIZE {
                            if s + HOP_SIZE + LATENESS > wm {
                                extra.entry((s, format!("op-{o}"))).or_default().merge(&one);
                            }
                            if s < HOP_SLIDE { break; }
                            s -= HOP_SLIDE;
                        }
                    }
                    op.process_spans(&span_batch(SourceId(0), 0, &[f]), wm);
                }
            }
        }
        op.advance(wm + 100_000 * MS);

        // Per (spec, window start, span name): the last total and the sum of the deltas.
        let mut got: BTreeMap<(u64, u64, String), (RedAgg, RedAgg)> = BTreeMap::new();
        for r in capture.0.lock().unwrap().iter() {
            let label = r.window_size.to_string();
            let spec = if r.primary { 0 } else { 1 };
            prop_assert_eq!(label.as_str(), if r.primary { "1s" } else { "4s/2s" });
            prop_assert_eq!(r.end - r.start, if r.primary { SIZE } else { HOP_SIZE });
            prop_assert_eq!(r.start % if r.primary { SIZE } else { HOP_SLIDE }, 0);
            let e = got.entry((spec, r.start, r.series.span_name.to_string())).or_default();
            e.0 = r.total.clone();
            e.1.merge(r.delta.as_ref().unwrap());
        }
        // The union of the final primary windows inside each hopping window.
        let mut want: BTreeMap<(u64, String), RedAgg> = BTreeMap::new();
        for ((spec, start, name), (total, _)) in &got {
            if *spec != 0 {
                continue;
            }
            let mut s = start - start % HOP_SLIDE;
            loop {
                if s + HOP_SIZE >= start + SIZE {
                    want.entry((s, name.clone())).or_default().merge(total);
                }
                if s < HOP_SLIDE { break; }
                s -= HOP_SLIDE;
                if s + HOP_SIZE < start + SIZE { break; }
            }
        }
        for (k, a) in &extra {
            want.entry(k.clone()).or_default().merge(a);
        }
        let hop: BTreeMap<(u64, String), &(RedAgg, RedAgg)> = got
            .iter()
            .filter(|((spec, _, _), _)| *spec == 1)
            .map(|((_, s, n), v)| ((*s, n.clone()), v))
            .collect();
        prop_assert_eq!(hop.keys().collect::<Vec<_>>(), want.keys().collect::<Vec<_>>());
        for (k, w) in &want {
            let (total, deltas) = hop[k];
            prop_assert_eq!(facts(total), facts(w), "hopping window {:?}", k);
            prop_assert!(close(total.total_sum_ms(), w.total_sum_ms()), "sum of {:?}", k);
            prop_assert_eq!(facts(deltas).calls, facts(total).calls, "deltas of {:?} add up to the total", k);
        }
    }
}
