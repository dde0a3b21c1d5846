//! The generated world: a random call graph of services (tiers below a frontend, leaves that
//! may call a database), simulated request by request so that a leaf's latency, errors and
//! load propagate to its callers as they do in real traces, summarised per 10 s window into
//! the RED values and service graph edge counts redwatch would compute.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, LogNormal, Poisson};
use redwatch_engine::SpanKind;
use redwatch_operators::red::SeriesKey;
use std::collections::HashMap;
use std::sync::Arc;

pub const W_NS: u64 = 10_000_000_000;
pub const W_S: f64 = 10.0;
/// An arbitrary Monday 00:00 UTC.
pub const EPOCH0: u64 = 1_767_571_200 * 1_000_000_000;

/// One operation (a server span name) of a service.
pub struct Op {
    pub service: usize,
    pub server_series: usize,
    /// Own work per request: median ms and log-sd.
    pub own_ms: f64,
    pub own_sd: f64,
    pub base_error: f64,
    /// Calls made per request: (callee op, probability, client series).
    pub calls: Vec<(usize, f64, usize)>,
    /// A database call per request: (client series, edge index, median ms).
    pub db: Option<(usize, usize, f64)>,
    /// Requests per second from outside (the `user`), for entry ops.
    pub entry_rate: f64,
}

pub struct Service {
    pub name: Arc<str>,
    pub ops: Vec<usize>,
    pub tier: usize,
}

/// An edge of the service graph: (client, server, is database).
pub struct Edge {
    pub client: Arc<str>,
    pub server: Arc<str>,
    pub database: bool,
}

/// What is injected at a leaf.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Fault {
    /// Own latency × 6 for the whole event.
    LatencySpike,
    /// 30% of the leaf's requests fail (and so do the callers' requests through it).
    ErrorBurst,
    /// Extra traffic from outside ramps to × 3 over 6 windows; latency grows with the load.
    Saturation,
}

impl Fault {
    pub fn name(&self) -> &'static str {
        match self {
            Fault::LatencySpike => "latency spike",
            Fault::ErrorBurst => "error burst",
            Fault::Saturation => "saturation",
        }
    }
}

/// An injected incident.
#[derive(Debug, Clone)]
pub struct Event {
    pub fault: Fault,
    pub leaf: usize,
    pub start: u64,
    pub len: u64,
}

pub struct World {
    pub services: Vec<Service>,
    pub ops: Vec<Op>,
    pub series: Vec<Arc<SeriesKey>>,
    pub edges: Vec<Edge>,
    edge_of: HashMap<(usize, usize), usize>,
    user_edges: Vec<usize>,
}

fn key(service: &Arc<str>, span: String, kind: SpanKind) -> Arc<SeriesKey> {
    Arc::new(SeriesKey {
        service_name: service.clone(),
        span_name: Arc::from(span),
        kind,
        dims: Box::new([]),
        overflow: false,
    })
}

const NAMES: [&str; 12] = [
    "frontend",
    "checkout",
    "catalog",
    "cart",
    "payment",
    "shipping",
    "pricing",
    "inventory",
    "currency",
    "email",
    "fraud",
    "ads",
];

impl World {
    /// A random graph for `seed`: frontend, then tiers of 3, 3 and 4 services (11 in all); each
    /// service has 1–2 operations; each non-leaf operation calls 1–3 operations of lower tiers,
    /// and every operation has a caller; about half the leaves call a database.
    pub fn generate(seed: u64) -> World {
        let mut rng = StdRng::seed_from_u64(seed ^ 0x5eed_6a9f);
        let tiers = [1usize, 3, 3, 4];
        let mut w = World {
            services: Vec::new(),
            ops: Vec::new(),
            series: Vec::new(),
            edges: Vec::new(),
            edge_of: HashMap::new(),
            user_edges: Vec::new(),
        };
        let mut idx = 0;
        for (tier, n) in tiers.iter().enumerate() {
            for _ in 0..*n {
                let name: Arc<str> = Arc::from(NAMES[idx]);
                idx += 1;
                let s = w.services.len();
                let n_ops = if tier == 0 {
                    2
                } else {
                    rng.random_range(1..=2)
                };
                let mut ops = Vec::new();
                for o in 0..n_ops {
                    let series = w.series.len();
                    w.series
                        .push(key(&name, format!("{name}.op{o}"), SpanKind::Server));
                    ops.push(w.ops.len());
                    w.ops.push(Op {
                        service: s,
                        server_series: series,
                        own_ms: rng.random_range(4.0..30.0),
                        own_sd: rng.random_range(0.25..0.5),
                        base_error: rng.random_range(0.0005..0.005),
                        calls: Vec::new(),
                        db: None,
                        entry_rate: if tier == 0 {
                            rng.random_range(15.0..30.0)
                        } else {
                            0.0
                        },
                    });
                }
                w.services.push(Service { name, ops, tier });
            }
        }
        w.wire(&mut rng);
        w
    }

