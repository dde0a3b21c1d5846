//! Pieces the windowed operators (RED, metrics, service graph) share: the series table with its
//! cardinality limit, overflow series and expiry, and the primary window spec with its rollups.

pub mod series;
pub mod specs;

pub use series::{Activity, Lookup, SeriesId, SeriesTable};
pub use specs::{
    due, spec_label, SpecInfo, WindowSpec, WindowSpecs, PROVISIONAL_EVERY_NS,
    SERIES_EXPIRY_EVERY_NS,
};

/// A per-batch scratch buffer keeps its room between batches up to this many elements.
const MAX_KEPT_SCRATCH: usize = 64 * 1024;

/// A per-batch scratch buffer handed back after use: emptied, and its room kept for the next
/// batch (no allocation per batch) unless a huge batch grew it past [`MAX_KEPT_SCRATCH`].
pub fn recycle<T>(mut scratch: Vec<T>) -> Vec<T> {
    scratch.clear();
    if scratch.capacity() > MAX_KEPT_SCRATCH {
        scratch = Vec::new();
    }
    scratch
}
