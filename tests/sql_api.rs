//! The SQL APIs end to end (docs/design.md, "Tables"): known spans go in over OTLP/gRPC, and the
//! `red` table answers with exactly their calls and errors — over the HTTP API in JSON, CSV and
//! Arrow IPC, over Flight SQL (statements, prepared statements, catalog listings) and through
//! `redwatch sql`. Bad SQL, writes, unknown columns, oversized results, timeouts and the memory
//! limit get their error codes and statuses, and after each one the server still answers and
//! ingest still counts new spans. A rollup window restated by late data keeps its restatement
//! in the step that also purges it.
//!
//! Each test runs its own in-process engine on ephemeral ports.

mod common;

use arrow::array::{Array, Float64Array, StringArray};
use arrow::datatypes::DataType;
use arrow::record_batch::RecordBatch;
use arrow_flight::error::FlightError;
use arrow_flight::sql::client::FlightSqlServiceClient;
use arrow_flight::sql::{CommandGetTables, SqlInfo};
use arrow_flight::FlightInfo;
use common::*;
use futures::TryStreamExt;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use opentelemetry_proto::tonic::trace::v1::status::StatusCode;
use redwatch::config::Config;
use redwatch::server::Engine;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;
use tonic::transport::Channel;

/// The shared test config plus both SQL listeners on ephemeral ports and 2 s allowed lateness.
fn sql_config() -> Config {
    let mut cfg = test_config();
    let any = SocketAddr::from(([127, 0, 0, 1], 0));
    cfg.sql.http_endpoint = Some(any);
    cfg.sql.flight_endpoint = Some(any);
    cfg.windows.allowed_lateness = Duration::from_secs(2);
    cfg
}

// ---------------------------------------------------------------------------------------------
// Workload
// ---------------------------------------------------------------------------------------------

/// One RED series as the `red` table keys it (status is not a key).
type Series = (String, String, String);

/// Calls and errors per series that the test expects once every window is final.
#[derive(Debug, Default, Clone, PartialEq)]
struct Expected(BTreeMap<Series, (f64, f64)>);

impl Expected {
    fn add(&mut self, service: &str, spans: &[SpanSpec]) {
        for s in spans {
            let key = (
                service.to_string(),
                s.name.clone(),
                s.kind.as_str_name().to_string(),
            );
            let e = self.0.entry(key).or_default();
            e.0 += 1.0;
            if s.status == StatusCode::Error {
                e.1 += 1.0;
            }
        }
    }

    fn calls(&self) -> f64 {
        self.0.values().map(|(c, _)| c).sum()
    }
}

/// Sends `spans` of `service` over OTLP/gRPC, asserts they were all accepted and records them.
async fn send(e: &Engine, exp: &mut Expected, service: &str, spans: &[SpanSpec]) {
    let resp = grpc_export(e, trace_request(Some(service), spans))
        .await
        .unwrap_or_else(|s| panic!("spans of {service} refused: {s:?}"));
    assert_eq!(rejected_spans(&resp), 0, "spans of {service}");
    exp.add(service, spans);
}

/// The known workload: two services, four series, errors on some.
async fn send_workload(e: &Engine, exp: &mut Expected, phase: &str) {
    let mut checkout = Vec::new();
    for d in [5, 20, 120] {
        checkout.push(
            SpanSpec::new(&format!("{phase} GET /cart"))
                .status(StatusCode::Ok)
                .duration_ms(d),
        );
    }
    checkout.push(
        SpanSpec::new(&format!("{phase} GET /cart"))
            .status(StatusCode::Error)
            .duration_ms(700),
    );
    for d in [3, 900] {
        checkout.push(
            SpanSpec::new(&format!("{phase} charge"))
                .kind(SpanKind::Client)
                .status(StatusCode::Error)
                .duration_ms(d),
        );
    }
    send(e, exp, "checkout", &checkout).await;
    let inventory: Vec<SpanSpec> = (0..5)
        .map(|i| SpanSpec::new(&format!("{phase} reserve")).duration_ms(1 + i))
        .collect();
    send(e, exp, "inventory", &inventory).await;
}

// ---------------------------------------------------------------------------------------------
// HTTP API
// ---------------------------------------------------------------------------------------------

