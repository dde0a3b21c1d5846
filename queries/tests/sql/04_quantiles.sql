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
-- +-------------------+-------------------+-------------------+-------+
-- | merged_p99        | max_of_window_p99 | avg_of_window_p99 | calls |
-- +-------------------+-------------------+-------------------+-------+
-- | 49.90296094906653 | 40.0477705332636  | 30.067204         | 24.0  |
-- +-------------------+-------------------+-------------------+-------+

-- case: rollup_p99_equals_merged_primary_p99
SELECT window_start, p99_ms, p50_ms, calls
FROM red
WHERE window_size = '1m' AND service_name = 'frontend'
ORDER BY window_start;
-- expected:
-- +----------------------+-------------------+--------------------+-------+
-- | window_start         | p99_ms            | p50_ms             | calls |
-- +----------------------+-------------------+--------------------+-------+
-- | 2026-01-01T00:00:00Z | 49.90296094906653 | 19.886670240866184 | 24.0  |
-- | 2026-01-01T00:01:00Z | 49.90296094906653 | 19.886670240866184 | 24.0  |
-- +----------------------+-------------------+--------------------+-------+

-- case: per_window_p99
SELECT window_start, calls, p99_ms
FROM red
WHERE window_size = '10s' AND service_name = 'frontend' AND is_final
  AND window_start < TIMESTAMP '2026-01-01T00:01:00Z'
ORDER BY window_start;
-- expected:
-- +----------------------+-------+--------------------+
-- | window_start         | calls | p99_ms             |
-- +----------------------+-------+--------------------+
-- | 2026-01-01T00:00:00Z | 3.0   | 19.886670240866184 |
-- | 2026-01-01T00:00:10Z | 4.0   | 30.267171338721898 |
-- | 2026-01-01T00:00:20Z | 5.0   | 40.0477705332636   |
-- | 2026-01-01T00:00:30Z | 3.0   | 19.886670240866184 |
-- | 2026-01-01T00:00:40Z | 4.0   | 30.267171338721898 |
-- | 2026-01-01T00:00:50Z | 5.0   | 40.0477705332636   |
-- +----------------------+-------+--------------------+

-- case: quantile_merge_per_service_and_quantile
-- cart over all final 10 s windows: GET /cart 12×4, 12×8, 2×400 and POST /cart 25 ×(1+1+1+1+1+4):
-- total weight 35, sorted 4×12, 8×12, 25×9, 400×2. p50 rank 17 -> 8 (7.925);
-- p90 rank 30.6 -> 25 (24.780); p99 rank 33.66 -> 400 (399.47).
-- checkout: POST /checkout 100…210, 12×300, 900 and charge 200…310 (37 spans): p50 rank 18 ->
-- 260 (262.47), p90 rank 32.4 -> 300 (301.91), p99 rank 35.64 -> 310 (308.01).
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
-- +-----------------+--------------------+--------------------+--------------------+
-- | service_name    | p50                | p90                | p99                |
-- +-----------------+--------------------+--------------------+--------------------+
-- | cart            | 7.9249737039170745 | 24.78049876990332  | 399.4743972413664  |
-- | checkout        | 262.46970748285673 | 301.91343652187516 | 308.0126978657512  |
-- | frontend        | 19.886670240866184 | 40.0477705332636   | 49.90296094906653  |
-- | unknown_service | 0.9900000000000001 | 0.9900000000000001 | 0.9900000000000001 |
-- +-----------------+--------------------+--------------------+--------------------+

-- case: quantile_merge_integer_q_and_extremes
-- q = 0 and q = 1 (an integer literal is accepted) give the smallest and largest bins:
-- checkout over everything final: 100 ms (100.49) and the late 900 ms (907.03, +0.78 %).
SELECT quantile_merge(duration_sketch, 0) AS q0,
       quantile_merge(duration_sketch, 1) AS q1
FROM red
WHERE window_size = '10s' AND is_final AND service_name = 'checkout';
-- expected:
-- +--------------------+-------------------+
-- | q0                 | q1                |
-- +--------------------+-------------------+
-- | 100.49456770856496 | 907.0313473738106 |
-- +--------------------+-------------------+

-- case: quantile_merge_of_no_rows_is_null
SELECT quantile_merge(duration_sketch, 0.99) AS p99 FROM red WHERE service_name = 'nobody';
-- expected:
-- +-----+
-- | p99 |
-- +-----+
-- |     |
-- +-----+

-- case: quantile_merge_rejects_q_outside_0_1
SELECT quantile_merge(duration_sketch, 1.5) FROM red;
-- expected error: q must be between 0 and 1

-- case: quantiles_merge_returns_every_quantile_from_one_merge
-- quantiles_merge(sketch, q1, q2, …) is a struct {q1, q2, …}: the same values as separate
-- quantile_merge calls (which the engine rewrites into it when they share a column).
SELECT service_name, q['q1'] AS p50, q['q2'] AS p99
FROM (SELECT service_name, quantiles_merge(duration_sketch, 0.5, 0.99) AS q
      FROM red WHERE window_size = '10s' AND is_final GROUP BY service_name)
ORDER BY service_name;
-- expected:
-- +-----------------+--------------------+--------------------+
-- | service_name    | p50                | p99                |
-- +-----------------+--------------------+--------------------+
-- | cart            | 7.9249737039170745 | 399.4743972413664  |
-- | checkout        | 262.46970748285673 | 308.0126978657512  |
-- | frontend        | 19.886670240866184 | 49.90296094906653  |
-- | unknown_service | 0.9900000000000001 | 0.9900000000000001 |
-- +-----------------+--------------------+--------------------+

-- case: quantiles_merge_needs_constant_quantiles
SELECT quantiles_merge(duration_sketch, p99_ms) FROM red;
-- expected error: quantiles must be constant numbers
