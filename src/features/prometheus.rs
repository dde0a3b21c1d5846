//! The Prometheus endpoint (`exporters.prometheus`): RED families, the sections features added,
//! and the engine's own counters.

use crate::assembly::{Assembly, ListenerSecurity, Stage};
use anyhow::Context;
use redwatch_connectors::prometheus;
use redwatch_engine::security::Protocol;

pub fn install(asm: &mut Assembly<'_>) {
    let Some(p) = &asm.cfg.exporters.prometheus else {
        return;
    };
    let endpoint = p.endpoint;
    let security = ListenerSecurity::of(&p.tls, &p.auth, Protocol::Http);
    asm.on_start(Stage::Exporters, move |s| {
        Box::pin(async move {
            let l = s.bind("prometheus", endpoint, &security).await?;
            let (red, reg, c) = (
                s.prometheus.clone(),
                s.registry.clone(),
                s.cancel(Stage::Exporters),
            );
            s.spawn(Stage::Exporters, async move {
                prometheus::serve(l, red, reg, c)
                    .await
                    .context("prometheus endpoint")
            });
            Ok(())
        })
    });
}
