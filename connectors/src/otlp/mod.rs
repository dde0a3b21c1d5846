//! OTLP receivers (gRPC `:4317`, HTTP `:4318`) and the decoders they share.
//!
//! A receiver is one event-time source. It decodes a request, queues the accepted spans on the
//! pipeline (waiting a bounded time for room), counts everything, and answers the client:
//! success, partial success with the rejected count, or a clear error. It never aggregates.

mod conn_limit;
pub mod decode;
pub mod grpc;
pub mod http;

use decode::{DecodeError, DecodeSettings, MetricsDecodeOutcome, Rejections, TraceDecodeOutcome};
use redwatch_engine::memory::{MemoryExhausted, Reservation};
use redwatch_engine::model::SourceId;
use redwatch_engine::pipeline::{Backpressure, Batch, IngestHandle};
use redwatch_engine::telemetry::{Counter, Registry};
use std::sync::Arc;

/// Why a whole request was refused.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error("{0}")]
    Decode(#[from] DecodeError),
    #[error("{0}")]
    Backpressure(#[from] Backpressure),
}

/// What the client is told on success.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Ack {
    /// Items refused individually (OTLP partial success).
    pub rejected: u64,
    pub message: Option<String>,
}

/// Request-level rejection reasons (label `reason` of `redwatch_requests_rejected_total`).
pub const REQUEST_REJECT_REASONS: &[&str] = &[
    "malformed",
    "invalid_utf8",
    "invalid_json",
    "too_many_items",
    "too_large",
    "unsupported_media_type",
    "bad_encoding",
    "backpressure",
    "memory_limit",
    "timeout",
];

/// Rejections of requests that name no export endpoint (label `signal="none"`).
pub const UNROUTED_REASONS: &[&str] = &["not_found", "method_not_allowed", "unimplemented"];

/// Item-level rejection reasons.
pub const ITEM_REJECT_REASONS: &[&str] = &["invalid_timestamp", "future_timestamp", "late"];

struct SignalCounters {
    received: Arc<Counter>,
    accepted: Arc<Counter>,
    rejected: Vec<(&'static str, Arc<Counter>)>,
    requests: Arc<Counter>,
    requests_rejected: Vec<(&'static str, Arc<Counter>)>,
}

impl SignalCounters {
    fn new(reg: &Registry, receiver: &str, signal: &'static str) -> Self {
        let (received, accepted, rejected, help_r, help_a, help_x): (
            &'static str,
            &'static str,
            &'static str,
            &'static str,
            &'static str,
            &'static str,
        ) = if signal == "spans" {
            (
                "redwatch_spans_received_total",
                "redwatch_spans_accepted_total",
                "redwatch_spans_rejected_total",
                "Spans received, per receiver.",
                "Spans accepted into the pipeline, per receiver.",
                "Spans refused individually (partial success), per receiver and reason.",
            )
        } else {
            (
                "redwatch_metric_points_received_total",
                "redwatch_metric_points_accepted_total",
                "redwatch_metric_points_rejected_total",
                "Metric data points received, per receiver.",
                "Metric data points accepted, per receiver.",
                "Metric data points refused individually, per receiver and reason.",
            )
        };
        let l = [("receiver", receiver)];
        SignalCounters {
            received: reg.counter(received, help_r, &l),
            accepted: reg.counter(accepted, help_a, &l),
            rejected: ITEM_REJECT_REASONS
                .iter()
                .map(|r| {
                    (
                        *r,
                        reg.counter(rejected, help_x, &[("receiver", receiver), ("reason", r)]),
                    )
                })
                .collect(),
            requests: reg.counter(
                "redwatch_requests_total",
                "Export requests received, per receiver and signal.",
                &[("receiver", receiver), ("signal", signal)],
            ),
            requests_rejected: REQUEST_REJECT_REASONS
                .iter()
                .map(|r| {
                    (
                        *r,
                        reg.counter(
                            "redwatch_requests_rejected_total",
                            "Export requests refused whole, per receiver, signal and reason.",
                            &[("receiver", receiver), ("signal", signal), ("reason", r)],
                        ),
                    )
                })
                .collect(),
        }
    }

    fn reject_request(&self, reason: &str) {
        if let Some((_, c)) = self.requests_rejected.iter().find(|(r, _)| *r == reason) {
            c.inc();
        }
    }

    /// The items of a decoded request: in it, accepted, refused per reason.
    fn count_items(&self, received: u64, accepted: u64, rejected: &Rejections) {
        self.received.add(received);
        self.accepted.add(accepted);
        for (reason, n) in rejected.iter() {
            self.reject_items(reason, n);
        }
    }

    fn reject_items(&self, reason: &str, n: u64) {
        if n > 0 {
            if let Some((_, c)) = self.rejected.iter().find(|(r, _)| *r == reason) {
                c.add(n);
            }
        }
    }
}

/// Label of a decode error for `redwatch_requests_rejected_total{reason}`.
pub fn decode_error_reason(e: &DecodeError) -> &'static str {
    match e {
        DecodeError::Malformed(_) => "malformed",
        DecodeError::InvalidUtf8 { .. } => "invalid_utf8",
        DecodeError::Json(_) => "invalid_json",
        DecodeError::TooManyItems { .. } => "too_many_items",
    }
}

/// State shared by one receiver's protocol handlers.
pub struct ReceiverCore {
    name: &'static str,
    source: SourceId,
    handle: IngestHandle,
    settings: DecodeSettings,
    spans: SignalCounters,
    points: SignalCounters,
    late: Arc<Counter>,
    points_late: Arc<Counter>,
    missing_service: Arc<Counter>,
    truncated: Arc<Counter>,
    unrouted: Vec<(&'static str, Arc<Counter>)>,
}

/// Encoding of a request body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Protobuf,
    Json,
}

impl ReceiverCore {
    /// Registers the receiver as an event-time source.
    pub async fn new(
        name: &'static str,
        handle: IngestHandle,
        settings: DecodeSettings,
        registry: &Registry,
    ) -> Arc<Self> {
        let source = handle.add_source(name, false).await;
        Arc::new(ReceiverCore {
            name,
            source,
            spans: SignalCounters::new(registry, name, "spans"),
            points: SignalCounters::new(registry, name, "metric_points"),
            late: registry.counter(
                "redwatch_late_dropped_total",
                "Items dropped because their window was already purged.",
                &[("signal", "spans")],
            ),
            points_late: registry.counter(
                "redwatch_late_dropped_total",
                "Items dropped because their window was already purged.",
                &[("signal", "metric_points")],
            ),
            missing_service: registry.counter(
                "redwatch_spans_missing_service_name_total",
                "Spans whose resource has no service.name (counted as unknown_service).",
                &[],
            ),
            truncated: strings_truncated_counter(registry),
            unrouted: UNROUTED_REASONS
                .iter()
                .map(|r| {
                    (
                        *r,
                        registry.counter(
                            "redwatch_requests_rejected_total",
                            "Export requests refused whole, per receiver, signal and reason.",
                            &[("receiver", name), ("signal", "none"), ("reason", r)],
                        ),
                    )
                })
                .collect(),
            handle,
            settings,
        })
    }

