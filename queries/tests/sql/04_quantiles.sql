-- quantile_merge(duration_sketch, q) merges the sketches of the rows it aggregates.
-- frontend GET / over windows 0–5 (00:00:00–00:01:00): 24 spans, sorted 10×6, 20×6, 30×6,
-- 40×4, 50×2; p99 rank floor(0.99·23) = 22 -> 50 ms (reported 49.903). The per-window p99s
-- are 20, 30, 40, 20, 30, 40 ms (n = 3, 4, 5: ranks 1, 2, 3), so their max says 40 and their
-- average 30 — both wrong; the 1 m rollup row holds the same merged sketch, so its p99_ms
-- equals quantile_merge.

-- case: merged_p99_vs_per_window_p99
SELECT quantile_merge(duration_sketch, 0.99) AS merged_p99,
       max(p99_ms) AS max_of_window_p99,
       round(avg(p99_ms), 6) AS avg_of_window_p99,
       sum(calls) AS calls
FROM red
WHERE window_size = '10s' AND service_name = 'frontend'
  AND window_start >= TIMESTAMP '2026-01-01T00:00:00Z'
  AND window_start < TIMESTAMP '2026-01-01T00:01:00Z';
-- expected:

-- case: rollup_p99_equals_merged_primary_p99
SELECT window_start, p99_ms, p50_ms, calls
FROM red
WHERE window_size = '1m' AND service_name = 'frontend'
ORDER BY window_start;
-- expected:

-- case: per_window_p99
SELECT window_start, calls, p99_ms
FROM red
WHERE window_size = '10s' AND service_name = 'frontend' AND is_final
  AND window_start < TIMESTAMP '2026-01-01T00:01:00Z'
ORDER BY window_start;
-- expected:

-- case: quantile_merge_per_service_and_quantile
-- cart over all final 10 s windows: GET /cart 12×4, 12×8, 2×400 and POST /cart 25 ×(1+1+1+1+1+4):
-- total weight 35, sorted 4×12, 8×12, 25×9, 400×2. p50 rank 17 -> 8 (7.925);
-- p90 rank 30.6 -> 25 (25.04); p99 rank 33.66 -> 400 (399.47).
-- quantile_merge is not clamped to the observed min/max (a row's p50_ms…p99_ms are).
SELECT service_name,
       quantile_merge(duration_sketch, 0.5) AS p50,
       quantile_merge(duration_sketch, 0.9) AS p90,
       quantile_merge(duration_sketch, 0.99) AS p99
FROM red
WHERE window_size = '10s' AND is_final
GROUP BY service_name
ORDER BY service_name;
-- expected:

-- case: quantile_merge_integer_q_and_extremes
-- q = 0 and q = 1 (an integer literal is accepted) give the smallest and largest bins:
-- checkout over everything final: 100 ms (100.49) and the late 900 ms (896.7…, within 1 %).
SELECT quantile_merge(duration_sketch, 0) AS q0,
       quantile_merge(duration_sketch, 1) AS q1
FROM red
WHERE window_size = '10s' AND is_final AND service_name = 'checkout';
-- expected:

-- case: quantile_merge_of_no_rows_is_null
SELECT quantile_merge(duration_sketch, 0.99) AS p99 FROM red WHERE service_name = 'nobody';
-- expected:

-- case: quantile_merge_rejects_q_outside_0_1
SELECT quantile_merge(duration_sketch, 1.5) FROM red;
-- expected error: q must be between 0 and 1
