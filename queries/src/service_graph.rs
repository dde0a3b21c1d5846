//! The `service_graph` table: final edge windows (kept for `retention`, capped in rows by the
//! windowed-table store's [`Retained`]) plus the provisional rows of the windows still open, as in
//! the `red` table.
//!
//! Edges are few (service pairs), so a window's batch is rebuilt from its rows when queried;
//! late re-emissions replace an edge's row.

use crate::schema;
use crate::table::{Partition, PartitionSource, PruneFilter};
use crate::window_store::{
    window_ranges, DimsColumn, Float64Columns, Retained, Weighed, WindowColumns,
};
use arrow::array::{ArrayRef, StringBuilder};
use arrow::record_batch::RecordBatch;
use redwatch_engine::model::UnixNanos;
use redwatch_operators::servicegraph::{EdgeKey, EdgeRow, ServiceGraphSink};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

#[derive(Debug, Clone, Copy)]
struct RowValues {
    requests: f64,
    failed: f64,
    client_p99: Option<f64>,
    server_p99: Option<f64>,
}

impl RowValues {
    fn of(r: &EdgeRow) -> RowValues {
        RowValues {
            requests: r.total.requests,
            failed: r.total.failed,
            client_p99: r.total.client.quantile_ms(0.99),
            server_p99: r.total.server.quantile_ms(0.99),
        }
    }
}

/// One window's edges.
#[derive(Debug, Default)]
struct Rows(BTreeMap<Arc<EdgeKey>, RowValues>);

/// The `service_graph` table is capped in rows.
impl Weighed for Rows {
    fn weight(&self) -> usize {
        self.0.len()
    }
}

#[derive(Debug, Default)]
struct State {
    /// Final windows by start, weighed in rows.
    finals: Retained<UnixNanos, Rows>,
    /// Rows of the open windows by start (replaced on every publication).
    provisional: BTreeMap<UnixNanos, Rows>,
    label: Option<Arc<str>>,
    size_ns: u64,
    newest_end: UnixNanos,
}

/// Bounds of the `service_graph` table.
#[derive(Debug, Clone)]
pub struct ServiceGraphTableSettings {
    /// Names of `service_graph.dimensions` (the `dims` keys are `client_<name>`, `server_<name>`).
    pub dims: Vec<String>,
    /// Windows older than this (behind the newest) are dropped.
    pub retention_ns: u64,
    /// Final rows kept at most; the oldest windows go first.
    pub max_rows: usize,
}

/// The `service_graph` table, fed as a [`ServiceGraphSink`].
#[derive(Debug)]
pub struct ServiceGraphTable {
    settings: ServiceGraphTableSettings,
    dim_keys: Vec<String>,
    state: Mutex<State>,
}

impl ServiceGraphTable {
    pub fn new(settings: ServiceGraphTableSettings) -> Arc<Self> {
        let dim_keys = settings
            .dims
            .iter()
            .map(|d| format!("client_{d}"))
            .chain(settings.dims.iter().map(|d| format!("server_{d}")))
            .collect();
        Arc::new(ServiceGraphTable {
            settings,
            dim_keys,
            state: Mutex::new(State::default()),
        })
    }

    /// Final rows held.
    pub fn final_rows(&self) -> usize {
        self.state.lock().map(|s| s.finals.weight()).unwrap_or(0)
    }

