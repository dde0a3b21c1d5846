//! Realistic, deterministic OTLP trace payloads for the benches (`decode_aggregate`, `otlp_load`).
//!
//! Shape (the otlpbench yardstick's, so figures compare): `ExportTraceServiceRequest`s of 500
//! spans, about 400 bytes per span on the wire; 20 services × 50 operations; 1–4 `ResourceSpans`
//! per request (one per service instance, 19 k8s/cloud/SDK resource attributes); one
//! `ScopeSpans` per instrumentation library; spans in whole traces (SERVER/CONSUMER root, often
//! with a remote parent, nested CLIENT/INTERNAL/PRODUCER children); about 8 semantic-convention
//! attributes per span; 2% ERROR with an `exception` event, 1% OK, 3% with another event;
//! log-normal durations per operation; end times within `spread_ns` before a given "now".
//!
//! The same seed always gives the same bytes, apart from the timestamps, which follow "now".
//! Every payload remembers where its fixed64 timestamps are, so a load generator can move a
//! pre-encoded request to the present ([`Payload::shifted`]) without encoding it again.
//! This module only builds data; it measures nothing.

// Each bench target compiles this module and uses a different part of it.
#![allow(dead_code)]

use bytes::{Bytes, BytesMut};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::trace::v1::span::{Event, Link};
use opentelemetry_proto::tonic::trace::v1::status::StatusCode;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status};
use prost::Message;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, Exp};

mod catalog;
mod wire;

use catalog::*;
use wire::*;

/// What to generate.
#[derive(Debug, Clone)]
pub struct PayloadShape {
    pub services: usize,
    pub ops_per_service: usize,
    pub spans_per_request: usize,
    /// `ResourceSpans` per request are drawn from `1..=max_resources`.
    pub max_resources: usize,
    /// Share of spans with status ERROR.
    pub error_ratio: f64,
    /// End times lie in `[now - spread_ns, now]`.
    pub spread_ns: u64,
    pub seed: u64,
}

impl Default for PayloadShape {
    fn default() -> Self {
        PayloadShape {
            services: 20,
            ops_per_service: 50,
            spans_per_request: 500,
            max_resources: 4,
            error_ratio: 0.02,
            spread_ns: 5_000_000_000,
            seed: 0x5eed_0001,
        }
    }
}

/// One encoded `ExportTraceServiceRequest`.
#[derive(Debug, Clone)]
pub struct Payload {
    pub bytes: Bytes,
    pub spans: usize,
    /// Byte offsets of every fixed64 timestamp (span start/end, event time).
    time_fields: Vec<u32>,
    /// Byte offsets of each span's (start, end) timestamps.
    span_times: Vec<(u32, u32)>,
}

impl Payload {
    /// A copy with every timestamp moved by `delta_ns` (the content is otherwise identical).
    pub fn shifted(&self, delta_ns: u64) -> Bytes {
        let mut b = BytesMut::from(&self.bytes[..]);
        for &at in &self.time_fields {
            let at = at as usize;
            let mut le = [0u8; 8];
            le.copy_from_slice(&b[at..at + 8]);
            let t = u64::from_le_bytes(le).wrapping_add(delta_ns);
            b[at..at + 8].copy_from_slice(&t.to_le_bytes());
        }
        b.freeze()
    }

