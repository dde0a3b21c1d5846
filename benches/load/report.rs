//! The orchestrator's output: a Markdown table, the targets' verdicts and the one
//! machine-readable `RESULT otlp_load` line the scripts grep (keep its words stable).

use super::measure::RunFigures;
use super::orchestrate::Machine;
use super::probe::EngineFigures;
use super::{Args, Mode, Plan};
use std::path::PathBuf;

/// What the run ended with: the load phase's figures, the final scrape and the server's end.
pub(crate) struct Outcome {
    pub(crate) run: RunFigures,
    pub(crate) fin: EngineFigures,
    pub(crate) alive: bool,
    pub(crate) exit: String,
    pub(crate) warn_lines: u64,
    pub(crate) error_lines: u64,
    pub(crate) log: PathBuf,
}

/// Parses `key=value` words of the first line starting with `prefix`.
pub(crate) fn result_fields(out: &str, prefix: &str) -> Option<Vec<(String, String)>> {
    let line = out.lines().find(|l| l.starts_with(prefix))?;
    Some(
        line.split_whitespace()
            .filter_map(|w| w.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    )
}

fn field(fields: &[(String, String)], key: &str) -> f64 {
    fields
        .iter()
        .find(|(k, _)| k == key)
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0.0)
}

/// Prints the table, the verdicts and the `RESULT` line; `base` holds the baseline child's
/// `RESULT` fields (throughput mode).
pub(crate) fn print(
    args: &Args,
    plan: &Plan,
    machine: &Machine,
    base: Option<&[(String, String)]>,
    out: &Outcome,
) {
    eprintln!();
    print_heading(args, plan, machine, &out.run);
    print_throughput_rows(base, &out.run);
    print_server_rows(args, out);
    println!();
    let result = result_line(args, base, out);
    print_targets(args, base, out);
    println!("{result}");
    let (run, fin) = (&out.run, &out.fin);
    let clean = fin.late_dropped == 0.0 && run.errors == 0 && out.alive;
    if !clean {
        println!("WARNING: the engine dropped, rejected or failed under load (see the table); server log {}", out.log.display());
    }
}

/// The title, the run's shape and the table's head.
fn print_heading(args: &Args, plan: &Plan, machine: &Machine, run: &RunFigures) {
    let gen = &run.gen;
    println!(
        "## otlp_load {:?} — {}, {} × {}",
        args.mode, machine.date, machine.cores, machine.cpu
    );
    println!(
        "payloads: {} requests × 500 spans, {:.1} B/span, {} services × {} ops = {} series; {} in flight over {} connection(s), {}; {:.0} s window after {:.0} s warmup{}",
        plan.requests,
        gen.bytes_per_span,
        plan.shape.services,
        plan.shape.ops_per_service,
        gen.series,
        args.concurrency,
        if args.connections == 0 { args.concurrency } else { args.connections },
        if args.gzip { "gzip (timestamps fixed)" } else { "uncompressed (timestamps moved to now per request)" },
        plan.secs,
        args.warmup,
        if plan.rate > 0.0 { format!(", offered {} spans/s", si(plan.rate)) } else { String::new() },
    );
    println!(
        "transport: {}",
        if args.tls {
            "TLS 1.3 (rustls) + bearer token on the receiver"
        } else {
            "plaintext, no auth"
        }
    );
    println!();
    println!("| figure | value |");
    println!("|---|---:|");
}

/// The decoder baselines (if measured) and the end-to-end rate against them.
fn print_throughput_rows(base: Option<&[(String, String)]>, run: &RunFigures) {
    let e2e = run.spans_per_s;
    if let Some(b) = base {
        let (prost, scan, scan_red) = (field(b, "prost"), field(b, "scan"), field(b, "scan_red"));
        println!(
            "| prost decode baseline, 1 pinned core | {} spans/s (1.00×) |",
            si(prost)
        );
        println!(
            "| baseline thread's share of its core | {:.0}% |",
            100.0 * field(b, "cpu_share")
        );
        println!(
            "| scan decode, 1 pinned core | {} spans/s ({:.2}×) |",
            si(scan),
            scan / prost
        );
        println!(
            "| scan decode + RED aggregate, 1 pinned core | {} spans/s ({:.2}×) |",
            si(scan_red),
            scan_red / prost
        );
        println!(
            "| **end-to-end accepted, server on 1 pinned core** | **{} spans/s ({:.2}× prost)** |",
            si(e2e),
            e2e / prost
        );
    } else {
        println!(
            "| end-to-end accepted, server on 1 pinned core | {} spans/s |",
            si(e2e)
        );
    }
}

