//! The `problems` and `problem_members` tables: one partition per batch of published problem
//! snapshots (open, changed, resolved), bounded by rows and age like the `anomalies` table.
//!
//! Appended to on the operator task; a query takes a snapshot and never blocks the appender.
//! This module only stores and serves rows: correlation and export live elsewhere.

use crate::anomalies::{hex, ms, service_range, Bounded, SignalTableSettings};
use crate::schema;
use crate::table::{Partition, PartitionSource, PruneFilter};
use arrow::array::{
    ArrayRef, BooleanBuilder, Float64Builder, Int64Builder, StringBuilder,
    TimestampMillisecondBuilder,
};
use arrow::record_batch::RecordBatch;
use redwatch_operators::anomaly::Severity;
use redwatch_operators::problems::{Problem, ProblemBatch, ProblemSink};
use std::fmt::Write;
use std::sync::Arc;

/// The `problems` table.
#[derive(Debug)]
pub struct ProblemsTable {
    inner: Bounded,
}

/// The `problem_members` table.
#[derive(Debug)]
pub struct ProblemMembersTable {
    inner: Bounded,
}

fn ts() -> TimestampMillisecondBuilder {
    TimestampMillisecondBuilder::new().with_timezone("UTC")
}

/// Stores one batch of problem snapshots: pruned by `updated_at` and by the services named.
fn push<'a>(
    table: &Bounded,
    batch: RecordBatch,
    problems: &[Problem],
    services: impl Iterator<Item = &'a str>,
) {
    let lo = problems.iter().map(|p| p.updated_at).min().unwrap_or(0);
    let hi = problems.iter().map(|p| p.updated_at).max().unwrap_or(0);
    let p = Partition {
        batch,
        time_ranges: vec![("updated_at", lo as i128, hi as i128)],
        service_range: service_range(services),
    };
    table.push(p, hi);
}

impl ProblemsTable {
    pub fn new(settings: SignalTableSettings) -> Arc<Self> {
        Arc::new(ProblemsTable {
            inner: Bounded::new(settings),
        })
    }

    pub fn rows(&self) -> usize {
        self.inner.rows()
    }

    /// Appends one partition holding these snapshots.
    pub fn append(&self, problems: &[Problem]) {
        if problems.is_empty() {
            return;
        }
        let (mut updated, mut onset, mut opened, mut resolved) = (ts(), ts(), ts(), ts());
        let mut text: Vec<StringBuilder> = (0..10).map(|_| StringBuilder::new()).collect();
        let mut members = Int64Builder::new();
        for p in problems {
            updated.append_value(ms(p.updated_at));
            onset.append_value(ms(p.onset));
            opened.append_value(ms(p.opened_at));
            resolved.append_option(p.resolved_at.map(ms));
            let severity = p.members.iter().map(|m| m.severity).max();
            let c = p.cause();
            let causes = p
                .causes
                .iter()
                .enumerate()
                .fold(String::new(), |mut s, (i, c)| {
                    let _ = writeln!(
                        s,
                        "{}. {} {} ({}) {}: {}",
                        i + 1,
                        c.service,
                        c.span_name,
                        c.kind.as_label(),
                        c.signal,
                        c.evidence
                    );
                    s
                });
            let services: Vec<String> = p.services().iter().map(|s| s.to_string()).collect();
            text[0].append_value(hex(&p.id));
            text[1].append_value(p.state.as_str());
            text[2].append_value(severity.unwrap_or(Severity::Low).as_str());
            text[3].append_option(c.map(|c| &*c.service));
            text[4].append_option(c.map(|c| &*c.span_name));
            text[5].append_option(c.map(|c| c.kind.as_label()));
            text[6].append_option(c.map(|c| &*c.signal));
            text[7].append_option(c.map(|c| &c.evidence));
            text[8].append_value(causes.trim_end());
            text[9].append_value(services.join(", "));
            members.append_value(p.members.len() as i64);
        }
        let mut summary = StringBuilder::new();
        for p in problems {
            summary.append_value(&p.summary);
        }
        let mut t = text
            .into_iter()
            .map(|mut b| Arc::new(b.finish()) as ArrayRef);
        let mut next = || {
            t.next()
                .unwrap_or_else(|| Arc::new(StringBuilder::new().finish()))
        };
        let (id, state, sev) = (next(), next(), next());
        let (cs, cspan, ckind, csig, cev, causes, services) =
            (next(), next(), next(), next(), next(), next(), next());
        let cols: Vec<ArrayRef> = vec![
            Arc::new(updated.finish()),
            id,
            state,
            Arc::new(onset.finish()),
            Arc::new(opened.finish()),
            Arc::new(resolved.finish()),
            sev,
            cs,
            cspan,
            ckind,
            csig,
            cev,
            causes,
            Arc::new(members.finish()),
            services,
            Arc::new(summary.finish()),
        ];
        let Ok(batch) = RecordBatch::try_new(schema::PROBLEMS.clone(), cols) else {
            return;
        };
        let causes = problems
            .iter()
            .filter_map(|p| p.cause().map(|c| &*c.service));
        push(&self.inner, batch, problems, causes);
    }
}