/// POSTs `{"query", "format"}` to the SQL HTTP API.
async fn sql(e: &Engine, query: &str, format: &str) -> HttpReply {
    let url = format!("http://{}/api/v1/sql", e.addrs["sql_http"]);
    let body = serde_json::json!({"query": query, "format": format}).to_string();
    let r = reqwest::Client::new()
        .post(url)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(body)
        .send()
        .await
        .unwrap_or_else(|err| panic!("SQL API unreachable for {query:?}: {err}"));
    HttpReply {
        status: r.status().as_u16(),
        headers: r.headers().clone(),
        body: r.bytes().await.expect("answer body").to_vec(),
    }
}

/// Runs `query` as JSON and returns its rows; panics on an error answer.
async fn sql_rows(e: &Engine, query: &str) -> Vec<serde_json::Value> {
    let r = sql(e, query, "json").await;
    assert_eq!(
        r.status,
        200,
        "{query}: {}",
        String::from_utf8_lossy(&r.body)
    );
    assert_eq!(r.content_type(), "application/json");
    match r.json().get("rows") {
        Some(serde_json::Value::Array(rows)) => rows.clone(),
        other => panic!("{query}: no rows array in the answer: {other:?}"),
    }
}

/// Asserts an error answer: HTTP `status` and `{"error": {"code": code, "message": ...}}` whose
/// message mentions every one of `needles`.
fn assert_sql_error(r: &HttpReply, status: u16, code: &str, needles: &[&str]) {
    let body = String::from_utf8_lossy(&r.body);
    assert_eq!(
        r.status, status,
        "expected HTTP {status} {code}, got: {body}"
    );
    let v = r.json();
    assert_eq!(v["error"]["code"], code, "{body}");
    let msg = v["error"]["message"].as_str().unwrap_or_default();
    assert!(!msg.is_empty(), "error without a message: {body}");
    assert_mentions(msg, needles);
}

/// `sum(calls)` over the final rows of `red` (0 when there are none).
async fn final_calls(e: &Engine) -> f64 {
    let rows = sql_rows(
        e,
        "SELECT coalesce(sum(calls), 0.0) AS n FROM red WHERE is_final",
    )
    .await;
    rows[0]["n"].as_f64().expect("a number")
}

/// Waits until the final rows of `red` count exactly `exp`'s calls.
async fn wait_final_calls(e: &Engine, exp: &Expected) {
    let want = exp.calls();
    wait_until(
        DEADLINE,
        &format!("red counts {want} final calls"),
        || async { final_calls(e).await == want },
    )
    .await;
    // Nothing beyond what was sent arrives later.
    assert_eq!(final_calls(e).await, want);
}

const PER_SERIES: &str = "SELECT service_name, span_name, span_kind, sum(calls) AS calls, \
     sum(errors) AS errors FROM red WHERE is_final \
     GROUP BY service_name, span_name, span_kind ORDER BY service_name, span_name, span_kind";

/// Per-series calls and errors from JSON rows of `PER_SERIES`.
fn series_of_json(rows: &[serde_json::Value]) -> Expected {
    let mut got = Expected::default();
    for r in rows {
        let s = |k: &str| {
            r[k].as_str()
                .unwrap_or_else(|| panic!("{k} in {r}"))
                .to_string()
        };
        let f = |k: &str| r[k].as_f64().unwrap_or_else(|| panic!("{k} in {r}"));
        got.0.insert(
            (s("service_name"), s("span_name"), s("span_kind")),
            (f("calls"), f("errors")),
        );
    }
    got
}

/// Per-series calls and errors from Arrow batches of `PER_SERIES`.
fn series_of_batches(batches: &[RecordBatch]) -> Expected {
    let mut got = Expected::default();
    for b in batches {
        let text = |name: &str| -> &StringArray {
            b.column_by_name(name)
                .and_then(|c| c.as_any().downcast_ref::<StringArray>())
                .unwrap_or_else(|| panic!("{name} is a Utf8 column of {:?}", b.schema()))
        };
        let num = |name: &str| -> &Float64Array {
            b.column_by_name(name)
                .and_then(|c| c.as_any().downcast_ref::<Float64Array>())
                .unwrap_or_else(|| panic!("{name} is a Float64 column of {:?}", b.schema()))
        };
        let (svc, span, kind) = (text("service_name"), text("span_name"), text("span_kind"));
        let (calls, errors) = (num("calls"), num("errors"));
        for i in 0..b.num_rows() {
            got.0.insert(
                (
                    svc.value(i).to_string(),
                    span.value(i).to_string(),
                    kind.value(i).to_string(),
                ),
                (calls.value(i), errors.value(i)),
            );
        }
    }
    got
}

