//! Ingest rate with and without anomaly detection on ~100k series, same run, one thread — the
//! throughput acceptance of the anomaly issue: "running all detectors on 100k series must not
//! drop ingest below 80% of the foundation's rate".
//!
//! `cargo bench --bench detector_ingest -- [--secs 60] [--services 500] [--ops 240]`
//!
//! Each phase runs the operator task's work as the server does it, on this thread: decode OTLP
//! requests (the generated payloads of `otlp_load`), stamp the spans with the wall clock, add
//! them to the RED windows (`RedOperator`, default 10 s windows) and advance the watermark every
//! 50 ms, so each window closes on time with every series in it. Phases:
//! 1. `red`: RED only — the foundation's per-span work (no sinks at all: the Prometheus, table
//!    and view sinks cost the same with and without detectors, leaving them out makes the
//!    ratio conservative);
//! 2. `red+detectors`: the same plus the server's anomaly operator (`AnomalyOperator`, default
//!    `anomaly:` and `forecast:` config: every detector and forecaster on every closed window of
//!    every series, the anomalies/predictions tables subscribed to its stream, no OTLP
//!    destination);
//! 3. `red` again (machine drift check).
//!
//! Each phase first runs untimed until one window has closed and another has passed (series and
//! detector state are created at the first close), then measures `--secs` of wall clock. Prints a table and a `RESULT` line with the ratio of phase 2
//! to the mean of phases 1 and 3.

mod args;
mod payload;

use args::flag;
use redwatch::config::Config;
use redwatch_connectors::otlp::decode::{decode_traces_proto, DecodeSettings};
use redwatch_engine::model::SourceId;
use redwatch_engine::telemetry::Registry;
use redwatch_engine::time::{wall_clock, TimePolicy};
use redwatch_operators::anomaly::{AnomalyOperator, SignalStream};
use redwatch_operators::red::{RedOperator, RedSink};
use redwatch_queries::anomalies::{AnomaliesTable, PredictionsTable, SignalTableSettings};
use std::sync::Arc;
use std::time::{Duration, Instant};

struct Args {
    secs: f64,
    services: usize,
    ops: usize,
    requests: usize,
}

fn args() -> Args {
    // Counts accept any number (`--services 5e2`) and are truncated.
    let count = |name: &str, default: usize| flag::<f64>(name).map_or(default, |v| v as usize);
    Args {
        secs: flag("--secs").unwrap_or(60.0),
        services: count("--services", 500),
        ops: count("--ops", 240),
        requests: count("--requests", 1000),
    }
}

fn config() -> Config {
    let mut cfg = Config::default();
    cfg.red.cardinality_limit = 1_000_000;
    cfg
}

/// What one phase measured.
struct Phase {
    spans_per_s: f64,
    spans: usize,
    secs: f64,
    /// Wall time inside `advance` (window closes: the sinks' work).
    advance_secs: f64,
    windows_closed: u64,
    series: f64,
    cpu_share: f64,
}

fn cpu_secs() -> f64 {
    // utime + stime of this process, in clock ticks (fields 14 and 15 of /proc/self/stat).
    let Ok(s) = std::fs::read_to_string("/proc/self/stat") else {
        return 0.0;
    };
    let Some(rest) = s.rsplit(')').next() else {
        return 0.0;
    };
    let f: Vec<&str> = rest.split_whitespace().collect();
    let t = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (t(11) + t(12)) / 100.0
}

