//! The `red` table's pruning and byte accounting, through its public API and real DataFusion
//! queries.
//!
//! - Pruning: a counting [`PartitionSource`] around the table records what each query's scan
//!   takes; `window_size` and `service_name` filters (`=`, `IN`, `OR`) must take only the
//!   batches and chunks that can match, and the results must equal an unpruned computation;
//!   `window_size` filters are exact (not re-applied by DataFusion).
//! - Bytes: `sealed_bytes` (what `sql.max_table_bytes` caps) must be the memory the sealed
//!   batches hold — their used buffer bytes plus allocation rounding — so that a byte limit
//!   sized for N windows keeps N windows, and a smaller one evicts the oldest windows first.

mod common;

use arrow::array::{Array, ArrayData};
use arrow::record_batch::RecordBatch;
use redwatch_engine::model::{SpanKind, StatusCode, UnixNanos};
use redwatch_operators::red::{Buckets, RedAgg, RedRow, RedSink, SeriesKey};
use redwatch_queries::query::QueryEngine;
use redwatch_queries::red::{RedTable, RedTableSettings, CHUNK_ROWS};
use redwatch_queries::schema;
use redwatch_queries::table::{LiveTable, PartitionSource, PruneFilter};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

const SEC: u64 = 1_000_000_000;
/// 2026-01-01T00:00:00Z.
const BASE: UnixNanos = 1_767_225_600 * SEC;
const SERVICES: usize = 30;
const OPS: usize = 100;

fn keys() -> Vec<Arc<SeriesKey>> {
    (0..SERVICES * OPS)
        .map(|i| {
            Arc::new(SeriesKey {
                service_name: Arc::from(format!("svc-{:02}", i / OPS)),
                span_name: Arc::from(format!("op-{:03}", i % OPS)),
                kind: SpanKind::Server,
                dims: vec![Arc::from(if i % 2 == 0 { "GET" } else { "POST" })].into_boxed_slice(),
                overflow: false,
            })
        })
        .collect()
}

/// A series' aggregate in window `w`: `1 + (i + w) % 5` spans, deterministic.
fn agg(i: usize, w: u64) -> RedAgg {
    let buckets = Buckets::new(vec![10.0, 100.0, 1000.0]);
    let mut a = RedAgg::default();
    for j in 0..1 + (i + w as usize) % 5 {
        let ms = 3.0 + (i * 7 + j * 13 + w as usize) as f64 % 400.0;
        let status = if (i + j).is_multiple_of(17) {
            StatusCode::Error
        } else {
            StatusCode::Unset
        };
        a.add(status, ms, buckets.index(ms), 1.0);
    }
    a
}

fn window(keys: &[Arc<SeriesKey>], label: &str, size_ns: u64, w: u64) -> Vec<RedRow> {
    let start = BASE + w * size_ns;
    let label: Arc<str> = Arc::from(label);
    keys.iter()
        .enumerate()
        .map(|(i, k)| {
            let a = agg(i, w);
            RedRow {
                window_size: label.clone(),
                window_size_ns: size_ns,
                primary: size_ns == 10 * SEC,
                start,
                end: start + size_ns,
                series: k.clone(),
                share: None,
                is_final: true,
                first: true,
                total: a.clone(),
                delta: Some(a),
            }
        })
        .collect()
}

fn table(retention_ns: u64, lateness_ns: u64, max_bytes: usize) -> Arc<RedTable> {
    RedTable::new(RedTableSettings {
        dims: vec!["http.request.method".into()],
        lateness_ns,
        retention_ns,
        max_bytes,
    })
}

/// What the scans of the queries took.
#[derive(Debug)]
struct CountingSource {
    inner: Arc<RedTable>,
    batches: AtomicUsize,
    rows: AtomicUsize,
}