    /// Like [`Self::shifted`], and every span's duration scaled by a factor in [0.5, 2) drawn
    /// from `(salt, span index)`: a load that cycles through the payloads still gives each
    /// series a fresh spread of durations (what a quantile sketch's size depends on).
    pub fn shifted_fresh_durations(&self, delta_ns: u64, salt: u64) -> Bytes {
        let mut b = BytesMut::from(&self.shifted(delta_ns)[..]);
        let read = |b: &BytesMut, at: u32| {
            let at = at as usize;
            u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
        };
        for (i, &(start_at, end_at)) in self.span_times.iter().enumerate() {
            let (start, end) = (read(&b, start_at), read(&b, end_at));
            // splitmix64 of (salt, i): cheap and well spread.
            let mut z = salt
                .wrapping_mul(0x9E37_79B9_7F4A_7C15)
                .wrapping_add(i as u64);
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^= z >> 31;
            let factor = 0.5 + 1.5 * (z >> 11) as f64 / (1u64 << 53) as f64;
            let duration = (end.saturating_sub(start) as f64 * factor) as u64;
            let at = start_at as usize;
            b[at..at + 8].copy_from_slice(&end.saturating_sub(duration).to_le_bytes());
        }
        b.freeze()
    }
}

/// A generated set of requests.
#[derive(Debug, Clone)]
pub struct PayloadSet {
    pub payloads: Vec<Payload>,
    /// The "now" the end times were generated against.
    pub now_ns: u64,
    pub spans: usize,
    pub bytes: usize,
    pub error_spans: usize,
    /// Distinct (service, span name, kind) triples the generator can produce.
    pub series: usize,
}

impl PayloadSet {
    pub fn bytes_per_span(&self) -> f64 {
        self.bytes as f64 / self.spans.max(1) as f64
    }
}

/// Generates `requests` requests whose end times lie in the `spread_ns` before `now_ns`.
pub fn generate(shape: &PayloadShape, requests: usize, now_ns: u64) -> PayloadSet {
    let mut g = Generator::new(shape);
    let mut set = PayloadSet {
        payloads: Vec::with_capacity(requests),
        now_ns,
        spans: 0,
        bytes: 0,
        error_spans: 0,
        series: g.services.iter().map(|s| s.ops.len()).sum(),
    };
    for _ in 0..requests {
        let req = g.request(now_ns);
        let (mut spans, mut events) = (0usize, 0usize);
        for s in req
            .resource_spans
            .iter()
            .flat_map(|r| &r.scope_spans)
            .flat_map(|s| &s.spans)
        {
            spans += 1;
            events += s.events.len();
            if s.status.as_ref().map(|st| st.code) == Some(StatusCode::Error as i32) {
                set.error_spans += 1;
            }
        }
        let bytes = Bytes::from(req.encode_to_vec());
        let time_fields = timestamp_offsets(&bytes);
        assert_eq!(
            time_fields.len(),
            2 * spans + events,
            "the wire walk must find every span and event timestamp"
        );
        set.spans += spans;
        set.bytes += bytes.len();
        let span_times = span_time_offsets(&bytes);
        assert_eq!(span_times.len(), spans);
        set.payloads.push(Payload {
            bytes,
            spans,
            time_fields,
            span_times,
        });
    }
    set
}

/// The prost baseline's unit of work: decodes a request into the generated types and touches
/// every span (duration sum, FNV-1a of the name, kind), as a prost-based server must at least.
pub fn prost_decode_touch(buf: &[u8]) -> u64 {
    let Ok(req) = ExportTraceServiceRequest::decode(buf) else {
        return 0;
    };
    let mut acc = 0u64;
    for s in req
        .resource_spans
        .iter()
        .flat_map(|r| &r.scope_spans)
        .flat_map(|s| &s.spans)
    {
        acc = acc.wrapping_add(s.end_time_unix_nano.wrapping_sub(s.start_time_unix_nano));
        let mut h = 0xcbf2_9ce4_8422_2325u64;
        for b in s.name.as_bytes() {
            h = (h ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3);
        }
        acc ^= h ^ s.kind as u64;
    }
    acc
}

// ---- the service catalogue --------------------------------------------------------------------

// ---- requests ------------------------------------------------------------------------------

struct Generator {
    rng: SmallRng,
    services: Vec<Service>,
    trace_len: Exp<f64>,
    shape: PayloadShape,
}

