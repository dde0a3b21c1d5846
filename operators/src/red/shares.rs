//! Shares: RED state of one series kept apart per source Kafka partition
//! (docs/kafka-exactness.md, "Per-partition shares").
//!
//! The window key of RED state is a [`ShareKey`] — a series in one share. Spans received over
//! OTLP have no share ([`NO_SHARE`]) and keep the dense-id fast path of the window store; spans
//! of a Kafka partition are keyed by (series, partition), so whichever instance owns the
//! partition computes, and writes to the sink, the same records for it. Sinks that do not ask for
//! shares ([`RedSink::wants_shares`](super::RedSink::wants_shares)) see one merged row per
//! series: this module merges the shares of an emission, looking up the shares a late
//! re-emission did not touch. It must not decide what is emitted; the window store does.

use super::{RedAgg, RedRow, SeriesId};
use redwatch_engine::model::UnixNanos;
use redwatch_engine::window::{WindowAggregate, WindowKey, WindowStore};
use std::collections::HashMap;

/// The share of spans received over OTLP (no source partition).
pub const NO_SHARE: u32 = u32::MAX;

/// The window-state key of RED: a series in one share.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ShareKey {
    pub series: SeriesId,
    /// The source partition, or [`NO_SHARE`].
    pub share: u32,
}

impl ShareKey {
    pub fn new(series: SeriesId, share: Option<u32>) -> Self {
        ShareKey {
            series,
            share: share.unwrap_or(NO_SHARE),
        }
    }

    /// The share as a row carries it (`None` for OTLP-sourced spans).
    pub fn share(&self) -> Option<u32> {
        (self.share != NO_SHARE).then_some(self.share)
    }
}

impl WindowKey for ShareKey {
    /// Unshared keys index the dense table directly (the OTLP hot path); shared keys are hashed.
    #[inline]
    fn dense_id(&self) -> Option<u32> {
        (self.share == NO_SHARE).then_some(self.series)
    }
}

/// A final row of one share, as the window store emitted it.
#[derive(Debug, Clone)]
pub struct ShareRow {
    pub row: RedRow,
    pub series: SeriesId,
    /// Emitted during its window's first emission (then every share of the window is emitted
    /// with it, and no lookup is needed to merge them).
    pub window_first: bool,
}

struct Group {
    row: RedRow,
    series: SeriesId,
    shares: Vec<u32>,
    window_first: bool,
}

/// One merged row per (window, series) of `rows` (final rows of one window spec, in emission
/// order): totals and deltas of the emitted shares added, plus — for a late re-emission — the
/// totals of the series' other shares (`known` lists the shares that may hold some) found in
/// `store`. A merged row is `first` only when no share of it had been emitted before.
pub fn merge_final(
    rows: Vec<ShareRow>,
    store: &WindowStore<ShareKey, RedAgg>,
    known: &[u32],
) -> Vec<RedRow> {
    let mut index: HashMap<(UnixNanos, SeriesId), usize> = HashMap::with_capacity(rows.len());
    let mut groups: Vec<Group> = Vec::with_capacity(rows.len());
    for r in rows {
        let share = r.row.share.unwrap_or(NO_SHARE);
        match index.get(&(r.row.start, r.series)) {
            Some(&i) => {
                let g = &mut groups[i];
                g.row.total.merge(&r.row.total);
                if let (Some(d), Some(add)) = (g.row.delta.as_mut(), r.row.delta.as_ref()) {
                    d.merge(add);
                }
                g.row.first &= r.row.first;
                g.window_first &= r.window_first;
                g.shares.push(share);
            }
            None => {
                index.insert((r.row.start, r.series), groups.len());
                let mut row = r.row;
                row.share = None;
                groups.push(Group {
                    row,
                    series: r.series,
                    shares: vec![share],
                    window_first: r.window_first,
                });
            }
        }
    }
    let mut out = Vec::with_capacity(groups.len());
    for mut g in groups {
        if !g.window_first {
            let series = g.series;
            for &s in known.iter().chain(std::iter::once(&NO_SHARE)) {
                if g.shares.contains(&s) {
                    continue;
                }
                let key = ShareKey { series, share: s };
                let row = &mut g.row;
                if store.with_total(row.start, &key, |a| row.total.merge(a)) {
                    // That share was emitted before: the series' row is not new in the window.
                    row.first = false;
                }
            }
        }
        out.push(g.row);
    }
    out
}

/// One row per (window, series) of provisional rows: the shares' totals added.
pub fn merge_provisional(rows: Vec<(SeriesId, RedRow)>) -> Vec<RedRow> {
    let mut index: HashMap<(UnixNanos, SeriesId), usize> = HashMap::with_capacity(rows.len());
    let mut out: Vec<RedRow> = Vec::with_capacity(rows.len());
    for (series, mut row) in rows {
        match index.get(&(row.start, series)) {
            Some(&i) => out[i].total.merge(&row.total),
            None => {
                index.insert((row.start, series), out.len());
                row.share = None;
                out.push(row);
            }
        }
    }
    out
}