impl PartitionSource for CountingSource {
    fn exact_columns(&self) -> &'static [&'static str] {
        self.inner.exact_columns()
    }

    fn snapshot(&self, filter: &PruneFilter) -> Vec<RecordBatch> {
        let out = self.inner.snapshot(filter);
        self.batches.fetch_add(out.len(), Ordering::SeqCst);
        self.rows
            .fetch_add(out.iter().map(|b| b.num_rows()).sum(), Ordering::SeqCst);
        out
    }
}

struct Harness {
    engine: QueryEngine,
    source: Arc<CountingSource>,
    rt: tokio::runtime::Runtime,
}

impl Harness {
    fn new(table: Arc<RedTable>) -> Harness {
        let source = Arc::new(CountingSource {
            inner: table,
            batches: AtomicUsize::new(0),
            rows: AtomicUsize::new(0),
        });
        let provider = LiveTable::new(
            schema::RED.clone(),
            &["window_start", "window_end"],
            source.clone(),
        );
        let engine = QueryEngine::new(
            vec![("red".to_string(), Arc::new(provider) as _)],
            common::limits(),
        )
        .expect("query runtime");
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        Harness { engine, source, rt }
    }

    /// The text of `EXPLAIN sql` (logical and physical plans).
    fn explain(&self, sql: &str) -> String {
        let r = self
            .rt
            .block_on(self.engine.execute(&format!("EXPLAIN {sql}")))
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
        arrow::util::pretty::pretty_format_batches(&r.batches)
            .expect("formats")
            .to_string()
    }

    /// `count(*)` of the query's rows, with the batches and rows its scan took.
    fn count(&self, where_clause: &str) -> (i64, usize, usize) {
        self.source.batches.store(0, Ordering::SeqCst);
        self.source.rows.store(0, Ordering::SeqCst);
        let sql = format!("SELECT count(*) AS n FROM red WHERE {where_clause}");
        let r = self
            .rt
            .block_on(self.engine.execute(&sql))
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
        let n = r.batches[0]
            .column(0)
            .as_any()
            .downcast_ref::<arrow::array::Int64Array>()
            .expect("count is Int64")
            .value(0);
        (
            n,
            self.source.batches.load(Ordering::SeqCst),
            self.source.rows.load(Ordering::SeqCst),
        )
    }
}

