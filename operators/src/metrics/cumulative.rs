//! Cumulative-to-delta conversion per stream.
//!
//! A stream is one series from one origin (resource + scope): the SDK of one process. For each
//! stream the last cumulative point is kept; the next one yields the difference. A reset — a new
//! `start_time`, or (monotonic sums, histograms) a value going down — restarts the stream and the
//! new point's whole value is the delta. The first point of a stream with a `start_time` is a
//! delta from that start; without one it only sets the baseline. A point not newer than the
//! stream's last one is out of order and dropped (its increase is already in the newer point).
//! State is bounded: at most `max_streams`, idle ones expire.

use super::agg::ExpHist;
use hashbrown::HashMap;
use redwatch_engine::model::UnixNanos;

/// What the last cumulative point of a stream said.
#[derive(Debug, Clone, PartialEq)]
pub enum Last {
    Number(f64),
    Histogram {
        count: u64,
        sum: f64,
        counts: Vec<u64>,
    },
    Exp {
        count: u64,
        sum: f64,
        hist: ExpHist,
    },
}

#[derive(Debug, Clone)]
struct Stream {
    start: UnixNanos,
    time: UnixNanos,
    last: Last,
    /// Wall clock of the last point.
    seen: UnixNanos,
}

/// The outcome of offering a cumulative point.
#[derive(Debug, Clone, PartialEq)]
pub enum Delta {
    /// The first point without a start time: baseline only.
    Baseline,
    /// The increase since the previous point; `whole` = the point's own value (first point from
    /// its start, or a reset), so per-point facts such as histogram min/max hold for it.
    Increase { delta: Last, whole: bool },
    /// Not newer than the stream's last point.
    OutOfOrder,
    /// No room for a new stream.
    NoRoom,
}

/// Cumulative stream state of one operator.
#[derive(Debug)]
pub struct Streams {
    map: HashMap<(u64, u64), Stream>,
    max_streams: usize,
}

