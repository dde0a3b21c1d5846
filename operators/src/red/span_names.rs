//! Span-name normalisation before series lookup: configured regex rewrites, then collapsing ids
//! in path-like names (`GET /users/123` → `GET /users/{id}`), so one route is one series.
//!
//! Runs once per span on the operator task, so the common case allocates nothing: the id check
//! is a byte scan that only writes when it finds an id; regex rules are cached per raw name in a
//! bounded map. It must not know about series or windows.

use super::SpanNamesConfig;
use hashbrown::HashMap;
use regex::Regex;
use std::sync::Arc;

/// What an id segment becomes.
pub const ID_PLACEHOLDER: &str = "{id}";

/// Raw names whose normalised form is remembered when regex rules are configured.
const CACHE_ENTRIES: usize = 4096;

/// Normalises span names as configured in `red.span_names`.
#[derive(Debug)]
pub struct SpanNameNormalizer {
    rules: Vec<(Regex, String)>,
    collapse_ids: bool,
    /// Raw name → normalised name (None = unchanged); only used with rules.
    cache: HashMap<Box<str>, Option<Arc<str>>>,
    scratch: String,
}

impl SpanNameNormalizer {
    /// Builds the normaliser. Rules whose pattern does not compile are skipped (the config was
    /// validated before, so this only happens for a config that skipped validation).
    pub fn new(cfg: &SpanNamesConfig) -> Self {
        let rules = cfg
            .rules
            .iter()
            .filter_map(|r| match Regex::new(&r.pattern) {
                Ok(re) => Some((re, r.replacement.clone())),
                Err(e) => {
                    tracing::warn!("span name rule `{}` skipped: {e}", r.pattern);
                    None
                }
            })
            .collect();
        SpanNameNormalizer {
            rules,
            collapse_ids: cfg.collapse_ids,
            cache: HashMap::new(),
            scratch: String::new(),
        }
    }

    /// Whether the normaliser can change any name.
    pub fn is_active(&self) -> bool {
        self.collapse_ids || !self.rules.is_empty()
    }

    /// The normalised form of `name`, and whether it differs from `name`.
    pub fn normalize<'a>(&'a mut self, name: &'a str) -> (&'a str, bool) {
        if self.rules.is_empty() {
            if self.collapse_ids && collapse_ids(name, &mut self.scratch) {
                return (self.scratch.as_str(), true);
            }
            return (name, false);
        }
        if !self.cache.contains_key(name) {
            if self.cache.len() >= CACHE_ENTRIES {
                self.cache.clear();
            }
            let mut cur: Option<String> = None;
            for (re, rep) in &self.rules {
                let src = cur.as_deref().unwrap_or(name);
                if let std::borrow::Cow::Owned(s) = re.replace_all(src, rep.as_str()) {
                    cur = Some(s);
                }
            }
            if self.collapse_ids {
                let src = cur.as_deref().unwrap_or(name);
                if collapse_ids(src, &mut self.scratch) {
                    cur = Some(self.scratch.clone());
                }
            }
            let value = cur.filter(|c| c != name).map(Arc::<str>::from);
            self.cache.insert(Box::from(name), value);
        }
        match self.cache.get(name) {
            Some(Some(n)) => (&**n, true),
            _ => (name, false),
        }
    }
}

/// Writes `name` with every id path segment replaced by [`ID_PLACEHOLDER`] into `out` and
/// returns true; returns false (leaving `out` alone) when there is none.
///
/// A segment starts after a `/` and ends before the next `/`, `?`, `#`, `;` or space. It is an
/// id when it is a decimal number, a UUID (8-4-4-4-12 hex digits), or at least 8 hex digits
/// with at least one decimal digit among them (object ids, hashes).
pub fn collapse_ids(name: &str, out: &mut String) -> bool {
    let b = name.as_bytes();
    let mut changed = false;
    let mut copied = 0;
    let mut i = 0;
    // `str::find` skips to the next `/` a word at a time: most names have none.
    while let Some(slash) = name[i..].find('/') {
        let start = i + slash + 1;
        let mut end = start;
        while end < b.len() && !matches!(b[end], b'/' | b'?' | b'#' | b';' | b' ') {
            end += 1;
        }
        if is_id(&b[start..end]) {
            if !changed {
                out.clear();
                changed = true;
            }
            // Segment bounds are ASCII bytes, so these are char boundaries.
            out.push_str(&name[copied..start]);
            out.push_str(ID_PLACEHOLDER);
            copied = end;
        }
        i = end;
    }
    if changed {
        out.push_str(&name[copied..]);
    }
    changed
}