fn decode_ipc(body: &[u8]) -> Vec<RecordBatch> {
    let reader = arrow::ipc::reader::StreamReader::try_new(std::io::Cursor::new(body), None)
        .expect("an Arrow IPC stream");
    reader
        .collect::<Result<Vec<_>, _>>()
        .expect("IPC batches decode")
}

// ---------------------------------------------------------------------------------------------
// Flight SQL
// ---------------------------------------------------------------------------------------------

async fn flight_client(e: &Engine) -> FlightSqlServiceClient<Channel> {
    let addr = e.addrs["flight_sql"];
    let channel = Channel::from_shared(format!("http://{addr}"))
        .expect("valid URI")
        .connect()
        .await
        .expect("connect to Flight SQL");
    FlightSqlServiceClient::new(channel)
}

/// Fetches every endpoint of `info` from the same server.
async fn fetch(
    c: &mut FlightSqlServiceClient<Channel>,
    info: FlightInfo,
) -> Result<Vec<RecordBatch>, FlightError> {
    let mut out = Vec::new();
    for ep in info.endpoint {
        let ticket = ep.ticket.expect("an endpoint with a ticket");
        let batches: Vec<RecordBatch> = c.do_get(ticket).await?.try_collect().await?;
        out.extend(batches);
    }
    Ok(out)
}

/// Runs `query` as a Flight SQL statement.
async fn flight_query(
    c: &mut FlightSqlServiceClient<Channel>,
    query: &str,
) -> Result<Vec<RecordBatch>, FlightError> {
    let info = c.execute(query.to_string(), None).await?;
    fetch(c, info).await
}

/// The gRPC code of a Flight error and its message.
fn flight_status(e: FlightError) -> (tonic::Code, String) {
    match e {
        FlightError::Tonic(s) => (s.code(), s.message().to_string()),
        other => panic!("expected a gRPC status, got {other:?}"),
    }
}