/// The server's CPU, errors, latency, engine figures, memory and end.
fn print_server_rows(args: &Args, out: &Outcome) {
    let (run, fin) = (&out.run, &out.fin);
    println!("| server CPU | {:.0}% of one core |", run.server_cpu_pct);
    println!(
        "| spans per server CPU-second | {} |",
        si(run.spans_per_cpu_s)
    );
    println!(
        "| gRPC errors / rejected spans (partial success) | {} ({}) / {} |",
        run.errors, run.error_codes, run.rejected
    );
    println!(
        "| latency p50 / p99 / max | {:.1} / {:.1} / {:.1} ms |",
        run.p50, run.p99, run.max
    );
    println!(
        "| server-side accepted in window (`redwatch_spans_accepted_total` delta) | {} spans/s |",
        si(run.server_accepted_per_s)
    );
    println!(
        "| `redwatch_late_dropped_total` / spans rejected / requests rejected | {} / {} / {} |",
        fin.late_dropped, fin.rejected, fin.requests_rejected
    );
    println!(
        "| active series / `window_state_bytes{{red}}` / bytes per series | {} / {} / {:.0} B |",
        fin.active_series,
        fin.state_bytes,
        fin.bytes_per_series()
    );
    if args.mode == Mode::State {
        println!(
            "| bytes per series, max over the last half of the run | {:.0} B ({} samples) |",
            run.max_bytes_per_series_late, run.samples
        );
        println!(
            "| state entries per series | {:.1} |",
            fin.state_entries / fin.active_series.max(1.0)
        );
        println!("| overflow spans | {} |", fin.overflow_spans);
    }
    println!(
        "| server RSS end / peak | {:.0} / {:.0} MiB |",
        run.rss_kib as f64 / 1024.0,
        run.hwm_kib as f64 / 1024.0
    );
    println!(
        "| other load on the server core | {:.1}% |",
        run.other_load_pct
    );
    println!(
        "| client (this process) CPU | {:.0}% of one core |",
        run.client_cpu_pct
    );
    println!(
        "| server alive after load / exit after SIGTERM / log WARN, ERROR lines | {} / {} / {}, {} |",
        out.alive, out.exit, out.warn_lines, out.error_lines
    );
}

/// The `RESULT otlp_load` line (benches/*.sh grep it).
fn result_line(args: &Args, base: Option<&[(String, String)]>, out: &Outcome) -> String {
    let (run, fin) = (&out.run, &out.fin);
    let (e2e, warn_lines, error_lines) = (run.spans_per_s, out.warn_lines, out.error_lines);
    let mut result = format!(
        "RESULT otlp_load mode={:?} gzip={} tls={} spans_per_s={e2e:.0} server_cpu_pct={:.1} spans_per_cpu_s={:.0} errors={} rejected={} p50_ms={:.2} p99_ms={:.2} late_dropped={} active_series={} state_bytes={} bytes_per_series={:.0} rss_kib={} hwm_kib={} other_load_pct={:.1} warn_lines={warn_lines} error_lines={error_lines}",
        args.mode, args.gzip, args.tls, run.server_cpu_pct, run.spans_per_cpu_s, run.errors, run.rejected, run.p50, run.p99,
        fin.late_dropped, fin.active_series, fin.state_bytes, fin.bytes_per_series(), run.rss_kib, run.hwm_kib, run.other_load_pct
    );
    if let Some(b) = base {
        let prost = field(b, "prost");
        result.push_str(&format!(
            " prost={prost:.0} scan={:.0} scan_red={:.0} ratio={:.3}",
            field(b, "scan"),
            field(b, "scan_red"),
            e2e / prost
        ));
    }
    result
}

/// The verdicts on the targets: throughput against prost, state per series.
fn print_targets(args: &Args, base: Option<&[(String, String)]>, out: &Outcome) {
    let (run, fin) = (&out.run, &out.fin);
    let e2e = run.spans_per_s;
    if let Some(b) = base {
        let prost = field(b, "prost");
        println!(
            "targets: end-to-end ≥ 0.60× prost decode: {} ({:.2}×); ≥ 350k spans/s per core: {} ({} spans/s, {} per server CPU-s)",
            verdict(e2e / prost >= 0.60),
            e2e / prost,
            verdict(e2e >= 350_000.0 && run.spans_per_cpu_s >= 350_000.0),
            si(e2e),
            si(run.spans_per_cpu_s)
        );
    }
    if args.mode == Mode::State {
        println!(
            "target: ≤ 2 KiB of window state per active series: {} ({:.0} B at the end, {:.0} B max over the last half)",
            verdict(fin.bytes_per_series() <= 2048.0 && run.max_bytes_per_series_late <= 2048.0),
            fin.bytes_per_series(),
            run.max_bytes_per_series_late
        );
    }
}

fn verdict(ok: bool) -> &'static str {
    if ok {
        "MET"
    } else {
        "MISSED"
    }
}

fn si(v: f64) -> String {
    if v >= 1e6 {
        format!("{:.2}M", v / 1e6)
    } else if v >= 1e3 {
        format!("{:.0}k", v / 1e3)
    } else {
        format!("{v:.0}")
    }
}
