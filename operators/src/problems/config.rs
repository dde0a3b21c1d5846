//! Config of problem correlation (`problems`, issue 17). Owns the struct and its default; the
//! correlation lives beside it in this module.

use serde::{Deserialize, Serialize};

/// Grouping anomalies into problems (docs/anomaly-detection.md, "Problems").
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProblemsConfig {
    /// Correlate anomalies connected through the service graph (or sharing a service) into
    /// problems: the `problems` and `problem_members` tables, `problem_detected` traces with the
    /// member anomaly spans as children, `redwatch_problems_open`. `false`: one incident = one
    /// trace.
    pub enabled: bool,
}

impl Default for ProblemsConfig {
    fn default() -> Self {
        Self { enabled: true }
    }
}
