//! Service graph operator throughput (spans/s) on a realistic multi-service trace mix, and the
//! state it keeps per pending (waiting) span.
//!
//! `cargo bench --bench servicegraph` (short check: `-- --warm-up-time 1 --measurement-time 3`)
//!
//! The mix, per trace, over 12 services: a root SERVER span (an edge from `user`), a chain of
//! 3–5 CLIENT→SERVER hops, a database CLIENT span (`db.system`, `db.name`: an edge at once), two
//! INTERNAL spans, in half the traces a PRODUCER→CONSUMER pair; 5% of the traces add a CLIENT
//! span naming `peer.service` whose server never arrives (a virtual node edge at expiry) and 2% a
//! bare CLIENT span that stays unpaired. In half the traces the server halves come before their
//! clients. Spans are prebuilt batches of 200 traces (what the decoder would hand over, with the
//! peer and database attributes where the decoder puts them for the default config).
//!
//! One iteration = one round of 2 000 traces (10 batches) through `process_spans`, then the wall
//! clock moves 1 s and `expire_pending` runs (default `wait` 10 s: about ten rounds of unpaired
//! halves are waiting in steady state). Each round gets fresh trace ids (rewritten outside the
//! timed part), so nothing pairs across rounds. Event time is fixed and the watermark does not
//! move: every edge stays in one open window (window close and the sinks are not measured; the
//! operator has no sinks).
//!
//! Before the timed groups it prints the mix (spans per round, edges by kind) and the state
//! bytes per pending span: 100 000 client spans without partners, `snapshot().bytes` divided by
//! the number waiting.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use redwatch::config::Config;
use redwatch_engine::fixtures::{span_batch, SpanFixture};
use redwatch_engine::model::{SourceId, SpanBatch, SpanKind, StatusCode, UnixNanos};
use redwatch_engine::pipeline::Operator;
use redwatch_engine::telemetry::Registry;
use redwatch_engine::time::wall_clock;
use redwatch_operators::servicegraph::ServiceGraphOperator;
use std::time::{Duration, Instant};

const SERVICES: [&str; 12] = [
    "frontend",
    "gateway",
    "cart",
    "checkout",
    "payments",
    "inventory",
    "shipping",
    "email",
    "recommend",
    "ads",
    "currency",
    "auth",
];
const TRACES_PER_BATCH: usize = 200;
const BATCHES: usize = 10;
const SEC: u64 = 1_000_000_000;

/// A small deterministic generator (no dependency, same mix every run).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// `span` with the attributes `values` placed where the decoder puts them for `cfg`.
fn with_attrs(cfg: &Config, span: SpanFixture, values: &[(&str, &str)]) -> SpanFixture {
    let dims: Vec<Option<&str>> = cfg
        .decode_dimensions()
        .iter()
        .map(|d| values.iter().find(|(k, _)| *k == d.name).map(|(_, v)| *v))
        .collect();
    span.dims(&dims)
}

fn sid(n: u64) -> [u8; 8] {
    n.to_be_bytes()
}

/// The spans of trace `t`, ending around `end`.
fn trace(cfg: &Config, rng: &mut Lcg, t: u64, end: UnixNanos) -> Vec<SpanFixture> {
    let mut tid = [0u8; 16];
    tid[8..].copy_from_slice(&t.to_be_bytes());
    let at = |ms: u64| end - ms * 1_000_000;
    let sp = |svc: &str, kind: SpanKind, id: u64, parent: u64, end_ms: u64, dur_ms: f64| {
        let parent = if parent == 0 { [0; 8] } else { sid(parent) };
        SpanFixture::new(svc, "op", at(end_ms), dur_ms)
            .kind(kind)
            .ids(tid, sid(id), parent)
    };
    let mut spans = vec![sp("frontend", SpanKind::Server, 1, 0, 0, 120.0)];
    let mut caller = ("frontend", 1u64);
    let hops = 3 + rng.below(3);
    let mut id = 2;
    for h in 0..hops {
        let callee = SERVICES[1 + rng.below(SERVICES.len() as u64 - 1) as usize];
        let failed = rng.below(100) < 3;
        spans.push(sp(
            caller.0,
            SpanKind::Client,
            id,
            caller.1,
            h + 1,
            90.0 - h as f64 * 10.0,
        ));
        let mut server = sp(
            callee,
            SpanKind::Server,
            id + 1,
            id,
            h + 2,
            80.0 - h as f64 * 10.0,
        );
        if failed {
            server = server.status(StatusCode::Error);
        }
        spans.push(server);
        caller = (callee, id + 1);
        id += 2;
    }
    spans.push(with_attrs(
        cfg,
        sp(caller.0, SpanKind::Client, id, caller.1, 10, 2.0),
        &[("db.system", "postgresql"), ("db.name", "orders-db")],
    ));
    id += 1;
    for _ in 0..2 {
        spans.push(sp(caller.0, SpanKind::Internal, id, caller.1, 11, 1.0));
        id += 1;
    }
    if rng.below(2) == 0 {
        spans.push(sp("checkout", SpanKind::Producer, id, 1, 12, 1.0));
        spans.push(sp("email", SpanKind::Consumer, id + 1, id, 5, 6.0));
        id += 2;
    }
    let roll = rng.below(100);
    if roll < 5 {
        spans.push(with_attrs(
            cfg,
            sp("frontend", SpanKind::Client, id, 1, 13, 30.0),
            &[("peer.service", "ext-geo")],
        ));
    } else if roll < 7 {
        spans.push(sp("frontend", SpanKind::Client, id, 1, 13, 30.0));
    }
    if rng.below(2) == 0 {
        // Server halves first.
        spans.sort_by_key(|s| s.kind != SpanKind::Server && s.kind != SpanKind::Consumer);
    }
    spans
}

