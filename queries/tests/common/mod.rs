//! The deterministic data set the SQL tests query: spans built with the shared engine fixtures,
//! aggregated by a real `RedOperator` whose sink is the `red` table, queried through a real
//! `QueryEngine` — no network, no wall clock.
//!
//! Owns: the data set (written out below so the `.sql` cases can be checked by hand) and the
//! helpers that build an engine over it. Must not: assert anything (the tests do).
#![allow(dead_code)] // each test binary uses part of it

use datafusion::catalog::TableProvider;
use redwatch_engine::config::Dimension;
use redwatch_engine::fixtures::{span_batch, SpanFixture};
use redwatch_engine::telemetry::Registry;
use redwatch_engine::{SourceId, SpanKind, StatusCode, UnixNanos};
use redwatch_operators::layout::SpanSections;
use redwatch_operators::red::{RedOperator, RedSink};
use redwatch_queries::query::{QueryEngine, QueryLimits};
use redwatch_queries::red::{RedTable, RedTableSettings};
use redwatch_queries::Tables;
use std::sync::Arc;
use std::time::Duration;

/// 2026-01-01T00:00:00Z in seconds.
pub const BASE_S: u64 = 1_767_225_600;
/// The primary window and its rollup.
pub const WINDOW_S: u64 = 10;
pub const ROLLUP_S: u64 = 60;
/// `windows.allowed_lateness` of the pipeline and the table.
pub const LATENESS_S: u64 = 30;
/// The one configured dimension (a key of the `dims` map).
pub const DIM: &str = "http.request.method";
/// Primary windows 0..FINAL_WINDOWS (00:00:00–00:02:00) are final; window 12 stays open.
pub const FINAL_WINDOWS: u64 = 12;

/// Unix nanoseconds of `BASE + sec + ms`.
pub fn at(sec: u64, ms: u64) -> UnixNanos {
    (BASE_S + sec) * 1_000_000_000 + ms * 1_000_000
}

fn span(
    service: Option<&str>,
    name: &str,
    kind: SpanKind,
    status: StatusCode,
    end: UnixNanos,
    duration_ms: f64,
    method: Option<&str>,
) -> SpanFixture {
    let mut f = SpanFixture::new(service.unwrap_or(""), name, end, duration_ms)
        .kind(kind)
        .status(status);
    f.service = service.map(str::to_string);
    f.dims = vec![method.map(str::to_string)];
    f
}

/// The spans of primary window `w` (0 ≤ w < 12), all ending inside `[10w s, 10w + 10 s)`:
///
/// | series (service / span / kind / method) | spans of window w |
/// |---|---|
/// | frontend / `GET /` / SERVER / GET | `3 + w % 3` spans of 10, 20, 30(, 40(, 50)) ms; the 10 ms one is ERROR in w = 7 |
/// | cart / `GET /cart` / SERVER / GET | 4 ms and 8 ms; plus 400 ms ERROR in w = 3 and 4 (an incident) |
/// | cart / `POST /cart` / SERVER / POST | even w only: one 25 ms OK span (weight 4 in w = 10: sampled) |
/// | checkout / `POST /checkout` / SERVER / POST | `100 + 10w` ms, and 300 ms that is ERROR when w % 4 = 0 |
/// | checkout / `charge` / CLIENT / (no method) | `200 + 10w` ms, ERROR in w = 11 |
/// | (no service.name) / `ping` / INTERNAL / (none) | w = 0 only: 1 ms |
pub fn window_spans(w: u64) -> Vec<SpanFixture> {
    use SpanKind::{Client, Internal, Server};
    use StatusCode::{Error, Ok, Unset};
    let s = w * WINDOW_S;
    let mut out = Vec::new();
    for k in 0..3 + w % 3 {
        let status = if k == 0 && w == 7 { Error } else { Unset };
        let d = 10.0 * (k + 1) as f64;
        out.push(span(
            Some("frontend"),
            "GET /",
            Server,
            status,
            at(s + 1, k * 100),
            d,
            Some("GET"),
        ));
    }
    out.push(span(
        Some("cart"),
        "GET /cart",
        Server,
        Unset,
        at(s + 2, 0),
        4.0,
        Some("GET"),
    ));
    out.push(span(
        Some("cart"),
        "GET /cart",
        Server,
        Unset,
        at(s + 2, 500),
        8.0,
        Some("GET"),
    ));
    if w == 3 || w == 4 {
        out.push(span(
            Some("cart"),
            "GET /cart",
            Server,
            Error,
            at(s + 4, 0),
            400.0,
            Some("GET"),
        ));
    }
    if w.is_multiple_of(2) {
        let f = span(
            Some("cart"),
            "POST /cart",
            Server,
            Ok,
            at(s + 5, 0),
            25.0,
            Some("POST"),
        );
        out.push(if w == 10 { f.weight(4.0) } else { f });
    }
    let d = 100.0 + 10.0 * w as f64;
    out.push(span(
        Some("checkout"),
        "POST /checkout",
        Server,
        Unset,
        at(s + 6, 0),
        d,
        Some("POST"),
    ));
    let status = if w.is_multiple_of(4) { Error } else { Unset };
    out.push(span(
        Some("checkout"),
        "POST /checkout",
        Server,
        status,
        at(s + 7, 0),
        300.0,
        Some("POST"),
    ));
    let status = if w == 11 { Error } else { Unset };
    let d = 200.0 + 10.0 * w as f64;
    out.push(span(
        Some("checkout"),
        "charge",
        Client,
        status,
        at(s + 8, 0),
        d,
        None,
    ));
    if w == 0 {
        out.push(span(None, "ping", Internal, Unset, at(s + 9, 0), 1.0, None));
    }
    out
}

