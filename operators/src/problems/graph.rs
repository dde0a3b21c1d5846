//! The live service graph as the correlator sees it: which client called which server (or
//! database / virtual node) recently, and whether an edge's calls are failing far more than
//! usual (an error burst on the edge).
//!
//! Fed from the service graph operator's final rows; bounded by `max_edges` and forgotten
//! `ttl` after an edge's last window. It must not pair spans or keep per-window history: one
//! running failure baseline per edge is all it holds.

use crate::servicegraph::ConnectionType;
use hashbrown::HashMap;
use std::sync::Arc;

/// Windows an edge must have been seen before a failure burst on it counts.
const BURST_WARMUP: u32 = 10;
/// Weight of one window in the running failure ratio.
const BASELINE_ALPHA: f64 = 0.05;
/// Fewest calls in a window for its failure ratio to mean anything.
const MIN_CALLS: f64 = 5.0;

/// One edge's recent state.
#[derive(Debug, Clone)]
struct EdgeState {
    connection_type: ConnectionType,
    /// End of the newest window seen.
    last_end: u64,
    /// Requests and failures of that window (rows with different dimensions add up).
    cur_requests: f64,
    cur_failed: f64,
    /// Running failure ratio of earlier calm windows, and how many windows taught it.
    baseline: f64,
    windows: u32,
    /// The newest burst window: (window end, failure ratio).
    burst: Option<(u64, f64)>,
}

impl EdgeState {
    /// Folds the current window into the baseline, or records it as a burst.
    fn close_window(&mut self) {
        if self.cur_requests < MIN_CALLS {
            return;
        }
        let r = self.cur_failed / self.cur_requests;
        if self.is_burst(r) {
            self.burst = Some((self.last_end, r));
        } else {
            self.baseline = if self.windows == 0 {
                r
            } else {
                self.baseline + BASELINE_ALPHA * (r - self.baseline)
            };
            self.windows = self.windows.saturating_add(1);
        }
    }

    fn is_burst(&self, ratio: f64) -> bool {
        self.windows >= BURST_WARMUP && ratio >= 0.05 && ratio >= 3.0 * self.baseline + 0.02
    }

    /// The newest burst ending after `since`, counting the window still being filled.
    fn burst_since(&self, since: u64) -> Option<f64> {
        if self.cur_requests >= MIN_CALLS && self.last_end > since {
            let r = self.cur_failed / self.cur_requests;
            if self.is_burst(r) {
                return Some(r);
            }
        }
        self.burst.filter(|(end, _)| *end > since).map(|(_, r)| r)
    }
}

/// An error burst on an edge, for the evidence.
#[derive(Debug, Clone, PartialEq)]
pub struct Burst {
    pub client: Arc<str>,
    pub server: Arc<str>,
    pub ratio: f64,
    pub baseline: f64,
}

/// Recently seen edges: client → server → state.
#[derive(Debug)]
pub struct LiveGraph {
    edges: HashMap<Arc<str>, HashMap<Arc<str>, EdgeState>>,
    count: usize,
    max_edges: usize,
    ttl_ns: u64,
    /// Edge rows dropped because the graph was full.
    pub dropped: u64,
}

impl LiveGraph {
    pub fn new(max_edges: usize, ttl_ns: u64) -> Self {
        LiveGraph {
            edges: HashMap::new(),
            count: 0,
            max_edges: max_edges.max(1),
            ttl_ns,
            dropped: 0,
        }
    }

    /// One final edge row: `requests` calls from `client` to `server` in the window ending at
    /// `window_end`, `failed` of them failed. Rows with an unknown side ("") are ignored.
    pub fn observe(
        &mut self,
        client: &Arc<str>,
        server: &Arc<str>,
        connection_type: ConnectionType,
        window_end: u64,
        requests: f64,
        failed: f64,
    ) {
        if client.is_empty() || server.is_empty() || client == server {
            return;
        }
        let known = self
            .edges
            .get(&**client)
            .is_some_and(|m| m.contains_key(&**server));
        if !known && self.count >= self.max_edges {
            self.dropped += 1;
            return;
        }
        if !known {
            self.count += 1;
        }
        let e = self
            .edges
            .entry(client.clone())
            .or_default()
            .entry(server.clone())
            .or_insert(EdgeState {
                connection_type,
                last_end: 0,
                cur_requests: 0.0,
                cur_failed: 0.0,
                baseline: 0.0,
                windows: 0,
                burst: None,
            });
        if window_end > e.last_end {
            e.close_window();
            e.last_end = window_end;
            e.cur_requests = 0.0;
            e.cur_failed = 0.0;
        } else if window_end < e.last_end {
            return; // a late re-emission of an older window teaches nothing new
        }
        e.connection_type = connection_type;
        e.cur_requests += requests.max(0.0);
        e.cur_failed += failed.max(0.0);
    }

