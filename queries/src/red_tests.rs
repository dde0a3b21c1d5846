use super::*;
use redwatch_engine::fixtures::{span_batch, SpanFixture};
use redwatch_engine::model::SourceId;
use redwatch_engine::telemetry::Registry;
use redwatch_operators::layout::SpanSections;
use redwatch_operators::red::RedOperator;

/// A `red` table that keeps every window; late rows are taken for `lateness_ns`.
fn table(lateness_ns: u64) -> Arc<RedTable> {
    RedTable::new(RedTableSettings {
        dims: vec![],
        lateness_ns,
        retention_ns: u64::MAX,
        max_bytes: usize::MAX,
    })
}

/// [`table`], fed by a RED operator of the default window (no rollups).
fn table_and_operator(lateness_ns: u64) -> (Arc<RedTable>, RedOperator) {
    let table = table(lateness_ns);
    let mut cfg = SpanSections::default();
    cfg.windows.rollups = vec![];
    let reg = Registry::new();
    let op = RedOperator::new(&cfg.windows, &cfg.red, vec![table.clone()], &reg);
    (table, op)
}

#[test]
fn a_window_is_never_both_final_and_provisional() {
    let (table, mut op) = table_and_operator(5_000_000_000);
    let t0 = 1_700_000_000_000_000_000u64;
    op.process_spans(
        &span_batch(SourceId(0), 0, &[SpanFixture::new("s", "x", t0 + 1, 1.0)]),
        t0,
    );
    op.publish_provisional();
    let rows = |t: &RedTable| -> usize {
        t.snapshot(&PruneFilter::default())
            .iter()
            .map(|b| b.num_rows())
            .sum()
    };
    assert_eq!(rows(&table), 1);
    op.advance(t0 + 20_000_000_000);
    assert_eq!(
        rows(&table),
        1,
        "the final row replaced the provisional one"
    );
}

#[test]
fn red_windows_lists_final_windows_and_a_restatement_gives_a_new_version() {
    use arrow::array::{Array, BooleanArray, Int64Array, StringArray};
    let (table, mut op) = table_and_operator(30_000_000_000);
    let windows = table.windows();
    // (window_size, series, version, sealed) of every listed window.
    let list = |f: &PruneFilter| -> Vec<(String, i64, i64, bool)> {
        let batches = windows.snapshot(f);
        let mut out = Vec::new();
        for b in &batches {
            let col = |i: usize| b.column(i).clone();
            let size = col(0);
            let size = size.as_any().downcast_ref::<StringArray>().unwrap();
            let series = col(3);
            let series = series.as_any().downcast_ref::<Int64Array>().unwrap();
            let version = col(4);
            let version = version.as_any().downcast_ref::<Int64Array>().unwrap();
            let sealed = col(5);
            let sealed = sealed.as_any().downcast_ref::<BooleanArray>().unwrap();
            for i in 0..b.num_rows() {
                out.push((
                    size.value(i).to_string(),
                    series.value(i),
                    version.value(i),
                    sealed.value(i),
                ));
            }
        }
        out
    };
    let all = PruneFilter::default();
    let t0 = 1_700_000_000_000_000_000u64;
    let span =
        |svc: &str, t: u64| span_batch(SourceId(0), 0, &[SpanFixture::new(svc, "x", t, 1.0)]);
    op.process_spans(&span("a", t0 + 1), t0);
    op.publish_provisional();
    assert!(list(&all).is_empty(), "an open window is not listed");
    op.advance(t0 + 10_000_000_000);
    let first = list(&all);
    assert_eq!(first.len(), 1);
    assert_eq!(
        (first[0].0.as_str(), first[0].1, first[0].3),
        ("10s", 1, false)
    );
    // The next window closes: the first keeps its version.
    op.process_spans(&span("a", t0 + 10_000_000_001), t0);
    op.advance(t0 + 20_000_000_000);
    let second = list(&all);
    assert_eq!(second.len(), 2);
    assert_eq!(second[0], first[0]);
    assert_ne!(second[1].2, first[0].2);
    // Late data restates the first window: a new version and a second series.
    op.process_spans(&span("b", t0 + 2), t0);
    op.advance(t0 + 20_000_000_001);
    let third = list(&all);
    assert_eq!(third.len(), 2);
    assert_eq!(third[0].1, 2, "{third:?}");
    assert_ne!(
        third[0].2, first[0].2,
        "the restated window has a new version"
    );
    assert_eq!(third[1], second[1], "the other window is unchanged");
    // Filters on window_size and the window times prune the list.
    let ts = |ns: u64| {
        datafusion::logical_expr::lit(datafusion::common::ScalarValue::TimestampMillisecond(
            Some((ns / 1_000_000) as i64),
            Some("UTC".into()),
        ))
    };
    use datafusion::logical_expr::{col, lit};
    let f = PruneFilter::from_exprs(
        &[col("window_start").gt_eq(ts(t0 + 10_000_000_000))],
        &["window_start", "window_end"],
    );
    assert_eq!(list(&f), vec![third[1].clone()]);
    let f = PruneFilter::from_exprs(
        &[col("window_size").eq(lit("1m"))],
        &["window_start", "window_end"],
    );
    assert!(list(&f).is_empty());
    // Sealed once no late data can reach it.
    op.process_spans(&span("a", t0 + 60_000_000_001), t0);
    op.advance(t0 + 70_000_000_000);
    assert!(list(&all)[0].3, "{:?}", list(&all));
    assert_eq!(list(&all)[0].2, third[0].2, "sealing keeps the version");
}

