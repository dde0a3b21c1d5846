//! SQL functions for this domain.
//!
//! `quantile_merge(duration_sketch, q)` merges the quantile sketches of the rows it aggregates and
//! returns their q-quantile — so p99 over many windows or services is computed correctly instead
//! of averaging per-row p99s.
//!
//! Sketches are merged straight from their encoding into one accumulator sketch per group
//! ([`QuantileSketch::absorb_encoded`]): no sketch is decoded per row. With GROUP BY, a
//! [`GroupsAccumulator`] keeps every group's sketch in one vector and reads the batch's binary
//! column in place (DataFusion's per-group `Accumulator` adapter would copy each group's rows).
//! Each accumulator sketch is kept dense and every row's encoding is read once, straight into
//! it ([`QuantileSketch::absorb_encoded`]).
//!
//! Several quantiles of the same column (`quantile_merge(s, 0.5)`, `quantile_merge(s, 0.99)`)
//! are computed from one merge: the `share_quantile_merges` optimizer rule ([`share_quantile_merges`]) rewrites
//! them into one `quantiles_merge(s, 0.5, 0.99)` ([`quantiles`]) plus a projection of its fields.

use arrow::array::{Array, ArrayRef, AsArray, BinaryArray, BooleanArray, Float64Array};
use arrow::datatypes::{DataType, Field, FieldRef, Float64Type, Int64Type};
use datafusion::common::{exec_err, ScalarValue};
use datafusion::error::Result;
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::{
    Accumulator, AggregateUDF, AggregateUDFImpl, EmitTo, GroupsAccumulator, Signature,
    TypeSignature, Volatility,
};
use datafusion::prelude::SessionContext;
use redwatch_operators::red::sketch::{QuantileSketch, SketchError};
use std::sync::Arc;

pub mod bounded;
pub mod quantiles;
pub mod share_quantile_merges;
mod sketch_state;

use sketch_state::{
    absorb_column, check_rows, encoded_state, filtered_out, rows_as_state, GroupSketches,
};

pub use quantiles::quantiles_merge;
pub use share_quantile_merges::ShareQuantileMerges;

/// What a call without quantiles is told.
const QUANTILES_HINT: &str =
    "needs a sketch column and quantiles, e.g. quantiles_merge(duration_sketch, 0.5, 0.99)";

/// Registers this domain's SQL functions and the rule that shares their sketch merges.
pub fn register(ctx: &SessionContext) {
    ctx.register_udaf(quantile_merge());
    ctx.register_udaf(quantiles_merge());
    ctx.add_optimizer_rule(Arc::new(ShareQuantileMerges));
}

/// `quantile_merge(sketch BINARY, q DOUBLE) -> DOUBLE`.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct QuantileMerge {
    signature: Signature,
}

impl Default for QuantileMerge {
    fn default() -> Self {
        QuantileMerge {
            signature: Signature::one_of(
                vec![
                    TypeSignature::Exact(vec![DataType::Binary, DataType::Float64]),
                    TypeSignature::Exact(vec![DataType::Binary, DataType::Int64]),
                ],
                Volatility::Immutable,
            ),
        }
    }
}

/// The UDAF ready to register.
pub fn quantile_merge() -> AggregateUDF {
    AggregateUDF::from(QuantileMerge::default())
}

impl AggregateUDFImpl for QuantileMerge {
    fn name(&self) -> &str {
        "quantile_merge"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Float64)
    }

    fn accumulator(&self, _acc_args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        Ok(Box::new(MergeAccumulator::default()))
    }

    fn state_fields(&self, _args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        Ok(vec![
            Arc::new(Field::new("sketch", DataType::Binary, true)),
            Arc::new(Field::new("q", DataType::Float64, true)),
        ])
    }

    fn groups_accumulator_supported(&self, _args: AccumulatorArgs) -> bool {
        true
    }

    fn create_groups_accumulator(
        &self,
        _args: AccumulatorArgs,
    ) -> Result<Box<dyn GroupsAccumulator>> {
        Ok(Box::new(MergeGroups::default()))
    }
}

/// The sketch column and the quantile column of an update (or of a state).
fn arguments<'a>(values: &'a [ArrayRef], what: &str) -> Result<(&'a BinaryArray, Quantiles<'a>)> {
    let Some(sketches) = values.first().and_then(|a| a.as_binary_opt::<i32>()) else {
        return exec_err!("quantile_merge: {what} must be a sketch column (BINARY)");
    };
    let qs = match values.get(1) {
        Some(q) => match q.data_type() {
            DataType::Float64 => Quantiles::Float(q.as_primitive::<Float64Type>()),
            DataType::Int64 => Quantiles::Int(q.as_primitive::<Int64Type>()),
            other => return exec_err!("quantile_merge: q must be a number, got {other}"),
        },
        None => {
            return exec_err!(
                "quantile_merge: needs a quantile, e.g. quantile_merge(duration_sketch, 0.99)"
            )
        }
    };
    Ok((sketches, qs))
}

