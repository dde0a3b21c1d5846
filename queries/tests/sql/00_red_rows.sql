-- The whole `red` table of the data set (queries/tests/common/mod.rs): the reference every
-- other case can be checked against. Windows 0–11 (00:00:00–00:02:00) are final, window 12 is
-- provisional; both 1 m rollups are final.
--
-- Hand checks (DDSketch lower quantile: the value at rank floor(q·(n−1)) of the sorted
-- durations, reported within 1 % — a bin's estimate is 2·γ^k/(γ+1), γ = 1.01/0.99 — and the
-- row's p50…p99 are clamped to [min, max]):
-- * 10s 00:00:00 checkout POST /checkout: 100 ms + 300 ms ERROR (w % 4 = 0) -> calls 2,
--   errors 1, avg 200; p50 and p99 both rank floor(0.5·1) = floor(0.99·1) = 0 -> 100 ms,
--   reported 100.4946 (+0.49 %).
-- * 10s 00:01:40 checkout POST /checkout: 200, 300 and the late 900 ms ERROR -> calls 3,
--   errors 1, avg 1400/3 = 466.67, p99 rank floor(0.99·2) = 1 -> 300 ms, reported 301.913.
-- * 10s 00:01:40 cart POST /cart: one span of sampling weight 4 -> calls 4.0.
-- * 1m 00:00:00 cart GET /cart: 6×(4, 8) + 2×400 ERROR -> calls 14, errors 2,
--   avg (6·12 + 800)/14 = 62.2857; p99 rank floor(0.99·13) = 12 -> x[12] = 400, reported 399.474.
-- * 1m 00:01:00 checkout POST /checkout: 160…210 + 6×300 + 900 -> calls 13, errors 2 (w = 8 and
--   the late span), avg (1110 + 1800 + 900)/13 = 293.077; p50 rank 6 and p99 rank 11 -> 300.
-- * 1m 00:00:00 checkout POST /checkout: p99 would be reported 301.91 but is clamped to max 300.
-- * spans without service.name count as unknown_service; a dimension absent from a span
--   without a default is an empty value.

-- case: red_rows
SELECT window_size, window_start, service_name, span_name, span_kind, dims, calls, errors, duration_min_ms, duration_avg_ms, duration_max_ms, p50_ms, p99_ms, is_final
FROM red
ORDER BY window_size, window_start, service_name, span_name;
-- expected:

-- case: derived_columns
-- window_end = window_start + size, rate_per_s = calls / size in seconds, error_ratio =
-- errors / calls. 1m 00:00:00 frontend GET /: 24 calls / 60 s = 0.4/s; cart GET /cart:
-- 14 / 60 = 0.2333/s, 2/14 = 0.142857 error ratio.
SELECT window_size, window_start, window_end, service_name, span_name, calls, rate_per_s, errors, error_ratio, p90_ms, p95_ms
FROM red
WHERE window_size = '1m' AND window_start = TIMESTAMP '2026-01-01T00:00:00Z'
ORDER BY service_name, span_name;
-- expected:
