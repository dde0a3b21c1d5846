//! The session window operator: spans in, sessions per key value out (see the module above).

use super::key::{KeyRef, KeyValue};
use super::state::{Item, Limits, Offer, Session, SpecSessions};
use super::{SessionRow, SessionSink};
use crate::common::{due, spec_label, PROVISIONAL_EVERY_NS};
use crate::red::UNKNOWN_SERVICE;
use hashbrown::HashSet;
use redwatch_engine::config::{SessionKeySource, SessionSpec, WindowsConfig};
use redwatch_engine::model::{SpanBatch, StatusCode, UnixNanos};
use redwatch_engine::pipeline::{Batch, OpContext, Operator, StateStats};
use redwatch_engine::telemetry::{Counter, Gauge, Registry};
use std::sync::Arc;

/// Distinct service and span names kept interned at most (the set is rebuilt past it).
const MAX_INTERNED: usize = 100_000;

struct SpecCounters {
    overflow: Arc<Counter>,
    split: Arc<Counter>,
    merged: Arc<Counter>,
    without_key: Arc<Counter>,
    sessions: Arc<Gauge>,
}

struct Spec {
    key_name: Arc<str>,
    gap_label: Arc<str>,
    source: SessionKeySource,
    state: SpecSessions,
    counters: SpecCounters,
}

/// Groups spans into session windows, one state per `windows.extra` session spec.
pub struct SessionOperator {
    specs: Vec<Spec>,
    sinks: Vec<Arc<dyn SessionSink>>,
    names: HashSet<Arc<str>>,
    next_id: u64,
    late: Arc<Counter>,
    last_provisional: UnixNanos,
}

impl SessionOperator {
    /// An operator for `specs` (none: it does nothing; resolved by
    /// [`crate::layout::SpanSections::session_specs`]), with `windows`' allowed lateness.
    pub fn new(
        windows: &WindowsConfig,
        specs: Vec<SessionSpec>,
        sinks: Vec<Arc<dyn SessionSink>>,
        registry: &Registry,
    ) -> Self {
        let lateness = windows.allowed_lateness.as_nanos() as u64;
        let specs = specs
            .into_iter()
            .map(|s| {
                let gap = (s.gap.as_nanos() as u64).max(1);
                let gap_label = spec_label(gap);
                let labels = [("key", s.key_name.as_str()), ("gap", &*gap_label)];
                let c =
                    |name: &'static str, help: &'static str| registry.counter(name, help, &labels);
                let counters = SpecCounters {
                    overflow: c(
                        "redwatch_sessions_overflow_spans_total",
                        "Spans dropped because they would have opened a session past max_sessions.",
                    ),
                    split: c(
                        "redwatch_sessions_split_total",
                        "Sessions split because they would have grown past max_duration.",
                    ),
                    merged: c(
                        "redwatch_sessions_merged_total",
                        "Sessions absorbed into another one because a span bridged them.",
                    ),
                    without_key: c(
                        "redwatch_sessions_spans_without_key_total",
                        "Spans without a value for the session key (no attribute, zero trace id).",
                    ),
                    sessions: registry.gauge(
                        "redwatch_sessions_held",
                        "Sessions held in state (open, or final and within allowed_lateness).",
                        &labels,
                    ),
                };
                Spec {
                    key_name: Arc::from(s.key_name.as_str()),
                    gap_label,
                    source: s.key,
                    state: SpecSessions::new(Limits {
                        gap,
                        lateness,
                        max_duration: (s.max_duration.as_nanos() as u64).max(gap),
                        max_sessions: s.max_sessions.max(1),
                    }),
                    counters,
                }
            })
            .collect();
        SessionOperator {
            specs,
            sinks,
            names: HashSet::new(),
            next_id: 1,
            late: registry.counter(
                "redwatch_late_dropped_total",
                "Items dropped because their window was already purged.",
                &[("signal", "sessions")],
            ),
            last_provisional: 0,
        }
    }

    /// Whether any session spec is configured.
    pub fn is_active(&self) -> bool {
        !self.specs.is_empty()
    }

    /// Sessions held over all specs.
    pub fn session_count(&self) -> usize {
        self.specs.iter().map(|s| s.state.len()).sum()
    }

    fn intern(names: &mut HashSet<Arc<str>>, s: &str) -> Arc<str> {
        if let Some(a) = names.get(s) {
            return a.clone();
        }
        if names.len() >= MAX_INTERNED {
            names.clear();
        }
        let a: Arc<str> = Arc::from(s);
        names.insert(a.clone());
        a
    }