    pub fn name(&self) -> &'static str {
        self.name
    }

    /// Counts a request refused before decoding (size, media type, compression).
    pub fn reject_request(&self, signal: Signal, reason: &'static str) {
        let c = match signal {
            Signal::Traces => &self.spans,
            Signal::Metrics => &self.points,
        };
        c.requests.inc();
        c.reject_request(reason);
    }

    /// Admits a request before its body is read: refused (and counted) while the memory
    /// limiter is above its soft limit. The reservation grows as the body arrives
    /// ([`ReceiverCore::account`]) and travels with the decoded batch.
    pub fn admit(&self, signal: Signal) -> Result<Reservation, Backpressure> {
        let memory = self.handle.memory();
        match memory.admit() {
            Ok(()) => Ok(memory.empty()),
            Err(e) => {
                self.reject_request(signal, "memory_limit");
                Err(Backpressure::Memory(e))
            }
        }
    }

    /// Accounts `n` more bytes of a request being read; past the hard limit the request is
    /// refused (and counted).
    pub fn account(
        &self,
        signal: Signal,
        reservation: &mut Reservation,
        n: usize,
    ) -> Result<(), Backpressure> {
        reservation.grow(n as u64).map_err(|e| {
            self.reject_request(signal, "memory_limit");
            Backpressure::Memory(e)
        })
    }

    /// The memory limiter this receiver accounts against.
    pub fn handle_memory(&self) -> &Arc<redwatch_engine::memory::MemoryLimiter> {
        self.handle.memory()
    }

    /// Counts a request for a path or method that is not an OTLP export.
    pub fn reject_unrouted(&self, reason: &'static str) {
        if let Some((_, c)) = self.unrouted.iter().find(|(r, _)| *r == reason) {
            c.inc();
        }
    }

    /// Decodes and queues one trace export request.
    /// `reservation` holds the body's bytes (see [`ReceiverCore::admit`]).
    pub async fn export_traces(
        &self,
        body: bytes::Bytes,
        enc: Encoding,
        reservation: Reservation,
    ) -> Result<Ack, IngestError> {
        let now = self.handle.now();
        let policy = self.handle.policy();
        self.spans.requests.inc();
        let _transient = self.json_transient(&self.spans, &body, enc)?;
        let decoded = match enc {
            Encoding::Protobuf => {
                decode::decode_traces_proto(body, self.source, &self.settings, policy, now)
            }
            Encoding::Json => {
                decode::decode_traces_json(&body, self.source, &self.settings, policy, now)
            }
        };
        let mut out: TraceDecodeOutcome = decoded_or_counted(&self.spans, decoded)?;
        if let Some(max) = self.settings.max_string_bytes {
            self.truncated.add(out.batch.truncate_strings(max));
        }
        let accepted = out.batch.len() as u64;
        if accepted > 0 {
            self.queue(&self.spans, Batch::Spans(out.batch), reservation)
                .await?;
        }
        self.spans
            .count_items(out.received, accepted, &out.rejected);
        self.late.add(out.rejected.late);
        self.missing_service.add(out.spans_missing_service_name);
        Ok(Ack {
            rejected: out.rejected.total(),
            message: out.message,
        })
    }

