//! The simulated shop: services, operations, call graph, latency models and incidents.

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{
    span, status, ResourceSpans, ScopeSpans, Span, Status,
};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, LogNormal};
use std::collections::BTreeMap;

const MS: u64 = 1_000_000;

/// What an incident does.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum IncidentKind {
    /// Latency of one service's server operations multiplied by a factor.
    LatencySpike { factor: f64 },
    /// A share of one service's server spans fail.
    ErrorBurst { error_rate: f64 },
    /// Traffic of one entry operation multiplied by a factor (< 1).
    TrafficDrop { factor: f64 },
    /// Latency grows linearly to `factor` over the incident.
    SlowRamp { factor: f64 },
}

/// A scheduled incident, relative to the generator's start, repeating every `CYCLE_S`.
#[derive(Debug, Clone, PartialEq)]
pub struct Incident {
    pub name: &'static str,
    pub service: &'static str,
    pub start_s: f64,
    pub end_s: f64,
    pub kind: IncidentKind,
}

/// The incident schedule repeats with this period (seconds).
pub const CYCLE_S: f64 = 600.0;

/// The default incident schedule.
pub fn default_incidents() -> Vec<Incident> {
    vec![
        Incident {
            name: "latency spike",
            service: "payment",
            start_s: 90.0,
            end_s: 150.0,
            kind: IncidentKind::LatencySpike { factor: 6.0 },
        },
        Incident {
            name: "error burst",
            service: "checkout",
            start_s: 200.0,
            end_s: 260.0,
            kind: IncidentKind::ErrorBurst { error_rate: 0.35 },
        },
        Incident {
            name: "traffic drop",
            service: "catalog",
            start_s: 320.0,
            end_s: 380.0,
            kind: IncidentKind::TrafficDrop { factor: 0.15 },
        },
        Incident {
            name: "slow ramp",
            service: "cart",
            start_s: 420.0,
            end_s: 600.0,
            kind: IncidentKind::SlowRamp { factor: 4.0 },
        },
    ]
}

struct Op {
    service: &'static str,
    name: &'static str,
    median_ms: f64,
    sigma: f64,
    error_rate: f64,
    /// Downstream calls: (client span name, callee op index).
    calls: Vec<(&'static str, usize)>,
}

struct Entry {
    op: usize,
    weight: f64,
}

/// The shop's services and traffic, plus the random state.
pub struct Workload {
    ops: Vec<Op>,
    entries: Vec<Entry>,
    incidents: Vec<Incident>,
    start_ns: u64,
    rng: SmallRng,
}

/// Spans in a request.
pub fn span_count(req: &ExportTraceServiceRequest) -> usize {
    req.resource_spans
        .iter()
        .flat_map(|r| &r.scope_spans)
        .map(|s| s.spans.len())
        .sum()
}

fn kv(k: &str, v: &str) -> KeyValue {
    KeyValue {
        key: k.to_string(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(v.to_string())),
        }),
        ..Default::default()
    }
}

/// One operation of the default shop: service, span name, median latency (ms), log-normal
/// sigma, error rate, downstream calls as (client span name, callee index into [`SHOP`]).
type OpSpec = (
    &'static str,
    &'static str,
    f64,
    f64,
    f64,
    &'static [(&'static str, usize)],
);

