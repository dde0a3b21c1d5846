-- Open windows are visible as provisional rows (is_final = false); final rows are what
-- dashboards that need stable numbers filter on. The watermark is at 00:02:05: the 10 s window
-- [00:02:00, 00:02:10) is open (frontend 10, 20, 30 ms; checkout POST /checkout 50 ms). The
-- 1 m rollup [00:02:00, 00:03:00) has no row yet: a rollup only receives primary windows once
-- they are final.

-- case: final_and_provisional_windows
SELECT window_size, window_start, is_final, count(*) AS series, sum(calls) AS calls
FROM red
WHERE window_start >= TIMESTAMP '2026-01-01T00:01:30Z'
GROUP BY window_size, window_start, is_final
ORDER BY window_size, window_start, is_final;
-- expected:
-- +-------------+----------------------+----------+--------+-------+
-- | window_size | window_start         | is_final | series | calls |
-- +-------------+----------------------+----------+--------+-------+
-- | 10s         | 2026-01-01T00:01:30Z | true     | 4      | 8.0   |
-- | 10s         | 2026-01-01T00:01:40Z | true     | 5      | 14.0  |
-- | 10s         | 2026-01-01T00:01:50Z | true     | 4      | 10.0  |
-- | 10s         | 2026-01-01T00:02:00Z | false    | 2      | 4.0   |
-- +-------------+----------------------+----------+--------+-------+

-- case: provisional_rows
SELECT window_size, window_start, service_name, span_name, calls, duration_max_ms, p99_ms, is_final
FROM red
WHERE NOT is_final
ORDER BY window_size, window_start, service_name, span_name;
-- expected:
-- +-------------+----------------------+--------------+----------------+-------+-----------------+--------------------+----------+
-- | window_size | window_start         | service_name | span_name      | calls | duration_max_ms | p99_ms             | is_final |
-- +-------------+----------------------+--------------+----------------+-------+-----------------+--------------------+----------+
-- | 10s         | 2026-01-01T00:02:00Z | checkout     | POST /checkout | 1.0   | 50.0            | 50.0               | false    |
-- | 10s         | 2026-01-01T00:02:00Z | frontend     | GET /          | 3.0   | 30.0            | 19.886670240866184 | false    |
-- +-------------+----------------------+--------------+----------------+-------+-----------------+--------------------+----------+

-- case: late_update_replaces_the_final_row
-- The late 900 ms ERROR span re-emitted window 10 and its rollup: one row each, updated.
SELECT window_size, window_start, calls, errors, duration_max_ms, is_final
FROM red
WHERE service_name = 'checkout' AND span_name = 'POST /checkout'
  AND window_start <= TIMESTAMP '2026-01-01T00:01:40Z' AND window_end > TIMESTAMP '2026-01-01T00:01:40Z'
ORDER BY window_size, window_start;
-- expected:
-- +-------------+----------------------+-------+--------+-----------------+----------+
-- | window_size | window_start         | calls | errors | duration_max_ms | is_final |
-- +-------------+----------------------+-------+--------+-----------------+----------+
-- | 10s         | 2026-01-01T00:01:40Z | 3.0   | 1.0    | 900.0           | true     |
-- | 1m          | 2026-01-01T00:01:00Z | 13.0  | 2.0    | 900.0           | true     |
-- +-------------+----------------------+-------+--------+-----------------+----------+

-- case: live_total_includes_provisional
-- All 10 s rows: 121 final + 4 provisional calls.
SELECT sum(calls) FILTER (WHERE is_final) AS final_calls,
       sum(calls) FILTER (WHERE NOT is_final) AS provisional_calls,
       sum(calls) AS live_calls
FROM red
WHERE window_size = '10s';
-- expected:
-- +-------------+-------------------+------------+
-- | final_calls | provisional_calls | live_calls |
-- +-------------+-------------------+------------+
-- | 121.0       | 4.0               | 125.0      |
-- +-------------+-------------------+------------+
