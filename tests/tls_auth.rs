//! TLS and bearer-token authentication on every listener (issue 16; docs/design.md,
//! "Security"): OTLP gRPC, OTLP HTTP, Prometheus `/metrics`, the SQL HTTP API (and the
//! `redwatch sql` binary as its client) and Flight SQL.
//!
//! For each listener, against an engine with mutual TLS and a token: a request without a token
//! (or with a wrong one) is refused with gRPC `UNAUTHENTICATED` / HTTP 401 and counted exactly in
//! `redwatch_unauthenticated_requests_total{listener}`; with the token it works through a real
//! client (tonic, reqwest, the Flight SQL client, the CLI); a client certificate from another CA
//! and a plaintext client both fail the handshake, counted in
//! `redwatch_tls_handshake_failures_total{listener}`. Certificates are made by rcgen at test
//! time.

mod common;

use arrow_flight::error::FlightError;
use arrow_flight::sql::client::FlightSqlServiceClient;
use common::pki::{ClientCert, Pki};
use common::*;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use prost::Message;
use redwatch::config::{AuthConfig, Config, TlsClientConfig};
use redwatch::server::Engine;
use redwatch_engine::security::{client_config, connector::TlsConnector, Alpn};
use std::net::SocketAddr;
use tonic::transport::{Channel, Endpoint};

const TOKEN: &str = "s3cret-test-token";
const REFUSED: &str = "redwatch_unauthenticated_requests_total";
const HANDSHAKE_FAILURES: &str = "redwatch_tls_handshake_failures_total";

/// The test config with `tls` (mutual when `mtls`) and `auth` on every listener, Flight SQL on.
fn secured(pki: &Pki, mtls: bool) -> Config {
    let mut cfg = test_config();
    let tls = Some(pki.server(mtls));
    let auth = Some(AuthConfig {
        bearer_tokens: vec!["another-token".into(), TOKEN.into()],
        bearer_tokens_file: None,
    });
    let g = cfg.receivers.otlp.grpc.as_mut().expect("gRPC receiver");
    (g.tls, g.auth) = (tls.clone(), auth.clone());
    let h = cfg.receivers.otlp.http.as_mut().expect("HTTP receiver");
    (h.tls, h.auth) = (tls.clone(), auth.clone());
    let p = cfg.exporters.prometheus.as_mut().expect("Prometheus");
    (p.tls, p.auth) = (tls.clone(), auth.clone());
    (cfg.sql.tls, cfg.sql.auth) = (tls, auth);
    cfg.sql.flight_endpoint = Some(SocketAddr::from(([127, 0, 0, 1], 0)));
    cfg
}

/// Refusals counted for `listener` (missing and invalid tokens).
fn refused(e: &Engine, listener: &str) -> f64 {
    ["missing_token", "invalid_token"]
        .iter()
        .map(|r| {
            e.registry
                .value(REFUSED, &[("listener", listener), ("reason", r)])
        })
        .sum()
}

fn handshake_failures(e: &Engine, listener: &str) -> f64 {
    e.registry
        .value(HANDSHAKE_FAILURES, &[("listener", listener)])
}

/// Waits until `listener` counted `n` failed handshakes (the server counts after the client has
/// seen the failure), then checks it is not more.
async fn expect_handshake_failures(e: &Engine, listener: &str, n: f64) {
    wait_until(
        DEADLINE,
        &format!("{listener} counts {n} handshake failures"),
        || async { handshake_failures(e, listener) >= n },
    )
    .await;
    assert_eq!(handshake_failures(e, listener), n, "{listener}");
}

