//! Dashboard queries over a live `red` table: 10k series × 360 windows (1 h of 10 s windows,
//! plus the 1 m rollup rows), fed directly through the `RedTable` sink, queried with the
//! `QueryEngine` — alone and while a background thread keeps ingesting. Also the ingest rate of
//! the table with and without concurrent queries, and its memory per row.
//!
//! `cargo bench -p redwatch-queries --bench dashboard` (no criterion: it prints a report).
//! Knobs: `DASHBOARD_SERIES` (10000), `DASHBOARD_WINDOWS` (360), `DASHBOARD_RUNS` per query
//! (40, and at most `DASHBOARD_QUERY_BUDGET_S` = 20 s per query), `DASHBOARD_INGEST_S` (15).
//!
//! Method (see BENCHMARKS.md, "SQL over live windows"):
//! - The table is filled window by window like the RED operator does: one `on_final` call with
//!   every series' row of a 10 s window, one per 1 m rollup every 6 windows. Aggregates are drawn
//!   from a pool of 256 realistic ones (20–60 spans each, lognormal latency, ~1 % errors).
//! - "Ingest" = what the pipeline asks of the table per 10 s window: `on_final` (10k rows), the
//!   rollup `on_final` every 6th window, and one `on_provisional` (10k rows of the next, open
//!   window). The ingest rate is primary rows per second of time spent inside those calls, with
//!   the writer running back to back (full speed). Windows older than 1 h are dropped
//!   (retention), so the table stays at 360 windows.
//! - Query times are end-to-end `QueryEngine::execute` (plan, snapshot, execute, collect).
//!   Query literals are relative to the newest window (what `now()` would give).
//! - Panels are what a dashboard sends: aggregates over ranges of 15 min and more read the 1 m
//!   rollups (a Grafana-style step for long ranges); the same panels over 10 s windows are
//!   kept as diagnostic rows. The report starts with the per-row cost of the sketch merge
//!   behind `quantile_merge`, old and new paths side by side.

use redwatch_engine::model::{SpanKind, StatusCode, UnixNanos};
use redwatch_operators::red::{Buckets, RedAgg, RedRow, RedSink, SeriesKey};
use redwatch_queries::query::{QueryEngine, QueryLimits};
use redwatch_queries::red::{RedTable, RedTableSettings};
use redwatch_queries::Tables;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[path = "dashboard/feed.rs"]
mod feed;
#[path = "dashboard/panels.rs"]
mod panels;

use feed::*;
use panels::*;

const SEC: u64 = 1_000_000_000;
const WINDOW_NS: u64 = 10 * SEC;
const ROLLUP_NS: u64 = 60 * SEC;
/// 2026-01-01T00:00:00Z.
const BASE: UnixNanos = 1_767_225_600 * SEC;
const POOL: usize = 256;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn rss_bytes() -> usize {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<usize>().ok())
        .map_or(0, |pages| pages * 4096)
}

