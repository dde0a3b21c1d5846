//! Config of the RED aggregation (`red`): dimensions, buckets, series limits and span-name
//! normalisation. Owns these structs, their defaults (the `Default` impls here and nowhere else)
//! and their pure validation; it must not build operators.

use bytesize::ByteSize;
use redwatch_engine::config::{Dimension, Validate, MAX_BUCKETS, MAX_DIMENSIONS, RESERVED_LABELS};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// RED aggregation, compatible with the Collector's spanmetrics connector.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RedConfig {
    /// Extra series dimensions, read from span, scope or resource attributes (see `source`).
    pub dimensions: Vec<Dimension>,
    /// Span-name normalisation before series lookup (collapses ids in path-like names).
    pub span_names: SpanNamesConfig,
    /// Histogram bucket upper bounds in milliseconds (Prometheus `le`), strictly increasing.
    pub buckets_ms: Vec<f64>,
    /// Distinct active series at most; further series fold into one overflow series.
    pub cardinality_limit: usize,
    /// The same limit in bytes: the active series keys' strings (service, span name, dimension
    /// values; for ingested metrics name and attributes) sum to at most this; further series
    /// fold into the overflow series. Bounds state and the `/metrics` exposition.
    pub cardinality_limit_bytes: ByteSize,
    /// A series with no data for this long is forgotten (it leaves `/metrics` and frees its slot).
    #[serde(with = "humantime_serde")]
    pub series_expiry: Duration,
}

impl Default for RedConfig {
    fn default() -> Self {
        Self {
            dimensions: Vec::new(),
            buckets_ms: vec![
                2.0, 4.0, 6.0, 8.0, 10.0, 50.0, 100.0, 200.0, 400.0, 800.0, 1000.0, 1400.0, 2000.0,
                5000.0, 10000.0, 15000.0,
            ],
            cardinality_limit: 10_000,
            cardinality_limit_bytes: ByteSize::mib(16),
            series_expiry: Duration::from_secs(900),
            span_names: SpanNamesConfig::default(),
        }
    }
}

/// One span-name rewrite rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpanNameRule {
    /// A regular expression (Rust `regex` syntax) matched anywhere in the span name.
    pub pattern: String,
    /// What every match is replaced with; `$1` / `${name}` refer to capture groups.
    pub replacement: String,
}

/// Span-name normalisation, applied before a span is looked up in its RED series, so names that
/// carry ids (`GET /users/123`) do not create a series each.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SpanNamesConfig {
    /// Replace path segments that are ids — decimal numbers, UUIDs, hex ids of 8+ characters
    /// with a digit — by `{id}` in path-like names: `GET /users/123` → `GET /users/{id}`.
    pub collapse_ids: bool,
    /// Rewrite rules, applied in order (each replaces all its matches) before ids are collapsed.
    pub rules: Vec<SpanNameRule>,
}

impl Default for SpanNamesConfig {
    fn default() -> Self {
        SpanNamesConfig {
            collapse_ids: true,
            rules: Vec::new(),
        }
    }
}

impl SpanNamesConfig {
    /// Every problem, as (dotted path, message); `path` is where the section sits. Pure.
    pub fn validate(&self, path: &str) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for (i, r) in self.rules.iter().enumerate() {
            if r.pattern.is_empty() {
                out.push((
                    format!("{path}.rules[{i}].pattern"),
                    "must not be empty".to_string(),
                ));
                continue;
            }
            if let Err(e) = regex::RegexBuilder::new(&r.pattern)
                .size_limit(1 << 20)
                .build()
            {
                // The regex error spans several lines (pattern, caret, message): keep it on one.
                let msg = e
                    .to_string()
                    .split_whitespace()
                    .collect::<Vec<_>>()
                    .join(" ");
                out.push((
                    format!("{path}.rules[{i}].pattern"),
                    format!("is not a valid regular expression: {msg}"),
                ));
            }
        }
        out
    }
}

impl Validate for RedConfig {
    /// The RED section's own keys; `span_names` is checked on its own
    /// ([`SpanNamesConfig::validate`]), after the other sections.
    fn validate(&self, path: &str) -> Vec<(String, String)> {
        let mut out = Vec::new();
        let mut bad = |key: String, message: String| out.push((key, message));
        let r = self;
        if r.cardinality_limit == 0 {
            bad(
                format!("{path}.cardinality_limit"),
                "must be at least 1".into(),
            );
        }
        if r.buckets_ms.is_empty() {
            bad(
                format!("{path}.buckets_ms"),
                "needs at least one bucket bound".into(),
            );
        }
        if r.buckets_ms.len() > MAX_BUCKETS {
            bad(
                format!("{path}.buckets_ms"),
                format!("at most {MAX_BUCKETS} bucket bounds are supported"),
            );
        }
        if r.buckets_ms
            .windows(2)
            .any(|p| p[0] >= p[1] || p[0].is_nan())
            || r.buckets_ms.iter().any(|b| !b.is_finite() || *b <= 0.0)
        {
            bad(
                format!("{path}.buckets_ms"),
                "bounds must be positive, finite and strictly increasing".into(),
            );
        }
        for (i, d) in r.dimensions.iter().enumerate() {
            if d.name.is_empty() {
                bad(
                    format!("{path}.dimensions[{i}].name"),
                    "must not be empty".into(),
                );
            }
            if RESERVED_LABELS.contains(&d.label().as_str()) {
                bad(
                    format!("{path}.dimensions[{i}].name"),
                    format!("`{}` clashes with a built-in label", d.name),
                );
            }
        }
        if r.dimensions.len() > MAX_DIMENSIONS {
            bad(
                format!("{path}.dimensions"),
                format!("at most {MAX_DIMENSIONS} dimensions are supported"),
            );
        }
        out
    }
}
