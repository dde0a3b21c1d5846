//! The `share_quantile_merges` optimizer rule: in one aggregate, several
//! `quantile_merge(s, q)` over the same sketch column (same FILTER) become one
//! `quantiles_merge(s, q1, q2, …)` and a projection that names its fields as the original
//! aggregates were named — every row's sketch is then merged once instead of once per
//! quantile. The results are identical: each quantile is read from the same merged sketch the
//! separate aggregates would each have built.
//!
//! Must not change a plan it does not fully understand: only constant quantiles in [0, 1]
//! (others keep `quantile_merge`'s own errors), no DISTINCT, ORDER BY or grouping sets; if
//! the rewritten plan does not have the original schema, the original plan is kept.

use super::quantiles::quantiles_merge;
use datafusion::common::tree_node::Transformed;
use datafusion::common::{Column, ScalarValue};
use datafusion::error::Result;
use datafusion::functions::core::expr_fn::get_field;
use datafusion::logical_expr::expr::{AggregateFunction, AggregateFunctionParams};
use datafusion::logical_expr::{Aggregate, Expr, LogicalPlan, Projection};
use datafusion::optimizer::optimizer::ApplyOrder;
use datafusion::optimizer::{OptimizerConfig, OptimizerRule};
use std::sync::Arc;

/// See the module doc.
#[derive(Debug, Default)]
pub struct ShareQuantileMerges;

impl OptimizerRule for ShareQuantileMerges {
    fn name(&self) -> &str {
        "share_quantile_merges"
    }

    fn apply_order(&self) -> Option<ApplyOrder> {
        Some(ApplyOrder::BottomUp)
    }

    fn rewrite(
        &self,
        plan: LogicalPlan,
        _config: &dyn OptimizerConfig,
    ) -> Result<Transformed<LogicalPlan>> {
        let LogicalPlan::Aggregate(agg) = &plan else {
            return Ok(Transformed::no(plan));
        };
        match share(agg) {
            Some(shared) => Ok(Transformed::yes(shared)),
            None => Ok(Transformed::no(plan)),
        }
    }
}

/// A `quantile_merge` call that can share its merge: its parameters without the quantile.
struct Candidate<'a> {
    sketch: &'a Expr,
    filter: &'a Option<Box<Expr>>,
    q: f64,
}

fn candidate(e: &Expr) -> Option<Candidate<'_>> {
    let e = match e {
        Expr::Alias(a) => a.expr.as_ref(),
        e => e,
    };
    let Expr::AggregateFunction(AggregateFunction { func, params }) = e else {
        return None;
    };
    let AggregateFunctionParams {
        args,
        distinct,
        filter,
        order_by,
        null_treatment: _,
    } = params;
    if func.name() != "quantile_merge" || *distinct || !order_by.is_empty() {
        return None;
    }
    let [sketch, Expr::Literal(q, _)] = args.as_slice() else {
        return None;
    };
    let q = match q {
        ScalarValue::Float64(Some(q)) => *q,
        ScalarValue::Int64(Some(q)) => *q as f64,
        _ => return None,
    };
    (0.0..=1.0)
        .contains(&q)
        .then_some(Candidate { sketch, filter, q })
}