/// Fed by the problem stream.
impl ProblemSink for ProblemsTable {
    fn on_problems(&self, b: &ProblemBatch) {
        let snaps: Vec<Problem> = b.problems.iter().map(|(p, _)| p.clone()).collect();
        self.append(&snaps);
    }
}

/// Fed by the problem stream.
impl ProblemSink for ProblemMembersTable {
    fn on_problems(&self, b: &ProblemBatch) {
        let snaps: Vec<Problem> = b.problems.iter().map(|(p, _)| p.clone()).collect();
        self.append(&snaps);
    }
}

impl PartitionSource for ProblemsTable {
    fn snapshot(&self, filter: &PruneFilter) -> Vec<RecordBatch> {
        self.inner.snapshot(filter)
    }
}

impl ProblemMembersTable {
    pub fn new(settings: SignalTableSettings) -> Arc<Self> {
        Arc::new(ProblemMembersTable {
            inner: Bounded::new(settings),
        })
    }

    pub fn rows(&self) -> usize {
        self.inner.rows()
    }

    /// Appends one partition holding the members of these snapshots.
    pub fn append(&self, problems: &[Problem]) {
        let n: usize = problems.iter().map(|p| p.members.len()).sum();
        if n == 0 {
            return;
        }
        let (mut updated, mut start, mut last) = (ts(), ts(), ts());
        let mut s: Vec<StringBuilder> = (0..7).map(|_| StringBuilder::new()).collect();
        let (mut value, mut expected) = (Float64Builder::new(), Float64Builder::new());
        let mut resolved = BooleanBuilder::new();
        let mut rank = Int64Builder::new();
        for p in problems {
            for m in &p.members {
                updated.append_value(ms(p.updated_at));
                s[0].append_value(hex(&p.id));
                s[1].append_value(hex(&m.incident_id));
                s[2].append_value(&*m.series.service_name);
                s[3].append_value(&*m.series.span_name);
                s[4].append_value(m.series.kind.as_label());
                s[5].append_value(&*m.signal);
                start.append_value(ms(m.onset));
                last.append_value(ms(m.last_end));
                s[6].append_value(m.severity.as_str());
                value.append_value(m.value);
                expected.append_value(m.expected);
                resolved.append_value(m.resolved);
                let r = p.causes.iter().position(|c| {
                    c.service == m.series.service_name
                        && c.span_name == m.series.span_name
                        && c.kind == m.series.kind
                });
                rank.append_option(r.map(|r| r as i64 + 1));
            }
        }
        let mut t = s.into_iter().map(|mut b| Arc::new(b.finish()) as ArrayRef);
        let mut next = || {
            t.next()
                .unwrap_or_else(|| Arc::new(StringBuilder::new().finish()))
        };
        let (pid, iid, svc, span, kind, sig, sev) =
            (next(), next(), next(), next(), next(), next(), next());
        let cols: Vec<ArrayRef> = vec![
            Arc::new(updated.finish()),
            pid,
            iid,
            svc,
            span,
            kind,
            sig,
            Arc::new(start.finish()),
            Arc::new(last.finish()),
            sev,
            Arc::new(value.finish()),
            Arc::new(expected.finish()),
            Arc::new(resolved.finish()),
            Arc::new(rank.finish()),
        ];
        let Ok(batch) = RecordBatch::try_new(schema::PROBLEM_MEMBERS.clone(), cols) else {
            return;
        };
        let members = problems
            .iter()
            .flat_map(|p| p.members.iter().map(|m| &*m.series.service_name));
        push(&self.inner, batch, problems, members);
    }
}

