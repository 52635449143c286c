//! The settings a repository is opened with, beyond object_store's own keys: which names are
//! known (a misspelt one is reported), the retry policy, the per-attempt time limits and the
//! HTTP client options.

#[cfg(feature = "cloud")]
use std::time::Duration;

#[cfg(feature = "cloud")]
use object_store::aws::AmazonS3ConfigKey;
#[cfg(feature = "cloud")]
use object_store::azure::AzureConfigKey;
#[cfg(feature = "cloud")]
use object_store::gcp::GoogleConfigKey;
#[cfg(feature = "cloud")]
use object_store::{BackoffConfig, ClientOptions, RetryConfig};

#[cfg(feature = "cloud")]
use crate::error::{Error, Result};
use crate::settings::StoreConfig;
#[cfg(feature = "cloud")]
use crate::storage::http::AttemptLimits;

/// Settings read by this module beyond object_store's own keys.
const OWN_SETTINGS: [&str; 8] = [
    "DBBACKUP_STORE_LEASE_TTL",
    "AWS_BUCKET",
    "AWS_USE_PATH_STYLE_ENDPOINT",
    "DBBACKUP_S3_CONDITIONAL_PUT",
    "DBBACKUP_STORE_MAX_RETRIES",
    "DBBACKUP_STORE_RETRY_TIMEOUT",
    "DBBACKUP_STORE_TIMEOUT",
    "DBBACKUP_STORE_MIN_THROUGHPUT",
];

impl StoreConfig {
    /// The names of settings nothing reads (a misspelt `AWS_ACESS_KEY_ID`, say), for callers that
    /// pass settings explicitly and want a typo to be an error rather than a dropped credential.
    pub fn unknown_names(&self) -> Vec<String> {
        self.names()
            .filter(|name| !OWN_SETTINGS.contains(name) && !is_store_key(name))
            .map(str::to_string)
            .collect()
    }

    /// The retry policy: `DBBACKUP_STORE_MAX_RETRIES`, `DBBACKUP_STORE_RETRY_TIMEOUT`.
    #[cfg(feature = "cloud")]
    pub fn retry(&self) -> Result<RetryConfig> {
        let mut r = RetryConfig::default();
        if let Some(n) = self.get("DBBACKUP_STORE_MAX_RETRIES") {
            r.max_retries = n.trim().parse().map_err(|_| {
                Error::InvalidInput(format!("DBBACKUP_STORE_MAX_RETRIES must be a number, not {n:?}"))
            })?;
        }
        if let Some(t) = self.seconds("DBBACKUP_STORE_RETRY_TIMEOUT")? {
            r.retry_timeout = t;
            r.backoff = BackoffConfig {
                init_backoff: Duration::from_millis(100).min(t),
                max_backoff: Duration::from_secs(15).min(t.max(Duration::from_millis(100))),
                base: 2.0,
            };
        }
        Ok(r)
    }

    /// The time limits of one HTTP attempt: `DBBACKUP_STORE_TIMEOUT` (seconds, default 30) and
    /// `DBBACKUP_STORE_MIN_THROUGHPUT` (bytes per second, `64KiB` by default; see `storage/http.rs`).
    #[cfg(feature = "cloud")]
    pub fn attempt_limits(&self) -> Result<AttemptLimits> {
        let mut l = AttemptLimits::default();
        if let Some(t) = self.seconds("DBBACKUP_STORE_TIMEOUT")? {
            if t.is_zero() {
                return Err(Error::InvalidInput("DBBACKUP_STORE_TIMEOUT must be more than 0 seconds".into()));
            }
            l.timeout = t;
        }
        if let Some(v) = self.get("DBBACKUP_STORE_MIN_THROUGHPUT") {
            let bad = || {
                Error::InvalidInput(format!(
                    "DBBACKUP_STORE_MIN_THROUGHPUT must be a size per second above 0 (e.g. 64KiB), not {v:?}"
                ))
            };
            let rate = crate::model::parse_size(v.trim().trim_end_matches("/s")).map_err(|_| bad())?;
            if rate == 0 {
                return Err(bad());
            }
            l.min_throughput = rate;
        }
        Ok(l)
    }

    /// object_store's client options: its total request timeout is off, [`crate::storage::http`] limits
    /// each attempt instead.
    #[cfg(feature = "cloud")]
    pub(super) fn client(&self, endpoint: Option<&str>) -> Result<ClientOptions> {
        let mut c = ClientOptions::new().with_timeout_disabled();
        if let Some(e) = endpoint
            && e.trim().to_ascii_lowercase().starts_with("http://")
        {
            tracing::info!("endpoint {e} is plain http: allowing unencrypted connections to it");
            c = c.with_allow_http(true);
        }
        Ok(c)
    }
}

/// Whether object_store (or the Azurite emulator switch) understands this setting name.
fn is_store_key(name: &str) -> bool {
    #[cfg(feature = "cloud")]
    {
        let lower = name.to_ascii_lowercase();
        if name.starts_with("AWS_") {
            return lower.parse::<AmazonS3ConfigKey>().is_ok();
        }
        if name.starts_with("AZURE_") {
            return lower.parse::<AzureConfigKey>().is_ok();
        }
        if name.starts_with("GOOGLE_") {
            return lower.parse::<GoogleConfigKey>().is_ok();
        }
    }
    name.starts_with("AZURITE_")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_settings_are_configurable() {
        let r = StoreConfig::default().retry().unwrap();
        assert_eq!(r.max_retries, 10);
        let cfg = StoreConfig::from_pairs([
            ("DBBACKUP_STORE_MAX_RETRIES", "1"),
            ("DBBACKUP_STORE_RETRY_TIMEOUT", "2s"),
        ]);
        let r = cfg.retry().unwrap();
        assert_eq!((r.max_retries, r.retry_timeout), (1, Duration::from_secs(2)));
        assert!(StoreConfig::from_pairs([("DBBACKUP_STORE_MAX_RETRIES", "x")]).retry().is_err());
    }

    #[test]
    fn attempt_limits_are_configurable() {
        assert_eq!(StoreConfig::default().attempt_limits().unwrap(), AttemptLimits::default());
        let l = StoreConfig::from_pairs([
            ("DBBACKUP_STORE_TIMEOUT", "5"),
            ("DBBACKUP_STORE_MIN_THROUGHPUT", "1MiB/s"),
        ])
        .attempt_limits()
        .unwrap();
        assert_eq!((l.timeout, l.min_throughput), (Duration::from_secs(5), 1 << 20));
        for bad in [
            ("DBBACKUP_STORE_TIMEOUT", "0"),
            ("DBBACKUP_STORE_MIN_THROUGHPUT", "0"),
            ("DBBACKUP_STORE_MIN_THROUGHPUT", "fast"),
        ] {
            let e = StoreConfig::from_pairs([bad]).attempt_limits().unwrap_err();
            assert!(e.to_string().contains(bad.0), "{e}");
        }
        assert!(
            StoreConfig::from_pairs([("DBBACKUP_STORE_MIN_THROUGHPUT", "1MiB")]).unknown_names().is_empty()
        );
    }
}
