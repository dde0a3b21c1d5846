//! The single-threaded phases the orchestrator runs in pinned children: the decoder baseline
//! (prost, scanner, scanner + RED) and the profile loop for callgrind/perf.

use super::{payload, probe, Args};
use redwatch::config::Config;
use redwatch_connectors::otlp::decode::{decode_traces_proto, DecodeSettings};
use redwatch_engine::model::SourceId;
use redwatch_engine::telemetry::Registry;
use redwatch_engine::time::{wall_clock, TimePolicy};
use redwatch_operators::red::RedOperator;
use std::time::{Duration, Instant};

fn red_config(lateness: Duration) -> Config {
    let mut cfg = Config::default();
    cfg.windows.max_out_of_orderness = lateness;
    cfg.windows.allowed_lateness = lateness;
    cfg.red.cardinality_limit = 20_000;
    cfg
}

/// Runs `f` over the payloads for `secs`; returns spans/s.
fn rate_of(set: &payload::PayloadSet, secs: f64, mut f: impl FnMut(&payload::Payload)) -> f64 {
    // One untimed pass: page faults, caches, series creation.
    set.payloads.iter().for_each(&mut f);
    let t0 = Instant::now();
    let mut spans = 0usize;
    'outer: loop {
        for p in &set.payloads {
            f(p);
            spans += p.spans;
            if t0.elapsed().as_secs_f64() >= secs {
                break 'outer;
            }
        }
    }
    spans as f64 / t0.elapsed().as_secs_f64()
}

pub(crate) fn baseline(args: &Args) -> anyhow::Result<()> {
    let plan = args.plan();
    let now = wall_clock();
    let set = payload::generate(&plan.shape, plan.requests, now);
    let cfg = red_config(Duration::from_secs(3600));
    let policy = TimePolicy::new(&cfg.windows);
    let settings = DecodeSettings::default();
    let secs = args.baseline_secs;
    let (wall0, cpu0) = (
        Instant::now(),
        probe::cpu_secs(std::process::id()).unwrap_or(0.0),
    );
    let mut sink = 0u64;
    let prost = rate_of(&set, secs, |p| {
        sink ^= payload::prost_decode_touch(&p.bytes)
    });
    let scan = rate_of(&set, secs, |p| {
        if let Ok(o) = decode_traces_proto(p.bytes.clone(), SourceId(0), &settings, &policy, now) {
            sink ^= o.batch.len() as u64;
        }
    });
    let registry = Registry::new();
    let mut op = RedOperator::new(&cfg.windows, &cfg.red, Vec::new(), &registry);
    let scan_red = rate_of(&set, secs, |p| {
        if let Ok(o) = decode_traces_proto(p.bytes.clone(), SourceId(0), &settings, &policy, now) {
            op.process_spans(&o.batch, now);
        }
    });
    // Below ~100% this thread had to share its core with other work.
    let cpu_share =
        (probe::cpu_secs(std::process::id()).unwrap_or(0.0) - cpu0) / wall0.elapsed().as_secs_f64();
    println!(
        "RESULT baseline prost={prost:.0} scan={scan:.0} scan_red={scan_red:.0} cpu_share={cpu_share:.3} bytes_per_span={:.1} spans={} series={} sink={}",
        set.bytes_per_span(),
        set.spans,
        set.series,
        sink & 1
    );
    Ok(())
}

/// The scanner + RED loop alone, for `valgrind --tool=callgrind
/// --toggle-collect='*profile_loop*'` or `perf record`.
#[inline(never)]
fn profile_loop(
    set: &payload::PayloadSet,
    iters: usize,
    now: u64,
    mut op: Option<&mut RedOperator>,
) -> usize {
    let cfg = red_config(Duration::from_secs(3600));
    let policy = TimePolicy::new(&cfg.windows);
    let settings = DecodeSettings::default();
    let mut spans = 0;
    for _ in 0..iters {
        for p in &set.payloads {
            if let Ok(o) =
                decode_traces_proto(p.bytes.clone(), SourceId(0), &settings, &policy, now)
            {
                spans += o.batch.len();
                if let Some(op) = op.as_deref_mut() {
                    op.process_spans(&o.batch, now);
                }
            }
        }
    }
    spans
}

pub(crate) fn profile(args: &Args) -> anyhow::Result<()> {
    let plan = args.plan();
    let now = args.now_ns.unwrap_or_else(wall_clock);
    let set = payload::generate(&plan.shape, plan.requests, now);
    let registry = Registry::new();
    let cfg = red_config(Duration::from_secs(3600));
    let mut op = RedOperator::new(&cfg.windows, &cfg.red, Vec::new(), &registry);
    // Series creation happens in the first pass; outside `profile_loop`, so that callgrind's
    // `--toggle-collect` counts steady-state work only.
    let policy = TimePolicy::new(&cfg.windows);
    for p in &set.payloads {
        let o = decode_traces_proto(
            p.bytes.clone(),
            SourceId(0),
            &DecodeSettings::default(),
            &policy,
            now,
        )?;
        op.process_spans(&o.batch, now);
    }
    let t0 = Instant::now();
    let spans = profile_loop(
        &set,
        args.iters,
        now,
        (!args.decode_only).then_some(&mut op),
    );
    let dt = t0.elapsed().as_secs_f64();
    println!(
        "RESULT profile spans={spans} secs={dt:.3} spans_per_s={:.0} bytes_per_span={:.1}",
        spans as f64 / dt,
        set.bytes_per_span()
    );
    Ok(())
}

// ---- orchestration -----------------------------------------------------------------------------