    /// Forgets edges whose newest window ended more than the ttl before `now`.
    pub fn expire(&mut self, now: u64) {
        let ttl = self.ttl_ns;
        for m in self.edges.values_mut() {
            m.retain(|_, e| e.last_end.saturating_add(ttl) > now);
        }
        self.edges.retain(|_, m| !m.is_empty());
        self.count = self.edges.values().map(|m| m.len()).sum();
    }

    /// Edges held.
    pub fn len(&self) -> usize {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Whether `client` calls `server` directly.
    pub fn calls(&self, client: &str, server: &str) -> bool {
        self.edges
            .get(client)
            .is_some_and(|m| m.contains_key(server))
    }

    /// The nodes `client` calls, with how.
    pub fn callees<'a>(
        &'a self,
        client: &str,
    ) -> impl Iterator<Item = (&'a Arc<str>, ConnectionType)> + 'a {
        self.edges
            .get(client)
            .into_iter()
            .flat_map(|m| m.iter().map(|(s, e)| (s, e.connection_type)))
    }

    /// Whether services `a` and `b` are connected (see [`LiveGraph::connection`]).
    pub fn connected(&self, a: &str, b: &str) -> bool {
        a == b
            || self.calls(a, b)
            || self.calls(b, a)
            || self
                .callees(a)
                .any(|(n, ct)| uninstrumented(ct) && self.calls(b, n))
    }

    /// Why services `a` and `b` are connected, if they are: the same service, one calls the
    /// other, or both call the same database or virtual node.
    pub fn connection(&self, a: &str, b: &str) -> Option<String> {
        if a == b {
            return Some(format!("same service {a}"));
        }
        if self.calls(a, b) {
            return Some(format!("{a} calls {b}"));
        }
        if self.calls(b, a) {
            return Some(format!("{b} calls {a}"));
        }
        self.callees(a)
            .filter(|(_, ct)| uninstrumented(*ct))
            .find(|(n, _)| self.calls(b, n))
            .map(|(n, _)| format!("{a} and {b} both call {n}"))
    }

    /// Error bursts on edges into `server` in windows ending after `since`.
    pub fn bursts_into(&self, server: &str, since: u64) -> Vec<Burst> {
        let mut out = Vec::new();
        for (c, m) in &self.edges {
            if let Some((s, e)) = m.get_key_value(server) {
                push_burst(&mut out, c, s, e, since);
            }
        }
        out
    }

    /// Error bursts on edges from `client` to nodes that are not instrumented services
    /// (databases, virtual nodes) in windows ending after `since`.
    pub fn bursts_out_to_uninstrumented(&self, client: &str, since: u64) -> Vec<Burst> {
        let mut out = Vec::new();
        if let Some((c, m)) = self.edges.get_key_value(client) {
            for (s, e) in m {
                if uninstrumented(e.connection_type) {
                    push_burst(&mut out, c, s, e, since);
                }
            }
        }
        out
    }
}

/// Whether the server side of an edge of this type has no RED series of its own.
fn uninstrumented(ct: ConnectionType) -> bool {
    matches!(ct, ConnectionType::Database | ConnectionType::VirtualNode)
}

fn push_burst(out: &mut Vec<Burst>, c: &Arc<str>, s: &Arc<str>, e: &EdgeState, since: u64) {
    if let Some(ratio) = e.burst_since(since) {
        out.push(Burst {
            client: c.clone(),
            server: s.clone(),
            ratio,
            baseline: e.baseline,
        });
    }
}
