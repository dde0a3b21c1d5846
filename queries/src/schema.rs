//! Arrow schemas of the live tables (docs/design.md, "Tables"). Column names are a contract:
//! dashboards and continuous queries depend on them.

use arrow::datatypes::{DataType, Field, Fields, Schema, SchemaRef, TimeUnit};
use std::sync::{Arc, LazyLock};

/// `Timestamp(Millisecond, "UTC")`, the type of every window bound.
pub fn ts_ms() -> DataType {
    DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into()))
}

/// `Timestamp(Nanosecond, "UTC")`, for raw event times.
pub fn ts_ns() -> DataType {
    DataType::Timestamp(TimeUnit::Nanosecond, Some("UTC".into()))
}

/// `Map<Utf8, Utf8>` as the arrow MapBuilder builds it.
pub fn string_map() -> DataType {
    DataType::Map(
        Arc::new(Field::new(
            "entries",
            DataType::Struct(Fields::from(vec![
                Field::new("keys", DataType::Utf8, false),
                Field::new("values", DataType::Utf8, true),
            ])),
            false,
        )),
        false,
    )
}

fn f(name: &str, t: DataType, nullable: bool) -> Field {
    Field::new(name, t, nullable)
}

/// `red`: one row per (window spec, window, service, operation, kind, dims).
pub static RED: LazyLock<SchemaRef> = LazyLock::new(|| {
    Arc::new(Schema::new(vec![
        f("window_size", DataType::Utf8, false),
        f("window_start", ts_ms(), false),
        f("window_end", ts_ms(), false),
        f("service_name", DataType::Utf8, false),
        f("span_name", DataType::Utf8, false),
        f("span_kind", DataType::Utf8, false),
        f("dims", string_map(), false),
        f("calls", DataType::Float64, false),
        f("errors", DataType::Float64, false),
        f("error_ratio", DataType::Float64, false),
        f("rate_per_s", DataType::Float64, false),
        f("duration_min_ms", DataType::Float64, true),
        f("duration_avg_ms", DataType::Float64, true),
        f("duration_max_ms", DataType::Float64, true),
        f("p50_ms", DataType::Float64, true),
        f("p90_ms", DataType::Float64, true),
        f("p95_ms", DataType::Float64, true),
        f("p99_ms", DataType::Float64, true),
        f("duration_sketch", DataType::Binary, false),
        f("is_final", DataType::Boolean, false),
    ]))
});

/// `red_windows`: one row per final window the `red` table holds (no rows read), so a reader
/// polls which windows are new or were restated by late data since it last read them.
pub static RED_WINDOWS: LazyLock<SchemaRef> = LazyLock::new(|| {
    Arc::new(Schema::new(vec![
        f("window_size", DataType::Utf8, false),
        f("window_start", ts_ms(), false),
        f("window_end", ts_ms(), false),
        // Series (rows of `red`) in the window.
        f("series", DataType::Int64, false),
        // Change sequence number of the window's rows: a restatement gives a new one. It
        // restarts with the process: compare for equality.
        f("version", DataType::Int64, false),
        // No late data can restate the window any more.
        f("sealed", DataType::Boolean, false),
    ]))
});

/// `spans`: recent raw spans (bounded by rows and age).
pub static SPANS: LazyLock<SchemaRef> = LazyLock::new(|| {
    Arc::new(Schema::new(vec![
        f("end_time", ts_ns(), false),
        f("start_time", ts_ns(), false),
        f("service_name", DataType::Utf8, false),
        f("span_name", DataType::Utf8, false),
        f("span_kind", DataType::Utf8, false),
        f("status_code", DataType::Utf8, false),
        f("duration_ms", DataType::Float64, false),
        f("weight", DataType::Float64, false),
        f("trace_id", DataType::Utf8, false),
        f("span_id", DataType::Utf8, false),
        f("parent_span_id", DataType::Utf8, true),
        f("dims", string_map(), false),
    ]))
});