    /// Decodes and queues one metrics export request.
    /// `reservation` holds the body's bytes (see [`ReceiverCore::admit`]).
    pub async fn export_metrics(
        &self,
        body: bytes::Bytes,
        enc: Encoding,
        reservation: Reservation,
    ) -> Result<Ack, IngestError> {
        let now = self.handle.now();
        let policy = self.handle.policy();
        self.points.requests.inc();
        let _transient = self.json_transient(&self.points, &body, enc)?;
        let decoded = match enc {
            Encoding::Protobuf => decode::decode_metrics_proto(body, self.source, policy, now),
            Encoding::Json => decode::decode_metrics_json(&body, self.source, policy, now),
        };
        let mut out: MetricsDecodeOutcome = decoded_or_counted(&self.points, decoded)?;
        if let Some(max) = self.settings.max_string_bytes {
            self.truncated.add(out.batch.truncate_strings(max));
        }
        if !out.batch.is_empty() {
            let batch = Batch::Metrics(Box::new(out.batch));
            self.queue(&self.points, batch, reservation).await?;
        }
        self.points_late.add(out.rejected.late);
        self.points
            .count_items(out.received, out.accepted, &out.rejected);
        Ok(Ack {
            rejected: out.rejected.total(),
            message: out.message,
        })
    }
}

/// A decoded request, or its refusal counted under its reason.
fn decoded_or_counted<T>(
    counters: &SignalCounters,
    decoded: Result<T, DecodeError>,
) -> Result<T, IngestError> {
    decoded.map_err(|e| {
        counters.reject_request(decode_error_reason(&e));
        e.into()
    })
}

impl ReceiverCore {
    /// Queues a decoded batch on the pipeline (`reservation` holds its bytes); a refusal is
    /// counted under its reason.
    async fn queue(
        &self,
        counters: &SignalCounters,
        batch: Batch,
        reservation: Reservation,
    ) -> Result<(), IngestError> {
        self.handle
            .send_reserved(batch, reservation)
            .await
            .map_err(|bp| {
                counters.reject_request(backpressure_reason(&bp));
                bp.into()
            })
    }

    /// OTLP/JSON: checks the body's item budget and reserves what parsing it allocates (released
    /// when the returned reservation drops, after decoding). Protobuf needs nothing: the scanner
    /// decodes into records that point into the body.
    fn json_transient(
        &self,
        counters: &SignalCounters,
        body: &[u8],
        enc: Encoding,
    ) -> Result<Option<Reservation>, IngestError> {
        if enc != Encoding::Json {
            return Ok(None);
        }
        let estimate = match decode::json_budget::estimate(body) {
            Ok(e) => e,
            Err(e) => {
                counters.reject_request(decode_error_reason(&e));
                return Err(e.into());
            }
        };
        let mut t = self.handle.memory().empty();
        match t.grow(decode::json_budget::transient_bytes(estimate, body.len())) {
            Ok(()) => Ok(Some(t)),
            Err(e) => {
                counters.reject_request("memory_limit");
                Err(IngestError::Backpressure(Backpressure::Memory(e)))
            }
        }
    }
}

/// `redwatch_strings_truncated_total`: strings cut to `receivers.otlp.limits.max_string_bytes`.
pub fn strings_truncated_counter(registry: &Registry) -> Arc<Counter> {
    registry.counter(
        "redwatch_strings_truncated_total",
        "Names and attribute values cut to receivers.otlp.limits.max_string_bytes at decode.",
        &[],
    )
}

/// Label of a backpressure refusal for `redwatch_requests_rejected_total{reason}`.
pub fn backpressure_reason(bp: &Backpressure) -> &'static str {
    match bp {
        Backpressure::Memory(_) => "memory_limit",
        _ => "backpressure",
    }
}

/// The message a client gets for a memory refusal.
pub fn memory_message(e: MemoryExhausted) -> String {
    format!("{e}; redwatch is holding too many bytes of in-flight requests and queued batches")
}

/// Which OTLP signal a request carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    Traces,
    Metrics,
}

impl Signal {
    pub fn label(&self) -> &'static str {
        match self {
            Signal::Traces => "spans",
            Signal::Metrics => "metric_points",
        }
    }
}
