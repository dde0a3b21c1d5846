//! `quantile_merge` in SQL equals merging the same sketches in Rust: with and without GROUP BY,
//! over several batches and partitions (partial and final aggregation, intermediate states),
//! with an aggregate FILTER, with NULL sketches, and with DataFusion skipping the partial
//! aggregation (states built straight from the input rows); with several quantiles of one
//! column merged once (`quantiles_merge`, via the `share_quantile_merges` rule) or separately.

use arrow::array::{ArrayRef, BinaryArray, BooleanArray, Float64Array, Int64Array};
use arrow::datatypes::{DataType, Field, Schema};
use arrow::record_batch::RecordBatch;
use datafusion::datasource::MemTable;
use datafusion::prelude::{SessionConfig, SessionContext};
use proptest::prelude::*;
use redwatch_operators::red::sketch::QuantileSketch;
use std::collections::BTreeMap;
use std::sync::Arc;

/// One input row: group, sketch (None = NULL), whether the FILTER keeps it.
type Row = (i64, Option<QuantileSketch>, bool);

fn sketch_strategy() -> impl Strategy<Value = Option<QuantileSketch>> {
    let value = prop_oneof![
        Just(0.0),
        (-3.0f64..9.0).prop_map(f64::exp),
        (1.0f64..5.0).prop_map(f64::exp),
    ];
    // Integral weights: merging is then exact in any order, as DataFusion's partial/final
    // aggregation regroups the merges.
    let values = prop::collection::vec((value, 1u32..4), 0..80);
    prop_oneof![
        1 => Just(None),
        8 => values.prop_map(|vs| {
            let mut s = QuantileSketch::new();
            for (v, w) in vs {
                s.add(v, f64::from(w));
            }
            Some(s)
        }),
    ]
}

fn rows_strategy() -> impl Strategy<Value = Vec<Row>> {
    prop::collection::vec(
        (0i64..12, sketch_strategy(), prop::bool::weighted(0.8)),
        0..150,
    )
}

fn batch(rows: &[Row]) -> RecordBatch {
    let schema = Arc::new(Schema::new(vec![
        Field::new("g", DataType::Int64, false),
        Field::new("s", DataType::Binary, true),
        Field::new("keep", DataType::Boolean, false),
    ]));
    let bytes: Vec<Option<Vec<u8>>> = rows
        .iter()
        .map(|r| r.1.as_ref().map(QuantileSketch::to_bytes))
        .collect();
    let cols: Vec<ArrayRef> = vec![
        Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.0))),
        Arc::new(BinaryArray::from_iter(bytes.iter().map(|b| b.as_deref()))),
        Arc::new(BooleanArray::from_iter(rows.iter().map(|r| Some(r.2)))),
    ];
    RecordBatch::try_new(schema, cols).expect("batch")
}

/// Rows split into `parts` partitions of batches of at most 7 rows.
fn table(rows: &[Row], parts: usize) -> MemTable {
    let mut partitions: Vec<Vec<RecordBatch>> = vec![Vec::new(); parts];
    for (i, chunk) in rows.chunks(7).enumerate() {
        partitions[i % parts].push(batch(chunk));
    }
    let schema = batch(&[]).schema();
    MemTable::try_new(schema, partitions).expect("mem table")
}

fn expected(rows: &[Row], filtered: bool) -> BTreeMap<i64, QuantileSketch> {
    let mut groups: BTreeMap<i64, QuantileSketch> = BTreeMap::new();
    for (g, s, keep) in rows {
        let acc = groups.entry(*g).or_default();
        if let (Some(s), true) = (s, *keep || !filtered) {
            acc.merge(s);
        }
    }
    groups
}

fn run(ctx: &SessionContext, sql: &str) -> Vec<RecordBatch> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    rt.block_on(async {
        ctx.sql(sql)
            .await
            .expect("plans")
            .collect()
            .await
            .expect("runs")
    })
}

