//! TLS and bearer-token authentication blocks, shaped like the OpenTelemetry Collector's
//! `tls` (configtls) and `auth` (bearertokenauth) settings. A listener carries
//! `tls: {cert_file, key_file, client_ca_file}` and `auth: {bearer_tokens, bearer_tokens_file}`;
//! a client (the OTLP exporter) carries `tls: {ca_file, cert_file, key_file,
//! insecure_skip_verify}`. Both are off (`null`) by default. See docs/design.md, "Security".
//!
//! Validation reads the named files (they must exist, be readable and hold PEM of the right
//! kind), so that `redwatch validate` reports a bad path before the server starts.

use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// TLS of a listener. With `client_ca_file`, clients must present a certificate signed by one of
/// its CAs (mutual TLS).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct TlsServerConfig {
    /// PEM certificate chain the listener presents, leaf first.
    #[serde(default)]
    pub cert_file: Option<PathBuf>,
    /// PEM private key of the leaf certificate (PKCS#8, PKCS#1 or SEC1).
    #[serde(default)]
    pub key_file: Option<PathBuf>,
    /// PEM CA certificates that sign client certificates; set = clients without such a
    /// certificate fail the handshake.
    #[serde(default)]
    pub client_ca_file: Option<PathBuf>,
}

/// Bearer-token authentication of a listener: every request must carry
/// `Authorization: Bearer <token>` with one of the tokens (compared in constant time).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    /// Accepted tokens.
    #[serde(default)]
    pub bearer_tokens: Vec<String>,
    /// A file with more accepted tokens, one per line (blank lines and lines starting with `#`
    /// are ignored). Read once at start; restart to rotate.
    #[serde(default)]
    pub bearer_tokens_file: Option<PathBuf>,
}

impl std::fmt::Debug for AuthConfig {
    // Tokens are secrets: a logged config shows how many there are, never their text.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthConfig")
            .field(
                "bearer_tokens",
                &format_args!("[{} redacted]", self.bearer_tokens.len()),
            )
            .field("bearer_tokens_file", &self.bearer_tokens_file)
            .finish()
    }
}

/// TLS of a client connection (the OTLP exporter).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct TlsClientConfig {
    /// PEM CA certificates that sign the server's certificate; without it the server must be
    /// reachable with `insecure_skip_verify` (there are no built-in roots).
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate chain, for a server that asks for mutual TLS.
    pub cert_file: Option<PathBuf>,
    /// PEM private key of `cert_file`.
    pub key_file: Option<PathBuf>,
    /// Accept any server certificate (testing only: anyone on the path can read the data).
    pub insecure_skip_verify: bool,
}

/// What a PEM file must hold.
#[derive(Clone, Copy)]
enum Pem {
    Certificates,
    PrivateKey,
}

fn check_pem(path: &std::path::Path, want: Pem) -> Result<(), String> {
    let text = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    match want {
        Pem::Certificates => {
            let n = CertificateDer::pem_slice_iter(&text)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| format!("{} is not PEM: {e}", path.display()))?
                .len();
            if n == 0 {
                return Err(format!("{} holds no PEM certificate", path.display()));
            }
        }
        Pem::PrivateKey => {
            PrivateKeyDer::from_pem_slice(&text)
                .map_err(|e| format!("{} holds no PEM private key: {e}", path.display()))?;
        }
    }
    Ok(())
}

/// The tokens of a token file: one per line, blank lines and `#` comments skipped.
pub fn parse_token_file(text: &str) -> Vec<String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_string)
        .collect()
}

impl TlsServerConfig {
    /// Every problem, as (dotted path, message); `path` is where the block sits.
    pub fn validate(&self, path: &str) -> Vec<(String, String)> {
        let mut out = Vec::new();
        let mut check = |key: &str, file: &Option<PathBuf>, want: Pem, required: bool| {
            match file
        {
            Some(f) => {
                if let Err(m) = check_pem(f, want) {
                    out.push((format!("{path}.{key}"), m));
                }
            }
            None if required => out.push((
                format!("{path}.{key}"),
                "is required when tls is set (a certificate needs its key and a key its certificate)"
                    .to_string(),
            )),
            None => {}
        }
        };
        check("cert_file", &self.cert_file, Pem::Certificates, true);
        check("key_file", &self.key_file, Pem::PrivateKey, true);
        check(
            "client_ca_file",
            &self.client_ca_file,
            Pem::Certificates,
            false,
        );
        out
    }
}

impl TlsClientConfig {
    /// Every problem, as (dotted path, message); `path` is where the block sits.
    pub fn validate(&self, path: &str) -> Vec<(String, String)> {
        let mut out = Vec::new();
        let mut file = |key: &str, f: &Option<PathBuf>, want: Pem| {
            if let Some(f) = f {
                if let Err(m) = check_pem(f, want) {
                    out.push((format!("{path}.{key}"), m));
                }
            }
        };
        file("ca_file", &self.ca_file, Pem::Certificates);
        file("cert_file", &self.cert_file, Pem::Certificates);
        file("key_file", &self.key_file, Pem::PrivateKey);
        match (&self.cert_file, &self.key_file) {
            (Some(_), None) => out.push((
                format!("{path}.key_file"),
                "is required with cert_file".into(),
            )),
            (None, Some(_)) => out.push((
                format!("{path}.cert_file"),
                "is required with key_file".into(),
            )),
            _ => {}
        }
        if self.ca_file.is_none() && !self.insecure_skip_verify {
            out.push((
                format!("{path}.ca_file"),
                "is required (no built-in roots), or set insecure_skip_verify for a test".into(),
            ));
        }
        out
    }
}

impl AuthConfig {
    /// Every accepted token: the static list, then the file's. Reads the file.
    pub fn tokens(&self) -> Result<Vec<String>, String> {
        let mut tokens = self.bearer_tokens.clone();
        if let Some(f) = &self.bearer_tokens_file {
            let text = std::fs::read_to_string(f)
                .map_err(|e| format!("cannot read {}: {e}", f.display()))?;
            tokens.extend(parse_token_file(&text));
        }
        Ok(tokens)
    }

    /// Every problem, as (dotted path, message); `path` is where the block sits.
    pub fn validate(&self, path: &str) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for (i, t) in self.bearer_tokens.iter().enumerate() {
            if t.is_empty() || t.chars().any(|c| c.is_whitespace() || c.is_control()) {
                out.push((
                    format!("{path}.bearer_tokens[{i}]"),
                    "must be non-empty, without whitespace".into(),
                ));
            }
        }
        match self.tokens() {
            Err(m) => out.push((format!("{path}.bearer_tokens_file"), m)),
            Ok(t) if t.is_empty() => out.push((
                path.to_string(),
                "auth is enabled but no token is configured: bearer_tokens is empty and \
                 bearer_tokens_file names no file with tokens (remove auth to turn it off)"
                    .into(),
            )),
            Ok(t) => {
                let from_file = &t[self.bearer_tokens.len()..];
                if from_file.iter().any(|t| t.chars().any(char::is_whitespace)) {
                    out.push((
                        format!("{path}.bearer_tokens_file"),
                        "a line holds whitespace inside its token".into(),
                    ));
                }
            }
        }
        out
    }
}
