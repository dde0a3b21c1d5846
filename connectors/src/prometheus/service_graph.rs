//! The service graph families on `/metrics`, under the names and labels of the Collector's
//! servicegraph connector: `traces_service_graph_request_total`, `…_request_failed_total`,
//! `…_request_server_seconds` and `…_request_client_seconds` (histograms) and
//! `traces_service_graph_unpaired_spans_total`, labelled `client`, `server`, `connection_type`
//! (plus `client_<dim>` / `server_<dim>` for configured dimensions, and `virtual_node` on virtual
//! node edges when `service_graph.virtual_node_extra_label` is on).
//!
//! Counters grow by the deltas of final windows only; unpaired spans are counted when they
//! expire. Memory is bounded by the operator's edge cardinality limit.

use super::{escape_label_value, MetricsSection};
use hashbrown::HashMap;
use redwatch_engine::config::Dimension;
use redwatch_operators::servicegraph::{EdgeKey, EdgeRow, ServiceGraphSink, Unpaired};
use std::fmt::Write;
use std::sync::{Arc, Mutex};

#[derive(Debug, Clone, Default)]
struct Histogram {
    sum: f64,
    count: f64,
    /// Non-cumulative, +Inf last.
    buckets: Vec<f64>,
}

#[derive(Debug, Clone, Default)]
struct EdgeTotals {
    requests: f64,
    failed: f64,
    client: Histogram,
    server: Histogram,
}

#[derive(Default)]
struct State {
    edges: HashMap<Arc<EdgeKey>, EdgeTotals>,
    unpaired: HashMap<Arc<EdgeKey>, u64>,
}

/// The service graph counters and histograms as Prometheus sees them.
pub struct PrometheusServiceGraph {
    bounds: Vec<f64>,
    /// `client_<dim>` labels, then `server_<dim>` labels.
    dim_labels: Vec<String>,
    /// Distinct unpaired label sets kept at most (the rest fold into the overflow set).
    max_unpaired: usize,
    overflow: Arc<EdgeKey>,
    state: Mutex<State>,
}

impl PrometheusServiceGraph {
    pub fn new(bounds_s: Vec<f64>, dims: &[Dimension], cardinality_limit: usize) -> Arc<Self> {
        let labels: Vec<String> = dims.iter().map(|d| d.label()).collect();
        let dim_labels = labels
            .iter()
            .map(|l| format!("client_{l}"))
            .chain(labels.iter().map(|l| format!("server_{l}")))
            .collect();
        Arc::new(PrometheusServiceGraph {
            bounds: bounds_s,
            dim_labels,
            max_unpaired: cardinality_limit.max(1),
            overflow: Arc::new(EdgeKey::overflow(dims.len())),
            state: Mutex::new(State::default()),
        })
    }

    fn labels(&self, out: &mut String, k: &EdgeKey) {
        out.clear();
        if k.overflow {
            out.push_str("otel_metric_overflow=\"true\"");
            return;
        }
        let mut push = |name: &str, value: &str| {
            if !out.is_empty() {
                out.push(',');
            }
            out.push_str(name);
            out.push_str("=\"");
            escape_label_value(out, value);
            out.push('"');
        };
        push("client", &k.client);
        push("server", &k.server);
        push("connection_type", k.connection_type.as_label());
        if let Some(side) = k.virtual_node.as_label() {
            push("virtual_node", side);
        }
        for (name, v) in self.dim_labels.iter().zip(k.dims.iter()) {
            push(name, v);
        }
    }

    fn render_histogram(&self, out: &mut String, name: &str, labels: &str, h: &Histogram) {
        let mut cum = 0.0;
        for (i, b) in self.bounds.iter().enumerate() {
            cum += h.buckets.get(i).copied().unwrap_or(0.0);
            let _ = writeln!(out, "{name}_bucket{{{labels},le=\"{b}\"}} {cum}");
        }
        cum += h.buckets.get(self.bounds.len()).copied().unwrap_or(0.0);
        let _ = writeln!(out, "{name}_bucket{{{labels},le=\"+Inf\"}} {cum}");
        let _ = writeln!(out, "{name}_sum{{{labels}}} {}", h.sum);
        let _ = writeln!(out, "{name}_count{{{labels}}} {}", h.count);
    }
}

