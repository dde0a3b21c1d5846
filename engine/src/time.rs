//! Event time: the per-source clocks, the watermark, and what counts as late or from the future.
//!
//! Owns the rules of docs/design.md, "Time semantics". It knows nothing about operators or windows'
//! contents; the window store asks it only for the current watermark.

use crate::model::{SourceId, UnixNanos};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Wall clock in Unix nanoseconds.
pub fn wall_clock() -> UnixNanos {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

fn ns(d: Duration) -> u64 {
    d.as_nanos().min(u64::MAX as u128) as u64
}

/// The time rules shared by receivers (which reject early) and the pipeline (which decides).
#[derive(Debug)]
pub struct TimePolicy {
    /// Primary window size in ns.
    pub window_ns: u64,
    pub allowed_lateness_ns: u64,
    pub max_out_of_orderness_ns: u64,
    pub idle_timeout_ns: u64,
    pub max_future_skew_ns: u64,
    /// `(size, slide)` of every window spec besides the primary (rollups: slide = size;
    /// hopping specs), for [`last_window_end`](Self::last_window_end).
    coarser: Vec<(u64, u64)>,
    /// The watermark last published by the pipeline; receivers read it to reject late data early.
    watermark: AtomicU64,
}

/// How an event time relates to the current watermark and wall clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeCheck {
    Ok,
    /// Zero timestamp.
    Invalid,
    /// More than `max_future_skew` ahead of the wall clock.
    Future,
    /// Its window has been purged (ended more than `allowed_lateness` before the watermark).
    Late,
}

impl TimePolicy {
    pub fn new(cfg: &crate::config::WindowsConfig) -> Self {
        TimePolicy {
            window_ns: ns(cfg.size).max(1),
            allowed_lateness_ns: ns(cfg.allowed_lateness),
            max_out_of_orderness_ns: ns(cfg.max_out_of_orderness),
            idle_timeout_ns: ns(cfg.idle_timeout),
            max_future_skew_ns: ns(cfg.max_future_skew),
            coarser: cfg
                .rollups
                .iter()
                .map(|d| (ns(*d).max(1), ns(*d).max(1)))
                .chain(
                    cfg.extra
                        .iter()
                        .filter_map(|x| x.hopping())
                        .map(|(size, slide)| (ns(size).max(1), ns(slide).max(1))),
                )
                .collect(),
            watermark: AtomicU64::new(0),
        }
    }

    /// The latest end among the windows of every window spec (primary, rollups, hopping) that
    /// hold event time `ts`: once a watermark purges a window with this end, everything `ts`
    /// fed is purged (docs/kafka-exactness.md, "Commits and purged-through times"). Monotonic
    /// in `ts`.
    pub fn last_window_end(&self, ts: UnixNanos) -> UnixNanos {
        let primary = self.window_start(ts).saturating_add(self.window_ns);
        self.coarser
            .iter()
            .map(|&(size, slide)| (ts - ts % slide).saturating_add(size))
            .fold(primary, UnixNanos::max)
    }

    /// Whether every window of every spec that event time `ts` fed is purged at `wm`.
    pub fn all_purged(&self, ts: UnixNanos, wm: UnixNanos) -> bool {
        self.is_purged(self.last_window_end(ts), wm)
    }

    /// Start of the primary window holding `ts`.
    pub fn window_start(&self, ts: UnixNanos) -> UnixNanos {
        ts - ts % self.window_ns
    }

    /// The watermark the pipeline published last.
    pub fn watermark(&self) -> UnixNanos {
        self.watermark.load(Ordering::Acquire)
    }

    /// Publishes a new watermark (monotonic: a smaller value is ignored).
    pub fn publish_watermark(&self, wm: UnixNanos) {
        self.watermark.fetch_max(wm, Ordering::AcqRel);
    }

    /// Is a window with this end purged at watermark `wm`?
    pub fn is_purged(&self, window_end: UnixNanos, wm: UnixNanos) -> bool {
        window_end.saturating_add(self.allowed_lateness_ns) <= wm
    }

    /// Classifies one event time against the wall clock `now` and the published watermark.
    pub fn check(&self, ts: UnixNanos, now: UnixNanos) -> TimeCheck {
        if ts == 0 {
            return TimeCheck::Invalid;
        }
        if ts > now.saturating_add(self.max_future_skew_ns) {
            return TimeCheck::Future;
        }
        // Late only when every window of every spec holding it is purged: a rollup (or
        // hopping) window still open takes data its primary window no longer can.
        if self.all_purged(ts, self.watermark()) {
            return TimeCheck::Late;
        }
        TimeCheck::Ok
    }
}

