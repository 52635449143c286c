//! The value shapes the operations' options share: one string or many, sizes and durations
//! given as numbers or text (like the CLI's flags), keys, the undo area.

use std::path::PathBuf;

use backup_core::{Error, Result, Secret};
use serde::Deserialize;

/// A value given either as one string or as an array of strings (`repo`, `tag`, `tables`).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(crate) enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    pub(super) fn into_vec(self) -> Vec<String> {
        match self {
            OneOrMany::One(s) => vec![s],
            OneOrMany::Many(v) => v,
        }
    }

    /// Like the CLI's comma-delimited flags: `"a,b"` and `["a", "b"]` mean the same.
    pub(super) fn into_split_vec(self) -> Vec<String> {
        self.into_vec()
            .iter()
            .flat_map(|s| s.split(','))
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect()
    }
}

pub(super) fn jobs(j: Option<usize>) -> usize {
    j.unwrap_or_else(backup_core::default_jobs).max(1)
}

/// The session time limits given (`connect_timeout`, `lock_timeout`, `statement_timeout`).
pub(super) fn session(
    connect_timeout: Option<String>,
    lock_timeout: Option<String>,
    statement_timeout: Option<String>,
) -> backup_core::SessionOptions {
    backup_core::SessionOptions { connect_timeout, lock_timeout, statement_timeout }
}

pub(super) fn one_repo(repo: Option<OneOrMany>) -> Result<String> {
    let repos = repo.map(OneOrMany::into_vec).unwrap_or_default();
    match <[String; 1]>::try_from(repos) {
        Ok([r]) => Ok(r),
        Err(v) if v.is_empty() => Err(Error::InvalidInput("options: repo is required".into())),
        Err(_) => Err(Error::InvalidInput("options: this operation takes exactly one repo".into())),
    }
}

pub(super) fn required(value: Option<String>, key: &str) -> Result<String> {
    value.filter(|v| !v.is_empty()).ok_or_else(|| Error::InvalidInput(format!("options: {key} is required")))
}

/// The key of an encrypted backup: the identity itself (`AGE-SECRET-KEY-1...`), a path to an
/// identity file, and/or a passphrase.
pub(super) fn identity(text: Option<String>, file: Option<PathBuf>) -> Result<Option<Secret>> {
    if let Some(t) = text.filter(|t| !t.is_empty()) {
        return Ok(Some(Secret::new(t)));
    }
    match file {
        Some(path) => std::fs::read_to_string(&path)
            .map(|t| Some(Secret::new(t)))
            .map_err(|e| Error::io(format!("read identity file {}", path.display()), e)),
        None => Ok(None),
    }
}

/// The undo area: the `undo_dir` option, else the default under the state directory (from the
/// process environment, like the CLI: `DBBACKUP_UNDO_DIR`, `XDG_STATE_HOME`, `HOME`).
pub(super) fn undo_dir(given: Option<PathBuf>) -> Option<PathBuf> {
    given
        .filter(|d| !d.as_os_str().is_empty())
        .or_else(|| backup_core::default_undo_dir(|k| std::env::var(k).ok()))
}

/// A size given as bytes (`1048576`) or text (`50GiB`, `500MB`), like the CLI's `--max-size`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(crate) enum Size {
    Bytes(u64),
    Text(String),
}

impl Size {
    pub(super) fn bytes(self) -> Result<u64> {
        let t = match self {
            Size::Bytes(n) => return Ok(n),
            Size::Text(t) => t,
        };
        backup_core::parse_size(&t)
    }
}

/// A duration given as seconds (`93600`) or text (`26h`, `7d`, `30m`), like the CLI's
/// `--max-age`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(crate) enum Secs {
    Secs(u64),
    Text(String),
}

impl Secs {
    /// Like the CLI's `--max-rto`: seconds as a number, or text such as `90s`, `2m`, `1h 30m`.
    pub(super) fn millis(self) -> Result<u64> {
        let t = match self {
            Secs::Secs(n) => return Ok(n.saturating_mul(1000)),
            Secs::Text(t) => t,
        };
        Ok(u64::try_from(backup_core::parse_duration(&t)?.as_millis()).unwrap_or(u64::MAX))
    }

    pub(super) fn secs(self) -> Result<u64> {
        let t = match self {
            Secs::Secs(n) => return Ok(n),
            Secs::Text(t) => t,
        };
        Ok(backup_core::parse_duration(&t)?.as_secs())
    }
}

/// `--max-shrink`: `0.5` or `"50%"`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(crate) enum Fraction {
    Num(f64),
    Text(String),
}

impl Fraction {
    pub(super) fn value(self) -> Result<f64> {
        Ok(match self {
            Fraction::Num(n) => backup_core::parse_fraction(&n.to_string())?,
            Fraction::Text(t) => backup_core::parse_fraction(&t)?,
        })
    }
}
