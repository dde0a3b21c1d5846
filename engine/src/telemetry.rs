//! redwatch's own metrics (`redwatch_*`): a small registry of counters and gauges.
//!
//! Hot paths hold an `Arc<Counter>` obtained once at construction, so counting is one relaxed
//! atomic add; label sets are fixed when a series is registered. Rendering to the Prometheus text
//! format lives in the Prometheus connector, which walks [`Registry::visit`].

use dashmap::DashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// A monotonically increasing count.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    pub fn inc(&self) {
        self.add(1);
    }
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A value that goes up and down (stored as f64 bits).
#[derive(Debug, Default)]
pub struct Gauge(AtomicU64);

impl Gauge {
    pub fn set(&self, v: f64) {
        self.0.store(v.to_bits(), Ordering::Relaxed);
    }
    pub fn get(&self) -> f64 {
        f64::from_bits(self.0.load(Ordering::Relaxed))
    }
}

/// Kind of a metric family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricType {
    Counter,
    Gauge,
}

impl MetricType {
    pub fn as_str(&self) -> &'static str {
        match self {
            MetricType::Counter => "counter",
            MetricType::Gauge => "gauge",
        }
    }
}

#[derive(Debug, Clone)]
enum Cell {
    Counter(Arc<Counter>),
    Gauge(Arc<Gauge>),
}

#[derive(Debug)]
struct Family {
    help: &'static str,
    kind: MetricType,
    series: Vec<(Vec<(&'static str, String)>, Cell)>,
}

/// All self-metrics of one engine.
#[derive(Debug, Default)]
pub struct Registry {
    families: DashMap<&'static str, Family>,
}

/// One sample handed to a visitor.
pub struct Sample<'a> {
    pub labels: &'a [(&'static str, String)],
    pub value: f64,
}

impl Registry {
    pub fn new() -> Arc<Self> {
        Arc::new(Registry::default())
    }