#[derive(Debug, Clone)]
struct SourceClock {
    name: String,
    /// `min(max event time seen, wall clock at arrival)`; 0 before the first data.
    position: UnixNanos,
    /// Wall clock of the last data, or of registration before any data.
    last_activity: UnixNanos,
    has_data: bool,
    /// Whether the source holds the watermark back before its first data (a freshly assigned
    /// Kafka partition with a backlog does; an OTLP receiver nobody sends to does not).
    holds_before_data: bool,
    /// Holds data it could not queue yet (a Kafka partition paused by backpressure): active
    /// however long ago it last delivered, so backpressure never turns its data late.
    pending: bool,
}

/// Per-source event-time positions and the resulting watermark.
#[derive(Debug)]
pub struct WatermarkTracker {
    sources: Vec<Option<SourceClock>>,
    out_of_orderness: u64,
    idle_timeout: u64,
    current: UnixNanos,
}

impl WatermarkTracker {
    pub fn new(out_of_orderness_ns: u64, idle_timeout_ns: u64) -> Self {
        WatermarkTracker {
            sources: Vec::new(),
            out_of_orderness: out_of_orderness_ns,
            idle_timeout: idle_timeout_ns,
            current: 0,
        }
    }

    pub fn add_source(
        &mut self,
        id: SourceId,
        name: &str,
        holds_before_data: bool,
        now: UnixNanos,
    ) {
        let i = id.0 as usize;
        if self.sources.len() <= i {
            self.sources.resize(i + 1, None);
        }
        self.sources[i] = Some(SourceClock {
            name: name.to_string(),
            position: 0,
            last_activity: now,
            has_data: false,
            holds_before_data,
            pending: false,
        });
    }

    pub fn remove_source(&mut self, id: SourceId) {
        if let Some(s) = self.sources.get_mut(id.0 as usize) {
            *s = None;
        }
    }

    /// Records data from `id` whose largest event time is `max_event_time`, arriving at `now`.
    pub fn observe(&mut self, id: SourceId, max_event_time: UnixNanos, now: UnixNanos) {
        if let Some(Some(s)) = self.sources.get_mut(id.0 as usize) {
            // A span from the future never drags event time forward.
            s.position = s.position.max(max_event_time.min(now));
            s.last_activity = now;
            s.has_data = true;
        }
    }

    /// Marks which sources hold data they could not queue yet (every other source is not
    /// pending). A pending source never goes idle: its position holds the watermark until its
    /// data is in.
    pub fn set_pending(&mut self, pending: &[SourceId]) {
        for (i, s) in self.sources.iter_mut().enumerate() {
            if let Some(s) = s {
                s.pending = pending.contains(&SourceId(i as u32));
            }
        }
    }

    fn is_active(&self, s: &SourceClock, now: UnixNanos) -> bool {
        let recent = now.saturating_sub(s.last_activity) < self.idle_timeout;
        (s.pending || recent) && (s.has_data || s.holds_before_data)
    }

    /// The watermark at wall time `now` (monotonic across calls).
    pub fn watermark(&mut self, now: UnixNanos) -> UnixNanos {
        let mut min: Option<UnixNanos> = None;
        for s in self.sources.iter().flatten() {
            if self.is_active(s, now) {
                min = Some(min.map_or(s.position, |m: u64| m.min(s.position)));
            }
        }
        // Every source idle: advance with the wall clock so a quiet stream's windows still close.
        let base = min.unwrap_or(now);
        let wm = base.saturating_sub(self.out_of_orderness);
        self.current = self.current.max(wm);
        self.current
    }

