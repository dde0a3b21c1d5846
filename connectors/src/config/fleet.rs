//! Config of a fleet of redwatch instances with Kafka as the backbone (docs/fleet.md): which
//! role this instance plays and the two topics between the roles.
//!
//! Owns the struct, its default and its pure validation; the roles are assembled by the binary
//! (`src/features/fleet.rs`) and the topics are read and written by
//! `redwatch_connectors::kafka::fleet`.

use serde::{Deserialize, Serialize};

/// What this instance does in a fleet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum FleetRole {
    /// One process does everything (no fleet): today's single instance.
    #[default]
    All,
    /// Consumes the telemetry topics (`receivers.kafka`) and writes each source partition's
    /// share of every final window to `fleet.shuffle_topic`; no detection, no `red` rows.
    Ingest,
    /// Consumes `fleet.shuffle_topic` in its own consumer group (`<receivers.kafka.group_id>.merge`),
    /// merges the shares of the series it owns into final windows, runs detection on them and
    /// writes them to `fleet.results_topic`; its `red` table is every merge instance's results.
    Merge,
}

impl FleetRole {
    pub fn as_str(self) -> &'static str {
        match self {
            FleetRole::All => "all",
            FleetRole::Ingest => "ingest",
            FleetRole::Merge => "merge",
        }
    }
}

/// A fleet: ingest instances → a shuffle topic keyed by series → merge instances that own whole
/// series. Brokers and client settings come from `receivers.kafka` (consumer) and
/// `exporters.kafka` (producer).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FleetConfig {
    /// `all` (one process, the default), `ingest` or `merge`.
    pub role: FleetRole,
    /// Ingest → merge: every source partition's share of every final window, keyed by window
    /// spec, window start, share and series, partitioned by series. Compact it.
    pub shuffle_topic: String,
    /// Merge → everyone: the final windows of every series, keyed by window spec, window start
    /// and series (the latest record per key is the window). Compact it.
    pub results_topic: String,
}

impl Default for FleetConfig {
    fn default() -> Self {
        Self {
            role: FleetRole::All,
            shuffle_topic: "redwatch_partials".to_string(),
            results_topic: "redwatch_windows".to_string(),
        }
    }
}

impl FleetConfig {
    /// Problems with their paths (`fleet.*`); `kafka_in` / `kafka_out` say whether
    /// `receivers.kafka` / `exporters.kafka` are set.
    pub fn problems(&self, kafka_in: bool, kafka_out: bool) -> Vec<(String, String)> {
        let mut out = Vec::new();
        let topic_ok = |t: &str| {
            !t.is_empty()
                && t.len() <= 249
                && t.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        };
        for (key, t) in [
            ("fleet.shuffle_topic", &self.shuffle_topic),
            ("fleet.results_topic", &self.results_topic),
        ] {
            if !topic_ok(t) {
                out.push((
                    key.to_string(),
                    format!("{t:?} is not a Kafka topic name (1-249 of a-z A-Z 0-9 . _ -)"),
                ));
            }
        }
        if self.role != FleetRole::All && self.shuffle_topic == self.results_topic {
            out.push((
                "fleet.results_topic".to_string(),
                "must differ from fleet.shuffle_topic".to_string(),
            ));
        }
        let role = self.role.as_str();
        if self.role != FleetRole::All {
            if !kafka_in {
                out.push((
                    "receivers.kafka".to_string(),
                    format!("fleet.role {role} needs receivers.kafka (the brokers and group to consume with)"),
                ));
            }
            if !kafka_out {
                out.push((
                    "exporters.kafka".to_string(),
                    format!("fleet.role {role} needs exporters.kafka (the brokers to write the fleet's topics to)"),
                ));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_one_process_and_needs_nothing() {
        let f = FleetConfig::default();
        assert_eq!(f.role, FleetRole::All);
        assert!(f.problems(false, false).is_empty());
    }

    #[test]
    fn roles_need_kafka_both_ways_and_two_distinct_topics() {
        let f = FleetConfig {
            role: FleetRole::Merge,
            shuffle_topic: "t".into(),
            results_topic: "t".into(),
        };
        let p = f.problems(false, false);
        let paths: Vec<&str> = p.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            paths,
            ["fleet.results_topic", "receivers.kafka", "exporters.kafka"]
        );
        let f = FleetConfig {
            role: FleetRole::Ingest,
            shuffle_topic: "bad topic".into(),
            ..Default::default()
        };
        let p = f.problems(true, true);
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].0, "fleet.shuffle_topic");
    }
}