#[test]
fn window_size_and_service_filters_scan_only_what_can_match() {
    let keys = keys();
    let n = keys.len();
    // 12 windows of 10 s and 2 of 1 m, all sealed or not (no retention limit).
    let t = table(u64::MAX, 30 * SEC, usize::MAX);
    for w in 0..12 {
        t.on_final(&window(&keys, "10s", 10 * SEC, w));
        if (w + 1) % 6 == 0 {
            t.on_final(&window(&keys, "1m", 60 * SEC, w / 6));
        }
    }
    let h = Harness::new(t);
    let all = 14 * n;
    assert_eq!(h.count("true"), (all as i64, 14, all));

    // window_size: only the batches of that spec are scanned.
    for (filter, windows) in [
        ("window_size = '10s'", 12),
        ("window_size = '1m'", 2),
        ("window_size IN ('1m')", 2),
        ("window_size = '1m' OR window_size = '10s'", 14),
        ("window_size = '5m'", 0),
    ] {
        let (rows, _, scanned) = h.count(filter);
        assert_eq!(rows as usize, windows * n, "{filter}");
        assert_eq!(scanned, windows * n, "{filter}: rows scanned");
    }

    // `window_size` (one value per partition) is applied exactly by the scan: DataFusion does
    // not filter it again row by row; other filters still are.
    let plan = h.explain(
        "SELECT count(*) FROM red WHERE window_size IN ('1m', '5m') \
         AND window_start >= TIMESTAMP '2026-01-01T00:00:00Z' AND service_name = 'svc-07'",
    );
    let filter_exec = plan
        .lines()
        .find(|l| l.contains("FilterExec"))
        .unwrap_or_else(|| panic!("no FilterExec in {plan}"));
    assert!(!filter_exec.contains("window_size"), "{filter_exec}");
    assert!(filter_exec.contains("window_start"), "{filter_exec}");
    assert!(filter_exec.contains("service_name"), "{filter_exec}");
    assert!(
        !h.explain("SELECT count(*) FROM red WHERE window_size = '1m'")
            .contains("FilterExec"),
        "only exact filters: no FilterExec"
    );

    // service_name: only the chunks that can hold the service (a service is never split).
    let per_chunk = CHUNK_ROWS.div_ceil(OPS) * OPS; // whole services per chunk
    for (filter, services) in [
        ("service_name = 'svc-07'", 1),
        ("service_name IN ('svc-00', 'svc-29')", 2),
        ("service_name = 'svc-03' OR service_name = 'svc-21'", 2),
        (
            "service_name IN ('svc-01', 'svc-12', 'svc-13', 'svc-28', 'nope')",
            4,
        ),
    ] {
        let (rows, batches, scanned) = h.count(filter);
        assert_eq!(rows as usize, 14 * services * OPS, "{filter}");
        assert!(
            scanned <= 14 * services * per_chunk && scanned >= rows as usize,
            "{filter}: scanned {scanned} rows of {all}"
        );
        assert!(batches >= 14, "{filter}: {batches} batches");
    }
    // Both filters at once, and a service no chunk can hold.
    let (rows, _, scanned) = h.count("window_size = '1m' AND service_name = 'svc-07'");
    assert_eq!(rows as usize, 2 * OPS);
    assert!(scanned <= 2 * per_chunk, "{scanned}");
    assert_eq!(h.count("service_name = 'zzz'"), (0, 0, 0));
    // An AND of two service constraints scans their intersection (here: nothing).
    assert_eq!(
        h.count("service_name = 'svc-01' AND service_name IN ('svc-02', 'svc-03')"),
        (0, 0, 0)
    );
    // Filters that do not constrain a pruned column scan everything and stay correct.
    let (rows, _, scanned) = h.count("service_name <> 'svc-07' OR window_size = '1m'");
    assert_eq!(rows as usize, all - 12 * OPS);
    assert_eq!(scanned, all);
    let (rows, _, scanned) = h.count("service_name NOT IN ('svc-07')");
    assert_eq!(rows as usize, all - 14 * OPS);
    assert_eq!(scanned, all);
}

#[test]
fn provisional_rows_prune_by_service_and_window_size() {
    let keys = keys();
    let n = keys.len();
    let t = table(u64::MAX, 30 * SEC, usize::MAX);
    t.on_final(&window(&keys, "10s", 10 * SEC, 0));
    // Two open windows of 10 s (provisional), none of 1 m.
    let mut open = window(&keys, "10s", 10 * SEC, 1);
    open.extend(window(&keys, "10s", 10 * SEC, 2));
    for r in &mut open {
        r.is_final = false;
        r.first = false;
        r.delta = None;
    }
    t.on_provisional(10 * SEC, &open);
    let h = Harness::new(t.clone());
    assert_eq!(h.count("NOT is_final").0 as usize, 2 * n);
    let (rows, _, scanned) = h.count("NOT is_final AND service_name = 'svc-11'");
    assert_eq!(rows as usize, 2 * OPS);
    // One chunk of each of the 3 windows (1 final, 2 provisional).
    let per_chunk = CHUNK_ROWS.div_ceil(OPS) * OPS;
    assert!(scanned <= 3 * per_chunk, "{scanned} of {}", 3 * n);
    assert_eq!(h.count("window_size = '1m'"), (0, 0, 0));

    // Window 1 closes: its provisional rows go, the pruning index follows.
    t.on_final(&window(&keys, "10s", 10 * SEC, 1));
    let (rows, _, _) = h.count("NOT is_final AND service_name = 'svc-11'");
    assert_eq!(rows as usize, OPS);
    assert_eq!(h.count("service_name = 'svc-11'").0 as usize, 3 * OPS);
}

