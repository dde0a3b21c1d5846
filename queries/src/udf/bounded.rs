//! String functions whose output can be far larger than their input (`repeat`, `lpad`, `rpad`)
//! are checked before they run: DataFusion builds their output outside any memory pool, so
//! `SELECT repeat('x', 262000) FROM generate_series(1, 8000)` would build 2 GB in one batch.
//! The wrappers refuse a call whose output would pass the query's memory budget
//! (`sql.memory_limit`) with the same error a pool refusal gives (HTTP 413).

use arrow::array::{Array, AsArray};
use arrow::datatypes::{DataType, FieldRef, Int64Type};
use datafusion::common::{DataFusionError, Result, ScalarValue};
use datafusion::logical_expr::{
    ColumnarValue, Documentation, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl,
    Signature, Volatility,
};
use datafusion::prelude::SessionContext;
use std::sync::Arc;

/// How a wrapped function's output size follows from its arguments.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Growth {
    /// `repeat(s, n)`: `len(s) · n` bytes per row.
    Repeat,
    /// `lpad(s, n [, fill])`, `rpad(…)`: `n` characters, at most 4 bytes each.
    Pad,
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct Bounded {
    inner: Arc<ScalarUDF>,
    /// The inner signature made volatile: a call with constant arguments must not be folded into
    /// a literal at planning time, or the projection would copy the folded value into every row
    /// (8 000 copies of 262 KB) without this check ever seeing the row count.
    signature: Signature,
    growth: Growth,
    limit: usize,
}

/// Replaces `repeat`, `lpad` and `rpad` in `ctx` with versions that refuse an output over
/// `limit` bytes.
pub fn register(ctx: &SessionContext, limit: usize) {
    use datafusion::functions::unicode::{lpad, rpad};
    for (inner, growth) in [
        (datafusion::functions::string::repeat(), Growth::Repeat),
        (lpad(), Growth::Pad),
        (rpad(), Growth::Pad),
    ] {
        let signature = Signature::new(
            inner.signature().type_signature.clone(),
            Volatility::Volatile,
        );
        ctx.register_udf(ScalarUDF::new_from_impl(Bounded {
            inner,
            signature,
            growth,
            limit,
        }));
    }
}

/// Row `i` of an argument as an i64 (scalars repeat); `None` for null or non-integers.
fn int_at(v: &ColumnarValue, i: usize) -> Option<i64> {
    match v {
        ColumnarValue::Scalar(ScalarValue::Int64(n)) => *n,
        ColumnarValue::Scalar(s) => s.cast_to(&DataType::Int64).ok().and_then(|s| match s {
            ScalarValue::Int64(n) => n,
            _ => None,
        }),
        ColumnarValue::Array(a) => {
            let a = arrow::compute::cast(a, &DataType::Int64).ok()?;
            let a = a.as_primitive::<Int64Type>();
            (!a.is_null(i)).then(|| a.value(i))
        }
    }
}

/// Byte length of row `i` of a string argument.
fn len_at(v: &ColumnarValue, i: usize) -> u128 {
    match v {
        ColumnarValue::Scalar(s) => match s {
            ScalarValue::Utf8(Some(x))
            | ScalarValue::LargeUtf8(Some(x))
            | ScalarValue::Utf8View(Some(x)) => x.len() as u128,
            _ => 0,
        },
        ColumnarValue::Array(a) if a.is_null(i) => 0,
        ColumnarValue::Array(a) => match a.data_type() {
            DataType::Utf8 => a.as_string::<i32>().value(i).len() as u128,
            DataType::LargeUtf8 => a.as_string::<i64>().value(i).len() as u128,
            DataType::Utf8View => a.as_string_view().value(i).len() as u128,
            _ => 0,
        },
    }
}

impl Bounded {
    /// The bytes the call would build.
    fn output_bytes(&self, args: &ScalarFunctionArgs) -> u128 {
        let rows = args.number_rows;
        let (Some(s), Some(n)) = (args.args.first(), args.args.get(1)) else {
            return 0;
        };
        let all_scalar = args
            .args
            .iter()
            .all(|a| matches!(a, ColumnarValue::Scalar(_)));
        let per_row = |i: usize| {
            let n = int_at(n, i).unwrap_or(0).max(0) as u128;
            match self.growth {
                Growth::Repeat => len_at(s, i) * n,
                Growth::Pad => n * 4,
            }
        };
        if all_scalar {
            per_row(0) * rows.max(1) as u128
        } else {
            (0..rows).map(per_row).sum()
        }
    }
}

impl ScalarUDFImpl for Bounded {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn aliases(&self) -> &[String] {
        self.inner.aliases()
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        self.inner.return_type(arg_types)
    }

    fn return_field_from_args(&self, args: ReturnFieldArgs) -> Result<FieldRef> {
        self.inner.return_field_from_args(args)
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        self.inner.coerce_types(arg_types)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let bytes = self.output_bytes(&args);
        if bytes > self.limit as u128 {
            return Err(DataFusionError::ResourcesExhausted(format!(
                "{}() would build {bytes} bytes, more than the query may hold ({} bytes)",
                self.inner.name(),
                self.limit
            )));
        }
        self.inner.invoke_with_args(args)
    }

    fn documentation(&self) -> Option<&Documentation> {
        self.inner.documentation()
    }
}
