//! The data the dashboard bench feeds: realistic aggregates, series keys, and a feeder that
//! fills the `red` table window by window as the pipeline would.

use super::*;

/// SplitMix64: deterministic, dependency-free.
pub(super) struct Rng(pub(super) u64);

impl Rng {
    pub(super) fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    pub(super) fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    pub(super) fn normal(&mut self) -> f64 {
        let (u1, u2) = (self.unit().max(1e-12), self.unit());
        (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
    }
}

/// Realistic per-window aggregates to draw rows from.
pub(super) fn agg_pool() -> Vec<RedAgg> {
    let buckets = Buckets::new(vec![
        2.0, 4.0, 6.0, 8.0, 10.0, 50.0, 100.0, 200.0, 400.0, 800.0, 1000.0, 1400.0, 2000.0, 5000.0,
        10000.0, 15000.0,
    ]);
    let mut rng = Rng(42);
    (0..POOL)
        .map(|i| {
            let mut a = RedAgg::default();
            let median = [2.0, 8.0, 25.0, 80.0, 300.0][i % 5];
            let n = 20 + (rng.next() % 41);
            for _ in 0..n {
                let ms = median * (0.7 * rng.normal()).exp();
                let status = if rng.unit() < 0.01 {
                    StatusCode::Error
                } else {
                    StatusCode::Unset
                };
                a.add(status, ms, buckets.index(ms), 1.0);
            }
            a
        })
        .collect()
}

pub(super) fn series(n: usize) -> Vec<Arc<SeriesKey>> {
    let ops = 50;
    (0..n)
        .map(|i| {
            Arc::new(SeriesKey {
                service_name: Arc::from(format!("svc-{:03}", i / ops)),
                span_name: Arc::from(format!("op-{:02}", i % ops)),
                kind: SpanKind::Server,
                dims: vec![Arc::from(if i % 3 == 0 { "POST" } else { "GET" })].into_boxed_slice(),
                overflow: false,
            })
        })
        .collect()
}

/// Rows of one window of one spec, every series.
pub(super) fn rows(
    keys: &[Arc<SeriesKey>],
    pool: &[RedAgg],
    label: &Arc<str>,
    size_ns: u64,
    start: UnixNanos,
    is_final: bool,
) -> Vec<RedRow> {
    let w = start / size_ns;
    keys.iter()
        .enumerate()
        .map(|(i, k)| {
            let agg = &pool[(i as u64 * 31 + w * 17) as usize % pool.len()];
            RedRow {
                window_size: label.clone(),
                window_size_ns: size_ns,
                primary: size_ns == WINDOW_NS,
                start,
                end: start + size_ns,
                series: k.clone(),
                share: None,
                is_final,
                first: is_final,
                total: agg.clone(),
                delta: is_final.then(|| agg.clone()),
            }
        })
        .collect()
}

/// Feeds the table like the pipeline does, one 10 s window per step.
pub(super) struct Feeder {
    pub(super) table: Arc<RedTable>,
    pub(super) keys: Vec<Arc<SeriesKey>>,
    pub(super) pool: Vec<RedAgg>,
    pub(super) primary: Arc<str>,
    pub(super) rollup: Arc<str>,
    pub(super) next_window: u64,
    /// Newest final window end, for the queries' time literals.
    pub(super) newest_end: Arc<AtomicU64>,
}

#[derive(Default, Clone, Copy)]
pub(super) struct StepCost {
    pub(super) primary_rows: u64,
    pub(super) final_ns: u64,
    pub(super) rollup_ns: u64,
    pub(super) provisional_ns: u64,
}

impl StepCost {
    pub(super) fn add(&mut self, o: StepCost) {
        self.primary_rows += o.primary_rows;
        self.final_ns += o.final_ns;
        self.rollup_ns += o.rollup_ns;
        self.provisional_ns += o.provisional_ns;
    }

    pub(super) fn total_ns(&self) -> u64 {
        self.final_ns + self.rollup_ns + self.provisional_ns
    }

    /// Primary rows per second of time spent in the sink.
    pub(super) fn rate(&self) -> f64 {
        self.primary_rows as f64 / (self.total_ns() as f64 / 1e9)
    }
}

impl Feeder {
    /// Emits window `next_window` as final (and its minute when it closes); with `provisional`,
    /// also publishes the next window's provisional rows.
    pub(super) fn step(&mut self, provisional: bool) -> (StepCost, Vec<Duration>) {
        let w = self.next_window;
        self.next_window += 1;
        let start = BASE + w * WINDOW_NS;
        let mut cost = StepCost::default();
        let mut calls = Vec::new();
        let r = rows(
            &self.keys,
            &self.pool,
            &self.primary,
            WINDOW_NS,
            start,
            true,
        );
        let t = Instant::now();
        self.table.on_final(&r);
        let d = t.elapsed();
        calls.push(d);
        cost.final_ns = d.as_nanos() as u64;
        cost.primary_rows = r.len() as u64;
        drop(r);
        let end = start + WINDOW_NS;
        if end.is_multiple_of(ROLLUP_NS) {
            let r = rows(
                &self.keys,
                &self.pool,
                &self.rollup,
                ROLLUP_NS,
                end - ROLLUP_NS,
                true,
            );
            let t = Instant::now();
            self.table.on_final(&r);
            let d = t.elapsed();
            calls.push(d);
            cost.rollup_ns = d.as_nanos() as u64;
        }
        if provisional {
            let r = rows(&self.keys, &self.pool, &self.primary, WINDOW_NS, end, false);
            let t = Instant::now();
            self.table.on_provisional(WINDOW_NS, &r);
            let d = t.elapsed();
            calls.push(d);
            cost.provisional_ns = d.as_nanos() as u64;
        }
        self.newest_end.store(end, Ordering::SeqCst);
        (cost, calls)
    }
}
