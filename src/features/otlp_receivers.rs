//! The OTLP receivers: gRPC and HTTP.

use crate::assembly::{Assembly, ListenerSecurity, Stage};
use anyhow::Context;
use redwatch_connectors::otlp::decode::DecodeSettings;
use redwatch_connectors::otlp::{grpc, http, ReceiverCore};
use redwatch_engine::security::{Protocol, SecureListener};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

pub fn install(asm: &mut Assembly<'_>) {
    let cfg = asm.cfg;
    if cfg.fleet.role == crate::config::FleetRole::Merge {
        // A merge instance takes no telemetry: its input is the fleet's shuffle topic.
        return;
    }
    let settings =
        DecodeSettings::from_config(&cfg.decode_dimensions(), &cfg.receivers.otlp.limits);
    if let Some(g) = &cfg.receivers.otlp.grpc {
        let limits = grpc::GrpcLimits {
            max_message_size: g.max_message_size.as_u64() as usize,
            max_concurrent_streams: g.max_concurrent_streams,
            max_connections: g.max_connections,
            request_timeout: g.request_timeout,
        };
        let security = ListenerSecurity::of(&g.tls, &g.auth, Protocol::Grpc);
        let listener = ("otlp_grpc", g.endpoint, security);
        let what = "OTLP gRPC receiver";
        receiver(asm, listener, what, limits, settings.clone(), grpc::serve);
    }
    if let Some(h) = &cfg.receivers.otlp.http {
        let limits = http::HttpLimits {
            max_body_size: h.max_body_size.as_u64() as usize,
            max_connections: h.max_connections,
            request_timeout: h.request_timeout,
        };
        let security = ListenerSecurity::of(&h.tls, &h.auth, Protocol::Http);
        let listener = ("otlp_http", h.endpoint, security);
        let what = "OTLP HTTP receiver";
        receiver(asm, listener, what, limits, settings, http::serve);
    }
}

/// One listener: bound when the receivers start, served until they stop.
fn receiver<F, Fut, E, L>(
    asm: &mut Assembly<'_>,
    (name, endpoint, security): (&'static str, SocketAddr, ListenerSecurity),
    what: &'static str,
    limits: L,
    settings: DecodeSettings,
    serve: F,
) where
    L: Send + 'static,
    F: FnOnce(SecureListener, Arc<ReceiverCore>, L, CancellationToken) -> Fut + Send + 'static,
    Fut: Future<Output = Result<(), E>> + Send + 'static,
    E: std::error::Error + Send + Sync + 'static,
{
    asm.on_start(Stage::Receivers, move |s| {
        Box::pin(async move {
            let l = s.bind(name, endpoint, &security).await?;
            let core = ReceiverCore::new(name, s.handle.clone(), settings, &s.registry).await;
            let c = s.cancel(Stage::Receivers);
            s.spawn(Stage::Receivers, async move {
                serve(l, core, limits, c).await.context(what)
            });
            Ok(())
        })
    });
}
