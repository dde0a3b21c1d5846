//! SQL functions for this domain.
//!
//! `quantile_merge(duration_sketch, q)` merges the quantile sketches of the rows it aggregates and
//! returns their q-quantile — so p99 over many windows or services is computed correctly instead
//! of averaging per-row p99s.

use arrow::array::{Array, ArrayRef, AsArray, BinaryArray, Float64Array};
use arrow::datatypes::{DataType, Field, FieldRef};
use datafusion::common::{exec_err, ScalarValue};
use datafusion::error::Result;
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::{
    Accumulator, AggregateUDF, AggregateUDFImpl, Signature, TypeSignature, Volatility,
};
use redwatch_operators::red::sketch::QuantileSketch;
use std::sync::Arc;

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
}

#[derive(Debug, Default)]
struct MergeAccumulator {
    sketch: QuantileSketch,
    q: Option<f64>,
}

impl MergeAccumulator {
    fn absorb(&mut self, sketches: &BinaryArray, qs: &ArrayRef) -> Result<()> {
        let qs: Vec<Option<f64>> = match qs.data_type() {
            DataType::Float64 => qs
                .as_primitive::<arrow::datatypes::Float64Type>()
                .iter()
                .collect(),
            DataType::Int64 => qs
                .as_primitive::<arrow::datatypes::Int64Type>()
                .iter()
                .map(|v| v.map(|x| x as f64))
                .collect(),
            other => return exec_err!("quantile_merge: q must be a number, got {other}"),
        };
        for (i, q) in qs.into_iter().enumerate() {
            if self.q.is_none() {
                self.q = q;
            }
            if sketches.is_null(i) {
                continue;
            }
            match QuantileSketch::decode(sketches.value(i)) {
                Ok(s) => self.sketch.merge(&s),
                Err(e) => return exec_err!("quantile_merge: not a redwatch duration sketch: {e}"),
            }
        }
        Ok(())
    }
}

impl Accumulator for MergeAccumulator {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        let Some(sketches) = values.first().and_then(|a| a.as_binary_opt::<i32>()) else {
            return exec_err!("quantile_merge: first argument must be a sketch column (BINARY)");
        };
        let Some(qs) = values.get(1) else {
            return exec_err!(
                "quantile_merge: needs a quantile, e.g. quantile_merge(duration_sketch, 0.99)"
            );
        };
        self.absorb(sketches, qs)
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        let q = self.q.unwrap_or(0.5);
        if !(0.0..=1.0).contains(&q) {
            return exec_err!("quantile_merge: q must be between 0 and 1, got {q}");
        }
        Ok(ScalarValue::Float64(self.sketch.quantile(q)))
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
        let Some(sketches) = states.first().and_then(|a| a.as_binary_opt::<i32>()) else {
            return exec_err!("quantile_merge: bad intermediate state");
        };
        let q = states
            .get(1)
            .cloned()
            .unwrap_or_else(|| Arc::new(Float64Array::from(vec![None::<f64>; sketches.len()])));
        self.absorb(sketches, &q)
    }
}
