//! RED shares (docs/kafka-exactness.md): the state of Kafka-sourced spans is kept per source
//! partition. Checked here: merged rows equal what one unshared operator computes from the same
//! spans; a partition's share rows do not depend on which other partitions the operator also
//! processes (what makes results deterministic per partition across instances); a late update of
//! one share re-emits the merged row with the other shares' totals; a dropped share vanishes.

use proptest::prelude::*;
use redwatch_engine::fixtures::{span_batch, SpanFixture};
use redwatch_engine::model::{SourceId, StatusCode, UnixNanos};
use redwatch_engine::pipeline::{OpContext, Operator};
use redwatch_engine::telemetry::Registry;
use redwatch_operators::layout::SpanSections;
use redwatch_operators::red::{RedOperator, RedRow, RedSink};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

const MS: u64 = 1_000_000;
const BASE: u64 = 1_700_000_000_000 * MS;

#[derive(Default)]
struct Capture {
    shares: bool,
    rows: Mutex<Vec<RedRow>>,
}

impl RedSink for Capture {
    fn on_final(&self, rows: &[RedRow]) {
        self.rows.lock().unwrap().extend_from_slice(rows);
    }
    fn wants_shares(&self) -> bool {
        self.shares
    }
}

impl Capture {
    /// The rows captured so far.
    fn rows(&self) -> Vec<RedRow> {
        self.rows.lock().unwrap().clone()
    }

    fn clear(&self) {
        self.rows.lock().unwrap().clear();
    }
}

/// The rows of primary windows among `rows`.
fn primary(rows: &[RedRow]) -> Vec<&RedRow> {
    rows.iter().filter(|x| x.primary).collect()
}

/// (window size, window start, service, share) → (calls, errors, sum ms) of the latest row.
type Latest = BTreeMap<(String, UnixNanos, String, Option<u32>), (f64, f64, f64)>;

fn latest(rows: &[RedRow]) -> Latest {
    let mut out = Latest::new();
    for r in rows {
        let sum: f64 = r.total.sum_ms.iter().sum();
        out.insert(
            (
                r.window_size.to_string(),
                r.start,
                r.series.service_name.to_string(),
                r.share,
            ),
            (r.total.total_calls(), r.total.errors(), sum),
        );
    }
    out
}

/// Sums the shares of each (window size, window start, service).
fn merged(l: &Latest) -> Latest {
    let mut out = Latest::new();
    for ((w, s, svc, _), (c, e, sum)) in l {
        let v = out.entry((w.clone(), *s, svc.clone(), None)).or_default();
        v.0 += c;
        v.1 += e;
        v.2 += sum;
    }
    out
}

/// The default windows (10 s + the 1m rollup), shorter lateness for quicker tests.
fn config() -> SpanSections {
    let mut c = SpanSections::default();
    c.windows.allowed_lateness = Duration::from_secs(30);
    c
}

struct Run {
    op: RedOperator,
    shares: Arc<Capture>,
    merged: Arc<Capture>,
}

fn run() -> Run {
    let shares = Arc::new(Capture {
        shares: true,
        ..Default::default()
    });
    let merged = Arc::new(Capture::default());
    let cfg = config();
    let op = RedOperator::new(
        &cfg.windows,
        &cfg.red,
        vec![shares.clone(), merged.clone()],
        &Registry::new(),
    );
    Run { op, shares, merged }
}

impl Run {
    /// Forgets what both sinks captured.
    fn clear(&self) {
        self.merged.clear();
        self.shares.clear();
    }

    /// Drops `share` from the operator, as a revoked partition does.
    fn drop_share(&mut self, share: u32) {
        let registry = Registry::new();
        let mut ctx = OpContext {
            now: BASE,
            watermark: 0,
            metrics: &registry,
        };
        self.op.on_share_dropped(share, &mut ctx);
    }
}

/// A span of service `svc` ending `at_ms` after BASE.
fn span(svc: u8, at_ms: u64, ms: f64, error: bool) -> SpanFixture {
    let f = SpanFixture::new(&format!("svc{svc}"), "op", BASE + at_ms * MS, ms);
    if error {
        f.status(StatusCode::Error)
    } else {
        f
    }
}

fn feed(op: &mut RedOperator, share: Option<u32>, spans: &[SpanFixture]) {
    let mut b = span_batch(SourceId(0), 0, spans);
    b.share = share;
    op.process_spans(&b, BASE);
}

type Input = Vec<(u32, u8, u64, u8, bool)>;

