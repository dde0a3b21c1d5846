//! The spans of the problem stream (docs/anomaly-detection.md, "Problems"): one trace per
//! problem, whose trace id is the problem id —
//!
//! - the root span `problem_detected` (sent when the problem opens; start = its onset, end = its
//!   publication) with `problem.id`, `problem.cause.service`, `problem.cause.span`,
//!   `problem.cause.signal`, `problem.members`, `problem.summary`, the first cause's evidence,
//!   and links to the exemplar spans of the cause's window;
//! - each member incident's `anomaly_detected` spans: the incident's first span is a child of
//!   the root, its later windows children of that first span (as in an incident trace);
//! - a `problem_resolved` child when it resolves, with the final members and causes.
//!
//! Anomalies that belong to no problem keep their own incident trace. It only encodes: the
//! queue, batching and retries are the exporter's.

use super::signal_spans::{
    digest, exemplar_links, kv_f64, kv_i64, kv_str, nonzero_id, SpanDestination, SpanEncoder,
};
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use opentelemetry_proto::tonic::trace::v1::{Span, Status};
use redwatch_operators::problems::{Problem, ProblemBatch, ProblemSink, ProblemState};
use redwatch_operators::red::Exemplars;

/// Name of a problem's root span.
pub const PROBLEM_SPAN: &str = "problem_detected";
/// Name of the span that marks a problem resolved.
pub const PROBLEM_RESOLVED_SPAN: &str = "problem_resolved";

/// The root span id of problem `id`.
pub fn root_span_id(id: &[u8; 16]) -> [u8; 8] {
    nonzero_id(&digest(&[id, b"problem_detected"]))
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// A subscriber of the problem stream that sends its spans to `D`.
pub struct ProblemSpans<D> {
    destination: D,
    encoder: SpanEncoder,
}

impl<D: SpanDestination> ProblemSpans<D> {
    /// `dims`: the names of the configured RED dimensions, in order.
    pub fn new(destination: D, dims: Vec<String>) -> Self {
        ProblemSpans {
            destination,
            encoder: SpanEncoder::new(dims),
        }
    }

    fn send(&self, span: Span) {
        self.destination
            .export_spans(self.encoder.resource_spans(span));
    }
}

impl<D: SpanDestination> ProblemSink for ProblemSpans<D> {
    fn on_problems(&self, b: &ProblemBatch) {
        // Roots first, so a backend sees the parent before (or with) its children.
        for (p, x) in &b.problems {
            match p.state {
                ProblemState::Open => self.send(problem_span(p, x.as_ref(), PROBLEM_SPAN)),
                ProblemState::Resolved => {
                    self.send(problem_span(p, None, PROBLEM_RESOLVED_SPAN));
                }
                ProblemState::Ongoing => {}
            }
        }
        for (a, x, problem) in &b.anomalies {
            let mut span = self.encoder.anomaly_span(a, x.as_ref());
            if let Some(pid) = problem {
                span.trace_id = pid.to_vec();
                if span.parent_span_id.is_empty() {
                    span.parent_span_id = root_span_id(pid).to_vec();
                }
            }
            self.send(span);
        }
    }
}

/// The root (`problem_detected`) or resolution (`problem_resolved`) span of `p`.
fn problem_span(p: &Problem, cause_exemplars: Option<&Exemplars>, name: &str) -> Span {
    let root = root_span_id(&p.id);
    let resolved = name == PROBLEM_RESOLVED_SPAN;
    let mut attrs = vec![
        kv_str("problem.id", &hex(&p.id)),
        kv_str("problem.state", p.state.as_str()),
        kv_i64("problem.members", p.members.len() as i64),
        kv_str("problem.summary", &p.summary),
        kv_str(
            "problem.services",
            &p.services()
                .iter()
                .map(|s| s.to_string())
                .collect::<Vec<_>>()
                .join(", "),
        ),
    ];
    if let Some(c) = p.cause() {
        attrs.push(kv_str("problem.cause.service", &c.service));
        attrs.push(kv_str("problem.cause.span", &c.span_name));
        attrs.push(kv_str("problem.cause.span_kind", c.kind.as_label()));
        attrs.push(kv_str("problem.cause.signal", &c.signal));
        attrs.push(kv_str("problem.cause.evidence", &c.evidence));
        attrs.push(kv_f64("problem.cause.points", c.points));
    }
    let causes: Vec<String> = p
        .causes
        .iter()
        .take(3)
        .map(|c| format!("{} {} {}", c.service, c.span_name, c.signal))
        .collect();
    attrs.push(kv_str("problem.causes", &causes.join("; ")));
    let (span_id, parent, start, end) = if resolved {
        let id = nonzero_id(&digest(&[&p.id, b"problem_resolved"]));
        let at = p.resolved_at.unwrap_or(p.updated_at);
        (id, root.to_vec(), at, at)
    } else {
        (root, Vec::new(), p.onset, p.opened_at.max(p.onset))
    };
    Span {
        trace_id: p.id.to_vec(),
        span_id: span_id.to_vec(),
        parent_span_id: parent,
        name: name.to_string(),
        kind: SpanKind::Internal as i32,
        start_time_unix_nano: start,
        end_time_unix_nano: end,
        attributes: attrs,
        links: cause_exemplars.map(exemplar_links).unwrap_or_default(),
        status: Some(Status::default()),
        ..Default::default()
    }
}
