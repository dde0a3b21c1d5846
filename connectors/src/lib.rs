//! redwatch connectors: how telemetry gets in and results get out. One folder per connector:
//! `otlp/` (gRPC and HTTP receivers, decoders), `otlp_exporter/` (OTLP export of spans and RED
//! metrics), `prometheus/` (the `/metrics` endpoint), `kafka/` (source and sink, cargo feature
//! `kafka`). Connectors translate protocols; they never aggregate.

#![forbid(unsafe_code)]

pub mod config;
#[cfg(feature = "kafka")]
pub mod kafka;
pub mod otlp;
pub mod otlp_exporter;
pub mod prometheus;
mod retry;
pub mod spanmetrics;
pub mod webhook;

use std::net::SocketAddr;

/// Binds a TCP listener and logs the `listening <name> <addr>` line tests and users wait for.
pub async fn bind(name: &str, addr: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    let listener = tokio::net::TcpListener::bind(addr).await.map_err(|e| {
        std::io::Error::new(e.kind(), format!("cannot listen for {name} on {addr}: {e}"))
    })?;
    let local = listener.local_addr()?;
    tracing::info!("listening {name} {local}");
    Ok(listener)
}
