//! The live RED view of `redwatch demo`: keeps the latest result of every series of the primary
//! window spec and renders the top series as a terminal table or a plain-text summary.

use redwatch_engine::model::UnixNanos;
use redwatch_engine::telemetry::Registry;
use redwatch_operators::anomaly::{Anomaly, IncidentState, SignalSink, Signals};
use redwatch_operators::forecast::Prediction;
use redwatch_operators::red::{RedRow, RedSink, SeriesKey};
use std::collections::HashMap;
use std::fmt::Write;
use std::sync::{Arc, Mutex};

/// One line of the view.
#[derive(Debug, Clone, PartialEq)]
pub struct ViewRow {
    pub series: Arc<SeriesKey>,
    pub window_start: UnixNanos,
    pub is_final: bool,
    pub rate_per_s: f64,
    pub error_ratio: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
}

impl ViewRow {
    fn from_row(r: &RedRow, now: UnixNanos) -> ViewRow {
        // A provisional window's rate is over the part of it that has elapsed.
        let secs = if r.is_final {
            r.window_size_ns as f64 / 1e9
        } else {
            (now.saturating_sub(r.start).min(r.window_size_ns) as f64 / 1e9).max(1.0)
        };
        ViewRow {
            series: r.series.clone(),
            window_start: r.start,
            is_final: r.is_final,
            rate_per_s: r.total.total_calls() / secs,
            error_ratio: r.error_ratio(),
            p50_ms: r.total.quantile_ms(0.5).unwrap_or(0.0),
            p99_ms: r.total.quantile_ms(0.99).unwrap_or(0.0),
        }
    }
}

#[derive(Default)]
struct State {
    finals: HashMap<Arc<SeriesKey>, ViewRow>,
    provisional: HashMap<Arc<SeriesKey>, ViewRow>,
}

mod problems;
pub use problems::ProblemBoard;

/// A [`RedSink`] that remembers the newest row per series.
#[derive(Default)]
pub struct LiveView {
    state: Mutex<State>,
    /// Open incidents and forecasts, when anomaly detection runs.
    anomaly_board: std::sync::OnceLock<Arc<AnomalyBoard>>,
    /// Open problems, when correlation runs (then shown instead of raw anomalies).
    problem_board: std::sync::OnceLock<Arc<ProblemBoard>>,
}

impl LiveView {
    pub fn new() -> Arc<Self> {
        Arc::new(LiveView::default())
    }

    /// The `n` busiest series: each series' newest final window, or its open window when no
    /// window has closed yet.
    pub fn top(&self, n: usize) -> Vec<ViewRow> {
        let Ok(st) = self.state.lock() else {
            return Vec::new();
        };
        let mut rows: Vec<ViewRow> = st.finals.values().cloned().collect();
        for (k, p) in &st.provisional {
            if !st.finals.contains_key(k) {
                rows.push(p.clone());
            }
        }
        rows.sort_by(|a, b| {
            b.rate_per_s
                .total_cmp(&a.rate_per_s)
                .then_with(|| a.series.cmp(&b.series))
        });
        rows.truncate(n);
        rows
    }

    /// Shows `board`'s open anomalies and forecasts (set once, by the engine).
    pub fn set_anomaly_board(&self, board: Arc<AnomalyBoard>) {
        let _ = self.anomaly_board.set(board);
    }

    /// Shows `board`'s open problems instead of raw anomalies (set once, by the engine).
    pub fn set_problem_board(&self, board: Arc<ProblemBoard>) {
        let _ = self.problem_board.set(board);
    }

    /// The open-problems (or, with problems off, open-anomalies) and forecasts section (""
    /// when detection is off).
    pub fn render_anomalies(&self, n: usize) -> String {
        match (self.problem_board.get(), self.anomaly_board.get()) {
            (Some(p), Some(b)) => problems::render(p, n) + &render_forecasts(b, n),
            (_, Some(b)) => render_anomalies(b, n),
            _ => String::new(),
        }
    }

    /// Number of series with a closed window.
    pub fn final_series(&self) -> usize {
        self.state.lock().map(|s| s.finals.len()).unwrap_or(0)
    }
}

impl RedSink for LiveView {
    fn on_final(&self, rows: &[RedRow]) {
        let Ok(mut st) = self.state.lock() else {
            return;
        };
        for r in rows.iter().filter(|r| r.primary) {
            let newer = st
                .finals
                .get(&r.series)
                .is_none_or(|old| old.window_start <= r.start);
            if newer {
                st.finals
                    .insert(r.series.clone(), ViewRow::from_row(r, r.end));
            }
        }
    }

    fn on_provisional(&self, _size: u64, rows: &[RedRow]) {
        let now = redwatch_engine::time::wall_clock();
        let Ok(mut st) = self.state.lock() else {
            return;
        };
        if rows.first().is_some_and(|r| !r.primary) {
            return;
        }
        st.provisional.clear();
        for r in rows {
            let v = ViewRow::from_row(r, now);
            let keep = st
                .provisional
                .get(&r.series)
                .is_none_or(|old| old.window_start < v.window_start);
            if keep {
                st.provisional.insert(r.series.clone(), v);
            }
        }
    }

