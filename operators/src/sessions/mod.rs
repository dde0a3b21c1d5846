//! Session windows over spans (issue 7, item 2), with Flink's semantics in event time.
//!
//! Per session spec (`windows.extra: [{gap, key}]`) and per key value (a trace id, a
//! `service.name`, or an attribute), every span makes a window `[t, t + gap]` around its event
//! time `t` (its end); windows that overlap or touch merge, so spans whose event times lie at
//! most `gap` apart form one session `[session_start, session_end)` with `session_start` = the
//! earliest event time and `session_end` = the latest event time + `gap`.
//!
//! Lifecycle, as for tumbling windows (docs/design.md, "Time semantics"): a session is final once
//! the watermark reaches its end and is purged at `end + allowed_lateness`; data for a purged
//! session is dropped and counted (`redwatch_late_dropped_total{signal="sessions"}`). Late data
//! in between updates a final session (it is re-emitted on the next watermark advance) and may
//! bridge two sessions: the merged session keeps the id of an open one among them (else of the
//! earliest) and is re-emitted; every absorbed session that had been emitted is retracted
//! (`merged_into` = the survivor). A
//! final session that late data extends past the watermark is open again: its final row is
//! retracted (`merged_into = None`) and it is emitted anew when the watermark passes its new end.
//! A consumer that keys rows by `session_id`, upserts final rows and deletes retracted ids sees
//! exactly the current sessions (the `sessions` table does this).
//!
//! Bounds: a session never grows past `max_duration` (a longer activity is split into
//! consecutive sessions, counted), a spec holds at most `max_sessions` sessions (spans that would
//! open more are dropped and counted), and a session lists at most [`MAX_SERVICES`] services.
//! The operator hands results to [`SessionSink`]s and never formats them itself.

mod key;
mod operator;
mod state;

#[cfg(test)]
mod tests;

pub use operator::SessionOperator;

use redwatch_engine::model::UnixNanos;
use std::sync::Arc;

/// Distinct services listed per session at most (then `services_truncated` is set).
pub const MAX_SERVICES: usize = 16;

/// One session as emitted (final) or published (provisional).
#[derive(Debug, Clone, PartialEq)]
pub struct SessionRow {
    /// Unique within the running engine; a retraction names it.
    pub session_id: u64,
    /// The spec's key name: `trace_id`, `service.name` or the attribute key.
    pub key_name: Arc<str>,
    /// The spec's gap as written in config (`30s`).
    pub gap: Arc<str>,
    pub gap_ns: u64,
    /// The key's value (a trace id in lowercase hex).
    pub key_value: Arc<str>,
    /// Earliest event time (span end) of the session.
    pub start: UnixNanos,
    /// Latest event time + gap.
    pub end: UnixNanos,
    /// Weighted span count (sampling weights, as RED counts).
    pub spans: f64,
    /// Weighted count of spans with status ERROR.
    pub errors: f64,
    /// Latest span end minus earliest span start, in milliseconds.
    pub duration_ms: f64,
    /// Distinct `service.name`s, first seen first, at most [`MAX_SERVICES`].
    pub services: Arc<[Arc<str>]>,
    pub services_truncated: bool,
    /// The root span's name (no parent), else the name of the earliest-starting span.
    pub root_span_name: Option<Arc<str>>,
    /// False for a provisional row of a session still open.
    pub is_final: bool,
}

/// A final row that no longer holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionRetraction {
    pub session_id: u64,
    /// The session that absorbed it (late data bridged them); `None` = the session itself is
    /// open again (late data moved its end past the watermark) and will be emitted anew.
    pub merged_into: Option<u64>,
}

/// Where session results go. Called on the operator task: implementations must be quick and
/// must not block.
pub trait SessionSink: Send + Sync {
    /// Final rows: first emissions and re-emissions after late data (same `session_id`).
    fn on_final(&self, rows: &[SessionRow]);
    /// Final rows withdrawn (applied before the `on_final` of the same advance).
    fn on_retract(&self, _retractions: &[SessionRetraction]) {}
    /// The current provisional rows of one spec's open sessions (replacing earlier ones).
    fn on_provisional(&self, _key_name: &str, _gap_ns: u64, _rows: &[SessionRow]) {}
    /// Sessions purged from state (`end + allowed_lateness` passed): their rows never change
    /// again.
    fn on_purged(&self, _session_ids: &[u64]) {}
}