/// The default shop. Indices: 0 frontend GET /, 1 frontend GET /api/products, 2 frontend POST
/// /api/checkout, 3 catalog ListProducts, 4 checkout PlaceOrder, 5 payment Charge, 6 cart
/// GetCart, 7 catalog GetProduct, 8 frontend POST /api/cart, 9 cart AddItem.
const SHOP: [OpSpec; 10] = [
    (
        "frontend",
        "GET /",
        8.0,
        0.4,
        0.001,
        &[("oteldemo.CatalogService/ListProducts", 3)],
    ),
    (
        "frontend",
        "GET /api/products/{id}",
        6.0,
        0.5,
        0.002,
        &[("oteldemo.CatalogService/GetProduct", 7)],
    ),
    (
        "frontend",
        "POST /api/checkout",
        20.0,
        0.5,
        0.003,
        &[("oteldemo.CheckoutService/PlaceOrder", 4)],
    ),
    (
        "catalog",
        "oteldemo.CatalogService/ListProducts",
        12.0,
        0.6,
        0.001,
        &[],
    ),
    (
        "checkout",
        "oteldemo.CheckoutService/PlaceOrder",
        35.0,
        0.5,
        0.005,
        &[
            ("oteldemo.PaymentService/Charge", 5),
            ("oteldemo.CartService/GetCart", 6),
        ],
    ),
    (
        "payment",
        "oteldemo.PaymentService/Charge",
        45.0,
        0.45,
        0.004,
        &[],
    ),
    ("cart", "oteldemo.CartService/GetCart", 3.0, 0.5, 0.001, &[]),
    (
        "catalog",
        "oteldemo.CatalogService/GetProduct",
        4.0,
        0.5,
        0.001,
        &[],
    ),
    (
        "frontend",
        "POST /api/cart",
        7.0,
        0.4,
        0.002,
        &[("oteldemo.CartService/AddItem", 9)],
    ),
    ("cart", "oteldemo.CartService/AddItem", 5.0, 0.5, 0.002, &[]),
];

impl Workload {
    /// The default shop, with the default incidents, starting at `start_ns`.
    pub fn new(seed: u64, start_ns: u64) -> Workload {
        let ops = SHOP
            .iter()
            .map(|&(service, name, median_ms, sigma, error_rate, calls)| Op {
                service,
                name,
                median_ms,
                sigma,
                error_rate,
                calls: calls.to_vec(),
            })
            .collect();
        let entries = vec![
            Entry { op: 0, weight: 3.0 },
            Entry { op: 1, weight: 4.0 },
            Entry { op: 2, weight: 1.0 },
            Entry { op: 8, weight: 2.0 },
        ];
        Workload {
            ops,
            entries,
            incidents: default_incidents(),
            start_ns,
            rng: SmallRng::seed_from_u64(seed),
        }
    }

    /// Incidents in force at wall time `now_ns`.
    pub fn active_incidents(&self, now_ns: u64) -> Vec<&Incident> {
        let t = self.cycle_time(now_ns);
        self.incidents
            .iter()
            .filter(|i| t >= i.start_s && t < i.end_s)
            .collect()
    }

    /// The schedule.
    pub fn incidents(&self) -> &[Incident] {
        &self.incidents
    }

    fn cycle_time(&self, now_ns: u64) -> f64 {
        (now_ns.saturating_sub(self.start_ns) as f64 / 1e9) % CYCLE_S
    }

    fn latency_factor(&self, service: &str, t: f64) -> f64 {
        let mut f = 1.0;
        for i in &self.incidents {
            if i.service != service || t < i.start_s || t >= i.end_s {
                continue;
            }
            match i.kind {
                IncidentKind::LatencySpike { factor } => f *= factor,
                IncidentKind::SlowRamp { factor } => {
                    let p = (t - i.start_s) / (i.end_s - i.start_s);
                    f *= 1.0 + (factor - 1.0) * p;
                }
                _ => {}
            }
        }
        f
    }

    fn error_rate(&self, op: &Op, t: f64) -> f64 {
        self.incidents
            .iter()
            .filter(|i| i.service == op.service && t >= i.start_s && t < i.end_s)
            .find_map(|i| match i.kind {
                IncidentKind::ErrorBurst { error_rate } => Some(error_rate),
                _ => None,
            })
            .unwrap_or(op.error_rate)
    }

    fn entry_weight(&self, e: &Entry, t: f64) -> f64 {
        let mut w = e.weight;
        // A traffic drop on a service thins every entry whose trace reaches it.
        for i in &self.incidents {
            if let IncidentKind::TrafficDrop { factor } = i.kind {
                if t >= i.start_s && t < i.end_s && self.reaches(e.op, i.service) {
                    w *= factor;
                }
            }
        }
        w
    }

