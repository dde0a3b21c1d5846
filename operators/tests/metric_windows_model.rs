//! Property test: the metrics operator's final windows equal a naive model for random streams
//! with counter resets, start-time changes, out-of-order and late points, and mixed
//! temporalities (gauges, counters, up-down counters, explicit histograms).

use bytes::Bytes;
use proptest::prelude::*;
use redwatch_engine::metric_model::{MetricBatch, MetricKind, PointSpec, Temporality, ValueSpec};
use redwatch_engine::model::SourceId;
use redwatch_engine::telemetry::Registry;
use redwatch_operators::layout::SpanSections;
use redwatch_operators::metrics::{MetricRow, MetricSink, MetricsOperator};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const SEC: u64 = 1_000_000_000;
const T0: u64 = 1_700_000_000 * SEC;
const WINDOW: u64 = 10 * SEC;
const LATENESS: u64 = 20 * SEC;
const BOUNDS: [f64; 2] = [1.0, 5.0];

#[derive(Default)]
struct Rows(Mutex<Vec<MetricRow>>);

impl MetricSink for Rows {
    fn on_final(&self, rows: &[MetricRow]) {
        if let Ok(mut v) = self.0.lock() {
            v.extend(rows.iter().cloned());
        }
    }
}

#[derive(Debug, Clone)]
enum Step {
    Point(P),
    Advance(u64),
}

/// One random point. `series` picks name/kind; values are small integers, so float sums are
/// exact in any order.
#[derive(Debug, Clone)]
struct P {
    series: usize,
    host: bool,
    origin: u64,
    cumulative: bool,
    start: u64,
    time_s: u64,
    value: u64,
    buckets: [u64; 3],
}

const SERIES: [(&str, MetricKind); 4] = [
    ("g", MetricKind::Gauge),
    ("c", MetricKind::Counter),
    ("u", MetricKind::UpDownCounter),
    ("h", MetricKind::Histogram),
];

fn point() -> impl Strategy<Value = P> {
    (
        0..SERIES.len(),
        any::<bool>(),
        1u64..3,
        any::<bool>(),
        prop_oneof![Just(0u64), Just(T0 - 100 * SEC), Just(T0 - 50 * SEC)],
        0u64..80,
        0u64..20,
        [0u64..5, 0u64..5, 0u64..5],
    )
        .prop_map(
            |(series, host, origin, cumulative, start, time_s, value, buckets)| P {
                series,
                host,
                origin,
                cumulative,
                start,
                time_s,
                value,
                buckets,
            },
        )
}

fn steps() -> impl Strategy<Value = Vec<Step>> {
    proptest::collection::vec(
        prop_oneof![
            8 => point().prop_map(Step::Point),
            1 => (1u64..15).prop_map(|s| Step::Advance(s * SEC)),
        ],
        1..120,
    )
}

/// The model's view of one (window, series).
#[derive(Debug, Clone, Default, PartialEq)]
struct W {
    count: f64,
    sum: f64,
    min: Option<f64>,
    max: Option<f64>,
    last: Option<(u64, f64)>,
    buckets: Vec<u64>,
}

#[derive(Debug, Clone)]
struct Prev {
    start: u64,
    time: u64,
    value: f64,
    buckets: [u64; 3],
}

