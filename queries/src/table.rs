//! Live tables as DataFusion `TableProvider`s: a table is a set of immutable partitions (Arrow
//! record batches) with known time and service ranges, handed out as a snapshot per query.
//!
//! A scan takes the partitions that can match the query's filters on time columns and
//! `service_name` (so "the last 5 minutes" never touches an hour of data), clones their
//! `RecordBatch`es (reference-counted arrays, no copy) and lets DataFusion run the rest. Writers
//! never wait for a query: the snapshot is taken under a short lock.

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use async_trait::async_trait;
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::ScalarValue;
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::datasource::source::DataSourceExec;
use datafusion::error::Result as DfResult;
use datafusion::logical_expr::{
    BinaryExpr, Expr, Operator, TableProviderFilterPushDown, TableType,
};
use datafusion::physical_plan::ExecutionPlan;
use std::sync::Arc;

/// One immutable chunk of a table, with the ranges used for pruning.
#[derive(Debug, Clone)]
pub struct Partition {
    pub batch: RecordBatch,
    /// Inclusive `[min, max]` in Unix nanoseconds of each time column that can be pruned on.
    pub time_ranges: Vec<(&'static str, i128, i128)>,
    /// Inclusive `[min, max]` of `service_name` in this partition (None = unknown / any).
    pub service_range: Option<(String, String)>,
}

impl Partition {
    /// Bytes held by the batch.
    pub fn bytes(&self) -> usize {
        self.batch.get_array_memory_size()
    }
}

/// Where a live table's partitions come from.
pub trait PartitionSource: Send + Sync + std::fmt::Debug {
    /// The partitions that may hold rows matching `filter`.
    fn snapshot(&self, filter: &PruneFilter) -> Vec<RecordBatch>;

    /// String columns (among those [`PruneFilter`] restricts) that hold one value per partition,
    /// so that `snapshot` applies `column = 'x'` / `IN (…)` / an OR of those exactly and
    /// DataFusion need not re-check them row by row.
    fn exact_columns(&self) -> &'static [&'static str] {
        &[]
    }
}

/// Constraints extracted from a query's filters.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PruneFilter {
    /// `(column, op, value in ns)` with op one of `<`, `<=`, `=`, `>=`, `>`.
    pub time: Vec<(String, Operator, i128)>,
    /// `service_name` must be one of these (None = unconstrained).
    pub services: Option<Vec<String>>,
    /// `window_size` must be one of these (None = unconstrained).
    pub window_sizes: Option<Vec<String>>,
}

impl PruneFilter {
    /// Whether a partition with these ranges may hold matching rows.
    pub fn may_match(&self, p: &Partition) -> bool {
        if !self.times_may_match(&p.time_ranges) {
            return false;
        }
        if let Some((lo, hi)) = &p.service_range {
            if !self.services_may_match(lo, hi) {
                return false;
            }
        }
        true
    }