impl Generator {
    fn new(shape: &PayloadShape) -> Self {
        let mut rng = SmallRng::seed_from_u64(shape.seed);
        let names = service_names(shape.services);
        let region = *one_of(
            &mut rng,
            &["eu-west-1", "eu-central-1", "us-east-2", "ap-south-1"],
        );
        let services = (0..names.len())
            .map(|i| new_service(&mut rng, i, shape.ops_per_service, &names, region))
            .collect();
        Generator {
            rng,
            services,
            trace_len: Exp::new(0.2).expect("a positive rate is valid"),
            shape: shape.clone(),
        }
    }

    fn request(&mut self, now_ns: u64) -> ExportTraceServiceRequest {
        let total = self.shape.spans_per_request.max(1);
        let parts = self
            .rng
            .random_range(1..=self.shape.max_resources.clamp(1, total));
        // Split `total` spans into `parts` non-empty shares.
        let mut cuts: Vec<usize> = (1..total).collect();
        for i in 0..parts - 1 {
            let j = self.rng.random_range(i..cuts.len());
            cuts.swap(i, j);
        }
        cuts.truncate(parts - 1);
        cuts.sort_unstable();
        cuts.push(total);
        let mut resource_spans = Vec::with_capacity(parts);
        let mut from = 0;
        for to in cuts {
            resource_spans.push(self.resource_spans(to - from, now_ns));
            from = to;
        }
        ExportTraceServiceRequest { resource_spans }
    }

    fn resource_spans(&mut self, spans: usize, now_ns: u64) -> ResourceSpans {
        let svc = self.rng.random_range(0..self.services.len());
        let inst = self.rng.random_range(0..self.services[svc].instances.len());
        let mut by_scope: Vec<Vec<Span>> = vec![Vec::new(); SCOPES.len()];
        let mut made = 0;
        while made < spans {
            let len = (1 + self.trace_len.sample(&mut self.rng) as usize)
                .min(30)
                .min(spans - made);
            self.trace(svc, inst, len, now_ns, &mut by_scope);
            made += len;
        }
        let scope_spans = by_scope
            .into_iter()
            .enumerate()
            .filter(|(_, s)| !s.is_empty())
            .map(|(i, spans)| ScopeSpans {
                scope: Some(InstrumentationScope {
                    name: SCOPES[i].0.to_string(),
                    version: SCOPES[i].1.to_string(),
                    ..Default::default()
                }),
                spans,
                schema_url: SCHEMA_URL.to_string(),
            })
            .collect();
        ResourceSpans {
            resource: Some(self.services[svc].instances[inst].resource.clone()),
            scope_spans,
            schema_url: SCHEMA_URL.to_string(),
        }
    }

