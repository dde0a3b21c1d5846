use super::*;

mod exporters;
mod kafka;
mod security;
mod service_graph;
mod sessions;
use std::time::Duration;

/// Every problem `validate` reports, as (path, message).
fn problems_of(c: &Config) -> Vec<(String, String)> {
    c.validate()
        .into_iter()
        .map(|p| (p.path, p.message))
        .collect()
}

fn ov(path: &str, v: &str) -> (Vec<String>, String) {
    (path.split('.').map(str::to_string).collect(), v.to_string())
}

#[test]
fn empty_config_is_the_default_and_valid() {
    let c = parse_yaml_with_overrides("", &[]).unwrap();
    assert_eq!(c, Config::default());
    assert!(c.validate().is_empty(), "{:?}", c.validate());
}

#[test]
fn defaults_round_trip_through_yaml() {
    let text = serde_yaml_ng::to_string(&Config::default()).unwrap();
    let back = parse_yaml_with_overrides(&text, &[]).unwrap();
    assert_eq!(back, Config::default());
}

#[test]
fn unknown_key_is_rejected_with_its_path() {
    let err = parse_yaml_with_overrides("windows:\n  sise: 10s\n", &[]).unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("windows"), "{msg}");
    assert!(msg.contains("sise"), "{msg}");
}

#[test]
fn bad_duration_names_its_path() {
    let err = parse_yaml_with_overrides("windows:\n  size: ten\n", &[]).unwrap_err();
    assert!(err.to_string().starts_with("windows.size"), "{err}");
}

#[test]
fn overrides_set_nested_keys_and_lists() {
    let c = parse_yaml_with_overrides(
        "windows:\n  size: 5s\n",
        &[
            ov("windows.size", "30s"),
            ov("windows.rollups", "[1m, 5m]"),
            ov("red.cardinality_limit", "7"),
        ],
    )
    .unwrap();
    assert_eq!(c.windows.size, Duration::from_secs(30));
    assert_eq!(
        c.windows.rollups,
        vec![Duration::from_secs(60), Duration::from_secs(300)]
    );
    assert_eq!(c.red.cardinality_limit, 7);
}

#[test]
fn env_overrides_use_double_underscore_segments() {
    let c = load(
        None,
        vec![
            ("REDWATCH__WINDOWS__SIZE".to_string(), "20s".to_string()),
            ("UNRELATED".to_string(), "x".to_string()),
        ],
        &["windows.allowed_lateness=1m".to_string()],
    )
    .unwrap();
    assert_eq!(c.windows.size, Duration::from_secs(20));
    assert_eq!(c.windows.allowed_lateness, Duration::from_secs(60));
}

#[test]
fn disabled_section_can_be_reenabled_by_override() {
    let c = parse_yaml_with_overrides(
        "exporters:\n  prometheus: null\n",
        &[ov("exporters.prometheus.endpoint", "127.0.0.1:0")],
    )
    .unwrap();
    assert_eq!(
        c.exporters.prometheus.unwrap().endpoint.to_string(),
        "127.0.0.1:0"
    );
}

#[test]
fn validate_reports_every_problem_with_paths() {
    let mut c = Config::default();
    c.windows.rollups = vec![Duration::from_secs(15)];
    c.red.cardinality_limit = 0;
    c.red.buckets_ms = vec![10.0, 5.0];
    c.red.dimensions = vec![Dimension {
        name: "service_name".into(),
        default: None,
        source: Default::default(),
    }];
    let paths: Vec<String> = c.validate().into_iter().map(|p| p.path).collect();
    assert_eq!(
        paths,
        vec![
            "windows.rollups[0]",
            "red.cardinality_limit",
            "red.buckets_ms",
            "red.dimensions[0].name"
        ]
    );
}

#[test]
fn sizes_parse_human_units() {
    let c = parse_yaml_with_overrides(
        "receivers:\n  otlp:\n    grpc: { endpoint: 127.0.0.1:0, max_message_size: 1MiB }\n",
        &[],
    )
    .unwrap();
    assert_eq!(
        c.receivers.otlp.grpc.unwrap().max_message_size.as_u64(),
        1 << 20
    );
}

#[test]
fn dimension_label_is_prometheus_safe() {
    let d = Dimension {
        name: "http.request.method".into(),
        default: None,
        source: Default::default(),
    };
    assert_eq!(d.label(), "http_request_method");
}