/// Calls of every final `window_size` row, summed per window size.
fn final_calls(table: &RedTable, size: &str) -> f64 {
    use arrow::array::{Array, Float64Array, StringArray};
    let mut calls = 0.0;
    for b in table.snapshot(&PruneFilter::default()) {
        let col = |name: &str| b.column(b.schema().index_of(name).unwrap()).clone();
        let (sizes, c, fin) = (col("window_size"), col("calls"), col("is_final"));
        let sizes = sizes.as_any().downcast_ref::<StringArray>().unwrap();
        let c = c.as_any().downcast_ref::<Float64Array>().unwrap();
        let fin = fin
            .as_any()
            .downcast_ref::<arrow::array::BooleanArray>()
            .unwrap();
        for i in 0..b.num_rows() {
            if sizes.value(i) == size && fin.value(i) {
                calls += c.value(i);
            }
        }
    }
    calls
}

#[test]
fn a_rollup_restated_in_the_step_that_moves_the_primary_past_its_lateness_keeps_the_restatement() {
    // The default windows: 10 s primary, 1 m rollup, 30 s allowed lateness.
    let table = table(30_000_000_000);
    let cfg = SpanSections::default();
    assert_eq!(cfg.windows.rollups.len(), 1);
    let mut op = RedOperator::new(
        &cfg.windows,
        &cfg.red,
        vec![table.clone()],
        &Registry::new(),
    );
    let s = 1_000_000_000u64;
    let t0 = 1_700_000_040 * s; // a minute boundary
    assert_eq!(t0 % (60 * s), 0);
    let span = |t: u64| span_batch(SourceId(0), 0, &[SpanFixture::new("a", "x", t, 1.0)]);
    op.process_spans(&span(t0 + 55 * s), t0);
    op.advance(t0 + 60 * s);
    assert_eq!(final_calls(&table, "1m"), 1.0);
    // A late span of [50 s, 60 s) (inside its lateness) and a span 40 s on: one watermark step
    // restates the primary and the rollup and moves the primary's newest window end past the
    // rollup's end plus lateness. The rollup's restatement is the engine's last word on it.
    op.process_spans(&span(t0 + 56 * s), t0);
    op.process_spans(&span(t0 + 95 * s), t0);
    op.advance(t0 + 100 * s);
    assert_eq!(final_calls(&table, "10s"), 3.0);
    assert_eq!(
        final_calls(&table, "1m"),
        2.0,
        "the rollup's late restatement was dropped"
    );
}
