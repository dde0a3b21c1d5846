//! Prometheus `/metrics` endpoint: RED series under the spanmetrics connector's names (so Jaeger's
//! Monitor tab works unchanged) and the `redwatch_*` self-metrics.
//!
//! Counters grow only by the deltas of final windows of the primary window spec (a late
//! re-emission adds just its own delta); provisional rows never reach them.

use axum::extract::State;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use hashbrown::HashMap;
use redwatch_engine::config::Dimension;
use redwatch_engine::model::StatusCode;
use redwatch_engine::telemetry::Registry;
use redwatch_operators::red::{RedRow, RedSink, SeriesKey};
use std::fmt::Write;
use std::sync::{Arc, Mutex};
use tokio_util::sync::CancellationToken;

/// Cumulative RED of one series and status.
#[derive(Debug, Clone, Default)]
struct StatusTotals {
    calls: f64,
    sum_ms: f64,
    /// Non-cumulative bucket counts (last = +Inf).
    buckets: Vec<f64>,
}

mod service_graph;
pub use service_graph::PrometheusServiceGraph;

/// A block of metric families rendered on `/metrics` after RED (e.g. the service graph).
pub trait MetricsSection: Send + Sync {
    /// Appends the block in the Prometheus text format.
    fn render(&self, out: &mut String);
}

/// The RED counters and histograms as Prometheus sees them.
pub struct PrometheusRed {
    bounds: Vec<f64>,
    dim_labels: Vec<String>,
    series: Mutex<HashMap<Arc<SeriesKey>, [Option<StatusTotals>; 3]>>,
    /// Further families served on the same endpoint.
    sections: Mutex<Vec<Arc<dyn MetricsSection>>>,
}

impl PrometheusRed {
    pub fn new(bounds: Vec<f64>, dims: &[Dimension]) -> Arc<Self> {
        Arc::new(PrometheusRed {
            bounds,
            dim_labels: dims.iter().map(|d| d.label()).collect(),
            series: Mutex::new(HashMap::new()),
            sections: Mutex::new(Vec::new()),
        })
    }

    /// Serves `section` on the same `/metrics`, after the RED families.
    pub fn add_section(&self, section: Arc<dyn MetricsSection>) {
        if let Ok(mut s) = self.sections.lock() {
            s.push(section);
        }
    }

    fn render_sections(&self, out: &mut String) {
        let sections: Vec<Arc<dyn MetricsSection>> = match self.sections.lock() {
            Ok(s) => s.clone(),
            Err(_) => return,
        };
        for s in sections {
            s.render(out);
        }
    }

    /// Number of exported series (per status).
    pub fn series_count(&self) -> usize {
        self.series
            .lock()
            .map(|m| m.values().map(|s| s.iter().flatten().count()).sum())
            .unwrap_or(0)
    }

    /// Appends the RED families in the Prometheus text format.
    pub fn render(&self, out: &mut String) {
        let keys = self.sorted_keys();
        let mut labels = String::new();
        for family in 0..2 {
            self.render_family(family, &keys, &mut 0, usize::MAX, &mut labels, out);
        }
    }

    /// The exported series, sorted (cheap `Arc` clones: the exposition is rendered from this
    /// list a chunk at a time, never holding the lock across the whole text).
    fn sorted_keys(&self) -> Vec<Arc<SeriesKey>> {
        let Ok(map) = self.series.lock() else {
            return Vec::new();
        };
        let mut keys: Vec<Arc<SeriesKey>> = map.keys().cloned().collect();
        keys.sort();
        keys
    }

    /// Renders family `family` (0: calls, 1: duration histogram) for `keys[*next..]` (the
    /// header first when `*next == 0`) until `out` holds `budget` bytes; advances `*next`.
    /// Returns whether the family is complete.
    fn render_family(
        &self,
        family: usize,
        keys: &[Arc<SeriesKey>],
        next: &mut usize,
        budget: usize,
        labels: &mut String,
        out: &mut String,
    ) -> bool {
        if *next == 0 {
            if family == 0 {
                out.push_str("# HELP traces_span_metrics_calls_total Spans per series, counted in event-time windows (sampling-weighted).\n");
                out.push_str("# TYPE traces_span_metrics_calls_total counter\n");
            } else {
                out.push_str("# HELP traces_span_metrics_duration_milliseconds Span duration per series in milliseconds.\n");
                out.push_str("# TYPE traces_span_metrics_duration_milliseconds histogram\n");
            }
        }
        let Ok(map) = self.series.lock() else {
            return true;
        };
        while let Some(k) = keys.get(*next) {
            if out.len() >= budget {
                return false;
            }
            *next += 1;
            // Expired since the key list was taken: skip.
            let Some(totals) = map.get(k) else { continue };
            for (s, t) in StatusCode::ALL.iter().zip(totals.iter()) {
                let Some(t) = t else { continue };
                self.labels(labels, k, *s);
                if family == 0 {
                    let _ = writeln!(
                        out,
                        "traces_span_metrics_calls_total{{{labels}}} {}",
                        t.calls
                    );
                    continue;
                }
                let mut cum = 0.0;
                for (i, b) in self.bounds.iter().enumerate() {
                    cum += t.buckets.get(i).copied().unwrap_or(0.0);
                    let _ = writeln!(
                        out,
                        "traces_span_metrics_duration_milliseconds_bucket{{{labels},le=\"{b}\"}} {cum}"
                    );
                }
                cum += t.buckets.get(self.bounds.len()).copied().unwrap_or(0.0);
                let _ = writeln!(
                    out,
                    "traces_span_metrics_duration_milliseconds_bucket{{{labels},le=\"+Inf\"}} {cum}"
                );
                let _ = writeln!(
                    out,
                    "traces_span_metrics_duration_milliseconds_sum{{{labels}}} {}",
                    t.sum_ms
                );
                let _ = writeln!(
                    out,
                    "traces_span_metrics_duration_milliseconds_count{{{labels}}} {}",
                    t.calls
                );
            }
        }
        true
    }