    /// One trace of `len` spans of service `svc`, appended to the buckets of their scopes.
    fn trace(
        &mut self,
        svc: usize,
        inst: usize,
        len: usize,
        now_ns: u64,
        by_scope: &mut [Vec<Span>],
    ) {
        let rng = &mut self.rng;
        let service = &self.services[svc];
        let trace_id = random_id::<16>(rng);
        // (span id, start, end) of the spans so far: the candidates for parents.
        let mut tree: Vec<(Vec<u8>, u64, u64)> = Vec::with_capacity(len);
        for k in 0..len {
            let (op, parent, start, end, remote) = if k == 0 {
                let op = &service.ops[*one_of(rng, &service.roots)];
                let end = now_ns - rng.random_range(0..=self.shape.spread_ns);
                let dur = (op.latency.sample(rng) as u64).clamp(2_000, 30_000_000_000);
                let remote = rng.random_bool(0.6);
                let parent = if remote {
                    random_id::<8>(rng)
                } else {
                    Vec::new()
                };
                (op, parent, end.saturating_sub(dur), end, remote)
            } else {
                let op = &service.ops[*one_of(rng, &service.children)];
                let p = if rng.random_bool(0.5) {
                    0
                } else {
                    rng.random_range(0..tree.len())
                };
                let (pid, ps, pe) = &tree[p];
                let room = (pe - ps).max(1_000);
                let mut dur = op.latency.sample(rng) as u64;
                if dur >= room {
                    // A child ends inside its parent: take a share of the parent instead.
                    dur = (room as f64 * rng.random_range(0.1..0.9)) as u64;
                }
                let dur = dur.max(500);
                let start = ps + rng.random_range(0..=room.saturating_sub(dur));
                (op, pid.clone(), start, start + dur, false)
            };
            let span_id = random_id::<8>(rng);
            let roll: f64 = rng.random();
            let failed = roll < self.shape.error_ratio;
            let mut events = Vec::new();
            let status = if failed {
                let (ty, msg) = *one_of(rng, &FAILURES);
                events.push(Event {
                    time_unix_nano: end - rng.random_range(0..=(end - start)),
                    name: "exception".to_string(),
                    attributes: vec![
                        string_kv("exception.type", ty),
                        string_kv("exception.message", msg),
                        string_kv(
                            "exception.stacktrace",
                            format!(
                                "{ty}: {msg}\n\tat com.shop.{pkg}.{cls}.call({cls}.java:{line})\n\tat com.shop.{pkg}.Dispatcher.handle(Dispatcher.java:141)\n\tat org.springframework.web.servlet.FrameworkServlet.service(FrameworkServlet.java:885)",
                                pkg = service.name.replace('-', ""),
                                cls = title(one_of::<&str>(rng, &RESOURCES)) + "Client",
                                line = rng.random_range(30..700),
                            ),
                        ),
                        any_kv("exception.escaped", any_value::Value::BoolValue(true)),
                    ],
                    dropped_attributes_count: 0,
                });
                Status {
                    code: StatusCode::Error as i32,
                    message: msg.to_string(),
                }
            } else if roll < self.shape.error_ratio + 0.01 {
                Status {
                    code: StatusCode::Ok as i32,
                    message: String::new(),
                }
            } else {
                if rng.random_bool(0.03) {
                    events.push(Event {
                        time_unix_nano: start + rng.random_range(0..=(end - start)),
                        name: one_of(rng, &["cache.miss", "retry", "lock.acquired"]).to_string(),
                        attributes: vec![int_kv("attempt", rng.random_range(1..4))],
                        dropped_attributes_count: 0,
                    });
                }
                Status::default()
            };
            let links = if op.family == Family::Receive {
                vec![Link {
                    trace_id: random_id::<16>(rng),
                    span_id: random_id::<8>(rng),
                    flags: 0x301,
                    ..Default::default()
                }]
            } else {
                Vec::new()
            };
            let attributes = span_attributes(rng, op, &service.instances[inst], failed);
            tree.push((span_id.clone(), start, end));
            by_scope[op.family.scope()].push(Span {
                trace_id: trace_id.clone(),
                span_id,
                parent_span_id: parent,
                // W3C "sampled", plus "has is_remote" and, for remote parents, "is_remote".
                flags: 0x101 | if remote { 0x200 } else { 0 },
                name: op.name.clone(),
                kind: op.family.kind() as i32,
                start_time_unix_nano: start,
                end_time_unix_nano: end,
                attributes,
                events,
                links,
                status: Some(status),
                ..Default::default()
            });
        }
    }
}