/// With `shared`, the functions are registered as the query engine does (with the
/// `share_quantile_merges` rule, so same-column quantiles run as one `quantiles_merge`);
/// without, every `quantile_merge` merges on its own.
fn context(rows: &[Row], parts: usize, skip_partial: bool, shared: bool) -> SessionContext {
    let mut config = SessionConfig::new().with_target_partitions(parts);
    if skip_partial {
        let agg = &mut config.options_mut().execution;
        agg.skip_partial_aggregation_probe_rows_threshold = 1;
        agg.skip_partial_aggregation_probe_ratio_threshold = 0.0;
    }
    let ctx = SessionContext::new_with_config(config);
    ctx.register_table("t", Arc::new(table(rows, parts)))
        .expect("register");
    if shared {
        redwatch_queries::udf::register(&ctx);
    } else {
        ctx.register_udaf(redwatch_queries::udf::quantile_merge());
    }
    ctx
}

const QS: [f64; 4] = [0.0, 0.5, 0.99, 1.0];

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn sql_quantile_merge_equals_merging_in_rust(
        rows in rows_strategy(),
        parts in 1usize..4,
        skip_partial in any::<bool>(),
        shared in any::<bool>(),
    ) {
        let ctx = context(&rows, parts, skip_partial, shared);
        let all = expected(&rows, false);
        let kept = expected(&rows, true);
        let sql = format!(
            "SELECT g, {}, {} FROM t GROUP BY g ORDER BY g",
            QS.iter()
                .map(|q| format!("quantile_merge(s, {q:?})"))
                .collect::<Vec<_>>()
                .join(", "),
            QS.iter()
                .map(|q| format!("quantile_merge(s, {q:?}) FILTER (WHERE keep)"))
                .collect::<Vec<_>>()
                .join(", "),
        );
        let mut got: Vec<(i64, Vec<Option<f64>>)> = Vec::new();
        for b in run(&ctx, &sql) {
            let g = b.column(0).as_any().downcast_ref::<Int64Array>().expect("g");
            for i in 0..b.num_rows() {
                let values = (1..b.num_columns())
                    .map(|c| {
                        let a = b.column(c).as_any().downcast_ref::<Float64Array>().expect("f64");
                        arrow::array::Array::is_valid(a, i).then(|| a.value(i))
                    })
                    .collect();
                got.push((g.value(i), values));
            }
        }
        let want: Vec<(i64, Vec<Option<f64>>)> = all
            .iter()
            .map(|(g, s)| {
                let k = &kept[g];
                let values = QS.iter().map(|&q| s.quantile(q))
                    .chain(QS.iter().map(|&q| k.quantile(q)))
                    .collect();
                (*g, values)
            })
            .collect();
        prop_assert_eq!(got, want);

        // Without GROUP BY: one sketch of everything.
        let mut one = QuantileSketch::new();
        for s in all.values() {
            one.merge(s);
        }
        let b = run(&ctx, "SELECT quantile_merge(s, 0.9), quantile_merge(s, 1) FROM t");
        let a = b[0].column(0).as_any().downcast_ref::<Float64Array>().expect("f64");
        let top = b[0].column(1).as_any().downcast_ref::<Float64Array>().expect("f64");
        prop_assert_eq!(arrow::array::Array::is_valid(a, 0).then(|| a.value(0)), one.quantile(0.9));
        prop_assert_eq!(
            arrow::array::Array::is_valid(top, 0).then(|| top.value(0)),
            one.quantile(1.0)
        );
    }
}

