//! What the generator draws from: the service catalog (names, SDKs, resources), each
//! service's operations by family (HTTP, gRPC, database, cache, messaging, functions) and the
//! attribute helpers. Builds data only.

#![allow(dead_code)]

use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use rand::rngs::SmallRng;
use rand::Rng;
use rand_distr::LogNormal;
use std::collections::HashSet;

/// What an operation does; decides span kind, scope, attributes and typical latency.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Family {
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

    pub(super) fn kind(self) -> SpanKind {
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
    pub(super) fn is_root(self) -> bool {
        matches!(
            self,
            Family::HttpServer | Family::RpcServer | Family::Receive
        )
    }

    pub(super) fn scope(self) -> usize {
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

    pub(super) fn typical_ms(self) -> f64 {
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

pub(super) const SCOPES: [(&str, &str); 7] = [
    ("io.opentelemetry.spring-webmvc-6.0", "2.11.0-alpha"),
    ("io.opentelemetry.okhttp-3.0", "2.11.0-alpha"),
    ("io.opentelemetry.jdbc", "2.11.0-alpha"),
    ("io.opentelemetry.jedis-4.0", "2.11.0-alpha"),
    ("io.opentelemetry.kafka-clients-2.6", "2.11.0-alpha"),
    ("io.opentelemetry.grpc-1.6", "2.11.0-alpha"),
    ("app.instrumentation.manual", "0.3.1"),
];
pub(super) const SCHEMA_URL: &str = "https://opentelemetry.io/schemas/1.26.0";

pub(super) const SERVICES: [&str; 20] = [
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
pub(super) const SDKS: [(&str, &str); 5] = [
    ("java", "1.44.1"),
    ("go", "1.32.0"),
    ("python", "1.29.0"),
    ("nodejs", "1.28.0"),
    ("dotnet", "1.10.0"),
];
pub(super) const RESOURCES: [&str; 18] = [
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
pub(super) const SUBRESOURCES: [&str; 5] = ["lines", "state", "audit", "notes", "totals"];
pub(super) const VERBS: [&str; 10] = [
    "GET", "GET", "GET", "GET", "GET", "GET", "POST", "POST", "PUT", "DELETE",
];
pub(super) const CACHE_CMDS: [&str; 8] = [
    "GET", "SET", "HGET", "HSET", "MGET", "DEL", "EXPIRE", "INCR",
];
pub(super) const FUNCTIONS: [&str; 10] = [
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
pub(super) const FAILURES: [(&str, &str); 4] = [
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
pub(super) const CLIENTS: [&str; 4] = [
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 Mobile/15E148",
    "okhttp/4.12.0",
    "Apache-HttpClient/5.3 (Java/21.0.3)",
];

pub(super) struct Operation {
    pub(super) family: Family,
    pub(super) name: String,
    /// HTTP method, SQL verb, cache command, messaging operation ("" when none).
    pub(super) verb: &'static str,
    /// HTTP route, table, key prefix, topic, RPC service or code namespace.
    pub(super) target: String,
    /// RPC method, SQL statement or function name.
    pub(super) detail: String,
    /// The called service, for client spans.
    pub(super) peer: String,
    pub(super) latency: LogNormal<f64>,
}

pub(super) struct Instance {
    pub(super) resource: Resource,
    pub(super) pod_ip: String,
}

pub(super) struct Service {
    pub(super) name: String,
    pub(super) instances: Vec<Instance>,
    pub(super) ops: Vec<Operation>,
    pub(super) roots: Vec<usize>,
    pub(super) children: Vec<usize>,
}

pub(super) fn string_kv(key: &str, v: impl Into<String>) -> KeyValue {
    any_kv(key, any_value::Value::StringValue(v.into()))
}

pub(super) fn int_kv(key: &str, v: i64) -> KeyValue {
    any_kv(key, any_value::Value::IntValue(v))
}

pub(super) fn any_kv(key: &str, v: any_value::Value) -> KeyValue {
    KeyValue {
        key: key.to_string(),
        value: Some(AnyValue { value: Some(v) }),
        ..Default::default()
    }
}

pub(super) fn one_of<'a, T>(rng: &mut SmallRng, xs: &'a [T]) -> &'a T {
    &xs[rng.random_range(0..xs.len())]
}

pub(super) fn hex_string(rng: &mut SmallRng, digits: usize) -> String {
    (0..digits)
        .map(|_| char::from_digit(rng.random_range(0..16u32), 16).unwrap_or('0'))
        .collect()
}

pub(super) fn random_id<const N: usize>(rng: &mut SmallRng) -> Vec<u8> {
    let mut id = [0u8; N];
    while id.iter().all(|b| *b == 0) {
        rng.fill(&mut id[..]);
    }
    id.to_vec()
}

pub(super) fn title(s: &str) -> String {
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

pub(super) fn service_names(n: usize) -> Vec<String> {
    (0..n.max(1))
        .map(|i| match i / SERVICES.len() {
            0 => SERVICES[i].to_string(),
            k => format!("{}-{k}", SERVICES[i % SERVICES.len()]),
        })
        .collect()
}

pub(super) fn new_operation(
    rng: &mut SmallRng,
    family: Family,
    service: &str,
    all: &[String],
) -> Operation {
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

pub(super) fn new_service(
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
