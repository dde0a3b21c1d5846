//! Pieces the windowed operators (RED, metrics, service graph) share: the series table with its
//! cardinality limit, overflow series and expiry, and the primary window spec with its rollups.

pub mod series;
pub mod specs;

pub use series::{Activity, Lookup, SeriesId, SeriesTable};
pub use specs::{
    due, spec_label, SpecInfo, WindowSpec, WindowSpecs, PROVISIONAL_EVERY_NS,
    SERIES_EXPIRY_EVERY_NS,
};
