//! `quantiles_merge(sketch BINARY, q1, q2, …)`: several quantiles of one merged sketch per group,
//! as a struct `{q1: DOUBLE, q2: DOUBLE, …}` (field `qN` is the N-th quantile argument).
//!
//! Each row's sketch is merged once, whatever the number of quantiles — the
//! `share_quantile_merges` optimizer rule ([`super::share_quantile_merges`]) turns several
//! `quantile_merge(s, q)` over the same column into one of these, so a panel asking for p50
//! and p99 pays for one merge. The quantiles must be constants (they are fixed per query, so
//! the intermediate state is just the merged sketch).

use super::sketch_state::{
    absorb_column, check_rows, encoded_state, filtered_out, rows_as_state, GroupSketches,
};
use super::QUANTILES_HINT;
use arrow::array::{
    Array, ArrayRef, AsArray, BinaryArray, BooleanArray, Float64Array, StructArray,
};
use arrow::datatypes::{DataType, Field, FieldRef, Fields};
use datafusion::common::{exec_err, plan_err, ScalarValue};
use datafusion::error::Result;
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::{
    Accumulator, AggregateUDF, AggregateUDFImpl, EmitTo, GroupsAccumulator, Signature, Volatility,
};
use datafusion::physical_expr::expressions::Literal;
use redwatch_operators::red::sketch::QuantileSketch;
use std::sync::Arc;

/// The UDAF's name.
pub const NAME: &str = "quantiles_merge";

/// `quantiles_merge(sketch BINARY, q1 DOUBLE, …) -> STRUCT<q1 DOUBLE, …>`.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct QuantilesMerge {
    signature: Signature,
}

impl Default for QuantilesMerge {
    fn default() -> Self {
        QuantilesMerge {
            signature: Signature::variadic_any(Volatility::Immutable),
        }
    }
}

/// The UDAF ready to register.
pub fn quantiles_merge() -> AggregateUDF {
    AggregateUDF::from(QuantilesMerge::default())
}

/// The result struct's fields for `n` quantiles.
fn result_fields(n: usize) -> Fields {
    (1..=n)
        .map(|i| Field::new(format!("q{i}"), DataType::Float64, true))
        .collect()
}

/// The constant quantiles of a call (the arguments after the sketch), each in [0, 1].
fn constant_quantiles(args: &AccumulatorArgs) -> Result<Vec<f64>> {
    let mut qs = Vec::with_capacity(args.exprs.len().saturating_sub(1));
    for e in args.exprs.iter().skip(1) {
        let value = e.downcast_ref::<Literal>().map(Literal::value);
        let q = match value {
            Some(&ScalarValue::Float64(Some(q))) => q,
            Some(&ScalarValue::Int64(Some(q))) => q as f64,
            _ => return plan_err!("{NAME}: the quantiles must be constant numbers, got {e}"),
        };
        if !(0.0..=1.0).contains(&q) {
            return plan_err!("{NAME}: q must be between 0 and 1, got {q}");
        }
        qs.push(q);
    }
    Ok(qs)
}

impl AggregateUDFImpl for QuantilesMerge {
    fn name(&self) -> &str {
        NAME
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        let Some((sketch, qs)) = arg_types.split_first() else {
            return plan_err!("{NAME}: {QUANTILES_HINT}");
        };
        if sketch != &DataType::Binary {
            return plan_err!(
                "{NAME}: the first argument must be a sketch column (BINARY), got {sketch}"
            );
        }
        if qs.is_empty() {
            return plan_err!("{NAME}: {QUANTILES_HINT}");
        }
        if let Some(t) = qs
            .iter()
            .find(|t| !matches!(t, DataType::Float64 | DataType::Int64))
        {
            return plan_err!("{NAME}: q must be a number, got {t}");
        }
        Ok(DataType::Struct(result_fields(qs.len())))
    }

    fn accumulator(&self, acc_args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        Ok(Box::new(MergeAll {
            qs: constant_quantiles(&acc_args)?,
            sketch: QuantileSketch::default(),
        }))
    }

    fn state_fields(&self, _args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        Ok(vec![Arc::new(Field::new("sketch", DataType::Binary, true))])
    }

    fn groups_accumulator_supported(&self, _args: AccumulatorArgs) -> bool {
        true
    }