fn is_id(seg: &[u8]) -> bool {
    if seg.is_empty() {
        return false;
    }
    if seg.iter().all(u8::is_ascii_digit) {
        return true;
    }
    if seg.len() == 36 {
        let hyphens = [8, 13, 18, 23];
        return seg.iter().enumerate().all(|(i, c)| {
            if hyphens.contains(&i) {
                *c == b'-'
            } else {
                c.is_ascii_hexdigit()
            }
        });
    }
    seg.len() >= 8 && seg.iter().all(u8::is_ascii_hexdigit) && seg.iter().any(u8::is_ascii_digit)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::red::SpanNameRule;

    fn collapsed(name: &str) -> String {
        let mut out = String::new();
        if collapse_ids(name, &mut out) {
            out
        } else {
            name.to_string()
        }
    }

    #[test]
    fn ids_in_paths_collapse_and_other_names_stay() {
        let cases = [
            ("GET /users/123", "GET /users/{id}"),
            ("GET /users/123/orders/9", "GET /users/{id}/orders/{id}"),
            (
                "/items/550e8400-e29b-41d4-a716-446655440000/tags",
                "/items/{id}/tags",
            ),
            ("GET /blobs/5f2b3c9a1d4e6f70a1b2c3d4", "GET /blobs/{id}"),
            ("GET /users/123?page=2", "GET /users/{id}?page=2"),
            ("POST /v1/traces", "POST /v1/traces"),
            ("GET /users/{id}", "GET /users/{id}"),
            ("GET /deadbeef", "GET /deadbeef"),
            ("GET /abc12", "GET /abc12"),
            ("SELECT 123", "SELECT 123"),
            ("GET /", "GET /"),
            ("GET //42/", "GET //{id}/"),
            ("GET /ünïcode/7", "GET /ünïcode/{id}"),
            ("", ""),
        ];
        for (raw, want) in cases {
            assert_eq!(collapsed(raw), want, "{raw}");
        }
    }

    #[test]
    fn rules_apply_in_order_before_ids_and_are_cached() {
        let mut n = SpanNameNormalizer::new(&SpanNamesConfig {
            collapse_ids: true,
            rules: vec![
                SpanNameRule {
                    pattern: "^(GET|POST) /api/v[0-9]+/".into(),
                    replacement: "$1 /api/".into(),
                },
                SpanNameRule {
                    pattern: "user-[a-z]+".into(),
                    replacement: "user-{name}".into(),
                },
            ],
        });
        assert_eq!(
            n.normalize("GET /api/v2/users/17"),
            ("GET /api/users/{id}", true)
        );
        assert_eq!(
            n.normalize("POST /api/v1/user-bob"),
            ("POST /api/user-{name}", true)
        );
        assert_eq!(n.normalize("GET /health"), ("GET /health", false));
        // Cached answers are the same answers.
        assert_eq!(
            n.normalize("GET /api/v2/users/17"),
            ("GET /api/users/{id}", true)
        );
        assert_eq!(n.normalize("GET /health"), ("GET /health", false));
        for i in 0..(CACHE_ENTRIES + 10) {
            let raw = format!("GET /x/{i}");
            assert_eq!(n.normalize(&raw).0, "GET /x/{id}");
        }
        assert!(n.cache.len() <= CACHE_ENTRIES);
    }

    #[test]
    fn red_series_use_the_normalised_name_and_count_renames() {
        use crate::layout::SpanSections;
        use crate::red::{RedOperator, RedRow, RedSink};
        use redwatch_engine::config::{Dimension, DimensionSource};
        use redwatch_engine::fixtures::{span_batch, SpanFixture};
        use redwatch_engine::model::SourceId;
        use redwatch_engine::telemetry::Registry;
        use std::sync::Mutex;

        #[derive(Default)]
        struct Rows(Mutex<Vec<RedRow>>);
        impl RedSink for Rows {
            fn on_final(&self, rows: &[RedRow]) {
                self.0.lock().unwrap().extend_from_slice(rows);
            }
        }
        let mut cfg = SpanSections::default();
        cfg.windows.rollups = vec![];
        cfg.red.dimensions = vec![
            Dimension {
                name: "http.method".into(),
                default: Some("none".into()),
                source: DimensionSource::Span,
            },
            Dimension {
                name: "deployment.environment".into(),
                default: None,
                source: DimensionSource::Resource,
            },
        ];
        let sink = Arc::new(Rows::default());
        let reg = Registry::new();
        let mut op = RedOperator::new(&cfg.windows, &cfg.red, vec![sink.clone()], &reg);
        let t0 = 1_700_000_000_000_000_000u64;
        let spans = [
            SpanFixture::new("users", "GET /users/1", t0 + 1, 1.0)
                .dims(&[Some("GET"), Some("prod")]),
            SpanFixture::new("users", "GET /users/22", t0 + 2, 1.0).dims(&[None, Some("prod")]),
            SpanFixture::new("users", "GET /users/{id}", t0 + 3, 1.0).dims(&[None, Some("prod")]),
        ];
        op.process_spans(&span_batch(SourceId(0), 2, &spans), t0);
        op.advance(t0 + 20_000_000_000);
        let mut got: Vec<(String, Vec<String>, f64)> = sink
            .0
            .lock()
            .unwrap()
            .iter()
            .map(|r| {
                (
                    r.series.span_name.to_string(),
                    r.series.dims.iter().map(|d| d.to_string()).collect(),
                    r.total.total_calls(),
                )
            })
            .collect();
        got.sort_by(|a, b| a.partial_cmp(b).unwrap());
        assert_eq!(
            got,
            vec![
                (
                    "GET /users/{id}".into(),
                    vec!["GET".into(), "prod".into()],
                    1.0
                ),
                (
                    "GET /users/{id}".into(),
                    vec!["none".into(), "prod".into()],
                    2.0
                ),
            ]
        );
        let mut renamed = 0.0;
        reg.visit(|name, _, _, samples| {
            if name == "redwatch_red_span_names_normalized_total" {
                renamed = samples.iter().map(|s| s.value).sum();
            }
        });
        assert_eq!(renamed, 2.0);
    }

    #[test]
    fn collapsing_can_be_switched_off() {
        let mut n = SpanNameNormalizer::new(&SpanNamesConfig {
            collapse_ids: false,
            rules: vec![],
        });
        assert!(!n.is_active());
        assert_eq!(n.normalize("GET /users/123"), ("GET /users/123", false));
    }
}
