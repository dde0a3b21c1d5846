//! The `sessions` section read through the whole file (moved from the engine with `Config`).

use crate::config::*;
use std::time::Duration;

#[test]
fn session_specs_parse_with_every_key_form() {
    let c = parse_yaml_with_overrides(
        "red:\n  dimensions: [{name: http.method}]\nwindows:\n  extra:\n    - { gap: 30s, key: trace_id }\n    - { gap: 1m, key: service.name, max_duration: 10m, max_sessions: 50 }\n    - { gap: 5m, key: { name: enduser.id, source: span, default: anon } }\n    - { size: 1m, slide: 20s }\n",
        &[],
    )
    .unwrap();
    assert!(c.validate().is_empty(), "{:?}", c.validate());
    let specs = c.session_specs();
    assert_eq!(specs.len(), 3);
    assert_eq!(specs[0].key, SessionKeySource::TraceId);
    assert_eq!(specs[0].max_duration, DEFAULT_SESSION_MAX_DURATION);
    assert_eq!(specs[0].max_sessions, DEFAULT_MAX_SESSIONS);
    assert_eq!(specs[1].key, SessionKeySource::ServiceName);
    assert_eq!(specs[1].max_duration, Duration::from_secs(600));
    assert_eq!(specs[1].max_sessions, 50);
    // RED's dimension comes first, then the service graph's, then the session key (last).
    let dims = c.decode_dimensions();
    assert_eq!(dims[0].name, "http.method");
    let last = dims.len() - 1;
    assert_eq!(
        specs[2].key,
        SessionKeySource::Attribute {
            dim_index: last,
            default: Some("anon".into())
        }
    );
    assert_eq!(specs[2].key_name, "enduser.id");
    assert_eq!(dims[last].name, "enduser.id");
    assert_eq!(dims[last].source, DimensionSource::Span);
    // Without a session spec keyed by an attribute, the decoder extracts nothing more.
    let mut plain = c.clone();
    plain.windows.extra.truncate(2);
    assert_eq!(plain.decode_dimensions().len(), last);
    // Hopping specs still resolve as before; session specs are no hopping specs.
    assert!(c.windows.extra[3].hopping().is_some());
    assert_eq!(c.windows.extra[0].hopping(), None);
    // The spec round-trips through YAML.
    let text = serde_yaml_ng::to_string(&c).unwrap();
    assert_eq!(parse_yaml_with_overrides(&text, &[]).unwrap(), c);
}

#[test]
fn session_specs_are_validated_with_paths() {
    let c = parse_yaml_with_overrides(
        "windows:\n  extra:\n    - { gap: 0s, key: trace_id }\n    - { gap: 30s, key: user_id }\n    - { gap: 30s }\n    - { key: trace_id }\n    - { gap: 1m, key: trace_id, max_duration: 30s, max_sessions: 0 }\n    - { gap: 1s, key: { name: '' } }\n",
        &[],
    )
    .unwrap();
    let problems = super::problems_of(&c);
    let paths: Vec<&str> = problems.iter().map(|(p, _)| p.as_str()).collect();
    assert_eq!(
        paths,
        vec![
            "windows.extra[0].gap",
            "windows.extra[1].key",
            "windows.extra[2].key",
            "windows.extra[3].gap",
            "windows.extra[4].max_duration",
            "windows.extra[4].max_sessions",
            "windows.extra[5].key.name",
            "windows.extra",
        ],
        "{problems:?}"
    );
    assert!(
        problems[1].1.contains("unknown key `user_id`"),
        "{problems:?}"
    );
    assert!(problems[7].1.contains("at most 4"), "{problems:?}");
    // A bad attribute spec fails to parse with the field named.
    let err = parse_yaml_with_overrides(
        "windows:\n  extra:\n    - { gap: 1s, key: { name: a, sauce: span } }\n",
        &[],
    )
    .unwrap_err();
    assert!(err.to_string().contains("sauce"), "{err}");
}
