//! The SQL listeners: the HTTP API (with `/healthz` and `/readyz`) and Arrow Flight SQL.

use crate::assembly::{Assembly, ListenerSecurity, Stage, Started};
use anyhow::Context;
use redwatch_engine::security::Protocol;
use redwatch_queries::http::Readiness;
use std::net::SocketAddr;
use std::sync::Arc;

pub fn install(asm: &mut Assembly<'_>) {
    let sql = &asm.cfg.sql;
    // The HTTP API and Flight SQL share the `sql.tls` and `sql.auth` blocks.
    let security = |protocol| ListenerSecurity::of(&sql.tls, &sql.auth, protocol);
    if let Some(addr) = sql.http_endpoint {
        let allowed_hosts = sql.allowed_hosts.clone();
        let security = security(Protocol::Http);
        // The web console at `/` (ui.enabled) shares the listener.
        let console = redwatch_queries::console::router(
            &asm.cfg.ui,
            &asm.cfg.windows,
            &asm.cfg.sql.allowed_hosts,
        );
        asm.on_start(Stage::Exporters, move |s| {
            Box::pin(serve_http(s, addr, security, allowed_hosts, console))
        });
    }
    if let Some(addr) = sql.flight_endpoint {
        let security = security(Protocol::Grpc);
        asm.on_start(Stage::Exporters, move |s| {
            Box::pin(async move {
                let l = s.bind("flight_sql", addr, &security).await?;
                let (q, c) = (s.queries.clone(), s.cancel(Stage::Exporters));
                let m = redwatch_queries::sql_metrics::QueryMetrics::new(&s.registry);
                s.spawn(Stage::Exporters, async move {
                    redwatch_queries::flight::serve(l, q, m, c)
                        .await
                        .context("Flight SQL endpoint")
                });
                Ok(())
            })
        });
    }
}

async fn serve_http(
    s: &mut Started,
    addr: SocketAddr,
    security: ListenerSecurity,
    allowed_hosts: Vec<String>,
    console: axum::Router,
) -> anyhow::Result<()> {
    let l = s.bind("sql_http", addr, &security).await?;
    let failed = s.pipeline_failed.clone();
    let live: Readiness = Arc::new(move || match failed.get() {
        Some(why) => Err(format!("the operator pipeline failed: {why}")),
        None => Ok(()),
    });
    let (pipeline, checks) = (s.handle.clone(), s.readiness());
    let ready: Readiness = Arc::new(move || {
        if pipeline.is_closed() {
            return Err("the pipeline has stopped".into());
        }
        checks()
    });
    let router =
        redwatch_queries::http::router(s.queries.clone(), live, ready, allowed_hosts, &s.registry)
            .merge(console);
    let c = s.cancel(Stage::Exporters);
    s.spawn(Stage::Exporters, async move {
        redwatch_queries::http::serve(l, router, c)
            .await
            .context("SQL HTTP API")
    });
    Ok(())
}
