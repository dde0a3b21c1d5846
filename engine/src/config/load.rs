//! Reading a config: YAML file, then `REDWATCH__A__B=value` environment overrides, then
//! `--set a.b=value` overrides, then typed deserialization that reports the failing key's path.

use serde::de::DeserializeOwned;
use serde_yaml_ng::{Mapping, Value};
use std::path::{Path, PathBuf};

/// Why a config could not be read. Never retryable: the input must change.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("cannot read config file {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config is not valid YAML: {0}")]
    Yaml(String),
    #[error("{path}: {message}")]
    Invalid { path: String, message: String },
    #[error("override `{0}`: expected KEY.PATH=VALUE")]
    BadOverride(String),
}

/// Environment variable prefix; segments below it are joined by `__`.
pub const ENV_PREFIX: &str = "REDWATCH__";

/// Loads the config file (if any), applies env and `--set` overrides, and deserializes it as
/// `C` (the whole file's shape, which the application defines).
pub fn load<C: DeserializeOwned>(
    file: Option<&Path>,
    env: impl IntoIterator<Item = (String, String)>,
    sets: &[String],
) -> Result<C, LoadError> {
    let text = match file {
        Some(p) => std::fs::read_to_string(p).map_err(|source| LoadError::Io {
            path: p.to_path_buf(),
            source,
        })?,
        None => String::new(),
    };
    let mut overrides = Vec::new();
    let mut env: Vec<(String, String)> = env
        .into_iter()
        .filter(|(k, _)| k.starts_with(ENV_PREFIX))
        .collect();
    env.sort();
    for (k, v) in env {
        let path: Vec<String> = k[ENV_PREFIX.len()..]
            .split("__")
            .map(|s| s.to_ascii_lowercase())
            .collect();
        overrides.push((path, v));
    }
    for s in sets {
        let (k, v) = s
            .split_once('=')
            .ok_or_else(|| LoadError::BadOverride(s.clone()))?;
        if k.is_empty() {
            return Err(LoadError::BadOverride(s.clone()));
        }
        overrides.push((k.split('.').map(str::to_string).collect(), v.to_string()));
    }
    parse_yaml_with_overrides(&text, &overrides)
}

/// Parses YAML text, applies `(path, yaml value)` overrides in order, deserializes.
pub fn parse_yaml_with_overrides<C: DeserializeOwned>(
    text: &str,
    overrides: &[(Vec<String>, String)],
) -> Result<C, LoadError> {
    let mut root: Value = if text.trim().is_empty() {
        Value::Mapping(Mapping::new())
    } else {
        serde_yaml_ng::from_str(text).map_err(|e| LoadError::Yaml(e.to_string()))?
    };
    if root.is_null() {
        root = Value::Mapping(Mapping::new());
    }
    for (path, raw) in overrides {
        apply_override(&mut root, path, raw)?;
    }
    let de = root;
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        LoadError::Invalid {
            path: if path == "." { "(root)".into() } else { path },
            message: e.into_inner().to_string(),
        }
    })
}

/// Sets `path` inside `root` to `raw` parsed as YAML (so `30s` is a string, `[a, b]` a list).
pub fn apply_override(root: &mut Value, path: &[String], raw: &str) -> Result<(), LoadError> {
    let value: Value = serde_yaml_ng::from_str(raw).unwrap_or_else(|_| Value::String(raw.into()));
    let mut cur = root;
    for (i, seg) in path.iter().enumerate() {
        if !cur.is_mapping() {
            // A `null` (disabled) section becomes a mapping so its keys can be set.
            *cur = Value::Mapping(Mapping::new());
        }
        let map = cur.as_mapping_mut().ok_or_else(|| LoadError::Invalid {
            path: path[..=i].join("."),
            message: "not a mapping".into(),
        })?;
        let key = Value::String(seg.clone());
        if i + 1 == path.len() {
            map.insert(key, value);
            return Ok(());
        }
        cur = map.entry(key).or_insert(Value::Mapping(Mapping::new()));
    }
    Err(LoadError::Invalid {
        path: String::new(),
        message: "empty override path".into(),
    })
}
