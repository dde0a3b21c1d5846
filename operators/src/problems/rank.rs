//! Ranking a problem's likely causes: one candidate per member series, ranked by points whose
//! every part is said in words (docs/anomaly-detection.md, "Problems").
//!
//! - deepest along the call path (3 points): the series has no anomalous callee — a server
//!   span whose service calls no anomalous service and has no anomalous outbound (client) span,
//!   or a client span whose service calls no anomalous service (it waits on a database or an
//!   uninstrumented peer); only latency and error anomalies make a callee or an outbound span
//!   anomalous here (a rate change follows the traffic, it explains no caller's latency);
//! - onset order (up to 1 point): 1 for alarming in the problem's first window, half a point
//!   less for each window later;
//! - explanation (up to 1 point): the largest share of a caller's change (same signal) that
//!   this series' own change accounts for;
//! - an error burst on an edge into it (or out of it to a database / virtual node): 0.5;
//! - the strongest member score, as a tie-break (up to 0.1).

use super::graph::LiveGraph;
use super::{Cause, Member};
use crate::red::SeriesKey;
use redwatch_engine::model::SpanKind;
use std::fmt::Write;
use std::sync::Arc;

/// Signals whose changes add up along a call path (a callee's extra milliseconds or errors are
/// its caller's too).
const ADDITIVE: [&str; 3] = ["latency_p50_ms", "latency_p99_ms", "error_ratio"];

/// One member series with its members.
struct Candidate<'a> {
    series: &'a Arc<SeriesKey>,
    members: Vec<&'a Member>,
}

impl Candidate<'_> {
    fn onset(&self) -> u64 {
        self.members.iter().map(|m| m.onset).min().unwrap_or(0)
    }

    fn outbound(&self) -> bool {
        is_outbound(self.series.kind)
    }

    /// The member that speaks for the series: earliest, then strongest.
    fn lead(&self) -> &Member {
        let mut best = self.members[0];
        for m in &self.members[1..] {
            if (m.onset, -m.peak_score) < (best.onset, -best.peak_score) {
                best = m;
            }
        }
        best
    }

    fn change_of(&self, signal: &str) -> Option<f64> {
        self.members
            .iter()
            .filter(|m| &*m.signal == signal)
            .map(|m| m.change())
            .fold(None, |acc, c| Some(acc.map_or(c, |a: f64| a.max(c))))
    }

    /// Whether a latency or error member speaks for it: only those travel up a call path (a
    /// rate change of an outbound span follows the traffic its service gets; it explains no
    /// caller's latency).
    fn propagates(&self) -> bool {
        self.members.iter().any(|m| ADDITIVE.contains(&&*m.signal))
    }

    fn label(&self) -> String {
        series_label(self.series)
    }
}

fn is_outbound(kind: SpanKind) -> bool {
    matches!(kind, SpanKind::Client | SpanKind::Producer)
}

/// `service span (kind)`.
pub(super) fn series_label(s: &SeriesKey) -> String {
    let kind = match s.kind {
        SpanKind::Server => "server",
        SpanKind::Client => "client",
        SpanKind::Producer => "producer",
        SpanKind::Consumer => "consumer",
        SpanKind::Internal => "internal",
        SpanKind::Unspecified => "unspecified",
    };
    format!("{} {} ({kind})", s.service_name, s.span_name)
}

/// A value of `signal` for people: `812 ms`, `31.0%`, `12.5/s`.
pub(super) fn fmt_value(signal: &str, v: f64) -> String {
    if signal.ends_with("_ms") {
        format!("{v:.0} ms")
    } else if signal.ends_with("_ratio") {
        format!("{:.1}%", v * 100.0)
    } else if signal == "request_rate" {
        format!("{v:.1}/s")
    } else {
        format!("{v:.4}")
    }
}

/// The likely causes of a problem with these members, most likely first: one per member
/// series. `onset` is the problem's onset, `window_ns` the window width.
pub fn rank_causes(
    members: &[Member],
    graph: &LiveGraph,
    onset: u64,
    window_ns: u64,
) -> Vec<Cause> {
    let mut cands: Vec<Candidate> = Vec::new();
    for m in members {
        match cands.iter_mut().find(|c| *c.series == m.series) {
            Some(c) => c.members.push(m),
            None => cands.push(Candidate {
                series: &m.series,
                members: vec![m],
            }),
        }
    }
    let mut out: Vec<(Cause, u64)> = cands
        .iter()
        .map(|c| (judge(c, &cands, graph, onset, window_ns), c.onset()))
        .collect();
    out.sort_by(|(a, ao), (b, bo)| {
        b.points
            .total_cmp(&a.points)
            .then(ao.cmp(bo))
            .then_with(|| a.service.cmp(&b.service))
            .then_with(|| a.span_name.cmp(&b.span_name))
    });
    out.into_iter().map(|(c, _)| c).collect()
}

/// Points and evidence for one candidate.
fn judge(c: &Candidate, all: &[Candidate], graph: &LiveGraph, onset: u64, window_ns: u64) -> Cause {
    let service = &*c.series.service_name;
    let lead = c.lead();
    let mut points = 0.0;
    let mut why = String::new();

    let lag = c.onset().saturating_sub(onset) / window_ns.max(1);
    points += (1.0 - 0.5 * lag as f64).max(0.0);
    if lag == 0 {
        let _ = write!(why, "alarmed first ({})", lead.signal);
    } else {
        let _ = write!(why, "alarmed {lag} window(s) after the first");
    }

    let callees: Vec<&str> = all
        .iter()
        .filter(|o| o.propagates())
        .map(|o| &*o.series.service_name)
        .filter(|s| *s != service && graph.calls(service, s))
        .collect();
    let own_outbound = all
        .iter()
        .any(|o| &*o.series.service_name == service && o.outbound() && o.propagates());
    if let Some(first) = callees.first() {
        let _ = write!(why, "; calls anomalous {first}");
    } else if !c.outbound() && own_outbound {
        why.push_str("; its own outbound calls are anomalous");
    } else {
        points += 3.0;
        why.push_str("; deepest on the call path (no anomalous callee)");
    }

    if let Some((share, text)) = explained(c, all, graph) {
        points += share;
        let _ = write!(why, "; {text}");
    }

    let since = onset.saturating_sub(window_ns);
    let bursts = if c.outbound() {
        graph.bursts_out_to_uninstrumented(service, since)
    } else {
        graph.bursts_into(service, since)
    };
    if let Some(b) = bursts.iter().max_by(|a, b| a.ratio.total_cmp(&b.ratio)) {
        points += 0.5;
        let _ = write!(
            why,
            "; error burst on {} -> {}: {:.1}% of calls failed (usual {:.1}%)",
            b.client,
            b.server,
            100.0 * b.ratio,
            100.0 * b.baseline
        );
    }
    let peak = c.members.iter().map(|m| m.peak_score).fold(0.0, f64::max);
    points += 0.1 * peak.clamp(0.0, 1.0);

    Cause {
        service: c.series.service_name.clone(),
        span_name: c.series.span_name.clone(),
        kind: c.series.kind,
        signal: lead.signal.clone(),
        points,
        evidence: why,
    }
}

/// The largest share of a caller's change that `c` accounts for, with its description. The
/// callers of a server span are the client spans of services that call its service; the
/// callers of a client span are its own service's other spans.
fn explained(c: &Candidate, all: &[Candidate], graph: &LiveGraph) -> Option<(f64, String)> {
    let service = &*c.series.service_name;
    let mut best: Option<(f64, String)> = None;
    for caller in all {
        let cs = &*caller.series.service_name;
        let is_caller = if c.outbound() {
            cs == service && !caller.outbound()
        } else {
            cs != service && caller.outbound() && graph.calls(cs, service)
        };
        if !is_caller {
            continue;
        }
        for sig in ADDITIVE {
            let (Some(mine), Some(theirs)) = (c.change_of(sig), caller.change_of(sig)) else {
                continue;
            };
            if mine <= 0.0 || theirs <= 0.0 {
                continue;
            }
            let share = (mine / theirs).min(1.0);
            if best.as_ref().is_none_or(|(b, _)| share > *b) {
                let text = format!(
                    "explains {:.0}% of {}'s {sig} rise ({} of {})",
                    100.0 * share,
                    caller.label(),
                    fmt_value(sig, mine),
                    fmt_value(sig, theirs)
                );
                best = Some((share, text));
            }
        }
    }
    best
}