/// The handshake refusals of one listener, counted exactly: one TCP connection that speaks
/// plaintext HTTP to the TLS port, and one TLS connection presenting a certificate from another
/// CA. Neither gets an answer; each is one failed handshake on the server. (Real clients are
/// tried as well in each test; they may reconnect, so only the raw attempts are counted.)
async fn refused_at_handshake(e: &Engine, listener: &str, pki: &Pki) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = e.addrs[listener];
    let before = handshake_failures(e, listener);
    let request =
        b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer s3cret-test-token\r\n\r\n";

    let mut plain = tokio::net::TcpStream::connect(addr)
        .await
        .expect("TCP connect");
    plain.write_all(request).await.expect("send plaintext");
    let mut answer = Vec::new();
    let _ = plain.read_to_end(&mut answer).await;
    assert!(
        !answer.starts_with(b"HTTP/"),
        "{listener} answered plaintext HTTP"
    );
    expect_handshake_failures(e, listener, before + 1.0).await;

    let mut config = client_config(&pki.client(ClientCert::WrongCa), Alpn::Http1).unwrap();
    config.alpn_protocols.clear(); // no ALPN: the refusal is the certificate's alone
    let tcp = tokio::net::TcpStream::connect(addr)
        .await
        .expect("TCP connect");
    let name = rustls_pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config));
    // TLS 1.3: the client may finish its side before the server has checked its certificate;
    // the server's refusal then arrives as an alert on the first read.
    if let Ok(mut tls) = connector.connect(name, tcp).await {
        let _ = tls.write_all(request).await;
        let mut answer = Vec::new();
        let read = tls.read_to_end(&mut answer).await;
        assert!(
            read.is_err() || answer.is_empty(),
            "{listener} served another CA's client"
        );
    }
    expect_handshake_failures(e, listener, before + 2.0).await;
}

/// A gRPC channel over TLS to `addr` (connects now, so a handshake failure shows here).
async fn tls_channel(
    addr: SocketAddr,
    tls: &TlsClientConfig,
) -> Result<Channel, tonic::transport::Error> {
    let config = client_config(tls, Alpn::H2).expect("client TLS config");
    Endpoint::from_shared(format!("https://{addr}"))
        .expect("valid URI")
        .connect_with_connector(TlsConnector::new(config))
        .await
}

async fn plain_channel(addr: SocketAddr) -> Result<Channel, tonic::transport::Error> {
    Endpoint::from_shared(format!("http://{addr}"))
        .expect("valid URI")
        .connect()
        .await
}

