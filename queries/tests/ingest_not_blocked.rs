//! Ingest is never blocked by a query: while a CPU-heavy query runs on the `QueryEngine`, the
//! `red` table keeps taking `on_final` / `on_provisional` calls from the operator thread, and the
//! query still answers from the snapshot it started with.
//!
//! The long query is a cross join of `red` with `firehose`, a test table whose stream produces
//! batches until the test says stop — so "the query is running" is an observed fact (batches
//! were pulled), not a guess about timing, and the query ends when the test is done with it.
//! Every wait is a condition with a deadline; nothing asserts on durations.

mod common;

use arrow::array::Int64Array;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use datafusion::catalog::streaming::StreamingTable;
use datafusion::catalog::TableProvider;
use datafusion::execution::TaskContext;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::streaming::PartitionStream;
use datafusion::physical_plan::SendableRecordBatchStream;
use redwatch_engine::fixtures::{span_batch, SpanFixture};
use redwatch_engine::telemetry::Registry;
use redwatch_engine::SourceId;
use redwatch_operators::red::{RedOperator, RedSink};
use redwatch_queries::query::QueryEngine;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// Generous: a loaded 2-core machine running a debug build.
const DEADLINE: Duration = Duration::from_secs(120);
/// Rows per firehose batch.
const FIREHOSE_ROWS: usize = 8192;

/// A counter others can wait on.
#[derive(Default)]
struct Progress {
    value: Mutex<u64>,
    changed: Condvar,
}

impl Progress {
    fn bump(&self) {
        if let Ok(mut v) = self.value.lock() {
            *v += 1;
        }
        self.changed.notify_all();
    }

    fn get(&self) -> u64 {
        *self.value.lock().expect("progress lock")
    }

    /// Waits until `done(value)` or the deadline; returns the last value and whether it held.
    fn wait_until(&self, deadline: Instant, done: impl Fn(u64) -> bool) -> (u64, bool) {
        let mut v = self.value.lock().expect("progress lock");
        loop {
            if done(*v) {
                return (*v, true);
            }
            let now = Instant::now();
            if now >= deadline {
                return (*v, false);
            }
            v = self
                .changed
                .wait_timeout(v, deadline - now)
                .expect("progress lock")
                .0;
        }
    }
}

/// A table whose single partition yields `FIREHOSE_ROWS`-row batches until `stop` is set.
#[derive(Debug)]
struct Firehose {
    schema: SchemaRef,
    stop: Arc<AtomicBool>,
    batches: Arc<ProgressHandle>,
}

/// `Progress` behind a Debug impl (PartitionStream requires Debug).
struct ProgressHandle(Progress);

impl std::fmt::Debug for ProgressHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ProgressHandle({})", self.0.get())
    }
}

impl PartitionStream for Firehose {
    fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    fn execute(&self, _ctx: Arc<TaskContext>) -> SendableRecordBatchStream {
        let schema = self.schema.clone();
        let (stop, batches) = (self.stop.clone(), self.batches.clone());
        let state = (schema.clone(), stop, batches, 0i64);
        let stream = futures::stream::unfold(state, |(schema, stop, batches, next)| async move {
            if stop.load(Ordering::SeqCst) {
                return None;
            }
            // Let other tasks of the query runtime run between batches, as a real source would.
            tokio::task::yield_now().await;
            let values = Int64Array::from_iter_values(next..next + FIREHOSE_ROWS as i64);
            let batch = RecordBatch::try_new(schema.clone(), vec![Arc::new(values)])
                .map_err(datafusion::error::DataFusionError::from);
            batches.0.bump();
            Some((batch, (schema, stop, batches, next + FIREHOSE_ROWS as i64)))
        });
        Box::pin(RecordBatchStreamAdapter::new(self.schema.clone(), stream))
    }
}

/// Spans of window `i` after the data set (from 00:10:00 on): 20 series, 3 spans each.
fn writer_spans(i: u64) -> Vec<SpanFixture> {
    let start = 600 + i * common::WINDOW_S;
    let mut out = Vec::new();
    for s in 0..20u64 {
        for k in 0..3u64 {
            let mut f = SpanFixture::new(
                &format!("svc-{}", s % 5),
                &format!("op-{s}"),
                common::at(start + 1 + k, s),
                (5 + s * 3 + k) as f64,
            );
            f.dims = vec![Some("GET".to_string())];
            out.push(f);
        }
    }
    out
}

