//! Property test: the RED operator's emitted windows equal a naive group-by of the same spans.
//!
//! Random spans with random, out-of-order event times are interleaved with random watermark
//! advances. A naive model decides for each span and window spec whether it is still accepted
//! (that spec's window is not purged at that moment) and groups accepted spans by (window,
//! series). Every final emission is
//! checked against the model: counts, errors, sums, buckets, min/max exact; quantiles within the
//! sketch's relative accuracy; late re-emissions carry exactly their own delta; rollups equal the
//! direct computation; dropped spans are counted.

use proptest::prelude::*;
use redwatch_engine::fixtures::{span_batch, SpanFixture};
use redwatch_engine::model::{SourceId, SpanKind, StatusCode};
use redwatch_engine::telemetry::Registry;
use redwatch_engine::window::WindowAggregate;
use redwatch_operators::layout::SpanSections;
use redwatch_operators::red::sketch::QuantileSketch;
use redwatch_operators::red::{RedAgg, RedOperator, RedRow, RedSink};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

const MS: u64 = 1_000_000;
const BASE: u64 = 1_700_000_000_000 * MS;
const SIZE: u64 = 1000 * MS;
const ROLLUP: u64 = 3000 * MS;
const LATENESS: u64 = 2000 * MS;

#[derive(Default)]
struct Capture(Mutex<Vec<RedRow>>);

impl RedSink for Capture {
    fn on_final(&self, rows: &[RedRow]) {
        self.0.lock().unwrap().extend_from_slice(rows);
    }
}

#[derive(Debug, Clone)]
enum Step {
    Span {
        offset_ms: u64,
        service: u8,
        op: u8,
        status: u8,
        duration_ms: f64,
        weight: u8,
    },
    Advance(u64),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        6 => (0u64..12_000, 0u8..2, 0u8..3, 0u8..3, prop_oneof![0.0..20.0f64, 0.0..20_000.0f64, Just(10.0)], 1u8..4)
            .prop_map(|(offset_ms, service, op, status, duration_ms, weight)| Step::Span {
                offset_ms, service, op, status, duration_ms, weight,
            }),
        1 => (0u64..3_000).prop_map(Step::Advance),
    ]
}

type Series = (String, String);

#[derive(Default, Clone)]
struct Model {
    calls: [f64; 3],
    sum_ms: f64,
    min: f64,
    max: f64,
    /// (duration ms, weight, status index)
    values: Vec<(f64, f64, usize)>,
}

fn config() -> SpanSections {
    let mut c = SpanSections::default();
    c.windows.size = Duration::from_nanos(SIZE);
    c.windows.rollups = vec![Duration::from_nanos(ROLLUP)];
    c.windows.allowed_lateness = Duration::from_nanos(LATENESS);
    c.red.buckets_ms = vec![2.0, 10.0, 100.0, 1000.0];
    c
}

