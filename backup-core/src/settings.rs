//! Store settings, passed explicitly: [`StoreConfig`] (one repository's credentials, endpoint,
//! retry policy, named like the environment variables they come from) and [`RepoSettings`] (which
//! settings each repository of an operation is opened with, carried by the
//! [`Context`](crate::Context)). The core never reads the process environment for them: the CLI
//! builds them with [`StoreConfig::from_env`], the FFI from its JSON options. How the settings are
//! used: `storage::url`.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::error::{Error, Result};

pub(crate) fn parse_bool(v: &str) -> Option<bool> {
    match v.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Some(true),
        "0" | "false" | "no" | "off" => Some(false),
        _ => None,
    }
}

/// Settings for cloud stores, named like the environment variables they come from (see `storage::url`). `Debug` shows names only, never values.
#[derive(Clone, Default)]
pub struct StoreConfig {
    vars: BTreeMap<String, String>,
}

impl std::fmt::Debug for StoreConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreConfig").field("keys", &self.vars.keys().collect::<Vec<_>>()).finish()
    }
}

const PREFIXES: [&str; 6] = ["AWS_", "AZURE_", "GOOGLE_", "AZURITE_", "DBBACKUP_S3_", "DBBACKUP_STORE_"];

impl StoreConfig {
    /// Reads the relevant variables (`AWS_*`, `AZURE_*`, `GOOGLE_*`, `DBBACKUP_S3_*`,
    /// `DBBACKUP_STORE_*`) from the process environment. For the CLI: the core itself never
    /// calls it (a library embedded in a long-lived process gets its settings explicitly).
    pub fn from_env() -> Self {
        Self::from_pairs(std::env::vars())
    }

    /// Builds a config from explicit `(NAME, value)` pairs (FFI, tests). Empty values are ignored.
    pub fn from_pairs<K: Into<String>, V: Into<String>>(pairs: impl IntoIterator<Item = (K, V)>) -> Self {
        let mut vars = BTreeMap::new();
        for (k, v) in pairs {
            let (k, v) = (k.into().to_ascii_uppercase(), v.into());
            if !v.trim().is_empty() && PREFIXES.iter().any(|p| k.starts_with(p)) {
                vars.insert(k, v);
            }
        }
        StoreConfig { vars }
    }

    /// Sets one setting.
    pub fn set(mut self, key: &str, value: impl Into<String>) -> Self {
        self.vars.insert(key.to_ascii_uppercase(), value.into());
        self
    }

    /// The names of the settings held.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.vars.keys().map(String::as_str)
    }

    /// One setting.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.vars.get(key).map(String::as_str)
    }

    #[cfg(feature = "cloud")]
    pub(crate) fn flag(&self, key: &str) -> Result<Option<bool>> {
        self.get(key)
            .map(|v| {
                parse_bool(v)
                    .ok_or_else(|| Error::InvalidInput(format!("{key} must be true or false, not {v:?}")))
            })
            .transpose()
    }

    pub(crate) fn seconds(&self, key: &str) -> Result<Option<Duration>> {
        self.get(key)
            .map(|v| {
                let t = v.trim().trim_end_matches('s');
                t.parse::<f64>()
                    .ok()
                    .filter(|s| s.is_finite() && *s >= 0.0)
                    .map(Duration::from_secs_f64)
                    .ok_or_else(|| {
                        Error::InvalidInput(format!("{key} must be a number of seconds, not {v:?}"))
                    })
            })
            .transpose()
    }

    /// The settings whose names start with `prefix`, names in lower case (object_store's keys).
    #[cfg(feature = "cloud")]
    pub(crate) fn pairs<'a>(&'a self, prefix: &'a str) -> impl Iterator<Item = (String, &'a str)> + 'a {
        self.vars
            .iter()
            .filter(move |(k, _)| k.starts_with(prefix))
            .map(|(k, v)| (k.to_ascii_lowercase(), v.as_str()))
    }
}

/// The store settings of every repository an operation opens: explicit settings per repository
/// URL (exactly as given in the options), and the settings of any other repository. `Debug`
/// shows URLs and setting names, never values.
#[derive(Clone, Debug, Default)]
pub struct RepoSettings {
    default: StoreConfig,
    repos: BTreeMap<String, StoreConfig>,
}

impl RepoSettings {
    /// The same settings for every repository (the CLI: the environment's).
    pub fn new(default: StoreConfig) -> Self {
        RepoSettings { default, repos: BTreeMap::new() }
    }

    /// Settings for the repository `url` (replacing the default for it, not merged with it).
    pub fn with_repo(mut self, url: impl Into<String>, cfg: StoreConfig) -> Self {
        self.repos.insert(url.into(), cfg);
        self
    }

    /// The settings to open `url` with.
    pub fn for_repo(&self, url: &str) -> &StoreConfig {
        self.repos.get(url).unwrap_or(&self.default)
    }
}
