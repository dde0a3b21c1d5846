//! Bearer-token authentication as a tower layer, for axum routers and tonic servers alike.
//!
//! A request passes when its `Authorization` header is `Bearer <token>` with one of the
//! configured tokens. Tokens are kept as SHA-256 digests and the presented token's digest is
//! compared with every one of them in constant time (`subtle`), so neither the position of the
//! first differing byte nor which token matched shows in the timing. A refused request gets gRPC
//! `UNAUTHENTICATED` or HTTP 401 with `WWW-Authenticate: Bearer` (RFC 6750) and is counted in
//! `redwatch_unauthenticated_requests_total{listener, reason}` (`missing_token` |
//! `invalid_token`). Paths in the open list (`/healthz`, `/readyz`) pass without a token.

use crate::telemetry::{Counter, Registry};
use http::{header, HeaderValue, Request, Response, StatusCode};
use std::sync::Arc;
use std::task::{Context, Poll};
use subtle::ConstantTimeEq;

/// How a refusal is spelled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// gRPC status `UNAUTHENTICATED` (HTTP 200, `grpc-status: 16`).
    Grpc,
    /// HTTP 401.
    Http,
}

/// Paths that never ask for a token: the health probes of the SQL HTTP listener (a probe carries
/// no credentials, as with the Collector's health_check extension).
pub const OPEN_PATHS: &[&str] = &["/healthz", "/readyz"];

/// Why a request was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// No `Authorization: Bearer …` header.
    Missing,
    /// A token that is not one of the configured ones.
    Invalid,
}

/// The accepted tokens, as SHA-256 digests.
pub struct BearerTokens(Vec<[u8; 32]>);

fn digest(token: &[u8]) -> [u8; 32] {
    let d = ring::digest::digest(&ring::digest::SHA256, token);
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

impl BearerTokens {
    pub fn new(tokens: &[String]) -> Self {
        BearerTokens(tokens.iter().map(|t| digest(t.as_bytes())).collect())
    }

    /// Checks an `Authorization` header value.
    pub fn check(&self, authorization: Option<&HeaderValue>) -> Result<(), Refusal> {
        let value = authorization.ok_or(Refusal::Missing)?.as_bytes();
        // The scheme is case-insensitive (RFC 7235); one space, then the token.
        if value.len() < 7 || !value[..7].eq_ignore_ascii_case(b"bearer ") {
            return Err(Refusal::Missing);
        }
        let presented = digest(value[7..].trim_ascii());
        let mut ok = subtle::Choice::from(0);
        for t in &self.0 {
            ok |= t.ct_eq(&presented);
        }
        if bool::from(ok) {
            Ok(())
        } else {
            Err(Refusal::Invalid)
        }
    }
}

struct AuthState {
    listener: &'static str,
    tokens: BearerTokens,
    protocol: Protocol,
    missing: Arc<Counter>,
    invalid: Arc<Counter>,
}

/// The layer; without `auth` in the config it is a pass-through, so every listener applies it
/// unconditionally.
#[derive(Clone, Default)]
pub struct AuthLayer(Option<Arc<AuthState>>);

impl AuthLayer {
    /// Requests must carry one of `tokens`. Registers the listener's counters (at 0).
    pub fn new(
        listener: &'static str,
        tokens: &[String],
        protocol: Protocol,
        registry: &Arc<Registry>,
    ) -> Self {
        const HELP: &str = "Requests refused for a missing or invalid bearer token, per listener.";
        let counter = |reason: &str| {
            registry.counter(
                "redwatch_unauthenticated_requests_total",
                HELP,
                &[("listener", listener), ("reason", reason)],
            )
        };
        AuthLayer(Some(Arc::new(AuthState {
            listener,
            tokens: BearerTokens::new(tokens),
            protocol,
            missing: counter("missing_token"),
            invalid: counter("invalid_token"),
        })))
    }

    /// No authentication.
    pub fn disabled() -> Self {
        AuthLayer(None)
    }

    pub fn is_enabled(&self) -> bool {
        self.0.is_some()
    }
}

impl<S> tower::Layer<S> for AuthLayer {
    type Service = Authenticated<S>;

    fn layer(&self, inner: S) -> Authenticated<S> {
        Authenticated {
            inner,
            auth: self.0.clone(),
        }
    }
}

/// A service behind [`AuthLayer`].
#[derive(Clone)]
pub struct Authenticated<S> {
    inner: S,
    auth: Option<Arc<AuthState>>,
}

/// Response bodies a refusal can be written into: axum's carries a JSON error in the SQL API's
/// shape, tonic's stays empty (the status travels in headers).
pub trait RefusalBody: Default {
    fn with_message(message: &str) -> Self;
}

impl RefusalBody for axum::body::Body {
    fn with_message(message: &str) -> Self {
        let body = serde_json::json!({"error": {"code": "unauthenticated", "message": message}});
        axum::body::Body::from(body.to_string())
    }
}

impl RefusalBody for tonic::body::Body {
    fn with_message(_message: &str) -> Self {
        tonic::body::Body::default()
    }
}

fn refuse<B: RefusalBody>(protocol: Protocol, why: Refusal) -> Response<B> {
    let (message, error) = match why {
        Refusal::Missing => (
            "this endpoint needs `Authorization: Bearer <token>`",
            "Bearer realm=\"redwatch\"",
        ),
        Refusal::Invalid => (
            "the bearer token is not valid",
            "Bearer realm=\"redwatch\", error=\"invalid_token\"",
        ),
    };
    match protocol {
        Protocol::Grpc => tonic::Status::unauthenticated(message).into_http(),
        Protocol::Http => {
            let mut r = Response::new(B::with_message(message));
            *r.status_mut() = StatusCode::UNAUTHORIZED;
            r.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static(error));
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            r
        }
    }
}