fn round(cfg: &Config, end: UnixNanos) -> (Vec<SpanBatch>, u64) {
    let mut rng = Lcg(42);
    let n_dims = cfg.decode_dimensions().len() as u16;
    let mut spans = 0;
    let batches = (0..BATCHES)
        .map(|b| {
            let fixtures: Vec<SpanFixture> = (0..TRACES_PER_BATCH)
                .flat_map(|i| trace(cfg, &mut rng, (b * TRACES_PER_BATCH + i) as u64, end))
                .collect();
            spans += fixtures.len() as u64;
            span_batch(SourceId(0), n_dims, &fixtures)
        })
        .collect();
    (batches, spans)
}

/// Gives every span of the round trace ids of round `r` (the high half of the id).
fn renumber(batches: &mut [SpanBatch], r: u64) {
    for b in batches {
        for s in &mut b.spans {
            s.trace_id[..8].copy_from_slice(&r.to_be_bytes());
        }
    }
}

fn counter(reg: &Registry, name: &str) -> f64 {
    let mut v = 0.0;
    reg.visit(|n, _, _, samples| {
        if n == name {
            v = samples.iter().map(|s| s.value).sum();
        }
    });
    v
}

fn bench_config() -> Config {
    let mut cfg = Config::default();
    cfg.windows.allowed_lateness = Duration::from_secs(3600);
    cfg.service_graph.max_items = 1_000_000;
    cfg
}

/// State bytes per pending span: client spans that wait for a server that never comes.
fn pending_bytes(cfg: &Config, end: UnixNanos) {
    const N: usize = 100_000;
    let reg = Registry::new();
    let mut op =
        ServiceGraphOperator::new(&cfg.windows, &cfg.red, &cfg.service_graph, Vec::new(), &reg);
    let fixtures: Vec<SpanFixture> = (0..N as u64)
        .map(|i| {
            let mut tid = [0u8; 16];
            tid[8..].copy_from_slice(&(i + 1).to_be_bytes());
            SpanFixture::new(SERVICES[i as usize % SERVICES.len()], "op", end, 5.0)
                .kind(SpanKind::Client)
                .ids(tid, sid(2), sid(1))
        })
        .collect();
    let n_dims = cfg.decode_dimensions().len() as u16;
    op.process_spans(&span_batch(SourceId(0), n_dims, &fixtures), end);
    let s = op.snapshot();
    eprintln!(
        "state: {} pending spans, {} bytes, {:.1} bytes per pending span",
        op.pending_len(),
        s.bytes,
        s.bytes as f64 / op.pending_len().max(1) as f64
    );
}

fn benches(c: &mut Criterion) {
    let cfg = bench_config();
    let end = wall_clock() - SEC;
    pending_bytes(&cfg, end);
    let (mut batches, spans) = round(&cfg, end);

    // The mix, from the operator's own counters over 20 rounds plus the final expiry.
    let reg = Registry::new();
    let mut op =
        ServiceGraphOperator::new(&cfg.windows, &cfg.red, &cfg.service_graph, Vec::new(), &reg);
    let mut now = end;
    for r in 0..20 {
        renumber(&mut batches, r);
        for b in &batches {
            op.process_spans(b, now);
        }
        now += SEC;
        op.expire_pending(now);
    }
    now += 60 * SEC;
    op.expire_pending(now);
    let per_round = |name: &str| counter(&reg, name) / 20.0;
    eprintln!(
        "mix per round: {} traces, {} spans; paired {:.0}, database {:.0}, virtual node {:.0}, \
         expired {:.0} (of which unpaired {:.0})",
        BATCHES * TRACES_PER_BATCH,
        spans,
        per_round("redwatch_service_graph_edges_paired_total"),
        per_round("redwatch_service_graph_database_edges_total"),
        per_round("redwatch_service_graph_virtual_node_edges_total"),
        per_round("redwatch_service_graph_edges_expired_total"),
        per_round("redwatch_service_graph_edges_expired_total")
            - (per_round("redwatch_service_graph_virtual_node_edges_total")
                - per_round("redwatch_service_graph_root_spans_total")),
    );

    let mut g = c.benchmark_group("servicegraph");
    g.throughput(Throughput::Elements(spans));
    g.bench_function("mix_2000_traces", |b| {
        let reg = Registry::new();
        let mut op =
            ServiceGraphOperator::new(&cfg.windows, &cfg.red, &cfg.service_graph, Vec::new(), &reg);
        let mut now = end;
        let mut r = 1_000u64;
        b.iter_custom(|iters| {
            let mut took = Duration::ZERO;
            for _ in 0..iters {
                r += 1;
                renumber(&mut batches, r);
                let t = Instant::now();
                for b in &batches {
                    op.process_spans(b, now);
                }
                now += SEC;
                op.expire_pending(now);
                took += t.elapsed();
            }
            took
        });
    });
    g.finish();
}

criterion_group!(servicegraph, benches);
criterion_main!(servicegraph);
