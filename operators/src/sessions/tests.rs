//! Unit tests of the session operator: merge by a late span, reopening, max_duration split,
//! the cardinality cap, late drops and key extraction.

use super::*;
use crate::layout::SpanSections;
use redwatch_engine::config::{Dimension, DimensionSource, ExtraWindow, SessionKey};
use redwatch_engine::fixtures::{span_batch, SpanFixture};
use redwatch_engine::model::{SourceId, StatusCode};
use redwatch_engine::telemetry::Registry;
use std::sync::Mutex;
use std::time::Duration;

const SEC: u64 = 1_000_000_000;
const T0: u64 = 1_700_000_000 * SEC;

#[derive(Default)]
struct Capture {
    finals: Mutex<Vec<SessionRow>>,
    retracted: Mutex<Vec<SessionRetraction>>,
    purged: Mutex<Vec<u64>>,
    provisional: Mutex<Vec<SessionRow>>,
}

impl SessionSink for Capture {
    fn on_final(&self, rows: &[SessionRow]) {
        self.finals.lock().unwrap().extend_from_slice(rows);
    }
    fn on_retract(&self, r: &[SessionRetraction]) {
        self.retracted.lock().unwrap().extend_from_slice(r);
    }
    fn on_provisional(&self, _key: &str, _gap: u64, rows: &[SessionRow]) {
        *self.provisional.lock().unwrap() = rows.to_vec();
    }
    fn on_purged(&self, ids: &[u64]) {
        self.purged.lock().unwrap().extend_from_slice(ids);
    }
}

impl Capture {
    fn take_finals(&self) -> Vec<SessionRow> {
        std::mem::take(&mut *self.finals.lock().unwrap())
    }
    fn take_retracted(&self) -> Vec<SessionRetraction> {
        std::mem::take(&mut *self.retracted.lock().unwrap())
    }
}

fn config(gap_s: u64, key: SessionKey, lateness_s: u64) -> SpanSections {
    let mut c = SpanSections::default();
    c.windows.allowed_lateness = Duration::from_secs(lateness_s);
    c.windows.extra = vec![ExtraWindow {
        gap: Some(Duration::from_secs(gap_s)),
        key: Some(key),
        ..Default::default()
    }];
    c
}

fn trace_key() -> SessionKey {
    SessionKey::Name("trace_id".into())
}

fn setup(cfg: &SpanSections) -> (SessionOperator, Arc<Capture>, Arc<Registry>) {
    assert!(cfg.validate().is_empty(), "{:?}", cfg.validate());
    let cap = Arc::new(Capture::default());
    let reg = Registry::new();
    let op = SessionOperator::new(
        &cfg.windows,
        cfg.session_specs(),
        vec![cap.clone() as Arc<dyn SessionSink>],
        &reg,
    );
    (op, cap, reg)
}

/// A span of trace `trace` (span id `span`, parent 0 = root) of `svc` ending at `T0 + end_s`.
fn sp(
    svc: &str,
    name: &str,
    trace: u8,
    span: u8,
    parent: u8,
    end_s: u64,
    dur_ms: f64,
) -> SpanFixture {
    SpanFixture::new(svc, name, T0 + end_s * SEC, dur_ms).ids([trace; 16], [span; 8], [parent; 8])
}

fn labels<'a>(key: &'a str, gap: &'a str) -> [(&'a str, &'a str); 2] {
    [("key", key), ("gap", gap)]
}