    fn labels(&self, out: &mut String, k: &SeriesKey, status: StatusCode) {
        out.clear();
        let mut first = true;
        let mut push = |out: &mut String, name: &str, value: &str| {
            if value.is_empty() {
                return;
            }
            if !first {
                out.push(',');
            }
            first = false;
            out.push_str(name);
            out.push_str("=\"");
            escape_label_value(out, value);
            out.push('"');
        };
        if k.overflow {
            push(out, "otel_metric_overflow", "true");
        } else {
            push(out, "service_name", &k.service_name);
            push(out, "span_name", &k.span_name);
            push(out, "span_kind", k.kind.as_label());
        }
        push(out, "status_code", status.as_label());
        for (name, v) in self.dim_labels.iter().zip(k.dims.iter()) {
            push(out, name, v);
        }
    }
}

impl RedSink for PrometheusRed {
    fn on_final(&self, rows: &[RedRow]) {
        let Ok(mut map) = self.series.lock() else {
            return;
        };
        let nb = self.bounds.len();
        for row in rows.iter().filter(|r| r.primary) {
            let Some(delta) = &row.delta else { continue };
            let entry = map
                .entry(row.series.clone())
                .or_insert_with(Default::default);
            for s in delta.statuses() {
                let t = entry[s as usize].get_or_insert_with(|| StatusTotals {
                    buckets: vec![0.0; nb + 1],
                    ..StatusTotals::default()
                });
                t.calls += delta.calls[s as usize];
                t.sum_ms += delta.sum_ms[s as usize];
                for (acc, add) in t.buckets.iter_mut().zip(delta.bucket_counts(s, nb)) {
                    *acc += add;
                }
            }
        }
    }

    fn on_series_expired(&self, series: &[Arc<SeriesKey>]) {
        if let Ok(mut map) = self.series.lock() {
            for s in series {
                map.remove(s);
            }
        }
    }
}

/// Escapes a label value per the text exposition format.
pub fn escape_label_value(out: &mut String, v: &str) {
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// Appends the self-metrics in the Prometheus text format.
pub fn render_registry(registry: &Registry, out: &mut String) {
    registry.visit(|name, help, kind, samples| {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} {}", kind.as_str());
        for s in samples {
            out.push_str(name);
            if !s.labels.is_empty() {
                out.push('{');
                for (i, (k, v)) in s.labels.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    out.push_str(k);
                    out.push_str("=\"");
                    escape_label_value(out, v);
                    out.push('"');
                }
                out.push('}');
            }
            let _ = writeln!(out, " {}", s.value);
        }
    });
}

#[derive(Clone)]
struct Exposition {
    red: Arc<PrometheusRed>,
    registry: Arc<Registry>,
}

/// Bytes of exposition text rendered per chunk of the streamed `/metrics` body: the RED series
/// (the part that grows with cardinality) are rendered a chunk at a time as the client reads,
/// so a scrape holds O(chunk + series count) bytes, not the whole text.
const CHUNK_BYTES: usize = 64 << 10;

async fn metrics(State(st): State<Exposition>) -> impl IntoResponse {
    let keys = st.red.sorted_keys();
    // (family, next key); family 2 = sections and self-metrics, 3 = done.
    let state = (st, keys, 0usize, 0usize, String::new());
    let chunks = futures::stream::unfold(
        state,
        |(st, keys, mut family, mut next, mut labels)| async move {
            if family >= 3 {
                return None;
            }
            let mut out = String::with_capacity(CHUNK_BYTES + 8192);
            while family < 2 && out.len() < CHUNK_BYTES {
                if st.red.render_family(
                    family,
                    &keys,
                    &mut next,
                    CHUNK_BYTES,
                    &mut labels,
                    &mut out,
                ) {
                    family += 1;
                    next = 0;
                }
            }
            if family == 2 && out.len() < CHUNK_BYTES {
                st.red.render_sections(&mut out);
                render_registry(&st.registry, &mut out);
                family = 3;
            }
            Some((
                Ok::<_, std::convert::Infallible>(bytes::Bytes::from(out)),
                (st, keys, family, next, labels),
            ))
        },
    );
    (
        [(
            http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        axum::body::Body::from_stream(chunks),
    )
}

/// Serves `/metrics` on `listener` until `cancel` fires.
pub async fn serve(
    listener: redwatch_engine::security::SecureListener,
    red: Arc<PrometheusRed>,
    registry: Arc<Registry>,
    cancel: CancellationToken,
) -> std::io::Result<()> {
    let app = Router::new()
        .route("/metrics", get(metrics))
        .with_state(Exposition { red, registry })
        .layer(listener.auth_layer());
    axum::serve(listener, app)
        .with_graceful_shutdown(cancel.cancelled_owned())
        .await
}
