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
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::span::{Event, Link, SpanKind};
use opentelemetry_proto::tonic::trace::v1::status::StatusCode;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status};
use prost::Message;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, Exp, LogNormal};
use std::collections::HashSet;

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

/// What an operation does; decides span kind, scope, attributes and typical latency.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Family {
    HttpServer,
    HttpClient,
    Sql,
    Cache,
    Publish,
    Receive,
    RpcServer,
    RpcClient,
    Function,
}

impl Family {
    /// (family, weight) of the operation mix of a service.
    const MIX: [(Family, u32); 9] = [
        (Family::HttpServer, 26),
        (Family::HttpClient, 16),
        (Family::Sql, 16),
        (Family::Cache, 8),
        (Family::Publish, 4),
        (Family::Receive, 4),
        (Family::RpcServer, 6),
        (Family::RpcClient, 6),
        (Family::Function, 14),
    ];

    fn kind(self) -> SpanKind {
        match self {
            Family::HttpServer | Family::RpcServer => SpanKind::Server,
            Family::Receive => SpanKind::Consumer,
            Family::Publish => SpanKind::Producer,
            Family::Function => SpanKind::Internal,
            Family::HttpClient | Family::Sql | Family::Cache | Family::RpcClient => {
                SpanKind::Client
            }
        }
    }

    /// Starts a trace in this service (a root span).
    fn is_root(self) -> bool {
        matches!(
            self,
            Family::HttpServer | Family::RpcServer | Family::Receive
        )
    }

    fn scope(self) -> usize {
        match self {
            Family::HttpServer => 0,
            Family::HttpClient => 1,
            Family::Sql => 2,
            Family::Cache => 3,
            Family::Publish | Family::Receive => 4,
            Family::RpcServer | Family::RpcClient => 5,
            Family::Function => 6,
        }
    }

    fn typical_ms(self) -> f64 {
        match self {
            Family::HttpServer => 30.0,
            Family::HttpClient => 12.0,
            Family::Sql => 2.5,
            Family::Cache => 0.5,
            Family::Publish => 1.2,
            Family::Receive => 8.0,
            Family::RpcServer => 9.0,
            Family::RpcClient => 5.0,
            Family::Function => 0.2,
        }
    }
}

const SCOPES: [(&str, &str); 7] = [
    ("io.opentelemetry.spring-webmvc-6.0", "2.11.0-alpha"),
    ("io.opentelemetry.okhttp-3.0", "2.11.0-alpha"),
    ("io.opentelemetry.jdbc", "2.11.0-alpha"),
    ("io.opentelemetry.jedis-4.0", "2.11.0-alpha"),
    ("io.opentelemetry.kafka-clients-2.6", "2.11.0-alpha"),
    ("io.opentelemetry.grpc-1.6", "2.11.0-alpha"),
    ("app.instrumentation.manual", "0.3.1"),
];
const SCHEMA_URL: &str = "https://opentelemetry.io/schemas/1.26.0";

const SERVICES: [&str; 20] = [
    "storefront",
    "checkout",
    "basket",
    "billing",
    "delivery",
    "fx-rates",
    "mailer",
    "recommender",
    "ads",
    "catalog",
    "quotes",
    "risk",
    "ledger",
    "warehouse",
    "accounts",
    "identity",
    "search",
    "push",
    "pricing",
    "orders",
];
const SDKS: [(&str, &str); 5] = [
    ("java", "1.44.1"),
    ("go", "1.32.0"),
    ("python", "1.29.0"),
    ("nodejs", "1.28.0"),
    ("dotnet", "1.10.0"),
];
const RESOURCES: [&str; 18] = [
    "orders",
    "items",
    "customers",
    "baskets",
    "payments",
    "products",
    "parcels",
    "invoices",
    "ratings",
    "sessions",
    "wallets",
    "vouchers",
    "addresses",
    "refunds",
    "offers",
    "stock",
    "tariffs",
    "returns",
];
const SUBRESOURCES: [&str; 5] = ["lines", "state", "audit", "notes", "totals"];
const VERBS: [&str; 10] = [
    "GET", "GET", "GET", "GET", "GET", "GET", "POST", "POST", "PUT", "DELETE",
];
const CACHE_CMDS: [&str; 8] = [
    "GET", "SET", "HGET", "HSET", "MGET", "DEL", "EXPIRE", "INCR",
];
const FUNCTIONS: [&str; 10] = [
    "validate",
    "toResponse",
    "fromRequest",
    "applyRules",
    "computeTotals",
    "checkAccess",
    "loadSettings",
    "reserve",
    "enrich",
    "convert",
];
const FAILURES: [(&str, &str); 4] = [
    (
        "java.net.SocketTimeoutException",
        "Read timed out after 5000 ms",
    ),
    (
        "io.grpc.StatusRuntimeException",
        "UNAVAILABLE: upstream connect error or disconnect/reset before headers",
    ),
    (
        "org.postgresql.util.PSQLException",
        "ERROR: could not serialize access due to concurrent update",
    ),
    (
        "redis.clients.jedis.exceptions.JedisConnectionException",
        "Failed to connect to any host resolved for DNS name.",
    ),
];
const CLIENTS: [&str; 4] = [
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 Mobile/15E148",
    "okhttp/4.12.0",
    "Apache-HttpClient/5.3 (Java/21.0.3)",
];

