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

-- case: error_burst_detection
-- Windows where an operation's error ratio rose by more than 0.2 over the previous window:
-- cart GET /cart at 00:00:30 (0 -> 1/3) and checkout POST /checkout when w % 4 = 0 (0 -> 0.5).
WITH r AS (
  SELECT window_start, service_name, span_name, error_ratio,
         error_ratio - lag(error_ratio) OVER (PARTITION BY service_name, span_name ORDER BY window_start) AS rise
  FROM red WHERE window_size = '10s' AND is_final
)
SELECT window_start, service_name, span_name, error_ratio, rise
FROM r WHERE rise > 0.2
ORDER BY window_start, service_name, span_name;
-- expected:
