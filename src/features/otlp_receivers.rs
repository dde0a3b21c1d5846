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
    let settings = DecodeSettings::from_config(cfg);
    if let Some(g) = &cfg.receivers.otlp.grpc {
        let max = g.max_message_size.as_u64() as usize;
        let security = ListenerSecurity {
            tls: g.tls.clone(),
            auth: g.auth.clone(),
            protocol: Protocol::Grpc,
        };
        let listener = ("otlp_grpc", g.endpoint, security);
        let what = "OTLP gRPC receiver";
        receiver(asm, listener, what, max, settings.clone(), grpc::serve);
    }
    if let Some(h) = &cfg.receivers.otlp.http {
        let max = h.max_body_size.as_u64() as usize;
        let security = ListenerSecurity {
            tls: h.tls.clone(),
            auth: h.auth.clone(),
            protocol: Protocol::Http,
        };
        let listener = ("otlp_http", h.endpoint, security);
        let what = "OTLP HTTP receiver";
        receiver(asm, listener, what, max, settings, http::serve);
    }
}

/// One listener: bound when the receivers start, served until they stop.
fn receiver<F, Fut, E>(
    asm: &mut Assembly<'_>,
    (name, endpoint, security): (&'static str, SocketAddr, ListenerSecurity),
    what: &'static str,
    max_size: usize,
    settings: DecodeSettings,
    serve: F,
) where
    F: FnOnce(SecureListener, Arc<ReceiverCore>, usize, CancellationToken) -> Fut + Send + 'static,
    Fut: Future<Output = Result<(), E>> + Send + 'static,
    E: std::error::Error + Send + Sync + 'static,
{
    asm.on_start(Stage::Receivers, move |s| {
        Box::pin(async move {
            let l = s.bind(name, endpoint, &security).await?;
            let core = ReceiverCore::new(name, s.handle.clone(), settings, &s.registry).await;
            let c = s.cancel(Stage::Receivers);
            s.spawn(Stage::Receivers, async move {
                serve(l, core, max_size, c).await.context(what)
            });
            Ok(())
        })
    });
}