impl MetricsSection for PrometheusServiceGraph {
    fn render(&self, out: &mut String) {
        let Ok(st) = self.state.lock() else {
            return;
        };
        let mut keys: Vec<&Arc<EdgeKey>> = st.edges.keys().collect();
        keys.sort();
        let mut labels = String::new();
        out.push_str("# HELP traces_service_graph_request_total Requests between two services (paired client and server spans, sampling-weighted).\n");
        out.push_str("# TYPE traces_service_graph_request_total counter\n");
        for k in &keys {
            self.labels(&mut labels, k);
            let _ = writeln!(
                out,
                "traces_service_graph_request_total{{{labels}}} {}",
                st.edges[*k].requests
            );
        }
        out.push_str("# HELP traces_service_graph_request_failed_total Requests between two services where the client or the server span failed.\n");
        out.push_str("# TYPE traces_service_graph_request_failed_total counter\n");
        for k in &keys {
            self.labels(&mut labels, k);
            let _ = writeln!(
                out,
                "traces_service_graph_request_failed_total{{{labels}}} {}",
                st.edges[*k].failed
            );
        }
        for (name, help, server) in [
            (
                "traces_service_graph_request_server_seconds",
                "Server-side latency of requests between two services, in seconds.",
                true,
            ),
            (
                "traces_service_graph_request_client_seconds",
                "Client-side latency of requests between two services, in seconds.",
                false,
            ),
        ] {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} histogram");
            for k in &keys {
                self.labels(&mut labels, k);
                let t = &st.edges[*k];
                let h = if server { &t.server } else { &t.client };
                self.render_histogram(out, name, &labels, h);
            }
        }
        let mut unpaired: Vec<(&Arc<EdgeKey>, &u64)> = st.unpaired.iter().collect();
        unpaired.sort();
        out.push_str("# HELP traces_service_graph_unpaired_spans_total Client or server spans that found no partner within service_graph.wait.\n");
        out.push_str("# TYPE traces_service_graph_unpaired_spans_total counter\n");
        for (k, n) in unpaired {
            self.labels(&mut labels, k);
            let _ = writeln!(
                out,
                "traces_service_graph_unpaired_spans_total{{{labels}}} {n}"
            );
        }
    }
}

impl ServiceGraphSink for PrometheusServiceGraph {
    fn on_final(&self, rows: &[EdgeRow]) {
        let Ok(mut st) = self.state.lock() else {
            return;
        };
        let nb = self.bounds.len();
        for r in rows {
            let Some(d) = &r.delta else { continue };
            let t = st
                .edges
                .entry(r.edge.clone())
                .or_insert_with(|| EdgeTotals {
                    client: Histogram {
                        buckets: vec![0.0; nb + 1],
                        ..Histogram::default()
                    },
                    server: Histogram {
                        buckets: vec![0.0; nb + 1],
                        ..Histogram::default()
                    },
                    ..EdgeTotals::default()
                });
            t.requests += d.requests;
            t.failed += d.failed;
            for (h, l) in [(&mut t.client, &d.client), (&mut t.server, &d.server)] {
                h.sum += l.sum_s;
                h.count += d.requests;
                for (acc, add) in h.buckets.iter_mut().zip(l.buckets.dense(nb)) {
                    *acc += add;
                }
            }
        }
    }

    fn on_unpaired(&self, unpaired: &[Unpaired]) {
        let Ok(mut st) = self.state.lock() else {
            return;
        };
        for u in unpaired {
            let key = if st.unpaired.contains_key(&u.edge) || st.unpaired.len() < self.max_unpaired
            {
                u.edge.clone()
            } else {
                self.overflow.clone()
            };
            *st.unpaired.entry(key).or_insert(0) += u.spans;
        }
    }

