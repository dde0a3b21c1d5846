//! Config of SQL over the live tables (`sql`: listeners, query limits, retention, continuous
//! queries) and of the web console (`ui`, issue 18: a read-only page set served at `/` on the SQL
//! HTTP listener, a client of `/api/v1/sql` like any other).
//!
//! Owns the structs, their defaults and their pure validation; serving lives in [`crate::http`],
//! [`crate::flight`] and [`crate::console`].

use bytesize::ByteSize;
use redwatch_engine::config::{AuthConfig, TlsServerConfig, Validate};
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::time::Duration;

/// How long the live tables keep windows by default (`sql.retention`).
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(6 * 3600);

/// SQL over live windows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SqlConfig {
    /// HTTP API (`POST /api/v1/sql`) and `/healthz`, `/readyz`; `null` disables the listener.
    pub http_endpoint: Option<SocketAddr>,
    /// Arrow Flight SQL endpoint; `null` disables it.
    pub flight_endpoint: Option<SocketAddr>,
    /// A query running longer is cancelled (HTTP 408).
    #[serde(with = "humantime_serde")]
    pub query_timeout: Duration,
    /// Memory one query may use for sorts, joins and aggregations (HTTP 413 beyond).
    pub memory_limit: ByteSize,
    /// Memory all running queries may use together (each still within `memory_limit`); a query
    /// that would pass it fails with HTTP 413.
    pub shared_memory_limit: ByteSize,
    /// Queries that run at once; more wait (at most `query_timeout`, and at most four times this
    /// many waiting) and are then refused with HTTP 503 and `Retry-After`.
    pub max_concurrent_queries: usize,
    /// Bytes of Arrow data a query may return (HTTP 413 beyond; add a LIMIT or aggregate).
    pub max_result_bytes: ByteSize,
    /// Host names (besides IP literals and `localhost`) the HTTP API answers to; any other
    /// `Host` header is refused with HTTP 403, so a web page cannot reach the API through DNS
    /// rebinding.
    pub allowed_hosts: Vec<String>,
    /// How long closed windows stay queryable.
    #[serde(with = "humantime_serde")]
    pub retention: Duration,
    /// Upper bound on the bytes the `red` table keeps; the oldest windows go first.
    pub max_table_bytes: ByteSize,
    /// Rows a query may return (HTTP 413 beyond; add a LIMIT or aggregate).
    pub max_result_rows: usize,
    /// Rows of the `spans` table (recent raw spans); the oldest go first.
    pub spans_max_rows: usize,
    /// Raw spans per second admitted to the `spans` table (errors first); the rest are only
    /// aggregated.
    pub spans_per_second: usize,
    /// Named queries run on every closed primary window.
    pub continuous: Vec<ContinuousQuery>,
    /// TLS (rustls) of both SQL listeners, the HTTP API and Flight SQL; `null` = plaintext.
    pub tls: Option<TlsServerConfig>,
    /// Bearer-token authentication of both SQL listeners; `null` = none. Refused requests get
    /// HTTP 401 / gRPC `UNAUTHENTICATED` and count in
    /// `redwatch_unauthenticated_requests_total{listener="sql_http"|"flight_sql"}`; `/healthz`
    /// and `/readyz` stay open (probes carry no token).
    pub auth: Option<AuthConfig>,
}

impl Default for SqlConfig {
    fn default() -> Self {
        SqlConfig {
            http_endpoint: Some(SocketAddr::from(([127, 0, 0, 1], 7070))),
            flight_endpoint: Some(SocketAddr::from(([127, 0, 0, 1], 50051))),
            query_timeout: Duration::from_secs(30),
            memory_limit: ByteSize::mib(512),
            shared_memory_limit: ByteSize::gib(1),
            max_concurrent_queries: 8,
            max_result_bytes: ByteSize::mib(64),
            allowed_hosts: Vec::new(),
            retention: DEFAULT_RETENTION,
            max_table_bytes: ByteSize::gib(1),
            max_result_rows: 100_000,
            spans_max_rows: 100_000,
            spans_per_second: 2_000,
            continuous: Vec::new(),
            tls: None,
            auth: None,
        }
    }
}

/// A query run on every window close; its result rows go to `continuous_results` and to
/// Prometheus as `redwatch_continuous_<name>` gauges (one per numeric column).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContinuousQuery {
    /// Name: `[a-z_][a-z0-9_]*`.
    pub name: String,
    /// A read-only SELECT; `$window_start` and `$window_end` are replaced by the closed window's
    /// bounds as timestamp literals.
    pub query: String,
}