struct Operation {
    family: Family,
    name: String,
    /// HTTP method, SQL verb, cache command, messaging operation ("" when none).
    verb: &'static str,
    /// HTTP route, table, key prefix, topic, RPC service or code namespace.
    target: String,
    /// RPC method, SQL statement or function name.
    detail: String,
    /// The called service, for client spans.
    peer: String,
    latency: LogNormal<f64>,
}

struct Instance {
    resource: Resource,
    pod_ip: String,
}

struct Service {
    name: String,
    instances: Vec<Instance>,
    ops: Vec<Operation>,
    roots: Vec<usize>,
    children: Vec<usize>,
}

fn string_kv(key: &str, v: impl Into<String>) -> KeyValue {
    any_kv(key, any_value::Value::StringValue(v.into()))
}

fn int_kv(key: &str, v: i64) -> KeyValue {
    any_kv(key, any_value::Value::IntValue(v))
}

fn any_kv(key: &str, v: any_value::Value) -> KeyValue {
    KeyValue {
        key: key.to_string(),
        value: Some(AnyValue { value: Some(v) }),
        ..Default::default()
    }
}

fn one_of<'a, T>(rng: &mut SmallRng, xs: &'a [T]) -> &'a T {
    &xs[rng.random_range(0..xs.len())]
}

fn hex_string(rng: &mut SmallRng, digits: usize) -> String {
    (0..digits)
        .map(|_| char::from_digit(rng.random_range(0..16u32), 16).unwrap_or('0'))
        .collect()
}

fn random_id<const N: usize>(rng: &mut SmallRng) -> Vec<u8> {
    let mut id = [0u8; N];
    while id.iter().all(|b| *b == 0) {
        rng.fill(&mut id[..]);
    }
    id.to_vec()
}

fn title(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut up = true;
    for c in s.chars() {
        if c == '-' {
            up = true;
            continue;
        }
        if up {
            out.extend(c.to_uppercase());
        } else {
            out.push(c);
        }
        up = false;
    }
    out
}

fn service_names(n: usize) -> Vec<String> {
    (0..n.max(1))
        .map(|i| match i / SERVICES.len() {
            0 => SERVICES[i].to_string(),
            k => format!("{}-{k}", SERVICES[i % SERVICES.len()]),
        })
        .collect()
}

