-- The 1 m rollup is computed from the primary windows' state, so per series and minute its
-- counts, min and max equal the sums / extremes of the six 10 s rows inside it, and its p99
-- equals quantile_merge of their sketches — the late update (window 10, 900 ms) included:
-- checkout POST /checkout 00:01:00: primary calls 2+2+2+2+3+2 = 13, errors 1 (w = 8) + 1 = 2,
-- max 900.

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

-- case: rollup_and_primary_totals_agree
-- Everything final: 10 s rows 48 + 26 + 9 + 25 + 12 + 1 = 121 calls, 8 errors; 1 m rows the same.
SELECT window_size, count(*) AS rows, sum(calls) AS calls, sum(errors) AS errors,
       min(window_start) AS first_window, max(window_end) AS last_end
FROM red
WHERE is_final
GROUP BY window_size
ORDER BY window_size;
-- expected:
