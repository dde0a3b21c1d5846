//! RED series identities: interning `(service, span name, kind, dims)` to a small id, with the
//! cardinality limit and expiry.
//!
//! Lookups borrow the strings from the batch (no allocation for a known series); a new series
//! allocates its strings once. Past `limit` active series, new ones get the overflow id.

use hashbrown::Equivalent;
use redwatch_engine::model::SpanKind;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

/// The identity of a RED series (status is not part of it: it is a breakdown inside).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct SeriesKey {
    pub service_name: Arc<str>,
    pub span_name: Arc<str>,
    pub kind: SpanKind,
    /// Values of the configured dimensions, in config order ("" = absent).
    pub dims: Box<[Arc<str>]>,
    /// The series that collects everything past the cardinality limit.
    pub overflow: bool,
}

impl SeriesKey {
    fn hash_parts<H: Hasher>(service: &str, name: &str, kind: SpanKind, dims: &[&str], h: &mut H) {
        service.hash(h);
        name.hash(h);
        (kind as u8).hash(h);
        dims.len().hash(h);
        for d in dims {
            d.hash(h);
        }
    }

    /// The overflow series for `n_dims` dimensions.
    pub fn overflow(n_dims: usize) -> SeriesKey {
        let empty: Arc<str> = Arc::from("");
        SeriesKey {
            service_name: empty.clone(),
            span_name: empty.clone(),
            kind: SpanKind::Unspecified,
            dims: vec![empty; n_dims].into_boxed_slice(),
            overflow: true,
        }
    }

    /// Heap bytes of the key's strings.
    pub fn heap_bytes(&self) -> usize {
        self.service_name.len()
            + self.span_name.len()
            + self
                .dims
                .iter()
                .map(|d| std::mem::size_of::<Arc<str>>() + 16 + d.len())
                .sum::<usize>()
            + 32
    }
}

impl Hash for SeriesKey {
    fn hash<H: Hasher>(&self, h: &mut H) {
        let mut dims: [&str; redwatch_engine::config::MAX_DIMENSIONS] =
            [""; redwatch_engine::config::MAX_DIMENSIONS];
        let n = self.dims.len().min(dims.len());
        for (slot, d) in dims.iter_mut().zip(self.dims.iter()) {
            *slot = d;
        }
        Self::hash_parts(
            &self.service_name,
            &self.span_name,
            self.kind,
            &dims[..n],
            h,
        );
        self.overflow.hash(h);
    }
}

/// A series key borrowed from a batch, for allocation-free lookups.
#[derive(Debug, Clone, Copy)]
pub struct SeriesRef<'a> {
    pub service_name: &'a str,
    pub span_name: &'a str,
    pub kind: SpanKind,
    pub dims: &'a [&'a str],
}

impl Hash for SeriesRef<'_> {
    fn hash<H: Hasher>(&self, h: &mut H) {
        SeriesKey::hash_parts(self.service_name, self.span_name, self.kind, self.dims, h);
        false.hash(h);
    }
}

impl Equivalent<SeriesKey> for SeriesRef<'_> {
    fn equivalent(&self, k: &SeriesKey) -> bool {
        !k.overflow
            && k.kind == self.kind
            && *k.span_name == *self.span_name
            && *k.service_name == *self.service_name
            && k.dims.len() == self.dims.len()
            && k.dims.iter().zip(self.dims).all(|(a, b)| **a == **b)
    }
}

impl SeriesRef<'_> {
    fn to_owned_key(self) -> SeriesKey {
        SeriesKey {
            service_name: Arc::from(self.service_name),
            span_name: Arc::from(self.span_name),
            kind: self.kind,
            dims: self.dims.iter().map(|d| Arc::from(*d)).collect(),
            overflow: false,
        }
    }
}

use crate::common::SeriesTable;
pub use crate::common::{Lookup, SeriesId};

/// All active series of one RED operator (id 0 is the overflow series).
pub type SeriesRegistry = SeriesTable<SeriesKey>;

impl SeriesTable<SeriesKey> {
    /// `limit` active series at most (the overflow series not counted).
    pub fn new(limit: usize, n_dims: usize) -> Self {
        SeriesTable::with_overflow([SeriesKey::overflow(n_dims)], limit)
    }

    /// Finds or creates the series for `r`; the overflow series once the limit is reached.
    pub fn lookup(&mut self, r: SeriesRef<'_>) -> Lookup {
        self.find_or_insert(&r, 0, |r| r.to_owned_key())
    }

    /// Approximate heap bytes of the registry.
    pub fn heap_bytes(&self) -> usize {
        self.heap_bytes_with(SeriesKey::heap_bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r<'a>(svc: &'a str, name: &'a str, dims: &'a [&'a str]) -> SeriesRef<'a> {
        SeriesRef {
            service_name: svc,
            span_name: name,
            kind: SpanKind::Server,
            dims,
        }
    }

    #[test]
    fn known_series_are_found_without_allocation_and_limit_overflows() {
        let mut reg = SeriesRegistry::new(2, 1);
        let a = reg.lookup(r("s", "a", &["x"]));
        assert!(matches!(a, Lookup::New(_)));
        assert_eq!(reg.lookup(r("s", "a", &["x"])), Lookup::Known(a.id()));
        let b = reg.lookup(r("s", "a", &["y"]));
        assert!(matches!(b, Lookup::New(_)));
        assert_ne!(a.id(), b.id());
        assert_eq!(reg.lookup(r("s", "c", &["x"])), Lookup::Overflow(0));
        assert!(reg.key(0).unwrap().overflow);
        assert_eq!(reg.len(), 2);
    }

    #[test]
    fn expiry_frees_slots_for_new_series() {
        let mut reg = SeriesRegistry::new(1, 0);
        let a = reg.lookup(r("s", "a", &[])).id();
        reg.touch(a, 100, 50);
        assert!(reg.expire(100, 1000).is_empty());
        let gone = reg.expire(101, 1000);
        assert_eq!(&*gone[0].span_name, "a");
        assert!(matches!(reg.lookup(r("s", "b", &[])), Lookup::New(_)));
    }

    /// Issue 3 budgets ≤ 2 KiB of state per active RED series; the registry's part is its key
    /// (kept once), one slot and a 4-byte id in the hash index (~151 B here; with a second copy
    /// of each key in a `HashMap` index and doubling slots it was ~233 B).
    #[test]
    fn registry_bytes_per_series_at_10k_series_are_bounded() {
        let n = 10_000;
        let mut reg = SeriesRegistry::new(n, 0);
        for i in 0..n {
            let (svc, name) = (format!("svc-{}", i / 100), format!("op-{i}"));
            assert!(matches!(reg.lookup(r(&svc, &name, &[])), Lookup::New(_)));
        }
        assert_eq!(reg.len(), n);
        let per_series = reg.heap_bytes() as f64 / n as f64;
        println!("registry: {per_series:.1} B per series at {n} series");
        assert!(per_series <= 170.0, "{per_series:.1} B per series");
    }

    #[test]
    fn a_series_with_open_windows_does_not_expire() {
        let mut reg = SeriesRegistry::new(1, 0);
        let a = reg.lookup(r("s", "a", &[])).id();
        reg.touch(a, 100, 5000);
        assert!(reg.expire(1000, 1000).is_empty());
    }
}
