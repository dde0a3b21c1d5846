-- Configured dimensions are keys of the `dims` map (here `http.request.method`). Final 10 s
-- windows: GET = frontend 48 + cart GET /cart 26 = 74 calls; POST = cart POST /cart 9 +
-- checkout POST /checkout 25 = 34; empty (span without the attribute, no default) = charge 12
-- + ping 1 = 13.

-- case: dims_map_access
SELECT dims['http.request.method'] AS method, sum(calls) AS calls, count(DISTINCT service_name) AS services
FROM red
WHERE window_size = '10s' AND is_final
GROUP BY dims['http.request.method']
ORDER BY method;
-- expected:
-- +--------+-------+----------+
-- | method | calls | services |
-- +--------+-------+----------+
-- |        | 13.0  | 2        |
-- | GET    | 74.0  | 2        |
-- | POST   | 34.0  | 2        |
-- +--------+-------+----------+

-- case: filter_on_a_dimension
SELECT service_name, span_name, sum(calls) AS calls
FROM red
WHERE window_size = '1m' AND dims['http.request.method'] = 'POST'
GROUP BY service_name, span_name
ORDER BY service_name, span_name;
-- expected:
-- +--------------+----------------+-------+
-- | service_name | span_name      | calls |
-- +--------------+----------------+-------+
-- | cart         | POST /cart     | 9.0   |
-- | checkout     | POST /checkout | 25.0  |
-- +--------------+----------------+-------+

-- case: absent_map_key_is_null
SELECT count(*) AS rows, count(dims['no.such.key']) AS with_key
FROM red;
-- expected:
-- +------+----------+
-- | rows | with_key |
-- +------+----------+
-- | 68   | 0        |
-- +------+----------+

-- case: map_keys
SELECT DISTINCT map_keys(dims) AS keys FROM red ORDER BY keys;
-- expected:
-- +-----------------------+
-- | keys                  |
-- +-----------------------+
-- | [http.request.method] |
-- +-----------------------+
