-- Time-range filters with literal timestamps (no now()): window bounds are
-- Timestamp(Millisecond, "UTC"), half-open [window_start, window_end).

-- case: half_open_range_on_window_start
-- [00:01:00, 00:01:30): windows 6, 7, 8 -> frontend 3 + 4 + 5 = 12 calls.
SELECT window_start, window_end, sum(calls) AS calls, count(*) AS series
FROM red
WHERE window_size = '10s'
  AND window_start >= TIMESTAMP '2026-01-01T00:01:00Z'
  AND window_start < TIMESTAMP '2026-01-01T00:01:30Z'
  AND service_name = 'frontend'
GROUP BY window_start, window_end
ORDER BY window_start;
-- expected:
-- +----------------------+----------------------+-------+--------+
-- | window_start         | window_end           | calls | series |
-- +----------------------+----------------------+-------+--------+
-- | 2026-01-01T00:01:00Z | 2026-01-01T00:01:10Z | 3.0   | 1      |
-- | 2026-01-01T00:01:10Z | 2026-01-01T00:01:20Z | 4.0   | 1      |
-- | 2026-01-01T00:01:20Z | 2026-01-01T00:01:30Z | 5.0   | 1      |
-- +----------------------+----------------------+-------+--------+

-- case: between_is_inclusive
-- BETWEEN 00:01:00 AND 00:01:30 includes the window starting at 00:01:30 (4 windows).
SELECT count(DISTINCT window_start) AS windows, min(window_start) AS first, max(window_start) AS last
FROM red
WHERE window_size = '10s'
  AND window_start BETWEEN TIMESTAMP '2026-01-01T00:01:00Z' AND TIMESTAMP '2026-01-01T00:01:30Z';
-- expected:
-- +---------+----------------------+----------------------+
-- | windows | first                | last                 |
-- +---------+----------------------+----------------------+
-- | 4       | 2026-01-01T00:01:00Z | 2026-01-01T00:01:30Z |
-- +---------+----------------------+----------------------+

-- case: window_end_bound_selects_whole_windows
-- window_end <= 00:00:30: windows 0, 1, 2 of every spec; the 1 m rollups end later.
SELECT window_size, count(DISTINCT window_start) AS windows, sum(calls) AS calls
FROM red
WHERE window_end <= TIMESTAMP '2026-01-01T00:00:30Z'
GROUP BY window_size
ORDER BY window_size;
-- expected:
-- +-------------+---------+-------+
-- | window_size | windows | calls |
-- +-------------+---------+-------+
-- | 10s         | 3       | 30.0  |
-- +-------------+---------+-------+

-- case: literal_on_the_left_and_other_units
-- The same range as half_open_range_on_window_start (all series: windows 6, 7, 8 hold 5 + 4 + 5
-- rows) written with the literal first and with a cast string.
SELECT count(*) AS rows
FROM red
WHERE TIMESTAMP '2026-01-01T00:01:00Z' <= window_start
  AND window_start < CAST('2026-01-01T00:01:30Z' AS TIMESTAMP)
  AND window_size = '10s';
-- expected:
-- +------+
-- | rows |
-- +------+
-- | 14   |
-- +------+

-- case: range_with_no_windows
SELECT count(*) AS rows, sum(calls) AS calls
FROM red
WHERE window_start >= TIMESTAMP '2026-01-02T00:00:00Z';
-- expected:
-- +------+-------+
-- | rows | calls |
-- +------+-------+
-- | 0    |       |
-- +------+-------+

-- case: time_range_and_service_list
SELECT service_name, sum(calls) AS calls
FROM red
WHERE window_size = '10s' AND service_name IN ('cart', 'checkout')
  AND window_start >= TIMESTAMP '2026-01-01T00:00:30Z' AND window_start < TIMESTAMP '2026-01-01T00:00:50Z'
GROUP BY service_name
ORDER BY service_name;
-- expected:
-- +--------------+-------+
-- | service_name | calls |
-- +--------------+-------+
-- | cart         | 7.0   |
-- | checkout     | 6.0   |
-- +--------------+-------+