#[test]
fn a_trace_becomes_one_final_session_with_its_services_and_root() {
    let cfg = config(30, trace_key(), 60);
    let (mut op, cap, _reg) = setup(&cfg);
    op.process_spans(&span_batch(
        SourceId(0),
        0,
        &[
            sp("db", "SELECT", 1, 3, 2, 10, 5.0),
            sp("api", "GET /x", 1, 2, 1, 11, 500.0).status(StatusCode::Error),
            sp("web", "page", 1, 1, 0, 12, 2500.0),
            sp("web", "page", 2, 1, 0, 12, 10.0),
        ],
    ));
    op.publish_provisional();
    assert_eq!(cap.provisional.lock().unwrap().len(), 2);
    let st = redwatch_engine::pipeline::Operator::snapshot(&op);
    assert_eq!((st.series, st.entries), (2, 2));
    op.advance(T0 + 41 * SEC);
    assert!(cap.take_finals().is_empty(), "not final before its end");
    op.advance(T0 + 42 * SEC);
    let mut finals = cap.take_finals();
    finals.sort_by(|a, b| a.key_value.cmp(&b.key_value));
    assert_eq!(finals.len(), 2);
    let f = &finals[0];
    assert_eq!(&*f.key_value, "01010101010101010101010101010101");
    assert_eq!(&*f.key_name, "trace_id");
    assert_eq!(&*f.gap, "30s");
    assert_eq!(f.start, T0 + 10 * SEC);
    assert_eq!(f.end, T0 + 42 * SEC);
    assert_eq!((f.spans, f.errors), (3.0, 1.0));
    assert_eq!(f.duration_ms, 2500.0);
    let services: Vec<&str> = f.services.iter().map(|s| &**s).collect();
    assert_eq!(services, ["db", "api", "web"]);
    assert_eq!(f.root_span_name.as_deref(), Some("page"));
    assert!(f.is_final && !f.services_truncated);
    // Purged at end + allowed_lateness.
    op.advance(T0 + 101 * SEC);
    assert!(cap.purged.lock().unwrap().is_empty());
    op.advance(T0 + 102 * SEC);
    assert_eq!(cap.purged.lock().unwrap().len(), 2);
    assert_eq!(op.session_count(), 0);
    // Nothing is left of them but the interned names.
    let st = redwatch_engine::pipeline::Operator::snapshot(&op);
    assert_eq!((st.series, st.entries), (0, 0));
    assert!(st.bytes < 1024, "{st:?}");
}

#[test]
fn a_late_span_merges_two_final_sessions_and_retracts_the_absorbed_one() {
    let cfg = config(10, trace_key(), 300);
    let (mut op, cap, reg) = setup(&cfg);
    op.process_spans(&span_batch(
        SourceId(0),
        0,
        &[
            sp("a", "x", 1, 1, 0, 0, 1.0),
            sp("a", "y", 1, 2, 1, 25, 1.0),
        ],
    ));
    op.advance(T0 + 40 * SEC);
    let first = cap.take_finals();
    assert_eq!(first.len(), 2, "two sessions: 25 s apart with a 10 s gap");
    let (a, b) = (
        first[0].session_id.min(first[1].session_id),
        first[0].session_id.max(first[1].session_id),
    );
    // A late span at 8 s extends the first session to [0, 18] (still final: re-emitted).
    op.process_spans(&span_batch(
        SourceId(0),
        0,
        &[sp("b", "z", 1, 3, 1, 8, 1.0)],
    ));
    op.advance(T0 + 41 * SEC);
    assert_eq!(
        cap.take_retracted(),
        vec![],
        "8 s joins the first session only"
    );
    let re = cap.take_finals();
    assert_eq!(re.len(), 1);
    assert_eq!(
        (re[0].session_id, re[0].spans, re[0].end),
        (a, 2.0, T0 + 18 * SEC)
    );
    // A late span at 16 s bridges [0, 18] and [25, 35]: one session, the later one retracted.
    op.process_spans(&span_batch(
        SourceId(0),
        0,
        &[sp("c", "w", 1, 4, 1, 16, 1.0)],
    ));
    op.advance(T0 + 42 * SEC);
    assert_eq!(
        cap.take_retracted(),
        vec![SessionRetraction {
            session_id: b,
            merged_into: Some(a)
        }]
    );
    let re = cap.take_finals();
    assert_eq!(re.len(), 1);
    let m = &re[0];
    assert_eq!(
        (m.session_id, m.spans, m.start, m.end),
        (a, 4.0, T0, T0 + 35 * SEC)
    );
    assert_eq!(m.services.len(), 3);
    assert_eq!(
        reg.value("redwatch_sessions_merged_total", &labels("trace_id", "10s")),
        1.0
    );
    assert_eq!(op.session_count(), 1);
}

