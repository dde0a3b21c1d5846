//! The panels a dashboard sends, as SQL relative to the newest window.

use super::*;

pub(super) struct Query {
    pub(super) name: &'static str,
    pub(super) sql: fn(UnixNanos) -> String,
    /// A dashboard panel (else a diagnostic that splits a panel's cost).
    pub(super) panel: bool,
}

pub(super) fn queries() -> Vec<Query> {
    vec![
        Query {
            name: "top-10 services by p99, last 5 min (quantile_merge)",
            sql: |now| {
                format!(
                    "SELECT service_name, quantile_merge(duration_sketch, 0.99) AS p99 FROM red \
                     WHERE window_size = '10s' AND window_start >= {} \
                     GROUP BY service_name ORDER BY p99 DESC LIMIT 10",
                    ts(now - 300 * SEC)
                )
            },
            panel: true,
        },
        Query {
            // A dashboard reads the 1 m rollups for a 1 h range (next query); this 10 s variant
            // is kept as a diagnostic of the raw scan (3.6 M rows at full size).
            name: "(diagnostic) error ratio per operation, 1 h of 10 s windows",
            sql: |now| error_ratio_per_operation_1h("10s", now),
            panel: false,
        },
        Query {
            name: "error ratio per operation, 1 h of 1 m rollups",
            sql: |now| error_ratio_per_operation_1h("1m", now),
            panel: true,
        },
        Query {
            // What a dashboard sends for a 15 min range: Grafana-style step selection reads the
            // 1 m rollups for ranges >= 15 min (README, "Example queries"). The same panel over
            // 10 s windows is kept below as a diagnostic.
            name: "p50/p99 per service, last 15 min (1 m rollups, quantile_merge ×2)",
            sql: |now| quantiles_per_service_15m("1m", now),
            panel: true,
        },
        Query {
            name: "one series' time series, 1 h (calls, errors, p99)",
            sql: |now| {
                format!(
                    "SELECT window_start, calls, error_ratio, p99_ms FROM red \
                     WHERE window_size = '10s' AND service_name = 'svc-007' AND span_name = 'op-07' \
                     AND window_start >= {} ORDER BY window_start",
                    ts(now - 3600 * SEC)
                )
            },
            panel: true,
        },
        Query {
            name: "(diagnostic) same rows as the 10 s p50/p99 per service 15 min, no sketches",
            sql: |now| {
                format!(
                    "SELECT service_name, sum(calls) AS calls, max(p99_ms) AS worst FROM red \
                     WHERE window_size = '10s' AND window_start >= {} \
                     GROUP BY service_name ORDER BY service_name",
                    ts(now - 900 * SEC)
                )
            },
            panel: false,
        },
        Query {
            name: "(diagnostic) p50/p99 per service, 15 min of 10 s windows (6× the sketches)",
            sql: |now| quantiles_per_service_15m("10s", now),
            panel: false,
        },
    ]
}

/// Error ratio per operation over the last hour of `window_size` windows, worst 20.
fn error_ratio_per_operation_1h(window_size: &str, now: UnixNanos) -> String {
    format!(
        "SELECT service_name, span_name, sum(errors) / sum(calls) AS error_ratio FROM red \
         WHERE window_size = '{window_size}' AND window_start >= {} \
         GROUP BY service_name, span_name ORDER BY error_ratio DESC, service_name, span_name LIMIT 20",
        ts(now - 3600 * SEC)
    )
}

/// p50 and p99 (merged sketches) and calls per service over the last 15 min of `window_size`
/// windows.
fn quantiles_per_service_15m(window_size: &str, now: UnixNanos) -> String {
    format!(
        "SELECT service_name, quantile_merge(duration_sketch, 0.5) AS p50, \
         quantile_merge(duration_sketch, 0.99) AS p99, sum(calls) AS calls FROM red \
         WHERE window_size = '{window_size}' AND window_start >= {} \
         GROUP BY service_name ORDER BY service_name",
        ts(now - 900 * SEC)
    )
}