    fn reaches(&self, op: usize, service: &str) -> bool {
        self.ops[op].service == service
            || self.ops[op]
                .calls
                .iter()
                .any(|(_, c)| self.reaches(*c, service))
    }

    /// Builds one export request of about `spans` spans, all ending shortly before `now_ns`.
    pub fn request(&mut self, now_ns: u64, spans: usize) -> ExportTraceServiceRequest {
        let t = self.cycle_time(now_ns);
        let weights: Vec<f64> = self
            .entries
            .iter()
            .map(|e| self.entry_weight(e, t))
            .collect();
        let total: f64 = weights.iter().sum();
        let mut by_service: BTreeMap<&'static str, Vec<Span>> = BTreeMap::new();
        let mut made = 0;
        while made < spans {
            let mut x = self.rng.random::<f64>() * total;
            let mut entry = self.entries.len() - 1;
            for (i, w) in weights.iter().enumerate() {
                if x < *w {
                    entry = i;
                    break;
                }
                x -= w;
            }
            let trace_id: [u8; 16] = self.rng.random();
            // Whole traces end within the last 300 ms.
            let end = now_ns - self.rng.random_range(0..300 * MS);
            let op = self.entries[entry].op;
            made += self
                .emit(
                    op,
                    trace_id,
                    None,
                    end,
                    span::SpanKind::Server,
                    t,
                    &mut by_service,
                )
                .0;
        }
        let resource_spans = by_service
            .into_iter()
            .map(|(service, spans)| ResourceSpans {
                resource: Some(Resource {
                    attributes: vec![
                        kv("service.name", service),
                        kv("service.namespace", "shop"),
                        kv("deployment.environment", "demo"),
                    ],
                    ..Default::default()
                }),
                scope_spans: vec![ScopeSpans {
                    scope: Some(InstrumentationScope {
                        name: "redwatch-generator".into(),
                        version: env!("CARGO_PKG_VERSION").into(),
                        ..Default::default()
                    }),
                    spans,
                    ..Default::default()
                }],
                ..Default::default()
            })
            .collect();
        ExportTraceServiceRequest { resource_spans }
    }

    /// Emits the server span of `op` (and its subtree) ending at `end`; returns the spans made,
    /// the server span's start and whether it failed.
    #[allow(clippy::too_many_arguments)]
    fn emit(
        &mut self,
        op: usize,
        trace_id: [u8; 16],
        parent: Option<[u8; 8]>,
        end: u64,
        kind: span::SpanKind,
        t: f64,
        out: &mut BTreeMap<&'static str, Vec<Span>>,
    ) -> (usize, u64, bool) {
        let (service, name, median, sigma) = {
            let o = &self.ops[op];
            (o.service, o.name, o.median_ms, o.sigma)
        };
        let median = median * self.latency_factor(service, t);
        let own_ms = LogNormal::new(median.ln(), sigma)
            .map(|d| d.sample(&mut self.rng))
            .unwrap_or(median);
        let span_id: [u8; 8] = self.rng.random();
        let calls = self.ops[op].calls.clone();
        let mut made = 1;
        // Children run back to back, ending shortly before the parent ends.
        let mut child_end = end.saturating_sub((own_ms * 0.1 * MS as f64) as u64);
        let mut children_ns = 0u64;
        let mut failed_child = false;
        for (client_name, callee) in calls.iter().rev() {
            let client_id: [u8; 8] = self.rng.random();
            let (server_made, server_start, server_failed) = self.emit(
                *callee,
                trace_id,
                Some(client_id),
                child_end - MS / 2,
                span::SpanKind::Server,
                t,
                out,
            );
            made += server_made;
            failed_child |= server_failed;
            let client_start = server_start.saturating_sub(MS / 2);
            out.entry(service).or_default().push(Span {
                trace_id: trace_id.to_vec(),
                span_id: client_id.to_vec(),
                parent_span_id: span_id.to_vec(),
                name: client_name.to_string(),
                kind: span::SpanKind::Client as i32,
                start_time_unix_nano: client_start,
                end_time_unix_nano: child_end,
                attributes: vec![
                    kv("rpc.system", "grpc"),
                    kv("server.address", self.ops[*callee].service),
                ],
                status: server_failed.then(|| Status {
                    code: status::StatusCode::Error as i32,
                    message: "downstream error".into(),
                }),
                ..Default::default()
            });
            made += 1;
            children_ns += child_end - client_start;
            child_end = client_start.saturating_sub(MS / 5);
        }
        let dur_ns = (own_ms * MS as f64) as u64 + children_ns;
        let start = end.saturating_sub(dur_ns.max(1));
        let error_rate = self.error_rate(&self.ops[op], t);
        let failed = failed_child || self.rng.random::<f64>() < error_rate;
        let attributes = server_attributes(name, failed);
        out.entry(service).or_default().push(Span {
            trace_id: trace_id.to_vec(),
            span_id: span_id.to_vec(),
            parent_span_id: parent.map(|p| p.to_vec()).unwrap_or_default(),
            name: name.to_string(),
            kind: kind as i32,
            start_time_unix_nano: start,
            end_time_unix_nano: end,
            attributes,
            status: failed.then(|| Status {
                code: status::StatusCode::Error as i32,
                message: "internal error".into(),
            }),
            ..Default::default()
        });
        (made, start, failed)
    }
}