/// The aggregate with shared merges under a projection restoring its schema, or `None` when
/// nothing is shared (or anything looks unexpected).
fn share(agg: &Aggregate) -> Option<LogicalPlan> {
    if agg
        .group_expr
        .iter()
        .any(|e| matches!(e, Expr::GroupingSet(_)))
    {
        return None;
    }
    // Families of aggregates (by index) sharing one sketch column and filter.
    let mut families: Vec<(Candidate<'_>, Vec<(usize, f64)>)> = Vec::new();
    for (i, e) in agg.aggr_expr.iter().enumerate() {
        let Some(c) = candidate(e) else { continue };
        match families
            .iter_mut()
            .find(|(f, _)| f.sketch == c.sketch && f.filter == c.filter)
        {
            Some((_, members)) => members.push((i, c.q)),
            None => {
                let q = c.q;
                families.push((c, vec![(i, q)]));
            }
        }
    }
    families.retain(|(_, members)| members.len() > 1);
    if families.is_empty() {
        return None;
    }
    // Where each original aggregate is read from: (new aggregate index, field of the struct).
    let mut source: Vec<(usize, Option<usize>)> = Vec::with_capacity(agg.aggr_expr.len());
    let mut aggr_expr = Vec::with_capacity(agg.aggr_expr.len());
    for (i, e) in agg.aggr_expr.iter().enumerate() {
        let family = families
            .iter()
            .find(|(_, members)| members.iter().any(|(m, _)| *m == i));
        match family {
            None => {
                source.push((aggr_expr.len(), None));
                aggr_expr.push(e.clone());
            }
            Some((c, members)) => {
                let field = members.iter().position(|(m, _)| *m == i)?;
                let first = members[0].0;
                if first == i {
                    let mut args = vec![c.sketch.clone()];
                    args.extend(
                        members
                            .iter()
                            .map(|&(_, q)| Expr::Literal(ScalarValue::Float64(Some(q)), None)),
                    );
                    aggr_expr.push(Expr::AggregateFunction(AggregateFunction::new_udf(
                        Arc::new(quantiles_merge()),
                        args,
                        false,
                        c.filter.clone(),
                        Vec::new(),
                        None,
                    )));
                    source.push((aggr_expr.len() - 1, Some(field)));
                } else {
                    // Read from the family's combined aggregate, placed at its first member.
                    let (at, _) = *source.get(first)?;
                    source.push((at, Some(field)));
                }
            }
        }
    }
    let shared = Aggregate::try_new(agg.input.clone(), agg.group_expr.clone(), aggr_expr).ok()?;
    let groups = agg.group_expr_len().ok()?;
    let column = |index: usize| {
        let (qualifier, field) = shared.schema.qualified_field(index);
        Expr::Column(Column::new(qualifier.cloned(), field.name()))
    };
    let mut exprs: Vec<Expr> = (0..groups).map(column).collect();
    for (i, (at, field)) in source.into_iter().enumerate() {
        let (qualifier, original) = agg.schema.qualified_field(groups + i);
        let value = match field {
            None => column(groups + at),
            Some(f) => get_field(column(groups + at), format!("q{}", f + 1)),
        };
        exprs.push(value.alias_qualified(qualifier.cloned(), original.name()));
    }
    let projection = Projection::try_new(exprs, Arc::new(LogicalPlan::Aggregate(shared))).ok()?;
    let same_schema = projection.schema.fields().len() == agg.schema.fields().len()
        && projection
            .schema
            .iter()
            .zip(agg.schema.iter())
            .all(|((qa, a), (qb, b))| {
                qa == qb && a.name() == b.name() && a.data_type() == b.data_type()
            });
    same_schema.then_some(LogicalPlan::Projection(projection))
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{ArrayRef, BinaryArray, Int64Array};
    use arrow::datatypes::{DataType, Field, Schema};
    use arrow::record_batch::RecordBatch;
    use datafusion::datasource::MemTable;
    use datafusion::prelude::SessionContext;
    use redwatch_operators::red::sketch::QuantileSketch;

    fn context() -> SessionContext {
        let schema = Arc::new(Schema::new(vec![
            Field::new("g", DataType::Int64, false),
            Field::new("s", DataType::Binary, true),
            Field::new("t", DataType::Binary, true),
        ]));
        let sketch = |vs: &[f64]| {
            let mut s = QuantileSketch::new();
            for &v in vs {
                s.add(v, 1.0);
            }
            s.to_bytes()
        };
        let a = sketch(&[1.0, 2.0, 3.0]);
        let b = sketch(&[10.0, 20.0]);
        let cols: Vec<ArrayRef> = vec![
            Arc::new(Int64Array::from(vec![1, 1, 2])),
            Arc::new(BinaryArray::from_iter_values([&a, &b, &a])),
            Arc::new(BinaryArray::from_iter_values([&b, &a, &b])),
        ];
        let batch = RecordBatch::try_new(schema.clone(), cols).expect("batch");
        let ctx = SessionContext::new();
        ctx.register_table(
            "t",
            Arc::new(MemTable::try_new(schema, vec![vec![batch]]).expect("table")),
        )
        .expect("register");
        super::super::register(&ctx);
        ctx
    }

    async fn plan_and_rows(ctx: &SessionContext, sql: &str) -> (String, Vec<String>) {
        let df = ctx.sql(sql).await.expect("plans");
        let plan = df.clone().into_optimized_plan().expect("optimizes");
        let batches = df.collect().await.expect("runs");
        let text = arrow::util::pretty::pretty_format_batches(&batches)
            .expect("formats")
            .to_string();
        let plan = plan.display_indent().to_string();
        (plan, text.lines().map(str::to_string).collect())
    }

    fn aggregate_line(plan: &str) -> &str {
        plan.lines()
            .find(|l| l.trim_start().starts_with("Aggregate:"))
            .unwrap_or_else(|| panic!("no aggregate in {plan}"))
    }

    /// The same query without the rule: every `quantile_merge` separately.
    async fn rows_without_rule(sql: &str) -> Vec<String> {
        let ctx = context();
        ctx.remove_optimizer_rule("share_quantile_merges");
        plan_and_rows(&ctx, sql).await.1
    }

    #[tokio::test]
    async fn two_quantiles_of_one_column_share_one_merge() {
        let ctx = context();
        let sql = "SELECT g, quantile_merge(s, 0.5) AS p50, count(*) AS n, \
                   quantile_merge(s, 0.99) AS p99, quantile_merge(t, 1) AS t100, \
                   quantile_merge(s, 1) FROM t GROUP BY g ORDER BY g";
        let (plan, rows) = plan_and_rows(&ctx, sql).await;
        let aggregate = aggregate_line(&plan);
        assert!(
            aggregate.contains("quantiles_merge(t.s, Float64(0.5), Float64(0.99), Float64(1))"),
            "{plan}"
        );
        assert!(
            aggregate.contains("quantile_merge(t.t, Int64(1))"),
            "{plan}"
        );
        assert!(!aggregate.contains("quantile_merge(t.s"), "{plan}");
        assert_eq!(rows, rows_without_rule(sql).await);
        assert!(rows.iter().any(|l| l.contains("p50")), "{rows:?}");
    }

    #[tokio::test]
    async fn without_group_by_and_with_filters() {
        let ctx = context();
        for sql in [
            "SELECT quantile_merge(s, 0.5), quantile_merge(s, 0.9) FROM t",
            "SELECT quantile_merge(s, 0.5) FILTER (WHERE g = 1) AS a, \
             quantile_merge(s, 0.9) FILTER (WHERE g = 1) AS b, quantile_merge(s, 0.9) AS c FROM t",
            "SELECT g, quantile_merge(s, 0.5) + 1 AS x, quantile_merge(s, 0.99) * 2 AS y FROM t \
             GROUP BY g HAVING quantile_merge(s, 0.99) > 1 ORDER BY g",
        ] {
            let (plan, rows) = plan_and_rows(&ctx, sql).await;
            assert!(
                aggregate_line(&plan).contains("quantiles_merge"),
                "{sql}\n{plan}"
            );
            assert_eq!(rows, rows_without_rule(sql).await, "{sql}");
        }
    }

    #[tokio::test]
    async fn what_it_does_not_understand_is_left_alone() {
        let ctx = context();
        for (sql, error) in [
            (
                "SELECT quantile_merge(s, 0.5) AS a, quantile_merge(t, 0.5) AS b FROM t",
                None,
            ),
            (
                "SELECT quantile_merge(s, 0.5), quantile_merge(s, 1.5) FROM t",
                Some("q must be between 0 and 1"),
            ),
            (
                "SELECT quantile_merge(s, NULL), quantile_merge(s, 0.5) FROM t",
                None,
            ),
        ] {
            let df = ctx.sql(sql).await.expect("plans");
            let plan = df.clone().into_optimized_plan().expect("optimizes");
            let plan = plan.display_indent().to_string();
            assert!(
                !aggregate_line(&plan).contains("quantiles_merge"),
                "{sql}\n{plan}"
            );
            match (df.collect().await, error) {
                (Ok(_), None) => {}
                (Err(e), Some(want)) => assert!(e.to_string().contains(want), "{e}"),
                (r, want) => panic!("{sql}: {:?} but expected error {want:?}", r.map(|_| ())),
            }
        }
    }
}
