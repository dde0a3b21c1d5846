-- "Top services by p99 in a time range": quantile_merge over the primary windows of
-- [00:00:30, 00:01:00) — windows 3, 4 and 5 — per service.
-- Hand check (durations of those windows, sorted; p99 = x[floor(0.99·(n−1))]):
-- * cart: GET /cart 4, 8, 400 / 4, 8, 400 / 4, 8 and POST /cart 25 (w = 4) -> 4,4,4,8,8,8,25,400,400;
--   n = 9, rank 7 -> 400 ms (reported 399.474); errors 2 of 9.
-- * checkout: POST /checkout 130, 300 / 140, 300 / 150, 300 and charge 230 / 240 / 250 ->
--   130,140,150,230,240,250,300,300,300; rank 7 -> 300 ms (301.913); errors 1 (w = 4).
-- * frontend: 10,20,30 / 10,20,30,40 / 10,…,50 -> n = 12, rank floor(10.89) = 10 ->
--   sorted 10,10,10,20,20,20,30,30,30,40,40,50 -> x[10] = 40 (40.048).

-- case: top_services_by_p99
SELECT service_name,
       quantile_merge(duration_sketch, 0.99) AS p99_ms,
       sum(calls) AS calls,
       sum(errors) / sum(calls) AS error_ratio
FROM red
WHERE window_size = '10s'
  AND window_start >= TIMESTAMP '2026-01-01T00:00:30Z'
  AND window_start < TIMESTAMP '2026-01-01T00:01:00Z'
GROUP BY service_name
ORDER BY p99_ms DESC, service_name
LIMIT 2;
-- expected:
-- +--------------+--------------------+-------+--------------------+
-- | service_name | p99_ms             | calls | error_ratio        |
-- +--------------+--------------------+-------+--------------------+
-- | cart         | 399.4743972413664  | 9.0   | 0.2222222222222222 |
-- | checkout     | 301.91343652187516 | 9.0   | 0.1111111111111111 |
-- +--------------+--------------------+-------+--------------------+

-- case: top_operations_by_p99_final_only
-- Per operation, final windows only, over the whole final range: the late 900 ms span makes
-- checkout POST /checkout the slowest (25 spans: 100…210 step 10, 12×300, 900; rank
-- floor(0.99·24) = 23 -> x[23] = 300, x[24] = 900: p99 = 300 (301.913), and max = 900).
SELECT service_name, span_name,
       quantile_merge(duration_sketch, 0.99) AS p99_ms,
       max(duration_max_ms) AS max_ms,
       sum(calls) AS calls
FROM red
WHERE window_size = '10s' AND is_final
GROUP BY service_name, span_name
ORDER BY p99_ms DESC, service_name, span_name;
-- expected:
-- +-----------------+----------------+--------------------+--------+-------+
-- | service_name    | span_name      | p99_ms             | max_ms | calls |
-- +-----------------+----------------+--------------------+--------+-------+
-- | cart            | GET /cart      | 399.4743972413664  | 400.0  | 26.0  |
-- | checkout        | POST /checkout | 301.91343652187516 | 900.0  | 25.0  |
-- | checkout        | charge         | 301.91343652187516 | 310.0  | 12.0  |
-- | frontend        | GET /          | 49.90296094906653  | 50.0   | 48.0  |
-- | cart            | POST /cart     | 24.78049876990332  | 25.0   | 9.0   |
-- | unknown_service | ping           | 0.9900000000000001 | 1.0    | 1.0   |
-- +-----------------+----------------+--------------------+--------+-------+