/// The attributes of a server span named `name`: HTTP method, route and status for HTTP
/// operations, `rpc.system` for the others.
fn server_attributes(name: &'static str, failed: bool) -> Vec<KeyValue> {
    let http = name.starts_with("GET") || name.starts_with("POST");
    let mut attributes = Vec::with_capacity(3);
    if http {
        let (method, route) = name.split_once(' ').unwrap_or((name, "/"));
        attributes.push(kv("http.request.method", method));
        attributes.push(kv("http.route", route));
        attributes.push(KeyValue {
            key: "http.response.status_code".into(),
            value: Some(AnyValue {
                value: Some(any_value::Value::IntValue(if failed { 500 } else { 200 })),
            }),
            ..Default::default()
        });
    } else {
        attributes.push(kv("rpc.system", "grpc"));
    }
    attributes
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;

    #[test]
    fn requests_have_the_asked_size_and_valid_times() {
        let start = 1_700_000_000 * S;
        let mut w = Workload::new(7, start);
        let req = w.request(start + 10 * S, 500);
        let n = span_count(&req);
        assert!((500..520).contains(&n), "{n}");
        for rs in &req.resource_spans {
            for s in rs.scope_spans.iter().flat_map(|s| &s.spans) {
                assert!(s.start_time_unix_nano <= s.end_time_unix_nano);
                assert!(s.end_time_unix_nano <= start + 10 * S);
                assert!(s.end_time_unix_nano > start + 9 * S);
            }
        }
    }

    #[test]
    fn a_latency_spike_raises_payment_latency() {
        let start = 1_700_000_000 * S;
        let mut w = Workload::new(1, start);
        let median = |w: &mut Workload, at: u64| {
            let req = w.request(at, 4000);
            let mut d: Vec<u64> = req
                .resource_spans
                .iter()
                .filter(|r| {
                    r.resource.as_ref().unwrap().attributes[0].value == kv("", "payment").value
                })
                .flat_map(|r| &r.scope_spans)
                .flat_map(|s| &s.spans)
                .filter(|s| s.kind == span::SpanKind::Server as i32)
                .map(|s| s.end_time_unix_nano - s.start_time_unix_nano)
                .collect();
            d.sort();
            d[d.len() / 2]
        };
        let calm = median(&mut w, start + 30 * S);
        let spike = median(&mut w, start + 100 * S);
        assert!(spike > 3 * calm, "calm {calm} spike {spike}");
        assert_eq!(w.active_incidents(start + 100 * S)[0].name, "latency spike");
    }
}
