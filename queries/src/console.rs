//! The web console (issue 18): static pages at `/` on the SQL HTTP listener.
//!
//! Owns the embedded assets (`queries/console/`, compiled in with `include_str!`) and the headers
//! they are served with: a strict Content-Security-Policy (scripts, styles and connections only
//! from this origin, no inline script), no framing, no referrer. The pages are a client of
//! `POST /api/v1/sql` like any other, so every picture is a query a user can copy; this module
//! must not add data endpoints. The one extra document, `/console/config.json`, carries the
//! settings a page cannot learn by SQL (the Jaeger base URL, the window spec labels).

use crate::config::UiConfig;
use crate::http::{host_allowed, host_part};
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use redwatch_engine::config::WindowsConfig;
use std::sync::Arc;

/// The policy every console response carries. `img-src data:` is for nothing external: the
/// pages draw with inline SVG elements, which `default-src` does not govern.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; \
style-src 'self'; img-src 'self' data:; connect-src 'self'; font-src 'self'; object-src 'none'; \
base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

const INDEX_HTML: &str = include_str!("../console/index.html");
const APP_JS: &str = include_str!("../console/app.js");
const CHARTS_JS: &str = include_str!("../console/charts.js");
const APP_CSS: &str = include_str!("../console/app.css");
const ICON_SVG: &str = include_str!("../console/icon.svg");

#[derive(Clone)]
struct ConsoleState {
    config_json: Arc<str>,
    allowed_hosts: Arc<Vec<String>>,
}

/// The console's settings as the pages read them.
fn config_json(ui: &UiConfig, windows: &WindowsConfig) -> String {
    let label = |d: std::time::Duration| {
        redwatch_operators::common::spec_label(d.as_nanos() as u64).to_string()
    };
    serde_json::json!({
        "jaeger_url": ui.jaeger_url.as_deref().map(|u| u.trim_end_matches('/')),
        "primary_window": label(windows.size),
        "primary_window_ms": windows.size.as_millis() as u64,
        "rollups": windows.rollups.iter().map(|d| label(*d)).collect::<Vec<_>>(),
        "rollup_ms": windows.rollups.iter().map(|d| d.as_millis() as u64).collect::<Vec<_>>(),
        // How long a closed window can still be restated by late data.
        "allowed_lateness_ms": windows.allowed_lateness.as_millis() as u64,
    })
    .to_string()
}

fn asset(
    st: &ConsoleState,
    headers: &HeaderMap,
    content_type: &'static str,
    body: &str,
) -> Response {
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !host_allowed(host_part(host), &st.allowed_hosts) {
        return (
            StatusCode::FORBIDDEN,
            format!("Host {host:?} is not an IP address, localhost or one of sql.allowed_hosts\n"),
        )
            .into_response();
    }
    let mut r = (StatusCode::OK, body.to_string()).into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    r
}

/// The console's routes, or none when `ui.enabled` is false. Merged into the SQL HTTP router,
/// which answers only to `allowed_hosts` (`sql.allowed_hosts`) besides IPs and `localhost`.
pub fn router(ui: &UiConfig, windows: &WindowsConfig, allowed_hosts: &[String]) -> Router {
    if !ui.enabled {
        return Router::new();
    }
    let st = ConsoleState {
        config_json: Arc::from(config_json(ui, windows)),
        allowed_hosts: Arc::new(allowed_hosts.to_vec()),
    };
    macro_rules! serve {
        ($ct:expr, $body:expr) => {
            get(|State(st): State<ConsoleState>, h: HeaderMap| async move {
                asset(&st, &h, $ct, $body)
            })
        };
    }
    Router::new()
        .route("/", serve!("text/html; charset=utf-8", INDEX_HTML))
        .route(
            "/console/app.js",
            serve!("text/javascript; charset=utf-8", APP_JS),
        )
        .route(
            "/console/charts.js",
            serve!("text/javascript; charset=utf-8", CHARTS_JS),
        )
        .route(
            "/console/app.css",
            serve!("text/css; charset=utf-8", APP_CSS),
        )
        .route("/console/icon.svg", serve!("image/svg+xml", ICON_SVG))
        .route(
            "/console/config.json",
            get(|State(st): State<ConsoleState>, h: HeaderMap| async move {
                let body = st.config_json.clone();
                asset(&st, &h, "application/json", &body)
            }),
        )
        .with_state(st)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn assets_load_nothing_from_elsewhere_and_run_no_inline_script() {
        let assets = [
            ("index.html", INDEX_HTML),
            ("app.js", APP_JS),
            ("charts.js", CHARTS_JS),
            ("app.css", APP_CSS),
            ("icon.svg", ICON_SVG),
        ];
        for (name, text) in assets {
            // The only absolute URLs are the SVG namespace (an identifier, never fetched).
            for scheme in ["http://", "https://"] {
                for (i, _) in text.match_indices(scheme) {
                    let rest = &text[i + scheme.len()..];
                    assert!(
                        rest.starts_with("www.w3.org/2000/svg"),
                        "{name}: {}",
                        &text[i..(i + 40).min(text.len())]
                    );
                }
            }
            assert!(
                !text.contains("@import") && !text.contains("url(http"),
                "{name}"
            );
        }
        // Every <script> in the page has a src (the CSP refuses inline script anyway), and
        // there are no inline styles or handlers for the CSP to refuse.
        for tag in INDEX_HTML.split("<script").skip(1) {
            assert!(tag.trim_start().starts_with("src=\"/console/"), "{tag}");
        }
        assert!(!INDEX_HTML.contains(" style="));
        assert!(!INDEX_HTML.contains(" onclick=") && !INDEX_HTML.contains(" onload="));
    }

    #[test]
    fn config_names_the_window_specs_and_jaeger() {
        let ui = UiConfig {
            jaeger_url: Some("http://jaeger:16686/".into()),
            ..UiConfig::default()
        };
        let v: serde_json::Value =
            serde_json::from_str(&config_json(&ui, &WindowsConfig::default())).unwrap();
        assert_eq!(v["jaeger_url"], "http://jaeger:16686");
        assert_eq!(v["primary_window"], "10s");
        assert_eq!(v["rollups"][0], "1m");
        assert_eq!(v["primary_window_ms"], 10_000);
        assert_eq!(v["allowed_lateness_ms"], 30_000);
    }
}
