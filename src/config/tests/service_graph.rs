//! The `service_graph` section read through the whole file (moved from the engine with `Config`).

use crate::config::*;
use std::time::Duration;

#[test]
fn service_graph_and_dimension_keys_parse() {
    let c = parse_yaml_with_overrides(
        "red:\n  dimensions:\n    - { name: http.method, default: \"\" }\n    \
         - { name: deployment.environment, source: resource }\n    \
         - { name: otel.library.tier, source: scope, default: none }\n  \
         span_names:\n    collapse_ids: false\n    \
         rules: [{ pattern: '^GET /v[0-9]+/', replacement: 'GET /v{n}/' }]\n\
         service_graph: { wait: 2s, max_items: 50, dimensions: [{ name: k8s.cluster }] }\n",
        &[],
    )
    .unwrap();
    let d = &c.red.dimensions;
    assert_eq!(d[0].source, DimensionSource::Any);
    assert_eq!(d[0].default.as_deref(), Some(""));
    assert_eq!(d[1].source, DimensionSource::Resource);
    assert_eq!(d[2].source, DimensionSource::Scope);
    assert!(!c.red.span_names.collapse_ids);
    assert_eq!(c.red.span_names.rules[0].replacement, "GET /v{n}/");
    assert_eq!(c.service_graph.wait, Duration::from_secs(2));
    assert_eq!(c.service_graph.max_items, 50);
    assert_eq!(c.service_graph.dimensions[0].name, "k8s.cluster");
    assert!(c.validate().is_empty(), "{:?}", c.validate());
    // The old form (name and default only) still means "span, then scope, then resource".
    let old = parse_yaml_with_overrides(
        "red: { dimensions: [{ name: http.method, default: GET }] }",
        &[],
    )
    .unwrap();
    assert_eq!(old.red.dimensions[0].source, DimensionSource::Any);
    assert!(
        parse_yaml_with_overrides("red: { dimensions: [{ name: a, source: links }] }", &[])
            .is_err()
    );
    assert!(parse_yaml_with_overrides("service_graph: { waitt: 1s }", &[]).is_err());
}

#[test]
fn decoder_extracts_peer_and_database_attributes_only_for_the_service_graph() {
    let mut c = Config::default();
    c.red.dimensions = vec![Dimension {
        name: "http.method".into(),
        default: None,
        source: DimensionSource::Any,
    }];
    let got: Vec<(String, DimensionSource)> = c
        .decode_dimensions()
        .into_iter()
        .map(|d| (d.name, d.source))
        .collect();
    let d = |n: &str, s| (n.to_string(), s);
    assert_eq!(
        got,
        [
            d("http.method", DimensionSource::Any),
            d("peer.service", DimensionSource::Span),
            d("db.name", DimensionSource::Span),
            d("db.system", DimensionSource::Span),
            d("db.name", DimensionSource::Resource),
        ]
    );
    let sg = &c.service_graph;
    assert_eq!(
        sg.attribute_index("db.system", DimensionSource::Span),
        Some(2)
    );
    assert_eq!(
        sg.attribute_index("db.name", DimensionSource::Resource),
        Some(3)
    );
    assert!(!c
        .decode_dimensions()
        .iter()
        .any(|d| d.source.reads_scope() && d.name.starts_with("db.")));
    c.service_graph.virtual_node_peer_attributes = Vec::new();
    c.service_graph.database_name_attributes = vec!["db.namespace".into(), "".into()];
    assert!(!c.service_graph.virtual_nodes());
    // db.namespace and "" each from the resource and the span.
    assert_eq!(c.decode_dimensions().len(), 5);
    let problems = c.validate();
    let paths: Vec<&str> = problems.iter().map(|p| p.path.as_str()).collect();
    assert_eq!(paths, ["service_graph.database_name_attributes[1]"]);
    c.service_graph.enabled = false;
    assert_eq!(c.decode_dimensions().len(), 1);
    let yaml = parse_yaml_with_overrides(
        "service_graph: { virtual_node_peer_attributes: [net.peer.name], \
         virtual_node_extra_label: true, database_name_attributes: [] }",
        &[],
    )
    .unwrap();
    assert_eq!(
        yaml.service_graph.virtual_node_peer_attributes,
        ["net.peer.name"]
    );
    assert!(yaml.service_graph.virtual_node_extra_label);
    assert!(yaml.service_graph.database_name_attributes.is_empty());
}

#[test]
fn defaults_follow_the_collector() {
    let c = Config::default();
    assert!(c.service_graph.enabled);
    assert_eq!(
        c.service_graph.virtual_node_peer_attributes,
        ["peer.service", "db.name", "db.system"]
    );
    assert!(!c.service_graph.virtual_node_extra_label);
    assert_eq!(c.service_graph.database_name_attributes, ["db.name"]);
    assert_eq!(c.service_graph.wait, Duration::from_secs(10));
    assert_eq!(c.service_graph.max_items, 10_000);
    assert_eq!(c.service_graph.buckets_s.len(), 16);
    assert!(c.red.span_names.collapse_ids);
}

#[test]
fn bad_regex_and_bad_service_graph_values_report_paths() {
    let mut c = Config::default();
    c.red.span_names.rules = vec![
        SpanNameRule {
            pattern: "ok/[0-9]+".into(),
            replacement: "ok/{n}".into(),
        },
        SpanNameRule {
            pattern: "GET /(unclosed".into(),
            replacement: "x".into(),
        },
        SpanNameRule {
            pattern: String::new(),
            replacement: "x".into(),
        },
    ];
    c.service_graph.wait = Duration::ZERO;
    c.service_graph.max_items = 0;
    c.service_graph.buckets_s = vec![1.0, 0.5];
    c.service_graph.dimensions = vec![
        Dimension {
            name: "a.b".into(),
            default: None,
            source: DimensionSource::Any,
        },
        Dimension {
            name: "a_b".into(),
            default: None,
            source: DimensionSource::Span,
        },
    ];
    let problems = c.validate();
    let paths: Vec<&str> = problems.iter().map(|p| p.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "red.span_names.rules[1].pattern",
            "red.span_names.rules[2].pattern",
            "service_graph.wait",
            "service_graph.max_items",
            "service_graph.buckets_s",
            "service_graph.dimensions[1].name",
        ]
    );
    assert!(
        problems[0]
            .message
            .contains("not a valid regular expression")
            && !problems[0].message.contains('\n'),
        "{}",
        problems[0].message
    );
}
