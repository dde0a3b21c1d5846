//! The live view's open problems (docs/anomaly-detection.md, "Problems"): a subscriber of the
//! problem stream that keeps each open problem's newest snapshot, and their rendering — with
//! problems on, the demo shows these (with their first likely cause) instead of raw anomalies.

use redwatch_operators::problems::{Problem, ProblemBatch, ProblemSink, ProblemState};
use std::collections::HashMap;
use std::fmt::Write;
use std::sync::Mutex;

/// Open problems, by id.
#[derive(Debug, Default)]
pub struct ProblemBoard {
    open: Mutex<HashMap<[u8; 16], Problem>>,
}

impl ProblemBoard {
    /// The open problems, newest onset first (at most `n`), and how many are open.
    pub fn open(&self, n: usize) -> (Vec<Problem>, usize) {
        let Ok(open) = self.open.lock() else {
            return (Vec::new(), 0);
        };
        let mut v: Vec<Problem> = open.values().cloned().collect();
        v.sort_by(|a, b| b.onset.cmp(&a.onset).then(a.id.cmp(&b.id)));
        let total = v.len();
        v.truncate(n);
        (v, total)
    }
}

impl ProblemSink for ProblemBoard {
    fn on_problems(&self, b: &ProblemBatch) {
        let Ok(mut open) = self.open.lock() else {
            return;
        };
        for (p, _) in &b.problems {
            if p.state == ProblemState::Resolved {
                open.remove(&p.id);
            } else {
                open.insert(p.id, p.clone());
            }
        }
    }
}

/// `OPEN PROBLEMS (n)` and one block per problem: its first likely cause with the evidence, and
/// its one-line summary.
pub fn render(board: &ProblemBoard, n: usize) -> String {
    let (open, total) = board.open(n);
    let mut out = String::new();
    let _ = writeln!(out, "\nOPEN PROBLEMS ({total})");
    if open.is_empty() {
        out.push_str("  none\n");
    }
    for p in &open {
        let severity = p.members.iter().map(|m| m.severity).max();
        let _ = writeln!(
            out,
            "  {:<8} {}",
            severity.map_or("", |s| s.as_str()),
            p.summary
        );
        if let Some(c) = p.cause() {
            let _ = writeln!(
                out,
                "           likely cause: {} {} ({}) — {}",
                c.service, c.span_name, c.signal, c.evidence
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use redwatch_engine::model::SpanKind;
    use redwatch_operators::anomaly::Severity;
    use redwatch_operators::problems::{Cause, Member};
    use redwatch_operators::red::SeriesKey;
    use std::sync::Arc;

    fn problem(state: ProblemState) -> Problem {
        let series = Arc::new(SeriesKey {
            service_name: "payment".into(),
            span_name: "Charge".into(),
            kind: SpanKind::Server,
            dims: Box::new([]),
            overflow: false,
        });
        Problem {
            id: [3; 16],
            state,
            onset: 0,
            opened_at: 20,
            resolved_at: None,
            updated_at: 20,
            members: vec![Member {
                incident_id: [1; 16],
                series,
                signal: "latency_p99_ms".into(),
                onset: 0,
                last_end: 10,
                last_seen: 10,
                severity: Severity::Critical,
                peak_score: 1.0,
                min_p: 1e-12,
                windows: 2,
                value: 800.0,
                expected: 40.0,
                resolved: false,
            }],
            causes: vec![Cause {
                service: "payment".into(),
                span_name: "Charge".into(),
                kind: SpanKind::Server,
                signal: "latency_p99_ms".into(),
                points: 5.0,
                evidence: "alarmed first".into(),
            }],
            summary: "payment Charge (server) latency_p99_ms 800 ms (expected 40 ms)".into(),
        }
    }

    #[test]
    fn open_problems_show_with_their_cause_until_resolved() {
        let b = ProblemBoard::default();
        let batch = |p| ProblemBatch {
            anomalies: Vec::new(),
            problems: vec![(p, None)],
        };
        b.on_problems(&batch(problem(ProblemState::Open)));
        let text = render(&b, 5);
        assert!(text.contains("OPEN PROBLEMS (1)"), "{text}");
        assert!(
            text.contains("critical payment Charge (server) latency_p99_ms 800 ms"),
            "{text}"
        );
        assert!(text.contains("likely cause: payment Charge (latency_p99_ms) — alarmed first"));
        b.on_problems(&batch(problem(ProblemState::Resolved)));
        assert!(render(&b, 5).contains("OPEN PROBLEMS (0)\n  none"));
    }
}
