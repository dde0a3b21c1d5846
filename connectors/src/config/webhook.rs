//! Config of the webhook exporter that notifies on problem open and resolve
//! (`exporters.webhook`), issue 17.
//!
//! Owns the structs, their defaults and their pure validation; the webhook itself lives in
//! [`crate::webhook`].

use serde::{Deserialize, Serialize};
use std::time::Duration;

/// The JSON body a webhook receives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum WebhookFormat {
    /// Alertmanager's webhook payload (version 4): one alert per problem, `status` firing or
    /// resolved.
    #[default]
    Alertmanager,
    /// A Slack incoming-webhook message: `{"text": ...}`.
    Slack,
}

/// Notifications on problem open and resolve.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebhookExporterConfig {
    /// Where to POST (`http://` or `https://`); `null` = no notifications.
    pub url: Option<String>,
    /// The body's shape.
    pub format: WebhookFormat,
    /// TLS of an `https://` url (there are no built-in roots: give `ca_file`).
    pub tls: Option<super::TlsClientConfig>,
    /// Notifications waiting to be sent at most; one more is dropped and counted
    /// (`redwatch_webhook_dropped_total`).
    pub queue_size: usize,
    /// Timeout of one POST.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// First wait before a retry (doubled each time, up to `max_interval`). Retried: connection
    /// errors, timeouts, 408, 429 and 5xx answers.
    #[serde(with = "humantime_serde")]
    pub initial_interval: Duration,
    /// Longest wait between retries.
    #[serde(with = "humantime_serde")]
    pub max_interval: Duration,
    /// A notification not delivered after this long is dropped and counted.
    #[serde(with = "humantime_serde")]
    pub max_elapsed_time: Duration,
}

impl Default for WebhookExporterConfig {
    fn default() -> Self {
        Self {
            url: None,
            format: WebhookFormat::Alertmanager,
            tls: None,
            queue_size: 1000,
            timeout: Duration::from_secs(10),
            initial_interval: Duration::from_secs(1),
            max_interval: Duration::from_secs(30),
            max_elapsed_time: Duration::from_secs(300),
        }
    }
}

impl WebhookExporterConfig {
    /// Problems with their paths (`exporters.webhook.*`).
    pub fn problems(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        if let Some(u) = &self.url {
            let scheme_ok = u.starts_with("http://") || u.starts_with("https://");
            let rest = u.split_once("://").map_or("", |(_, r)| r);
            if !scheme_ok || rest.is_empty() || u.chars().any(char::is_whitespace) {
                out.push((
                    "exporters.webhook.url".to_string(),
                    format!("{u:?} is not an http:// or https:// URL"),
                ));
            }
        }
        if let Some(u) = &self.url {
            if u.starts_with("https://") != self.tls.is_some() {
                out.push((
                    "exporters.webhook.tls".to_string(),
                    "an https:// url needs tls (with ca_file), and tls needs https://".to_string(),
                ));
            }
        }
        if self.queue_size == 0 {
            out.push((
                "exporters.webhook.queue_size".to_string(),
                "must be at least 1".to_string(),
            ));
        }
        if self.timeout.is_zero() {
            out.push((
                "exporters.webhook.timeout".to_string(),
                "must be greater than 0".to_string(),
            ));
        }
        if self.initial_interval > self.max_interval {
            out.push((
                "exporters.webhook.initial_interval".to_string(),
                "must not exceed max_interval".to_string(),
            ));
        }
        out
    }
}