/// `metric_points`: windowed metric series (filled by the metric windowing operator).
pub static METRIC_POINTS: LazyLock<SchemaRef> = LazyLock::new(|| {
    Arc::new(Schema::new(vec![
        f("window_size", DataType::Utf8, false),
        f("window_start", ts_ms(), false),
        f("window_end", ts_ms(), false),
        f("metric_name", DataType::Utf8, false),
        f("metric_type", DataType::Utf8, false),
        f("unit", DataType::Utf8, true),
        f("service_name", DataType::Utf8, true),
        f("attributes", string_map(), false),
        f("count", DataType::Float64, true),
        f("sum", DataType::Float64, true),
        f("min", DataType::Float64, true),
        f("max", DataType::Float64, true),
        f("last", DataType::Float64, true),
        f("avg", DataType::Float64, true),
        // Histograms: explicit bucket bounds and counts (counts has one more entry: +Inf).
        f("bucket_bounds", list(DataType::Float64), true),
        f("bucket_counts", list(DataType::UInt64), true),
        // Exponential histograms, merged at a common scale.
        f("exp_scale", DataType::Int32, true),
        f("exp_zero_count", DataType::UInt64, true),
        f("exp_positive_offset", DataType::Int32, true),
        f("exp_positive_counts", list(DataType::UInt64), true),
        f("exp_negative_offset", DataType::Int32, true),
        f("exp_negative_counts", list(DataType::UInt64), true),
        // Summaries: the newest point's quantiles and their values.
        f("quantiles", list(DataType::Float64), true),
        f("quantile_values", list(DataType::Float64), true),
        f("is_final", DataType::Boolean, false),
    ]))
});

/// `List<t>` as arrow's `ListBuilder` builds it (nullable items named `item`).
pub fn list(t: DataType) -> DataType {
    DataType::List(Arc::new(Field::new_list_field(t, true)))
}

/// `anomalies`.
pub static ANOMALIES: LazyLock<SchemaRef> = LazyLock::new(|| {
    Arc::new(Schema::new(vec![
        f("window_start", ts_ms(), false),
        f("window_end", ts_ms(), false),
        f("signal", DataType::Utf8, false),
        f("service_name", DataType::Utf8, false),
        f("span_name", DataType::Utf8, false),
        f("span_kind", DataType::Utf8, false),
        f("value", DataType::Float64, false),
        f("expected_min", DataType::Float64, false),
        f("expected_max", DataType::Float64, false),
        f("severity", DataType::Utf8, false),
        // Calibrated in [0, 1]; null on `resolved` rows (they carry no alarm score).
        f("score", DataType::Float64, true),
        f("detector", DataType::Utf8, false),
        f("incident_id", DataType::Utf8, false),
        f("incident_state", DataType::Utf8, false),
        // The incident so far: its first window's start, its length up to its latest
        // anomalous window (on a `resolved` row: how long it lasted), anomalous windows.
        f("incident_start", ts_ms(), false),
        f("incident_duration_ms", DataType::Int64, false),
        f("incident_windows", DataType::Int64, false),
        // The raw statistics: the calibrated tail probability (1 − score, precise where the
        // score rounds to 1) and the largest directional z-score; null on `resolved` rows.
        f("p_value", DataType::Float64, true),
        f("z", DataType::Float64, true),
    ]))
});

/// `predictions`.
pub static PREDICTIONS: LazyLock<SchemaRef> = LazyLock::new(|| {
    Arc::new(Schema::new(vec![
        f("window_end", ts_ms(), false),
        f("signal", DataType::Utf8, false),
        f("service_name", DataType::Utf8, false),
        f("span_name", DataType::Utf8, false),
        f("value", DataType::Float64, false),
        f("lower", DataType::Float64, false),
        f("upper", DataType::Float64, false),
        f("confidence", DataType::Float64, false),
        f("horizon_ms", DataType::Int64, false),
        f("method", DataType::Utf8, false),
        f("trend_change", DataType::Boolean, false),
        f("time_to_threshold_ms", DataType::Int64, true),
    ]))
});