fn run_phase(set: &payload::PayloadSet, secs: f64, detectors: bool) -> Phase {
    let cfg = config();
    let registry = Registry::new();
    let sinks: Vec<Arc<dyn RedSink>> = if detectors {
        let tables = SignalTableSettings::default();
        let stream = SignalStream::new();
        stream.subscribe(AnomaliesTable::new(tables));
        stream.subscribe(PredictionsTable::new(tables));
        vec![AnomalyOperator::new(
            &cfg.anomaly,
            &cfg.forecast,
            &cfg.red,
            stream,
            &registry,
        )]
    } else {
        Vec::new()
    };
    let mut op = RedOperator::new(&cfg.windows, &cfg.red, sinks, &registry);
    let policy = TimePolicy::new(&cfg.windows);
    let settings = DecodeSettings::default();
    let window_ns = cfg.windows.size.as_nanos() as u64;
    // Spans end up to 5 s before "now" (the payloads' spread): the watermark trails by 6 s.
    let lag_ns = 6_000_000_000u64;
    let mut spans = 0usize;
    let mut advance = Duration::ZERO;
    let mut closed = 0u64;
    let mut last_wm_window = 0u64;
    let mut last_advance = Instant::now();
    let mut measure_from: Option<(Instant, f64, usize, Duration, u64)> = None;
    // Untimed: the first window close (series and detector state are created then) and one
    // more window.
    let warm_until = Instant::now() + Duration::from_nanos(2 * window_ns + lag_ns);
    let mut end: Option<Instant> = None;
    'outer: loop {
        for p in &set.payloads {
            let now = wall_clock();
            let Ok(mut o) =
                decode_traces_proto(p.bytes.clone(), SourceId(0), &settings, &policy, now)
            else {
                continue;
            };
            let d = now.saturating_sub(set.now_ns);
            for s in o.batch.spans.iter_mut() {
                s.start += d;
                s.end += d;
            }
            op.process_spans(&o.batch, now);
            spans += o.batch.len();
            if last_advance.elapsed() >= Duration::from_millis(50) {
                let wm = wall_clock().saturating_sub(lag_ns);
                let t0 = Instant::now();
                op.advance(wm);
                advance += t0.elapsed();
                last_advance = Instant::now();
                let w = wm / window_ns;
                if w > last_wm_window {
                    if last_wm_window > 0 {
                        closed += w - last_wm_window;
                    }
                    last_wm_window = w;
                }
            }
            let t = Instant::now();
            match (measure_from, end) {
                (None, _) if t >= warm_until => {
                    measure_from = Some((t, cpu_secs(), spans, advance, closed));
                    end = Some(t + Duration::from_secs_f64(secs));
                }
                (Some(_), Some(e)) if t >= e => break 'outer,
                _ => {}
            }
        }
    }
    let (t0, cpu0, spans0, adv0, closed0) = measure_from.expect("measured");
    let dt = t0.elapsed().as_secs_f64();
    Phase {
        spans_per_s: (spans - spans0) as f64 / dt,
        spans: spans - spans0,
        secs: dt,
        advance_secs: (advance - adv0).as_secs_f64(),
        windows_closed: closed - closed0,
        series: registry.total("redwatch_red_series_created_total"),
        cpu_share: (cpu_secs() - cpu0) / dt,
    }
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

fn main() {
    let a = args();
    let shape = payload::PayloadShape {
        services: a.services,
        ops_per_service: a.ops,
        ..Default::default()
    };
    let set = payload::generate(&shape, a.requests, wall_clock());
    eprintln!(
        "detector_ingest: {} requests, {} spans, up to {} series; {} s per phase; load {}",
        set.payloads.len(),
        set.spans,
        set.series,
        a.secs,
        loadavg()
    );
    let mut rows = Vec::new();
    for (name, det) in [("red", false), ("red+detectors", true), ("red", false)] {
        eprintln!("phase {name} ...");
        let p = run_phase(&set, a.secs, det);
        eprintln!(
            "  {:.0} spans/s, {} windows closed, {:.0} series, {:.2} s in window closes, cpu share {:.2}, load {}",
            p.spans_per_s,
            p.windows_closed,
            p.series,
            p.advance_secs,
            p.cpu_share,
            loadavg()
        );
        rows.push((name, p));
    }
    let base = (rows[0].1.spans_per_s + rows[2].1.spans_per_s) / 2.0;
    let with = rows[1].1.spans_per_s;
    println!("| phase | spans/s | spans | secs | windows closed | series | s in window closes | cpu share |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    for (name, p) in &rows {
        println!(
            "| {name} | {:.0} | {} | {:.1} | {} | {:.0} | {:.2} | {:.2} |",
            p.spans_per_s, p.spans, p.secs, p.windows_closed, p.series, p.advance_secs, p.cpu_share
        );
    }
    println!(
        "RESULT detector_ingest ratio={:.3} red_spans_per_s={base:.0} with_detectors_spans_per_s={with:.0} series={:.0} loadavg=\"{}\"",
        with / base,
        rows[1].1.series,
        loadavg()
    );
}