// ---------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn red_rows_are_exact_over_every_format_and_flight_sql() {
    let e = start(&sql_config()).await;
    let mut exp = Expected::default();
    send_workload(&e, &mut exp, "first").await;
    wait_final_calls(&e, &exp).await;

    // JSON: exact per-series calls and errors; window bounds as RFC 3339 strings.
    let json = sql_rows(&e, PER_SERIES).await;
    assert_eq!(series_of_json(&json), exp);
    let bounds = sql_rows(
        &e,
        "SELECT window_size, window_start, window_end FROM red WHERE is_final LIMIT 1",
    )
    .await;
    assert_eq!(bounds[0]["window_size"], "1s");
    for k in ["window_start", "window_end"] {
        let t = bounds[0][k].as_str().expect("a timestamp string");
        chrono::DateTime::parse_from_rfc3339(t)
            .unwrap_or_else(|err| panic!("{k} = {t:?} is not RFC 3339: {err}"));
        assert!(t.ends_with('Z'), "{k} = {t:?} is UTC");
    }

    // CSV: a header line, then the same rows.
    let csv = sql(&e, PER_SERIES, "csv").await;
    assert_eq!(csv.status, 200, "{}", String::from_utf8_lossy(&csv.body));
    assert!(csv.content_type().starts_with("text/csv"), "{csv:?}");
    let text = String::from_utf8(csv.body.clone()).expect("UTF-8 CSV");
    let mut lines = text.lines();
    assert_eq!(
        lines.next(),
        Some("service_name,span_name,span_kind,calls,errors")
    );
    let mut from_csv = Expected::default();
    for line in lines {
        let f: Vec<&str> = line.split(',').collect();
        assert_eq!(f.len(), 5, "{line}");
        let n = |s: &str| s.parse::<f64>().unwrap_or_else(|err| panic!("{s}: {err}"));
        from_csv.0.insert(
            (f[0].to_string(), f[1].to_string(), f[2].to_string()),
            (n(f[3]), n(f[4])),
        );
    }
    assert_eq!(from_csv, exp);

    // Arrow IPC stream: typed columns, the same rows.
    let ipc = sql(&e, PER_SERIES, "arrow").await;
    assert_eq!(ipc.status, 200, "{}", String::from_utf8_lossy(&ipc.body));
    assert_eq!(ipc.content_type(), "application/vnd.apache.arrow.stream");
    let http_batches = decode_ipc(&ipc.body);
    let schema = http_batches[0].schema();
    for (name, t) in [
        ("calls", DataType::Float64),
        ("service_name", DataType::Utf8),
    ] {
        let f = schema
            .field_with_name(name)
            .expect("a column of the result");
        assert_eq!(f.data_type(), &t, "{name}");
    }
    assert_eq!(series_of_batches(&http_batches), exp);

    // Flight SQL: a statement and a prepared statement return the same rows as HTTP.
    let queries_before = e.registry.value("redwatch_sql_queries_total", &[]);
    let seconds_before = e.registry.value("redwatch_sql_query_seconds_sum", &[]);
    let mut fc = flight_client(&e).await;
    fc.handshake("", "")
        .await
        .expect("handshake without credentials");
    let flight_batches = flight_query(&mut fc, PER_SERIES)
        .await
        .expect("Flight SQL query");
    assert_eq!(series_of_batches(&flight_batches), exp);
    assert_eq!(
        flight_batches.iter().map(|b| b.num_rows()).sum::<usize>(),
        exp.0.len()
    );
    let mut prepared = fc
        .prepare(PER_SERIES.to_string(), None)
        .await
        .expect("prepare");
    let ds = prepared.dataset_schema().expect("dataset schema").clone();
    let names: Vec<&str> = ds.fields().iter().map(|f| f.name().as_str()).collect();
    assert_eq!(
        names,
        ["service_name", "span_name", "span_kind", "calls", "errors"]
    );
    let info = prepared.execute().await.expect("execute prepared");
    let prepared_batches = fetch(&mut fc, info).await.expect("fetch prepared");
    assert_eq!(series_of_batches(&prepared_batches), exp);
    prepared.close().await.expect("close prepared");
    // Both count in the same SQL self-metrics as HTTP queries (once each).
    assert_eq!(
        e.registry.value("redwatch_sql_queries_total", &[]) - queries_before,
        2.0,
        "Flight SQL statements are counted in redwatch_sql_queries_total"
    );
    assert!(e.registry.value("redwatch_sql_query_seconds_sum", &[]) > seconds_before);

    // Server metadata: SqlInfo and the table list from information_schema.
    let info = fc
        .get_sql_info(vec![
            SqlInfo::FlightSqlServerName,
            SqlInfo::FlightSqlServerReadOnly,
        ])
        .await
        .expect("GetSqlInfo");
    let sql_info = fetch(&mut fc, info).await.expect("fetch SqlInfo");
    assert_eq!(sql_info.iter().map(|b| b.num_rows()).sum::<usize>(), 2);
    let info = fc
        .get_tables(CommandGetTables {
            catalog: None,
            db_schema_filter_pattern: None,
            table_name_filter_pattern: Some("re%".into()),
            table_types: vec!["TABLE".into()],
            include_schema: true,
        })
        .await
        .expect("GetTables");
    let tables = fetch(&mut fc, info).await.expect("fetch tables");
    let names: Vec<String> = tables
        .iter()
        .flat_map(|b| {
            let c = b
                .column_by_name("table_name")
                .and_then(|c| c.as_any().downcast_ref::<StringArray>())
                .expect("table_name column")
                .clone();
            (0..c.len()).map(move |i| c.value(i).to_string())
        })
        .collect();
    assert_eq!(names, ["red", "red_windows"]);

    // `redwatch sql` prints the same table and exits 0.
    let url = format!("http://{}", e.addrs["sql_http"]);
    let out = redwatch_sql(&[PER_SERIES, "--url", &url]).await;
    assert_eq!(out.0, Some(0), "stderr: {}", out.2);
    for (svc, span, _) in exp.0.keys() {
        assert!(
            out.1.contains(svc.as_str()) && out.1.contains(span.as_str()),
            "{svc}/{span} in:\n{}",
            out.1
        );
    }
    let out = redwatch_sql(&[PER_SERIES, "--url", &url, "--format", "csv"]).await;
    assert_eq!(out.0, Some(0), "stderr: {}", out.2);
    assert_eq!(out.1, text, "the CLI passes the server's CSV through");

    e.shutdown().await;
}

