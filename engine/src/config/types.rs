//! The config sections of what the engine itself runs or every component shares: windows,
//! dimensions, limits. Every field carries its doc; defaults are the `Default` impls below and
//! nowhere else (`redwatch validate --print-defaults` prints the whole config's default).

use bytesize::ByteSize;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// Event-time windows (docs/design.md, "Time semantics").
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WindowsConfig {
    /// The primary tumbling window, aligned to the Unix epoch.
    #[serde(with = "humantime_serde")]
    pub size: Duration,
    /// Coarser tumbling windows computed from the primary window's results (multiples of `size`).
    #[serde(with = "humantime_duration_list")]
    pub rollups: Vec<Duration>,
    /// More window specs: hopping `{size, slide}` (computed from the primary windows' results,
    /// like rollups) and session `{gap, key}` (spans grouped per key value until a gap).
    pub extra: Vec<ExtraWindow>,
    /// How far behind the newest event time the watermark trails.
    #[serde(with = "humantime_serde")]
    pub max_out_of_orderness: Duration,
    /// How long after its end an emitted window still accepts (and re-emits) late data.
    #[serde(with = "humantime_serde")]
    pub allowed_lateness: Duration,
    /// A source without data for this long stops holding the watermark back.
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// Event times further than this ahead of the wall clock are rejected.
    #[serde(with = "humantime_serde")]
    pub max_future_skew: Duration,
}

impl Default for WindowsConfig {
    fn default() -> Self {
        Self {
            size: Duration::from_secs(10),
            rollups: vec![Duration::from_secs(60)],
            extra: Vec::new(),
            max_out_of_orderness: Duration::from_secs(5),
            allowed_lateness: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(30),
            max_future_skew: Duration::from_secs(3600),
        }
    }
}

/// An extra window spec. Hopping: `{size: 1m, slide: 10s}` — a `size` window starting every
/// `slide` (a multiple of `windows.size` that divides `size`). Session: `{gap: 30s, key:
/// trace_id}` — per key value, spans whose event times lie within `gap` of each other form one
/// session (see `sessions.rs`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct ExtraWindow {
    /// Hopping: the window length.
    #[serde(
        default,
        with = "humantime_serde",
        skip_serializing_if = "Option::is_none"
    )]
    pub size: Option<Duration>,
    /// Hopping: how far apart window starts are.
    #[serde(
        default,
        with = "humantime_serde",
        skip_serializing_if = "Option::is_none"
    )]
    pub slide: Option<Duration>,
    /// Session: spans of one key value whose event times are at most this far apart share a
    /// session; it ends `gap` after its last span.
    #[serde(
        default,
        with = "humantime_serde",
        skip_serializing_if = "Option::is_none"
    )]
    pub gap: Option<Duration>,
    /// Session: what groups spans — `trace_id`, `service.name`, or an attribute written like a
    /// RED dimension, `{name: enduser.id, source: span}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<super::SessionKey>,
    /// Session: a session never grows past this length (a longer activity is split into
    /// consecutive sessions); default 1h.
    #[serde(
        default,
        with = "humantime_serde",
        skip_serializing_if = "Option::is_none"
    )]
    pub max_duration: Option<Duration>,
    /// Session: open sessions at most; spans that would open more are dropped and counted
    /// (`redwatch_sessions_overflow_spans_total`); default 100000.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_sessions: Option<usize>,
}

impl ExtraWindow {
    /// `(size, slide)` of a hopping spec.
    pub fn hopping(&self) -> Option<(Duration, Duration)> {
        match (self.size, self.slide, self.is_session()) {
            (Some(size), Some(slide), false) => Some((size, slide)),
            _ => None,
        }
    }
}

/// Where a dimension's value is read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum DimensionSource {
    /// The span's attributes, then its instrumentation scope's, then its resource's (the first
    /// one that has the key with a scalar value).
    #[default]
    Any,
    /// Only the span's attributes.
    Span,
    /// Only the resource's attributes (e.g. `deployment.environment`).
    Resource,
    /// Only the instrumentation scope's attributes.
    Scope,
}

impl DimensionSource {
    /// Whether values may come from the instrumentation scope.
    pub fn reads_scope(self) -> bool {
        matches!(self, DimensionSource::Any | DimensionSource::Scope)
    }
}

/// One extra RED dimension.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Dimension {
    /// Attribute key, e.g. `http.method`.
    pub name: String,
    /// Value used when no attribute of `source` has the key; absent = empty label.
    #[serde(default)]
    pub default: Option<String>,
    /// Where the value is read from: `any` (span, then scope, then resource; the default),
    /// `span`, `resource` or `scope`.
    #[serde(default)]
    pub source: DimensionSource,
}

impl Dimension {
    /// The Prometheus label name: the attribute key with every non `[a-zA-Z0-9_]` replaced by `_`.
    pub fn label(&self) -> String {
        let mut s: String = self
            .name
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '_' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        if s.starts_with(|c: char| c.is_ascii_digit()) {
            s.insert(0, '_');
        }
        s
    }
}

/// Resource bounds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Batches that may wait between the receivers and the operators.
    pub queue_capacity: usize,
    /// How long a receiver waits for queue space before answering with backpressure
    /// (gRPC `RESOURCE_EXHAUSTED`, HTTP 429).
    #[serde(with = "humantime_serde")]
    pub enqueue_timeout: Duration,
    /// The memory limiter: bytes held by in-flight requests (raw and decoded) and by queued
    /// batches. Above `limit - spike` receivers answer with retryable backpressure (gRPC
    /// `RESOURCE_EXHAUSTED` + `RetryInfo`, HTTP 429 + `Retry-After`) and the Kafka source
    /// pauses; nothing accounted ever passes `limit`. `null` = accounted, never refused.
    pub memory: Option<MemoryLimitConfig>,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            queue_capacity: 256,
            enqueue_timeout: Duration::from_millis(500),
            memory: Some(MemoryLimitConfig::default()),
        }
    }
}

/// `limits.memory` (the Collector's `memory_limiter`: `limit_mib`, `spike_limit_mib`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MemoryLimitConfig {
    /// Hard limit on accounted bytes: a reservation that would pass it is refused.
    pub limit: ByteSize,
    /// Headroom below `limit` for requests already admitted: new requests are refused once
    /// accounted bytes pass `limit - spike` (the soft limit).
    pub spike: ByteSize,
}

impl Default for MemoryLimitConfig {
    fn default() -> Self {
        Self {
            limit: ByteSize::gib(1),
            spike: ByteSize::mib(256),
        }
    }
}

/// `Vec<Duration>` as a list of humantime strings.
mod humantime_duration_list {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub fn serialize<S: Serializer>(v: &[Duration], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(v.iter().map(|d| humantime::format_duration(*d).to_string()))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Duration>, D::Error> {
        let raw = Vec::<String>::deserialize(d)?;
        raw.iter()
            .map(|s| humantime::parse_duration(s).map_err(serde::de::Error::custom))
            .collect()
    }
}
