//! Encoding query results: JSON (the shape README.md, "SQL over live windows", shows), CSV with a header, Arrow IPC stream.

use crate::query::QueryResult;
use arrow::array::{Array, ArrayRef, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use arrow::record_batch::RecordBatch;
use arrow::util::display::{ArrayFormatter, FormatOptions};
use std::sync::Arc;

/// The output formats of the SQL API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    #[default]
    Json,
    Csv,
    Arrow,
}

impl Format {
    pub fn content_type(&self) -> &'static str {
        match self {
            Format::Json => "application/json",
            Format::Csv => "text/csv; charset=utf-8",
            Format::Arrow => "application/vnd.apache.arrow.stream",
        }
    }
}

/// Why a result could not be encoded.
#[derive(Debug, thiserror::Error)]
#[error("cannot encode the result: {0}")]
pub struct EncodeError(String);

fn err(e: impl std::fmt::Display) -> EncodeError {
    EncodeError(e.to_string())
}

/// `{"columns": [...], "rows": [{...}], "elapsed_ms": n}`: timestamps as RFC 3339 strings, 64-bit
/// integers as numbers, maps as objects, binary as hex.
///
/// The rows are Arrow's JSON writer's array as it writes it, spliced into the envelope (one
/// pass: no `serde_json::Value` per row).
pub fn to_json(r: &QueryResult) -> Result<Vec<u8>, EncodeError> {
    let columns: Vec<serde_json::Value> = r
        .schema
        .fields()
        .iter()
        .map(|f| serde_json::json!({"name": f.name(), "type": f.data_type().to_string()}))
        .collect();
    let mut out = Vec::with_capacity(64);
    out.extend_from_slice(b"{\"columns\":");
    serde_json::to_writer(&mut out, &columns).map_err(err)?;
    out.extend_from_slice(b",\"rows\":");
    let rows_at = out.len();
    {
        let mut w = arrow::json::ArrayWriter::new(&mut out);
        for b in &r.batches {
            let b = timestamps_as_rfc3339(b)?;
            w.write(&b).map_err(err)?;
        }
        w.finish().map_err(err)?;
    }
    if out.len() == rows_at {
        out.extend_from_slice(b"[]");
    }
    out.extend_from_slice(b",\"elapsed_ms\":");
    serde_json::to_writer(&mut out, &(r.elapsed.as_secs_f64() * 1000.0)).map_err(err)?;
    out.push(b'}');
    Ok(out)
}

fn rfc3339_formatter() -> FormatOptions<'static> {
    FormatOptions::default()
        .with_timestamp_tz_format(Some("%Y-%m-%dT%H:%M:%S%.3fZ"))
        .with_timestamp_format(Some("%Y-%m-%dT%H:%M:%S%.3f"))
}

/// Replaces timestamp columns with RFC 3339 strings (UTC, millisecond precision or better).
fn timestamps_as_rfc3339(b: &RecordBatch) -> Result<RecordBatch, EncodeError> {
    if !b
        .schema()
        .fields()
        .iter()
        .any(|f| matches!(f.data_type(), DataType::Timestamp(..)))
    {
        return Ok(b.clone());
    }
    let opts = rfc3339_formatter();
    let mut fields = Vec::new();
    let mut cols: Vec<ArrayRef> = Vec::new();
    for (f, c) in b.schema().fields().iter().zip(b.columns()) {
        if let DataType::Timestamp(unit, _) = f.data_type() {
            let utc = arrow::compute::cast(c, &DataType::Timestamp(*unit, Some("UTC".into())))
                .map_err(err)?;
            let fmt = ArrayFormatter::try_new(utc.as_ref(), &opts).map_err(err)?;
            let strings: StringArray = (0..utc.len())
                .map(|i| (!utc.is_null(i)).then(|| fmt.value(i).to_string()))
                .collect();
            fields.push(Field::new(f.name(), DataType::Utf8, true));
            cols.push(Arc::new(strings));
        } else {
            fields.push(f.as_ref().clone());
            cols.push(c.clone());
        }
    }
    RecordBatch::try_new(Arc::new(Schema::new(fields)), cols).map_err(err)
}

