//! The SQL HTTP API on `sql.http_endpoint`: `POST /api/v1/sql`, plus `/healthz` and `/readyz`.

use crate::format::{encode, Format};
use crate::metrics::QueryMetrics;
use crate::session::{QueryEngine, QueryError};
use axum::extract::State;
use axum::http::{header, StatusCode};
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

async fn sql(State(st): State<ApiState>, body: Bytes) -> Response {
    st.metrics.received();
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
            error(e.http_status(), e.code(), &e.to_string())
        }
    }
}

async fn healthz() -> &'static str {
    "ok\n"
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

/// The API routes.
pub fn router(
    engine: QueryEngine,
    ready: Readiness,
    registry: &redwatch_engine::telemetry::Registry,
) -> Router {
    let st = ApiState {
        engine,
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
    listener: tokio::net::TcpListener,
    router: Router,
    cancel: CancellationToken,
) -> std::io::Result<()> {
    axum::serve(listener, router)
        .with_graceful_shutdown(cancel.cancelled_owned())
        .await
}

impl From<QueryError> for Response {
    fn from(e: QueryError) -> Response {
        error(e.http_status(), e.code(), &e.to_string())
    }
}
