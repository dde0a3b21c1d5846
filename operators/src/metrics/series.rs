//! Metric series identities: interning `(metric name, kind, unit, service, attributes, bucket
//! bounds)` to a small id, with the cardinality limit, overflow series and expiry.
//!
//! Lookups borrow from the batch (no allocation for a known series); a new series allocates its
//! strings once. Past `limit` active series, new ones fold into the overflow series of their
//! metric kind (one per kind, so a counter never adds into a gauge).

use hashbrown::Equivalent;
use redwatch_engine::metric_model::MetricKind;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

/// The identity of a metric series (one `metric_points` row per window).
#[derive(Debug, Clone)]
pub struct MetricSeriesKey {
    pub name: Arc<str>,
    pub kind: MetricKind,
    pub unit: Arc<str>,
    pub service_name: Option<Arc<str>>,
    /// Point attributes sorted by key (then value).
    pub attrs: Box<[(Arc<str>, Arc<str>)]>,
    /// Explicit histogram bucket bounds (a change of bounds makes a new series).
    pub bounds: Option<Arc<[f64]>>,
    /// The series that collects everything of this kind past the cardinality limit.
    pub overflow: bool,
}

impl PartialEq for MetricSeriesKey {
    fn eq(&self, o: &Self) -> bool {
        self.overflow == o.overflow
            && self.kind == o.kind
            && self.name == o.name
            && self.unit == o.unit
            && self.service_name == o.service_name
            && self.attrs == o.attrs
            && same_bounds(self.bounds.as_deref(), o.bounds.as_deref())
    }
}

impl Eq for MetricSeriesKey {}

impl PartialOrd for MetricSeriesKey {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}

impl Ord for MetricSeriesKey {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        (
            &self.service_name,
            &self.name,
            self.kind,
            &self.unit,
            &self.attrs,
            self.overflow,
        )
            .cmp(&(
                &o.service_name,
                &o.name,
                o.kind,
                &o.unit,
                &o.attrs,
                o.overflow,
            ))
            .then_with(|| {
                let bits = |b: &Option<Arc<[f64]>>| -> Vec<u64> {
                    b.iter()
                        .flat_map(|b| b.iter().map(|x| x.to_bits()))
                        .collect()
                };
                bits(&self.bounds).cmp(&bits(&o.bounds))
            })
    }
}

fn hash_parts<H: Hasher>(r: &MetricSeriesRef<'_>, overflow: bool, h: &mut H) {
    r.name.hash(h);
    (r.kind as u8).hash(h);
    r.unit.hash(h);
    r.service_name.hash(h);
    r.attrs.len().hash(h);
    for (k, v) in r.attrs {
        k.hash(h);
        v.hash(h);
    }
    match r.bounds {
        Some(b) => {
            b.len().hash(h);
            for x in b {
                x.to_bits().hash(h);
            }
        }
        None => usize::MAX.hash(h),
    }
    overflow.hash(h);
}

impl MetricSeriesKey {
    /// The overflow series of `kind`.
    pub fn overflow(kind: MetricKind) -> MetricSeriesKey {
        let empty: Arc<str> = Arc::from("");
        MetricSeriesKey {
            name: empty.clone(),
            kind,
            unit: empty,
            service_name: None,
            attrs: Box::new([]),
            bounds: None,
            overflow: true,
        }
    }

    /// Heap bytes of the key.
    pub fn heap_bytes(&self) -> usize {
        self.name.len()
            + self.unit.len()
            + self.service_name.as_ref().map_or(0, |s| s.len() + 16)
            + self
                .attrs
                .iter()
                .map(|(k, v)| k.len() + v.len() + 48)
                .sum::<usize>()
            + self.bounds.as_ref().map_or(0, |b| b.len() * 8 + 16)
            + 48
    }
}

impl Hash for MetricSeriesKey {
    fn hash<H: Hasher>(&self, h: &mut H) {
        let attrs: Vec<(&str, &str)> = self.attrs.iter().map(|(k, v)| (&**k, &**v)).collect();
        let r = MetricSeriesRef {
            name: &self.name,
            kind: self.kind,
            unit: &self.unit,
            service_name: self.service_name.as_deref(),
            attrs: &attrs,
            bounds: self.bounds.as_deref(),
        };
        hash_parts(&r, self.overflow, h);
    }
}