impl PartitionSource for ProblemMembersTable {
    fn snapshot(&self, filter: &PruneFilter) -> Vec<RecordBatch> {
        self.inner.snapshot(filter)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Array, AsArray};
    use arrow::datatypes::Int64Type;
    use redwatch_engine::model::SpanKind;
    use redwatch_operators::problems::{Cause, Member, ProblemState};
    use redwatch_operators::red::SeriesKey;

    fn problem(state: ProblemState, at: u64) -> Problem {
        let series = |svc: &str, kind| {
            Arc::new(SeriesKey {
                service_name: Arc::from(svc),
                span_name: Arc::from("op"),
                kind,
                dims: Box::new([]),
                overflow: false,
            })
        };
        let member = |svc: &str, kind, id: u8| Member {
            incident_id: [id; 16],
            series: series(svc, kind),
            signal: Arc::from("latency_p99_ms"),
            onset: 10_000_000_000,
            last_end: 20_000_000_000,
            last_seen: at,
            severity: Severity::High,
            peak_score: 1.0,
            min_p: 1e-12,
            windows: 2,
            value: 500.0,
            expected: 40.0,
            resolved: state == ProblemState::Resolved,
        };
        Problem {
            id: [0xab; 16],
            state,
            onset: 10_000_000_000,
            opened_at: 30_000_000_000,
            resolved_at: (state == ProblemState::Resolved).then_some(at),
            updated_at: at,
            members: vec![
                member("payment", SpanKind::Server, 1),
                member("checkout", SpanKind::Client, 2),
            ],
            causes: vec![Cause {
                service: Arc::from("payment"),
                span_name: Arc::from("op"),
                kind: SpanKind::Server,
                signal: Arc::from("latency_p99_ms"),
                points: 5.0,
                evidence: "deepest".into(),
            }],
            summary: "payment op (server) latency_p99_ms 500 ms".into(),
        }
    }

    #[test]
    fn snapshots_become_rows_with_their_cause_and_members() {
        let p = ProblemsTable::new(SignalTableSettings::default());
        let m = ProblemMembersTable::new(SignalTableSettings::default());
        let snaps = [
            problem(ProblemState::Open, 30_000_000_000),
            problem(ProblemState::Resolved, 90_000_000_000),
        ];
        p.append(&snaps);
        m.append(&snaps);
        assert_eq!((p.rows(), m.rows()), (2, 4));
        let b = &p.snapshot(&PruneFilter::default())[0];
        let col = |name: &str| b.column(b.schema().index_of(name).unwrap()).clone();
        let state = col("state");
        let state = state.as_string::<i32>();
        assert_eq!((state.value(0), state.value(1)), ("open", "resolved"));
        assert_eq!(col("cause_service").as_string::<i32>().value(0), "payment");
        assert_eq!(
            col("problem_id").as_string::<i32>().value(0),
            "ab".repeat(16)
        );
        assert_eq!(
            col("causes").as_string::<i32>().value(0),
            "1. payment op (SPAN_KIND_SERVER) latency_p99_ms: deepest"
        );
        assert_eq!(
            col("services").as_string::<i32>().value(0),
            "payment, checkout"
        );
        assert!(col("resolved_at").is_null(0) && !col("resolved_at").is_null(1));
        let b = &m.snapshot(&PruneFilter::default())[0];
        let rank = b.column(b.schema().index_of("cause_rank").unwrap());
        let rank = rank.as_primitive::<Int64Type>();
        assert_eq!((rank.value(0), rank.is_null(1)), (1, true));
    }
}
