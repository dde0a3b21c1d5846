//! The webhook exporter: one POST when a problem opens and one when it resolves, as
//! Alertmanager's webhook payload (version 4) or a Slack incoming-webhook message.
//!
//! [`WebhookHandle::notify`] renders the body and `try_send`s it into a bounded queue (full:
//! dropped and counted, never waits: it is called on the operator task); one task sends them in
//! order, retrying connection errors, timeouts, 408, 429 and 5xx with exponential backoff until
//! `max_elapsed_time`. It must not decide what a problem is: it only formats and delivers.

mod payload;
#[cfg(test)]
mod tests;

pub use payload::render;

use crate::config::WebhookExporterConfig;
use redwatch_engine::security::{self, Alpn};
use redwatch_engine::telemetry::{Counter, Registry};
use redwatch_operators::problems::{Problem, ProblemBatch, ProblemSink, ProblemState};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Why the webhook exporter could not start.
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    #[error("exporters.webhook.url: {0}")]
    Url(String),
    #[error("exporters.webhook.tls: {0}")]
    Tls(String),
    #[error("cannot build the HTTP client: {0}")]
    Client(String),
}

/// Counters of the exporter.
#[derive(Clone)]
struct Counters {
    sent: Arc<Counter>,
    retries: Arc<Counter>,
    failed: Arc<Counter>,
    dropped: Arc<Counter>,
}

impl Counters {
    fn new(registry: &Registry) -> Counters {
        Counters {
            sent: registry.counter(
                "redwatch_webhook_sent_total",
                "Problem notifications delivered to the webhook.",
                &[],
            ),
            retries: registry.counter(
                "redwatch_webhook_retries_total",
                "Webhook deliveries retried (connection error, timeout, 408, 429, 5xx).",
                &[],
            ),
            failed: registry.counter(
                "redwatch_webhook_failed_total",
                "Problem notifications given up (refused with a non-retryable status, or not delivered within max_elapsed_time).",
                &[],
            ),
            dropped: registry.counter(
                "redwatch_webhook_dropped_total",
                "Problem notifications dropped because the webhook queue was full.",
                &[],
            ),
        }
    }
}

/// Where problems are handed to the exporter.
#[derive(Clone)]
pub struct WebhookHandle {
    tx: mpsc::Sender<Vec<u8>>,
    format: crate::config::WebhookFormat,
    counters: Counters,
}

impl WebhookHandle {
    /// Queues the notification of `p` when it opened or resolved (other states send nothing).
    /// Never waits; a full queue drops it and counts it.
    pub fn notify(&self, p: &Problem) {
        if p.state == ProblemState::Ongoing {
            return;
        }
        let body = render(p, self.format);
        if self.tx.try_send(body).is_err() {
            self.counters.dropped.inc();
        }
    }
}

/// Fed by the problem stream: one notification per problem opened or resolved.
impl ProblemSink for WebhookHandle {
    fn on_problems(&self, batch: &ProblemBatch) {
        for (p, _) in &batch.problems {
            self.notify(p);
        }
    }
}

/// The delivery side: client, url, retry policy.
struct Delivery {
    client: reqwest::Client,
    url: reqwest::Url,
    initial: Duration,
    max_interval: Duration,
    max_elapsed: Duration,
    counters: Counters,
}

/// The handle and its queue, without the task (tests drive the queue themselves).
fn channel(
    cfg: &WebhookExporterConfig,
    registry: &Registry,
) -> (WebhookHandle, mpsc::Receiver<Vec<u8>>) {
    let (tx, rx) = mpsc::channel(cfg.queue_size.max(1));
    let handle = WebhookHandle {
        tx,
        format: cfg.format,
        counters: Counters::new(registry),
    };
    (handle, rx)
}

/// Starts the exporter for `cfg` (whose `url` must be set); the task ends when `cancel` fires,
/// after one last attempt for each notification still queued.
pub fn start(
    cfg: &WebhookExporterConfig,
    registry: &Arc<Registry>,
    cancel: CancellationToken,
) -> Result<(WebhookHandle, tokio::task::JoinHandle<()>), WebhookError> {
    let raw = cfg
        .url
        .as_deref()
        .ok_or_else(|| WebhookError::Url("not set".into()))?;
    let url = reqwest::Url::parse(raw).map_err(|e| WebhookError::Url(e.to_string()))?;
    let mut builder = reqwest::Client::builder().no_proxy().timeout(cfg.timeout);
    match (&cfg.tls, url.scheme()) {
        (Some(tls), "https") => {
            let c = security::client_config(tls, Alpn::Http1)
                .map_err(|e| WebhookError::Tls(e.to_string()))?;
            builder = builder.use_preconfigured_tls(c);
        }
        (None, "http") => {}
        _ => {
            return Err(WebhookError::Tls(
                "an https:// url needs tls, and tls needs https://".into(),
            ))
        }
    }
    let client = builder
        .build()
        .map_err(|e| WebhookError::Client(e.to_string()))?;
    let (handle, rx) = channel(cfg, registry);
    let delivery = Delivery {
        client,
        url,
        initial: cfg.initial_interval,
        max_interval: cfg.max_interval.max(cfg.initial_interval),
        max_elapsed: cfg.max_elapsed_time,
        counters: handle.counters.clone(),
    };
    let task = tokio::spawn(run(delivery, rx, cancel));
    Ok((handle, task))
}

async fn run(d: Delivery, mut rx: mpsc::Receiver<Vec<u8>>, cancel: CancellationToken) {
    loop {
        let body = tokio::select! {
            b = rx.recv() => b,
            _ = cancel.cancelled() => break,
        };
        let Some(body) = body else { return };
        d.deliver(body, &cancel).await;
    }
    // Shutdown: one attempt for each notification still queued.
    rx.close();
    while let Ok(body) = rx.try_recv() {
        if !matches!(d.attempt(&body).await, Attempt::Delivered) {
            d.counters.failed.inc();
        }
    }
}

enum Attempt {
    Delivered,
    Retry,
    Refused(reqwest::StatusCode),
}

impl Delivery {
    async fn attempt(&self, body: &[u8]) -> Attempt {
        let res = self
            .client
            .post(self.url.clone())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body.to_vec())
            .send()
            .await;
        match res {
            Ok(r) if r.status().is_success() => Attempt::Delivered,
            Ok(r) if retryable(r.status()) => Attempt::Retry,
            Ok(r) => Attempt::Refused(r.status()),
            Err(_) => Attempt::Retry,
        }
    }

    /// Sends one body, retrying as the module comment says.
    async fn deliver(&self, body: Vec<u8>, cancel: &CancellationToken) {
        let started = Instant::now();
        let mut intervals = crate::retry::exponential(self.initial, self.max_interval);
        loop {
            match self.attempt(&body).await {
                Attempt::Delivered => {
                    self.counters.sent.inc();
                    return;
                }
                Attempt::Refused(status) => {
                    tracing::warn!("webhook refused a problem notification: {status}");
                    self.counters.failed.inc();
                    return;
                }
                Attempt::Retry => {}
            }
            let wait = intervals.next().unwrap_or(self.max_interval);
            if started.elapsed() + wait > self.max_elapsed {
                tracing::warn!("webhook: notification not delivered within max_elapsed_time");
                self.counters.failed.inc();
                return;
            }
            self.counters.retries.inc();
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = cancel.cancelled() => {
                    self.counters.failed.inc();
                    return;
                }
            }
        }
    }
}

fn retryable(s: reqwest::StatusCode) -> bool {
    s.is_server_error() || s.as_u16() == 408 || s.as_u16() == 429
}