    fn on_series_expired(&self, edges: &[Arc<EdgeKey>]) {
        if let Ok(mut st) = self.state.lock() {
            for e in edges {
                st.edges.remove(e);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use redwatch_engine::fixtures::{span_batch, SpanFixture};
    use redwatch_engine::model::{SourceId, SpanKind, StatusCode};
    use redwatch_engine::telemetry::Registry;
    use redwatch_operators::layout::SpanSections;
    use redwatch_operators::servicegraph::ServiceGraphOperator;

    const SEC: u64 = 1_000_000_000;
    const T0: u64 = 1_700_000_000 * SEC;

    fn sp(svc: &str, kind: SpanKind, span: u8, parent: u8, dur_ms: f64) -> SpanFixture {
        let p = if parent == 0 { [0; 8] } else { [parent; 8] };
        SpanFixture::new(svc, "op", T0 + SEC, dur_ms)
            .kind(kind)
            .ids([1; 16], [span; 8], p)
    }

    /// The exporter of `cfg`'s service graph, fed by its operator.
    fn exporter_and_operator(
        cfg: &SpanSections,
    ) -> (Arc<PrometheusServiceGraph>, ServiceGraphOperator) {
        let prom = PrometheusServiceGraph::new(
            cfg.service_graph.buckets_s.clone(),
            &[],
            cfg.service_graph.cardinality_limit,
        );
        let reg = Registry::new();
        let op = ServiceGraphOperator::new(
            &cfg.windows,
            &cfg.red,
            &cfg.service_graph,
            vec![prom.clone()],
            &reg,
        );
        (prom, op)
    }

    #[test]
    fn exposition_uses_the_collector_names_labels_and_buckets() {
        let cfg = SpanSections::default();
        let (prom, mut op) = exporter_and_operator(&cfg);
        let spans = [
            sp("frontend", SpanKind::Client, 1, 9, 30.0),
            sp("cart", SpanKind::Server, 2, 1, 20.0).status(StatusCode::Error),
            sp("cart", SpanKind::Producer, 3, 2, 1.0),
            sp("mailer", SpanKind::Consumer, 4, 3, 5.0),
            sp("frontend", SpanKind::Client, 5, 9, 1.0),
        ];
        op.process_spans(&span_batch(SourceId(0), 0, &spans), T0);
        op.advance(T0 + 100 * SEC);
        op.expire_pending(T0 + 100 * SEC);
        let mut out = String::new();
        prom.render(&mut out);
        let has = |line: &str| assert!(out.lines().any(|l| l == line), "{line}\n{out}");
        let e = r#"client="frontend",server="cart",connection_type="""#;
        let m = r#"client="cart",server="mailer",connection_type="messaging_system""#;
        has(&format!("traces_service_graph_request_total{{{e}}} 1"));
        has(&format!(
            "traces_service_graph_request_failed_total{{{e}}} 1"
        ));
        has(&format!("traces_service_graph_request_total{{{m}}} 1"));
        has(&format!(
            "traces_service_graph_request_failed_total{{{m}}} 0"
        ));
        has(&format!(
            "traces_service_graph_request_client_seconds_bucket{{{e},le=\"0.01\"}} 0"
        ));
        has(&format!(
            "traces_service_graph_request_client_seconds_bucket{{{e},le=\"0.05\"}} 1"
        ));
        has(&format!(
            "traces_service_graph_request_server_seconds_bucket{{{e},le=\"0.01\"}} 0"
        ));
        has(&format!(
            "traces_service_graph_request_server_seconds_bucket{{{e},le=\"+Inf\"}} 1"
        ));
        has(&format!(
            "traces_service_graph_request_server_seconds_sum{{{e}}} 0.02"
        ));
        has(&format!(
            "traces_service_graph_request_server_seconds_count{{{e}}} 1"
        ));
        has("# TYPE traces_service_graph_request_client_seconds histogram");
        has(
            r#"traces_service_graph_unpaired_spans_total{client="frontend",server="",connection_type=""} 1"#,
        );
    }

    #[test]
    fn virtual_node_edges_carry_the_virtual_node_label_when_asked() {
        let mut cfg = SpanSections::default();
        cfg.service_graph.virtual_node_extra_label = true;
        let (prom, mut op) = exporter_and_operator(&cfg);
        // The decoder's layout for the default config: peer.service comes first.
        let names = cfg.decode_dimensions();
        assert_eq!(names[0].name, "peer.service");
        let spans = [
            sp("frontend", SpanKind::Server, 1, 0, 10.0),
            sp("frontend", SpanKind::Client, 2, 1, 5.0).dims(&[Some("stripe")]),
        ];
        op.process_spans(&span_batch(SourceId(0), names.len() as u16, &spans), T0);
        op.expire_pending(T0 + 100 * SEC);
        op.advance(T0 + 100 * SEC);
        let mut out = String::new();
        prom.render(&mut out);
        let has = |line: &str| assert!(out.lines().any(|l| l == line), "{line}\n{out}");
        has(
            r#"traces_service_graph_request_total{client="user",server="frontend",connection_type="virtual_node",virtual_node="client"} 1"#,
        );
        has(
            r#"traces_service_graph_request_total{client="frontend",server="stripe",connection_type="virtual_node",virtual_node="server"} 1"#,
        );
        assert!(
            !out.contains("traces_service_graph_unpaired_spans_total{"),
            "{out}"
        );
    }
}
