//! The malformed seeds: protobuf broken in the ways the decoders must refuse, and JSON that is
//! broken or mistyped.

/// Malformed protobuf derived from a valid request, by name: `deep` is a valid-looking request
/// nested past the depth limit.
pub fn malformed_proto(
    valid: &[u8],
    utf8_target: &[u8],
    deep: Vec<u8>,
) -> Vec<(&'static str, Vec<u8>)> {
    let mut bad_utf8 = valid.to_vec();
    if let Some(i) = bad_utf8
        .windows(utf8_target.len())
        .position(|w| w == utf8_target)
    {
        bad_utf8[i] = 0xff;
    }
    vec![
        ("truncated", valid[..valid.len() * 2 / 3].to_vec()),
        ("invalid-utf8", bad_utf8),
        ("length-past-end", vec![0x0a, 0x7f, 0x12, 0x00]),
        (
            "varint-overflow",
            vec![
                0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f,
            ],
        ),
        ("wrong-wire-type", vec![0x08, 0x01]),
        ("group-wire-type", vec![0x7b, 0x7c]),
        ("too-deep", deep),
    ]
}

/// Malformed JSON as (target, file name, body): syntax, wrong types, out-of-range numbers, bad
/// ids, a data member serde would otherwise swallow.
pub const BAD_JSON: [(&str, &str, &str); 8] = [
    (
        "traces_json",
        "bad-syntax.json",
        r#"{"resourceSpans":[{"scopeSpans":[{"spans":[{"#,
    ),
    (
        "traces_json",
        "bad-type.json",
        r#"{"resourceSpans":{"scopeSpans":[]}}"#,
    ),
    (
        "traces_json",
        "bad-ids-times.json",
        r#"{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"zz","spanId":"0102","name":"x","kind":2,"startTimeUnixNano":"18446744073709551616","endTimeUnixNano":"1"}]}]}]}"#,
    ),
    ("traces_json", "not-an-object.json", "[1,2,3]"),
    (
        "metrics_json",
        "bad-syntax.json",
        r#"{"resourceMetrics":[{"scopeMetrics":[{"metrics":[{"name":"x","gauge":"#,
    ),
    (
        "metrics_json",
        "swallowed-data.json",
        r#"{"resourceMetrics":[{"scopeMetrics":[{"metrics":[{"name":"x","gauge":{"dataPoints":"no"}}]}]}]}"#,
    ),
    (
        "metrics_json",
        "bad-numbers.json",
        r#"{"resourceMetrics":[{"scopeMetrics":[{"metrics":[{"name":"x","sum":{"aggregationTemporality":9,"dataPoints":[{"timeUnixNano":"-1","asInt":"9223372036854775808"}]}}]}]}]}"#,
    ),
    ("metrics_json", "not-an-object.json", "null"),
];
