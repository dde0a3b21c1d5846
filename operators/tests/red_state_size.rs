//! Window state per active RED series in steady state, the in-process counterpart of
//! `otlp_load --mode state` (issue 3: ≤ 2 KiB per active series).
//!
//! Default windows (10 s + 1 m rollup, 5 s out-of-orderness, 30 s lateness), 10 spans/s per
//! series with log-normal durations per operation (as the load generator draws them), the
//! watermark following the newest event time. After the longest window plus lateness has
//! turned over, `snapshot().bytes` (what `redwatch_window_state_bytes{operator="red"}`
//! reports) divided by the active series is printed every 5 s and must stay within
//! [`REGRESSION_BOUND`].
//!
//! Where the bytes go at the worst moment (two open 10 s windows, three emitted ones waiting
//! for late data, the open and the previous 1 m rollup window): the newest open window's live
//! aggregates (inline aggregate ~224 B, compact sketch 4 B per key, compact bucket counts)
//! behind a small key → position index; every other window packed (~1 byte per sketch key,
//! durations as nanosecond varints) back to back in one arena per window — the previous open
//! window too once it takes no more updates; plus the series registry (~150 B). With spans
//! arriving out of order the previous window stays live until the watermark passes it (~2.2 KB
//! at the worst moment then).
//! The bound guards against regressions; BENCHMARKS.md has the figures.
//!
//! `REDWATCH_STATE_SERIES` (default 2 000; the benchmark uses 10 000) sets the series count.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, LogNormal};
use redwatch_engine::fixtures::{span_batch, SpanFixture};
use redwatch_engine::model::{SourceId, StatusCode};
use redwatch_engine::pipeline::Operator;
use redwatch_engine::telemetry::Registry;
use redwatch_operators::layout::SpanSections;
use redwatch_operators::red::RedOperator;

const S: u64 = 1_000_000_000;
const BASE: u64 = 1_700_000_000 * S;
const SPANS_PER_SERIES_PER_S: usize = 10;
/// The target itself (issue 3). Worst measured here at 2 000 series: 1.79 KB (10 000 series:
/// 1.75 KB worst, 1.46 KB best).
const REGRESSION_BOUND: f64 = 2048.0;

#[test]
fn state_per_active_series_stays_bounded() {
    let series: usize = std::env::var("REDWATCH_STATE_SERIES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2_000);
    let cfg = SpanSections::default();
    let ooo = cfg.windows.max_out_of_orderness.as_nanos() as u64;
    let mut op = RedOperator::new(&cfg.windows, &cfg.red, Vec::new(), &Registry::new());
    let mut rng = StdRng::seed_from_u64(3);
    let typical = [30.0, 12.0, 2.5, 0.5, 1.2, 8.0, 9.0, 5.0, 0.2];
    let ops: Vec<(String, String, LogNormal<f64>)> = (0..series)
        .map(|i| {
            let median = typical[i % typical.len()] * (rng.random::<f64>() * 2.0 - 1.0).exp();
            let sigma = 0.6 + 0.5 * rng.random::<f64>();
            let d = LogNormal::new(median.ln(), sigma).expect("valid parameters");
            (format!("svc-{}", i / 100), format!("op-{i}"), d)
        })
        .collect();
    let secs = 160u64;
    let mut per_series = Vec::new();
    for t in 0..secs {
        let mut spans = Vec::with_capacity(series * SPANS_PER_SERIES_PER_S);
        let mut newest = 0;
        for (service, name, d) in &ops {
            for _ in 0..SPANS_PER_SERIES_PER_S {
                let end = BASE + t * S + rng.random_range(0..S);
                newest = newest.max(end);
                let id: u64 = rng.random();
                let status = if rng.random::<f64>() < 0.02 {
                    StatusCode::Error
                } else {
                    StatusCode::Unset
                };
                spans.push(
                    SpanFixture::new(service, name, end, d.sample(&mut rng).min(30_000.0))
                        .status(status)
                        .ids([id as u8; 16], id.to_le_bytes(), [0; 8]),
                );
            }
        }
        for chunk in spans.chunks(4096) {
            op.process_spans(&span_batch(SourceId(0), 0, chunk), newest);
        }
        op.advance(newest - ooo);
        if t >= 100 && t % 5 == 0 {
            let s = op.snapshot();
            per_series.push(s.bytes as f64 / s.series as f64);
            println!(
                "t={t}s series={} entries={} ({:.1}/series) bytes={} ({:.0} B/series)",
                s.series,
                s.entries,
                s.entries as f64 / s.series as f64,
                s.bytes,
                s.bytes as f64 / s.series as f64
            );
        }
    }
    let worst = per_series.iter().copied().fold(0.0, f64::max);
    assert!(
        worst <= REGRESSION_BOUND,
        "{worst:.0} B of window state per active series (bound {REGRESSION_BOUND} B)"
    );
}
