//! Which offsets of one partition may be committed (DESIGN.md, "Kafka").
//!
//! A consumed message may be committed only once every window it fed has been purged: after a
//! crash, replay starts at the committed offset and must rebuild every window that was still open.
//! The tracker keeps, in offset order, the largest event time of each consumed offset range and
//! releases ranges whose primary window is purged at the published watermark. It does no I/O.

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
            // A range's event time only matters through its window: merge while the new
            // message's window is not later than the range's.
            if max_event_time == 0
                || policy.window_start(max_event_time) <= policy.window_start(back.1)
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
            let end = policy.window_start(ts).saturating_add(policy.window_ns);
            if !policy.is_purged(end, wm) {
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

    fn policy() -> TimePolicy {
        let cfg = redwatch_engine::config::WindowsConfig {
            size: std::time::Duration::from_secs(10),
            allowed_lateness: std::time::Duration::from_secs(30),
            ..Default::default()
        };
        TimePolicy::new(&cfg)
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