    fn build(
        &self,
        label: &str,
        size_ns: u64,
        start: UnixNanos,
        rows: &Rows,
        is_final: bool,
    ) -> RecordBatch {
        let n = rows.0.len();
        let mut window = WindowColumns::new(n, n * 4, start, size_ns, is_final);
        let mut client = StringBuilder::with_capacity(n, n * 16);
        let mut server = StringBuilder::with_capacity(n, n * 16);
        let mut ct = StringBuilder::with_capacity(n, n * 8);
        let mut dims = DimsColumn::default();
        let mut f64s = Float64Columns::new(4, n);
        for (k, v) in &rows.0 {
            window.append(label);
            client.append_value(&*k.client);
            server.append_value(&*k.server);
            ct.append_value(k.connection_type.as_label());
            let pairs = self.dim_keys.iter().zip(k.dims.iter());
            dims.append(pairs.map(|(name, val)| (name.as_str(), &**val)), k.overflow);
            let vals = [Some(v.requests), Some(v.failed), v.client_p99, v.server_p99];
            f64s.append(vals);
        }
        let mut cols: Vec<ArrayRef> = vec![
            Arc::new(client.finish()),
            Arc::new(server.finish()),
            Arc::new(ct.finish()),
            dims.finish(),
        ];
        f64s.finish_into(&mut cols);
        window.finish(&schema::SERVICE_GRAPH, cols)
    }

    fn maintain(&self, st: &mut State) {
        let horizon = st.newest_end.saturating_sub(self.settings.retention_ns);
        st.finals.expire(horizon, self.settings.max_rows);
    }
}

/// Whether a window `[start, start + size)` may hold rows matching `filter`.
fn window_may_match(filter: &PruneFilter, start: UnixNanos, size: u64) -> bool {
    filter.may_match(&Partition {
        batch: RecordBatch::new_empty(schema::SERVICE_GRAPH.clone()),
        time_ranges: window_ranges(start, start, size),
        service_range: None,
    })
}

impl ServiceGraphSink for ServiceGraphTable {
    fn on_final(&self, rows: &[EdgeRow]) {
        let Ok(mut st) = self.state.lock() else {
            return;
        };
        for r in rows {
            st.label.get_or_insert_with(|| r.window_size.clone());
            st.size_ns = r.window_size_ns;
            st.newest_end = st.newest_end.max(r.end);
            // A window that became final leaves the provisional rows at once.
            st.provisional.remove(&r.start);
            if !st.finals.contains(&r.start) {
                let end = r.start + st.size_ns;
                st.finals.insert(r.start, r.start, end, Rows::default());
            }
            st.finals.update(&r.start, |w| {
                w.0.insert(r.edge.clone(), RowValues::of(r));
            });
        }
        self.maintain(&mut st);
    }

    fn on_provisional(&self, window_size_ns: u64, rows: &[EdgeRow]) {
        let mut windows: BTreeMap<UnixNanos, Rows> = BTreeMap::new();
        for r in rows {
            windows
                .entry(r.start)
                .or_default()
                .0
                .insert(r.edge.clone(), RowValues::of(r));
        }
        if let Ok(mut st) = self.state.lock() {
            if let Some(r) = rows.first() {
                st.label.get_or_insert_with(|| r.window_size.clone());
            }
            st.size_ns = window_size_ns;
            // Windows already final are never shown as provisional too.
            windows.retain(|start, _| !st.finals.contains(start));
            st.provisional = windows;
        }
    }
}

