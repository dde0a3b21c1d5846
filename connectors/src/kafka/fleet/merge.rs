//! The merge of one shuffle partition (docs/fleet.md, "Merge"): the latest share record per
//! (window spec, window, series, share), summed into the window of the whole series, closed once
//! every share has moved past it. Pure: no I/O, no clock (the caller passes `now`).
//!
//! A share record restates its share's whole window, so a later record of the same key replaces
//! the earlier one and a replayed, identical record changes nothing. Shares are merged in the
//! order of their labels, so the same records give the same floating-point sums whatever order
//! they arrived in.
//!
//! Time comes from the records: a share's *progress* is the largest end of its primary windows
//! seen here, and an ingest instance writes a share's window only once its watermark passed the
//! window's end, so a share whose progress is past a window's end has written its first record
//! of it. A window **closes** (its merged row is emitted, first = true, and detection sees it)
//! once every active share's progress is past its end; later share records re-emit it. A share
//! silent for `idle` stops holding closing back (as an idle source holds no watermark). A window
//! is **evicted** once every share seen in the last `forget` has progressed `lateness` past its
//! end, and one more idle timeout has passed (records of the same emission step still on their
//! way): ingest instances no longer restate it (they purged it); a record for an evicted window
//! is a replay of what was merged and is skipped.

use redwatch_engine::window::WindowAggregate;
use redwatch_operators::red::{RedAgg, RedRow, SeriesKey};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How a merge closes and forgets windows.
#[derive(Debug, Clone, Copy)]
pub struct MergeSettings {
    /// `windows.allowed_lateness`: how long after its end an ingest instance may restate a window.
    pub lateness_ns: u64,
    /// A share without records this long no longer holds closing back (`windows.idle_timeout`).
    pub idle: Duration,
    /// A share without records this long no longer holds eviction back either.
    pub forget: Duration,
    /// Bytes of window state past which the oldest windows are closed and evicted early.
    pub max_bytes: usize,
}

/// What [`PartitionMerge::offer`] did with a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Offered {
    /// A new or changed share of a window.
    Changed,
    /// The same share value again (a replay).
    Unchanged,
    /// The window was already evicted (merged, emitted and no longer restated): skipped.
    Evicted,
}

struct Window {
    label: Arc<str>,
    primary: bool,
    start: u64,
    shares: BTreeMap<Arc<str>, RedAgg>,
    /// Emitted at least once.
    closed: bool,
    /// Changed since it was last emitted.
    dirty: bool,
    bytes: usize,
}

struct Share {
    /// Largest end of this share's primary windows seen here.
    progress: u64,
    seen: Instant,
}

/// Windows by (end, size, series): closing and eviction go in end order.
type Key = (u64, u64, Arc<SeriesKey>);

/// The merge state of one shuffle partition.
pub struct PartitionMerge {
    settings: MergeSettings,
    windows: BTreeMap<Key, Window>,
    shares: HashMap<Arc<str>, Share>,
    /// Windows ending at or before this (plus lateness) were evicted.
    evicted_through: u64,
    /// Eviction times not applied yet, with when they were reached (see `advance`).
    evict_marks: VecDeque<(u64, Instant)>,
    bytes: usize,
    /// Windows evicted before their time to stay under `max_bytes`.
    pub evicted_early: u64,
}

const SHARE_OVERHEAD: usize = std::mem::size_of::<RedAgg>() + 64;

impl PartitionMerge {
    pub fn new(settings: MergeSettings) -> Self {
        PartitionMerge {
            settings,
            windows: BTreeMap::new(),
            shares: HashMap::new(),
            evicted_through: 0,
            evict_marks: VecDeque::new(),
            bytes: 0,
            evicted_early: 0,
        }
    }

    /// Names a share this partition should hear from (every partition of the input topic):
    /// until its first record it holds closing and eviction back, for at most `forget`.
    pub fn expect(&mut self, share: Arc<str>, now: Instant) {
        self.shares.entry(share).or_insert(Share {
            progress: 0,
            seen: now,
        });
    }

    /// Takes one share record (a final row of share `share`).
    pub fn offer(&mut self, share: Arc<str>, row: RedRow, now: Instant) -> Offered {
        let s = self.shares.entry(share.clone()).or_insert(Share {
            progress: 0,
            seen: now,
        });
        s.seen = now;
        if row.primary {
            s.progress = s.progress.max(row.end);
        }
        if row.end.saturating_add(self.settings.lateness_ns) <= self.evicted_through {
            return Offered::Evicted;
        }
        let w = self
            .windows
            .entry((row.end, row.window_size_ns, row.series.clone()))
            .or_insert_with(|| Window {
                label: row.window_size.clone(),
                primary: row.primary,
                start: row.start,
                shares: BTreeMap::new(),
                closed: false,
                dirty: false,
                bytes: 0,
            });
        if w.shares.get(&share) == Some(&row.total) {
            return Offered::Unchanged;
        }
        let added = row.total.heap_bytes() + SHARE_OVERHEAD;
        let old = w
            .shares
            .insert(share, row.total)
            .map_or(0, |o| o.heap_bytes() + SHARE_OVERHEAD);
        w.bytes = w.bytes + added - old;
        self.bytes = self.bytes + added - old;
        w.dirty = true;
        Offered::Changed
    }

