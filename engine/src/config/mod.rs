//! Configuration plumbing and the engine's own sections.
//!
//! Owns loading ([`load`]: YAML file + env overrides + `--set`, typed deserialization that names
//! the failing key), the [`Validate`] trait and [`ConfigProblem`], the value types several
//! components share (dimensions, TLS and auth blocks) and the sections of what the engine runs
//! (windows, limits). Each component's section lives beside its code; the whole
//! file's shape (`Config`, listing every section) lives in the application crate, the one crate
//! that knows every component. It must not build anything: defaults are `Default` impls,
//! validation is pure.

mod load;
mod security;
mod sessions;
mod types;

pub use security::{parse_token_file, AuthConfig, TlsClientConfig, TlsServerConfig};

pub use sessions::*;

pub use load::{apply_override, load, parse_yaml_with_overrides, LoadError};
pub use types::*;

use std::fmt;

/// One problem found by validating a config, with the dotted path of the offending key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigProblem {
    pub path: String,
    pub message: String,
}

impl fmt::Display for ConfigProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// A config section that checks the rules serde cannot express. Pure: returns every problem
/// found as `(dotted key path, message)`, the paths starting with `path` (where the section sits
/// in the file). Reading files a section names (TLS certificates, token files) is allowed;
/// building anything is not.
pub trait Validate {
    fn validate(&self, path: &str) -> Vec<(String, String)>;
}

/// Turns `(path, message)` pairs into [`ConfigProblem`]s, in order.
pub fn problems(found: impl IntoIterator<Item = (String, String)>) -> Vec<ConfigProblem> {
    found
        .into_iter()
        .map(|(path, message)| ConfigProblem { path, message })
        .collect()
}

impl Validate for WindowsConfig {
    fn validate(&self, path: &str) -> Vec<(String, String)> {
        let mut out = Vec::new();
        let mut bad = |key: String, message: String| out.push((key, message));
        let w = self;
        if w.size.is_zero() {
            bad(format!("{path}.size"), "must be greater than 0".into());
        } else {
            if w.size.as_millis() == 0 || !w.size.as_nanos().is_multiple_of(1_000_000) {
                bad(
                    format!("{path}.size"),
                    "must be a whole number of milliseconds".into(),
                );
            }
            for (i, x) in w.extra.iter().enumerate() {
                let path = format!("{path}.extra[{i}]");
                match x.hopping() {
                    Some((size, slide)) => {
                        let fmt =
                            |d: std::time::Duration| humantime::format_duration(d).to_string();
                        if slide.is_zero() || !slide.as_nanos().is_multiple_of(w.size.as_nanos()) {
                            bad(
                                format!("{path}.slide"),
                                format!(
                                    "{} is not a multiple of windows.size ({})",
                                    fmt(slide),
                                    fmt(w.size)
                                ),
                            );
                        } else if !size.as_nanos().is_multiple_of(slide.as_nanos()) || size <= slide
                        {
                            bad(
                                format!("{path}.size"),
                                format!(
                                    "{} is not a multiple of the slide ({}) greater than it",
                                    fmt(size),
                                    fmt(slide)
                                ),
                            );
                        }
                    }
                    None if x.is_session() => {
                        for (p, m) in x.validate_session(&path) {
                            bad(p, m);
                        }
                    }
                    None => bad(path, "a hopping window needs both size and slide".into()),
                }
            }
            let sessions = w.extra.iter().filter(|x| x.is_session()).count();
            if sessions > MAX_SESSION_SPECS {
                bad(
                    format!("{path}.extra"),
                    format!(
                        "at most {MAX_SESSION_SPECS} session specs are supported, not {sessions}"
                    ),
                );
            }
            for (i, r) in w.rollups.iter().enumerate() {
                if !r.as_nanos().is_multiple_of(w.size.as_nanos()) || *r <= w.size {
                    bad(
                        format!("{path}.rollups[{i}]"),
                        format!(
                            "{} is not a multiple of windows.size ({}) greater than it",
                            humantime::format_duration(*r),
                            humantime::format_duration(w.size)
                        ),
                    );
                }
            }
        }
        if w.idle_timeout.is_zero() {
            bad(
                format!("{path}.idle_timeout"),
                "must be greater than 0".into(),
            );
        }
        if w.max_future_skew.is_zero() {
            bad(
                format!("{path}.max_future_skew"),
                "must be greater than 0".into(),
            );
        }
        out
    }
}

impl Validate for LimitsConfig {
    fn validate(&self, path: &str) -> Vec<(String, String)> {
        let mut out = Vec::new();
        if let Some(m) = &self.memory {
            if m.spike >= m.limit {
                out.push((
                    format!("{path}.memory.spike"),
                    format!("must be below limits.memory.limit ({})", m.limit),
                ));
            }
        }
        if self.queue_capacity == 0 {
            out.push((
                format!("{path}.queue_capacity"),
                "must be at least 1".into(),
            ));
        }
        out
    }
}

/// Labels redwatch itself sets on RED series; a dimension may not reuse them.
pub const RESERVED_LABELS: &[&str] = &[
    "service_name",
    "span_name",
    "span_kind",
    "status_code",
    "le",
    "otel_metric_overflow",
    "window_size",
];

/// Upper bound on histogram bucket bounds, so bucket indices fit a byte.
pub const MAX_BUCKETS: usize = 64;
/// Upper bound on configured dimensions.
pub const MAX_DIMENSIONS: usize = 16;