impl Streams {
    pub fn new(max_streams: usize) -> Self {
        Streams {
            map: HashMap::new(),
            max_streams,
        }
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Offers point `cur` of stream `key` (series hash, origin). `monotonic`: a decrease is a
    /// reset (counters, histograms); up-down counters only reset on a new start time.
    pub fn offer(
        &mut self,
        key: (u64, u64),
        start: UnixNanos,
        time: UnixNanos,
        cur: Last,
        monotonic: bool,
        now: UnixNanos,
    ) -> Delta {
        if !self.map.contains_key(&key) {
            if self.map.len() >= self.max_streams {
                return Delta::NoRoom;
            }
            let out = if start != 0 {
                Delta::Increase {
                    delta: cur.clone(),
                    whole: true,
                }
            } else {
                Delta::Baseline
            };
            self.map.insert(
                key,
                Stream {
                    start,
                    time,
                    last: cur,
                    seen: now,
                },
            );
            return out;
        }
        let Some(s) = self.map.get_mut(&key) else {
            return Delta::NoRoom;
        };
        if time <= s.time {
            return Delta::OutOfOrder;
        }
        let restarted = start != 0 && s.start != 0 && start != s.start;
        let diff = if restarted {
            None
        } else {
            difference(&cur, &s.last, monotonic)
        };
        s.start = if start != 0 { start } else { s.start };
        s.time = time;
        s.seen = now;
        let out = match diff {
            Some(d) => Delta::Increase {
                delta: d,
                whole: false,
            },
            None => Delta::Increase {
                delta: cur.clone(),
                whole: true,
            },
        };
        s.last = cur;
        out
    }

    /// Forgets a stream (a point said it has no recorded value any more).
    pub fn forget(&mut self, key: (u64, u64)) {
        self.map.remove(&key);
    }

    /// Forgets streams without a point since `idle_before` (wall clock); returns how many.
    pub fn expire(&mut self, idle_before: UnixNanos) -> usize {
        let before = self.map.len();
        self.map.retain(|_, s| s.seen >= idle_before);
        before - self.map.len()
    }

    pub fn heap_bytes(&self) -> usize {
        self.map.capacity() * (std::mem::size_of::<((u64, u64), Stream)>() + 1)
            + self
                .map
                .values()
                .map(|s| match &s.last {
                    Last::Number(_) => 0,
                    Last::Histogram { counts, .. } => counts.capacity() * 8,
                    Last::Exp { hist, .. } => {
                        (hist.positive.counts.capacity() + hist.negative.counts.capacity()) * 8
                    }
                })
                .sum::<usize>()
    }
}

/// `cur - prev`, or None when it is a reset.
fn difference(cur: &Last, prev: &Last, monotonic: bool) -> Option<Last> {
    match (cur, prev) {
        (Last::Number(c), Last::Number(p)) => {
            if monotonic && c < p {
                None
            } else {
                Some(Last::Number(c - p))
            }
        }
        (
            Last::Histogram { count, sum, counts },
            Last::Histogram {
                count: pc,
                sum: ps,
                counts: pcs,
            },
        ) => {
            if count < pc || counts.len() != pcs.len() {
                return None;
            }
            let mut d = Vec::with_capacity(counts.len());
            for (a, b) in counts.iter().zip(pcs) {
                d.push(a.checked_sub(*b)?);
            }
            Some(Last::Histogram {
                count: count - pc,
                sum: sum - ps,
                counts: d,
            })
        }
        (
            Last::Exp { count, sum, hist },
            Last::Exp {
                count: pc,
                sum: ps,
                hist: ph,
            },
        ) => {
            if count < pc {
                return None;
            }
            Some(Last::Exp {
                count: count - pc,
                sum: sum - ps,
                hist: hist.checked_sub(ph)?,
            })
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(v: f64) -> Last {
        Last::Number(v)
    }

    #[test]
    fn counters_convert_with_start_baseline_reset_and_order_rules() {
        let mut s = Streams::new(10);
        let k = (1, 1);
        // No start time: baseline only.
        assert_eq!(s.offer(k, 0, 10, n(5.0), true, 0), Delta::Baseline);
        assert_eq!(
            s.offer(k, 0, 20, n(8.0), true, 0),
            Delta::Increase {
                delta: n(3.0),
                whole: false
            }
        );
        // Out of order.
        assert_eq!(s.offer(k, 0, 15, n(7.0), true, 0), Delta::OutOfOrder);
        // Decrease = reset: the new value is the delta.
        assert_eq!(
            s.offer(k, 0, 30, n(2.0), true, 0),
            Delta::Increase {
                delta: n(2.0),
                whole: true
            }
        );
        // With a start time, the first point counts from its start.
        let k2 = (2, 1);
        assert_eq!(
            s.offer(k2, 5, 10, n(4.0), true, 0),
            Delta::Increase {
                delta: n(4.0),
                whole: true
            }
        );
        // A new start time is a reset even when the value grew.
        assert_eq!(
            s.offer(k2, 12, 20, n(9.0), true, 0),
            Delta::Increase {
                delta: n(9.0),
                whole: true
            }
        );
    }

    #[test]
    fn up_down_counters_go_down_without_reset() {
        let mut s = Streams::new(10);
        s.offer((1, 1), 5, 10, n(5.0), false, 0);
        assert_eq!(
            s.offer((1, 1), 5, 20, n(2.0), false, 0),
            Delta::Increase {
                delta: n(-3.0),
                whole: false
            }
        );
    }

    #[test]
    fn state_is_bounded_and_expires() {
        let mut s = Streams::new(1);
        s.offer((1, 1), 0, 10, n(1.0), true, 100);
        assert_eq!(s.offer((2, 1), 0, 10, n(1.0), true, 100), Delta::NoRoom);
        assert_eq!(s.expire(101), 1);
        assert!(s.is_empty());
    }
}