#[test]
fn a_long_query_does_not_block_ingest() {
    let table = common::build_red_table();
    let snapshot_rows = 68u64; // every row of the data set, see tests/sql/00_red_rows.sql

    let schema: SchemaRef = Arc::new(Schema::new(vec![Field::new("x", DataType::Int64, false)]));
    let stop = Arc::new(AtomicBool::new(false));
    let batches = Arc::new(ProgressHandle(Progress::default()));
    let firehose = Firehose {
        schema: schema.clone(),
        stop: stop.clone(),
        batches: batches.clone(),
    };
    let firehose_table =
        StreamingTable::try_new(schema, vec![Arc::new(firehose)]).expect("firehose table");
    let mut tables = common::providers(table.clone());
    tables.push((
        "firehose".to_string(),
        Arc::new(firehose_table) as Arc<dyn TableProvider>,
    ));
    let mut limits = common::limits();
    limits.timeout = DEADLINE * 2;
    let engine = QueryEngine::new(tables, limits).expect("query runtime");

    // The query: every firehose row against every red row, with a per-row expression, so it
    // keeps both query worker threads busy for as long as the firehose flows.
    let sql = "SELECT count(*) AS n, sum(CASE WHEN (f.x + length(r.service_name)) % 3 = 0 THEN 1 ELSE 0 END) AS hits \
               FROM red r CROSS JOIN firehose f";
    let result: Arc<QueryOutcome> = Default::default();
    let query_thread = {
        let (engine, result) = (engine.clone(), result.clone());
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            let r = rt
                .block_on(engine.execute(sql))
                .map_err(|e| e.to_string())
                .map(|r| {
                    let b = &r.batches[0];
                    let col = |i: usize| {
                        b.column(i)
                            .as_any()
                            .downcast_ref::<Int64Array>()
                            .expect("int64")
                            .value(0) as u64
                    };
                    (col(0), col(1))
                });
            *result.0.lock().expect("result lock") = Some(r);
            result.1.notify_all();
        })
    };

    // The query is running once the firehose has been pulled a few times (its snapshot of red
    // was taken when it was planned, before that).
    let deadline = Instant::now() + DEADLINE;
    let (pulled, ok) = batches.0.wait_until(deadline, |n| n >= 3);
    assert!(
        ok,
        "the query did not start pulling the firehose ({pulled} batches)"
    );

    // Ingest: a RedOperator feeding the table, one window per iteration.
    let written = Arc::new(Progress::default());
    let writer_stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (table, written, writer_stop) = (table.clone(), written.clone(), writer_stop.clone());
        std::thread::spawn(move || {
            let registry = Registry::new();
            let sinks: Vec<Arc<dyn RedSink>> = vec![table];
            let cfg = common::config();
            let mut op = RedOperator::new(&cfg.windows, &cfg.red, sinks, &registry);
            let mut i = 0u64;
            while !writer_stop.load(Ordering::SeqCst) {
                let spans = writer_spans(i);
                let now = common::at(600 + (i + 1) * common::WINDOW_S, 0);
                op.process_spans(&span_batch(SourceId(1), 1, &spans), now);
                op.advance(now); // window i is final: on_final with 20 rows (and 1 m rollups)
                op.publish_provisional();
                written.bump();
                i += 1;
            }
        })
    };

    // While the query keeps running, the writer's calls keep completing.
    let target = 200;
    let (done, ok) = written.wait_until(Instant::now() + DEADLINE, |n| n >= target);
    let still_running = result.0.lock().expect("result lock").is_none();
    let pulled_during = batches.0.get();
    assert!(
        ok,
        "ingest stalled while a query ran: {done} of {target} windows written \
         (query still running: {still_running}, firehose batches: {pulled_during})"
    );
    assert!(
        still_running,
        "the query ended before the firehose was stopped: {:?}",
        result.0.lock().expect("result lock")
    );

    // …and the query keeps making progress too (it was not parked while ingest ran).
    let (now_pulled, ok) = batches
        .0
        .wait_until(Instant::now() + DEADLINE, |n| n >= pulled_during + 2);
    assert!(
        ok,
        "the query stopped pulling the firehose ({now_pulled} batches)"
    );
    let (more, ok) = written.wait_until(Instant::now() + DEADLINE, |n| n > done);
    assert!(ok, "ingest stalled at {more} windows");

    // Stop the firehose: the query finishes, from the snapshot it was planned with.
    stop.store(true, Ordering::SeqCst);
    let (lock, cond) = &*result;
    let guard = cond
        .wait_timeout_while(lock.lock().expect("result lock"), DEADLINE, |r| r.is_none())
        .expect("result lock")
        .0;
    let outcome = guard
        .clone()
        .expect("the query did not finish after the firehose stopped");
    drop(guard);
    query_thread.join().expect("query thread");
    writer_stop.store(true, Ordering::SeqCst);
    writer.join().expect("writer thread");

    let (n, hits) = outcome.expect("the long query succeeds");
    let firehose_rows = batches.0.get() * FIREHOSE_ROWS as u64;
    assert_eq!(
        n,
        firehose_rows * snapshot_rows,
        "the query saw red rows written after it started ({} firehose rows)",
        firehose_rows
    );
    assert!(hits > 0 && hits < n);
    eprintln!(
        "query joined {firehose_rows} firehose rows with {snapshot_rows} red rows ({n} pairs) \
         while the writer finished {} windows",
        written.get()
    );

    // A new query sees what was written meanwhile.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let later = rt
        .block_on(engine.execute(
            "SELECT count(DISTINCT window_start) AS w FROM red WHERE window_size = '10s' AND service_name LIKE 'svc-%' AND is_final",
        ))
        .expect("follow-up query");
    let w = later.batches[0]
        .column(0)
        .as_any()
        .downcast_ref::<Int64Array>()
        .expect("int64")
        .value(0) as u64;
    assert!(
        w >= target,
        "the table holds {w} of the ≥ {target} windows written"
    );
}

/// The long query's result (rows, writes seen while it ran), published with a condvar.
type QueryOutcome = (Mutex<Option<Result<(u64, u64), String>>>, Condvar);