    /// Whether rows whose time columns lie in these inclusive `(column, min, max)` ranges (ns)
    /// may match.
    pub fn times_may_match(&self, ranges: &[(&'static str, i128, i128)]) -> bool {
        for (col, op, v) in &self.time {
            if let Some((_, lo, hi)) = ranges.iter().find(|(c, _, _)| c == col) {
                let possible = match op {
                    Operator::Lt => *lo < *v,
                    Operator::LtEq => *lo <= *v,
                    Operator::Gt => *hi > *v,
                    Operator::GtEq => *hi >= *v,
                    Operator::Eq => *lo <= *v && *v <= *hi,
                    _ => true,
                };
                if !possible {
                    return false;
                }
            }
        }
        true
    }

    /// Whether rows whose `service_name` lies in `lo..=hi` may match.
    pub fn services_may_match(&self, lo: &str, hi: &str) -> bool {
        match &self.services {
            Some(wanted) => wanted.iter().any(|s| s.as_str() >= lo && s.as_str() <= hi),
            None => true,
        }
    }

    /// Whether rows of window spec `label` (`window_size`) may match.
    pub fn window_size_may_match(&self, label: &str) -> bool {
        match &self.window_sizes {
            Some(wanted) => wanted.iter().any(|s| s == label),
            None => true,
        }
    }

    /// Narrows the allowed values of a string column (AND of constraints: intersection).
    fn restrict(&mut self, column: &str, values: Vec<String>) {
        let slot = match column {
            "service_name" => &mut self.services,
            "window_size" => &mut self.window_sizes,
            _ => return,
        };
        *slot = Some(match slot.take() {
            Some(old) => old.into_iter().filter(|v| values.contains(v)).collect(),
            None => values,
        });
    }

    /// Extracts prunable constraints from pushed-down filters; anything else is ignored (the
    /// filters are `Inexact`, DataFusion re-applies them).
    pub fn from_exprs(filters: &[Expr], time_columns: &[&str]) -> PruneFilter {
        let mut out = PruneFilter::default();
        for f in filters {
            out.add(f, time_columns);
        }
        out
    }

    fn add(&mut self, e: &Expr, time_columns: &[&str]) {
        match e {
            Expr::BinaryExpr(BinaryExpr { left, op, right }) => {
                if *op == Operator::And {
                    self.add(left, time_columns);
                    self.add(right, time_columns);
                    return;
                }
                if *op == Operator::Or {
                    // `c = 'a' OR c = 'b'` (how DataFusion rewrites a short IN list).
                    if let Some((col, values)) = string_set(e) {
                        self.restrict(&col, values);
                    }
                    return;
                }
                let (col, lit, op) = match (column_name(left), literal(right)) {
                    (Some(c), Some(l)) => (c, l, *op),
                    _ => match (literal(left), column_name(right)) {
                        (Some(l), Some(c)) => match op.swap() {
                            Some(swapped) => (c, l, swapped),
                            None => return,
                        },
                        _ => return,
                    },
                };
                if time_columns.contains(&col.as_str()) {
                    if let Some(ns) = timestamp_ns(&lit) {
                        self.time.push((col, op, ns));
                    }
                } else if op == Operator::Eq {
                    if let Some(s) = string(&lit) {
                        self.restrict(&col, vec![s]);
                    }
                }
            }
            Expr::Between(b) if !b.negated => {
                if let (Some(col), Some(lo), Some(hi)) =
                    (column_name(&b.expr), literal(&b.low), literal(&b.high))
                {
                    if time_columns.contains(&col.as_str()) {
                        if let (Some(lo), Some(hi)) = (timestamp_ns(&lo), timestamp_ns(&hi)) {
                            self.time.push((col.clone(), Operator::GtEq, lo));
                            self.time.push((col, Operator::LtEq, hi));
                        }
                    }
                }
            }
            Expr::InList(_) => {
                if let Some((col, values)) = string_set(e) {
                    self.restrict(&col, values);
                }
            }
            _ => {}
        }
    }
}

/// `(column, values)` when `e` says the string column is one of the values: `c = 'x'`,
/// `c IN ('x', …)`, or an OR of those on the same column.
fn string_set(e: &Expr) -> Option<(String, Vec<String>)> {
    match e {
        Expr::BinaryExpr(BinaryExpr { left, op, right }) => match op {
            Operator::Eq => {
                let (c, l) = match (column_name(left), literal(right)) {
                    (Some(c), Some(l)) => (c, l),
                    _ => (column_name(right)?, literal(left)?),
                };
                Some((c, vec![string(&l)?]))
            }
            Operator::Or => {
                let (c1, mut v1) = string_set(left)?;
                let (c2, v2) = string_set(right)?;
                if c1 != c2 {
                    return None;
                }
                v1.extend(v2);
                Some((c1, v1))
            }
            _ => None,
        },
        Expr::InList(l) if !l.negated => {
            let col = column_name(&l.expr)?;
            let values = l
                .list
                .iter()
                .map(|e| literal(e).and_then(|v| string(&v)))
                .collect::<Option<Vec<String>>>()?;
            Some((col, values))
        }
        _ => None,
    }
}

/// The column of a filter that is exactly a [`string_set`] over a plain column and plain
/// string literals (no casts): what a source with that column in
/// [`PartitionSource::exact_columns`] applies exactly.
fn plain_string_set(e: &Expr) -> Option<&str> {
    let plain_literal = |e: &Expr| match e {
        Expr::Literal(v, _) => string(v).is_some(),
        _ => false,
    };
    match e {
        Expr::BinaryExpr(BinaryExpr {
            left,
            op: Operator::Eq,
            right,
        }) => match (left.as_ref(), right.as_ref()) {
            (Expr::Column(c), l) | (l, Expr::Column(c)) if plain_literal(l) => Some(&c.name),
            _ => None,
        },
        Expr::BinaryExpr(BinaryExpr {
            left,
            op: Operator::Or,
            right,
        }) => {
            let a = plain_string_set(left)?;
            (plain_string_set(right)? == a).then_some(a)
        }
        Expr::InList(l) if !l.negated && l.list.iter().all(plain_literal) => {
            match l.expr.as_ref() {
                Expr::Column(c) => Some(&c.name),
                _ => None,
            }
        }
        _ => None,
    }
}

fn column_name(e: &Expr) -> Option<String> {
    match e {
        Expr::Column(c) => Some(c.name.clone()),
        Expr::Cast(c) => column_name(&c.expr),
        Expr::TryCast(c) => column_name(&c.expr),
        _ => None,
    }
}

fn literal(e: &Expr) -> Option<ScalarValue> {
    match e {
        Expr::Literal(v, _) => Some(v.clone()),
        Expr::Cast(c) => {
            let v = literal(&c.expr)?;
            v.cast_to(c.field.data_type()).ok()
        }
        Expr::TryCast(c) => {
            let v = literal(&c.expr)?;
            v.cast_to(c.field.data_type()).ok()
        }
        _ => None,
    }
}

fn timestamp_ns(v: &ScalarValue) -> Option<i128> {
    Some(match v {
        ScalarValue::TimestampNanosecond(Some(x), _) => *x as i128,
        ScalarValue::TimestampMicrosecond(Some(x), _) => *x as i128 * 1_000,
        ScalarValue::TimestampMillisecond(Some(x), _) => *x as i128 * 1_000_000,
        ScalarValue::TimestampSecond(Some(x), _) => *x as i128 * 1_000_000_000,
        _ => return None,
    })
}

fn string(v: &ScalarValue) -> Option<String> {
    match v {
        ScalarValue::Utf8(Some(s))
        | ScalarValue::LargeUtf8(Some(s))
        | ScalarValue::Utf8View(Some(s)) => Some(s.clone()),
        _ => None,
    }
}

/// A live table for DataFusion.
#[derive(Debug)]
pub struct LiveTable {
    schema: SchemaRef,
    time_columns: &'static [&'static str],
    source: Arc<dyn PartitionSource>,
}

impl LiveTable {
    pub fn new(
        schema: SchemaRef,
        time_columns: &'static [&'static str],
        source: Arc<dyn PartitionSource>,
    ) -> Self {
        LiveTable {
            schema,
            time_columns,
            source,
        }
    }
}