/// The q argument, read row by row without copying.
#[derive(Clone, Copy)]
enum Quantiles<'a> {
    Float(&'a arrow::array::PrimitiveArray<Float64Type>),
    Int(&'a arrow::array::PrimitiveArray<Int64Type>),
}

impl Quantiles<'_> {
    #[inline]
    fn get(&self, i: usize) -> Option<f64> {
        match self {
            Quantiles::Float(a) => a.is_valid(i).then(|| a.value(i)),
            Quantiles::Int(a) => a.is_valid(i).then(|| a.value(i) as f64),
        }
    }
}

fn bad_sketch(function: &str, e: SketchError) -> datafusion::error::DataFusionError {
    datafusion::error::DataFusionError::Execution(format!(
        "{function}: not a redwatch duration sketch: {e}"
    ))
}

/// The q-quantile of a merged sketch (q defaults to 0.5 when every q was NULL).
fn quantile_of(sketch: &QuantileSketch, q: Option<f64>) -> Result<Option<f64>> {
    let q = q.unwrap_or(0.5);
    if !(0.0..=1.0).contains(&q) {
        return exec_err!("quantile_merge: q must be between 0 and 1, got {q}");
    }
    Ok(sketch.quantile(q))
}

/// Without GROUP BY: one sketch.
#[derive(Debug, Default)]
struct MergeAccumulator {
    sketch: QuantileSketch,
    q: Option<f64>,
}

impl MergeAccumulator {
    fn absorb(&mut self, values: &[ArrayRef], what: &str) -> Result<()> {
        let (sketches, qs) = arguments(values, what)?;
        if self.q.is_none() {
            self.q = (0..sketches.len()).find_map(|i| qs.get(i));
        }
        absorb_column(&mut self.sketch, sketches, "quantile_merge")
    }
}

impl Accumulator for MergeAccumulator {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        self.absorb(values, "the first argument")
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        Ok(ScalarValue::Float64(quantile_of(&self.sketch, self.q)?))
    }

    fn size(&self) -> usize {
        std::mem::size_of_val(self) + self.sketch.heap_bytes()
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        Ok(vec![
            ScalarValue::Binary(Some(self.sketch.to_bytes())),
            ScalarValue::Float64(self.q),
        ])
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        self.absorb(states, "the intermediate state")
    }
}

/// With GROUP BY: a sketch and a q per group index.
#[derive(Debug, Default)]
struct MergeGroups {
    sketches: GroupSketches,
    qs: Vec<Option<f64>>,
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
        let (sketches, qs) = arguments(values, what)?;
        check_rows("quantile_merge", sketches.len(), group_indices)?;
        self.sketches.grow(total_num_groups);
        if self.qs.len() < total_num_groups {
            self.qs.resize(total_num_groups, None);
        }
        for (i, &g) in group_indices.iter().enumerate() {
            if filtered_out(opt_filter, i) {
                continue;
            }
            let Some(q) = self.qs.get_mut(g) else {
                return exec_err!("quantile_merge: group index {g} out of range");
            };
            if q.is_none() {
                *q = qs.get(i);
            }
            if sketches.is_valid(i) {
                self.sketches
                    .absorb(g, sketches.value(i), "quantile_merge")?;
            }
        }
        Ok(())
    }

    /// Removes the groups to emit (renumbering the rest) and returns them.
    fn take(&mut self, emit_to: EmitTo) -> (Vec<QuantileSketch>, Vec<Option<f64>>) {
        (
            self.sketches.take(emit_to),
            emit_to.take_needed(&mut self.qs),
        )
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
        let (sketches, qs) = self.take(emit_to);
        let out = sketches
            .iter()
            .zip(qs)
            .map(|(s, q)| quantile_of(s, q))
            .collect::<Result<Float64Array>>()?;
        Ok(Arc::new(out))
    }

    fn state(&mut self, emit_to: EmitTo) -> Result<Vec<ArrayRef>> {
        let (sketches, qs) = self.take(emit_to);
        Ok(vec![
            encoded_state(&sketches),
            Arc::new(Float64Array::from(qs)),
        ])
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
        let (sketches, qs) = arguments(values, "the first argument")?;
        let q_state: Float64Array = (0..sketches.len())
            .map(|i| (!filtered_out(opt_filter, i)).then(|| qs.get(i)).flatten())
            .collect();
        Ok(vec![rows_as_state(sketches, opt_filter), Arc::new(q_state)])
    }

    fn size(&self) -> usize {
        std::mem::size_of_val(self)
            + self.sketches.size()
            + self.qs.capacity() * std::mem::size_of::<Option<f64>>()
    }
}
