//! Config of the connectors: the `receivers` section (OTLP listeners, the Kafka source) and the
//! `exporters` section (Prometheus, OTLP, Kafka sink, webhook). Owns these structs, their
//! defaults and their pure validation; it must not build anything. Not behind the `kafka`
//! feature: the keys are the same in every build.

mod exporters;
mod fleet;
mod kafka;
mod receivers;
mod webhook;

pub use exporters::*;
pub use fleet::{FleetConfig, FleetRole};
pub use kafka::{KafkaExporterConfig, RESERVED_SOURCE_PROPERTIES};
pub use receivers::*;
pub use webhook::{WebhookExporterConfig, WebhookFormat};

// The shared value types the moved files name as `super::…`.
use redwatch_engine::config::{AuthConfig, TlsClientConfig, TlsServerConfig, Validate};