#[test]
fn hopping_windows_parse_and_validate() {
    let c = parse_yaml_with_overrides(
        "windows:\n  size: 10s\n  extra:\n    - { size: 1m, slide: 20s }\n",
        &[],
    )
    .unwrap();
    assert_eq!(
        c.windows.extra[0].hopping(),
        Some((Duration::from_secs(60), Duration::from_secs(20)))
    );
    assert!(c.validate().is_empty(), "{:?}", c.validate());

    let bad = parse_yaml_with_overrides(
        "windows:\n  size: 10s\n  extra:\n    - { size: 1m, slide: 15s }\n    - { size: 50s, slide: 20s }\n    - { size: 1m }\n",
        &[],
    )
    .unwrap();
    let problems = problems_of(&bad);
    let paths: Vec<&str> = problems.iter().map(|(p, _)| p.as_str()).collect();
    assert_eq!(
        paths,
        vec![
            "windows.extra[0].slide",
            "windows.extra[1].size",
            "windows.extra[2]",
        ],
        "{problems:?}"
    );
    // Session specs ({gap, key}) are valid extra windows: see sessions.rs.
}

#[test]
fn sql_limits_and_continuous_names_are_checked_with_their_paths() {
    let c = parse_yaml_with_overrides(
        "sql:\n  memory_limit: 512MiB\n  shared_memory_limit: 256MiB\n  max_concurrent_queries: 0\n  allowed_hosts: ['a.example:7070', '']\n  continuous:\n    - { name: runs_total, query: 'SELECT 1' }\n",
        &[],
    )
    .unwrap();
    let paths: Vec<String> = c.validate().into_iter().map(|p| p.path).collect();
    for p in [
        "sql.shared_memory_limit",
        "sql.max_concurrent_queries",
        "sql.allowed_hosts[0]",
        "sql.allowed_hosts[1]",
        "sql.continuous[0].name",
    ] {
        assert!(paths.iter().any(|x| x == p), "{p} missing in {paths:?}");
    }
}

#[test]
fn ui_is_on_by_default_and_its_jaeger_url_is_checked() {
    let c = parse_yaml_with_overrides("{}", &[]).unwrap();
    assert!(c.ui.enabled && c.ui.jaeger_url.is_none());
    let ok = parse_yaml_with_overrides(
        "ui: { enabled: false, jaeger_url: 'http://jaeger:16686' }\n",
        &[],
    )
    .unwrap();
    assert!(!ok.ui.enabled);
    assert!(ok.validate().is_empty(), "{:?}", ok.validate());
    let bad = parse_yaml_with_overrides("ui: { jaeger_url: 'jaeger:16686' }\n", &[]).unwrap();
    let paths: Vec<String> = bad.validate().into_iter().map(|p| p.path).collect();
    assert_eq!(paths, ["ui.jaeger_url"]);
    assert!(parse_yaml_with_overrides("ui: { colour: red }\n", &[]).is_err());
}

#[test]
fn problems_are_on_by_default_and_the_webhook_is_off_and_checked() {
    let c = parse_yaml_with_overrides("{}", &[]).unwrap();
    assert!(c.problems.enabled);
    assert!(c.exporters.webhook.url.is_none());
    assert_eq!(c.exporters.webhook.format, WebhookFormat::Alertmanager);
    let ok = parse_yaml_with_overrides(
        "problems: { enabled: false }\nexporters: { webhook: { url: 'http://127.0.0.1:9093/hook', format: slack } }\n",
        &[],
    )
    .unwrap();
    assert!(!ok.problems.enabled);
    assert_eq!(ok.exporters.webhook.format, WebhookFormat::Slack);
    assert!(ok.validate().is_empty(), "{:?}", ok.validate());
    let bad = parse_yaml_with_overrides(
        "exporters: { webhook: { url: 'hooks.example', queue_size: 0 } }\n",
        &[],
    )
    .unwrap();
    let paths: Vec<String> = bad.validate().into_iter().map(|p| p.path).collect();
    assert_eq!(
        paths,
        ["exporters.webhook.url", "exporters.webhook.queue_size"]
    );
    assert!(parse_yaml_with_overrides("problems: { colour: red }\n", &[]).is_err());
    assert!(parse_yaml_with_overrides("exporters: { webhook: { format: teams } }\n", &[]).is_err());
}