#[test]
fn a_late_span_that_moves_a_final_session_past_the_watermark_reopens_it() {
    let cfg = config(10, trace_key(), 300);
    let (mut op, cap, _reg) = setup(&cfg);
    op.process_spans(&span_batch(
        SourceId(0),
        0,
        &[sp("a", "x", 1, 1, 0, 0, 1.0)],
    ));
    op.advance(T0 + 12 * SEC);
    let f = cap.take_finals();
    assert_eq!(f.len(), 1);
    let id = f[0].session_id;
    // 8 s is behind the watermark but extends the session to 18 s > 12 s.
    op.process_spans(&span_batch(
        SourceId(0),
        0,
        &[sp("a", "y", 1, 2, 1, 8, 1.0)],
    ));
    op.advance(T0 + 13 * SEC);
    assert_eq!(
        cap.take_retracted(),
        vec![SessionRetraction {
            session_id: id,
            merged_into: None
        }]
    );
    assert!(cap.take_finals().is_empty());
    op.publish_provisional();
    assert_eq!(cap.provisional.lock().unwrap()[0].session_id, id);
    op.advance(T0 + 18 * SEC);
    let f = cap.take_finals();
    assert_eq!(
        (f[0].session_id, f[0].spans, f[0].end),
        (id, 2.0, T0 + 18 * SEC)
    );
}

#[test]
fn max_duration_splits_a_long_activity_into_consecutive_sessions() {
    let mut cfg = config(10, SessionKey::Name("service.name".into()), 60);
    cfg.windows.extra[0].max_duration = Some(Duration::from_secs(30));
    let (mut op, cap, reg) = setup(&cfg);
    for t in (0..=60).step_by(5) {
        op.process_spans(&span_batch(
            SourceId(0),
            0,
            &[sp("svc", "op", 1, 1, 0, t, 1.0)],
        ));
    }
    // An out-of-order span inside the first (sealed) session still joins it.
    op.process_spans(&span_batch(
        SourceId(0),
        0,
        &[sp("svc", "op", 1, 1, 0, 7, 1.0)],
    ));
    op.advance(T0 + 200 * SEC);
    let mut f = cap.take_finals();
    f.sort_by_key(|r| r.start);
    let got: Vec<(u64, u64, f64)> = f
        .iter()
        .map(|r| ((r.start - T0) / SEC, (r.end - T0) / SEC, r.spans))
        .collect();
    assert_eq!(got, vec![(0, 30, 6.0), (25, 55, 5.0), (50, 70, 3.0)]);
    assert!(f.iter().all(|r| r.end - r.start <= 30 * SEC));
    assert_eq!(&*f[0].key_value, "svc");
    assert_eq!(
        reg.value(
            "redwatch_sessions_split_total",
            &labels("service.name", "10s")
        ),
        2.0
    );
}

#[test]
fn the_cardinality_cap_drops_spans_that_would_open_more_sessions() {
    let mut cfg = config(10, trace_key(), 60);
    cfg.windows.extra[0].max_sessions = Some(2);
    let (mut op, cap, reg) = setup(&cfg);
    op.process_spans(&span_batch(
        SourceId(0),
        0,
        &[
            sp("a", "x", 1, 1, 0, 0, 1.0),
            sp("a", "x", 2, 1, 0, 0, 1.0),
            sp("a", "x", 3, 1, 0, 0, 1.0),
            sp("a", "x", 1, 2, 1, 1, 1.0),
            sp("a", "x", 3, 2, 1, 1, 1.0),
        ],
    ));
    assert_eq!(op.session_count(), 2);
    let ov = labels("trace_id", "10s");
    assert_eq!(
        reg.value("redwatch_sessions_overflow_spans_total", &ov),
        2.0
    );
    op.advance(T0 + 20 * SEC);
    let spans: f64 = cap.take_finals().iter().map(|r| r.spans).sum();
    assert_eq!(spans, 3.0);
    // Purged sessions free their slots.
    op.advance(T0 + 100 * SEC);
    op.process_spans(&span_batch(
        SourceId(0),
        0,
        &[sp("a", "x", 3, 1, 0, 100, 1.0)],
    ));
    assert_eq!(op.session_count(), 1);
}