/// `problems`: one row per published snapshot of a problem (when it opened, when its members
/// or first cause changed, when it resolved); its newest row is its current state.
pub static PROBLEMS: LazyLock<SchemaRef> = LazyLock::new(|| {
    Arc::new(Schema::new(vec![
        f("updated_at", ts_ms(), false),
        f("problem_id", DataType::Utf8, false),
        f("state", DataType::Utf8, false),
        f("onset", ts_ms(), false),
        f("opened_at", ts_ms(), false),
        f("resolved_at", ts_ms(), true),
        f("severity", DataType::Utf8, false),
        // The first likely cause (null only for a problem without members).
        f("cause_service", DataType::Utf8, true),
        f("cause_span", DataType::Utf8, true),
        f("cause_kind", DataType::Utf8, true),
        f("cause_signal", DataType::Utf8, true),
        f("cause_evidence", DataType::Utf8, true),
        // Every ranked cause, one per line: `rank. service span (kind) signal: evidence`.
        f("causes", DataType::Utf8, false),
        f("members", DataType::Int64, false),
        f("services", DataType::Utf8, false),
        f("summary", DataType::Utf8, false),
    ]))
});

/// `problem_members`: the member incidents of each published problem snapshot.
pub static PROBLEM_MEMBERS: LazyLock<SchemaRef> = LazyLock::new(|| {
    Arc::new(Schema::new(vec![
        f("updated_at", ts_ms(), false),
        f("problem_id", DataType::Utf8, false),
        f("incident_id", DataType::Utf8, false),
        f("service_name", DataType::Utf8, false),
        f("span_name", DataType::Utf8, false),
        f("span_kind", DataType::Utf8, false),
        f("signal", DataType::Utf8, false),
        f("incident_start", ts_ms(), false),
        f("last_anomalous_end", ts_ms(), false),
        f("severity", DataType::Utf8, false),
        f("value", DataType::Float64, false),
        f("expected", DataType::Float64, false),
        f("resolved", DataType::Boolean, false),
        // Rank of the member's series among the problem's likely causes (1 = first).
        f("cause_rank", DataType::Int64, true),
    ]))
});

/// `service_graph`: edges between services per window (`dims` holds `client_<dim>` and
/// `server_<dim>` of `service_graph.dimensions`).
pub static SERVICE_GRAPH: LazyLock<SchemaRef> = LazyLock::new(|| {
    Arc::new(Schema::new(vec![
        f("window_size", DataType::Utf8, false),
        f("window_start", ts_ms(), false),
        f("window_end", ts_ms(), false),
        f("client", DataType::Utf8, false),
        f("server", DataType::Utf8, false),
        f("connection_type", DataType::Utf8, false),
        f("dims", string_map(), false),
        f("requests", DataType::Float64, false),
        f("failed", DataType::Float64, false),
        f("client_p99_ms", DataType::Float64, true),
        f("server_p99_ms", DataType::Float64, true),
        f("is_final", DataType::Boolean, false),
    ]))
});

/// `sessions`: session windows (`windows.extra: [{gap, key}]`), one row per session; a row
/// is replaced while late data can still change it and removed when its session is merged
/// into another (see `sessions.rs`).
pub static SESSIONS: LazyLock<SchemaRef> = LazyLock::new(|| {
    Arc::new(Schema::new(vec![
        f("session_key", DataType::Utf8, false),
        f("gap", DataType::Utf8, false),
        f("key_value", DataType::Utf8, false),
        f("session_id", DataType::UInt64, false),
        f("session_start", ts_ms(), false),
        f("session_end", ts_ms(), false),
        f("spans", DataType::Float64, false),
        f("errors", DataType::Float64, false),
        f("duration_ms", DataType::Float64, false),
        f("services", list(DataType::Utf8), false),
        f("services_truncated", DataType::Boolean, false),
        f("root_span_name", DataType::Utf8, true),
        f("is_final", DataType::Boolean, false),
    ]))
});

/// `continuous_results`: outputs of the configured continuous queries.
pub static CONTINUOUS_RESULTS: LazyLock<SchemaRef> = LazyLock::new(|| {
    Arc::new(Schema::new(vec![
        f("name", DataType::Utf8, false),
        f("window_start", ts_ms(), false),
        f("window_end", ts_ms(), false),
        f("columns", DataType::Utf8, false),
    ]))
});