/// Continuous-query names whose `redwatch_continuous_<name>` gauges would clash with the
/// continuous-query runner's own counters.
pub const RESERVED_CONTINUOUS_NAMES: &[&str] = &["runs_total", "windows_skipped_total"];

/// The web console on the SQL HTTP listener (`sql.http_endpoint`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UiConfig {
    /// Serve the console at `/` (needs `sql.http_endpoint`); `false` leaves only the API.
    pub enabled: bool,
    /// Base URL of a Jaeger UI (`http://host:16686`); trace ids become links to
    /// `<jaeger_url>/trace/<id>`. `null` = trace ids are shown as text.
    pub jaeger_url: Option<String>,
}

impl Default for UiConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            jaeger_url: None,
        }
    }
}

impl UiConfig {
    /// Problems with their paths (`ui.jaeger_url`).
    pub fn problems(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        if let Some(u) = &self.jaeger_url {
            let scheme_ok = u.starts_with("http://") || u.starts_with("https://");
            let rest = u.split_once("://").map_or("", |(_, r)| r);
            if !scheme_ok || rest.is_empty() || u.chars().any(|c| c.is_whitespace() || c == '"') {
                out.push((
                    "ui.jaeger_url".to_string(),
                    format!("{u:?} is not an http:// or https:// URL"),
                ));
            }
        }
        out
    }
}

impl Validate for SqlConfig {
    /// The SQL section's keys except its `tls` and `auth` blocks (checked with every
    /// listener's, [`TlsServerConfig::validate`], [`AuthConfig::validate`]).
    fn validate(&self, path: &str) -> Vec<(String, String)> {
        let mut out = Vec::new();
        let mut bad = |key: String, message: String| out.push((key, message));
        let sq = self;
        if sq.query_timeout.is_zero() {
            bad(
                format!("{path}.query_timeout"),
                "must be greater than 0".into(),
            );
        }
        if sq.memory_limit.as_u64() < 1 << 20 {
            bad(
                format!("{path}.memory_limit"),
                "must be at least 1MiB".into(),
            );
        }
        if sq.max_result_rows == 0 {
            bad(
                format!("{path}.max_result_rows"),
                "must be at least 1".into(),
            );
        }
        if sq.shared_memory_limit < sq.memory_limit {
            bad(
                format!("{path}.shared_memory_limit"),
                format!(
                    "must be at least sql.memory_limit ({}): one query alone could never use its own limit",
                    sq.memory_limit
                ),
            );
        }
        if sq.max_concurrent_queries == 0 {
            bad(
                format!("{path}.max_concurrent_queries"),
                "must be at least 1".into(),
            );
        }
        if sq.max_result_bytes.as_u64() < 1 << 10 {
            bad(
                format!("{path}.max_result_bytes"),
                "must be at least 1KiB".into(),
            );
        }
        for (i, h) in sq.allowed_hosts.iter().enumerate() {
            if h.is_empty() || h.contains(|c: char| c.is_whitespace() || c == '/' || c == ':') {
                bad(
                    format!("{path}.allowed_hosts[{i}]"),
                    format!("{h:?} is not a host name (no port, scheme or path)"),
                );
            }
        }
        let mut names = std::collections::HashSet::new();
        for (i, q) in sq.continuous.iter().enumerate() {
            let valid = !q.name.is_empty()
                && q.name
                    .starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
                && q.name
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
            if !valid {
                bad(
                    format!("{path}.continuous[{i}].name"),
                    format!("`{}` must match [a-z_][a-z0-9_]*", q.name),
                );
            }
            if !names.insert(q.name.as_str()) {
                bad(
                    format!("{path}.continuous[{i}].name"),
                    format!("`{}` is used twice", q.name),
                );
            }
            if RESERVED_CONTINUOUS_NAMES.contains(&q.name.as_str()) {
                bad(
                    format!("{path}.continuous[{i}].name"),
                    format!(
                        "`{}` is taken: redwatch_continuous_{} is one of redwatch's own metrics",
                        q.name, q.name
                    ),
                );
            }
            if q.query.trim().is_empty() {
                bad(
                    format!("{path}.continuous[{i}].query"),
                    "must not be empty".into(),
                );
            }
        }
        out
    }
}
