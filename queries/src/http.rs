//! The SQL HTTP API on `sql.http_endpoint`: `POST /api/v1/sql`, plus `/healthz` and `/readyz`.
//!
//! A web page must not be able to run queries through a user's browser: the API takes only
//! `Content-Type: application/json` (a cross-site form cannot send it without a CORS preflight,
//! which is never granted), answers only to IP literals, `localhost` and `sql.allowed_hosts` in
//! `Host` (DNS rebinding), and refuses a cross-origin `Origin`.

use crate::format::{encode, Format};
use crate::query::{QueryEngine, QueryError};
use crate::sql_metrics::QueryMetrics;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use bytes::Bytes;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

/// Readiness check: `Ok` when the engine can do its job, else the reason.
pub type Readiness = Arc<dyn Fn() -> Result<(), String> + Send + Sync>;

#[derive(Clone)]
struct ApiState {
    engine: QueryEngine,
    live: Readiness,
    allowed_hosts: Arc<Vec<String>>,
    ready: Readiness,
    metrics: Arc<QueryMetrics>,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct SqlRequest {
    query: String,
    #[serde(default)]
    format: Format,
}

fn error(status: u16, code: &str, message: &str) -> Response {
    let body = serde_json::json!({"error": {"code": code, "message": message}}).to_string();
    (
        StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        [(header::CONTENT_TYPE, "application/json")],
        body,
    )
        .into_response()
}

/// The host part of a `Host` header or an origin's authority (no port, no brackets).
pub(crate) fn host_part(authority: &str) -> &str {
    if let Some(rest) = authority.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    authority.rsplit_once(':').map_or(authority, |(h, _)| h)
}

pub(crate) fn host_allowed(host: &str, allowed: &[String]) -> bool {
    host.parse::<std::net::IpAddr>().is_ok()
        || host.eq_ignore_ascii_case("localhost")
        || allowed.iter().any(|a| a.eq_ignore_ascii_case(host))
}

/// Refuses what a browser could send on behalf of a foreign web page: the wrong content type,
/// an unexpected `Host`, a cross-origin `Origin`.
/// A request refused before it was read: HTTP status, error code, message.
#[derive(Debug)]
struct Refusal(u16, &'static str, String);

fn check_request(headers: &HeaderMap, allowed: &[String]) -> Result<(), Refusal> {
    let is_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"));
    if !is_json {
        return Err(Refusal(
            415,
            "unsupported_media_type",
            "send the query as JSON with Content-Type: application/json".into(),
        ));
    }
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !host_allowed(host_part(host), allowed) {
        return Err(Refusal(
            403,
            "forbidden_host",
            format!("Host {host:?} is not an IP address, localhost or one of sql.allowed_hosts"),
        ));
    }
    if let Some(origin) = headers.get(header::ORIGIN) {
        let origin = origin.to_str().unwrap_or("");
        let authority = origin.split_once("://").map_or("", |(_, a)| a);
        if !authority.eq_ignore_ascii_case(host) {
            return Err(Refusal(
                403,
                "forbidden_origin",
                format!("cross-origin requests are refused (Origin {origin:?}, Host {host:?})"),
            ));
        }
    }
    Ok(())
}

async fn sql(State(st): State<ApiState>, headers: HeaderMap, body: Bytes) -> Response {
    st.metrics.received();
    if let Err(Refusal(status, code, message)) = check_request(&headers, &st.allowed_hosts) {
        st.metrics.failed("forbidden");
        return error(status, code, &message);
    }
    let req: SqlRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            st.metrics.failed("bad_request");
            return error(
                400,
                "bad_request",
                &format!(
                    "body must be {{\"query\": \"...\", \"format\": \"json|csv|arrow\"}}: {e}"
                ),
            );
        }
    };
    match st.engine.execute(&req.query).await {
        Ok(r) => {
            st.metrics.succeeded(r.elapsed);
            match encode(&r, req.format) {
                Ok(bytes) => {
                    ([(header::CONTENT_TYPE, req.format.content_type())], bytes).into_response()
                }
                Err(e) => {
                    st.metrics.failed("encode");
                    error(500, "encode_failed", &e.to_string())
                }
            }
        }
        Err(e) => {
            st.metrics.failed(e.code());
            let mut r = error(e.http_status(), e.code(), &e.to_string());
            if matches!(e, QueryError::Busy(_)) {
                r.headers_mut()
                    .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
            }
            r
        }
    }
}