#[async_trait]
impl TableProvider for LiveTable {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> DfResult<Vec<TableProviderFilterPushDown>> {
        let exact = self.source.exact_columns();
        Ok(filters
            .iter()
            .map(|f| match plain_string_set(f) {
                Some(col) if exact.contains(&col) => TableProviderFilterPushDown::Exact,
                _ => TableProviderFilterPushDown::Inexact,
            })
            .collect())
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let prune = PruneFilter::from_exprs(filters, self.time_columns);
        let batches = self.source.snapshot(&prune);
        let n = state.config().target_partitions().max(1);
        let mut partitions: Vec<Vec<RecordBatch>> = vec![Vec::new(); n];
        for (i, b) in batches.into_iter().enumerate() {
            partitions[i % n].push(b);
        }
        partitions.retain(|p| !p.is_empty());
        if partitions.is_empty() {
            partitions.push(Vec::new());
        }
        let source =
            MemorySourceConfig::try_new(&partitions, self.schema.clone(), projection.cloned())?
                .with_limit(limit);
        Ok(DataSourceExec::from_data_source(source))
    }
}

/// A source with no partitions (tables whose producer is not running in this configuration).
#[derive(Debug, Default)]
pub struct EmptySource;

impl PartitionSource for EmptySource {
    fn snapshot(&self, _filter: &PruneFilter) -> Vec<RecordBatch> {
        Vec::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::logical_expr::{col, lit};

    fn part(start_ms: i64, end_ms: i64, svc: (&str, &str)) -> Partition {
        Partition {
            batch: RecordBatch::new_empty(crate::schema::RED.clone()),
            time_ranges: vec![
                (
                    "window_start",
                    start_ms as i128 * 1_000_000,
                    start_ms as i128 * 1_000_000,
                ),
                (
                    "window_end",
                    end_ms as i128 * 1_000_000,
                    end_ms as i128 * 1_000_000,
                ),
            ],
            service_range: Some((svc.0.into(), svc.1.into())),
        }
    }

    #[test]
    fn time_and_service_filters_prune_partitions() {
        let ts = |ms: i64| {
            lit(ScalarValue::TimestampMillisecond(
                Some(ms),
                Some("UTC".into()),
            ))
        };
        let f = PruneFilter::from_exprs(
            &[
                col("window_start").gt_eq(ts(10_000)),
                col("service_name").eq(lit("cart")),
            ],
            &["window_start", "window_end"],
        );
        assert!(!f.may_match(&part(0, 10_000, ("a", "z"))));
        assert!(f.may_match(&part(10_000, 20_000, ("a", "z"))));
        assert!(!f.may_match(&part(10_000, 20_000, ("d", "z"))));
        // literal on the left, nanosecond literal
        let f = PruneFilter::from_exprs(
            &[
                lit(ScalarValue::TimestampNanosecond(Some(15_000_000_000), None))
                    .gt(col("window_end")),
            ],
            &["window_start", "window_end"],
        );
        assert!(f.may_match(&part(0, 10_000, ("a", "z"))));
        assert!(!f.may_match(&part(10_000, 20_000, ("a", "z"))));
    }

    #[test]
    fn string_columns_prune_on_equality_in_lists_and_ors() {
        let tc = &["window_start", "window_end"];
        let f = PruneFilter::from_exprs(
            &[
                col("window_size").eq(lit("1m")),
                col("service_name")
                    .eq(lit("a"))
                    .or(col("service_name").eq(lit("c"))),
            ],
            tc,
        );
        assert_eq!(f.window_sizes, Some(vec!["1m".to_string()]));
        assert_eq!(f.services, Some(vec!["a".to_string(), "c".to_string()]));
        assert!(f.window_size_may_match("1m") && !f.window_size_may_match("10s"));
        assert!(f.services_may_match("a", "b") && !f.services_may_match("b", "bz"));
        // AND narrows to the intersection.
        let f = PruneFilter::from_exprs(
            &[
                col("service_name").in_list(vec![lit("a"), lit("b")], false),
                col("service_name").eq(lit("b")),
            ],
            tc,
        );
        assert_eq!(f.services, Some(vec!["b".to_string()]));
        // An OR across columns, a negated list or a non-literal constrains nothing.
        for e in [
            col("service_name")
                .eq(lit("a"))
                .or(col("window_size").eq(lit("1m"))),
            col("service_name").in_list(vec![lit("a")], true),
            col("service_name").eq(col("span_name")),
        ] {
            assert_eq!(PruneFilter::from_exprs(&[e], tc), PruneFilter::default());
        }
    }

    #[test]
    fn only_plain_string_sets_can_be_exact() {
        let exact = [
            col("window_size").eq(lit("1m")),
            lit("1m").eq(col("window_size")),
            col("window_size").in_list(vec![lit("1m"), lit("10s")], false),
            col("window_size")
                .eq(lit("1m"))
                .or(col("window_size").eq(lit("10s"))),
        ];
        for e in &exact {
            assert_eq!(plain_string_set(e), Some("window_size"), "{e}");
        }
        let not_exact = [
            col("window_size").in_list(vec![lit("1m")], true),
            col("window_size").not_eq(lit("1m")),
            col("window_size").eq(col("span_name")),
            col("window_size")
                .eq(lit("1m"))
                .or(col("service_name").eq(lit("a"))),
            col("window_size").eq(lit(ScalarValue::Utf8(None))),
            col("calls").eq(lit(5.0)),
            datafusion::logical_expr::cast(col("window_size"), arrow::datatypes::DataType::Utf8)
                .eq(lit("1m")),
        ];
        for e in &not_exact {
            assert!(
                plain_string_set(e).is_none_or(|c| c != "window_size"),
                "{e}"
            );
        }
    }

    #[test]
    fn unknown_filters_prune_nothing() {
        let f = PruneFilter::from_exprs(&[col("calls").gt(lit(5.0))], &["window_start"]);
        assert_eq!(f, PruneFilter::default());
        assert!(f.may_match(&part(0, 1, ("a", "a"))));
    }
}
