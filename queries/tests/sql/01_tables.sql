-- The tables and their schemas (DESIGN.md "SQL tables"). Only `red` has a producer in the
-- data set: the others exist with their schema and are empty.

-- case: show_tables
-- rowsort
SHOW TABLES;
-- expected:

-- case: describe_red
DESCRIBE red;
-- expected:

-- case: describe_spans
DESCRIBE spans;
-- expected:

-- case: describe_metric_points
DESCRIBE metric_points;
-- expected:

-- case: describe_anomalies
DESCRIBE anomalies;
-- expected:

-- case: describe_predictions
DESCRIBE predictions;
-- expected:

-- case: describe_service_graph
DESCRIBE service_graph;
-- expected:

-- case: describe_continuous_results
DESCRIBE continuous_results;
-- expected:

-- case: empty_tables_have_no_rows
SELECT 'anomalies' AS t, count(*) AS n FROM anomalies
UNION ALL SELECT 'continuous_results', count(*) FROM continuous_results
UNION ALL SELECT 'metric_points', count(*) FROM metric_points
UNION ALL SELECT 'predictions', count(*) FROM predictions
UNION ALL SELECT 'service_graph', count(*) FROM service_graph
UNION ALL SELECT 'spans', count(*) FROM spans
ORDER BY t;
-- expected:

-- case: empty_table_select_keeps_columns
SELECT window_start, signal, service_name, severity, score FROM anomalies ORDER BY window_start;
-- expected:

-- case: empty_table_aggregate
-- An aggregate over an empty table is one row of NULLs (and 0 for count).
SELECT count(*) AS n, max(duration_ms) AS max_ms, min(end_time) AS first_end FROM spans;
-- expected:
