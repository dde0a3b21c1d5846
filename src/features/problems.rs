//! Problems (docs/anomaly-detection.md, "Problems"): the correlation operator on the anomaly
//! stream and the service graph, and the subscribers of its problem stream this feature owns —
//! the `problems` and `problem_members` tables, the live view's open problems, the problem
//! traces on every span destination (the OTLP exporter, the Kafka sink's spans topic: then the
//! anomaly spans go out in their problem's trace) and the webhook.

use crate::assembly::{Assembly, Stage};
use crate::config::Config;
use crate::view::ProblemBoard;
use anyhow::Context;
use redwatch_connectors::otlp_exporter::problem_spans::ProblemSpans;
use redwatch_connectors::otlp_exporter::signal_spans::{SignalSpans, SpanDestination};
use redwatch_connectors::webhook;
use redwatch_operators::problems::{ProblemOperator, ProblemStream};
use redwatch_queries::anomalies::SignalTableSettings;
use redwatch_queries::catalog;
use redwatch_queries::problems::{ProblemMembersTable, ProblemsTable};
use std::sync::Arc;

/// The anomaly stream's spans for `destination` (an exporter calls this before the problems
/// feature is installed): with problems on, predictions only — the anomaly spans are sent by the
/// problem stream, in their problem's trace.
pub fn signal_spans<D: SpanDestination>(cfg: &Config, destination: D) -> SignalSpans<D> {
    let dims = cfg.red.dimensions.iter().map(|d| d.name.clone()).collect();
    let spans = SignalSpans::new(destination, dims);
    if carries_anomaly_spans(cfg) {
        spans.predictions_only()
    } else {
        spans
    }
}

/// Whether the problem stream sends the anomaly spans (in problem traces).
fn carries_anomaly_spans(cfg: &Config) -> bool {
    cfg.problems.enabled && cfg.anomaly.enabled
}

pub fn install(asm: &mut Assembly<'_>) -> anyhow::Result<()> {
    let cfg = asm.cfg;
    let settings = SignalTableSettings {
        retention_ns: cfg.sql.retention.as_nanos() as u64,
        ..Default::default()
    };
    let problems = ProblemsTable::new(settings);
    let members = ProblemMembersTable::new(settings);
    asm.table(catalog::PROBLEMS.with(problems.clone()));
    asm.table(catalog::PROBLEM_MEMBERS.with(members.clone()));
    if !carries_anomaly_spans(cfg) {
        return Ok(());
    }
    let stream = ProblemStream::new();
    stream.subscribe(problems);
    stream.subscribe(members);
    let board = Arc::new(ProblemBoard::default());
    asm.view.set_problem_board(board.clone());
    stream.subscribe(board);
    // The same problem traces, with the same encoding, to every destination of signal spans.
    for dest in &asm.span_destinations {
        let dims = cfg.red.dimensions.iter().map(|d| d.name.clone()).collect();
        stream.subscribe(Arc::new(ProblemSpans::new(dest.clone(), dims)));
    }
    if cfg.exporters.webhook.url.is_some() {
        let (hook, task) = webhook::start(
            &cfg.exporters.webhook,
            &asm.registry,
            asm.cancel(Stage::Exporters),
        )
        .context("webhook exporter")?;
        asm.on_start(Stage::Exporters, move |s| {
            s.spawn(Stage::Exporters, async move {
                let _ = task.await;
                Ok(())
            });
            Box::pin(async { Ok(()) })
        });
        stream.subscribe(Arc::new(hook));
    }
    let window_ns = cfg.windows.size.as_nanos() as u64;
    let op = ProblemOperator::new(window_ns, stream, &asm.registry);
    asm.anomaly_stream.subscribe(op.clone());
    asm.service_graph_sink(op.clone());
    // After the anomaly operator's RED sink: a window's anomalies are in before it advances.
    asm.red_sink(op);
    Ok(())
}