    /// Names of the sources currently holding the watermark, with their positions (for status).
    pub fn active_sources(&self, now: UnixNanos) -> Vec<(String, UnixNanos)> {
        self.sources
            .iter()
            .flatten()
            .filter(|s| self.is_active(s, now))
            .map(|s| (s.name.clone(), s.position))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;

    #[test]
    fn watermark_is_min_over_active_sources_minus_out_of_orderness() {
        let mut t = WatermarkTracker::new(5 * S, 30 * S);
        let now = 1000 * S;
        t.add_source(SourceId(0), "a", false, now);
        t.add_source(SourceId(1), "b", false, now);
        t.observe(SourceId(0), 990 * S, now);
        t.observe(SourceId(1), 980 * S, now);
        assert_eq!(t.watermark(now), 975 * S);
    }

    #[test]
    fn future_event_times_are_capped_at_wall_clock() {
        let mut t = WatermarkTracker::new(5 * S, 30 * S);
        let now = 1000 * S;
        t.add_source(SourceId(0), "a", false, now);
        t.observe(SourceId(0), 5000 * S, now);
        assert_eq!(t.watermark(now), 995 * S);
    }

    #[test]
    fn idle_source_stops_holding_and_all_idle_follows_wall_clock() {
        let mut t = WatermarkTracker::new(5 * S, 30 * S);
        let now = 1000 * S;
        t.add_source(SourceId(0), "a", false, now);
        t.add_source(SourceId(1), "b", false, now);
        t.observe(SourceId(0), 900 * S, now);
        t.observe(SourceId(1), 990 * S, now);
        assert_eq!(t.watermark(now), 895 * S);
        t.observe(SourceId(1), 1010 * S, now + 20 * S);
        // a is idle 31 s later; b alone holds.
        assert_eq!(t.watermark(now + 31 * S), 1005 * S);
        // both idle: wall clock minus out-of-orderness.
        assert_eq!(t.watermark(now + 100 * S), 1095 * S);
    }

    #[test]
    fn watermark_never_goes_back() {
        let mut t = WatermarkTracker::new(0, 30 * S);
        let now = 1000 * S;
        t.add_source(SourceId(0), "a", false, now);
        t.observe(SourceId(0), 990 * S, now);
        assert_eq!(t.watermark(now), 990 * S);
        t.add_source(SourceId(1), "late", false, now);
        t.observe(SourceId(1), 100 * S, now);
        assert_eq!(t.watermark(now), 990 * S);
    }

    #[test]
    fn a_source_that_holds_before_data_blocks_until_idle() {
        let mut t = WatermarkTracker::new(0, 30 * S);
        let now = 1000 * S;
        t.add_source(SourceId(0), "otlp", false, now);
        t.add_source(SourceId(1), "kafka-0", true, now);
        t.observe(SourceId(0), 999 * S, now);
        assert_eq!(t.watermark(now), 0);
        t.observe(SourceId(0), 1030 * S, now + 31 * S);
        assert_eq!(t.watermark(now + 31 * S), 1030 * S);
    }

    #[test]
    fn a_pending_source_holds_the_watermark_however_long_it_waits() {
        let mut t = WatermarkTracker::new(0, 30 * S);
        let now = 1000 * S;
        t.add_source(SourceId(0), "kafka-0", true, now);
        t.observe(SourceId(0), 990 * S, now);
        t.set_pending(&[SourceId(0)]);
        assert_eq!(t.watermark(now + 600 * S), 990 * S);
        // Drained: idle again after idle_timeout, then the wall clock moves time on.
        t.set_pending(&[]);
        assert_eq!(t.watermark(now + 600 * S), 1600 * S);
    }

    #[test]
    fn the_last_window_end_covers_rollups_and_hopping_specs() {
        let cfg = crate::config::WindowsConfig::default();
        let p = TimePolicy::new(&cfg);
        // Default: 10 s primary and the 1m rollup.
        assert_eq!(p.last_window_end(61 * S), 120 * S);
        assert_eq!(p.last_window_end(119 * S), 120 * S);
        assert!(!p.all_purged(61 * S, 71 * S + 30 * S));
        assert!(p.all_purged(61 * S, 150 * S));
        let hopping: crate::config::WindowsConfig = serde_yaml_ng::from_str(
            "size: 10s\nrollups: []\nextra:\n  - { size: 1m, slide: 20s }\n",
        )
        .unwrap();
        let p = TimePolicy::new(&hopping);
        // 61 s lies in the hopping windows starting at 20, 40 and 60 s: the last ends at 120 s.
        assert_eq!(p.last_window_end(61 * S), 120 * S);
        let primary_only: crate::config::WindowsConfig =
            serde_yaml_ng::from_str("size: 10s\nrollups: []\n").unwrap();
        assert_eq!(
            TimePolicy::new(&primary_only).last_window_end(61 * S),
            70 * S
        );
    }

    #[test]
    fn policy_classifies_times() {
        let cfg = crate::config::WindowsConfig::default();
        let p = TimePolicy::new(&cfg);
        let now = 10_000 * S;
        assert_eq!(p.check(0, now), TimeCheck::Invalid);
        assert_eq!(p.check(now + 2 * 3600 * S, now), TimeCheck::Future);
        assert_eq!(p.check(now - S, now), TimeCheck::Ok);
        p.publish_watermark(now);
        // The 10 s window [9960,9970) ends 30 s before the watermark: purged; its 1m window
        // [9960,10020) is not: still on time for the rollup.
        assert_eq!(p.check(9965 * S, now), TimeCheck::Ok);
        // [9900,9960) and its 10 s windows are all purged.
        assert_eq!(p.check(9925 * S, now), TimeCheck::Late);
        assert_eq!(p.check(9975 * S, now), TimeCheck::Ok);
        let primary_only = crate::config::WindowsConfig {
            rollups: vec![],
            ..Default::default()
        };
        let p = TimePolicy::new(&primary_only);
        p.publish_watermark(now);
        assert_eq!(p.check(9965 * S, now), TimeCheck::Late);
    }
}