impl PartitionSource for ServiceGraphTable {
    fn snapshot(&self, filter: &PruneFilter) -> Vec<RecordBatch> {
        let Ok(st) = self.state.lock() else {
            return Vec::new();
        };
        let Some(label) = st.label.clone() else {
            return Vec::new();
        };
        let size = st.size_ns;
        let mut out = Vec::new();
        let finals = st.finals.iter().map(|(start, rows)| (true, start, rows));
        let provisional = st
            .provisional
            .iter()
            .map(|(start, rows)| (false, start, rows));
        for (fin, &start, rows) in finals.chain(provisional) {
            if !rows.0.is_empty() && window_may_match(filter, start, size) {
                out.push(self.build(&label, size, start, rows, fin));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Array, BooleanArray, Float64Array, StringArray};
    use redwatch_engine::fixtures::{span_batch, SpanFixture};
    use redwatch_engine::model::{SourceId, SpanKind, StatusCode};
    use redwatch_engine::telemetry::Registry;
    use redwatch_operators::layout::SpanSections;
    use redwatch_operators::servicegraph::ServiceGraphOperator;

    const SEC: u64 = 1_000_000_000;
    const T0: u64 = 1_700_000_000 * SEC;

    fn sp(svc: &str, kind: SpanKind, trace: u8, span: u8, parent: u8, end: u64) -> SpanFixture {
        let p = if parent == 0 { [0; 8] } else { [parent; 8] };
        SpanFixture::new(svc, "op", end, 10.0)
            .kind(kind)
            .ids([trace; 16], [span; 8], p)
    }

    /// A `service_graph` table fed by a service-graph operator of the default config.
    fn table_and_operator(
        retention_ns: u64,
        max_rows: usize,
    ) -> (Arc<ServiceGraphTable>, ServiceGraphOperator) {
        let table = ServiceGraphTable::new(ServiceGraphTableSettings {
            dims: vec![],
            retention_ns,
            max_rows,
        });
        let cfg = SpanSections::default();
        let reg = Registry::new();
        let op = ServiceGraphOperator::new(
            &cfg.windows,
            &cfg.red,
            &cfg.service_graph,
            vec![table.clone()],
            &reg,
        );
        (table, op)
    }

    fn rows(t: &ServiceGraphTable) -> Vec<(String, String, f64, f64, bool)> {
        let mut out = Vec::new();
        for b in t.snapshot(&PruneFilter::default()) {
            let s = |i: usize| {
                b.column(i)
                    .as_any()
                    .downcast_ref::<StringArray>()
                    .unwrap()
                    .clone()
            };
            let f = |i: usize| {
                b.column(i)
                    .as_any()
                    .downcast_ref::<Float64Array>()
                    .unwrap()
                    .clone()
            };
            let (c, sv, req, failed) = (s(3), s(4), f(7), f(8));
            let fin = b
                .column(11)
                .as_any()
                .downcast_ref::<BooleanArray>()
                .unwrap()
                .clone();
            for i in 0..b.num_rows() {
                assert!(!f(9).is_null(i), "client p99 present");
                out.push((
                    c.value(i).to_string(),
                    sv.value(i).to_string(),
                    req.value(i),
                    failed.value(i),
                    fin.value(i),
                ));
            }
        }
        out.sort_by(|a, b| a.partial_cmp(b).unwrap());
        out
    }

    #[test]
    fn provisional_rows_become_final_rows() {
        let (table, mut op) = table_and_operator(u64::MAX, 1000);
        op.process_spans(
            &span_batch(
                SourceId(0),
                0,
                &[
                    sp("a", SpanKind::Client, 1, 1, 0, T0 + SEC),
                    sp("b", SpanKind::Server, 1, 2, 1, T0 + SEC).status(StatusCode::Error),
                    sp("a", SpanKind::Client, 2, 1, 0, T0 + 2 * SEC),
                    sp("b", SpanKind::Server, 2, 2, 1, T0 + 2 * SEC),
                ],
            ),
            T0,
        );
        op.publish_provisional();
        assert_eq!(
            rows(&table),
            vec![("a".into(), "b".into(), 2.0, 1.0, false)]
        );
        op.advance(T0 + 10 * SEC);
        assert_eq!(rows(&table), vec![("a".into(), "b".into(), 2.0, 1.0, true)]);
        // A stale provisional publication cannot bring the closed window back.
        op.publish_provisional();
        assert_eq!(rows(&table).len(), 1);
        assert_eq!(table.final_rows(), 1);
    }

    #[test]
    fn retention_and_row_cap_drop_the_oldest_windows() {
        let (table, mut op) = table_and_operator(30 * SEC, 2);
        for w in 0..5u8 {
            let end = T0 + u64::from(w) * 10 * SEC + SEC;
            op.process_spans(
                &span_batch(
                    SourceId(0),
                    0,
                    &[
                        sp("a", SpanKind::Client, w + 1, 1, 0, end),
                        sp("b", SpanKind::Server, w + 1, 2, 1, end),
                    ],
                ),
                T0,
            );
        }
        op.advance(T0 + 50 * SEC);
        assert_eq!(table.final_rows(), 2);
        assert_eq!(rows(&table).len(), 2);
    }
}
