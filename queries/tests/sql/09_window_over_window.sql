-- Window-over-window comparisons with LAG over window_start.

-- case: calls_vs_previous_window
-- frontend: 3, 4, 5 calls repeating; the provisional window 12 (3 calls) is excluded.
SELECT window_start, calls,
       lag(calls) OVER (ORDER BY window_start) AS prev_calls,
       calls - lag(calls) OVER (ORDER BY window_start) AS delta,
       p99_ms,
       p99_ms / lag(p99_ms) OVER (ORDER BY window_start) AS p99_ratio
FROM red
WHERE window_size = '10s' AND service_name = 'frontend' AND is_final
ORDER BY window_start;
-- expected:
-- +----------------------+-------+------------+-------+--------------------+--------------------+
-- | window_start         | calls | prev_calls | delta | p99_ms             | p99_ratio          |
-- +----------------------+-------+------------+-------+--------------------+--------------------+
-- | 2026-01-01T00:00:00Z | 3.0   |            |       | 19.886670240866184 |                    |
-- | 2026-01-01T00:00:10Z | 4.0   | 3.0        | 1.0   | 30.267171338721898 | 1.52198286450812   |
-- | 2026-01-01T00:00:20Z | 5.0   | 4.0        | 1.0   | 40.0477705332636   | 1.3231421623476598 |
-- | 2026-01-01T00:00:30Z | 3.0   | 5.0        | -2.0  | 19.886670240866184 | 0.4965737162409167 |
-- | 2026-01-01T00:00:40Z | 4.0   | 3.0        | 1.0   | 30.267171338721898 | 1.52198286450812   |
-- | 2026-01-01T00:00:50Z | 5.0   | 4.0        | 1.0   | 40.0477705332636   | 1.3231421623476598 |
-- | 2026-01-01T00:01:00Z | 3.0   | 5.0        | -2.0  | 19.886670240866184 | 0.4965737162409167 |
-- | 2026-01-01T00:01:10Z | 4.0   | 3.0        | 1.0   | 30.267171338721898 | 1.52198286450812   |
-- | 2026-01-01T00:01:20Z | 5.0   | 4.0        | 1.0   | 40.0477705332636   | 1.3231421623476598 |
-- | 2026-01-01T00:01:30Z | 3.0   | 5.0        | -2.0  | 19.886670240866184 | 0.4965737162409167 |
-- | 2026-01-01T00:01:40Z | 4.0   | 3.0        | 1.0   | 30.267171338721898 | 1.52198286450812   |
-- | 2026-01-01T00:01:50Z | 5.0   | 4.0        | 1.0   | 40.0477705332636   | 1.3231421623476598 |
-- +----------------------+-------+------------+-------+--------------------+--------------------+

-- case: minute_over_minute_per_service
-- 1 m rollups per service: cart 14+3 = 17 then 12+6 = 18; checkout 12+6 = 18 then 13+6 = 19;
-- frontend 24 then 24; unknown_service only in the first minute.
WITH m AS (
  SELECT window_start, service_name, sum(calls) AS calls, sum(errors) AS errors
  FROM red WHERE window_size = '1m' AND is_final
  GROUP BY window_start, service_name
)
SELECT window_start, service_name, calls,
       lag(calls) OVER (PARTITION BY service_name ORDER BY window_start) AS prev_calls,
       errors - lag(errors) OVER (PARTITION BY service_name ORDER BY window_start) AS errors_delta
FROM m
ORDER BY service_name, window_start;
-- expected:
-- +----------------------+-----------------+-------+------------+--------------+
-- | window_start         | service_name    | calls | prev_calls | errors_delta |
-- +----------------------+-----------------+-------+------------+--------------+
-- | 2026-01-01T00:00:00Z | cart            | 17.0  |            |              |
-- | 2026-01-01T00:01:00Z | cart            | 18.0  | 17.0       | -2.0         |
-- | 2026-01-01T00:00:00Z | checkout        | 18.0  |            |              |
-- | 2026-01-01T00:01:00Z | checkout        | 19.0  | 18.0       | 1.0          |
-- | 2026-01-01T00:00:00Z | frontend        | 24.0  |            |              |
-- | 2026-01-01T00:01:00Z | frontend        | 24.0  | 24.0       | 1.0          |
-- | 2026-01-01T00:00:00Z | unknown_service | 1.0   |            |              |
-- +----------------------+-----------------+-------+------------+--------------+

-- case: error_burst_detection
-- Windows where an operation's error ratio rose by more than 0.2 over the previous window:
-- cart GET /cart at 00:00:30 (0 -> 1/3); checkout POST /checkout at w = 4, 8 (0 -> 1/2; w = 0
-- has no previous window) and w = 10 (the late error: 0 -> 1/3); frontend GET / at w = 7
-- (0 -> 1/4); checkout charge at w = 11 (0 -> 1).
WITH r AS (
  SELECT window_start, service_name, span_name, error_ratio,
         error_ratio - lag(error_ratio) OVER (PARTITION BY service_name, span_name ORDER BY window_start) AS rise
  FROM red WHERE window_size = '10s' AND is_final
)
SELECT window_start, service_name, span_name, error_ratio, rise
FROM r WHERE rise > 0.2
ORDER BY window_start, service_name, span_name;
-- expected:
-- +----------------------+--------------+----------------+--------------------+--------------------+
-- | window_start         | service_name | span_name      | error_ratio        | rise               |
-- +----------------------+--------------+----------------+--------------------+--------------------+
-- | 2026-01-01T00:00:30Z | cart         | GET /cart      | 0.3333333333333333 | 0.3333333333333333 |
-- | 2026-01-01T00:00:40Z | checkout     | POST /checkout | 0.5                | 0.5                |
-- | 2026-01-01T00:01:10Z | frontend     | GET /          | 0.25               | 0.25               |
-- | 2026-01-01T00:01:20Z | checkout     | POST /checkout | 0.5                | 0.5                |
-- | 2026-01-01T00:01:40Z | checkout     | POST /checkout | 0.3333333333333333 | 0.3333333333333333 |
-- | 2026-01-01T00:01:50Z | checkout     | charge         | 1.0                | 1.0                |
-- +----------------------+--------------+----------------+--------------------+--------------------+