/// A primary window with a rollup (1 s and 10 s here, so the case runs in seconds; the
/// engine's default is 10 s and 1 m). One request restates a rollup window with a late span
/// and moves the watermark past that window's end plus lateness: the pipeline emits the
/// primary's newer windows, then the rollup's restatement, then purges it, all in one step.
/// The `red` table keeps the restatement (docs/design.md, "Tables": a window seals on windows
/// of its own size). Event times follow the wall clock (the watermark never passes it), so
/// the case waits for the clock between its two requests.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollup_restated_in_the_step_that_purges_it_is_exact_in_red() {
    let mut cfg = test_config();
    cfg.windows.rollups = vec![Duration::from_secs(10)];
    // Only the data moves the watermark between the two requests.
    cfg.windows.idle_timeout = Duration::from_secs(30);
    let e = start(&cfg).await;
    let (s, ms) = (1_000_000_000u64, 1_000_000u64);
    let mut exp = Expected::default();
    // A span now makes the receiver's source active, so from here on only data moves the
    // watermark (an idle engine's watermark follows the wall clock).
    send(&e, &mut exp, "late-rollup-clock", &[SpanSpec::new("tick")]).await;
    let t0 = (now_ns() / (10 * s)) * 10 * s;
    sleep_until_wall(t0 + 10 * s + 500 * ms).await;
    let at = |t_ms: u64| SpanSpec::new("GET /late").end(t0 + t_ms * ms);
    let calls = |size: &'static str| {
        let e = &e;
        async move {
            let q = format!(
                "SELECT coalesce(sum(calls), 0.0) AS n FROM red WHERE is_final \
                 AND window_size = '{size}' AND service_name = 'late-rollup' \
                 AND window_end <= to_timestamp_nanos({})",
                t0 + 10 * s
            );
            sql_rows(e, &q).await[0]["n"].as_f64().expect("a number")
        }
    };
    // [9 s, 10 s) and the rollup window [0, 10 s) are emitted (watermark 10.2 s).
    send(&e, &mut exp, "late-rollup", &[at(9_500), at(10_200)]).await;
    assert!(barrier(&e).await >= t0 + 10 * s);
    assert_eq!(
        calls("10s").await,
        1.0,
        "the rollup window was emitted once"
    );
    // One request: a late span of both (inside the 5 s lateness), one in [15 s, 16 s) (it ends
    // more than the lateness after the rollup window) and one at 16.2 s (watermark: both
    // windows restated and purged in this step).
    sleep_until_wall(t0 + 16_500 * ms).await;
    send(
        &e,
        &mut exp,
        "late-rollup",
        &[at(9_600), at(15_500), at(16_200)],
    )
    .await;
    assert!(barrier(&e).await >= t0 + 16 * s);
    assert_eq!(calls("1s").await, 2.0, "[9 s, 10 s): 9.5 s and 9.6 s");
    assert_eq!(
        calls("10s").await,
        2.0,
        "the rollup window keeps its late span (its restatement came after the primary's rows)"
    );
}