fn ts(ns: UnixNanos) -> String {
    let secs = (ns / SEC) as i64;
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "TIMESTAMP '{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z'",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

fn percentile(sorted: &[Duration], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    // Nearest rank.
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

fn ms(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64() * 1e3)
}

struct Latencies {
    p50: Duration,
    p99: Duration,
    max: Duration,
    runs: usize,
    rows: usize,
}

fn measure(
    rt: &tokio::runtime::Runtime,
    engine: &QueryEngine,
    q: &Query,
    newest: &AtomicU64,
    runs: usize,
    budget: Duration,
) -> Latencies {
    let mut times = Vec::new();
    let mut rows = 0;
    let started = Instant::now();
    // One warm-up run (caches the unsealed windows' batches, as a previous refresh would).
    let _ = rt.block_on(engine.execute(&(q.sql)(newest.load(Ordering::SeqCst))));
    while times.len() < runs && (times.len() < 5 || started.elapsed() < budget) {
        let sql = (q.sql)(newest.load(Ordering::SeqCst));
        let t = Instant::now();
        match rt.block_on(engine.execute(&sql)) {
            Ok(r) => rows = r.num_rows(),
            Err(e) => panic!("{}: {e}\n{sql}", q.name),
        }
        times.push(t.elapsed());
    }
    times.sort();
    Latencies {
        p50: percentile(&times, 0.5),
        p99: percentile(&times, 0.99),
        max: *times.last().unwrap_or(&Duration::ZERO),
        runs: times.len(),
        rows,
    }
}

/// Per-row cost of the sketch merge behind `quantile_merge`, three ways over the same rows
/// (the pool's sketches into 200 accumulators, as the per-service panels do), in one run so
/// they compare on a noisy machine: decode + merge, `merge_encoded` (the accumulators' path
/// until 2026-11-26), `absorb_encoded` (now: one pass into a dense accumulator).
fn sketch_merge_cost(pool: &[RedAgg]) {
    use redwatch_operators::red::sketch::QuantileSketch;
    let encoded: Vec<Vec<u8>> = pool.iter().map(|a| a.sketch.to_bytes()).collect();
    let rows = 400_000usize;
    let groups = 200usize;
    let run = |merge: &dyn Fn(&mut QuantileSketch, &[u8])| -> (f64, f64) {
        let mut best = f64::INFINITY;
        let mut check = 0.0;
        for _ in 0..3 {
            let mut acc = vec![QuantileSketch::new(); groups];
            let t = Instant::now();
            for i in 0..rows {
                merge(&mut acc[i % groups], &encoded[(i * 7) % encoded.len()]);
            }
            best = best.min(t.elapsed().as_nanos() as f64 / rows as f64);
            check = acc.iter().filter_map(|s| s.quantile(0.99)).sum::<f64>();
        }
        (best, check)
    };
    let (decode, a) = run(&|acc, b| acc.merge(&QuantileSketch::decode(b).expect("valid")));
    let (merge_encoded, b) = run(&|acc, b| acc.merge_encoded(b).expect("valid"));
    let (absorb, c) = run(&|acc, b| acc.absorb_encoded(b).expect("valid"));
    assert!(a == b && b == c, "the three merges disagree: {a} {b} {c}");
    println!(
        "- sketch merge per row ({rows} rows into {groups} groups, best of 3): decode + merge \
         {decode:.0} ns, merge_encoded {merge_encoded:.0} ns, absorb_encoded {absorb:.0} ns"
    );
}

/// Runs the feeder back to back on its own thread until `stop`; returns its cost and call times.
fn spawn_writer(
    feeder: Arc<Mutex<Feeder>>,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<(StepCost, Vec<Duration>, Duration)> {
    std::thread::spawn(move || {
        let mut cost = StepCost::default();
        let mut calls = Vec::new();
        let started = Instant::now();
        let mut f = feeder.lock().expect("feeder");
        while !stop.load(Ordering::SeqCst) {
            let (c, d) = f.step(true);
            cost.add(c);
            calls.extend(d);
        }
        (cost, calls, started.elapsed())
    })
}

fn main() {
    let n_series = env_usize("DASHBOARD_SERIES", 10_000);
    let n_windows = env_usize("DASHBOARD_WINDOWS", 360) as u64;
    let runs = env_usize("DASHBOARD_RUNS", 40);
    let budget = Duration::from_secs(env_usize("DASHBOARD_QUERY_BUDGET_S", 20) as u64);
    let ingest_for = Duration::from_secs(env_usize("DASHBOARD_INGEST_S", 15) as u64);
    let query_threads = redwatch_queries::query::query_threads();
    println!("# dashboard bench: {n_series} series × {n_windows} windows of 10 s (+ 1 m rollups)");
    println!(
        "query runtime: {query_threads} worker thread(s) of {} available",
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );

    let table = RedTable::new(RedTableSettings {
        dims: vec!["http.request.method".into()],
        lateness_ns: 30 * SEC,
        retention_ns: n_windows * WINDOW_NS,
        max_bytes: usize::MAX,
    });
    let newest = Arc::new(AtomicU64::new(BASE));
    let feeder = Arc::new(Mutex::new(Feeder {
        table: table.clone(),
        keys: series(n_series),
        pool: agg_pool(),
        primary: Arc::from("10s"),
        rollup: Arc::from("1m"),
        next_window: 0,
        newest_end: newest.clone(),
    }));

    // Fill.
    let rss0 = rss_bytes();
    let t = Instant::now();
    let mut fill = StepCost::default();
    {
        let mut f = feeder.lock().expect("feeder");
        for w in 0..n_windows {
            let last = w + 1 == n_windows;
            fill.add(f.step(last).0);
        }
    }
    let fill_wall = t.elapsed();
    let rss1 = rss_bytes();
    let tables = Tables {
        red: table.clone(),
        spans: Default::default(),
        continuous: Default::default(),
        anomalies: Default::default(),
        predictions: Default::default(),
    };
    let engine = QueryEngine::new(
        tables.providers(),
        QueryLimits {
            timeout: Duration::from_secs(60),
            memory_bytes: 2 << 30,
            max_rows: 1_000_000,
            shared_memory_bytes: 4 << 30,
            max_concurrent: 64,
            max_result_bytes: 1 << 30,
        },
    )
    .expect("query runtime");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let count = |sql: &str| -> f64 {
        let r = rt.block_on(engine.execute(sql)).expect("count query");
        let b = &r.batches[0];
        arrow::util::display::array_value_to_string(b.column(0), 0)
            .expect("value")
            .parse()
            .expect("number")
    };
    let total_rows = count("SELECT count(*) FROM red");
    let sealed_rows = total_rows
        - count(&format!(
            "SELECT count(*) FROM red WHERE NOT is_final OR window_end >= {}",
            ts(newest.load(Ordering::SeqCst) - 30 * SEC)
        ));
    let sealed_bytes = table.sealed_bytes();
    // Rows draw their aggregate uniformly from the pool: its average is the rows' average.
    let sketch_bytes = {
        let f = feeder.lock().expect("feeder");
        f.pool
            .iter()
            .map(|a| a.sketch.to_bytes().len())
            .sum::<usize>() as f64
            / f.pool.len() as f64
    };
    println!("\n## Fill");
    println!(
        "- {} rows ({} final windows held); filled in {:.1} s wall, {:.1} s inside the sink \
         ({:.0} primary rows/s)",
        total_rows,
        table.window_count(),
        fill_wall.as_secs_f64(),
        fill.total_ns() as f64 / 1e9,
        fill.rate()
    );
    println!(
        "- sealed batches: {:.1} MiB for {:.0} rows = {:.0} B/row (Arrow buffers); process RSS \
         grew {:.1} MiB = {:.0} B/row (all rows, allocator and unsealed state included)",
        sealed_bytes as f64 / (1 << 20) as f64,
        sealed_rows,
        sealed_bytes as f64 / sealed_rows.max(1.0),
        (rss1.saturating_sub(rss0)) as f64 / (1 << 20) as f64,
        (rss1.saturating_sub(rss0)) as f64 / total_rows.max(1.0)
    );
    println!("- duration_sketch values average {sketch_bytes:.0} B");
    sketch_merge_cost(&feeder.lock().expect("feeder").pool);
    // How long a query's snapshot holds the table lock (the writer waits that long at most).
    {
        use redwatch_queries::table::{PartitionSource, PruneFilter};
        let all = PruneFilter::default();
        let _ = table.snapshot(&all);
        let t = Instant::now();
        let n = table.snapshot(&all).len();
        let cached = t.elapsed();
        let mut rebuilt = Duration::ZERO;
        for _ in 0..5 {
            feeder.lock().expect("feeder").step(true);
            let t = Instant::now();
            let _ = table.snapshot(&all);
            rebuilt = rebuilt.max(t.elapsed());
        }
        println!(
            "- snapshot of the whole table ({n} batches) under the table lock: {} ms with every \
             batch cached; up to {} ms right after an on_final (rebuilds the unsealed windows' batches)",
            ms(cached),
            ms(rebuilt)
        );
    }

    // Ingest alone.
    let stop = Arc::new(AtomicBool::new(false));
    let writer = spawn_writer(feeder.clone(), stop.clone());
    let deadline = Instant::now() + ingest_for;
    while Instant::now() < deadline {
        std::thread::park_timeout(deadline - Instant::now());
    }
    stop.store(true, Ordering::SeqCst);
    let (alone, mut alone_calls, alone_wall) = writer.join().expect("writer");
    alone_calls.sort();

    // Queries alone.
    let qs = queries();
    println!("\n## Query latency, no ingest (ms; end-to-end QueryEngine::execute)");
    println!("| query | rows | runs | p50 | p99 | max |");
    println!("|---|---:|---:|---:|---:|---:|");
    let mut quiet = Vec::new();
    for q in &qs {
        let l = measure(&rt, &engine, q, &newest, runs, budget);
        println!(
            "| {} | {} | {} | {} | {} | {} |",
            q.name,
            l.rows,
            l.runs,
            ms(l.p50),
            ms(l.p99),
            ms(l.max)
        );
        quiet.push(l);
    }

    // Queries while ingesting at full speed.
    let stop = Arc::new(AtomicBool::new(false));
    let writer = spawn_writer(feeder.clone(), stop.clone());
    println!("\n## Query latency while a writer ingests back to back (ms)");
    println!("| query | rows | runs | p50 | p99 | max | p99 vs no ingest |");
    println!("|---|---:|---:|---:|---:|---:|---:|");
    for (q, base) in qs.iter().zip(&quiet) {
        let l = measure(&rt, &engine, q, &newest, runs, budget);
        println!(
            "| {} | {} | {} | {} | {} | {} | {:.2}× |",
            q.name,
            l.rows,
            l.runs,
            ms(l.p50),
            ms(l.p99),
            ms(l.max),
            l.p99.as_secs_f64() / base.p99.as_secs_f64().max(1e-9)
        );
    }
    stop.store(true, Ordering::SeqCst);
    let (busy, mut busy_calls, busy_wall) = writer.join().expect("writer");
    busy_calls.sort();

    // A dashboard's refresh cadence: the panels every 2 s, while ingesting.
    let panels = qs.iter().filter(|q| q.panel).count();
    let stop = Arc::new(AtomicBool::new(false));
    let writer = spawn_writer(feeder.clone(), stop.clone());
    let deadline = Instant::now() + ingest_for;
    let mut refreshes = 0;
    while Instant::now() < deadline {
        let next = Instant::now() + Duration::from_secs(2);
        for q in qs.iter().filter(|q| q.panel) {
            let sql = (q.sql)(newest.load(Ordering::SeqCst));
            rt.block_on(engine.execute(&sql)).expect("dashboard query");
        }
        refreshes += 1;
        while Instant::now() < next {
            std::thread::park_timeout(next - Instant::now());
        }
    }
    stop.store(true, Ordering::SeqCst);
    let (paced, mut paced_calls, paced_wall) = writer.join().expect("writer");
    paced_calls.sort();

    // Control: the same CPU competition as the query runtime's busy workers, no queries.
    let stop = Arc::new(AtomicBool::new(false));
    let spin_stop = Arc::new(AtomicBool::new(false));
    let spinners: Vec<_> = (0..query_threads)
        .map(|_| {
            let spin_stop = spin_stop.clone();
            std::thread::spawn(move || {
                let mut x = 0u64;
                while !spin_stop.load(Ordering::Relaxed) {
                    for i in 0..10_000u64 {
                        x = std::hint::black_box(
                            x.wrapping_mul(6364136223846793005).wrapping_add(i),
                        );
                    }
                }
                x
            })
        })
        .collect();
    let writer = spawn_writer(feeder.clone(), stop.clone());
    let deadline = Instant::now() + ingest_for;
    while Instant::now() < deadline {
        std::thread::park_timeout(deadline - Instant::now());
    }
    stop.store(true, Ordering::SeqCst);
    let (spun, mut spun_calls, spun_wall) = writer.join().expect("writer");
    spun_calls.sort();
    spin_stop.store(true, Ordering::Relaxed);
    for s in spinners {
        let _ = s.join();
    }

    println!("\n## Ingest into the red table (primary rows/s of time inside the sink calls)");
    println!(
        "| condition | windows | wall s | rows/s | vs alone | sink call p50 ms | p99 ms | max ms |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    let paced_name = format!("dashboard: {panels} panels every 2 s");
    for (name, c, calls, wall) in [
        ("alone", &alone, &alone_calls, alone_wall),
        (
            "queries back to back (1 client)",
            &busy,
            &busy_calls,
            busy_wall,
        ),
        (paced_name.as_str(), &paced, &paced_calls, paced_wall),
        (
            "control: spinning threads (as many as query workers), no queries",
            &spun,
            &spun_calls,
            spun_wall,
        ),
    ] {
        println!(
            "| {name} | {} | {:.1} | {:.0} | {:.2} | {} | {} | {} |",
            c.primary_rows / n_series.max(1) as u64,
            wall.as_secs_f64(),
            c.rate(),
            c.rate() / alone.rate(),
            ms(percentile(calls, 0.5)),
            ms(percentile(calls, 0.99)),
            ms(*calls.last().unwrap_or(&Duration::ZERO)),
        );
    }
    println!(
        "\nsink time split (alone): on_final {:.0} %, rollup on_final {:.0} %, on_provisional {:.0} %; \
         {refreshes} dashboard refreshes",
        alone.final_ns as f64 * 100.0 / alone.total_ns() as f64,
        alone.rollup_ns as f64 * 100.0 / alone.total_ns() as f64,
        alone.provisional_ns as f64 * 100.0 / alone.total_ns() as f64,
    );
    println!(
        "wall-clock throughput (windows/s incl. building the rows): alone {:.2}, back-to-back queries {:.2}, dashboard {:.2}",
        alone.primary_rows as f64 / n_series as f64 / alone_wall.as_secs_f64(),
        busy.primary_rows as f64 / n_series as f64 / busy_wall.as_secs_f64(),
        paced.primary_rows as f64 / n_series as f64 / paced_wall.as_secs_f64(),
    );
}
