//! Property test: for random span streams (random keys, out-of-order event times, late data
//! within and beyond `allowed_lateness`, watermark advances) the final sessions the operator
//! leaves — final rows upserted by `session_id`, retracted ids removed, read when purged — equal
//! a naive model: per key, sort the accepted event times and split where two neighbours are
//! more than `gap` apart; drop what arrives for a session that is already purged. Counts exact.

use proptest::prelude::*;
use redwatch_engine::config::{ExtraWindow, SessionKey};
use redwatch_engine::fixtures::{span_batch, SpanFixture};
use redwatch_engine::model::{SourceId, StatusCode};
use redwatch_engine::telemetry::Registry;
use redwatch_operators::layout::SpanSections;
use redwatch_operators::sessions::{SessionOperator, SessionRetraction, SessionRow, SessionSink};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const MS: u64 = 1_000_000;
const T0: u64 = 1_700_000_000_000 * MS;
const GAP: u64 = 10_000 * MS;
const LATENESS: u64 = 20_000 * MS;

/// What a consumer of the sink sees: the current final rows, and those whose session was purged.
#[derive(Default)]
struct Consumer {
    current: Mutex<HashMap<u64, SessionRow>>,
    done: Mutex<Vec<SessionRow>>,
    errors: Mutex<Vec<String>>,
}

impl SessionSink for Consumer {
    fn on_final(&self, rows: &[SessionRow]) {
        let mut c = self.current.lock().unwrap();
        for r in rows {
            if !r.is_final {
                self.errors
                    .lock()
                    .unwrap()
                    .push(format!("provisional row in on_final: {r:?}"));
            }
            c.insert(r.session_id, r.clone());
        }
    }
    fn on_retract(&self, rs: &[SessionRetraction]) {
        let mut c = self.current.lock().unwrap();
        for r in rs {
            if c.remove(&r.session_id).is_none() {
                self.errors
                    .lock()
                    .unwrap()
                    .push(format!("retracted a row never emitted: {r:?}"));
            }
        }
    }
    fn on_purged(&self, ids: &[u64]) {
        let mut c = self.current.lock().unwrap();
        for id in ids {
            match c.remove(id) {
                Some(r) => self.done.lock().unwrap().push(r),
                None => self
                    .errors
                    .lock()
                    .unwrap()
                    .push(format!("purged {id} without a final row")),
            }
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Ev {
    t: u64,
    weight: u64,
    error: bool,
}

/// `(key, start, end, spans, errors)` of a final session.
type Summary = (u8, u64, u64, u64, u64);

#[derive(Default)]
struct Model {
    live: BTreeMap<u8, Vec<Ev>>,
    finals: Vec<Summary>,
    late: u64,
    wm: u64,
}

/// Sessions of a set of event times: sorted, split where neighbours are more than GAP apart.
fn components(evs: &[Ev]) -> Vec<Vec<Ev>> {
    let mut v = evs.to_vec();
    v.sort_by_key(|e| e.t);
    let mut out: Vec<Vec<Ev>> = Vec::new();
    for e in v {
        match out.last_mut() {
            Some(c) if e.t - c.last().map_or(e.t, |l| l.t) <= GAP => c.push(e),
            _ => out.push(vec![e]),
        }
    }
    out
}

impl Model {
    fn span(&mut self, key: u8, ev: Ev) {
        let live = self.live.entry(key).or_default();
        // It joins a live session iff some live event is within GAP of it (a session's
        // neighbouring events are at most GAP apart, so nothing else can bridge it).
        let alone = live.iter().all(|e| e.t.abs_diff(ev.t) > GAP);
        if alone && ev.t + GAP + LATENESS <= self.wm {
            self.late += 1;
            return;
        }
        live.push(ev);
    }

    fn advance(&mut self, wm: u64) {
        self.wm = self.wm.max(wm);
        for (key, live) in self.live.iter_mut() {
            let mut keep = Vec::new();
            for c in components(live) {
                let first = c[0].t;
                let last = c[c.len() - 1].t;
                if last + GAP + LATENESS <= self.wm {
                    let spans = c.iter().map(|e| e.weight).sum();
                    let errors = c.iter().filter(|e| e.error).map(|e| e.weight).sum();
                    self.finals.push((*key, first, last + GAP, spans, errors));
                } else {
                    keep.extend(c);
                }
            }
            *live = keep;
        }
    }
}

#[derive(Debug, Clone)]
enum Step {
    Span {
        key: u8,
        offset_ms: u64,
        weight: u64,
        error: bool,
    },
    Advance {
        by_ms: u64,
    },
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        4 => (1u8..=4, 0u64..120_000, 1u64..=3, any::<bool>()).prop_map(|(key, offset_ms, weight, error)| Step::Span { key, offset_ms, weight, error }),
        1 => (0u64..25_000).prop_map(|by_ms| Step::Advance { by_ms }),
    ]
}

fn config() -> SpanSections {
    let mut c = SpanSections::default();
    c.windows.allowed_lateness = Duration::from_nanos(LATENESS);
    c.windows.extra = vec![ExtraWindow {
        gap: Some(Duration::from_nanos(GAP)),
        key: Some(SessionKey::Name("trace_id".into())),
        max_duration: Some(Duration::from_secs(3600)),
        ..Default::default()
    }];
    c
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn final_sessions_equal_the_naive_model(steps in prop::collection::vec(step(), 1..80)) {
        let cfg = config();
        prop_assert!(cfg.validate().is_empty());
        let consumer = Arc::new(Consumer::default());
        let registry = Registry::new();
        let mut op = SessionOperator::new(&cfg.windows, cfg.session_specs(), vec![consumer.clone() as Arc<dyn SessionSink>], &registry);
        let mut model = Model::default();
        let mut wm = T0;
        op.advance(wm);
        model.advance(wm);
        let mut span_id = 0u8;
        for s in &steps {
            match *s {
                Step::Span { key, offset_ms, weight, error } => {
                    span_id = span_id.wrapping_add(1);
                    let t = T0 + offset_ms * MS;
                    let mut f = SpanFixture::new("svc", "op", t, 1.0)
                        .ids([key; 16], [span_id; 8], [1; 8])
                        .weight(weight as f64);
                    if error {
                        f = f.status(StatusCode::Error);
                    }
                    op.process_spans(&span_batch(SourceId(0), 0, &[f]));
                    model.span(key, Ev { t, weight, error });
                }
                Step::Advance { by_ms } => {
                    wm += by_ms * MS;
                    op.advance(wm);
                    model.advance(wm);
                }
            }
        }
        // Flush: every session ends, becomes final and is purged.
        let end = T0 + 1_000_000 * MS;
        op.advance(end);
        model.advance(end);
        prop_assert_eq!(consumer.errors.lock().unwrap().clone(), Vec::<String>::new());
        prop_assert!(consumer.current.lock().unwrap().is_empty());
        prop_assert_eq!(op.session_count(), 0);
        let mut got: Vec<Summary> = consumer
            .done
            .lock()
            .unwrap()
            .iter()
            .map(|r| {
                let key = u8::from_str_radix(&r.key_value[..2], 16).unwrap_or(0);
                (key, r.start, r.end, r.spans as u64, r.errors as u64)
            })
            .collect();
        got.sort_unstable();
        let mut want = model.finals.clone();
        want.sort_unstable();
        prop_assert_eq!(got, want);
        prop_assert_eq!(
            registry.value("redwatch_late_dropped_total", &[("signal", "sessions")]),
            model.late as f64
        );
    }
}