fn new_operation(rng: &mut SmallRng, family: Family, service: &str, all: &[String]) -> Operation {
    let res = *one_of(rng, &RESOURCES);
    let peer = if all.len() > 1 {
        loop {
            let p = one_of(rng, all);
            if p != service {
                break p.clone();
            }
        }
    } else {
        service.to_string()
    };
    let route = match rng.random_range(0..4) {
        0 => format!("/v{}/{res}", rng.random_range(1..3)),
        1 => format!("/v{}/{res}/{{id}}", rng.random_range(1..3)),
        2 => format!("/v1/{res}/{{id}}/{}", one_of(rng, &SUBRESOURCES)),
        _ => format!("/internal/{res}/{}", one_of(rng, &SUBRESOURCES)),
    };
    let rpc_service = format!("shop.{}.v1.{}API", res, title(res));
    let rpc_method = format!(
        "{}{}",
        one_of(rng, &["Get", "List", "Put", "Watch"]),
        title(res)
    );
    let (name, verb, target, detail, peer) = match family {
        Family::HttpServer | Family::HttpClient => {
            let verb = *one_of(rng, &VERBS);
            let peer = if family == Family::HttpClient {
                peer
            } else {
                String::new()
            };
            (format!("{verb} {route}"), verb, route, String::new(), peer)
        }
        Family::Sql => {
            let verb = *one_of(
                rng,
                &["SELECT", "SELECT", "SELECT", "INSERT", "UPDATE", "DELETE"],
            );
            let stmt = match verb {
                "SELECT" => format!(
                    "SELECT id, state, amount, updated_at FROM {res} WHERE account_id = $1 AND state <> 'archived' LIMIT 50"
                ),
                "INSERT" => format!(
                    "INSERT INTO {res} (id, account_id, state, amount, created_at) VALUES ($1, $2, $3, $4, now())"
                ),
                "UPDATE" => format!("UPDATE {res} SET state = $1, updated_at = now() WHERE id = $2"),
                _ => format!("DELETE FROM {res} WHERE id = $1 AND account_id = $2"),
            };
            (
                format!("{verb} shopdb.{res}"),
                verb,
                res.to_string(),
                stmt,
                String::new(),
            )
        }
        Family::Cache => {
            let verb = *one_of(rng, &CACHE_CMDS);
            let prefix = format!("{service}:{res}");
            (verb.to_string(), verb, prefix, String::new(), String::new())
        }
        Family::Publish | Family::Receive => {
            let topic = format!("{res}.changed");
            let verb = if family == Family::Publish {
                "publish"
            } else {
                "process"
            };
            (
                format!("{verb} {topic}"),
                verb,
                topic,
                String::new(),
                String::new(),
            )
        }
        Family::RpcServer | Family::RpcClient => {
            let peer = if family == Family::RpcClient {
                peer
            } else {
                String::new()
            };
            let name = format!("{rpc_service}/{rpc_method}");
            (name, "", rpc_service, rpc_method, peer)
        }
        Family::Function => {
            let f = *one_of(rng, &FUNCTIONS);
            let ns = format!(
                "com.shop.{}.{}Handler",
                service.replace('-', ""),
                title(res)
            );
            (
                format!("{}Handler.{f}", title(res)),
                "",
                ns,
                f.to_string(),
                String::new(),
            )
        }
    };
    // Per-operation typical latency scattered around the family's; log-normal around it.
    let median_ms = family.typical_ms() * (rng.random::<f64>() * 2.0 - 1.0).exp();
    let sigma = 0.6 + 0.5 * rng.random::<f64>();
    let latency = LogNormal::new((median_ms * 1e6).ln(), sigma)
        .unwrap_or_else(|_| LogNormal::new(0.0, 1.0).expect("constant parameters are valid"));
    Operation {
        family,
        name,
        verb,
        target,
        detail,
        peer,
        latency,
    }
}

fn new_service(
    rng: &mut SmallRng,
    idx: usize,
    ops: usize,
    all: &[String],
    region: &str,
) -> Service {
    let name = all[idx].clone();
    let (lang, sdk_version) = SDKS[idx % SDKS.len()];
    let version = format!(
        "{}.{}.{}",
        rng.random_range(1..5),
        rng.random_range(0..30),
        rng.random_range(0..12)
    );
    let instances = (0..3)
        .map(|_| {
            let node = format!(
                "ip-10-20-{}-{}.eu.compute.internal",
                rng.random_range(0..16),
                rng.random_range(1..255)
            );
            let pod = format!("{name}-{}-{}", hex_string(rng, 10), hex_string(rng, 5));
            let attributes = vec![
                string_kv("service.name", name.clone()),
                string_kv("service.version", version.clone()),
                string_kv("service.namespace", "shop"),
                string_kv(
                    "service.instance.id",
                    format!(
                        "{}-{}-{}",
                        hex_string(rng, 8),
                        hex_string(rng, 4),
                        hex_string(rng, 12)
                    ),
                ),
                string_kv("host.name", pod.clone()),
                string_kv("host.arch", "amd64"),
                string_kv("os.type", "linux"),
                string_kv("k8s.namespace.name", "shop-prod"),
                string_kv("k8s.deployment.name", name.clone()),
                string_kv("k8s.pod.name", pod),
                string_kv("k8s.node.name", node),
                string_kv("container.id", hex_string(rng, 64)),
                string_kv("cloud.provider", "aws"),
                string_kv("cloud.region", region),
                string_kv("deployment.environment", "production"),
                string_kv("telemetry.sdk.name", "opentelemetry"),
                string_kv("telemetry.sdk.language", lang),
                string_kv("telemetry.sdk.version", sdk_version),
                int_kv("process.pid", rng.random_range(1..4_000_000)),
            ];
            Instance {
                resource: Resource {
                    attributes,
                    ..Default::default()
                },
                pod_ip: format!(
                    "10.{}.{}.{}",
                    64 + rng.random_range(0..8),
                    rng.random_range(0..256),
                    rng.random_range(1..255)
                ),
            }
        })
        .collect();
    let weight_total: u32 = Family::MIX.iter().map(|(_, w)| w).sum();
    let mut names = HashSet::new();
    let mut operations = Vec::with_capacity(ops);
    for i in 0..ops.max(2) {
        // Every service can start a trace and has at least one child operation.
        let family = match i {
            0 => Family::HttpServer,
            1 => Family::Sql,
            _ => {
                let mut r = rng.random_range(0..weight_total);
                let mut chosen = Family::Function;
                for (f, w) in Family::MIX {
                    if r < w {
                        chosen = f;
                        break;
                    }
                    r -= w;
                }
                chosen
            }
        };
        let mut op = new_operation(rng, family, &name, all);
        for _ in 0..16 {
            if !names.contains(&op.name) {
                break;
            }
            op = new_operation(rng, family, &name, all);
        }
        if names.contains(&op.name) {
            op.name = format!("{} ({i})", op.name);
        }
        names.insert(op.name.clone());
        operations.push(op);
    }
    let roots = (0..operations.len())
        .filter(|&i| operations[i].family.is_root())
        .collect();
    let children = (0..operations.len())
        .filter(|&i| !operations[i].family.is_root())
        .collect();
    Service {
        name,
        instances,
        ops: operations,
        roots,
        children,
    }
}

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