/// Bytes the buffers of `data` use (lengths, not capacities), children included.
fn used_bytes(data: &ArrayData) -> usize {
    data.buffers().iter().map(|b| b.len()).sum::<usize>()
        + data.nulls().map_or(0, |n| n.buffer().len())
        + data.child_data().iter().map(used_bytes).sum::<usize>()
}

fn buffers(data: &ArrayData) -> usize {
    data.buffers().len()
        + usize::from(data.nulls().is_some())
        + data.child_data().iter().map(buffers).sum::<usize>()
}

#[test]
fn byte_accounting_is_what_the_batches_hold() {
    let keys = keys();
    let n = keys.len();
    // Measure one sealed window: accounted bytes vs the bytes its buffers use.
    let probe = table(u64::MAX, 0, usize::MAX);
    probe.on_final(&window(&keys, "10s", 10 * SEC, 0));
    probe.on_final(&window(&keys, "10s", 10 * SEC, 1)); // seals window 0
    assert_eq!(probe.window_count(), 2);
    let accounted = probe.sealed_bytes();
    let sealed = probe.snapshot(&PruneFilter {
        time: vec![(
            "window_start".into(),
            datafusion::logical_expr::Operator::Eq,
            BASE as i128,
        )],
        ..Default::default()
    });
    assert_eq!(sealed.len(), 1);
    let columns: Vec<ArrayData> = sealed[0].columns().iter().map(|c| c.to_data()).collect();
    let used: usize = columns.iter().map(used_bytes).sum();
    let n_buffers: usize = columns.iter().map(buffers).sum();
    // Allocations round up to 64 bytes, and each array struct is counted once.
    let slack = n_buffers * 64 + columns.len() * 512;
    assert!(
        accounted >= used && accounted <= used + slack,
        "accounted {accounted} B for {used} B used ({n_buffers} buffers, {n} rows)"
    );

    // A byte limit for 12 sealed windows keeps 12 (plus the unsealed newest) within retention.
    let per_window = accounted + accounted / 100;
    let t = table(60 * 10 * SEC, 0, 12 * per_window);
    for w in 0..13 {
        t.on_final(&window(&keys, "10s", 10 * SEC, w));
    }
    assert_eq!(t.window_count(), 13, "sealed bytes {}", t.sealed_bytes());
    assert!(t.sealed_bytes() <= 12 * per_window);

    // Retention by age still applies: 60 windows of 10 s = 10 min.
    let aged = table(60 * 10 * SEC, 0, usize::MAX);
    for w in 0..70 {
        aged.on_final(&window(&keys[..10], "10s", 10 * SEC, w));
    }
    assert!(
        (60..=61).contains(&aged.window_count()),
        "{}",
        aged.window_count()
    );

    // A limit of 3.5 windows keeps the 3 newest sealed ones: the oldest go first.
    let small = table(u64::MAX, 0, 3 * per_window + per_window / 2);
    for w in 0..10 {
        small.on_final(&window(&keys, "10s", 10 * SEC, w));
    }
    let h = Harness::new(small.clone());
    let r =
        h.rt.block_on(
            h.engine
                .execute("SELECT DISTINCT CAST(window_start AS BIGINT) AS s FROM red ORDER BY s"),
        )
        .expect("query");
    let starts: Vec<i64> = r
        .batches
        .iter()
        .flat_map(|b| {
            let a = b
                .column(0)
                .as_any()
                .downcast_ref::<arrow::array::Int64Array>()
                .expect("Int64")
                .clone();
            (0..a.len()).map(move |i| a.value(i))
        })
        .collect();
    let ms = |w: u64| ((BASE + w * 10 * SEC) / 1_000_000) as i64;
    assert_eq!(starts, (6..10).map(ms).collect::<Vec<_>>());
    assert!(small.sealed_bytes() <= 3 * per_window + per_window / 2);
}