    /// Bytes of window state held.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Windows held.
    pub fn windows(&self) -> usize {
        self.windows.len()
    }

    /// (closing time, eviction time): windows ending before the first close, windows ending
    /// `lateness` before the second are evicted. `None` before any primary record.
    fn times(&self, now: Instant) -> Option<(u64, u64)> {
        let max = self.shares.values().map(|s| s.progress).max()?;
        if max == 0 {
            return None;
        }
        let since = |s: &&Share| now.saturating_duration_since(s.seen);
        // A share not heard of yet (an ingest instance still joining) holds closing as long as
        // it holds eviction: closing without it would hand detection a part of the series.
        let active = self.shares.values().filter(|s| {
            since(s) < self.settings.idle || (s.progress == 0 && since(s) < self.settings.forget)
        });
        // Every share idle: the stream is quiet, close what there is (a rollup window too,
        // which ends after the newest primary window).
        let close = active.map(|s| s.progress).min().unwrap_or(u64::MAX);
        let remembered = self
            .shares
            .values()
            .filter(|s| since(s) < self.settings.forget);
        let evict = remembered
            .map(|s| s.progress)
            .min()
            .unwrap_or(max.saturating_add(1));
        Some((close, evict))
    }

    /// Closes the windows every active share moved past, evicts what no share restates any
    /// more, and returns the rows to emit: windows closing now (`first`) and closed windows whose
    /// shares changed since their last emission.
    pub fn advance(&mut self, now: Instant) -> Vec<RedRow> {
        let mut out = Vec::new();
        let Some((close, evict)) = self.times(now) else {
            return out;
        };
        for ((end, size, series), w) in self.windows.iter_mut() {
            if w.dirty && (w.closed || *end < close) {
                out.push(merged(*end, *size, series, w));
            }
        }
        let lateness = self.settings.lateness_ns;
        // Eviction trails the shares' progress by an idle timeout of wall clock: an ingest
        // instance's emission step writes its primary windows first and its rollups (and the
        // last restatements of windows it purges) after them, so a share's progress runs ahead
        // of records still on their way.
        if self.evict_marks.back().is_none_or(|(e, _)| *e < evict) {
            self.evict_marks.push_back((evict, now));
        }
        while let Some(&(e, at)) = self.evict_marks.front() {
            if now.saturating_duration_since(at) < self.settings.idle {
                break;
            }
            self.evicted_through = self.evicted_through.max(e);
            self.evict_marks.pop_front();
        }
        while let Some(e) = self.windows.first_entry() {
            let end = e.key().0;
            if end.saturating_add(lateness) > self.evicted_through || e.get().dirty {
                break;
            }
            self.bytes -= e.remove().bytes;
        }
        // Over the byte cap: emit and evict the oldest windows early (counted).
        while self.bytes > self.settings.max_bytes {
            let Some(mut e) = self.windows.first_entry() else {
                break;
            };
            let (end, size, series) = e.key().clone();
            if e.get().dirty {
                out.push(merged(end, size, &series, e.get_mut()));
            }
            self.bytes -= e.remove().bytes;
            self.evicted_through = self.evicted_through.max(end.saturating_add(lateness));
            self.evicted_early += 1;
        }
        out
    }
}

/// The window's shares summed (in label order), as a final merged row; marks it emitted.
fn merged(end: u64, size: u64, series: &Arc<SeriesKey>, w: &mut Window) -> RedRow {
    let mut total = RedAgg::default();
    for a in w.shares.values() {
        total.merge(a);
    }
    let first = !w.closed;
    w.closed = true;
    w.dirty = false;
    RedRow {
        window_size: w.label.clone(),
        window_size_ns: size,
        primary: w.primary,
        start: w.start,
        end,
        series: series.clone(),
        share: None,
        is_final: true,
        first,
        total,
        delta: None,
    }
}

#[cfg(test)]
mod tests {
    use super::super::wire::tests::row;
    use super::*;

    const S: u64 = 10_000_000_000;

    fn settings() -> MergeSettings {
        MergeSettings {
            lateness_ns: 3 * S,
            idle: Duration::from_secs(30),
            forget: Duration::from_secs(300),
            max_bytes: 1 << 30,
        }
    }

    fn share_row(service: &str, w: u64, durations: &[f64]) -> RedRow {
        row(service, w * S, durations)
    }