/// Liveness: 503 once a part the engine cannot run without (the pipeline task) has failed, so
/// a supervisor restarts the process instead of leaving it limping.
async fn healthz(State(st): State<ApiState>) -> Response {
    match (st.live)() {
        Ok(()) => "ok\n".into_response(),
        Err(why) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("unhealthy: {why}\n"),
        )
            .into_response(),
    }
}

async fn readyz(State(st): State<ApiState>) -> Response {
    match (st.ready)() {
        Ok(()) => "ready\n".into_response(),
        Err(why) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {why}\n"),
        )
            .into_response(),
    }
}

/// The API routes. `live` decides `/healthz`, `ready` decides `/readyz`.
pub fn router(
    engine: QueryEngine,
    live: Readiness,
    ready: Readiness,
    allowed_hosts: Vec<String>,
    registry: &redwatch_engine::telemetry::Registry,
) -> Router {
    let st = ApiState {
        engine,
        live,
        allowed_hosts: Arc::new(allowed_hosts),
        ready,
        metrics: QueryMetrics::new(registry),
    };
    Router::new()
        .route("/api/v1/sql", post(sql))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .layer(axum::extract::DefaultBodyLimit::max(1 << 20))
        .with_state(st)
}

/// Serves the API until `cancel` fires.
pub async fn serve(
    listener: redwatch_engine::security::SecureListener,
    router: Router,
    cancel: CancellationToken,
) -> std::io::Result<()> {
    // Bearer auth (when configured) covers every route but /healthz and /readyz.
    let router = router.layer(listener.auth_layer());
    axum::serve(listener, router)
        .with_graceful_shutdown(cancel.cancelled_owned())
        .await
}

impl From<QueryError> for Response {
    fn from(e: QueryError) -> Response {
        error(e.http_status(), e.code(), &e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(header::HeaderName, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(k.clone(), v.parse().unwrap());
        }
        h
    }

    fn status(r: Result<(), Refusal>) -> u16 {
        r.map_or_else(|r| r.0, |()| 200)
    }

    #[test]
    fn only_json_from_known_hosts_and_same_origin_passes() {
        let json = (header::CONTENT_TYPE, "application/json; charset=utf-8");
        let allowed = vec!["redwatch.internal".to_string()];
        for host in [
            "127.0.0.1:7070",
            "[::1]:7070",
            "localhost:7070",
            "LOCALHOST",
            "redwatch.internal:7070",
            "10.1.2.3",
        ] {
            let h = headers(&[json.clone(), (header::HOST, host)]);
            assert_eq!(status(check_request(&h, &allowed)), 200, "{host}");
        }
        let same = headers(&[
            json.clone(),
            (header::HOST, "127.0.0.1:7070"),
            (header::ORIGIN, "http://127.0.0.1:7070"),
        ]);
        assert_eq!(status(check_request(&same, &allowed)), 200);

        // A form post, a text/plain fetch, no content type at all.
        for ct in ["application/x-www-form-urlencoded", "text/plain", ""] {
            let mut h = headers(&[(header::HOST, "127.0.0.1:7070")]);
            if !ct.is_empty() {
                h.insert(header::CONTENT_TYPE, ct.parse().unwrap());
            }
            assert_eq!(status(check_request(&h, &allowed)), 415, "{ct:?}");
        }
        // DNS rebinding: the attacker's name resolves to 127.0.0.1.
        let rebound = headers(&[json.clone(), (header::HOST, "evil.example:7070")]);
        assert_eq!(status(check_request(&rebound, &allowed)), 403);
        let cross = headers(&[
            json,
            (header::HOST, "127.0.0.1:7070"),
            (header::ORIGIN, "https://evil.example"),
        ]);
        assert_eq!(status(check_request(&cross, &allowed)), 403);
    }
}
