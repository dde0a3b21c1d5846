//! Config of session windows (issue 7, item 2): `windows.extra: [{gap: 30s, key: trace_id}]`.
//!
//! Owns the session key syntax, the defaults of the optional session bounds and the pure
//! validation of session specs; it must not build operators. The spec itself is an
//! [`ExtraWindow`] (the same list holds hopping specs), resolved here into a [`SessionSpec`].

use super::types::{Dimension, ExtraWindow};
use serde::de::{self, MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::time::Duration;

/// Session specs allowed at most (each keeps its own bounded state).
pub const MAX_SESSION_SPECS: usize = 4;
/// Default of `max_duration`: a session never grows past it (a longer activity is split).
pub const DEFAULT_SESSION_MAX_DURATION: Duration = Duration::from_secs(3600);
/// Default of `max_sessions`: open sessions per spec at most.
pub const DEFAULT_MAX_SESSIONS: usize = 100_000;

/// What groups spans into sessions.
///
/// Written as `trace_id`, `service.name` (the resource's service name), or an attribute in the
/// syntax of `red.dimensions`: `{name: enduser.id, source: span, default: anonymous}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionKey {
    /// A bare name; valid are `trace_id` and `service.name` (`validate` says so for others).
    Name(String),
    /// A span, scope or resource attribute, read like a RED dimension.
    Attribute(Dimension),
}

impl SessionKey {
    /// The name shown in the `session_key` column: `trace_id`, `service.name` or the attribute key.
    pub fn name(&self) -> &str {
        match self {
            SessionKey::Name(n) => n,
            SessionKey::Attribute(d) => &d.name,
        }
    }
}

impl Serialize for SessionKey {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            SessionKey::Name(n) => s.serialize_str(n),
            SessionKey::Attribute(d) => d.serialize(s),
        }
    }
}

impl<'de> Deserialize<'de> for SessionKey {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = SessionKey;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("`trace_id`, `service.name` or an attribute {name, source, default}")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<SessionKey, E> {
                Ok(SessionKey::Name(v.to_string()))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<SessionKey, A::Error> {
                Dimension::deserialize(de::value::MapAccessDeserializer::new(map))
                    .map(SessionKey::Attribute)
            }
        }
        d.deserialize_any(KeyVisitor)
    }
}

/// Where a session spec reads its key from, resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionKeySource {
    TraceId,
    ServiceName,
    /// Index into the decoder's dimensions (`redwatch_operators::layout::decode_dimensions`), and
    /// the value used when it is absent.
    Attribute {
        dim_index: usize,
        default: Option<String>,
    },
}

/// A validated session spec with its defaults filled in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionSpec {
    pub gap: Duration,
    /// `trace_id`, `service.name` or the attribute key.
    pub key_name: String,
    pub key: SessionKeySource,
    pub max_duration: Duration,
    pub max_sessions: usize,
}

impl ExtraWindow {
    /// Whether this is a session spec (it has a `gap`, a `key` or a session bound).
    pub fn is_session(&self) -> bool {
        self.gap.is_some()
            || self.key.is_some()
            || self.max_duration.is_some()
            || self.max_sessions.is_some()
    }

    /// Every problem of a session spec, as (dotted path, message). Pure.
    pub(super) fn validate_session(&self, path: &str) -> Vec<(String, String)> {
        let mut out = Vec::new();
        let mut bad = |key: &str, msg: String| {
            let p = if key.is_empty() {
                path.to_string()
            } else {
                format!("{path}.{key}")
            };
            out.push((p, msg))
        };
        if self.size.is_some() || self.slide.is_some() {
            bad(
                "",
                "a session spec ({gap, key}) takes no size or slide; hopping windows are a separate {size, slide} entry".into(),
            );
        }
        match self.gap {
            None => bad("gap", "a session window needs a gap (e.g. 30s)".into()),
            Some(g) if g.is_zero() => bad("gap", "must be greater than 0".into()),
            Some(g) => {
                let max = self.max_duration.unwrap_or(DEFAULT_SESSION_MAX_DURATION);
                if max < g {
                    bad(
                        "max_duration",
                        format!(
                            "{} is shorter than the gap ({})",
                            humantime::format_duration(max),
                            humantime::format_duration(g)
                        ),
                    );
                }
            }
        }
        match &self.key {
            None => bad(
                "key",
                "a session window needs a key: trace_id, service.name or {name: <attribute>}"
                    .into(),
            ),
            Some(SessionKey::Name(n)) if n == "trace_id" || n == "service.name" => {}
            Some(SessionKey::Name(n)) => bad(
                "key",
                format!(
                    "unknown key `{n}`: use trace_id, service.name or an attribute as {{name: {n}, source: any|span|resource|scope}}"
                ),
            ),
            Some(SessionKey::Attribute(d)) if d.name.is_empty() => {
                bad("key.name", "must not be empty".into())
            }
            Some(SessionKey::Attribute(_)) => {}
        }
        if self.max_sessions == Some(0) {
            bad("max_sessions", "must be at least 1".into());
        }
        if self.max_duration.is_some_and(|d| d.is_zero()) {
            bad("max_duration", "must be greater than 0".into());
        }
        out
    }
}

impl super::WindowsConfig {
    /// The attribute keys of the session specs, in spec order (only specs keyed by an
    /// attribute): the decoder extracts them after RED's and the service graph's dimensions,
    /// so spans pay for them only when a session spec asks.
    pub fn session_key_dimensions(&self) -> Vec<Dimension> {
        self.extra
            .iter()
            .filter(|x| x.is_session())
            .take(MAX_SESSION_SPECS)
            .filter_map(|x| match &x.key {
                Some(SessionKey::Attribute(d)) => Some(d.clone()),
                _ => None,
            })
            .collect()
    }

    /// The session specs, resolved (call on a validated config; invalid specs are skipped).
    /// `first_dim` is the decoder's index of the first session key: the decoder extracts them
    /// after RED's and the service graph's dimensions (`redwatch_operators::layout`).
    pub fn session_specs(&self, first_dim: usize) -> Vec<SessionSpec> {
        let mut next_dim = first_dim;
        let mut out = Vec::new();
        for x in self
            .extra
            .iter()
            .filter(|x| x.is_session())
            .take(MAX_SESSION_SPECS)
        {
            let (Some(gap), Some(key)) = (x.gap, &x.key) else {
                continue;
            };
            let source = match key {
                SessionKey::Name(n) if n == "trace_id" => SessionKeySource::TraceId,
                SessionKey::Name(n) if n == "service.name" => SessionKeySource::ServiceName,
                SessionKey::Name(_) => continue,
                SessionKey::Attribute(d) => {
                    let s = SessionKeySource::Attribute {
                        dim_index: next_dim,
                        default: d.default.clone(),
                    };
                    next_dim += 1;
                    s
                }
            };
            if gap.is_zero() {
                continue;
            }
            out.push(SessionSpec {
                gap,
                key_name: key.name().to_string(),
                key: source,
                max_duration: x
                    .max_duration
                    .unwrap_or(DEFAULT_SESSION_MAX_DURATION)
                    .max(gap),
                max_sessions: x.max_sessions.unwrap_or(DEFAULT_MAX_SESSIONS).max(1),
            });
        }
        out
    }
}