/// Runs the `redwatch sql` binary; returns (exit code, stdout, stderr).
async fn redwatch_sql(args: &[&str]) -> (Option<i32>, String, String) {
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_redwatch"))
            .arg("sql")
            .args(&args)
            .env_remove("HOME")
            .stdin(std::process::Stdio::null())
            .output()
            .expect("run redwatch sql")
    })
    .await
    .expect("the CLI task ends");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_are_clear_and_leave_the_server_and_ingest_running() {
    let mut cfg = sql_config();
    cfg.sql.max_result_rows = 1000;
    // Ordinary queries here take a few ms even in a debug build; the heavy ones take seconds.
    cfg.sql.query_timeout = Duration::from_millis(300);
    cfg.sql.memory_limit = serde_json::from_value(serde_json::json!("4MiB")).expect("a size");
    let e = start(&cfg).await;
    let mut exp = Expected::default();
    send_workload(&e, &mut exp, "before").await;
    wait_final_calls(&e, &exp).await;

    // (query, HTTP status, code, words the message must contain)
    let cases: [(&str, u16, &str, &[&str]); 9] = [
        ("SELEC 1", 400, "invalid_sql", &["sql"]),
        ("SELECT 1; SELECT 2", 400, "invalid_sql", &["one statement"]),
        ("CREATE TABLE t (a INT)", 400, "read_only", &["read-only"]),
        (
            "INSERT INTO red VALUES (1)",
            400,
            "read_only",
            &["read-only"],
        ),
        (
            "COPY red TO '/tmp/red.csv'",
            400,
            "read_only",
            &["read-only"],
        ),
        (
            "SELECT no_such_column FROM red",
            400,
            "invalid_query",
            &["no_such_column"],
        ),
        (
            "SELECT value FROM generate_series(1, 5000)",
            413,
            "result_too_large",
            &["1000", "max_result_rows"],
        ),
        (
            "SELECT sum(value) FROM generate_series(1, 1000000000000)",
            408,
            "timeout",
            &["timeout", "query_timeout"],
        ),
        (
            "SELECT count(*) FROM generate_series(1, 3000000) a \
             JOIN generate_series(1, 3000000) b ON a.value = b.value",
            413,
            "memory_limit",
            &["memory", "memory_limit"],
        ),
    ];
    let mut fc = flight_client(&e).await;
    for (i, (query, status, code, needles)) in cases.iter().enumerate() {
        let failed = |e: &Engine| {
            e.registry
                .value("redwatch_sql_queries_failed_total", &[("code", code)])
        };
        let (queries_before, failed_before) = (
            e.registry.value("redwatch_sql_queries_total", &[]),
            failed(&e),
        );
        let r = sql(&e, query, "json").await;
        assert_sql_error(&r, *status, code, needles);

        // The same failure over Flight SQL has the matching gRPC code.
        let want = match *status {
            408 => tonic::Code::DeadlineExceeded,
            413 => tonic::Code::ResourceExhausted,
            _ => tonic::Code::InvalidArgument,
        };
        let (got, msg) = flight_status(
            flight_query(&mut fc, query)
                .await
                .expect_err("the query fails over Flight SQL too"),
        );
        assert_eq!(got, want, "{query} over Flight SQL: {msg}");
        assert!(msg.contains(code), "{query}: {msg:?} names {code}");
        // Both failures are counted, in the same metrics.
        assert_eq!(
            e.registry.value("redwatch_sql_queries_total", &[]) - queries_before,
            2.0,
            "{query}: one HTTP and one Flight SQL query"
        );
        assert_eq!(
            failed(&e) - failed_before,
            2.0,
            "{query}: failures by code {code}"
        );

        // The server still answers...
        assert_eq!(sql_rows(&e, "SELECT 1 AS one").await[0]["one"], 1);
        // ...and ingest still counts new spans.
        send_workload(&e, &mut exp, &format!("after {i}")).await;
        wait_final_calls(&e, &exp).await;
    }
    // No ORDER BY here: DataFusion reserves 10 MB up front for merging a sort
    // (`sort_spill_reservation_bytes`), more than this engine's 4 MiB memory limit.
    let unordered = PER_SERIES.split(" ORDER BY").next().expect("a query");
    assert_eq!(series_of_json(&sql_rows(&e, unordered).await), exp);

    // A write over Flight SQL is refused as read-only.
    let (code, msg) = flight_status(
        fc.execute_update("DELETE FROM red".into(), None)
            .await
            .expect_err("updates are refused"),
    );
    assert_eq!(code, tonic::Code::PermissionDenied, "{msg}");
    assert_mentions(&msg, &["read-only"]);

    // `redwatch sql` reports the server's error (exit 1), bad usage (exit 2) and an unreachable
    // server naming its URL (exit 1).
    let url = format!("http://{}", e.addrs["sql_http"]);
    let (rc, _, err) = redwatch_sql(&["SELEC 1", "--url", &url]).await;
    assert_eq!(rc, Some(1), "{err}");
    assert_mentions(&err, &["invalid_sql"]);
    let (rc, _, err) = redwatch_sql(&["SELECT 1", "--url", &url, "--format", "xml"]).await;
    assert_eq!(rc, Some(2), "{err}");
    let dead = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
    let dead_url = format!("http://{}", dead.local_addr().expect("addr"));
    drop(dead);
    let (rc, _, err) = redwatch_sql(&["SELECT 1", "--url", &dead_url]).await;
    assert_eq!(rc, Some(1), "{err}");
    assert_mentions(&err, &["cannot reach", &dead_url]);

    e.shutdown().await;
}