/// CSV with a header line; nested and binary columns are rendered as text.
pub fn to_csv(r: &QueryResult) -> Result<Vec<u8>, EncodeError> {
    let mut buf = Vec::new();
    {
        let mut w = arrow::csv::WriterBuilder::new()
            .with_header(true)
            .build(&mut buf);
        if r.batches.is_empty() {
            let empty = RecordBatch::new_empty(r.schema.clone());
            w.write(&flatten_for_csv(&empty)?).map_err(err)?;
        }
        for b in &r.batches {
            w.write(&flatten_for_csv(b)?).map_err(err)?;
        }
    }
    Ok(buf)
}

fn flatten_for_csv(b: &RecordBatch) -> Result<RecordBatch, EncodeError> {
    let opts = rfc3339_formatter();
    let mut fields = Vec::new();
    let mut cols: Vec<ArrayRef> = Vec::new();
    for (f, c) in b.schema().fields().iter().zip(b.columns()) {
        let plain = matches!(
            f.data_type(),
            DataType::Utf8
                | DataType::Boolean
                | DataType::Float64
                | DataType::Float32
                | DataType::Int64
                | DataType::Int32
                | DataType::UInt64
                | DataType::UInt32
        );
        if plain {
            fields.push(f.as_ref().clone());
            cols.push(c.clone());
        } else {
            let fmt = ArrayFormatter::try_new(c.as_ref(), &opts).map_err(err)?;
            let strings: StringArray = (0..c.len())
                .map(|i| (!c.is_null(i)).then(|| fmt.value(i).to_string()))
                .collect();
            fields.push(Field::new(f.name(), DataType::Utf8, true));
            cols.push(Arc::new(strings));
        }
    }
    RecordBatch::try_new(Arc::new(Schema::new(fields)), cols).map_err(err)
}

/// Arrow IPC stream.
pub fn to_arrow(r: &QueryResult) -> Result<Vec<u8>, EncodeError> {
    let mut buf = Vec::new();
    {
        let mut w = arrow::ipc::writer::StreamWriter::try_new(&mut buf, &r.schema).map_err(err)?;
        for b in &r.batches {
            w.write(b).map_err(err)?;
        }
        w.finish().map_err(err)?;
    }
    Ok(buf)
}

/// Encodes in the asked format.
pub fn encode(r: &QueryResult, f: Format) -> Result<Vec<u8>, EncodeError> {
    match f {
        Format::Json => to_json(r),
        Format::Csv => to_csv(r),
        Format::Arrow => to_arrow(r),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Float64Array, TimestampMillisecondArray};
    use std::time::Duration;

    #[test]
    fn json_is_one_document_with_rfc3339_times_nulls_left_out_and_empty_rows() {
        let schema = Arc::new(Schema::new(vec![
            Field::new(
                "t",
                DataType::Timestamp(arrow::datatypes::TimeUnit::Millisecond, Some("UTC".into())),
                false,
            ),
            Field::new("name", DataType::Utf8, false),
            Field::new("v", DataType::Float64, true),
        ]));
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(TimestampMillisecondArray::from(vec![0, 1_500]).with_timezone("UTC")),
                Arc::new(StringArray::from(vec!["a\"b", "c"])),
                Arc::new(Float64Array::from(vec![Some(0.1), None])),
            ],
        )
        .unwrap();
        let r = QueryResult {
            schema: schema.clone(),
            batches: vec![batch.clone(), batch.slice(1, 1)],
            elapsed: Duration::from_micros(1500),
        };
        let v: serde_json::Value = serde_json::from_slice(&to_json(&r).unwrap()).unwrap();
        let names: Vec<&str> = v["columns"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["t", "name", "v"]);
        assert_eq!(v["columns"][2]["type"], "Float64");
        assert_eq!(
            v["rows"],
            serde_json::json!([
                {"t": "1970-01-01T00:00:00.000Z", "name": "a\"b", "v": 0.1},
                {"t": "1970-01-01T00:00:01.500Z", "name": "c"},
                {"t": "1970-01-01T00:00:01.500Z", "name": "c"}
            ])
        );
        assert_eq!(v["elapsed_ms"], 1.5);
        let empty = QueryResult {
            schema,
            batches: vec![],
            elapsed: Duration::ZERO,
        };
        let v: serde_json::Value = serde_json::from_slice(&to_json(&empty).unwrap()).unwrap();
        assert_eq!(v["rows"], serde_json::json!([]));
    }
}