    fn create_groups_accumulator(
        &self,
        args: AccumulatorArgs,
    ) -> Result<Box<dyn GroupsAccumulator>> {
        Ok(Box::new(MergeGroups {
            qs: constant_quantiles(&args)?,
            sketches: GroupSketches::default(),
        }))
    }
}

fn sketch_column<'a>(values: &'a [ArrayRef], what: &str) -> Result<&'a BinaryArray> {
    match values.first().and_then(|a| a.as_binary_opt::<i32>()) {
        Some(s) => Ok(s),
        None => exec_err!("{NAME}: {what} must be a sketch column (BINARY)"),
    }
}

/// One struct column of every quantile of `sketches`.
fn quantiles_array(sketches: &[QuantileSketch], qs: &[f64]) -> StructArray {
    let columns: Vec<ArrayRef> = qs
        .iter()
        .map(|&q| {
            Arc::new(
                sketches
                    .iter()
                    .map(|s| s.quantile(q))
                    .collect::<Float64Array>(),
            ) as ArrayRef
        })
        .collect();
    StructArray::new(result_fields(qs.len()), columns, None)
}

/// Without GROUP BY: one sketch.
#[derive(Debug)]
struct MergeAll {
    qs: Vec<f64>,
    sketch: QuantileSketch,
}

impl MergeAll {
    fn absorb(&mut self, values: &[ArrayRef], what: &str) -> Result<()> {
        absorb_column(&mut self.sketch, sketch_column(values, what)?, NAME)
    }
}

impl Accumulator for MergeAll {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        self.absorb(values, "the first argument")
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        let one = quantiles_array(std::slice::from_ref(&self.sketch), &self.qs);
        Ok(ScalarValue::Struct(Arc::new(one)))
    }

    fn size(&self) -> usize {
        std::mem::size_of_val(self)
            + self.qs.capacity() * std::mem::size_of::<f64>()
            + self.sketch.heap_bytes()
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        Ok(vec![ScalarValue::Binary(Some(self.sketch.to_bytes()))])
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        self.absorb(states, "the intermediate state")
    }
}

/// With GROUP BY: a sketch per group index.
#[derive(Debug)]
struct MergeGroups {
    qs: Vec<f64>,
    sketches: GroupSketches,
}

impl MergeGroups {
    fn absorb(
        &mut self,
        values: &[ArrayRef],
        group_indices: &[usize],
        opt_filter: Option<&BooleanArray>,
        total_num_groups: usize,
        what: &str,
    ) -> Result<()> {
        let sketches = sketch_column(values, what)?;
        check_rows(NAME, sketches.len(), group_indices)?;
        self.sketches.grow(total_num_groups);
        for (i, &g) in group_indices.iter().enumerate() {
            if filtered_out(opt_filter, i) || sketches.is_null(i) {
                continue;
            }
            self.sketches.absorb(g, sketches.value(i), NAME)?;
        }
        Ok(())
    }
}

impl GroupsAccumulator for MergeGroups {
    fn update_batch(
        &mut self,
        values: &[ArrayRef],
        group_indices: &[usize],
        opt_filter: Option<&BooleanArray>,
        total_num_groups: usize,
    ) -> Result<()> {
        self.absorb(
            values,
            group_indices,
            opt_filter,
            total_num_groups,
            "the first argument",
        )
    }

    fn evaluate(&mut self, emit_to: EmitTo) -> Result<ArrayRef> {
        let sketches = self.sketches.take(emit_to);
        Ok(Arc::new(quantiles_array(&sketches, &self.qs)))
    }

    fn state(&mut self, emit_to: EmitTo) -> Result<Vec<ArrayRef>> {
        Ok(vec![encoded_state(&self.sketches.take(emit_to))])
    }

    fn merge_batch(
        &mut self,
        values: &[ArrayRef],
        group_indices: &[usize],
        total_num_groups: usize,
    ) -> Result<()> {
        self.absorb(
            values,
            group_indices,
            None,
            total_num_groups,
            "the intermediate state",
        )
    }

    /// Each row as its own group: its sketch is already an encoded state.
    fn convert_to_state(
        &self,
        values: &[ArrayRef],
        opt_filter: Option<&BooleanArray>,
    ) -> Result<Vec<ArrayRef>> {
        let sketches = sketch_column(values, "the first argument")?;
        Ok(vec![rows_as_state(sketches, opt_filter)])
    }

    fn size(&self) -> usize {
        std::mem::size_of_val(self)
            + self.qs.capacity() * std::mem::size_of::<f64>()
            + self.sketches.size()
    }
}