    fn edge(&mut self, client: usize, server: usize) -> usize {
        if let Some(e) = self.edge_of.get(&(client, server)) {
            return *e;
        }
        self.edges.push(Edge {
            client: self.services[client].name.clone(),
            server: self.services[server].name.clone(),
            database: false,
        });
        self.edge_of.insert((client, server), self.edges.len() - 1);
        self.edges.len() - 1
    }

    /// Calls between tiers (every lower service called by someone), databases at leaves.
    fn wire(&mut self, rng: &mut StdRng) {
        let max_tier = self.services.iter().map(|s| s.tier).max().unwrap_or(0);
        for s in 0..self.services.len() {
            let tier = self.services[s].tier;
            if tier == max_tier {
                continue;
            }
            let lower: Vec<usize> = (0..self.ops.len())
                .filter(|o| self.services[self.ops[*o].service].tier > tier)
                .filter(|o| self.services[self.ops[*o].service].tier <= tier + 2)
                .collect();
            for &op in &self.services[s].ops.clone() {
                let n = rng.random_range(1..=3);
                for _ in 0..n {
                    let callee = lower[rng.random_range(0..lower.len())];
                    self.call(op, callee, rng);
                }
            }
        }
        // Every operation below the frontend has a caller in the tier right above it.
        for op in 0..self.ops.len() {
            let tier = self.services[self.ops[op].service].tier;
            let called = self.ops.iter().any(|o| o.calls.iter().any(|c| c.0 == op));
            if tier > 0 && !called {
                let callers: Vec<usize> = (0..self.ops.len())
                    .filter(|o| self.services[self.ops[*o].service].tier + 1 == tier)
                    .collect();
                let caller = callers[rng.random_range(0..callers.len())];
                self.call(caller, op, rng);
            }
        }
        for s in 0..self.services.len() {
            if self.services[s].tier == max_tier && rng.random_bool(0.5) {
                let name = self.services[s].name.clone();
                let db: Arc<str> = Arc::from(format!("{name}-db"));
                self.edges.push(Edge {
                    client: name.clone(),
                    server: db,
                    database: true,
                });
                let e = self.edges.len() - 1;
                for &op in &self.services[s].ops.clone() {
                    let series = self.series.len();
                    self.series
                        .push(key(&name, format!("SELECT {name}"), SpanKind::Client));
                    self.ops[op].db = Some((series, e, rng.random_range(1.0..4.0)));
                }
            }
        }
        for s in 0..self.services.len() {
            let user: Arc<str> = Arc::from("user");
            // Entry traffic of the frontend, and outside traffic to any service (a surge).
            {
                self.edges.push(Edge {
                    client: user,
                    server: self.services[s].name.clone(),
                    database: false,
                });
                self.user_edges.push(self.edges.len() - 1);
            }
        }
    }

    fn call(&mut self, op: usize, callee: usize, rng: &mut StdRng) {
        if self.ops[op].calls.iter().any(|c| c.0 == callee) {
            return;
        }
        let (cs, ss) = (self.ops[op].service, self.ops[callee].service);
        let caller_name = self.services[cs].name.clone();
        let series = self.series.len();
        let span = format!(
            "{}/{}",
            self.services[ss].name, self.ops[callee].server_series
        );
        self.series.push(key(&caller_name, span, SpanKind::Client));
        self.edge(cs, ss);
        let p = if rng.random_bool(0.7) { 1.0 } else { 0.5 };
        self.ops[op].calls.push((callee, p, series));
    }

    /// Services that call `s`, directly or not, and `s` itself: where a fault at `s` shows.
    pub fn affected(&self, s: usize) -> Vec<usize> {
        let mut out = vec![s];
        let mut i = 0;
        while i < out.len() {
            let t = out[i];
            for o in &self.ops {
                if o.calls.iter().any(|c| self.ops[c.0].service == t) && !out.contains(&o.service) {
                    out.push(o.service);
                }
            }
            i += 1;
        }
        out
    }

    /// Leaves: services that call no other service.
    pub fn leaves(&self) -> Vec<usize> {
        (0..self.services.len())
            .filter(|s| {
                self.services[*s]
                    .ops
                    .iter()
                    .all(|o| self.ops[*o].calls.is_empty())
            })
            .collect()
    }
}

/// One window's accumulators.
pub struct WindowData {
    pub lat: Vec<Vec<f64>>,
    pub errors: Vec<f64>,
    /// Per edge: (requests, failed).
    pub edges: Vec<(f64, f64)>,
}