fn naive(steps: &[Step]) -> BTreeMap<(u64, String), W> {
    let mut out: BTreeMap<(u64, String), W> = BTreeMap::new();
    let mut streams: HashMap<(String, u64), Prev> = HashMap::new();
    let mut wm = 0u64;
    for s in steps {
        let p = match s {
            Step::Advance(d) => {
                wm = if wm == 0 { T0 + d } else { wm + d };
                continue;
            }
            Step::Point(p) => p,
        };
        let (name, kind) = SERIES[p.series];
        let series = format!("{name}/{}", if p.host { "a" } else { "b" });
        let time = T0 + p.time_s * SEC;
        let v = p.value as f64;
        let start_w = time - time % WINDOW;
        let purged = start_w + WINDOW + LATENESS <= wm;
        // What the point adds: (counted value, last) or histogram delta.
        enum C {
            Num(Option<f64>, f64),
            Hist(u64, f64, [u64; 3]),
        }
        let cumulative = p.cumulative && kind != MetricKind::Gauge;
        let c = if !cumulative {
            match kind {
                MetricKind::Histogram => Some(C::Hist(p.buckets.iter().sum(), v, p.buckets)),
                _ => Some(C::Num(Some(v), v)),
            }
        } else {
            let key = (series.clone(), p.origin);
            match streams.get(&key).cloned() {
                None => {
                    streams.insert(
                        key,
                        Prev {
                            start: p.start,
                            time,
                            value: v,
                            buckets: p.buckets,
                        },
                    );
                    match (kind, p.start != 0) {
                        (MetricKind::Histogram, true) => {
                            Some(C::Hist(p.buckets.iter().sum(), v, p.buckets))
                        }
                        (MetricKind::Histogram, false) => None,
                        (_, true) => Some(C::Num(Some(v), v)),
                        (_, false) => Some(C::Num(None, v)),
                    }
                }
                Some(prev) if time <= prev.time => None,
                Some(prev) => {
                    let restarted = p.start != 0 && prev.start != 0 && p.start != prev.start;
                    let count: u64 = p.buckets.iter().sum();
                    let pcount: u64 = prev.buckets.iter().sum();
                    let reset = restarted
                        || match kind {
                            MetricKind::Counter => v < prev.value,
                            MetricKind::Histogram => {
                                count < pcount
                                    || p.buckets.iter().zip(prev.buckets).any(|(a, b)| *a < b)
                            }
                            _ => false,
                        };
                    streams.insert(
                        key,
                        Prev {
                            start: if p.start != 0 { p.start } else { prev.start },
                            time,
                            value: v,
                            buckets: p.buckets,
                        },
                    );
                    Some(match (kind, reset) {
                        (MetricKind::Histogram, true) => C::Hist(count, v, p.buckets),
                        (MetricKind::Histogram, false) => {
                            let d: [u64; 3] =
                                std::array::from_fn(|i| p.buckets[i] - prev.buckets[i]);
                            C::Hist(count - pcount, v - prev.value, d)
                        }
                        (_, true) => C::Num(Some(v), v),
                        (_, false) => C::Num(Some(v - prev.value), v),
                    })
                }
            }
        };
        let Some(c) = c else { continue };
        if purged {
            continue;
        }
        let w = out.entry((start_w, series)).or_default();
        match c {
            C::Num(counted, last) => {
                if let Some(x) = counted {
                    w.count += 1.0;
                    w.sum += x;
                    w.min = Some(w.min.map_or(x, |m| m.min(x)));
                    w.max = Some(w.max.map_or(x, |m| m.max(x)));
                }
                if w.last.is_none_or(|(t, _)| time >= t) {
                    w.last = Some((time, last));
                }
            }
            C::Hist(count, sum, b) => {
                w.count += count as f64;
                w.sum += sum;
                if w.buckets.is_empty() {
                    w.buckets = b.to_vec();
                } else {
                    for (x, y) in w.buckets.iter_mut().zip(b) {
                        *x += y;
                    }
                }
            }
        }
    }
    out
}

fn run(steps: &[Step]) -> BTreeMap<(u64, String), W> {
    let mut cfg = SpanSections::default();
    cfg.windows.size = Duration::from_nanos(WINDOW);
    cfg.windows.allowed_lateness = Duration::from_nanos(LATENESS);
    cfg.windows.rollups = vec![];
    let rows = Arc::new(Rows::default());
    let reg = Registry::new();
    let mut op = MetricsOperator::new(&cfg.windows, &cfg.red, vec![rows.clone()], &reg);
    let mut wm = 0u64;
    for s in steps {
        match s {
            Step::Advance(d) => {
                wm = if wm == 0 { T0 + d } else { wm + d };
                op.advance(wm);
            }
            Step::Point(p) => {
                let (name, kind) = SERIES[p.series];
                let host = if p.host { "a" } else { "b" };
                let attrs = [("host", host)];
                let cumulative = p.cumulative && kind != MetricKind::Gauge;
                let temporality = match (kind, cumulative) {
                    (MetricKind::Gauge, _) => Temporality::Unspecified,
                    (_, true) => Temporality::Cumulative,
                    (_, false) => Temporality::Delta,
                };
                let value = match kind {
                    MetricKind::Histogram => ValueSpec::Histogram {
                        count: p.buckets.iter().sum(),
                        sum: Some(p.value as f64),
                        min: None,
                        max: None,
                        bounds: &BOUNDS,
                        counts: &p.buckets,
                    },
                    _ => ValueSpec::Number(p.value as f64),
                };
                let mut b = MetricBatch::new(SourceId(0), Bytes::new());
                b.push_point(&PointSpec {
                    service: Some("svc"),
                    origin: p.origin,
                    name,
                    unit: "1",
                    kind,
                    temporality,
                    start: p.start,
                    time: T0 + p.time_s * SEC,
                    attrs: &attrs,
                    value,
                })
                .unwrap();
                op.process_metrics(&b, 0);
            }
        }
    }
    op.advance(u64::MAX / 2);
    let mut out = BTreeMap::new();
    for r in rows.0.lock().unwrap().iter() {
        let host = r.series.attrs.first().map(|(_, v)| v.to_string()).unwrap();
        let t = &r.total;
        let hist = r.series.kind == MetricKind::Histogram;
        out.insert(
            (r.start, format!("{}/{host}", r.series.name)),
            W {
                count: t.count,
                sum: t.sum,
                min: if hist { None } else { t.min_value() },
                max: if hist { None } else { t.max_value() },
                last: (!hist && t.last_time > 0).then_some((t.last_time, t.last)),
                buckets: t.histogram().map(|h| h.counts.clone()).unwrap_or_default(),
            },
        );
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn metric_windows_equal_the_naive_model(steps in steps()) {
        let got = run(&steps);
        let want = naive(&steps);
        prop_assert_eq!(got, want);
    }
}
