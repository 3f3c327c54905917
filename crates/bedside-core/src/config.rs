//! Layered, validated TOML configuration.
//!
//! A configuration type `T` is resolved in three layers: its `Default` (the documented defaults),
//! then a TOML file, then environment variables `BEDSIDE__SECTION__KEY=value` (values parsed as
//! TOML when they can be, as strings otherwise). Unknown keys, wrong types and out-of-range values
//! fail with a [`ConfigError`] that names the key, e.g. `cohort.patinets: unknown field`.

use std::path::{Path, PathBuf};

use serde::Serialize;
use serde::de::DeserializeOwned;

/// Prefix of environment variables that override configuration keys.
pub const ENV_PREFIX: &str = "BEDSIDE__";

/// Why a configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read configuration file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not valid TOML.
    #[error("{path} is not valid TOML: {message}")]
    Syntax {
        /// The file.
        path: PathBuf,
        /// The parser's message, with line and column.
        message: String,
    },
    /// A key is unknown, has the wrong type or a value out of range.
    #[error("{origin}: key `{key}`: {message}")]
    Invalid {
        /// Where the configuration came from (file name, or "defaults and environment").
        origin: String,
        /// Dotted path of the key, e.g. `cohort.patients`.
        key: String,
        /// What is wrong with it.
        message: String,
    },
}

/// Range and consistency checks beyond what types express.
pub trait Validate {
    /// Returns `Err((key, message))` naming the first invalid key.
    fn validate(&self) -> Result<(), (String, String)>;
}

/// Loads `T` from its defaults, an optional TOML file and `BEDSIDE__…` environment variables.
pub fn load<T>(file: Option<&Path>) -> Result<T, ConfigError>
where
    T: DeserializeOwned + Serialize + Default + Validate,
{
    let env: Vec<(String, String)> = std::env::vars()
        .filter(|(k, _)| k.starts_with(ENV_PREFIX))
        .collect();
    load_with_env(file, &env)
}

/// Like [`load`], with the environment given explicitly (used by tests).
pub fn load_with_env<T>(file: Option<&Path>, env: &[(String, String)]) -> Result<T, ConfigError>
where
    T: DeserializeOwned + Serialize + Default + Validate,
{
    let origin = file
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| "defaults and environment".to_string());
    let mut merged = toml::Table::try_from(T::default()).map_err(|e| ConfigError::Invalid {
        origin: "built-in defaults".into(),
        key: String::new(),
        message: e.to_string(),
    })?;
    if let Some(path) = file {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let table: toml::Table =
            text.parse()
                .map_err(|e: toml::de::Error| ConfigError::Syntax {
                    path: path.to_path_buf(),
                    message: e.to_string(),
                })?;
        merge(&mut merged, table);
    }
    for (name, raw) in env {
        let Some(rest) = name.strip_prefix(ENV_PREFIX) else {
            continue;
        };
        let keys: Vec<String> = rest.split("__").map(|k| k.to_ascii_lowercase()).collect();
        set_path(&mut merged, &keys, parse_env_value(raw));
    }
    from_table(merged, &origin)
}

/// Parses `T` from TOML text (no layering); used for files embedded in other formats.
pub fn from_str<T>(text: &str, origin: &str) -> Result<T, ConfigError>
where
    T: DeserializeOwned + Validate,
{
    let table: toml::Table = text
        .parse()
        .map_err(|e: toml::de::Error| ConfigError::Syntax {
            path: PathBuf::from(origin),
            message: e.to_string(),
        })?;
    from_table(table, origin)
}

fn from_table<T>(table: toml::Table, origin: &str) -> Result<T, ConfigError>
where
    T: DeserializeOwned + Validate,
{
    let value = toml::Value::Table(table);
    let value: T = serde_path_to_error::deserialize(value).map_err(|e| {
        let key = e.path().to_string();
        ConfigError::Invalid {
            origin: origin.to_string(),
            key: if key == "." { String::new() } else { key },
            message: e.into_inner().to_string(),
        }
    })?;
    value
        .validate()
        .map_err(|(key, message)| ConfigError::Invalid {
            origin: origin.to_string(),
            key,
            message,
        })?;
    Ok(value)
}

fn parse_env_value(raw: &str) -> toml::Value {
    let probe = format!("v = {raw}");
    match probe.parse::<toml::Table>() {
        Ok(mut t) => t
            .remove("v")
            .unwrap_or_else(|| toml::Value::String(raw.into())),
        Err(_) => toml::Value::String(raw.to_string()),
    }
}

fn merge(base: &mut toml::Table, over: toml::Table) {
    for (k, v) in over {
        match (base.get_mut(&k), v) {
            (Some(toml::Value::Table(b)), toml::Value::Table(o)) => merge(b, o),
            (_, v) => {
                base.insert(k, v);
            }
        }
    }
}

fn set_path(table: &mut toml::Table, keys: &[String], value: toml::Value) {
    match keys {
        [] => {}
        [last] => {
            table.insert(last.clone(), value);
        }
        [first, rest @ ..] => {
            let entry = table
                .entry(first.clone())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            if !entry.is_table() {
                *entry = toml::Value::Table(toml::Table::new());
            }
            if let toml::Value::Table(t) = entry {
                set_path(t, rest, value);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Serialize, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields, default)]
    struct Inner {
        count: u32,
        name: String,
    }
    impl Default for Inner {
        fn default() -> Self {
            Inner {
                count: 3,
                name: "a".into(),
            }
        }
    }
    #[derive(Debug, Serialize, Deserialize, PartialEq, Default)]
    #[serde(deny_unknown_fields, default)]
    struct Outer {
        inner: Inner,
        flag: bool,
    }
    impl Validate for Outer {
        fn validate(&self) -> Result<(), (String, String)> {
            if self.inner.count == 0 {
                return Err(("inner.count".into(), "must be at least 1".into()));
            }
            Ok(())
        }
    }

    fn write(text: &str) -> tempfile::NamedTempFile {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        std::io::Write::write_all(&mut f, text.as_bytes()).unwrap();
        f
    }

    #[test]
    fn layers_apply_in_order() {
        let f = write("[inner]\ncount = 5\n");
        let env = vec![("BEDSIDE__INNER__NAME".to_string(), "zz".to_string())];
        let c: Outer = load_with_env(Some(f.path()), &env).unwrap();
        assert_eq!(c.inner.count, 5);
        assert_eq!(c.inner.name, "zz");
        assert!(!c.flag);
    }

    #[test]
    fn unknown_key_is_named() {
        let f = write("[inner]\ncuont = 5\n");
        let err = load_with_env::<Outer>(Some(f.path()), &[]).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("inner"), "{msg}");
        assert!(msg.contains("cuont"), "{msg}");
    }

    #[test]
    fn wrong_type_is_named() {
        let f = write("[inner]\ncount = \"many\"\n");
        let err = load_with_env::<Outer>(Some(f.path()), &[]).unwrap_err();
        assert!(err.to_string().contains("inner.count"), "{err}");
    }

    #[test]
    fn validation_names_key() {
        let env = vec![("BEDSIDE__INNER__COUNT".to_string(), "0".to_string())];
        let err = load_with_env::<Outer>(None, &env).unwrap_err();
        assert!(err.to_string().contains("inner.count"), "{err}");
    }

    #[test]
    fn syntax_error_reports_file() {
        let f = write("[inner\n");
        let err = load_with_env::<Outer>(Some(f.path()), &[]).unwrap_err();
        assert!(matches!(err, ConfigError::Syntax { .. }), "{err}");
    }
}
