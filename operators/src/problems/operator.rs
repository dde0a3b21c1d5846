//! The problem operator: the [`Correlator`] downstream of detection, and the problem stream it
//! emits (docs/anomaly-detection.md, "Problems").
//!
//! [`ProblemOperator`] subscribes to the anomaly stream ([`SignalSink`]: it buffers the
//! anomalies of each closed window with their exemplars), takes the service graph's final edge
//! rows ([`ServiceGraphSink`]) and the RED operator's final rows ([`RedSink`]: registered after
//! the anomaly operator, it sees a window close after that window's anomalies arrived, and
//! advances the correlator to it). What the correlator releases goes out as one
//! [`ProblemBatch`] to a [`ProblemStream`] whose subscribers are the exporters' span encoders,
//! the `problems` tables, the webhook and the view. It sets `redwatch_problems_open` and must
//! not encode, store or send anything itself.

use super::{Correlator, Problem, ProblemParams, Released};
use crate::anomaly::{Anomaly, SignalSink, Signals};
use crate::red::{Exemplars, RedRow, RedSink, SeriesKey};
use crate::servicegraph::{EdgeRow, ServiceGraphSink};
use hashbrown::HashMap;
use redwatch_engine::telemetry::{Counter, Gauge, Registry};
use std::sync::{Arc, Mutex, RwLock};

/// What one correlator step released.
#[derive(Debug, Clone, Default)]
pub struct ProblemBatch {
    /// Anomaly records, each with its window's exemplars and its problem (None: it belongs to
    /// no problem — an unconfirmed blip, or past the member bound).
    pub anomalies: Vec<(Anomaly, Option<Exemplars>, Option<[u8; 16]>)>,
    /// Problems that opened, changed or resolved, each with the exemplars of its first
    /// cause's latest anomalous window (for span links).
    pub problems: Vec<(Problem, Option<Exemplars>)>,
}

impl ProblemBatch {
    pub fn is_empty(&self) -> bool {
        self.anomalies.is_empty() && self.problems.is_empty()
    }
}

/// A subscriber of the problem stream. Called on the operator task: it must not wait.
pub trait ProblemSink: Send + Sync {
    fn on_problems(&self, batch: &ProblemBatch);
}

/// The problem stream: a fan-out of [`ProblemBatch`]es to every subscriber, in order.
#[derive(Default)]
pub struct ProblemStream {
    subscribers: RwLock<Vec<Arc<dyn ProblemSink>>>,
}

impl ProblemStream {
    pub fn new() -> Arc<Self> {
        Arc::new(ProblemStream::default())
    }

    pub fn subscribe(&self, sink: Arc<dyn ProblemSink>) {
        if let Ok(mut s) = self.subscribers.write() {
            s.push(sink);
        }
    }
}

impl ProblemSink for ProblemStream {
    fn on_problems(&self, batch: &ProblemBatch) {
        if let Ok(subs) = self.subscribers.read() {
            for s in subs.iter() {
                s.on_problems(batch);
            }
        }
    }
}

struct State {
    correlator: Correlator,
    /// Exemplars of held anomaly windows, by (incident, window start).
    exemplars: HashMap<([u8; 16], u64), Exemplars>,
    /// The newest exemplars of each member incident (for the cause's span links).
    latest: HashMap<[u8; 16], Exemplars>,
    last_advance: u64,
}

/// The correlation operator; see the module comment.
pub struct ProblemOperator {
    state: Mutex<State>,
    output: Arc<dyn ProblemSink>,
    window_ns: u64,
    open: Arc<Gauge>,
    unattached: Arc<Counter>,
    unconfirmed: Arc<Counter>,
    late_evicted: Arc<Counter>,
}