    /// Adds the spans of one batch to the sessions.
    pub fn process_spans(&mut self, batch: &SpanBatch) {
        if self.specs.is_empty() {
            return;
        }
        for span in &batch.spans {
            let service = batch
                .service_of(span)
                .map(|r| batch.str(r))
                .unwrap_or(UNKNOWN_SERVICE);
            let item = Item {
                event: span.end,
                start: span.start,
                weight: span.weight,
                error: span.status == StatusCode::Error,
                service: Self::intern(&mut self.names, service),
                name: Self::intern(&mut self.names, batch.str(span.name)),
                is_root: span.parent_span_id == [0; 8],
            };
            for spec in &mut self.specs {
                let key = match &spec.source {
                    SessionKeySource::TraceId if span.trace_id == [0; 16] => None,
                    SessionKeySource::TraceId => Some(KeyRef::Trace(span.trace_id)),
                    SessionKeySource::ServiceName => Some(KeyRef::Text(service)),
                    SessionKeySource::Attribute { dim_index, default } => {
                        match batch.dims_of(span).get(*dim_index).copied().flatten() {
                            Some(r) => Some(KeyRef::Text(batch.str(r))),
                            None => default.as_deref().map(KeyRef::Text),
                        }
                    }
                };
                let Some(key) = key else {
                    spec.counters.without_key.inc();
                    continue;
                };
                match spec.state.offer(key, &item, &mut self.next_id) {
                    Offer::Joined { absorbed } => spec.counters.merged.add(absorbed as u64),
                    Offer::Opened => {}
                    Offer::Split => spec.counters.split.inc(),
                    Offer::Late => self.late.inc(),
                    Offer::Overflow => spec.counters.overflow.inc(),
                }
            }
        }
    }

    fn row(spec: &Spec, key: &KeyValue, s: &Session, is_final: bool) -> SessionRow {
        let gap = spec.state.limits.gap;
        SessionRow {
            session_id: s.id,
            key_name: spec.key_name.clone(),
            gap: spec.gap_label.clone(),
            gap_ns: gap,
            key_value: key.display(),
            start: s.first_event,
            end: s.end(gap),
            spans: s.spans,
            errors: s.errors,
            duration_ms: s.duration_ms(),
            services: s.services.iter().cloned().collect(),
            services_truncated: s.services_truncated,
            root_span_name: s.root.as_ref().map(|r| r.name.clone()),
            is_final,
        }
    }

    /// Moves every spec to watermark `wm`: retractions, then final rows, then purged ids go to
    /// the sinks.
    pub fn advance(&mut self, wm: UnixNanos) {
        for spec in &mut self.specs {
            let adv = spec.state.advance(wm);
            if !adv.retracted.is_empty() {
                for s in &self.sinks {
                    s.on_retract(&adv.retracted);
                }
            }
            if !adv.finals.is_empty() {
                let rows: Vec<SessionRow> = adv
                    .finals
                    .iter()
                    .map(|(k, s)| Self::row(spec, k, s, true))
                    .collect();
                for s in &self.sinks {
                    s.on_final(&rows);
                }
            }
            if !adv.purged.is_empty() {
                for s in &self.sinks {
                    s.on_purged(&adv.purged);
                }
            }
            spec.counters.sessions.set(spec.state.len() as f64);
        }
    }

    /// Publishes the open sessions of every spec as provisional rows.
    pub fn publish_provisional(&self) {
        for spec in &self.specs {
            let mut rows = Vec::new();
            spec.state
                .for_each_open(|k, s| rows.push(Self::row(spec, k, s, false)));
            for s in &self.sinks {
                s.on_provisional(&spec.key_name, spec.state.limits.gap, &rows);
            }
        }
    }
}

impl Operator for SessionOperator {
    fn name(&self) -> &'static str {
        "sessions"
    }

    fn process_batch(&mut self, batch: &Batch, _ctx: &mut OpContext<'_>) {
        if let Batch::Spans(b) = batch {
            self.process_spans(b);
        }
    }

    fn on_watermark(&mut self, ctx: &mut OpContext<'_>) {
        self.advance(ctx.watermark);
    }

    fn on_tick(&mut self, ctx: &mut OpContext<'_>) {
        if due(&mut self.last_provisional, ctx.now, PROVISIONAL_EVERY_NS) {
            self.publish_provisional();
        }
        for spec in &self.specs {
            spec.counters.sessions.set(spec.state.len() as f64);
        }
    }

    fn snapshot(&self) -> StateStats {
        let mut st = StateStats::default();
        for spec in &self.specs {
            st.series += spec.state.key_count();
            st.entries += spec.state.len();
            st.bytes += spec.state.state_bytes();
        }
        st.bytes += self.names.iter().map(|n| n.len() + 24).sum::<usize>();
        st
    }
}