    fn on_series_expired(&self, series: &[Arc<SeriesKey>]) {
        if let Ok(mut st) = self.state.lock() {
            for s in series {
                st.finals.remove(s);
                st.provisional.remove(s);
            }
        }
    }
}

/// Open incidents and the latest prediction per series and signal, for the live view: a
/// subscriber of the anomaly stream.
#[derive(Debug, Default)]
pub struct AnomalyBoard {
    state: Mutex<BoardState>,
}

#[derive(Debug, Default)]
struct BoardState {
    open: HashMap<[u8; 16], Anomaly>,
    forecasts: HashMap<(Arc<SeriesKey>, Arc<str>), Prediction>,
}

impl AnomalyBoard {
    /// The newest record of each open incident, worst first (at most `n`).
    pub fn open(&self, n: usize) -> Vec<Anomaly> {
        let Ok(st) = self.state.lock() else {
            return Vec::new();
        };
        let mut v: Vec<Anomaly> = st.open.values().cloned().collect();
        v.sort_by(|a, b| {
            b.severity
                .cmp(&a.severity)
                .then(
                    a.p_value
                        .unwrap_or(1.0)
                        .total_cmp(&b.p_value.unwrap_or(1.0)),
                )
                .then(a.series.cmp(&b.series))
        });
        v.truncate(n);
        v
    }

    /// Open incidents.
    pub fn open_count(&self) -> usize {
        self.state.lock().map(|s| s.open.len()).unwrap_or(0)
    }

    /// The latest predictions that say something: a predicted threshold crossing first (soonest
    /// first), then trend changes (largest relative change first); at most `n`.
    pub fn notable_forecasts(&self, n: usize) -> Vec<Prediction> {
        let Ok(st) = self.state.lock() else {
            return Vec::new();
        };
        let mut v: Vec<Prediction> = st
            .forecasts
            .values()
            .filter(|p| p.trend_change || p.time_to_threshold_ms.is_some())
            .cloned()
            .collect();
        let change = |p: &Prediction| {
            let mid = (p.lower + p.upper) / 2.0;
            ((p.value - mid).abs() / mid.abs().max(1e-9)).min(1e9)
        };
        v.sort_by(|a, b| {
            a.time_to_threshold_ms
                .unwrap_or(u64::MAX)
                .cmp(&b.time_to_threshold_ms.unwrap_or(u64::MAX))
                .then(change(b).total_cmp(&change(a)))
                .then(a.series.cmp(&b.series))
        });
        v.truncate(n);
        v
    }
}

/// The board follows the anomaly stream: an incident leaves it when it resolves or its series
/// expires; the newest prediction per series and signal replaces the one before.
impl SignalSink for AnomalyBoard {
    fn on_signals(&self, s: &Signals) {
        let Ok(mut st) = self.state.lock() else {
            return;
        };
        for a in &s.anomalies {
            if a.incident_state == IncidentState::Resolved {
                st.open.remove(&a.incident_id);
            } else {
                st.open.insert(a.incident_id, a.clone());
            }
        }
        for p in &s.predictions {
            st.forecasts
                .insert((p.series.clone(), p.signal.clone()), p.clone());
        }
    }

    fn on_series_expired(&self, series: &[Arc<SeriesKey>]) {
        let Ok(mut st) = self.state.lock() else {
            return;
        };
        st.open.retain(|_, a| !series.contains(&a.series));
        st.forecasts.retain(|(s, _), _| !series.contains(s));
    }
}

/// Engine-wide figures shown above the table.
pub struct Headline {
    pub uptime_s: f64,
    pub accepted_spans: f64,
    pub spans_per_s: f64,
    pub rejected: f64,
    pub late: f64,
    pub active_series: f64,
    pub watermark_lag_s: f64,
}

impl Headline {
    pub fn read(registry: &Registry, uptime_s: f64, spans_per_s: f64) -> Headline {
        Headline {
            uptime_s,
            accepted_spans: registry.total("redwatch_spans_accepted_total"),
            spans_per_s,
            rejected: registry.total("redwatch_spans_rejected_total")
                + registry.total("redwatch_requests_rejected_total"),
            late: registry.total("redwatch_late_dropped_total"),
            active_series: registry.total("redwatch_red_active_series"),
            watermark_lag_s: registry.total("redwatch_watermark_lag_seconds"),
        }
    }
}

fn fmt_window(ns: UnixNanos) -> String {
    chrono::DateTime::from_timestamp_nanos(ns as i64)
        .format("%H:%M:%S")
        .to_string()
}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(n - 1).collect();
        t.push('…');
        t
    }
}