impl ProblemOperator {
    /// An operator for primary windows of `window_ns`, emitting to `output`.
    pub fn new(window_ns: u64, output: Arc<dyn ProblemSink>, registry: &Registry) -> Arc<Self> {
        Arc::new(ProblemOperator {
            state: Mutex::new(State {
                correlator: Correlator::new(ProblemParams::new(window_ns)),
                exemplars: HashMap::new(),
                latest: HashMap::new(),
                last_advance: 0,
            }),
            output,
            window_ns,
            open: registry.gauge(
                "redwatch_problems_open",
                "Problems published and not yet resolved.",
                &[],
            ),
            unattached: registry.counter(
                "redwatch_problem_members_dropped_total",
                "Anomalies released without a problem because the member bound was reached.",
                &[],
            ),
            unconfirmed: registry.counter(
                "redwatch_problems_unconfirmed_total",
                "Pending problems that resolved unconfirmed (never published; their anomalies \
                 stay in the anomalies table, without a problem).",
                &[],
            ),
            late_evicted: registry.counter(
                "redwatch_problems_late_members_evicted_total",
                "Timed-out members of resolved problems forgotten at the bound (max_members) \
                 while a record of theirs could still come: such a record leaves in its \
                 incident's own trace instead of its problem's.",
                &[],
            ),
        })
    }

    /// Advances the correlator to `now` and emits what it released.
    fn advance(&self, now: u64) {
        let batch = {
            let Ok(mut st) = self.state.lock() else {
                return;
            };
            if now <= st.last_advance {
                return;
            }
            st.last_advance = now;
            let c = &st.correlator;
            let before = (c.dropped, c.unconfirmed, c.resolved_evicted());
            let step = st.correlator.advance(now);
            let c = &st.correlator;
            self.unattached.add(c.dropped - before.0);
            self.unconfirmed.add(c.unconfirmed - before.1);
            self.late_evicted.add(c.resolved_evicted() - before.2);
            self.open.set(st.correlator.open_problems() as f64);
            batch(&mut st, step.anomalies, step.problems)
        };
        if !batch.is_empty() {
            self.output.on_problems(&batch);
        }
    }
}

/// Attaches exemplars to what a step released; forgets those of finished incidents.
fn batch(st: &mut State, released: Vec<Released>, problems: Vec<Problem>) -> ProblemBatch {
    let mut out = ProblemBatch::default();
    for r in released {
        let x = st
            .exemplars
            .remove(&(r.anomaly.incident_id, r.anomaly.window_start));
        out.anomalies.push((r.anomaly, x, r.problem));
    }
    for p in problems {
        let x = p.cause().and_then(|c| {
            p.members
                .iter()
                .filter(|m| m.series.service_name == c.service && m.series.span_name == c.span_name)
                .find_map(|m| st.latest.get(&m.incident_id).copied())
        });
        if p.state == super::ProblemState::Resolved {
            for m in &p.members {
                st.latest.remove(&m.incident_id);
            }
        }
        out.problems.push((p, x));
    }
    // Bound the side tables with the correlator's own bound.
    if st.latest.len() > 2 * ProblemParams::new(1).max_members {
        st.latest.clear();
    }
    out
}

impl SignalSink for ProblemOperator {
    fn on_signals(&self, s: &Signals) {
        let Ok(mut st) = self.state.lock() else {
            return;
        };
        for (a, x) in s.anomalies.iter().zip(&s.exemplars) {
            if let Some(x) = x {
                st.exemplars.insert((a.incident_id, a.window_start), *x);
                st.latest.insert(a.incident_id, *x);
            }
            st.correlator.observe_anomaly(a.clone());
        }
    }

    fn on_series_expired(&self, series: &[Arc<SeriesKey>]) {
        if let Ok(mut st) = self.state.lock() {
            st.correlator.forget_series(series);
        }
    }
}

impl ServiceGraphSink for ProblemOperator {
    fn on_final(&self, rows: &[EdgeRow]) {
        let Ok(mut st) = self.state.lock() else {
            return;
        };
        for r in rows.iter().filter(|r| r.window_size_ns == self.window_ns) {
            let e = &r.edge;
            st.correlator.observe_edge(
                &e.client,
                &e.server,
                e.connection_type,
                r.end,
                r.total.requests,
                r.total.failed,
            );
        }
    }
}

impl RedSink for ProblemOperator {
    fn on_final(&self, rows: &[RedRow]) {
        let now = rows
            .iter()
            .filter(|r| r.primary && r.is_final && r.first)
            .map(|r| r.end)
            .max();
        if let Some(now) = now {
            self.advance(now);
        }
    }
}
