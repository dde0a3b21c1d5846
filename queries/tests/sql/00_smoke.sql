-- case: smoke
SELECT window_size, window_start, service_name, span_name, span_kind, dims, calls, errors, duration_min_ms, duration_avg_ms, duration_max_ms, p50_ms, p99_ms, is_final FROM red ORDER BY window_size, window_start, service_name, span_name;
-- expected:
