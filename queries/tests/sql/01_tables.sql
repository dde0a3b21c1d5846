-- The tables and their schemas (docs/design.md, "Tables"). Only `red` has a producer in the
-- data set: the others exist with their schema and are empty.

-- case: show_tables
-- rowsort
SHOW TABLES;
-- expected:
-- +---------------+--------------------+--------------------+------------+
-- | table_catalog | table_schema       | table_name         | table_type |
-- +---------------+--------------------+--------------------+------------+
-- | datafusion    | information_schema | columns            | VIEW       |
-- | datafusion    | information_schema | df_settings        | VIEW       |
-- | datafusion    | information_schema | parameters         | VIEW       |
-- | datafusion    | information_schema | routines           | VIEW       |
-- | datafusion    | information_schema | schemata           | VIEW       |
-- | datafusion    | information_schema | tables             | VIEW       |
-- | datafusion    | information_schema | views              | VIEW       |
-- | datafusion    | public             | anomalies          | BASE TABLE |
-- | datafusion    | public             | continuous_results | BASE TABLE |
-- | datafusion    | public             | metric_points      | BASE TABLE |
-- | datafusion    | public             | predictions        | BASE TABLE |
-- | datafusion    | public             | problem_members    | BASE TABLE |
-- | datafusion    | public             | problems           | BASE TABLE |
-- | datafusion    | public             | red                | BASE TABLE |
-- | datafusion    | public             | red_windows        | BASE TABLE |
-- | datafusion    | public             | service_graph      | BASE TABLE |
-- | datafusion    | public             | sessions           | BASE TABLE |
-- | datafusion    | public             | spans              | BASE TABLE |
-- +---------------+--------------------+--------------------+------------+

-- case: describe_red
DESCRIBE red;
-- expected:
-- +-----------------+----------------------------------------------------------------------------------+-------------+
-- | column_name     | data_type                                                                        | is_nullable |
-- +-----------------+----------------------------------------------------------------------------------+-------------+
-- | window_size     | Utf8                                                                             | NO          |
-- | window_start    | Timestamp(ms, "UTC")                                                             | NO          |
-- | window_end      | Timestamp(ms, "UTC")                                                             | NO          |
-- | service_name    | Utf8                                                                             | NO          |
-- | span_name       | Utf8                                                                             | NO          |
-- | span_kind       | Utf8                                                                             | NO          |
-- | dims            | Map("entries": non-null Struct("keys": non-null Utf8, "values": Utf8), unsorted) | NO          |
-- | calls           | Float64                                                                          | NO          |
-- | errors          | Float64                                                                          | NO          |
-- | error_ratio     | Float64                                                                          | NO          |
-- | rate_per_s      | Float64                                                                          | NO          |
-- | duration_min_ms | Float64                                                                          | YES         |
-- | duration_avg_ms | Float64                                                                          | YES         |
-- | duration_max_ms | Float64                                                                          | YES         |
-- | p50_ms          | Float64                                                                          | YES         |
-- | p90_ms          | Float64                                                                          | YES         |
-- | p95_ms          | Float64                                                                          | YES         |
-- | p99_ms          | Float64                                                                          | YES         |
-- | duration_sketch | Binary                                                                           | NO          |
-- | is_final        | Boolean                                                                          | NO          |
-- +-----------------+----------------------------------------------------------------------------------+-------------+

-- case: describe_red_windows
-- One row per closed `red` window; `version` changes when late data restates the window.
DESCRIBE red_windows;
-- expected:
-- +--------------+----------------------+-------------+
-- | column_name  | data_type            | is_nullable |
-- +--------------+----------------------+-------------+
-- | window_size  | Utf8                 | NO          |
-- | window_start | Timestamp(ms, "UTC") | NO          |
-- | window_end   | Timestamp(ms, "UTC") | NO          |
-- | series       | Int64                | NO          |
-- | version      | Int64                | NO          |
-- | sealed       | Boolean              | NO          |
-- +--------------+----------------------+-------------+

-- case: describe_spans
DESCRIBE spans;
-- expected:
-- +----------------+----------------------------------------------------------------------------------+-------------+
-- | column_name    | data_type                                                                        | is_nullable |
-- +----------------+----------------------------------------------------------------------------------+-------------+
-- | end_time       | Timestamp(ns, "UTC")                                                             | NO          |
-- | start_time     | Timestamp(ns, "UTC")                                                             | NO          |
-- | service_name   | Utf8                                                                             | NO          |
-- | span_name      | Utf8                                                                             | NO          |
-- | span_kind      | Utf8                                                                             | NO          |
-- | status_code    | Utf8                                                                             | NO          |
-- | duration_ms    | Float64                                                                          | NO          |
-- | weight         | Float64                                                                          | NO          |
-- | trace_id       | Utf8                                                                             | NO          |
-- | span_id        | Utf8                                                                             | NO          |
-- | parent_span_id | Utf8                                                                             | YES         |
-- | dims           | Map("entries": non-null Struct("keys": non-null Utf8, "values": Utf8), unsorted) | NO          |
-- +----------------+----------------------------------------------------------------------------------+-------------+

-- case: describe_metric_points
DESCRIBE metric_points;
-- expected:
-- +---------------------+----------------------------------------------------------------------------------+-------------+
-- | column_name         | data_type                                                                        | is_nullable |
-- +---------------------+----------------------------------------------------------------------------------+-------------+
-- | window_size         | Utf8                                                                             | NO          |
-- | window_start        | Timestamp(ms, "UTC")                                                             | NO          |
-- | window_end          | Timestamp(ms, "UTC")                                                             | NO          |
-- | metric_name         | Utf8                                                                             | NO          |
-- | metric_type         | Utf8                                                                             | NO          |
-- | unit                | Utf8                                                                             | YES         |
-- | service_name        | Utf8                                                                             | YES         |
-- | attributes          | Map("entries": non-null Struct("keys": non-null Utf8, "values": Utf8), unsorted) | NO          |
-- | count               | Float64                                                                          | YES         |
-- | sum                 | Float64                                                                          | YES         |
-- | min                 | Float64                                                                          | YES         |
-- | max                 | Float64                                                                          | YES         |
-- | last                | Float64                                                                          | YES         |
-- | avg                 | Float64                                                                          | YES         |
-- | bucket_bounds       | List(Float64)                                                                    | YES         |
-- | bucket_counts       | List(UInt64)                                                                     | YES         |
-- | exp_scale           | Int32                                                                            | YES         |
-- | exp_zero_count      | UInt64                                                                           | YES         |
-- | exp_positive_offset | Int32                                                                            | YES         |
-- | exp_positive_counts | List(UInt64)                                                                     | YES         |
-- | exp_negative_offset | Int32                                                                            | YES         |
-- | exp_negative_counts | List(UInt64)                                                                     | YES         |
-- | quantiles           | List(Float64)                                                                    | YES         |
-- | quantile_values     | List(Float64)                                                                    | YES         |
-- | is_final            | Boolean                                                                          | NO          |
-- +---------------------+----------------------------------------------------------------------------------+-------------+

-- case: describe_anomalies
DESCRIBE anomalies;
-- expected:
-- +----------------------+----------------------+-------------+
-- | column_name          | data_type            | is_nullable |
-- +----------------------+----------------------+-------------+
-- | window_start         | Timestamp(ms, "UTC") | NO          |
-- | window_end           | Timestamp(ms, "UTC") | NO          |
-- | signal               | Utf8                 | NO          |
-- | service_name         | Utf8                 | NO          |
-- | span_name            | Utf8                 | NO          |
-- | span_kind            | Utf8                 | NO          |
-- | value                | Float64              | NO          |
-- | expected_min         | Float64              | NO          |
-- | expected_max         | Float64              | NO          |
-- | severity             | Utf8                 | NO          |
-- | score                | Float64              | YES         |
-- | detector             | Utf8                 | NO          |
-- | incident_id          | Utf8                 | NO          |
-- | incident_state       | Utf8                 | NO          |
-- | incident_start       | Timestamp(ms, "UTC") | NO          |
-- | incident_duration_ms | Int64                | NO          |
-- | incident_windows     | Int64                | NO          |
-- | p_value              | Float64              | YES         |
-- | z                    | Float64              | YES         |
-- +----------------------+----------------------+-------------+

