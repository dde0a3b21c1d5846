-- The 1 m rollup is computed from the primary windows' state, so per series and minute its
-- counts, min and max equal the sums / extremes of the six 10 s rows inside it, and its p99
-- equals quantile_merge of their sketches — the late update (window 10, 900 ms) included:
-- checkout POST /checkout 00:01:00: primary calls 2+2+2+2+3+2 = 13, errors 1 (w = 8) + 1 = 2,
-- max 900. The row's p99_ms differs from quantile_merge only where it is clamped to the row's
-- [min, max] (cart POST /cart: 25 vs bin estimate 24.78; ping: 1 vs 0.99; checkout
-- POST /checkout 00:00: 300 vs 301.91).

-- case: rollup_vs_primary_per_series
WITH p AS (
  SELECT date_bin(INTERVAL '1 minute', window_start) AS minute,
         service_name, span_name,
         sum(calls) AS calls, sum(errors) AS errors,
         min(duration_min_ms) AS min_ms, max(duration_max_ms) AS max_ms,
         round(sum(duration_avg_ms * calls), 6) AS sum_ms,
         quantile_merge(duration_sketch, 0.99) AS merged_p99
  FROM red WHERE window_size = '10s' AND is_final
  GROUP BY 1, 2, 3
)
SELECT r.window_start, r.service_name, r.span_name,
       r.calls, p.calls AS primary_calls,
       r.errors, p.errors AS primary_errors,
       r.duration_min_ms = p.min_ms AND r.duration_max_ms = p.max_ms AS same_min_max,
       round(r.duration_avg_ms * r.calls, 6) AS sum_ms, p.sum_ms AS primary_sum_ms,
       r.p99_ms, p.merged_p99
FROM red r JOIN p
  ON r.window_start = p.minute AND r.service_name = p.service_name AND r.span_name = p.span_name
WHERE r.window_size = '1m'
ORDER BY r.window_start, r.service_name, r.span_name;
-- expected:
-- +----------------------+-----------------+----------------+-------+---------------+--------+----------------+--------------+--------+----------------+--------------------+--------------------+
-- | window_start         | service_name    | span_name      | calls | primary_calls | errors | primary_errors | same_min_max | sum_ms | primary_sum_ms | p99_ms             | merged_p99         |
-- +----------------------+-----------------+----------------+-------+---------------+--------+----------------+--------------+--------+----------------+--------------------+--------------------+
-- | 2026-01-01T00:00:00Z | cart            | GET /cart      | 14.0  | 14.0          | 2.0    | 2.0            | true         | 872.0  | 872.0          | 399.4743972413664  | 399.4743972413664  |
-- | 2026-01-01T00:00:00Z | cart            | POST /cart     | 3.0   | 3.0           | 0.0    | 0.0            | true         | 75.0   | 75.0           | 25.0               | 24.78049876990332  |
-- | 2026-01-01T00:00:00Z | checkout        | POST /checkout | 12.0  | 12.0          | 2.0    | 2.0            | true         | 2550.0 | 2550.0         | 300.0              | 301.91343652187516 |
-- | 2026-01-01T00:00:00Z | checkout        | charge         | 6.0   | 6.0           | 0.0    | 0.0            | true         | 1350.0 | 1350.0         | 242.2894312639631  | 242.2894312639631  |
-- | 2026-01-01T00:00:00Z | frontend        | GET /          | 24.0  | 24.0          | 0.0    | 0.0            | true         | 620.0  | 620.0          | 49.90296094906653  | 49.90296094906653  |
-- | 2026-01-01T00:00:00Z | unknown_service | ping           | 1.0   | 1.0           | 0.0    | 0.0            | true         | 1.0    | 1.0            | 1.0                | 0.9900000000000001 |
-- | 2026-01-01T00:01:00Z | cart            | GET /cart      | 12.0  | 12.0          | 0.0    | 0.0            | true         | 72.0   | 72.0           | 7.9249737039170745 | 7.9249737039170745 |
-- | 2026-01-01T00:01:00Z | cart            | POST /cart     | 6.0   | 6.0           | 0.0    | 0.0            | true         | 150.0  | 150.0          | 25.0               | 24.78049876990332  |
-- | 2026-01-01T00:01:00Z | checkout        | POST /checkout | 13.0  | 13.0          | 2.0    | 2.0            | true         | 3810.0 | 3810.0         | 301.91343652187516 | 301.91343652187516 |
-- | 2026-01-01T00:01:00Z | checkout        | charge         | 6.0   | 6.0           | 1.0    | 1.0            | true         | 1710.0 | 1710.0         | 301.91343652187516 | 301.91343652187516 |
-- | 2026-01-01T00:01:00Z | frontend        | GET /          | 24.0  | 24.0          | 1.0    | 1.0            | true         | 620.0  | 620.0          | 49.90296094906653  | 49.90296094906653  |
-- +----------------------+-----------------+----------------+-------+---------------+--------+----------------+--------------+--------+----------------+--------------------+--------------------+

-- case: rollup_and_primary_totals_agree
-- Everything final: 10 s rows 48 + 26 + 9 + 25 + 12 + 1 = 121 calls, 8 errors; 1 m rows the same.
SELECT window_size, count(*) AS rows, sum(calls) AS calls, sum(errors) AS errors,
       min(window_start) AS first_window, max(window_end) AS last_end
FROM red
WHERE is_final
GROUP BY window_size
ORDER BY window_size;
-- expected:
-- +-------------+------+-------+--------+----------------------+----------------------+
-- | window_size | rows | calls | errors | first_window         | last_end             |
-- +-------------+------+-------+--------+----------------------+----------------------+
-- | 10s         | 55   | 121.0 | 8.0    | 2026-01-01T00:00:00Z | 2026-01-01T00:02:00Z |
-- | 1m          | 11   | 121.0 | 8.0    | 2026-01-01T00:00:00Z | 2026-01-01T00:02:00Z |
-- +-------------+------+-------+--------+----------------------+----------------------+