#[test]
fn spans_for_purged_sessions_are_dropped_and_counted() {
    let cfg = config(10, trace_key(), 5);
    let (mut op, cap, reg) = setup(&cfg);
    op.process_spans(&span_batch(
        SourceId(0),
        0,
        &[sp("a", "x", 1, 1, 0, 0, 1.0)],
    ));
    op.advance(T0 + 15 * SEC);
    assert_eq!(cap.take_finals().len(), 1);
    assert_eq!(cap.purged.lock().unwrap().len(), 1);
    // [3, 13] + 5 s lateness = 18 > 15: accepted as a new session; [0, 10] + 5 <= 15: dropped.
    op.process_spans(&span_batch(
        SourceId(0),
        0,
        &[sp("a", "x", 1, 2, 1, 3, 1.0), sp("a", "x", 2, 2, 1, 0, 1.0)],
    ));
    assert_eq!(
        reg.value("redwatch_late_dropped_total", &[("signal", "sessions")]),
        1.0
    );
    assert_eq!(op.session_count(), 1);
}

#[test]
fn attribute_keys_use_their_default_and_count_spans_without_one() {
    let mut cfg = config(
        10,
        SessionKey::Attribute(Dimension {
            name: "enduser.id".into(),
            default: None,
            source: DimensionSource::Span,
        }),
        60,
    );
    cfg.service_graph.enabled = false;
    let n_dims = cfg.decode_dimensions().len() as u16;
    assert_eq!(n_dims, 1);
    let (mut op, cap, reg) = setup(&cfg);
    op.process_spans(&span_batch(
        SourceId(0),
        n_dims,
        &[
            sp("a", "x", 1, 1, 0, 0, 1.0).dims(&[Some("alice")]),
            sp("b", "y", 2, 1, 0, 1, 1.0).dims(&[Some("alice")]),
            sp("a", "x", 3, 1, 0, 2, 1.0).dims(&[None]),
        ],
    ));
    op.advance(T0 + 60 * SEC);
    let f = cap.take_finals();
    assert_eq!(f.len(), 1);
    assert_eq!(
        (&*f[0].key_value, &*f[0].key_name, f[0].spans),
        ("alice", "enduser.id", 2.0)
    );
    assert_eq!(
        reg.value(
            "redwatch_sessions_spans_without_key_total",
            &labels("enduser.id", "10s")
        ),
        1.0
    );
    // With a default, the span without the attribute has a session too.
    if let Some(SessionKey::Attribute(d)) = &mut cfg.windows.extra[0].key {
        d.default = Some("anonymous".into());
    }
    let (mut op, cap, _reg) = setup(&cfg);
    op.process_spans(&span_batch(
        SourceId(0),
        n_dims,
        &[sp("a", "x", 3, 1, 0, 2, 1.0).dims(&[None])],
    ));
    op.advance(T0 + 60 * SEC);
    assert_eq!(&*cap.take_finals()[0].key_value, "anonymous");
}

#[test]
fn services_are_bounded_per_session() {
    let cfg = config(10, trace_key(), 60);
    let (mut op, cap, _reg) = setup(&cfg);
    let spans: Vec<SpanFixture> = (0..40u8)
        .map(|i| sp(&format!("svc{i}"), "x", 1, i + 1, 1, 0, 1.0))
        .collect();
    op.process_spans(&span_batch(SourceId(0), 0, &spans));
    op.advance(T0 + 20 * SEC);
    let f = cap.take_finals();
    assert_eq!(f[0].services.len(), MAX_SERVICES);
    assert!(f[0].services_truncated);
    assert_eq!(f[0].spans, 40.0);
}