#[test]
fn a_corrupt_sketch_is_a_clear_error_in_both_accumulators() {
    let rows: Vec<Row> = vec![(1, Some(QuantileSketch::new()), true)];
    let mut b = batch(&rows);
    let bad: ArrayRef = Arc::new(BinaryArray::from_iter_values([b"\x01\x09".as_slice()]));
    let mut cols = b.columns().to_vec();
    cols[1] = bad;
    b = RecordBatch::try_new(b.schema(), cols).expect("batch");
    let ctx = SessionContext::new();
    ctx.register_table(
        "t",
        Arc::new(MemTable::try_new(b.schema(), vec![vec![b]]).expect("table")),
    )
    .expect("register");
    redwatch_queries::udf::register(&ctx);
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    for sql in [
        "SELECT quantile_merge(s, 0.5) FROM t",
        "SELECT g, quantile_merge(s, 0.5) FROM t GROUP BY g",
        "SELECT quantile_merge(s, 0.5), quantile_merge(s, 0.99) FROM t",
        "SELECT g, quantile_merge(s, 0.5), quantile_merge(s, 0.99) FROM t GROUP BY g",
        "SELECT quantiles_merge(s, 0.5, 0.99) FROM t",
        "SELECT g, quantiles_merge(s, 0.5, 0.99) FROM t GROUP BY g",
    ] {
        let err = rt
            .block_on(async { ctx.sql(sql).await?.collect().await })
            .expect_err("a corrupt sketch fails the query");
        assert!(
            err.to_string().contains("not a redwatch duration sketch"),
            "{sql}: {err}"
        );
    }
}

#[test]
fn quantiles_merge_returns_every_quantile_of_one_merge() {
    let mut rows: Vec<Row> = Vec::new();
    for i in 0..40u32 {
        let mut s = QuantileSketch::new();
        for j in 0..(5 + i % 7) {
            s.add(f64::from(1 + (i * 37 + j * 11) % 500), f64::from(1 + j % 3));
        }
        rows.push((i64::from(i % 3), Some(s), i % 4 != 0));
    }
    rows.push((1, None, true));
    let ctx = context(&rows, 2, false, true);
    let want = expected(&rows, false);
    let b = run(
        &ctx,
        "SELECT g, q['q1'] AS a, q['q2'] AS b, q['q3'] AS c FROM \
         (SELECT g, quantiles_merge(s, 0.5, 0.99, 1) AS q FROM t GROUP BY g) ORDER BY g",
    );
    let mut got = Vec::new();
    for b in &b {
        let col = |c: usize| {
            b.column(c)
                .as_any()
                .downcast_ref::<Float64Array>()
                .expect("f64")
                .clone()
        };
        let g = b
            .column(0)
            .as_any()
            .downcast_ref::<Int64Array>()
            .expect("g");
        for i in 0..b.num_rows() {
            got.push((
                g.value(i),
                [col(1).value(i), col(2).value(i), col(3).value(i)],
            ));
        }
    }
    let want: Vec<(i64, [f64; 3])> = want
        .iter()
        .map(|(g, s)| {
            let q = |q: f64| s.quantile(q).expect("non-empty");
            (*g, [q(0.5), q(0.99), q(1.0)])
        })
        .collect();
    assert_eq!(got, want);
}

#[test]
fn quantiles_merge_bad_calls_are_clear_errors() {
    let rows: Vec<Row> = vec![(1, Some(QuantileSketch::new()), true)];
    let ctx = context(&rows, 1, false, true);
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    for (sql, message) in [
        (
            "SELECT quantiles_merge(s) FROM t",
            "needs a sketch column and quantiles",
        ),
        (
            "SELECT quantiles_merge(g, 0.5) FROM t",
            "must be a sketch column (BINARY)",
        ),
        (
            "SELECT quantiles_merge(s, 'x') FROM t",
            "q must be a number",
        ),
        (
            "SELECT quantiles_merge(s, 0.5, 1.5) FROM t",
            "q must be between 0 and 1",
        ),
        (
            "SELECT quantiles_merge(s, 0.5, g) FROM t",
            "quantiles must be constant numbers",
        ),
        (
            "SELECT g, quantiles_merge(s, g) FROM t GROUP BY g",
            "quantiles must be constant numbers",
        ),
    ] {
        let err = rt
            .block_on(async { ctx.sql(sql).await?.collect().await })
            .expect_err("a bad call fails the query");
        assert!(err.to_string().contains(message), "{sql}: {err}");
    }
}
