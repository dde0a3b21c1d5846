//! The per-(window, edge) state: requests, failures, and client and server latency as exact
//! histogram buckets (seconds, for Prometheus) plus quantile sketches (ms, for SQL).

use crate::red::sketch::QuantileSketch;
use redwatch_engine::prefetch::prefetch_slice;
use redwatch_engine::window::WindowAggregate;

/// Sparse weighted bucket counts, sorted by bucket index (`bounds.len()` = +Inf).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SparseBuckets(Vec<(u8, f64)>);

impl SparseBuckets {
    fn prefetch(&self) {
        prefetch_slice(&self.0, 2);
    }

    pub fn add(&mut self, index: usize, weight: f64) {
        let i = index.min(u8::MAX as usize) as u8;
        match self.0.binary_search_by_key(&i, |(k, _)| *k) {
            Ok(p) => self.0[p].1 += weight,
            Err(p) => self.0.insert(p, (i, weight)),
        }
    }

    fn merge(&mut self, o: &SparseBuckets) {
        for (i, w) in &o.0 {
            self.add(*i as usize, *w);
        }
    }

    /// Dense non-cumulative counts for `n_bounds` bounds (+Inf last).
    pub fn dense(&self, n_bounds: usize) -> Vec<f64> {
        let mut out = vec![0.0; n_bounds + 1];
        for (i, w) in &self.0 {
            if let Some(slot) = out.get_mut(*i as usize) {
                *slot += w;
            }
        }
        out
    }

    fn heap_bytes(&self) -> usize {
        self.0.capacity() * std::mem::size_of::<(u8, f64)>()
    }
}

/// One side's latency distribution.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Latency {
    /// Weighted sum of latencies, seconds.
    pub sum_s: f64,
    pub buckets: SparseBuckets,
    /// Latencies in milliseconds.
    pub sketch: QuantileSketch,
}

impl Latency {
    fn prefetch(&self, seconds: f64) {
        self.buckets.prefetch();
        self.sketch.prefetch(seconds * 1e3);
    }

    fn add(&mut self, seconds: f64, bucket: usize, weight: f64) {
        self.sum_s += seconds * weight;
        self.buckets.add(bucket, weight);
        self.sketch.add(seconds * 1e3, weight);
    }

    fn merge(&mut self, o: &Latency) {
        self.sum_s += o.sum_s;
        self.buckets.merge(&o.buckets);
        self.sketch.merge(&o.sketch);
    }

    /// The latency quantile `q` in milliseconds (None without data).
    pub fn quantile_ms(&self, q: f64) -> Option<f64> {
        self.sketch.quantile(q)
    }
}

/// Service graph state of one edge in one window.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EdgeAgg {
    /// Paired requests (sampling-weighted).
    pub requests: f64,
    /// Paired requests where the client or the server span has status ERROR.
    pub failed: f64,
    pub client: Latency,
    pub server: Latency,
}

impl EdgeAgg {
    /// Starts loading the buckets and sketch bins an [`add`](Self::add) of these latencies
    /// will touch into the cache.
    pub fn prefetch_heap(&self, client_s: f64, server_s: f64) {
        self.client.prefetch(client_s);
        self.server.prefetch(server_s);
    }

    /// Adds one paired request.
    pub fn add(
        &mut self,
        client_s: f64,
        server_s: f64,
        buckets: (usize, usize),
        failed: bool,
        weight: f64,
    ) {
        self.requests += weight;
        if failed {
            self.failed += weight;
        }
        self.client.add(client_s, buckets.0, weight);
        self.server.add(server_s, buckets.1, weight);
    }
}

impl WindowAggregate for EdgeAgg {
    fn merge(&mut self, o: &Self) {
        self.requests += o.requests;
        self.failed += o.failed;
        self.client.merge(&o.client);
        self.server.merge(&o.server);
    }

    fn heap_bytes(&self) -> usize {
        self.client.buckets.heap_bytes()
            + self.server.buckets.heap_bytes()
            + self.client.sketch.heap_bytes()
            + self.server.sketch.heap_bytes()
    }
}