    fn cell(
        &self,
        name: &'static str,
        help: &'static str,
        kind: MetricType,
        labels: &[(&'static str, &str)],
        make: impl FnOnce() -> Cell,
    ) -> Cell {
        let labels: Vec<(&'static str, String)> =
            labels.iter().map(|(k, v)| (*k, v.to_string())).collect();
        let mut fam = self.families.entry(name).or_insert_with(|| Family {
            help,
            kind,
            series: Vec::new(),
        });
        if let Some((_, c)) = fam.series.iter().find(|(l, _)| *l == labels) {
            return c.clone();
        }
        let c = make();
        fam.series.push((labels, c.clone()));
        c
    }

    /// The counter `name{labels}`, registering it on first use.
    pub fn counter(
        &self,
        name: &'static str,
        help: &'static str,
        labels: &[(&'static str, &str)],
    ) -> Arc<Counter> {
        match self.cell(name, help, MetricType::Counter, labels, || {
            Cell::Counter(Arc::default())
        }) {
            Cell::Counter(c) => c,
            Cell::Gauge(_) => panic!("metric {name} registered as a gauge and a counter"),
        }
    }

    /// The gauge `name{labels}`, registering it on first use.
    pub fn gauge(
        &self,
        name: &'static str,
        help: &'static str,
        labels: &[(&'static str, &str)],
    ) -> Arc<Gauge> {
        match self.cell(name, help, MetricType::Gauge, labels, || {
            Cell::Gauge(Arc::default())
        }) {
            Cell::Gauge(g) => g,
            Cell::Counter(_) => panic!("metric {name} registered as a counter and a gauge"),
        }
    }

    /// The gauge `name{labels}`, or `None` when `name` is already a counter (for names that come
    /// from user config, which must never panic the caller).
    pub fn try_gauge(
        &self,
        name: &'static str,
        help: &'static str,
        labels: &[(&'static str, &str)],
    ) -> Option<Arc<Gauge>> {
        if self
            .families
            .get(name)
            .is_some_and(|f| f.kind != MetricType::Gauge)
        {
            return None;
        }
        match self.cell(name, help, MetricType::Gauge, labels, || {
            Cell::Gauge(Arc::default())
        }) {
            Cell::Gauge(g) => Some(g),
            Cell::Counter(_) => None,
        }
    }

    /// Calls `f(name, help, type, samples)` for every family, in name order.
    pub fn visit(&self, mut f: impl FnMut(&str, &str, MetricType, &[Sample<'_>])) {
        let mut names: Vec<&'static str> = self.families.iter().map(|e| *e.key()).collect();
        names.sort_unstable();
        for name in names {
            if let Some(fam) = self.families.get(name) {
                let samples: Vec<Sample<'_>> = fam
                    .series
                    .iter()
                    .map(|(labels, c)| Sample {
                        labels,
                        value: match c {
                            Cell::Counter(c) => c.get() as f64,
                            Cell::Gauge(g) => g.get(),
                        },
                    })
                    .collect();
                f(name, fam.help, fam.kind, &samples);
            }
        }
    }

    /// Current value of `name{labels}` (0 if not registered) — for tests and the demo view.
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.families
            .get(name)
            .and_then(|fam| {
                fam.series
                    .iter()
                    .find(|(l, _)| {
                        l.len() == labels.len()
                            && l.iter().zip(labels).all(|(a, b)| a.0 == b.0 && a.1 == b.1)
                    })
                    .map(|(_, c)| match c {
                        Cell::Counter(c) => c.get() as f64,
                        Cell::Gauge(g) => g.get(),
                    })
            })
            .unwrap_or(0.0)
    }

    /// Whether `name{labels}` is registered.
    pub fn contains(&self, name: &str, labels: &[(&str, &str)]) -> bool {
        self.families.get(name).is_some_and(|fam| {
            fam.series.iter().any(|(l, _)| {
                l.len() == labels.len()
                    && l.iter().zip(labels).all(|(a, b)| a.0 == b.0 && a.1 == b.1)
            })
        })
    }

    /// Sum of `name` over all label sets.
    pub fn total(&self, name: &str) -> f64 {
        self.families
            .get(name)
            .map(|fam| {
                fam.series
                    .iter()
                    .map(|(_, c)| match c {
                        Cell::Counter(c) => c.get() as f64,
                        Cell::Gauge(g) => g.get(),
                    })
                    .sum()
            })
            .unwrap_or(0.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn try_gauge_never_turns_a_counter_into_a_gauge() {
        let r = Registry::new();
        r.counter("redwatch_c_total", "c", &[("q", "a")]).inc();
        assert!(r
            .try_gauge("redwatch_c_total", "c", &[("q", "b")])
            .is_none());
        assert!(r
            .try_gauge("redwatch_c_total", "c", &[("q", "a")])
            .is_none());
        let g = r.try_gauge("redwatch_g", "g", &[]).expect("a new gauge");
        g.set(2.0);
        assert_eq!(r.value("redwatch_g", &[]), 2.0);
        assert_eq!(r.value("redwatch_c_total", &[("q", "a")]), 1.0);
    }

    #[test]
    fn same_labels_share_a_counter() {
        let r = Registry::new();
        let a = r.counter("redwatch_x_total", "x", &[("reason", "a")]);
        let a2 = r.counter("redwatch_x_total", "x", &[("reason", "a")]);
        let b = r.counter("redwatch_x_total", "x", &[("reason", "b")]);
        a.inc();
        a2.add(2);
        b.inc();
        assert_eq!(r.value("redwatch_x_total", &[("reason", "a")]), 3.0);
        assert_eq!(r.total("redwatch_x_total"), 4.0);
        let mut seen = 0;
        r.visit(|n, _, t, s| {
            assert_eq!(n, "redwatch_x_total");
            assert_eq!(t, MetricType::Counter);
            seen += s.len();
        });
        assert_eq!(seen, 2);
    }
}
