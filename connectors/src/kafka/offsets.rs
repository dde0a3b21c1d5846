//! Which offsets of one partition may be committed (docs/kafka-exactness.md).
//!
//! A consumed message may be committed only once every window it fed, of every window spec
//! (primary, rollups, hopping), has been purged: after a crash, replay starts at the committed
//! offset and must rebuild every window that was still open. The tracker keeps, in offset order,
//! the largest event time of each consumed offset range and releases ranges whose windows are all
//! purged at the watermark ([`TimePolicy::all_purged`]). It does no I/O.

use redwatch_engine::model::UnixNanos;
use redwatch_engine::time::TimePolicy;
use std::collections::VecDeque;

/// Prefix of the commit metadata that carries the purged-through time.
const METADATA_PREFIX: &str = "redwatch purged_through_ns=";

/// Commit metadata for a partition whose windows are purged through watermark `wm`.
pub fn commit_metadata(wm: UnixNanos) -> String {
    format!("{METADATA_PREFIX}{wm}")
}

/// The purged-through time in commit metadata written by [`commit_metadata`] (0 when absent or
/// written by someone else: then nothing is skipped).
pub fn parse_commit_metadata(metadata: &str) -> UnixNanos {
    metadata
        .strip_prefix(METADATA_PREFIX)
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

/// Consumed-but-not-committable offset ranges of one partition.
#[derive(Debug, Default)]
pub struct CommitTracker {
    /// `(last offset of the range, largest event time in it)`, in offset order; 0 = no data.
    ranges: VecDeque<(i64, UnixNanos)>,
    /// The next offset to consume after the last recorded message.
    next: Option<i64>,
    /// Every message before this offset fed only purged windows.
    committable: Option<i64>,
}

impl CommitTracker {
    /// Records a consumed (and queued) message. Offsets must be recorded in increasing order.
    pub fn record(&mut self, offset: i64, max_event_time: UnixNanos, policy: &TimePolicy) {
        self.next = Some(offset + 1);
        if self.ranges.is_empty() && max_event_time == 0 {
            self.committable = Some(offset + 1);
            return;
        }
        if let Some(back) = self.ranges.back_mut() {
            // A range's event time only matters through the last window it fed: merge while the
            // new message's last window does not end later than the range's.
            if max_event_time == 0
                || policy.last_window_end(max_event_time) <= policy.last_window_end(back.1)
            {
                back.0 = offset;
                return;
            }
        }
        self.ranges.push_back((offset, max_event_time));
    }

    /// Releases the ranges whose windows are purged at watermark `wm`; returns the offset that may
    /// be committed (the next offset after them), if any message is committable.
    pub fn advance(&mut self, wm: UnixNanos, policy: &TimePolicy) -> Option<i64> {
        while let Some(&(last, ts)) = self.ranges.front() {
            if !policy.all_purged(ts, wm) {
                break;
            }
            self.ranges.pop_front();
            self.committable = Some(last + 1);
        }
        if self.ranges.is_empty() {
            if let Some(n) = self.next {
                self.committable = Some(n);
            }
        }
        self.committable
    }

    /// Ranges held back (for tests and status).
    pub fn pending_ranges(&self) -> usize {
        self.ranges.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;

    /// 10 s windows, 30 s lateness, no rollup.
    fn policy() -> TimePolicy {
        let cfg = redwatch_engine::config::WindowsConfig {
            size: std::time::Duration::from_secs(10),
            allowed_lateness: std::time::Duration::from_secs(30),
            rollups: vec![],
            ..Default::default()
        };
        TimePolicy::new(&cfg)
    }

    /// The default windows: 10 s plus the 1m rollup, 30 s lateness.
    fn default_policy() -> TimePolicy {
        TimePolicy::new(&redwatch_engine::config::WindowsConfig::default())
    }

    #[test]
    fn a_message_is_held_until_its_rollup_window_is_purged_too() {
        let p = default_policy();
        let mut t = CommitTracker::default();
        t.record(0, 1001 * S, &p); // 10 s window [1000,1010); 1m window [960,1020)
        t.record(1, 1012 * S, &p); // [1010,1020), same 1m window: merged
        t.record(2, 1021 * S, &p); // 1m window [1020,1080)
        assert_eq!(t.pending_ranges(), 2);
        // The 10 s windows of offsets 0 and 1 are purged at 1050, their 1m window only at 1050
        // too ([960,1020) + 30 s): both go together.
        assert_eq!(t.advance(1040 * S, &p), None);
        assert_eq!(t.advance(1049 * S, &p), None);
        assert_eq!(t.advance(1050 * S, &p), Some(2));
        // Offset 2's 10 s window [1020,1030) is purged at 1060, its 1m window at 1110.
        assert_eq!(t.advance(1060 * S, &p), Some(2));
        assert_eq!(t.advance(1109 * S, &p), Some(2));
        assert_eq!(t.advance(1110 * S, &p), Some(3));
    }

    #[test]
    fn hopping_windows_hold_a_message_until_the_last_window_holding_it_is_purged() {
        let windows: redwatch_engine::config::WindowsConfig =
            redwatch_engine::config::parse_yaml_with_overrides(
                "size: 10s\nrollups: []\nextra:\n  - { size: 1m, slide: 20s }\n",
                &[],
            )
            .unwrap();
        let p = TimePolicy::new(&windows);
        let mut t = CommitTracker::default();
        t.record(0, 1001 * S, &p); // last hopping window holding it: [1000,1060)
        assert_eq!(t.advance(1089 * S, &p), None);
        assert_eq!(t.advance(1090 * S, &p), Some(1));
    }

    #[test]
    fn commits_only_ranges_whose_windows_are_purged() {
        let p = policy();
        let mut t = CommitTracker::default();
        t.record(0, 1001 * S, &p); // window [1000,1010), purged at 1040
        t.record(1, 1005 * S, &p); // merged
        t.record(2, 1012 * S, &p); // window [1010,1020), purged at 1050
        t.record(3, 0, &p); // no data: merged
        assert_eq!(t.pending_ranges(), 2);
        assert_eq!(t.advance(1039 * S, &p), None);
        assert_eq!(t.advance(1040 * S, &p), Some(2));
        assert_eq!(t.advance(1049 * S, &p), Some(2));
        assert_eq!(t.advance(1050 * S, &p), Some(4));
        t.record(4, 0, &p);
        assert_eq!(t.advance(1050 * S, &p), Some(5));
    }

    #[test]
    fn an_earlier_window_after_a_later_one_is_held_by_the_later_range() {
        let p = policy();
        let mut t = CommitTracker::default();
        t.record(10, 1012 * S, &p);
        t.record(11, 1001 * S, &p); // earlier window: merged into the later range (conservative)
        assert_eq!(t.advance(1040 * S, &p), None);
        assert_eq!(t.advance(1050 * S, &p), Some(12));
    }

    #[test]
    fn metadata_round_trips_and_foreign_metadata_skips_nothing() {
        assert_eq!(parse_commit_metadata(&commit_metadata(42 * S)), 42 * S);
        assert_eq!(parse_commit_metadata(""), 0);
        assert_eq!(parse_commit_metadata("something else"), 0);
    }
}
