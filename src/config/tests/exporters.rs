//! The `exporters` section read through the whole file (moved from the engine with `Config`).

use crate::config::*;
use std::time::Duration;

#[test]
fn otlp_exporter_is_off_by_default_and_parses_design_keys() {
    assert_eq!(Config::default().exporters.otlp, None);
    let e: ExportersConfig = serde_yaml_ng::from_str(
        "otlp:\n  endpoint: http://collector:4318\n  protocol: http/protobuf\n  \
         headers: { authorization: Bearer x }\n  compression: none\n  \
         batch: { max_size: 100, timeout: 250ms }\n  queue_size: 50\n  \
         retry: { initial_interval: 2s, max_interval: 10s, max_elapsed_time: 1m }\n  \
         temporality: cumulative\n",
    )
    .unwrap();
    let o = e.otlp.unwrap();
    assert_eq!(o.protocol, OtlpProtocol::HttpProtobuf);
    assert_eq!(o.compression, OtlpCompression::None);
    assert_eq!(o.batch.timeout, Duration::from_millis(250));
    assert_eq!(o.retry.max_elapsed_time, Duration::from_secs(60));
    assert_eq!(o.temporality, OtlpTemporality::Cumulative);
    assert_eq!(o.headers["authorization"], "Bearer x");
    assert!(o.validate("exporters.otlp").is_empty());
    // `otlp: {}` means the documented defaults.
    let d: ExportersConfig = serde_yaml_ng::from_str("otlp: {}").unwrap();
    let d = d.otlp.unwrap();
    assert_eq!(d, OtlpExporterConfig::default());
    assert_eq!(d.endpoint, "http://127.0.0.1:14317");
    assert_eq!((d.batch.max_size, d.queue_size), (512, 10_000));
    assert_eq!(d.retry.max_interval, Duration::from_secs(30));
    assert!(serde_yaml_ng::from_str::<ExportersConfig>("otlp: { protocol: udp }").is_err());
    assert!(serde_yaml_ng::from_str::<ExportersConfig>("otlp: { nope: 1 }").is_err());
}

#[test]
fn otlp_exporter_validate_reports_paths() {
    let mut o = OtlpExporterConfig {
        endpoint: "collector:4317".into(),
        queue_size: 0,
        ..Default::default()
    };
    o.batch.max_size = 0;
    o.retry.max_interval = Duration::from_millis(1);
    let p: Vec<String> = o
        .validate("exporters.otlp")
        .into_iter()
        .map(|(p, _)| p)
        .collect();
    assert_eq!(
        p,
        [
            "exporters.otlp.endpoint",
            "exporters.otlp.batch.max_size",
            "exporters.otlp.queue_size",
            "exporters.otlp.retry.max_interval"
        ]
    );
}
