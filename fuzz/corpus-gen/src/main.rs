//! Writes the seed corpus of the fuzz targets: small valid OTLP requests in the shapes of the
//! decoder unit tests' fixtures (protobuf and OTLP/JSON), plus a few malformed ones.
//!
//! `cargo run --manifest-path fuzz/Cargo.toml -p redwatch-fuzz-corpus-gen -- tests/fuzz-corpus`
//!
//! Every valid seed is decoded once here and must be accepted, so the corpus cannot silently rot
//! when the decoders change. File names are stable (`<n>-<what>`), so regenerating rewrites the
//! same files.

#![forbid(unsafe_code)]

mod attributes;
mod malformed;
mod metrics;
mod traces;

use bytes::Bytes;
use malformed::{malformed_proto, BAD_JSON};
use prost::Message;
use redwatch_connectors::otlp::decode::{
    decode_metrics_json, decode_metrics_proto, decode_traces_json, decode_traces_proto,
    DecodeSettings,
};
use redwatch_engine::config::WindowsConfig;
use redwatch_engine::model::SourceId;
use redwatch_engine::time::TimePolicy;
use std::path::PathBuf;

const SEC: u64 = 1_000_000_000;
/// Must equal `redwatch_fuzz::NOW`: the seeds' spans and points end just before it.
const NOW: u64 = 1_700_000_000 * SEC;

/// The corpus directory being written: one folder per fuzz target.
struct Corpus {
    root: PathBuf,
    total: usize,
}

impl Corpus {
    fn put(&mut self, target: &str, name: String, bytes: &[u8]) {
        self.total += bytes.len();
        let dir = self.root.join(target);
        std::fs::create_dir_all(&dir).expect("create corpus dir");
        std::fs::write(dir.join(name), bytes).expect("write seed");
    }
}

fn main() {
    let root = PathBuf::from(
        std::env::args()
            .nth(1)
            .unwrap_or_else(|| "tests/fuzz-corpus".into()),
    );
    let policy = TimePolicy::new(&WindowsConfig::default());
    policy.publish_watermark(NOW - 60 * SEC);
    let settings = DecodeSettings {
        dim_keys: vec!["dim.a".into(), "service.name".into()],
        dim_sources: Vec::new(),
        ..Default::default()
    };
    let mut corpus = Corpus { root, total: 0 };
    put_trace_seeds(&mut corpus, &settings, &policy);
    put_metric_seeds(&mut corpus, &policy);
    for (target, name, body) in BAD_JSON {
        corpus.put(target, name.to_string(), body.as_bytes());
    }
    println!(
        "wrote {} bytes of seeds under {}",
        corpus.total,
        corpus.root.display()
    );
}

/// The valid trace seeds (protobuf and JSON, each decoded once and accepted) and the malformed
/// protobuf ones (each refused).
fn put_trace_seeds(corpus: &mut Corpus, settings: &DecodeSettings, policy: &TimePolicy) {
    let trace = traces::trace_seeds();
    for (i, (name, req)) in trace.iter().enumerate() {
        let pb = req.encode_to_vec();
        let out = decode_traces_proto(Bytes::from(pb.clone()), SourceId(0), settings, policy, NOW)
            .unwrap_or_else(|e| panic!("trace seed {name} refused: {e}"));
        assert_eq!(
            out.received as usize,
            req.resource_spans
                .iter()
                .flat_map(|r| &r.scope_spans)
                .map(|s| s.spans.len())
                .sum::<usize>()
        );
        corpus.put("trace_proto", format!("{i:02}-{name}"), &pb);
        let json = serde_json::to_vec(req).expect("json");
        decode_traces_json(&json, SourceId(0), settings, policy, NOW)
            .unwrap_or_else(|e| panic!("trace JSON seed {name} refused: {e}"));
        corpus.put("traces_json", format!("{i:02}-{name}.json"), &json);
    }
    let rich = trace[1].1.encode_to_vec();
    let deep = traces::too_deep();
    for (name, bytes) in malformed_proto(&rich, b"POST /pay", deep.encode_to_vec()) {
        assert!(
            decode_traces_proto(
                Bytes::from(bytes.clone()),
                SourceId(0),
                settings,
                policy,
                NOW
            )
            .is_err(),
            "malformed trace seed {name} accepted"
        );
        corpus.put("trace_proto", format!("bad-{name}"), &bytes);
    }
}

/// The valid metrics seeds (protobuf and JSON, each decoded once and accepted) and the
/// malformed protobuf ones (each refused).
fn put_metric_seeds(corpus: &mut Corpus, policy: &TimePolicy) {
    let metric_reqs = metrics::metric_seeds();
    for (i, (name, req)) in metric_reqs.iter().enumerate() {
        let pb = req.encode_to_vec();
        decode_metrics_proto(Bytes::from(pb.clone()), SourceId(3), policy, NOW)
            .unwrap_or_else(|e| panic!("metrics seed {name} refused: {e}"));
        corpus.put("metrics_proto", format!("{i:02}-{name}"), &pb);
        let json = serde_json::to_vec(req).expect("json");
        decode_metrics_json(&json, SourceId(3), policy, NOW)
            .unwrap_or_else(|e| panic!("metrics JSON seed {name} refused: {e}"));
        corpus.put("metrics_json", format!("{i:02}-{name}.json"), &json);
    }
    let hist = metric_reqs[2].1.encode_to_vec();
    let deep = metrics::too_deep();
    for (name, bytes) in malformed_proto(&hist, b"http.server.duration", deep.encode_to_vec()) {
        assert!(
            decode_metrics_proto(Bytes::from(bytes.clone()), SourceId(3), policy, NOW).is_err(),
            "malformed metrics seed {name} accepted"
        );
        corpus.put("metrics_proto", format!("bad-{name}"), &bytes);
    }
}