    #[test]
    fn shares_add_replace_and_close_once_every_share_moved_past() {
        let t = Instant::now();
        let mut m = PartitionMerge::new(settings());
        let a: Arc<str> = "in:0".into();
        let b: Arc<str> = "in:1".into();
        assert_eq!(
            m.offer(a.clone(), share_row("x", 1, &[1.0, 2.0]), t),
            Offered::Changed
        );
        assert_eq!(
            m.offer(b.clone(), share_row("x", 1, &[4.0]), t),
            Offered::Changed
        );
        // Restated by late data: replaces share a's record.
        assert_eq!(
            m.offer(a.clone(), share_row("x", 1, &[1.0, 2.0, 3.0]), t),
            Offered::Changed
        );
        assert_eq!(
            m.offer(a.clone(), share_row("x", 1, &[1.0, 2.0, 3.0]), t),
            Offered::Unchanged
        );
        // a moved on, b did not: window 1 stays open.
        m.offer(a.clone(), share_row("x", 2, &[1.0]), t);
        assert!(m.advance(t).is_empty());
        m.offer(b.clone(), share_row("x", 2, &[1.0]), t);
        let rows = m.advance(t);
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].start, S);
        assert!(rows[0].first);
        assert_eq!(rows[0].total.total_calls(), 4.0);
        assert_eq!(rows[0].total.max_ms, 4.0);
        assert!(m.advance(t).is_empty(), "emitted once");
        // A late restatement of a closed window re-emits it, not first.
        m.offer(b.clone(), share_row("x", 1, &[4.0, 5.0]), t);
        let rows = m.advance(t);
        assert_eq!(rows.len(), 1);
        assert!(!rows[0].first);
        assert_eq!(rows[0].total.total_calls(), 5.0);
    }

    #[test]
    fn idle_shares_stop_holding_closing_and_evicted_windows_skip_replays() {
        let t = Instant::now();
        let mut m = PartitionMerge::new(settings());
        let (a, b): (Arc<str>, Arc<str>) = ("in:0".into(), "in:1".into());
        m.offer(a.clone(), share_row("x", 1, &[1.0]), t);
        m.offer(b.clone(), share_row("x", 1, &[1.0]), t);
        for w in 2..=6 {
            m.offer(a.clone(), share_row("x", w, &[1.0]), t);
        }
        assert!(m.advance(t).is_empty(), "b holds window 1");
        let later = t + Duration::from_secs(31);
        m.offer(a.clone(), share_row("x", 7, &[1.0]), later);
        let rows = m.advance(later);
        assert_eq!(rows.len(), 6, "b idle: windows 1..=6 close");
        // b is remembered: nothing is evicted while it may still restate.
        assert_eq!(m.windows(), 7);
        m.offer(b.clone(), share_row("x", 6, &[1.0]), later);
        assert_eq!(m.advance(later).len(), 1);
        let much_later = t + Duration::from_secs(400);
        m.offer(a.clone(), share_row("x", 8, &[1.0]), much_later);
        m.advance(much_later);
        m.advance(much_later + Duration::from_secs(30));
        assert!(m.windows() < 8, "evicted once b is forgotten");
        assert_eq!(
            m.offer(b.clone(), share_row("x", 1, &[1.0]), much_later),
            Offered::Evicted
        );
    }

    #[test]
    fn an_expected_share_not_heard_of_yet_holds_closing_until_forgotten() {
        let t = Instant::now();
        let mut m = PartitionMerge::new(settings());
        m.expect("in:1".into(), t);
        for w in 1..=4 {
            m.offer("in:0".into(), share_row("x", w, &[1.0]), t);
        }
        let later = t + Duration::from_secs(60);
        m.offer("in:0".into(), share_row("x", 5, &[1.0]), later);
        assert!(m.advance(later).is_empty(), "in:1 is still expected");
        m.offer("in:1".into(), share_row("x", 1, &[2.0]), later);
        assert!(
            m.advance(later).is_empty(),
            "in:1 has not moved past window 1"
        );
        m.offer("in:1".into(), share_row("x", 2, &[2.0]), later);
        let rows = m.advance(later);
        assert_eq!(rows.len(), 1, "window 1 has both shares now");
        assert_eq!(rows[0].total.total_calls(), 2.0);
    }

    #[test]
    fn the_byte_cap_evicts_oldest_windows_first() {
        let t = Instant::now();
        let mut s = settings();
        s.max_bytes = 1;
        let mut m = PartitionMerge::new(s);
        m.offer("a".into(), share_row("x", 1, &[1.0]), t);
        m.offer("a".into(), share_row("x", 2, &[1.0]), t);
        let rows = m.advance(t);
        assert_eq!(rows.len(), 2);
        assert_eq!(m.windows(), 0, "the cap does not wait");
        assert_eq!(m.evicted_early, 2);
        assert_eq!(m.bytes(), 0);
    }
}
