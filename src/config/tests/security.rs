//! The `security` section read through the whole file (moved from the engine with `Config`).

use crate::config::*;
use std::path::PathBuf;

/// A fresh directory with a CA-signed certificate and key (`cert.pem`, `key.pem`, `ca.pem`)
/// and a token file; made at test time, never committed.
fn files(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("redwatch-tls-cfg-{}-{tag}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["localhost".to_string()])
        .unwrap()
        .signed_by(&key, &ca)
        .unwrap();
    std::fs::write(dir.join("ca.pem"), ca.pem()).unwrap();
    std::fs::write(dir.join("cert.pem"), cert.pem()).unwrap();
    std::fs::write(dir.join("key.pem"), key.serialize_pem()).unwrap();
    std::fs::write(
        dir.join("tokens"),
        "# rotated weekly\n\ntoken-a\n  token-b  \n",
    )
    .unwrap();
    std::fs::write(dir.join("empty-tokens"), "# none yet\n").unwrap();
    dir
}

fn problems(yaml: &str) -> Vec<(String, String)> {
    let cfg: Config = serde_yaml_ng::from_str(yaml).unwrap();
    super::problems_of(&cfg)
}

#[test]
fn tls_and_auth_are_off_by_default() {
    let d = Config::default();
    let g = d.receivers.otlp.grpc.as_ref().unwrap();
    let h = d.receivers.otlp.http.as_ref().unwrap();
    let p = d.exporters.prometheus.as_ref().unwrap();
    assert!(g.tls.is_none() && g.auth.is_none());
    assert!(h.tls.is_none() && h.auth.is_none());
    assert!(p.tls.is_none() && p.auth.is_none());
    assert!(d.sql.tls.is_none() && d.sql.auth.is_none());
}

#[test]
fn valid_tls_and_auth_blocks_pass_on_every_listener() {
    let d = files("valid");
    let d = d.display();
    let tls =
        format!("{{cert_file: {d}/cert.pem, key_file: {d}/key.pem, client_ca_file: {d}/ca.pem}}");
    let yaml = format!(
        "receivers:\n  otlp:\n    grpc: {{tls: {tls}, auth: {{bearer_tokens: [t1]}}}}\n    \
         http: {{tls: {tls}, auth: {{bearer_tokens_file: {d}/tokens}}}}\n\
         sql: {{tls: {tls}, auth: {{bearer_tokens: [t2], bearer_tokens_file: {d}/tokens}}}}\n\
         exporters:\n  prometheus: {{tls: {tls}, auth: {{bearer_tokens: [t3]}}}}\n"
    );
    assert_eq!(problems(&yaml), vec![]);
    let cfg: Config = serde_yaml_ng::from_str(&yaml).unwrap();
    let tokens = cfg.sql.auth.as_ref().unwrap().tokens().unwrap();
    assert_eq!(tokens, ["t2", "token-a", "token-b"]);
    // Tokens never show in a debug print of the config.
    assert!(!format!("{cfg:?}").contains("t2"));
}

#[test]
fn broken_tls_and_auth_blocks_are_reported_with_their_paths() {
    let d = files("broken");
    let d = d.display();
    let got = problems(&format!(
        "receivers:\n  otlp:\n    \
         grpc: {{tls: {{cert_file: {d}/cert.pem}}, auth: {{bearer_tokens: []}}}}\n    \
         http: {{tls: {{cert_file: {d}/nope.pem, key_file: {d}/cert.pem}}, \
         auth: {{bearer_tokens_file: {d}/missing-tokens}}}}\n\
         sql: {{tls: {{key_file: {d}/key.pem, cert_file: {d}/key.pem, client_ca_file: {d}/tokens}}, \
         auth: {{bearer_tokens_file: {d}/empty-tokens}}}}\n\
         exporters:\n  prometheus: {{auth: {{bearer_tokens: ['has space']}}}}\n"
    ));
    let paths: Vec<&str> = got.iter().map(|(p, _)| p.as_str()).collect();
    assert_eq!(
        paths,
        [
            "receivers.otlp.grpc.tls.key_file",
            "receivers.otlp.grpc.auth",
            "receivers.otlp.http.tls.cert_file",
            "receivers.otlp.http.tls.key_file",
            "receivers.otlp.http.auth.bearer_tokens_file",
            "sql.tls.cert_file",
            "sql.tls.client_ca_file",
            "sql.auth",
            "exporters.prometheus.auth.bearer_tokens[0]",
        ],
        "{got:#?}"
    );
    let msg = |p: &str| &got.iter().find(|(q, _)| q == p).unwrap().1;
    assert!(msg("receivers.otlp.grpc.tls.key_file").contains("is required"));
    assert!(msg("receivers.otlp.grpc.auth").contains("no token is configured"));
    assert!(msg("receivers.otlp.http.tls.cert_file").contains("cannot read"));
    assert!(msg("receivers.otlp.http.tls.key_file").contains("no PEM private key"));
    assert!(msg("receivers.otlp.http.auth.bearer_tokens_file").contains("cannot read"));
    assert!(msg("sql.tls.cert_file").contains("no PEM certificate"));
    // Unknown keys in the blocks are refused by serde.
    assert!(serde_yaml_ng::from_str::<Config>("sql: {tls: {cert: x}}").is_err());
    assert!(serde_yaml_ng::from_str::<Config>("sql: {auth: {tokens: [x]}}").is_err());
}

#[test]
fn exporter_tls_matches_its_scheme() {
    let d = files("client");
    let d = d.display();
    let got = |yaml: &str| problems(&format!("exporters:\n  otlp: {yaml}\n"));
    assert_eq!(
        got(&format!(
            "{{endpoint: 'https://c:4317', tls: {{ca_file: {d}/ca.pem, cert_file: {d}/cert.pem, key_file: {d}/key.pem}}}}"
        )),
        vec![]
    );
    assert_eq!(
        got("{endpoint: 'https://c:4317', tls: {insecure_skip_verify: true}}"),
        vec![]
    );
    let paths = |yaml: &str| got(yaml).into_iter().map(|(p, _)| p).collect::<Vec<_>>();
    assert_eq!(
        paths("{endpoint: 'https://c:4317'}"),
        ["exporters.otlp.tls"]
    );
    assert_eq!(
        paths("{endpoint: 'http://c:4317', tls: {insecure_skip_verify: true}}"),
        ["exporters.otlp.endpoint"]
    );
    assert_eq!(
        paths(&format!(
            "{{endpoint: 'https://c:4317', tls: {{cert_file: {d}/cert.pem}}}}"
        )),
        ["exporters.otlp.tls.key_file", "exporters.otlp.tls.ca_file"]
    );
}
