//! Kafka topic creation for tests and benches: depends on nothing but rdkafka, so
//! `benches/kafka_ingest.rs` includes it by path as well.

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::ClientConfig;
use redwatch_connectors::kafka::rdkafka;
use std::time::Duration;

/// Creates `name` with `partitions` partitions on `brokers` (tansu loses data on
/// auto-created topics).
pub async fn create_topic_on(brokers: &str, name: &str, partitions: i32) {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .expect("admin client");
    let topic = NewTopic::new(name, partitions, TopicReplication::Fixed(1));
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(20)));
    for r in admin
        .create_topics([&topic], &opts)
        .await
        .unwrap_or_else(|e| panic!("creating topic {name}: {e}"))
    {
        r.unwrap_or_else(|(t, e)| panic!("creating topic {t}: {e}"));
    }
}