-- case: describe_predictions
DESCRIBE predictions;
-- expected:
-- +----------------------+----------------------+-------------+
-- | column_name          | data_type            | is_nullable |
-- +----------------------+----------------------+-------------+
-- | window_end           | Timestamp(ms, "UTC") | NO          |
-- | signal               | Utf8                 | NO          |
-- | service_name         | Utf8                 | NO          |
-- | span_name            | Utf8                 | NO          |
-- | value                | Float64              | NO          |
-- | lower                | Float64              | NO          |
-- | upper                | Float64              | NO          |
-- | confidence           | Float64              | NO          |
-- | horizon_ms           | Int64                | NO          |
-- | method               | Utf8                 | NO          |
-- | trend_change         | Boolean              | NO          |
-- | time_to_threshold_ms | Int64                | YES         |
-- +----------------------+----------------------+-------------+

-- case: describe_service_graph
DESCRIBE service_graph;
-- expected:
-- +-----------------+----------------------------------------------------------------------------------+-------------+
-- | column_name     | data_type                                                                        | is_nullable |
-- +-----------------+----------------------------------------------------------------------------------+-------------+
-- | window_size     | Utf8                                                                             | NO          |
-- | window_start    | Timestamp(ms, "UTC")                                                             | NO          |
-- | window_end      | Timestamp(ms, "UTC")                                                             | NO          |
-- | client          | Utf8                                                                             | NO          |
-- | server          | Utf8                                                                             | NO          |
-- | connection_type | Utf8                                                                             | NO          |
-- | dims            | Map("entries": non-null Struct("keys": non-null Utf8, "values": Utf8), unsorted) | NO          |
-- | requests        | Float64                                                                          | NO          |
-- | failed          | Float64                                                                          | NO          |
-- | client_p99_ms   | Float64                                                                          | YES         |
-- | server_p99_ms   | Float64                                                                          | YES         |
-- | is_final        | Boolean                                                                          | NO          |
-- +-----------------+----------------------------------------------------------------------------------+-------------+

-- case: describe_sessions
DESCRIBE sessions;
-- expected:
-- +--------------------+----------------------+-------------+
-- | column_name        | data_type            | is_nullable |
-- +--------------------+----------------------+-------------+
-- | session_key        | Utf8                 | NO          |
-- | gap                | Utf8                 | NO          |
-- | key_value          | Utf8                 | NO          |
-- | session_id         | UInt64               | NO          |
-- | session_start      | Timestamp(ms, "UTC") | NO          |
-- | session_end        | Timestamp(ms, "UTC") | NO          |
-- | spans              | Float64              | NO          |
-- | errors             | Float64              | NO          |
-- | duration_ms        | Float64              | NO          |
-- | services           | List(Utf8)           | NO          |
-- | services_truncated | Boolean              | NO          |
-- | root_span_name     | Utf8                 | YES         |
-- | is_final           | Boolean              | NO          |
-- +--------------------+----------------------+-------------+

-- case: describe_continuous_results
DESCRIBE continuous_results;
-- expected:
-- +--------------+----------------------+-------------+
-- | column_name  | data_type            | is_nullable |
-- +--------------+----------------------+-------------+
-- | name         | Utf8                 | NO          |
-- | window_start | Timestamp(ms, "UTC") | NO          |
-- | window_end   | Timestamp(ms, "UTC") | NO          |
-- | columns      | Utf8                 | NO          |
-- +--------------+----------------------+-------------+