impl WindowData {
    /// Per series: [rate, error ratio, p50, p99, calls].
    pub fn values(&mut self) -> Vec<[f64; 5]> {
        let mut out = Vec::with_capacity(self.lat.len());
        for (l, e) in self.lat.iter_mut().zip(&self.errors) {
            let n = l.len();
            let q = |l: &mut Vec<f64>, p: f64| -> f64 {
                if l.is_empty() {
                    return 0.0;
                }
                let k = ((p * n as f64).ceil() as usize).clamp(1, n) - 1;
                *l.select_nth_unstable_by(k, |a, b| a.total_cmp(b)).1
            };
            let p50 = q(l, 0.5);
            let p99 = q(l, 0.99);
            let ratio = if n > 0 { e / n as f64 } else { 0.0 };
            out.push([n as f64 / W_S, ratio, p50, p99, n as f64]);
        }
        out
    }
}

/// The simulator: draws each window's requests under the active fault.
pub struct Sim<'a> {
    pub world: &'a World,
    rng: StdRng,
}

impl<'a> Sim<'a> {
    pub fn new(world: &'a World, seed: u64) -> Self {
        Sim {
            world,
            rng: StdRng::seed_from_u64(seed),
        }
    }

    /// Window `w` with `fault` active at its leaf (ramp position `age` windows into it).
    pub fn window(&mut self, fault: Option<(&Event, u64)>) -> WindowData {
        let wd = self.world;
        let mut d = WindowData {
            lat: vec![Vec::new(); wd.series.len()],
            errors: vec![0.0; wd.series.len()],
            edges: vec![(0.0, 0.0); wd.edges.len()],
        };
        let f = fault.map(|(e, age)| (e.fault, e.leaf, age));
        for op in 0..wd.ops.len() {
            let mut rate = wd.ops[op].entry_rate;
            if let Some((Fault::Saturation, leaf, age)) = f {
                // Outside traffic to the leaf's first op, ramping up: × 3 its usual load.
                if wd.ops[op].service == leaf && wd.services[leaf].ops[0] == op {
                    rate += 2.0 * self.usual_rate(op) * ((age + 1) as f64 / 6.0).min(1.0);
                }
            }
            if rate <= 0.0 {
                continue;
            }
            let n = Poisson::new(rate * W_S).map_or(0.0, |p| p.sample(&mut self.rng)) as u64;
            for _ in 0..n {
                self.request(op, f, &mut d);
            }
            if let Some(&e) = wd
                .user_edges
                .iter()
                .find(|e| *wd.edges[**e].server == *wd.services[wd.ops[op].service].name)
            {
                d.edges[e].0 += n as f64;
            }
        }
        d
    }

    /// Requests per second an op gets from the entry ops without faults.
    fn usual_rate(&self, op: usize) -> f64 {
        let wd = self.world;
        let mut rate = vec![0.0; wd.ops.len()];
        // Tiers are ordered: callers come before callees in `ops`.
        for o in 0..wd.ops.len() {
            rate[o] += wd.ops[o].entry_rate;
            for (c, p, _) in &wd.ops[o].calls {
                rate[*c] += rate[o] * p;
            }
        }
        rate[op]
    }

    /// One request to `op`: returns (latency ms, failed) and records its spans.
    fn request(
        &mut self,
        op: usize,
        f: Option<(Fault, usize, u64)>,
        d: &mut WindowData,
    ) -> (f64, bool) {
        let wd = self.world;
        let o = &wd.ops[op];
        let mut factor = 1.0;
        let mut error = o.base_error;
        if let Some((fault, leaf, age)) = f {
            if leaf == o.service {
                match fault {
                    Fault::LatencySpike => factor = 6.0,
                    Fault::ErrorBurst => error = 0.3,
                    Fault::Saturation => factor = 1.0 + 3.0 * ((age + 1) as f64 / 6.0).min(1.0),
                }
            }
        }
        let own =
            LogNormal::new(o.own_ms.ln(), o.own_sd).map_or(o.own_ms, |l| l.sample(&mut self.rng));
        let mut lat = own * factor;
        let mut failed = self.rng.random_bool(error.clamp(0.0, 1.0));
        for (callee, p, series) in &o.calls {
            if *p < 1.0 && !self.rng.random_bool(*p) {
                continue;
            }
            let (cl, cf) = self.request(*callee, f, d);
            let client = cl + 0.5;
            d.lat[*series].push(client);
            let e = wd.edge_of[&(o.service, wd.ops[*callee].service)];
            d.edges[e].0 += 1.0;
            if cf {
                d.errors[*series] += 1.0;
                d.edges[e].1 += 1.0;
                failed = true;
            }
            lat += client;
        }
        if let Some((series, e, ms)) = o.db {
            let dl = LogNormal::new(ms.ln(), 0.4).map_or(ms, |l| l.sample(&mut self.rng));
            d.lat[series].push(dl);
            d.edges[e].0 += 1.0;
            lat += dl;
        }
        d.lat[o.server_series].push(lat);
        if failed {
            d.errors[o.server_series] += 1.0;
        }
        (lat, failed)
    }
}