fn check_window(
    label: &str,
    last: &RedRow,
    deltas: &RedAgg,
    m: &Model,
) -> Result<(), TestCaseError> {
    let t = &last.total;
    for s in 0..3 {
        prop_assert_eq!(t.calls[s], m.calls[s], "{} calls[{}]", label, s);
        prop_assert_eq!(
            deltas.calls[s],
            m.calls[s],
            "{} sum of deltas calls[{}]",
            label,
            s
        );
    }
    let tol = 1e-9 * m.sum_ms.abs().max(1.0);
    prop_assert!(
        (t.total_sum_ms() - m.sum_ms).abs() <= tol,
        "{} sum {} vs {}",
        label,
        t.total_sum_ms(),
        m.sum_ms
    );
    prop_assert_eq!(t.min_ms, m.min, "{} min", label);
    prop_assert_eq!(t.max_ms, m.max, "{} max", label);
    // Buckets: exact, per status, and the deltas add up to them.
    let bounds = [2.0, 10.0, 100.0, 1000.0];
    for status in StatusCode::ALL {
        let mut want = vec![0.0; bounds.len() + 1];
        for (v, w, s) in &m.values {
            if *s == status as usize {
                // `le` is inclusive: the first bound >= v.
                let i = bounds.iter().position(|b| v <= b).unwrap_or(bounds.len());
                want[i] += w;
            }
        }
        let got = t.bucket_counts(status, bounds.len());
        let got_d = deltas.bucket_counts(status, bounds.len());
        prop_assert_eq!(&got, &want, "{} buckets of {:?}", label, status);
        prop_assert_eq!(
            &got_d,
            &want,
            "{} summed bucket deltas of {:?}",
            label,
            status
        );
    }
    // Quantiles: weighted lower quantile of the exact values, within the sketch's accuracy.
    let mut vals: Vec<(f64, f64)> = m.values.iter().map(|(v, w, _)| (*v, *w)).collect();
    vals.sort_by(|a, b| a.0.total_cmp(&b.0));
    let total: f64 = vals.iter().map(|v| v.1).sum();
    for q in [0.5, 0.9, 0.99] {
        let rank = q * (total - 1.0);
        let mut cum = 0.0;
        let mut exact = vals.last().map(|v| v.0).unwrap_or(0.0);
        for (v, w) in &vals {
            cum += w;
            if cum > rank {
                exact = *v;
                break;
            }
        }
        let est = t.quantile_ms(q).unwrap();
        let bound = QuantileSketch::RELATIVE_ACCURACY * exact + 1e-9;
        prop_assert!(
            (est - exact).abs() <= bound,
            "{} p{}: est {} exact {}",
            label,
            q,
            est,
            exact
        );
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, .. ProptestConfig::default() })]

    #[test]
    fn emitted_windows_equal_a_naive_group_by(steps in proptest::collection::vec(step(), 1..250)) {
        let registry = Registry::new();
        let capture = Arc::new(Capture::default());
        let cfg = config();
        let mut op = RedOperator::new(&cfg.windows, &cfg.red, vec![capture.clone()], &registry);
        let mut wm = BASE;
        let mut primary: BTreeMap<(u64, Series), Model> = BTreeMap::new();
        let mut rollup: BTreeMap<(u64, Series), Model> = BTreeMap::new();
        let mut late = 0u64;
        for st in &steps {
            match st {
                Step::Advance(ms) => {
                    wm += ms * MS;
                    op.advance(wm);
                }
                Step::Span { offset_ms, service, op: o, status, duration_ms, weight } => {
                    let end = BASE + offset_ms * MS;
                    let svc = format!("svc-{service}");
                    let name = format!("op-{o}");
                    let status = StatusCode::ALL[*status as usize];
                    let w = *weight as f64;
                    let f = SpanFixture::new(&svc, &name, end, *duration_ms).status(status).weight(w);
                    let dur = f.end.saturating_sub(f.start) as f64 / 1e6;
                    op.process_spans(&span_batch(SourceId(0), 0, &[f]), wm);
                    // Each spec takes the span while its window is not purged (a rollup takes
                    // what its purged primary window no longer can); late when none does.
                    let purged = |size: u64| end - end % size + size + LATENESS <= wm;
                    if purged(SIZE) && purged(ROLLUP) {
                        late += 1;
                        continue;
                    }
                    for (map, size) in [(&mut primary, SIZE), (&mut rollup, ROLLUP)] {
                        if purged(size) {
                            continue;
                        }
                        let m = map.entry((end - end % size, (svc.clone(), name.clone()))).or_default();
                        if m.values.is_empty() {
                            m.min = dur;
                            m.max = dur;
                        }
                        m.calls[status as usize] += w;
                        m.sum_ms += dur * w;
                        m.min = m.min.min(dur);
                        m.max = m.max.max(dur);
                        m.values.push((dur, w, status as usize));
                    }
                }
            }
        }
        // Flush: everything closes and is purged.
        op.advance(wm + 100_000 * MS);
        prop_assert_eq!(registry.value("redwatch_late_dropped_total", &[("signal", "spans")]), late as f64);

        let rows = capture.0.lock().unwrap().clone();
        // Group emissions by (spec, window, series): last total and the sum of deltas.
        let mut got: BTreeMap<(u64, u64, Series), (RedRow, RedAgg, usize)> = BTreeMap::new();
        for r in rows {
            prop_assert!(r.is_final);
            let k = (r.window_size_ns, r.start, (r.series.service_name.to_string(), r.series.span_name.to_string()));
            prop_assert_eq!(r.series.kind, SpanKind::Server);
            let delta = r.delta.clone().unwrap();
            match got.get_mut(&k) {
                None => {
                    prop_assert!(r.first, "first emission of {:?} not marked first", k);
                    got.insert(k, (r, delta, 1));
                }
                Some(e) => {
                    prop_assert!(!r.first, "re-emission of {:?} marked first", k);
                    e.1.merge(&delta);
                    e.0 = r;
                    e.2 += 1;
                }
            }
        }
        let want_keys: Vec<(u64, u64, Series)> = primary.keys().map(|(s, k)| (SIZE, *s, k.clone()))
            .chain(rollup.keys().map(|(s, k)| (ROLLUP, *s, k.clone()))).collect();
        let got_keys: Vec<(u64, u64, Series)> = got.keys().cloned().collect();
        let mut want_sorted = want_keys.clone();
        want_sorted.sort();
        prop_assert_eq!(&got_keys, &want_sorted);
        for ((size, start, series), (last, deltas, _)) in &got {
            let m = if *size == SIZE { &primary[&(*start, series.clone())] } else { &rollup[&(*start, series.clone())] };
            check_window(&format!("{size}/{start}/{series:?}"), last, deltas, m)?;
        }
    }
}
