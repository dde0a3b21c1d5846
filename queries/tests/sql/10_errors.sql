-- Read-only and invalid queries fail with a clear error (the HTTP API maps them to 400).

-- case: drop_is_rejected
DROP TABLE red;
-- expected error: read-only

-- case: insert_is_rejected
INSERT INTO red (window_size) VALUES ('1s');
-- expected error: read-only

-- case: copy_is_rejected
COPY red TO '/tmp/red.csv';
-- expected error: read-only

-- case: two_statements_are_rejected
SELECT 1; SELECT 2;
-- expected error: exactly one statement

-- case: unknown_column
SELECT no_such_column FROM red;
-- expected error: no_such_column

-- case: unknown_table
SELECT * FROM no_such_table;
-- expected error: no_such_table

-- case: syntax_error
SELEC 1;
-- expected error: invalid SQL