/// A series key borrowed from a batch, for allocation-free lookups. `attrs` must be sorted.
#[derive(Debug, Clone, Copy)]
pub struct MetricSeriesRef<'a> {
    pub name: &'a str,
    pub kind: MetricKind,
    pub unit: &'a str,
    pub service_name: Option<&'a str>,
    pub attrs: &'a [(&'a str, &'a str)],
    pub bounds: Option<&'a [f64]>,
}

impl Hash for MetricSeriesRef<'_> {
    fn hash<H: Hasher>(&self, h: &mut H) {
        hash_parts(self, false, h);
    }
}

fn same_bounds(a: Option<&[f64]>, b: Option<&[f64]>) -> bool {
    match (a, b) {
        (None, None) => true,
        (Some(a), Some(b)) => {
            a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits())
        }
        _ => false,
    }
}

impl Equivalent<MetricSeriesKey> for MetricSeriesRef<'_> {
    fn equivalent(&self, k: &MetricSeriesKey) -> bool {
        !k.overflow
            && k.kind == self.kind
            && *k.name == *self.name
            && *k.unit == *self.unit
            && k.service_name.as_deref() == self.service_name
            && k.attrs.len() == self.attrs.len()
            && k.attrs
                .iter()
                .zip(self.attrs)
                .all(|((a, b), (c, d))| **a == **c && **b == **d)
            && same_bounds(k.bounds.as_deref(), self.bounds)
    }
}

impl MetricSeriesRef<'_> {
    fn to_owned_key(self) -> MetricSeriesKey {
        MetricSeriesKey {
            name: Arc::from(self.name),
            kind: self.kind,
            unit: Arc::from(self.unit),
            service_name: self.service_name.map(Arc::from),
            attrs: self
                .attrs
                .iter()
                .map(|(k, v)| (Arc::from(*k), Arc::from(*v)))
                .collect(),
            bounds: self.bounds.map(Arc::from),
            overflow: false,
        }
    }
}

use crate::common::{Lookup, SeriesId, SeriesTable};

/// Small integer id of a metric series (the window-state key).
pub type MetricSeriesId = SeriesId;

/// Result of a lookup.
pub type MetricLookup = Lookup;

/// All active metric series of one operator. Ids `0..6` are the overflow series, by kind.
pub type MetricSeriesRegistry = SeriesTable<MetricSeriesKey>;

impl SeriesTable<MetricSeriesKey> {
    /// `limit` active series at most (the overflow series not counted).
    pub fn new(limit: usize) -> Self {
        SeriesTable::with_overflow(
            MetricKind::ALL
                .iter()
                .map(|k| MetricSeriesKey::overflow(*k)),
            limit,
        )
    }

    /// Finds or creates the series for `r`; the overflow series of its kind past the limit.
    pub fn lookup(&mut self, r: MetricSeriesRef<'_>) -> MetricLookup {
        self.find_or_insert(&r, r.kind as MetricSeriesId, |r| r.to_owned_key())
    }

    /// Approximate heap bytes of the registry.
    pub fn heap_bytes(&self) -> usize {
        self.heap_bytes_with(MetricSeriesKey::heap_bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r<'a>(name: &'a str, attrs: &'a [(&'a str, &'a str)]) -> MetricSeriesRef<'a> {
        MetricSeriesRef {
            name,
            kind: MetricKind::Counter,
            unit: "1",
            service_name: Some("svc"),
            attrs,
            bounds: None,
        }
    }

    #[test]
    fn lookups_intern_and_the_limit_overflows_per_kind() {
        let mut reg = MetricSeriesRegistry::new(2);
        let a = reg.lookup(r("a", &[("k", "1")]));
        assert!(matches!(a, MetricLookup::New(_)));
        assert_eq!(
            reg.lookup(r("a", &[("k", "1")])),
            MetricLookup::Known(a.id())
        );
        assert!(matches!(
            reg.lookup(r("a", &[("k", "2")])),
            MetricLookup::New(_)
        ));
        let o = reg.lookup(r("b", &[]));
        assert_eq!(o, MetricLookup::Overflow(MetricKind::Counter as u32));
        let k = reg.key(o.id()).unwrap();
        assert!(k.overflow && k.kind == MetricKind::Counter);
    }

    #[test]
    fn expiry_frees_slots_but_never_the_overflow_series() {
        let mut reg = MetricSeriesRegistry::new(1);
        let a = reg.lookup(r("a", &[])).id();
        reg.touch(a, 100, 50);
        let gone = reg.expire(101, 1000);
        assert_eq!(gone.len(), 1);
        assert!(reg.key(0).is_some());
        assert!(matches!(reg.lookup(r("b", &[])), MetricLookup::New(_)));
    }
}