// ---- wire walk -----------------------------------------------------------------------------

fn read_varint(buf: &[u8], pos: &mut usize) -> u64 {
    let mut v = 0u64;
    let mut shift = 0;
    while let Some(&b) = buf.get(*pos) {
        *pos += 1;
        v |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            break;
        }
        shift += 7;
    }
    v
}

/// Calls `f(field, wire_type, value_start, value_end)` for every field of the message in
/// `buf[from..to]`.
fn for_each_field(buf: &[u8], from: usize, to: usize, f: &mut dyn FnMut(u64, u64, usize, usize)) {
    let mut pos = from;
    while pos < to {
        let tag = read_varint(buf, &mut pos);
        let (field, wire) = (tag >> 3, tag & 7);
        let start = pos;
        let end = match wire {
            0 => {
                read_varint(buf, &mut pos);
                pos
            }
            1 => pos + 8,
            2 => {
                let len = read_varint(buf, &mut pos) as usize;
                pos + len
            }
            5 => pos + 4,
            _ => return, // groups are not used by OTLP
        };
        let start = if wire == 2 { pos } else { start };
        f(field, wire, start, end);
        pos = end;
    }
}

/// Offsets of every span's `start_time_unix_nano` (7) and `end_time_unix_nano` (8).
fn span_time_offsets(buf: &[u8]) -> Vec<(u32, u32)> {
    let mut out = Vec::new();
    // ExportTraceServiceRequest.resource_spans = 1, ResourceSpans.scope_spans = 2,
    // ScopeSpans.spans = 2.
    for_each_field(buf, 0, buf.len(), &mut |f, w, s, e| {
        if (f, w) != (1, 2) {
            return;
        }
        for_each_field(buf, s, e, &mut |f, w, s, e| {
            if (f, w) != (2, 2) {
                return;
            }
            for_each_field(buf, s, e, &mut |f, w, s, e| {
                if (f, w) != (2, 2) {
                    return;
                }
                let (mut start, mut end) = (None, None);
                for_each_field(buf, s, e, &mut |f, w, s, _| match (f, w) {
                    (7, 1) => start = Some(s as u32),
                    (8, 1) => end = Some(s as u32),
                    _ => {}
                });
                if let (Some(a), Some(b)) = (start, end) {
                    out.push((a, b));
                }
            });
        });
    });
    out
}

/// Offsets of `Span.start_time_unix_nano` (7), `Span.end_time_unix_nano` (8) and
/// `Span.Event.time_unix_nano` (1) in an encoded `ExportTraceServiceRequest`.
fn timestamp_offsets(buf: &[u8]) -> Vec<u32> {
    let mut out = Vec::new();
    for_each_field(buf, 0, buf.len(), &mut |f, w, s, e| {
        if (f, w) != (1, 2) {
            return;
        }
        // ResourceSpans.scope_spans = 2
        for_each_field(buf, s, e, &mut |f, w, s, e| {
            if (f, w) != (2, 2) {
                return;
            }
            // ScopeSpans.spans = 2
            for_each_field(buf, s, e, &mut |f, w, s, e| {
                if (f, w) != (2, 2) {
                    return;
                }
                for_each_field(buf, s, e, &mut |f, w, s, e| match (f, w) {
                    (7, 1) | (8, 1) => out.push(s as u32),
                    // Span.events = 11
                    (11, 2) => for_each_field(buf, s, e, &mut |f, w, s, _| {
                        if (f, w) == (1, 1) {
                            out.push(s as u32);
                        }
                    }),
                    _ => {}
                });
            });
        });
    });
    out
}
