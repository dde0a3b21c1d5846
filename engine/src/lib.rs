//! redwatch engine: the data model, event time and watermarks, window state, the pipeline
//! runtime, configuration and self-metrics. Connectors and operators build on it; it depends on
//! neither.
//!
//! No `unsafe` code, except in [`prefetch`]: the one CPU hint the hot loops use.

#![deny(unsafe_code)]

pub mod config;
pub mod fixtures;
pub mod memory;
pub mod metric_model;
pub mod model;
pub mod pipeline;
#[allow(unsafe_code)]
pub mod prefetch;
pub mod security;
pub mod telemetry;
pub mod time;
pub mod window;

pub use model::{SourceId, SpanBatch, SpanKind, SpanRecord, StatusCode, StrRef, UnixNanos};
