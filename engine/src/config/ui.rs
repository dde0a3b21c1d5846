//! Config of the web console (issue 18): a read-only page set served at `/` on the SQL HTTP
//! listener, a client of `/api/v1/sql` like any other.
//!
//! Owns the struct, its default and its pure validation; serving lives in
//! `redwatch_queries::console`.

use serde::{Deserialize, Serialize};

/// The web console on the SQL HTTP listener (`sql.http_endpoint`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UiConfig {
    /// Serve the console at `/` (needs `sql.http_endpoint`); `false` leaves only the API.
    pub enabled: bool,
    /// Base URL of a Jaeger UI (`http://host:16686`); trace ids become links to
    /// `<jaeger_url>/trace/<id>`. `null` = trace ids are shown as text.
    pub jaeger_url: Option<String>,
}

impl Default for UiConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            jaeger_url: None,
        }
    }
}

impl UiConfig {
    /// Problems with their paths (`ui.jaeger_url`).
    pub fn problems(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        if let Some(u) = &self.jaeger_url {
            let scheme_ok = u.starts_with("http://") || u.starts_with("https://");
            let rest = u.split_once("://").map_or("", |(_, r)| r);
            if !scheme_ok || rest.is_empty() || u.chars().any(|c| c.is_whitespace() || c == '"') {
                out.push((
                    "ui.jaeger_url".to_string(),
                    format!("{u:?} is not an http:// or https:// URL"),
                ));
            }
        }
        out
    }
}