/// Renders the headline and the table (no terminal escapes).
pub fn render(h: &Headline, rows: &[ViewRow], notes: &[String]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "redwatch demo — up {:.0}s | accepted {:.0} spans ({:.0}/s) | rejected {:.0} | late {:.0} | series {:.0} | watermark lag {:.1}s",
        h.uptime_s, h.accepted_spans, h.spans_per_s, h.rejected, h.late, h.active_series, h.watermark_lag_s
    );
    for n in notes {
        let _ = writeln!(out, "{n}");
    }
    let _ = writeln!(
        out,
        "\n{:<14} {:<34} {:<9} {:>9} {:>7} {:>9} {:>9}  {:<8}",
        "SERVICE", "OPERATION", "KIND", "RATE/s", "ERR%", "P50 ms", "P99 ms", "WINDOW"
    );
    for r in rows {
        let kind = r.series.kind.as_label().trim_start_matches("SPAN_KIND_");
        let _ = writeln!(
            out,
            "{:<14} {:<34} {:<9} {:>9.1} {:>7.2} {:>9.1} {:>9.1}  {}{}",
            truncate(&r.series.service_name, 14),
            truncate(&r.series.span_name, 34),
            kind,
            r.rate_per_s,
            r.error_ratio * 100.0,
            r.p50_ms,
            r.p99_ms,
            fmt_window(r.window_start),
            if r.is_final { "" } else { " (open)" }
        );
    }
    if rows.is_empty() {
        out.push_str("(waiting for the first spans)\n");
    }
    out
}

/// Renders the open anomalies (worst first) and notable forecasts, at most `n` lines each.
pub fn render_anomalies(board: &AnomalyBoard, n: usize) -> String {
    let mut out = String::new();
    let open = board.open(n);
    let _ = writeln!(out, "\nOPEN ANOMALIES ({})", board.open_count());
    if open.is_empty() {
        out.push_str("  none\n");
    }
    for a in &open {
        let _ = writeln!(
            out,
            "  {:<8} {:<14} {:<30} {:<15} value {:>9.2} expected {:.2}–{:.2}  score {:.6}  {} since {}",
            a.severity.as_str(),
            truncate(&a.series.service_name, 14),
            truncate(&a.series.span_name, 30),
            a.signal,
            a.value,
            a.expected_min,
            a.expected_max,
            a.score.unwrap_or(0.0),
            a.incident_state.as_str(),
            fmt_window(a.window_start)
        );
    }
    out.push_str(&render_forecasts(board, n));
    out
}

/// The notable forecasts, at most `n` lines.
fn render_forecasts(board: &AnomalyBoard, n: usize) -> String {
    let mut out = String::new();
    let fc = board.notable_forecasts(n);
    let _ = writeln!(out, "FORECASTS (trend changes, threshold crossings)");
    if fc.is_empty() {
        out.push_str("  none\n");
    }
    for p in &fc {
        let ttt = p
            .time_to_threshold_ms
            .map(|t| format!("  threshold in {:.0}s", t as f64 / 1000.0))
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "  {:<14} {:<30} {:<15} → {:>9.2} [{:.2}, {:.2}] in {:.0}s ({}){}",
            truncate(&p.series.service_name, 14),
            truncate(&p.series.span_name, 30),
            p.signal,
            p.value,
            p.lower,
            p.upper,
            p.horizon_ms as f64 / 1000.0,
            p.method,
            ttt
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use redwatch_operators::anomaly::fixtures::cart_series as series;
    use redwatch_operators::anomaly::Severity;

    fn anomaly(state: IncidentState, start: u64) -> Anomaly {
        redwatch_operators::anomaly::fixtures::anomaly(state, start, Severity::Low)
    }

    fn signals(anomalies: Vec<Anomaly>, predictions: Vec<Prediction>) -> Signals {
        Signals {
            exemplars: vec![None; anomalies.len()],
            prediction_windows_ns: vec![1_000_000_000; predictions.len()],
            anomalies,
            predictions,
        }
    }

    // Moved from the app's anomaly sink (the board half of its prediction-span test).
    #[test]
    fn the_board_follows_the_anomaly_stream() {
        let a = anomaly(IncidentState::Open, 0);
        let p = Prediction {
            signal: "request_rate".into(),
            series: a.series.clone(),
            value: 50.0,
            lower: 40.0,
            upper: 60.0,
            confidence: 0.95,
            horizon_ms: 300_000,
            method: "holt",
            trend_change: true,
            time_to_threshold_ms: Some(120_000),
            window_end: 10_000_000_000,
        };
        let board = AnomalyBoard::default();
        board.on_signals(&signals(vec![a], vec![p]));
        assert_eq!(board.open_count(), 1);
        assert_eq!(board.notable_forecasts(5).len(), 1);
        board.on_signals(&signals(vec![anomaly(IncidentState::Resolved, 5)], vec![]));
        assert_eq!(board.open_count(), 0);
        board.on_signals(&signals(vec![anomaly(IncidentState::Open, 0)], vec![]));
        board.on_series_expired(&[series()]);
        assert_eq!(
            board.open_count(),
            0,
            "an expired series' incident leaves the board"
        );
        assert!(board.notable_forecasts(5).is_empty());
    }
}