/// An HTTPS client trusting the test CA and presenting `cert`.
fn https_client(pki: &Pki, cert: ClientCert) -> reqwest::Client {
    let config = client_config(&pki.client(cert), Alpn::Http1).expect("client TLS config");
    reqwest::Client::builder()
        .no_proxy()
        .use_preconfigured_tls(config)
        .build()
        .expect("HTTPS client")
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

/// One OTLP/gRPC trace export over `channel` with an optional `authorization` value.
async fn grpc_export_with(
    channel: Channel,
    authorization: Option<&str>,
    phase: &str,
) -> Result<(), tonic::Status> {
    let mut req = tonic::Request::new(trace_request(Some(GOOD_SERVICE), &good_spans(phase)));
    if let Some(a) = authorization {
        req.metadata_mut()
            .insert("authorization", a.parse().expect("ASCII header"));
    }
    TraceServiceClient::new(channel)
        .export(req)
        .await
        .map(|_| ())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn otlp_grpc_needs_a_trusted_client_and_a_token() {
    let pki = Pki::new("otlp-grpc");
    let e = start(&secured(&pki, true)).await;
    let addr = e.addrs["otlp_grpc"];
    let channel = tls_channel(addr, &pki.client(ClientCert::Trusted))
        .await
        .expect("a trusted client completes the handshake");
    assert_eq!(refused(&e, "otlp_grpc"), 0.0);

    // No token, a token in the wrong scheme, a wrong token: UNAUTHENTICATED, counted exactly.
    for auth in [None, Some(TOKEN.to_string()), Some(bearer("wrong"))] {
        let s = grpc_export_with(channel.clone(), auth.as_deref(), "refused")
            .await
            .expect_err("refused without a valid token");
        assert_eq!(s.code(), tonic::Code::Unauthenticated, "{auth:?}: {s:?}");
    }
    assert_eq!(refused(&e, "otlp_grpc"), 3.0);
    let missing = &[("listener", "otlp_grpc"), ("reason", "missing_token")];
    assert_eq!(e.registry.value(REFUSED, missing), 2.0);
    // Nothing of the refused requests reached the pipeline.
    assert_eq!(e.registry.total("redwatch_spans_received_total"), 0.0);

    // With the token: accepted, every span counted.
    grpc_export_with(channel.clone(), Some(&bearer(TOKEN)), "accepted")
        .await
        .expect("accepted with the token");
    let n = good_spans("accepted").len() as f64;
    assert_eq!(e.registry.total("redwatch_spans_accepted_total"), n);
    assert_eq!(refused(&e, "otlp_grpc"), 3.0);

    // A certificate from another CA, no certificate at all, and plaintext: no service.
    refused_at_handshake(&e, "otlp_grpc", &pki).await;
    for cert in [ClientCert::WrongCa, ClientCert::None] {
        let r = match tls_channel(addr, &pki.client(cert)).await {
            Ok(c) => grpc_export_with(c, Some(&bearer(TOKEN)), "intruder")
                .await
                .map_err(|s| s.to_string()),
            Err(err) => Err(err.to_string()),
        };
        assert!(r.is_err(), "{cert:?} must not be served");
    }
    let r = match plain_channel(addr).await {
        Ok(c) => grpc_export_with(c, Some(&bearer(TOKEN)), "plain")
            .await
            .map_err(|s| s.to_string()),
        Err(err) => Err(err.to_string()),
    };
    assert!(r.is_err(), "a plaintext client must not be served");
    assert_eq!(e.registry.total("redwatch_spans_accepted_total"), n);
    assert_eq!(refused(&e, "otlp_grpc"), 3.0);
    e.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn otlp_http_needs_a_trusted_client_and_a_token() {
    let pki = Pki::new("otlp-http");
    let e = start(&secured(&pki, true)).await;
    let url = format!("https://{}/v1/traces", e.addrs["otlp_http"]);
    let body = trace_request(Some(GOOD_SERVICE), &good_spans("h")).encode_to_vec();
    let client = https_client(&pki, ClientCert::Trusted);
    let post = |c: &reqwest::Client, auth: Option<String>| {
        let mut r = c
            .post(&url)
            .header("content-type", CT_PROTOBUF)
            .body(body.clone());
        if let Some(a) = auth {
            r = r.header("authorization", a);
        }
        r.send()
    };

    for auth in [None, Some(bearer("wrong")), Some(format!("Basic {TOKEN}"))] {
        let r = post(&client, auth.clone()).await.expect("an answer");
        assert_eq!(r.status().as_u16(), 401, "{auth:?}");
        let challenge = r.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .to_string();
        assert!(
            challenge.starts_with("Bearer realm=\"redwatch\""),
            "{challenge}"
        );
    }
    assert_eq!(refused(&e, "otlp_http"), 3.0);
    assert_eq!(e.registry.total("redwatch_spans_received_total"), 0.0);

    let r = post(&client, Some(bearer(TOKEN))).await.expect("an answer");
    assert_eq!(r.status().as_u16(), 200);
    let n = good_spans("h").len() as f64;
    assert_eq!(e.registry.total("redwatch_spans_accepted_total"), n);

    refused_at_handshake(&e, "otlp_http", &pki).await;
    let intruder = https_client(&pki, ClientCert::WrongCa);
    assert!(post(&intruder, Some(bearer(TOKEN))).await.is_err());
    let anonymous = https_client(&pki, ClientCert::None);
    assert!(post(&anonymous, Some(bearer(TOKEN))).await.is_err());
    let plain = reqwest::Client::builder().no_proxy().build().unwrap();
    let plain_url = url.replacen("https://", "http://", 1);
    let r = plain
        .post(&plain_url)
        .header("content-type", CT_PROTOBUF)
        .header("authorization", bearer(TOKEN))
        .body(body.clone())
        .send()
        .await;
    assert!(r.is_err(), "plaintext got an answer: {r:?}");
    assert_eq!(e.registry.total("redwatch_spans_accepted_total"), n);
    assert_eq!(refused(&e, "otlp_http"), 3.0);
    e.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_needs_a_trusted_client_and_a_token() {
    let pki = Pki::new("prometheus");
    let e = start(&secured(&pki, true)).await;
    let url = format!("https://{}/metrics", e.addrs["prometheus"]);
    let client = https_client(&pki, ClientCert::Trusted);
    for _ in 0..2 {
        let r = client.get(&url).send().await.expect("an answer");
        assert_eq!(r.status().as_u16(), 401);
    }
    let r = client
        .get(&url)
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect("an answer");
    assert_eq!(r.status().as_u16(), 200);
    // The scrape itself shows the refusals, per listener and reason.
    let m = parse_exposition(&r.text().await.unwrap());
    let labels = [("listener", "prometheus"), ("reason", "missing_token")];
    assert_eq!(m.value(REFUSED, &labels), 2.0);
    assert_eq!(
        m.value(HANDSHAKE_FAILURES, &[("listener", "prometheus")]),
        0.0
    );

    refused_at_handshake(&e, "prometheus", &pki).await;
    let intruder = https_client(&pki, ClientCert::WrongCa);
    assert!(intruder.get(&url).bearer_auth(TOKEN).send().await.is_err());
    let plain = reqwest::Client::builder().no_proxy().build().unwrap();
    let plain_url = url.replacen("https://", "http://", 1);
    assert!(plain
        .get(&plain_url)
        .bearer_auth(TOKEN)
        .send()
        .await
        .is_err());
    assert_eq!(refused(&e, "prometheus"), 2.0);
    e.shutdown().await;
}

/// Runs the `redwatch sql` binary; returns (exit code, stdout, stderr).
async fn redwatch_sql(args: Vec<String>, token_env: Option<&str>) -> (i32, String, String) {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_redwatch"));
    cmd.arg("sql").args(args);
    for v in [
        "REDWATCH_TOKEN",
        "REDWATCH_CA_FILE",
        "REDWATCH_CERT_FILE",
        "REDWATCH_KEY_FILE",
    ] {
        cmd.env_remove(v);
    }
    if let Some(t) = token_env {
        cmd.env("REDWATCH_TOKEN", t);
    }
    let out = tokio::task::spawn_blocking(move || cmd.output())
        .await
        .expect("join")
        .expect("run redwatch sql");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sql_http_and_the_cli_need_a_trusted_client_and_a_token() {
    let pki = Pki::new("sql-http");
    let e = start(&secured(&pki, true)).await;
    let base = format!("https://{}", e.addrs["sql_http"]);
    let client = https_client(&pki, ClientCert::Trusted);
    let query = |auth: Option<&str>| {
        let mut r = client
            .post(format!("{base}/api/v1/sql"))
            .header("content-type", "application/json")
            .body(r#"{"query": "SELECT 41 + 1 AS answer"}"#);
        if let Some(a) = auth {
            r = r.header("authorization", a.to_string());
        }
        r.send()
    };

    // Probes stay open: a load balancer's health check carries no token.
    for probe in ["/healthz", "/readyz"] {
        let r = client.get(format!("{base}{probe}")).send().await.unwrap();
        assert_eq!(r.status().as_u16(), 200, "{probe}");
    }
    assert_eq!(refused(&e, "sql_http"), 0.0);

    let r = query(None).await.expect("an answer");
    assert_eq!(r.status().as_u16(), 401);
    assert!(r.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .starts_with("Bearer"));
    let v: serde_json::Value =
        serde_json::from_slice(&r.bytes().await.unwrap()).expect("a JSON error");
    assert_eq!(v["error"]["code"], "unauthenticated");
    let r = query(Some(&bearer("wrong"))).await.expect("an answer");
    assert_eq!(r.status().as_u16(), 401);
    assert_eq!(refused(&e, "sql_http"), 2.0);
    let r = query(Some(&bearer(TOKEN))).await.expect("an answer");
    assert_eq!(r.status().as_u16(), 200);
    let v: serde_json::Value = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
    assert_eq!(v["rows"][0]["answer"], 42);

    // The CLI: --ca-file, client certificate, token from the flag or REDWATCH_TOKEN.
    let path = |f: &str| pki.path(f).display().to_string();
    let tls_args = |extra: &[&str]| {
        let mut a: Vec<String> = vec![
            "SELECT 41 + 1 AS answer".into(),
            "--format".into(),
            "csv".into(),
            "--url".into(),
            base.clone(),
            "--ca-file".into(),
            path("ca.pem"),
            "--cert-file".into(),
            path("client.pem"),
            "--key-file".into(),
            path("client.key"),
        ];
        a.extend(extra.iter().map(|s| s.to_string()));
        a
    };
    let (code, out, err) = redwatch_sql(tls_args(&["--token", TOKEN]), None).await;
    assert_eq!((code, out.as_str()), (0, "answer\n42\n"), "{err}");
    let (code, out, err) = redwatch_sql(tls_args(&[]), Some(TOKEN)).await;
    assert_eq!((code, out.as_str()), (0, "answer\n42\n"), "{err}");
    let (code, _, err) = redwatch_sql(tls_args(&[]), None).await;
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("unauthenticated") && err.contains("--token"),
        "{err}"
    );
    assert_eq!(refused(&e, "sql_http"), 3.0);

    // Another CA's client certificate, and plaintext: the handshake fails.
    refused_at_handshake(&e, "sql_http", &pki).await;
    let mut intruder = tls_args(&["--token", TOKEN]);
    for a in intruder.iter_mut() {
        *a = a.replace("client.", "intruder.");
    }
    let (code, _, err) = redwatch_sql(intruder, None).await;
    assert_eq!(code, 1, "{err}");
    let plain = vec![
        "SELECT 1".to_string(),
        "--url".into(),
        base.replacen("https://", "http://", 1),
        "--token".into(),
        TOKEN.into(),
    ];
    let (code, _, err) = redwatch_sql(plain, None).await;
    assert_eq!(code, 1, "{err}");
    assert_eq!(refused(&e, "sql_http"), 3.0);
    e.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flight_sql_needs_a_trusted_client_and_a_token() {
    let pki = Pki::new("flight");
    let e = start(&secured(&pki, true)).await;
    let addr = e.addrs["flight_sql"];
    let channel = tls_channel(addr, &pki.client(ClientCert::Trusted))
        .await
        .expect("a trusted client completes the handshake");
    let mut c = FlightSqlServiceClient::new(channel.clone());
    for _ in 0..2 {
        match c.execute("SELECT 1".to_string(), None).await {
            Err(FlightError::Tonic(s)) => assert_eq!(s.code(), tonic::Code::Unauthenticated),
            other => panic!("expected UNAUTHENTICATED, got {other:?}"),
        }
    }
    assert_eq!(refused(&e, "flight_sql"), 2.0);

    c.set_token(TOKEN.to_string());
    let info = c
        .execute("SELECT 41 + 1 AS answer".to_string(), None)
        .await
        .expect("a query with the token");
    let ticket = info.endpoint[0].ticket.clone().expect("a ticket");
    use futures::TryStreamExt;
    let batches: Vec<arrow::record_batch::RecordBatch> = c
        .do_get(ticket)
        .await
        .expect("do_get with the token")
        .try_collect()
        .await
        .expect("record batches");
    let col = batches[0]
        .column(0)
        .as_any()
        .downcast_ref::<arrow::array::Int64Array>()
        .expect("an Int64 column");
    assert_eq!(col.value(0), 42);
    assert_eq!(refused(&e, "flight_sql"), 2.0);

    refused_at_handshake(&e, "flight_sql", &pki).await;
    let r = match tls_channel(addr, &pki.client(ClientCert::WrongCa)).await {
        Ok(ch) => {
            let mut c = FlightSqlServiceClient::new(ch);
            c.set_token(TOKEN.to_string());
            c.execute("SELECT 1".to_string(), None)
                .await
                .map(|_| ())
                .map_err(|e| e.to_string())
        }
        Err(err) => Err(err.to_string()),
    };
    assert!(r.is_err(), "another CA's certificate must not be served");
    let r = match plain_channel(addr).await {
        Ok(ch) => FlightSqlServiceClient::new(ch)
            .execute("SELECT 1".to_string(), None)
            .await
            .map(|_| ())
            .map_err(|e| e.to_string()),
        Err(err) => Err(err.to_string()),
    };
    assert!(r.is_err(), "a plaintext client must not be served");
    assert_eq!(refused(&e, "flight_sql"), 2.0);
    e.shutdown().await;
}

/// One-way TLS (no client certificates), the common setup: a client that trusts the CA and
/// carries the token works; the server's certificate is checked (a client trusting another CA
/// refuses it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_only_tls_serves_clients_without_certificates() {
    let pki = Pki::new("one-way");
    let e = start(&secured(&pki, false)).await;
    let channel = tls_channel(e.addrs["otlp_grpc"], &pki.client(ClientCert::None))
        .await
        .expect("handshake without a client certificate");
    grpc_export_with(channel, Some(&bearer(TOKEN)), "one-way")
        .await
        .expect("accepted with the token");
    let mut distrustful = pki.client(ClientCert::None);
    distrustful.ca_file = Some(pki.path("other-ca.pem"));
    assert!(tls_channel(e.addrs["otlp_grpc"], &distrustful)
        .await
        .is_err());
    // The CLI without a client certificate.
    let (code, out, err) = redwatch_sql(
        vec![
            "SELECT 1 AS one".into(),
            "--format".into(),
            "csv".into(),
            "--url".into(),
            format!("https://{}", e.addrs["sql_http"]),
            "--ca-file".into(),
            pki.path("ca.pem").display().to_string(),
        ],
        Some(TOKEN),
    )
    .await;
    assert_eq!((code, out.as_str()), (0, "one\n1\n"), "{err}");
    e.shutdown().await;
}

/// The OTLP exporter's client side: `exporters.otlp.tls` (CA, client certificate) and the token
/// in `headers`, over gRPC and HTTP/protobuf, against a redwatch receiver with mutual TLS and
/// auth. Without the header the destination refuses it (not retryable); with another CA's
/// certificate it gets no service.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn otlp_exporter_speaks_tls_and_sends_the_token() {
    use redwatch::config::{OtlpExporterConfig, OtlpProtocol};
    use redwatch_connectors::otlp_exporter::{Request, SendError, Transport};
    let pki = Pki::new("exporter");
    let e = start(&secured(&pki, true)).await;
    let exporter = |protocol: OtlpProtocol, cert: ClientCert, token: bool| {
        let (listener, protocol) = match protocol {
            OtlpProtocol::Grpc => ("otlp_grpc", protocol),
            OtlpProtocol::HttpProtobuf => ("otlp_http", protocol),
        };
        let mut o = OtlpExporterConfig {
            endpoint: format!("https://{}", e.addrs[listener]),
            protocol,
            tls: Some(pki.client(cert)),
            ..Default::default()
        };
        if token {
            o.headers.insert("authorization".into(), bearer(TOKEN));
        }
        assert_eq!(o.validate("exporters.otlp"), vec![]);
        Transport::new(&o).expect("transport")
    };
    let request = || Request::Traces(trace_request(Some(GOOD_SERVICE), &good_spans("x")));
    let per_request = good_spans("x").len() as f64;
    for protocol in [OtlpProtocol::Grpc, OtlpProtocol::HttpProtobuf] {
        let rejected = exporter(protocol, ClientCert::Trusted, true)
            .send(&request())
            .await
            .unwrap_or_else(|err| panic!("{protocol:?} with TLS and the token: {err}"));
        assert_eq!(rejected, 0);

        let err = exporter(protocol, ClientCert::Trusted, false)
            .send(&request())
            .await
            .expect_err("refused without the token");
        match &err {
            SendError::Grpc { code, .. } => assert_eq!(*code, tonic::Code::Unauthenticated),
            SendError::Http { status, .. } => assert_eq!(*status, 401),
            other => panic!("{protocol:?}: expected a refusal, got {other}"),
        }
        assert!(!err.retryable(), "an auth refusal is not retried: {err}");

        // Another CA's certificate: the server ends the connection in the handshake (with TLS
        // 1.3 the client may only learn it on its first read, as a transport error).
        exporter(protocol, ClientCert::WrongCa, true)
            .send(&request())
            .await
            .expect_err("another CA's client certificate is refused");
    }
    assert_eq!(refused(&e, "otlp_grpc"), 1.0);
    assert_eq!(refused(&e, "otlp_http"), 1.0);
    assert_eq!(
        e.registry.total("redwatch_spans_accepted_total"),
        2.0 * per_request
    );
    e.shutdown().await;
}

/// Broken `tls` / `auth` blocks stop `redwatch validate` and `redwatch run` with exit code 2 and
/// every problem named by its path; nothing is bound.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_tls_and_auth_settings_are_config_errors() {
    let pki = Pki::new("validate");
    let cfg = pki.path("redwatch.yaml");
    std::fs::write(
        &cfg,
        format!(
            "receivers:\n  otlp:\n    grpc: {{ endpoint: 127.0.0.1:0, tls: {{ cert_file: {} }} }}\n    \
             http: {{ endpoint: 127.0.0.1:0, auth: {{ bearer_tokens: [] }} }}\n\
             sql: {{ http_endpoint: 127.0.0.1:0, flight_endpoint: null, \
             tls: {{ cert_file: {}, key_file: /nonexistent/key.pem }} }}\n\
             exporters:\n  prometheus: {{ endpoint: 127.0.0.1:0 }}\n",
            pki.path("server.pem").display(),
            pki.path("server.pem").display(),
        ),
    )
    .unwrap();
    for command in ["validate", "run"] {
        let out = tokio::task::spawn_blocking({
            let cfg = cfg.clone();
            move || {
                std::process::Command::new(env!("CARGO_BIN_EXE_redwatch"))
                    .args([command, "--config"])
                    .arg(&cfg)
                    .output()
            }
        })
        .await
        .unwrap()
        .expect("run redwatch");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{command}: {err}");
        for needle in [
            "receivers.otlp.grpc.tls.key_file: is required",
            "receivers.otlp.http.auth: auth is enabled but no token is configured",
            "sql.tls.key_file: cannot read /nonexistent/key.pem",
        ] {
            assert!(err.contains(needle), "{command}: {needle:?} not in\n{err}");
        }
        assert!(
            !err.contains("listening"),
            "{command} bound a listener:\n{err}"
        );
    }
}