impl<S, ReqB, ResB> tower::Service<Request<ReqB>> for Authenticated<S>
where
    S: tower::Service<Request<ReqB>, Response = Response<ResB>>,
    ResB: RefusalBody,
{
    type Response = Response<ResB>;
    type Error = S::Error;
    type Future =
        futures::future::Either<std::future::Ready<Result<Response<ResB>, S::Error>>, S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqB>) -> Self::Future {
        use futures::future::Either;
        if let Some(auth) = &self.auth {
            if !OPEN_PATHS.contains(&req.uri().path()) {
                if let Err(why) = auth.tokens.check(req.headers().get(header::AUTHORIZATION)) {
                    match why {
                        Refusal::Missing => auth.missing.inc(),
                        Refusal::Invalid => auth.invalid.inc(),
                    }
                    tracing::debug!("{}: refused {} ({why:?})", auth.listener, req.uri().path());
                    return Either::Left(std::future::ready(Ok(refuse(auth.protocol, why))));
                }
            }
        }
        Either::Right(self.inner.call(req))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_configured_bearer_tokens_pass() {
        let t = BearerTokens::new(&["s3cret".to_string(), "other-token".to_string()]);
        let h = |s: &str| HeaderValue::from_str(s).unwrap();
        assert_eq!(t.check(Some(&h("Bearer s3cret"))), Ok(()));
        assert_eq!(t.check(Some(&h("bearer other-token"))), Ok(()));
        assert_eq!(t.check(Some(&h("Bearer s3cre"))), Err(Refusal::Invalid));
        assert_eq!(t.check(Some(&h("Bearer s3cret2"))), Err(Refusal::Invalid));
        assert_eq!(t.check(Some(&h("Bearer "))), Err(Refusal::Invalid));
        assert_eq!(t.check(Some(&h("Basic czNjcmV0"))), Err(Refusal::Missing));
        assert_eq!(t.check(Some(&h("s3cret"))), Err(Refusal::Missing));
        assert_eq!(t.check(None), Err(Refusal::Missing));
    }
}
