-- Error ratio per operation = sum(errors) / sum(calls) over the windows (not the average of
-- per-window ratios). Over the final primary windows 0–11:
-- * checkout POST /checkout: 2 spans × 12 windows + 1 late = 25 calls; errors in w = 0, 4, 8
--   plus the late span = 4 -> 0.16.
-- * checkout charge: 12 calls, 1 error (w = 11) -> 0.083333.
-- * cart GET /cart: 24 + 2 = 26 calls, 2 errors -> 0.076923.
-- * frontend GET /: 4 × (3 + 4 + 5) = 48 calls, 1 error (w = 7) -> 0.020833.
-- * cart POST /cart: 5 spans of weight 1 + 1 of weight 4 = 9 calls, 0 errors.
-- * unknown_service ping: 1 call, 0 errors.

-- case: error_ratio_per_operation
SELECT service_name, span_name, span_kind,
       sum(calls) AS calls, sum(errors) AS errors,
       sum(errors) / sum(calls) AS error_ratio
FROM red
WHERE window_size = '10s' AND is_final
GROUP BY service_name, span_name, span_kind
ORDER BY error_ratio DESC, service_name, span_name;
-- expected:
-- +-----------------+----------------+--------------------+-------+--------+----------------------+
-- | service_name    | span_name      | span_kind          | calls | errors | error_ratio          |
-- +-----------------+----------------+--------------------+-------+--------+----------------------+
-- | checkout        | POST /checkout | SPAN_KIND_SERVER   | 25.0  | 4.0    | 0.16                 |
-- | checkout        | charge         | SPAN_KIND_CLIENT   | 12.0  | 1.0    | 0.08333333333333333  |
-- | cart            | GET /cart      | SPAN_KIND_SERVER   | 26.0  | 2.0    | 0.07692307692307693  |
-- | frontend        | GET /          | SPAN_KIND_SERVER   | 48.0  | 1.0    | 0.020833333333333332 |
-- | cart            | POST /cart     | SPAN_KIND_SERVER   | 9.0   | 0.0    | 0.0                  |
-- | unknown_service | ping           | SPAN_KIND_INTERNAL | 1.0   | 0.0    | 0.0                  |
-- +-----------------+----------------+--------------------+-------+--------+----------------------+

-- case: error_ratio_per_window_shows_the_incident
-- cart GET /cart: 2 calls per window, 3 with 1 error in w = 3 and 4 (1/3 = 0.333333).
SELECT window_start, calls, errors, error_ratio
FROM red
WHERE window_size = '10s' AND service_name = 'cart' AND span_name = 'GET /cart'
ORDER BY window_start;
-- expected:
-- +----------------------+-------+--------+--------------------+
-- | window_start         | calls | errors | error_ratio        |
-- +----------------------+-------+--------+--------------------+
-- | 2026-01-01T00:00:00Z | 2.0   | 0.0    | 0.0                |
-- | 2026-01-01T00:00:10Z | 2.0   | 0.0    | 0.0                |
-- | 2026-01-01T00:00:20Z | 2.0   | 0.0    | 0.0                |
-- | 2026-01-01T00:00:30Z | 3.0   | 1.0    | 0.3333333333333333 |
-- | 2026-01-01T00:00:40Z | 3.0   | 1.0    | 0.3333333333333333 |
-- | 2026-01-01T00:00:50Z | 2.0   | 0.0    | 0.0                |
-- | 2026-01-01T00:01:00Z | 2.0   | 0.0    | 0.0                |
-- | 2026-01-01T00:01:10Z | 2.0   | 0.0    | 0.0                |
-- | 2026-01-01T00:01:20Z | 2.0   | 0.0    | 0.0                |
-- | 2026-01-01T00:01:30Z | 2.0   | 0.0    | 0.0                |
-- | 2026-01-01T00:01:40Z | 2.0   | 0.0    | 0.0                |
-- | 2026-01-01T00:01:50Z | 2.0   | 0.0    | 0.0                |
-- +----------------------+-------+--------+--------------------+

-- case: ratio_of_sums_is_not_average_of_ratios
-- checkout POST /checkout over the final 1 m rollups: errors 2 + 2 = 4 of 12 + 13 = 25
-- calls -> 0.16, while the average of the two per-window ratios is (2/12 + 2/13)/2 = 0.160256.
SELECT sum(errors) / sum(calls) AS ratio_of_sums,
       round(avg(error_ratio), 6) AS average_of_ratios
FROM red
WHERE window_size = '1m' AND service_name = 'checkout' AND span_name = 'POST /checkout';
-- expected:
-- +---------------+-------------------+
-- | ratio_of_sums | average_of_ratios |
-- +---------------+-------------------+
-- | 0.16          | 0.160256          |
-- +---------------+-------------------+
