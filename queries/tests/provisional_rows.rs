//! A window is never visible both as final and as provisional rows: when the watermark closes a
//! window, its provisional rows leave the `red` table with the final emission, not only at the
//! next provisional publish (up to a second later, during which an unfiltered `sum(calls)` would
//! count the window twice).

mod common;

use redwatch_engine::fixtures::{span_batch, SpanFixture};
use redwatch_engine::telemetry::Registry;
use redwatch_engine::SourceId;
use redwatch_operators::red::{RedOperator, RedSink};
use std::sync::Arc;

fn spans(ends_s: &[u64]) -> Vec<SpanFixture> {
    ends_s
        .iter()
        .map(|s| {
            let mut f = SpanFixture::new("cart", "GET /cart", common::at(*s, 0), 10.0);
            f.dims = vec![Some("GET".into())];
            f
        })
        .collect()
}

fn rows(engine: &redwatch_queries::query::QueryEngine, rt: &tokio::runtime::Runtime) -> String {
    let r = rt
        .block_on(engine.execute(
            "SELECT window_size, window_start, is_final, count(*) AS series, sum(calls) AS calls \
             FROM red GROUP BY 1, 2, 3 ORDER BY 1, 2, 3",
        ))
        .expect("query");
    arrow::util::pretty::pretty_format_batches(&r.batches)
        .expect("format")
        .to_string()
}

#[test]
fn a_closed_window_leaves_the_provisional_rows_at_once() {
    let table = common::red_table();
    let registry = Registry::new();
    let sinks: Vec<Arc<dyn RedSink>> = vec![table.clone()];
    let cfg = common::config();
    let mut op = RedOperator::new(&cfg.windows, &cfg.red, sinks, &registry);
    let engine = common::engine(table, common::limits());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");

    // Windows [0, 10) and [10, 20) open, published as provisional.
    op.process_spans(
        &span_batch(SourceId(0), 1, &spans(&[1, 2, 11])),
        common::at(11, 0),
    );
    op.publish_provisional();
    assert_eq!(
        rows(&engine, &rt),
        "+-------------+----------------------+----------+--------+-------+\n\
         | window_size | window_start         | is_final | series | calls |\n\
         +-------------+----------------------+----------+--------+-------+\n\
         | 10s         | 2026-01-01T00:00:00Z | false    | 1      | 2.0   |\n\
         | 10s         | 2026-01-01T00:00:10Z | false    | 1      | 1.0   |\n\
         +-------------+----------------------+----------+--------+-------+"
    );

    // The watermark passes 00:00:10: window 0 is final, and only final — before any new
    // provisional publish. Window 1 stays provisional.
    op.advance(common::at(10, 0));
    assert_eq!(
        rows(&engine, &rt),
        "+-------------+----------------------+----------+--------+-------+\n\
         | window_size | window_start         | is_final | series | calls |\n\
         +-------------+----------------------+----------+--------+-------+\n\
         | 10s         | 2026-01-01T00:00:00Z | true     | 1      | 2.0   |\n\
         | 10s         | 2026-01-01T00:00:10Z | false    | 1      | 1.0   |\n\
         +-------------+----------------------+----------+--------+-------+"
    );

    // A late span for window 0 re-emits it: still one final row, updated. The open 1 m rollup
    // now shows as provisional too — with the closed primary window only (3 calls): a rollup
    // receives primary windows once they are final.
    op.process_spans(&span_batch(SourceId(0), 1, &spans(&[3])), common::at(12, 0));
    op.advance(common::at(12, 0));
    op.publish_provisional();
    assert_eq!(
        rows(&engine, &rt),
        "+-------------+----------------------+----------+--------+-------+\n\
         | window_size | window_start         | is_final | series | calls |\n\
         +-------------+----------------------+----------+--------+-------+\n\
         | 10s         | 2026-01-01T00:00:00Z | true     | 1      | 3.0   |\n\
         | 10s         | 2026-01-01T00:00:10Z | false    | 1      | 1.0   |\n\
         | 1m          | 2026-01-01T00:00:00Z | false    | 1      | 3.0   |\n\
         +-------------+----------------------+----------+--------+-------+"
    );
}