fn input() -> impl Strategy<Value = Input> {
    // (partition, service, end ms, duration ms, error); within 3 minutes, in any order.
    prop::collection::vec(
        (0u32..4, 0u8..3, 0u64..180_000, 1u8..200, any::<bool>()),
        1..200,
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn merged_rows_equal_an_unshared_run_and_shares_add_up(input in input()) {
        let mut shared = run();
        let mut plain = run();
        for (p, svc, at, ms, err) in &input {
            let f = span(*svc, *at, *ms as f64, *err);
            feed(&mut shared.op, Some(*p), std::slice::from_ref(&f));
            feed(&mut plain.op, None, &[f]);
        }
        let end = BASE + 400_000 * MS;
        shared.op.advance(end);
        plain.op.advance(end);
        let want = latest(&plain.merged.rows());
        prop_assert_eq!(&latest(&shared.merged.rows()), &want);
        prop_assert_eq!(&merged(&latest(&shared.shares.rows())), &want);
    }

    #[test]
    fn a_partitions_share_rows_do_not_depend_on_the_other_partitions(input in input(), steps in prop::collection::vec(0u64..200_000, 0..6)) {
        // Instance A owns every partition, instance B only partition 1; both advance the
        // watermark at the same points of partition 1's stream, never past its data's lateness.
        let mut a = run();
        let mut b = run();
        let mut steps = steps;
        steps.sort();
        let mut wm_at = steps.into_iter().peekable();
        for (i, (p, svc, at, ms, err)) in input.iter().enumerate() {
            let f = span(*svc, *at, *ms as f64, *err);
            feed(&mut a.op, Some(*p), std::slice::from_ref(&f));
            if *p == 1 {
                feed(&mut b.op, Some(1), &[f]);
            }
            if i % 7 == 6 {
                if let Some(ms) = wm_at.next() {
                    // Far enough behind every event so no span of partition 1 is late.
                    let wm = BASE + ms.min(*at) / 4 * MS;
                    a.op.advance(wm);
                    b.op.advance(wm);
                }
            }
        }
        let end = BASE + 400_000 * MS;
        a.op.advance(end);
        b.op.advance(end);
        let only_1 = |l: Latest| -> Latest { l.into_iter().filter(|(k, _)| k.3 == Some(1)).collect() };
        prop_assert_eq!(
            only_1(latest(&a.shares.rows())),
            latest(&b.shares.rows())
        );
    }
}

#[test]
fn a_late_share_re_emits_the_merged_row_with_the_other_shares() {
    let mut r = run();
    feed(&mut r.op, Some(0), &[span(0, 1_000, 5.0, false)]);
    feed(&mut r.op, Some(1), &[span(0, 2_000, 7.0, true)]);
    // The 10 s window [0,10) s is emitted at 10 s.
    r.op.advance(BASE + 10_000 * MS);
    let first = r.merged.rows();
    assert_eq!(first.len(), 1, "one merged row for the series: {first:?}");
    assert_eq!(first[0].total.total_calls(), 2.0);
    assert!(first[0].first);
    assert_eq!(r.shares.rows().len(), 2, "one row per share");
    r.clear();
    // A late span of partition 1 only.
    feed(&mut r.op, Some(1), &[span(0, 3_000, 11.0, false)]);
    r.op.advance(BASE + 12_000 * MS);
    let late = r.merged.rows();
    let primary = primary(&late);
    assert_eq!(primary.len(), 1, "{late:?}");
    assert_eq!(
        primary[0].total.total_calls(),
        3.0,
        "partition 0's share is merged in"
    );
    assert_eq!(primary[0].delta.as_ref().unwrap().total_calls(), 1.0);
    assert!(!primary[0].first);
    assert_eq!(primary[0].share, None);
    let share_rows = r.shares.rows();
    assert_eq!(share_rows.len(), 1);
    assert_eq!(share_rows[0].share, Some(1));
    assert_eq!(share_rows[0].total.total_calls(), 2.0);
}

#[test]
fn a_dropped_share_is_forgotten_without_being_emitted() {
    let mut r = run();
    feed(&mut r.op, Some(0), &[span(0, 1_000, 5.0, false)]);
    feed(&mut r.op, Some(2), &[span(0, 1_500, 6.0, false)]);
    feed(&mut r.op, Some(2), &[span(1, 1_500, 6.0, false)]);
    r.drop_share(2);
    r.op.advance(BASE + 200_000 * MS);
    let rows = r.shares.rows();
    assert!(rows.iter().all(|x| x.share == Some(0)), "{rows:?}");
    // The 10 s and the 1m window of partition 0's one span.
    assert_eq!(rows.len(), 2);
    let merged = r.merged.rows();
    assert_eq!(merged.len(), 2);
    assert!(merged.iter().all(|x| x.total.total_calls() == 1.0));
}

#[test]
fn dropping_a_share_restates_the_merged_rows_of_emitted_windows_without_it() {
    let mut r = run();
    feed(&mut r.op, Some(0), &[span(0, 1_000, 5.0, false)]);
    feed(
        &mut r.op,
        Some(2),
        &[span(0, 1_500, 6.0, false), span(0, 2_500, 6.0, false)],
    );
    r.op.advance(BASE + 10_000 * MS);
    assert_eq!(r.merged.rows()[0].total.total_calls(), 3.0);
    r.clear();
    r.drop_share(2);
    let restated = r.merged.rows();
    assert_eq!(restated.len(), 1, "{restated:?}");
    assert_eq!(
        restated[0].total.total_calls(),
        1.0,
        "only partition 0's share is left"
    );
    assert_eq!(restated[0].delta.as_ref().unwrap().total_calls(), 0.0);
    assert!(!restated[0].first && restated[0].is_final && restated[0].primary);
    assert!(
        r.shares.rows().is_empty(),
        "nothing is written for the dropped share"
    );
}

/// A partition taken over by an instance whose watermark is ahead: its replayed spans are too
/// late for their purged 10 s window (whose record the old owner wrote) but the `1m` rollup
/// window holding them is still open, and takes them — the share's rollup is rebuilt whole.
#[test]
fn a_replayed_share_behind_the_watermark_still_fills_its_open_rollup_window() {
    let mut r = run();
    feed(&mut r.op, Some(0), &[span(0, 44_000, 5.0, false)]);
    // BASE is 20 s into a minute: the 10 s window [0,10) s is purged at 40 s, the 1m window
    // [-20,40) s at 70 s.
    r.op.advance(BASE + 45_000 * MS);
    r.shares.clear();
    let replayed: Vec<SpanFixture> = (1..10).map(|s| span(0, s * 1_000, 5.0, s == 3)).collect();
    feed(&mut r.op, Some(5), &replayed);
    r.op.advance(BASE + 400_000 * MS);
    let rows = r.shares.rows();
    let of_5: Vec<&RedRow> = rows.iter().filter(|x| x.share == Some(5)).collect();
    assert_eq!(of_5.len(), 1, "only the rollup window of share 5: {of_5:?}");
    assert_eq!(&*of_5[0].window_size, "1m");
    assert_eq!(of_5[0].total.total_calls(), 9.0);
    assert_eq!(of_5[0].total.errors(), 1.0);
}

/// A late update of one share whose re-emission and purge fall in the same watermark step (an
/// instance replaying a backlog after a rebalance jumps its watermark far ahead): the merged row
/// is built before the purge, so it still adds the shares the late update did not touch.
#[test]
fn a_late_share_re_emitted_and_purged_in_one_step_still_merges_the_other_shares() {
    let mut r = run();
    feed(&mut r.op, Some(0), &[span(0, 1_000, 5.0, false)]);
    feed(&mut r.op, Some(1), &[span(0, 2_000, 7.0, false)]);
    feed(&mut r.op, Some(2), &[span(0, 2_500, 9.0, false)]);
    r.op.advance(BASE + 10_000 * MS);
    r.merged.clear();
    // Late for the 10 s window [0,10) s but within its lateness (30 s) ...
    feed(&mut r.op, Some(1), &[span(0, 3_000, 11.0, false)]);
    // ... and the next step passes both its lateness and the 1m window's end and lateness.
    r.op.advance(BASE + 400_000 * MS);
    let rows = r.merged.rows();
    let primary = primary(&rows);
    assert_eq!(primary.len(), 1, "{rows:?}");
    assert_eq!(
        primary[0].total.total_calls(),
        4.0,
        "shares 0 and 2 are merged in although the window is purged in this step"
    );
    assert_eq!(primary[0].delta.as_ref().unwrap().total_calls(), 1.0);
    let rollup: Vec<&RedRow> = rows.iter().filter(|x| !x.primary).collect();
    assert_eq!(rollup.len(), 1, "{rows:?}");
    assert_eq!(rollup[0].total.total_calls(), 4.0);
}