-- case: describe_problems
DESCRIBE problems;
-- expected:
-- +----------------+----------------------+-------------+
-- | column_name    | data_type            | is_nullable |
-- +----------------+----------------------+-------------+
-- | updated_at     | Timestamp(ms, "UTC") | NO          |
-- | problem_id     | Utf8                 | NO          |
-- | state          | Utf8                 | NO          |
-- | onset          | Timestamp(ms, "UTC") | NO          |
-- | opened_at      | Timestamp(ms, "UTC") | NO          |
-- | resolved_at    | Timestamp(ms, "UTC") | YES         |
-- | severity       | Utf8                 | NO          |
-- | cause_service  | Utf8                 | YES         |
-- | cause_span     | Utf8                 | YES         |
-- | cause_kind     | Utf8                 | YES         |
-- | cause_signal   | Utf8                 | YES         |
-- | cause_evidence | Utf8                 | YES         |
-- | causes         | Utf8                 | NO          |
-- | members        | Int64                | NO          |
-- | services       | Utf8                 | NO          |
-- | summary        | Utf8                 | NO          |
-- +----------------+----------------------+-------------+

-- case: describe_problem_members
DESCRIBE problem_members;
-- expected:
-- +--------------------+----------------------+-------------+
-- | column_name        | data_type            | is_nullable |
-- +--------------------+----------------------+-------------+
-- | updated_at         | Timestamp(ms, "UTC") | NO          |
-- | problem_id         | Utf8                 | NO          |
-- | incident_id        | Utf8                 | NO          |
-- | service_name       | Utf8                 | NO          |
-- | span_name          | Utf8                 | NO          |
-- | span_kind          | Utf8                 | NO          |
-- | signal             | Utf8                 | NO          |
-- | incident_start     | Timestamp(ms, "UTC") | NO          |
-- | last_anomalous_end | Timestamp(ms, "UTC") | NO          |
-- | severity           | Utf8                 | NO          |
-- | value              | Float64              | NO          |
-- | expected           | Float64              | NO          |
-- | resolved           | Boolean              | NO          |
-- | cause_rank         | Int64                | YES         |
-- +--------------------+----------------------+-------------+

-- case: empty_tables_have_no_rows
SELECT 'anomalies' AS t, count(*) AS n FROM anomalies
UNION ALL SELECT 'continuous_results', count(*) FROM continuous_results
UNION ALL SELECT 'metric_points', count(*) FROM metric_points
UNION ALL SELECT 'predictions', count(*) FROM predictions
UNION ALL SELECT 'problem_members', count(*) FROM problem_members
UNION ALL SELECT 'problems', count(*) FROM problems
UNION ALL SELECT 'service_graph', count(*) FROM service_graph
UNION ALL SELECT 'sessions', count(*) FROM sessions
UNION ALL SELECT 'spans', count(*) FROM spans
ORDER BY t;
-- expected:
-- +--------------------+---+
-- | t                  | n |
-- +--------------------+---+
-- | anomalies          | 0 |
-- | continuous_results | 0 |
-- | metric_points      | 0 |
-- | predictions        | 0 |
-- | problem_members    | 0 |
-- | problems           | 0 |
-- | service_graph      | 0 |
-- | sessions           | 0 |
-- | spans              | 0 |
-- +--------------------+---+

-- case: empty_table_select_keeps_columns
SELECT window_start, signal, service_name, severity, score FROM anomalies ORDER BY window_start;
-- expected:
-- +--------------+--------+--------------+----------+-------+
-- | window_start | signal | service_name | severity | score |
-- +--------------+--------+--------------+----------+-------+
-- +--------------+--------+--------------+----------+-------+

-- case: empty_table_aggregate
-- An aggregate over an empty table is one row of NULLs (and 0 for count).
SELECT count(*) AS n, max(duration_ms) AS max_ms, min(end_time) AS first_end FROM spans;
-- expected:
-- +---+--------+-----------+
-- | n | max_ms | first_end |
-- +---+--------+-----------+
-- | 0 |        |           |
-- +---+--------+-----------+
