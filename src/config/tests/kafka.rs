//! The `kafka` section read through the whole file (moved from the engine with `Config`).

use crate::config::*;

#[test]
fn librdkafka_keys_that_would_break_the_commit_scheme_are_rejected_with_their_path() {
    let mut k = KafkaReceiverConfig::default();
    for (key, v) in [
        ("enable.auto.commit", "true"),
        ("enable.auto.offset.store", "true"),
        ("group.id", "other"),
        ("security.protocol", "SASL_SSL"),
    ] {
        k.librdkafka.insert(key.into(), v.into());
    }
    let problems = k.validate("receivers.kafka");
    let paths: Vec<&str> = problems.iter().map(|(p, _)| p.as_str()).collect();
    assert_eq!(
        paths,
        [
            "receivers.kafka.librdkafka.enable.auto.commit",
            "receivers.kafka.librdkafka.enable.auto.offset.store",
            "receivers.kafka.librdkafka.group.id",
        ]
    );
    assert!(
        problems[2].1.contains("receivers.kafka.group_id"),
        "{problems:?}"
    );
}

#[test]
fn kafka_exporter_is_off_by_default_and_parses_its_keys() {
    assert_eq!(Config::default().exporters.kafka, None);
    let e: ExportersConfig = serde_yaml_ng::from_str(
        "kafka:\n  brokers: [k1:9092, k2:9093]\n  metrics_topic: red\n  spans_topic: null\n  \
         encoding: otlp_json\n  queue_size: 5\n  librdkafka: { security.protocol: SASL_SSL }\n",
    )
    .unwrap();
    let k = e.kafka.unwrap();
    assert_eq!(k.brokers, ["k1:9092", "k2:9093"]);
    assert_eq!(k.metrics_topic.as_deref(), Some("red"));
    assert_eq!(k.spans_topic, None);
    assert_eq!(k.encoding, KafkaEncoding::OtlpJson);
    assert_eq!(k.librdkafka["security.protocol"], "SASL_SSL");
    assert!(k.validate("exporters.kafka").is_empty());
    assert!(serde_yaml_ng::from_str::<ExportersConfig>("kafka: { topic: x }").is_err());
}

#[test]
fn kafka_sections_report_every_problem_with_its_path() {
    let mut cfg = Config::default();
    cfg.receivers.kafka = Some(KafkaReceiverConfig {
        brokers: vec!["nohost".into()],
        traces_topic: "bad topic".into(),
        metrics_topic: Some("bad topic".into()),
        group_id: " ".into(),
        ..Default::default()
    });
    cfg.exporters.kafka = Some(KafkaExporterConfig {
        brokers: vec![],
        metrics_topic: None,
        spans_topic: Some("a/b".into()),
        queue_size: 0,
        ..Default::default()
    });
    let paths: Vec<String> = cfg.validate().into_iter().map(|p| p.path).collect();
    for want in [
        "receivers.kafka.brokers[0]",
        "receivers.kafka.traces_topic",
        "receivers.kafka.metrics_topic",
        "receivers.kafka.group_id",
        "exporters.kafka.brokers",
        "exporters.kafka.spans_topic",
        "exporters.kafka.queue_size",
    ] {
        assert!(
            paths.iter().any(|p| p == want),
            "{want} missing in {paths:?}"
        );
    }
    let mut ok = Config::default();
    ok.receivers.kafka = Some(KafkaReceiverConfig::default());
    ok.exporters.kafka = Some(KafkaExporterConfig::default());
    assert!(ok.validate().is_empty(), "{:?}", ok.validate());
}
