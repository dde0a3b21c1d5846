//! Listener and client security: TLS (rustls, ring provider) and bearer-token authentication,
//! configured by the `tls` and `auth` blocks of `config::security` (docs/design.md, "Security").
//!
//! Owns: turning those blocks into a rustls server or client config ([`tls`]), a listener that
//! hands out plaintext or TLS connections to axum and tonic alike ([`listener`]), the tower layer
//! that refuses requests without a valid token and counts them ([`auth`]), and a TLS connector
//! for tonic channels ([`connector`]). It must not know any protocol beyond HTTP and gRPC
//! status codes: wiring a listener is `secure(...)` plus `.layer(listener.auth_layer())`.

pub mod auth;
pub mod connector;
pub mod listener;
pub mod tls;

pub use auth::{AuthLayer, Protocol};
pub use listener::{Conn, SecureListener};
pub use tls::{client_config, server_config, Alpn};

use crate::config::{AuthConfig, TlsServerConfig};
use crate::telemetry::Registry;
use std::sync::Arc;

/// A security setting that cannot be put in force (a file went missing since validation, a key
/// does not match its certificate, …).
#[derive(Debug, thiserror::Error)]
pub enum SecurityError {
    /// A file named by the config cannot be read.
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    /// A file does not hold what it should.
    #[error("{path}: {message}")]
    Pem { path: String, message: String },
    /// rustls refused the certificates or keys.
    #[error("TLS: {0}")]
    Tls(#[from] rustls::Error),
    /// The client-certificate verifier could not be built from the CA file.
    #[error("client CA: {0}")]
    ClientCa(String),
    /// `auth` is set but names no token.
    #[error("auth is enabled but no bearer token is configured")]
    NoTokens,
    /// The token file cannot be read.
    #[error("{0}")]
    Tokens(String),
}

/// Wraps a bound listener with its `tls` and `auth` settings. `name` is the listener's name
/// (`otlp_grpc`, `sql_http`, …): the label of its counters. `protocol` decides how a refusal
/// looks (gRPC `UNAUTHENTICATED` or HTTP 401).
pub fn secure(
    name: &'static str,
    tcp: tokio::net::TcpListener,
    tls: Option<&TlsServerConfig>,
    auth: Option<&AuthConfig>,
    protocol: Protocol,
    registry: &Arc<Registry>,
) -> Result<SecureListener, SecurityError> {
    let alpn = match protocol {
        Protocol::Grpc => Alpn::H2,
        Protocol::Http => Alpn::Http1,
    };
    let tls = tls.map(|t| server_config(t, alpn)).transpose()?;
    let auth = match auth {
        Some(a) => {
            let tokens = a.tokens().map_err(SecurityError::Tokens)?;
            if tokens.is_empty() {
                return Err(SecurityError::NoTokens);
            }
            AuthLayer::new(name, &tokens, protocol, registry)
        }
        None => AuthLayer::disabled(),
    };
    SecureListener::new(name, tcp, tls, auth, registry)
}