/// About 8 attributes of the operation's semantic-convention family.
fn span_attributes(
    rng: &mut SmallRng,
    op: &Operation,
    inst: &Instance,
    failed: bool,
) -> Vec<KeyValue> {
    match op.family {
        Family::HttpServer | Family::HttpClient => {
            let code = if failed {
                *one_of(rng, &[500, 502, 503, 504])
            } else {
                *one_of(rng, &[200, 200, 200, 200, 201, 204, 304, 404])
            };
            let id = rng.random_range(1..10_000_000);
            let path = op.target.replace("{id}", &id.to_string());
            let mut v = vec![
                string_kv("http.request.method", op.verb),
                string_kv("http.route", op.target.clone()),
                string_kv("url.path", path),
                int_kv("http.response.status_code", code),
                string_kv("network.protocol.version", "1.1"),
            ];
            if op.family == Family::HttpServer {
                v.push(string_kv("user_agent.original", *one_of(rng, &CLIENTS)));
                v.push(string_kv("client.address", inst.pod_ip.clone()));
                v.push(string_kv("server.address", "api.shop.example"));
            } else {
                v.push(string_kv(
                    "server.address",
                    format!("{}.shop-prod.svc", op.peer),
                ));
                v.push(int_kv("server.port", 8080));
                v.push(string_kv("peer.service", op.peer.clone()));
            }
            v
        }
        Family::Sql => vec![
            string_kv("db.system", "postgresql"),
            string_kv("db.namespace", "shopdb"),
            string_kv("db.query.text", op.detail.clone()),
            string_kv("db.operation.name", op.verb),
            string_kv("db.collection.name", op.target.clone()),
            string_kv("db.user", "app_rw"),
            string_kv("server.address", "pg-main.shop-prod.svc"),
            int_kv("server.port", 5432),
        ],
        Family::Cache => vec![
            string_kv("db.system", "redis"),
            string_kv(
                "db.query.text",
                format!(
                    "{} {}:{}",
                    op.verb,
                    op.target,
                    rng.random_range(1..2_000_000)
                ),
            ),
            string_kv("db.operation.name", op.verb),
            int_kv("db.namespace", 0),
            string_kv("server.address", "redis.shop-prod.svc"),
            int_kv("server.port", 6379),
            string_kv("network.transport", "tcp"),
            string_kv(
                "thread.name",
                format!("pool-3-thread-{}", rng.random_range(1..17)),
            ),
        ],
        Family::Publish | Family::Receive => vec![
            string_kv("messaging.system", "kafka"),
            string_kv("messaging.destination.name", op.target.clone()),
            string_kv("messaging.operation.type", op.verb),
            string_kv(
                "messaging.message.id",
                format!("{}-{}", hex_string(rng, 8), hex_string(rng, 12)),
            ),
            int_kv(
                "messaging.destination.partition.id",
                rng.random_range(0..24),
            ),
            string_kv("messaging.consumer.group.name", "shop-workers"),
            int_kv("messaging.kafka.offset", rng.random_range(0..90_000_000)),
            int_kv("messaging.message.body.size", rng.random_range(200..6000)),
        ],
        Family::RpcServer | Family::RpcClient => vec![
            string_kv("rpc.system", "grpc"),
            string_kv("rpc.service", op.target.clone()),
            string_kv("rpc.method", op.detail.clone()),
            int_kv(
                "rpc.grpc.status_code",
                if failed {
                    *one_of(rng, &[4, 13, 14])
                } else {
                    0
                },
            ),
            string_kv(
                "server.address",
                if op.family == Family::RpcClient {
                    format!("{}.shop-prod.svc", op.peer)
                } else {
                    inst.pod_ip.clone()
                },
            ),
            int_kv("server.port", 9090),
            string_kv("network.transport", "tcp"),
            int_kv("rpc.message.uncompressed_size", rng.random_range(20..5000)),
        ],
        Family::Function => vec![
            string_kv("code.function.name", op.detail.clone()),
            string_kv("code.namespace", op.target.clone()),
            int_kv("code.line.number", rng.random_range(10..800)),
            string_kv(
                "code.file.path",
                format!("src/main/java/{}.java", op.target.replace('.', "/")),
            ),
            int_kv("thread.id", rng.random_range(1..256)),
            string_kv("thread.name", format!("worker-{}", rng.random_range(1..48))),
            any_kv(
                "app.cache_hit",
                any_value::Value::BoolValue(rng.random_bool(0.7)),
            ),
            any_kv("app.score", any_value::Value::DoubleValue(rng.random())),
        ],
    }
}
