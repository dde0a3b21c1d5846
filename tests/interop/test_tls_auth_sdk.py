"""TLS + bearer token with real non-Rust clients (issue 16; docs/design.md, "Security").

The OpenTelemetry Python SDK's OTLP exporters (gRPC and HTTP/protobuf) send over TLS with an
`authorization: Bearer` header to a redwatch whose receivers have `tls` and `auth`; RED on
/metrics must then match exactly. The same exporters without the header are refused
(UNAUTHENTICATED / 401, which the SDK does not retry) and each refused export is counted once in
`redwatch_unauthenticated_requests_total`. ADBC's Flight SQL driver queries over TLS with the
authorization header. Certificates are made at test time with the `openssl` CLI (no key is
committed); /metrics stays plaintext and open here so the assertions can scrape it.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import adbc_driver_flightsql.dbapi as flight_sql
import grpc
import pytest
import requests
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpExporter
from opentelemetry.sdk.trace.export import SpanExportResult

from prometheus_scrape import scrape, sum_samples
from red_assertions import assert_red_matches
from redwatch_process import LISTENERS, RedwatchServer, running
from span_workload import SdkClients, count_spans, send_workload

TOKEN = "interop-s3cret"
REFUSED = "redwatch_unauthenticated_requests_total"


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


@pytest.fixture
def pki(tmp_path) -> Path:
    """A CA and a server certificate for 127.0.0.1 / localhost signed by it (P-256 keys)."""
    d = tmp_path / "pki"
    d.mkdir()
    _openssl("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", "ca.key", cwd=d)
    _openssl("req", "-x509", "-new", "-key", "ca.key", "-sha256", "-days", "2", "-subj", "/CN=redwatch interop CA",
             "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
             "-out", "ca.pem", cwd=d)
    _openssl("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", "server.key", cwd=d)
    _openssl("req", "-new", "-key", "server.key", "-subj", "/CN=127.0.0.1", "-out", "server.csr", cwd=d)
    (d / "ext.cnf").write_text(
        "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n"
        "subjectAltName=IP:127.0.0.1,DNS:localhost\n"
    )
    _openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
             "-days", "2", "-sha256", "-extfile", "ext.cnf", "-out", "server.pem", cwd=d)
    return d


def _config(pki: Path) -> str:
    tls = f"{{ cert_file: {pki / 'server.pem'}, key_file: {pki / 'server.key'} }}"
    auth = f"{{ bearer_tokens: [{TOKEN}] }}"
    return f"""\
receivers:
  otlp:
    grpc: {{ endpoint: 127.0.0.1:0, tls: {tls}, auth: {auth} }}
    http: {{ endpoint: 127.0.0.1:0, tls: {tls}, auth: {auth} }}
windows: {{ size: 1s, rollups: [], max_out_of_orderness: 0s, allowed_lateness: 5s, idle_timeout: 1s }}
exporters:
  prometheus: {{ endpoint: 127.0.0.1:0 }}
sql: {{ http_endpoint: 127.0.0.1:0, flight_endpoint: 127.0.0.1:0, tls: {tls}, auth: {auth} }}
"""


def _grpc_exporter(server: RedwatchServer, pki: Path, headers: dict | None):
    creds = grpc.ssl_channel_credentials(root_certificates=(pki / "ca.pem").read_bytes())
    return GrpcExporter(endpoint=f"https://{server.otlp_grpc}", credentials=creds, headers=headers, timeout=10)


def _http_exporter(server: RedwatchServer, pki: Path, headers: dict | None):
    # requests lets REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE from the environment override a
    # session's CA file; a session that ignores the environment keeps certificate_file.
    session = requests.Session()
    session.trust_env = False
    return HttpExporter(
        endpoint=f"https://{server.otlp_http}/v1/traces",
        certificate_file=str(pki / "ca.pem"),
        headers=headers,
        timeout=10,
        session=session,
    )


def _refused(server: RedwatchServer, listener: str) -> float:
    return sum_samples(scrape(server.metrics_url), REFUSED, listener=listener)


@pytest.mark.parametrize(
    "listener,make", [("otlp_grpc", _grpc_exporter), ("otlp_http", _http_exporter)], ids=["grpc", "http"]
)
def test_sdk_exporter_over_tls_with_a_bearer_token(tmp_path, pki, service_names, listener, make):
    with running(tmp_path, _config(pki), LISTENERS + ("sql_http", "flight_sql")) as process:
        server = RedwatchServer(process)

        # Without the token: every export is refused (not retried by the SDK) and counted once.
        refused_names = {k: f"refused-{v}" for k, v in service_names.items()}
        clients = SdkClients.create(refused_names, lambda: make(server, pki, None), batch=False)
        try:
            clients.emit()  # one export per span (SimpleSpanProcessor)
            results = [r for svc in clients.services.values() for _, r in svc.exporter.results]
        finally:
            clients.shutdown()
        assert len(results) == count_spans(), results
        assert all(r is SpanExportResult.FAILURE for r in results), results
        assert _refused(server, listener) == len(results)

        # With the token over TLS: exact RED, nothing refused on top.
        spans = send_workload(service_names, lambda: make(server, pki, {"authorization": f"Bearer {TOKEN}"}))
        assert_red_matches(server, spans, receiver=listener)
        assert _refused(server, listener) == len(results)

        # ADBC's Flight SQL driver over TLS with the token.
        ca = (pki / "ca.pem").read_text()
        with flight_sql.connect(
            f"grpc+tls://{process.addresses['flight_sql']}",
            db_kwargs={
                "adbc.flight.sql.client_option.tls_root_certs": ca,
                "adbc.flight.sql.authorization_header": f"Bearer {TOKEN}",
            },
        ) as conn, conn.cursor() as cur:
            cur.execute("SELECT 41 + 1 AS answer")
            assert cur.fetchall() == [(42,)]
        assert sum_samples(scrape(server.metrics_url), REFUSED, listener="flight_sql") == 0