/// Spans sent after the watermark reached 00:02:00:
/// - late, within allowed lateness: checkout / `POST /checkout`, 900 ms ERROR, ending at
///   00:01:45.5 (window 10, `[00:01:40, 00:01:50)`, already final: it is re-emitted, and so is
///   the `1m` rollup `[00:01:00, 00:02:00)`);
/// - open window 12 `[00:02:00, 00:02:10)`: frontend / `GET /` 10, 20, 30 ms and checkout /
///   `POST /checkout` 50 ms (provisional rows, `is_final = false`).
pub fn after_watermark_spans() -> Vec<SpanFixture> {
    use SpanKind::Server;
    use StatusCode::{Error, Unset};
    let mut out = vec![span(
        Some("checkout"),
        "POST /checkout",
        Server,
        Error,
        at(105, 500),
        900.0,
        Some("POST"),
    )];
    for k in 0..3u64 {
        let d = 10.0 * (k + 1) as f64;
        out.push(span(
            Some("frontend"),
            "GET /",
            Server,
            Unset,
            at(121 + k, 0),
            d,
            Some("GET"),
        ));
    }
    out.push(span(
        Some("checkout"),
        "POST /checkout",
        Server,
        Unset,
        at(124, 0),
        50.0,
        Some("POST"),
    ));
    out
}

/// The pipeline config of the data set: 10 s windows, a 1 m rollup, one dimension.
pub fn config() -> SpanSections {
    let mut cfg = SpanSections::default();
    cfg.windows.size = Duration::from_secs(WINDOW_S);
    cfg.windows.rollups = vec![Duration::from_secs(ROLLUP_S)];
    cfg.windows.allowed_lateness = Duration::from_secs(LATENESS_S);
    cfg.red.dimensions = vec![Dimension {
        name: DIM.to_string(),
        default: None,
        source: Default::default(),
    }];
    cfg
}

/// An empty `red` table with the data set's settings (retention and bytes unbounded in practice).
pub fn red_table() -> Arc<RedTable> {
    RedTable::new(RedTableSettings {
        dims: vec![DIM.to_string()],
        lateness_ns: LATENESS_S * 1_000_000_000,
        retention_ns: 24 * 3600 * 1_000_000_000,
        max_bytes: 1 << 30,
    })
}

/// Feeds the data set through a `RedOperator` into a fresh `red` table:
/// windows 0–11 in three batches, watermark 00:02:00 (windows 0–11 and both 1 m rollups final),
/// then the late and open-window spans, watermark 00:02:05, provisional rows published.
pub fn build_red_table() -> Arc<RedTable> {
    let table = red_table();
    let registry = Registry::new();
    let sinks: Vec<Arc<dyn RedSink>> = vec![table.clone()];
    let cfg = config();
    let mut op = RedOperator::new(&cfg.windows, &cfg.red, sinks, &registry);
    let source = SourceId(0);
    for chunk in (0..FINAL_WINDOWS).collect::<Vec<_>>().chunks(4) {
        let spans: Vec<SpanFixture> = chunk.iter().flat_map(|w| window_spans(*w)).collect();
        let now = spans.iter().map(|s| s.end).max().unwrap_or(0);
        op.process_spans(&span_batch(source, 1, &spans), now);
    }
    op.advance(at(FINAL_WINDOWS * WINDOW_S, 0));
    op.process_spans(&span_batch(source, 1, &after_watermark_spans()), at(125, 0));
    op.advance(at(125, 0));
    op.publish_provisional();
    table
}

/// Limits generous enough for every case.
pub fn limits() -> QueryLimits {
    QueryLimits {
        timeout: Duration::from_secs(60),
        memory_bytes: 256 << 20,
        max_rows: 100_000,
        shared_memory_bytes: 4 << 30,
        max_concurrent: 64,
        max_result_bytes: 1 << 30,
    }
}

/// Every live table as a provider, `red` being `table`; the other producers' tables are empty
/// (the one place that spells out `Tables`' fields).
pub fn providers(table: Arc<RedTable>) -> Vec<(String, Arc<dyn TableProvider>)> {
    Tables {
        red: table,
        spans: Default::default(),
        continuous: Default::default(),
        anomalies: Default::default(),
        predictions: Default::default(),
    }
    .providers()
}

/// A query engine over every live table, `red` being `table` (the others empty).
pub fn engine(table: Arc<RedTable>, limits: QueryLimits) -> QueryEngine {
    QueryEngine::new(providers(table), limits).expect("query runtime starts")
}
