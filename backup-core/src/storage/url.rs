//! Repository URLs -> object stores. The one place a repository is built from a string, always
//! with its settings given explicitly (a [`StoreConfig`]; the core never reads the environment
//! for them).
//!
//! Accepted:
//! - a plain path or `file:///path`: local directory, created by writers if missing (never by a
//!   read: a missing directory is [`Error::MissingRepository`]);
//! - `memory://NAME`: an in-process store shared by every `Target` opened with the same NAME
//!   (tests and the FFI);
//! - `s3://BUCKET/PREFIX` (AWS, Backblaze B2, MinIO, Cloudflare R2, any S3-compatible endpoint).
//!   `s3://` or `s3:///PREFIX` without a bucket takes the bucket from `AWS_BUCKET` (Laravel's
//!   name), and fails clearly when that is unset;
//! - `gs://BUCKET/PREFIX` (Google Cloud Storage);
//! - `az://CONTAINER/PREFIX` (also `azure://`; Azure Blob Storage, Azurite).
//!
//! An `s3://` URL may carry `?conditional_put=true|false` to override the detection below.
//!
//! ## Configuration
//!
//! Credentials and endpoints never appear in URLs. They come from a [`StoreConfig`]: a map of
//! settings named like the environment variables (the CLI passes [`StoreConfig::from_env`], the
//! FFI a per-repository map from its JSON options, a test an explicit map). The use-cases open
//! repositories with [`Target::open_in`], which takes each repository's settings from the
//! [`crate::Context`]'s [`crate::RepoSettings`]. Recognised:
//!
//! - every `AWS_*`, `AZURE_*` and `GOOGLE_*` key object_store understands (its standard names:
//!   `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`, `AWS_DEFAULT_REGION`,
//!   `AWS_REGION`, `AWS_ENDPOINT`/`AWS_ENDPOINT_URL`, `AZURE_STORAGE_ACCOUNT_NAME`,
//!   `AZURE_STORAGE_ACCOUNT_KEY`, `AZURE_STORAGE_SAS_TOKEN`, `AZURE_STORAGE_ENDPOINT`,
//!   `GOOGLE_SERVICE_ACCOUNT`, `GOOGLE_SERVICE_ACCOUNT_KEY`, ...);
//! - Laravel's `AWS_BUCKET` (used only when the URL names no bucket) and
//!   `AWS_USE_PATH_STYLE_ENDPOINT`: unset or `true` -> path-style requests
//!   (`https://endpoint/bucket/key`, what MinIO, R2 and B2 all accept); `false` with an
//!   `AWS_ENDPOINT` -> virtual-hosted requests (`https://bucket.endpoint/key`);
//! - `DBBACKUP_S3_CONDITIONAL_PUT=true|false`: whether the S3 store honours `If-None-Match: *`.
//!   Default: true for AWS (no endpoint, or an `amazonaws.com` endpoint), false for every other
//!   endpoint (Backblaze B2 does not implement it). Correctness never depends on it: keys are
//!   unique per backup and the manifest is written last; a create-only write is an extra guard;
//! - `DBBACKUP_STORE_MAX_RETRIES` (default 10) and `DBBACKUP_STORE_RETRY_TIMEOUT` (seconds,
//!   default 180): how object_store retries 5xx responses and dropped connections, per request.
//!   Parts of a multipart upload are retried individually; the database stream never is;
//! - `DBBACKUP_STORE_TIMEOUT` (seconds, default 30) and `DBBACKUP_STORE_MIN_THROUGHPUT` (bytes
//!   per second, default `64KiB`): each HTTP attempt may take the timeout plus its body's size at
//!   that rate, and a response body may pause at most the timeout ([`super::http`]);
//! - `DBBACKUP_STORE_LEASE_TTL` (seconds, default 900): how long a lease of a running command
//!   lives without a refresh (every store, local directories included; see `lease`).
//!
//! An `http://` endpoint (MinIO, moto, Azurite on a LAN) is allowed automatically, with a log
//! note, since the user wrote it explicitly. Secrets are never part of `Display`/`Debug`.

#![cfg_attr(not(feature = "cloud"), allow(dead_code, unused_variables))]

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use object_store::ObjectStore;
#[cfg(feature = "cloud")]
use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey, S3ConditionalPut};
#[cfg(feature = "cloud")]
use object_store::azure::{AzureConfigKey, MicrosoftAzureBuilder};
#[cfg(feature = "cloud")]
use object_store::gcp::{GoogleCloudStorageBuilder, GoogleConfigKey};
use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
#[cfg(feature = "cloud")]
use object_store::{BackoffConfig, ClientOptions, RetryConfig};

#[cfg(feature = "cloud")]
pub use super::http::AttemptLimits;
#[cfg(feature = "cloud")]
use super::http::TimedConnector;
#[cfg(feature = "cloud")]
use super::upload::S3Uploads;
use super::upload::Uploads;
use crate::error::{Error, Result};
use crate::model::redact_str;
pub use crate::settings::StoreConfig;
use crate::settings::parse_bool;

/// A parsed repository locator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RepoUrl {
    /// Local directory.
    Local {
        /// Absolute or relative directory.
        path: std::path::PathBuf,
    },
    /// Process-local in-memory store.
    Memory {
        /// Registry name.
        name: String,
    },
    /// S3 or an S3-compatible store.
    S3 {
        /// Bucket; `None` means "take it from `AWS_BUCKET`".
        bucket: Option<String>,
        /// Key prefix inside the bucket (no leading/trailing slash).
        prefix: String,
        /// `?conditional_put=` override.
        conditional_put: Option<bool>,
    },
    /// Google Cloud Storage.
    Gcs {
        /// Bucket.
        bucket: String,
        /// Key prefix.
        prefix: String,
    },
    /// Azure Blob Storage.
    Azure {
        /// Container.
        container: String,
        /// Key prefix.
        prefix: String,
    },
}

impl RepoUrl {
    /// Parses a repository URL.
    pub fn parse(s: &str) -> Result<Self> {
        let s = s.trim();
        if s.is_empty() {
            return Err(Error::InvalidInput("empty repository URL".into()));
        }
        if let Some(rest) = s.strip_prefix("memory://") {
            return Ok(RepoUrl::Memory { name: rest.trim_matches('/').to_string() });
        }
        if s == "memory:" {
            return Ok(RepoUrl::Memory { name: String::new() });
        }
        if let Some(rest) = s.strip_prefix("file://") {
            if !rest.starts_with('/') {
                return Err(Error::InvalidInput(format!(
                    "bad repository URL {s}: file:// needs an absolute path (file:///srv/backups)"
                )));
            }
            return Ok(RepoUrl::Local { path: rest.into() });
        }
        if let Some((scheme, rest)) = s.split_once("://") {
            let bad = |why: &str| Error::InvalidInput(format!("bad repository URL {}: {why}", redact_str(s)));
            let (rest, query) = match rest.split_once('?') {
                Some((r, q)) => (r, Some(q)),
                None => (rest, None),
            };
            let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
            // Over the whole authority: `s3://KEY:SECRET@bucket` where the secret holds a '/'
            // (AWS secrets do) splits at that '/', so look for `user:...@` anywhere before the
            // last '@', and refuse a ':' in the bucket name (no store allows one).
            let userinfo = rest.rfind('@').is_some_and(|at| rest[..at].contains(':'));
            if host.contains('@') || host.contains(':') || userinfo {
                return Err(bad(
                    "credentials do not belong in the URL; set them in the environment (AWS_ACCESS_KEY_ID, ...)",
                ));
            }
            let prefix = path.trim_matches('/').to_string();
            if prefix.split('/').any(|seg| seg == "." || seg == "..") || prefix.contains("//") {
                return Err(bad("the prefix may not contain '.', '..' or empty segments"));
            }
            let mut conditional_put = None;
            for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
                match pair.split_once('=') {
                    Some(("conditional_put", v)) if scheme == "s3" => {
                        conditional_put =
                            Some(parse_bool(v).ok_or_else(|| bad("conditional_put must be true or false"))?);
                    }
                    _ => {
                        return Err(bad(&format!(
                            "unknown option {pair:?} (known: conditional_put for s3://)"
                        )));
                    }
                }
            }
            let named = |what: &str| -> Result<String> {
                if host.is_empty() {
                    Err(bad(&format!("no {what} name ({scheme}://{what}/prefix)")))
                } else {
                    Ok(host.to_string())
                }
            };
            return match scheme {
                "s3" | "s3a" => Ok(RepoUrl::S3 {
                    bucket: (!host.is_empty()).then(|| host.to_string()),
                    prefix,
                    conditional_put,
                }),
                "gs" => Ok(RepoUrl::Gcs { bucket: named("bucket")?, prefix }),
                "az" | "azure" => Ok(RepoUrl::Azure { container: named("container")?, prefix }),
                _ => Err(Error::InvalidInput(format!(
                    "unsupported repository scheme {scheme:?} in {} (known: a path, file://, s3://, gs://, az://, memory://)",
                    redact_str(s)
                ))),
            };
        }
        Ok(RepoUrl::Local { path: s.into() })
    }
}

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
    /// `DBBACKUP_STORE_MIN_THROUGHPUT` (bytes per second, `64KiB` by default; see [`super::http`]).
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

    /// object_store's client options: its total request timeout is off, [`super::http`] limits
    /// each attempt instead.
    #[cfg(feature = "cloud")]
    fn client(&self, endpoint: Option<&str>) -> Result<ClientOptions> {
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

/// What a store can do beyond the basics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capabilities {
    /// Conditional create (`If-None-Match: *`). Backblaze B2 lacks it.
    pub conditional_put: bool,
}

impl Default for Capabilities {
    fn default() -> Self {
        Capabilities { conditional_put: true }
    }
}

fn memory_registry() -> &'static Mutex<HashMap<String, Arc<InMemory>>> {
    static REG: OnceLock<Mutex<HashMap<String, Arc<InMemory>>>> = OnceLock::new();
    REG.get_or_init(Mutex::default)
}

/// Whether a repository is opened to read what it holds or to write backups into it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Access {
    /// Read: a local directory that does not exist is an error, never created.
    Read,
    /// Write: a local directory is created if missing.
    Create,
}

/// A store opened from a URL: what a [`Target`](super::Target) wraps.
pub(crate) struct OpenedStore {
    pub(crate) store: Arc<dyn ObjectStore>,
    pub(crate) prefix: String,
    pub(crate) display: String,
    pub(crate) caps: Capabilities,
    /// `DBBACKUP_STORE_LEASE_TTL`, when set.
    pub(crate) lease_ttl: Option<std::time::Duration>,
    /// How the store's unfinished uploads are found and removed.
    pub(crate) uploads: Uploads,
}

fn opened(
    store: Arc<dyn ObjectStore>,
    prefix: &str,
    display: String,
    caps: Capabilities,
    uploads: Uploads,
) -> Result<OpenedStore> {
    Ok(OpenedStore { store, prefix: prefix.to_string(), display, caps, lease_ttl: None, uploads })
}

/// Opens the store of the repository at `url` with explicit settings (the process environment
/// is never read here).
pub(crate) fn open_with(url: &str, cfg: &StoreConfig, access: Access) -> Result<OpenedStore> {
    let mut opened = open_store(url, cfg, access)?;
    opened.lease_ttl = cfg.seconds("DBBACKUP_STORE_LEASE_TTL")?;
    Ok(opened)
}

fn open_store(url: &str, cfg: &StoreConfig, access: Access) -> Result<OpenedStore> {
    match RepoUrl::parse(url)? {
        RepoUrl::Local { path } => {
            match access {
                Access::Create => std::fs::create_dir_all(&path)
                    .map_err(|e| Error::io(format!("create repository directory {}", path.display()), e))?,
                Access::Read if !path.is_dir() => {
                    return Err(Error::MissingRepository(path.display().to_string()));
                }
                Access::Read => {}
            }
            let store = LocalFileSystem::new_with_prefix(&path)
                .map_err(|e| Error::storage(format!("open repository {}", path.display()), e))?
                .with_automatic_cleanup(true);
            let display = path.display().to_string();
            opened(Arc::new(store), "", display, Capabilities::default(), Uploads::Local(path))
        }
        RepoUrl::Memory { name } => {
            let store = {
                let mut reg = memory_registry().lock().unwrap_or_else(|p| p.into_inner());
                reg.entry(name.clone()).or_insert_with(|| Arc::new(InMemory::new())).clone()
            };
            let store: Arc<dyn ObjectStore> = store;
            opened(store, "", format!("memory://{name}"), Capabilities::default(), Uploads::Vanish)
        }
        #[cfg(not(feature = "cloud"))]
        RepoUrl::S3 { .. } | RepoUrl::Gcs { .. } | RepoUrl::Azure { .. } => {
            Err(Error::Unsupported("cloud repositories: this build has no `cloud` feature".into()))
        }
        #[cfg(feature = "cloud")]
        RepoUrl::S3 { bucket, prefix, conditional_put } => open_s3(bucket, &prefix, conditional_put, cfg),
        #[cfg(feature = "cloud")]
        RepoUrl::Gcs { bucket, prefix } => {
            let mut b = GoogleCloudStorageBuilder::new();
            for (k, v) in cfg.pairs("GOOGLE_") {
                if let Ok(key) = k.parse::<GoogleConfigKey>() {
                    b = b.with_config(key, v);
                }
            }
            let display = join_display("gs", &bucket, &prefix);
            let store = b
                .with_bucket_name(&bucket)
                .with_retry(cfg.retry()?)
                .with_client_options(cfg.client(None)?)
                .with_http_connector(TimedConnector::new(cfg.attempt_limits()?))
                .build()
                .map_err(|e| config_error(&display, e))?;
            let uploads = Uploads::Unlisted(GCS_UPLOADS);
            opened(Arc::new(store), &prefix, display, Capabilities { conditional_put: true }, uploads)
        }
        #[cfg(feature = "cloud")]
        RepoUrl::Azure { container, prefix } => {
            let mut b = MicrosoftAzureBuilder::new();
            for (k, v) in cfg.pairs("AZURE_") {
                if let Ok(key) = k.parse::<AzureConfigKey>() {
                    b = b.with_config(key, v);
                }
            }
            let endpoint = b.get_config_value(&AzureConfigKey::Endpoint);
            let display = join_display("az", &container, &prefix);
            let store = b
                .with_container_name(&container)
                .with_retry(cfg.retry()?)
                .with_client_options(cfg.client(endpoint.as_deref())?)
                .with_http_connector(TimedConnector::new(cfg.attempt_limits()?))
                .build()
                .map_err(|e| config_error(&display, e))?;
            let uploads = Uploads::Unlisted(AZURE_UPLOADS);
            opened(Arc::new(store), &prefix, display, Capabilities { conditional_put: true }, uploads)
        }
    }
}

/// Why unfinished Azure uploads are not swept.
#[cfg(feature = "cloud")]
const AZURE_UPLOADS: &str = "Azure keeps uncommitted blocks for 7 days, then discards them by itself";
/// Why unfinished GCS uploads are not swept.
#[cfg(feature = "cloud")]
const GCS_UPLOADS: &str = "object_store cannot list GCS multipart uploads: a bucket lifecycle rule (AbortIncompleteMultipartUpload) removes them";

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

#[cfg(feature = "cloud")]
fn join_display(scheme: &str, bucket: &str, prefix: &str) -> String {
    if prefix.is_empty() { format!("{scheme}://{bucket}") } else { format!("{scheme}://{bucket}/{prefix}") }
}

#[cfg(feature = "cloud")]
fn config_error(display: &str, e: object_store::Error) -> Error {
    Error::InvalidInput(format!("cannot configure repository {display}: {e}"))
}

#[cfg(feature = "cloud")]
fn open_s3(
    bucket: Option<String>,
    prefix: &str,
    conditional_put: Option<bool>,
    cfg: &StoreConfig,
) -> Result<OpenedStore> {
    let bucket = match bucket.or_else(|| cfg.get("AWS_BUCKET").map(str::to_string)) {
        Some(b) => b,
        None => {
            return Err(Error::InvalidInput(
                "s3:// repository without a bucket: write s3://BUCKET/prefix or set AWS_BUCKET".into(),
            ));
        }
    };
    let mut b = AmazonS3Builder::new();
    for (k, v) in cfg.pairs("AWS_") {
        if let Ok(key) = k.parse::<AmazonS3ConfigKey>() {
            b = b.with_config(key, v);
        }
    }
    let endpoint = b.get_config_value(&AmazonS3ConfigKey::Endpoint).filter(|e| !e.trim().is_empty());
    let display = join_display("s3", &bucket, prefix);
    // Laravel's AWS_USE_PATH_STYLE_ENDPOINT=false asks for virtual-hosted requests; object_store
    // expects the bucket inside the endpoint then.
    let path_style = cfg.flag("AWS_USE_PATH_STYLE_ENDPOINT")?.unwrap_or(true);
    if let Some(e) = &endpoint {
        if !path_style {
            let url = url::Url::parse(e).map_err(|err| {
                Error::InvalidInput(format!(
                    "AWS_ENDPOINT {e:?} is not a URL ({err}); e.g. https://s3.us-west-004.backblazeb2.com"
                ))
            })?;
            let host = url.host_str().unwrap_or_default();
            let mut vh = url.clone();
            vh.set_host(Some(&format!("{bucket}.{host}")))
                .map_err(|err| Error::InvalidInput(format!("bucket {bucket:?} with endpoint {e}: {err}")))?;
            b = b.with_endpoint(vh.as_str().trim_end_matches('/')).with_virtual_hosted_style_request(true);
        } else {
            b = b.with_virtual_hosted_style_request(false);
        }
    }
    let aws = endpoint.as_deref().is_none_or(|e| e.contains("amazonaws.com"));
    let cond = match conditional_put {
        Some(c) => c,
        None => cfg.flag("DBBACKUP_S3_CONDITIONAL_PUT")?.unwrap_or(aws),
    };
    let store = b
        .with_bucket_name(&bucket)
        .with_conditional_put(if cond { S3ConditionalPut::ETagMatch } else { S3ConditionalPut::Disabled })
        .with_retry(cfg.retry()?)
        .with_client_options(cfg.client(endpoint.as_deref())?)
        .with_http_connector(TimedConnector::new(cfg.attempt_limits()?))
        .build()
        .map_err(|e| config_error(&display, e))?;
    let store = Arc::new(store);
    // Listing unfinished uploads is one presigned GET per page (see `upload`).
    let http = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(30))
        .timeout(Duration::from_secs(120))
        .build()
        .map_err(|e| Error::InvalidInput(format!("cannot configure repository {display}: {e}")))?;
    let uploads = Uploads::S3(Arc::new(S3Uploads::new(store.clone(), http)));
    opened(store, prefix, display, Capabilities { conditional_put: cond }, uploads)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::Target;

    #[test]
    fn parses_the_documented_forms() {
        assert_eq!(RepoUrl::parse("/srv/b").unwrap(), RepoUrl::Local { path: "/srv/b".into() });
        assert_eq!(RepoUrl::parse("rel/b").unwrap(), RepoUrl::Local { path: "rel/b".into() });
        assert_eq!(RepoUrl::parse("file:///srv/b").unwrap(), RepoUrl::Local { path: "/srv/b".into() });
        assert_eq!(RepoUrl::parse("memory://t1").unwrap(), RepoUrl::Memory { name: "t1".into() });
        assert!(RepoUrl::parse("file://rel").is_err());
        assert!(RepoUrl::parse("").is_err());
        let e = RepoUrl::parse("ftp://u:pw@h/x").unwrap_err().to_string();
        assert!(e.contains("ftp") && !e.contains("pw"), "{e}");
    }

    /// AWS secret keys contain '/': the credentials check covers the whole authority, and the
    /// message never repeats the secret.
    #[test]
    fn credentials_with_a_slash_are_refused_and_not_echoed() {
        for url in [
            "s3://AKIAEXAMPLE:wJalr/XUtnFEMI/K7MDENG@bucket/prefix",
            "s3://AKIAEXAMPLE:wJalr/XUtnFEMI@bucket",
            "gs://user:wJalr/XUtnFEMI@bucket/x",
            "az://acct:wJalr/XUtnFEMI@container/x",
            "s3://AKIAEXAMPLE:wJalrXUtnFEMI@bucket",
        ] {
            let e = RepoUrl::parse(url).unwrap_err().to_string();
            assert!(e.contains("credentials") && !e.contains("wJalr"), "{url}: {e}");
        }
        // An '@' inside the prefix is not a credential.
        assert!(RepoUrl::parse("s3://bucket/backups@home").is_ok());
    }

    #[test]
    fn parses_cloud_urls() {
        assert_eq!(
            RepoUrl::parse("s3://b/app/prod/").unwrap(),
            RepoUrl::S3 { bucket: Some("b".into()), prefix: "app/prod".into(), conditional_put: None }
        );
        assert_eq!(
            RepoUrl::parse("s3:///p?conditional_put=false").unwrap(),
            RepoUrl::S3 { bucket: None, prefix: "p".into(), conditional_put: Some(false) }
        );
        assert_eq!(
            RepoUrl::parse("s3://").unwrap(),
            RepoUrl::S3 { bucket: None, prefix: String::new(), conditional_put: None }
        );
        assert_eq!(
            RepoUrl::parse("gs://g/x").unwrap(),
            RepoUrl::Gcs { bucket: "g".into(), prefix: "x".into() }
        );
        assert_eq!(
            RepoUrl::parse("az://c/x/y").unwrap(),
            RepoUrl::Azure { container: "c".into(), prefix: "x/y".into() }
        );
        assert_eq!(
            RepoUrl::parse("azure://c").unwrap(),
            RepoUrl::Azure { container: "c".into(), prefix: "".into() }
        );
        for bad in
            ["gs://", "az:///x", "s3://b/../x", "s3://b/a//b", "s3://b?x=1", "gs://b?conditional_put=true"]
        {
            assert!(RepoUrl::parse(bad).is_err(), "{bad}");
        }
        let e = RepoUrl::parse("s3://KEY:SECRET@b/x").unwrap_err().to_string();
        assert!(!e.contains("SECRET") && e.contains("environment"), "{e}");
    }

    #[test]
    fn s3_bucket_from_laravel_env_or_a_clear_error() {
        let cfg = StoreConfig::from_pairs([("AWS_DEFAULT_REGION", "eu-west-1")]);
        let e = Target::open_with("s3:///x", &cfg).unwrap_err();
        assert!(e.to_string().contains("AWS_BUCKET"), "{e}");
        let cfg = cfg.set("AWS_BUCKET", "laravel-bucket");
        let t = Target::open_with("s3:///x", &cfg).unwrap();
        assert_eq!(t.display_name(), "s3://laravel-bucket/x");
        assert_eq!(t.prefix(), "x");
        // AWS proper: conditional PUT on; B2 endpoint: off unless asked for.
        assert!(t.capabilities().conditional_put);
        let b2 = cfg.clone().set("AWS_ENDPOINT", "https://s3.us-west-004.backblazeb2.com");
        assert!(!Target::open_with("s3://b", &b2).unwrap().capabilities().conditional_put);
        let b2_on = b2.clone().set("DBBACKUP_S3_CONDITIONAL_PUT", "true");
        assert!(Target::open_with("s3://b", &b2_on).unwrap().capabilities().conditional_put);
        assert!(
            !Target::open_with("s3://b?conditional_put=false", &cfg).unwrap().capabilities().conditional_put
        );
        // Virtual-hosted style when Laravel says so.
        let vh = b2.set("AWS_USE_PATH_STYLE_ENDPOINT", "false");
        Target::open_with("s3://b", &vh).unwrap();
        let bad = vh.set("AWS_USE_PATH_STYLE_ENDPOINT", "maybe");
        assert!(
            Target::open_with("s3://b", &bad)
                .unwrap_err()
                .to_string()
                .contains("AWS_USE_PATH_STYLE_ENDPOINT")
        );
    }

    #[test]
    fn secrets_stay_out_of_debug_and_display() {
        let cfg = StoreConfig::from_pairs([
            ("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE"),
            ("AWS_SECRET_ACCESS_KEY", "wJalrXUtnFEMI-secret"),
            ("PATH", "/bin"),
            ("DBBACKUP_SLACK_WEBHOOK", "https://hooks.slack.com/x"),
        ]);
        let d = format!("{cfg:?}");
        assert!(
            !d.contains("wJalr") && !d.contains("AKIDEXAMPLE") && d.contains("AWS_SECRET_ACCESS_KEY"),
            "{d}"
        );
        assert!(cfg.get("PATH").is_none(), "unrelated variables are not collected");
        assert!(cfg.get("DBBACKUP_SLACK_WEBHOOK").is_none());
        let t = Target::open_with("s3://bk/p", &cfg).unwrap();
        for s in [format!("{t}"), format!("{t:?}")] {
            assert!(!s.contains("wJalr") && !s.contains("AKIDEXAMPLE"), "{s}");
        }
    }

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

    #[test]
    fn gcs_and_azure_configuration() {
        // GCS: a service account key that is not JSON is a configuration error naming the repo.
        let cfg = StoreConfig::from_pairs([("GOOGLE_SERVICE_ACCOUNT_KEY", "not json")]);
        let e = Target::open_with("gs://bk/p", &cfg).unwrap_err();
        assert!(matches!(e, Error::InvalidInput(_)) && e.to_string().contains("gs://bk/p"), "{e}");
        assert!(!e.to_string().contains("not json"), "{e}");
        // Azure: no account is a configuration error; with one it builds.
        let e = Target::open_with("az://c/p", &StoreConfig::default()).unwrap_err();
        assert!(e.to_string().contains("az://c/p"), "{e}");
        let cfg = StoreConfig::from_pairs([
            ("AZURE_STORAGE_ACCOUNT_NAME", "acct"),
            ("AZURE_STORAGE_ACCOUNT_KEY", "a2V5"),
        ]);
        let t = Target::open_with("az://c/p", &cfg).unwrap();
        assert_eq!((t.display_name(), t.prefix()), ("az://c/p", "p"));
    }

    /// A read (verify, restore, copy from) of a local directory that does not exist says so and
    /// never creates it; `list` finds no backups there; a write creates it.
    #[tokio::test]
    async fn a_read_never_creates_a_missing_directory() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("no-such-repo");
        let url = missing.display().to_string();
        let ctx = crate::progress::Context::default();
        let e = Target::open_in(&url, &ctx).unwrap_err();
        assert_eq!(e.to_string(), format!("repository {url} does not exist"));
        assert_eq!(e.kind(), crate::error::ErrorKind::NotFound);
        let opts = crate::catalog::ListOptions { repo: url.clone(), ..Default::default() };
        let listed = crate::command::Command::run(&opts, &ctx).await.unwrap();
        assert!(
            listed.backups.is_empty() && listed.unreadable.is_empty() && listed.repo == url,
            "{listed:?}"
        );
        let opts = crate::restore::RestoreOptions {
            repo: url.clone(),
            backup: "latest".into(),
            into: format!("sqlite://{}/x.sqlite", dir.path().display()),
            ..Default::default()
        };
        let e = crate::restore::restore(&opts, &ctx).await.unwrap_err();
        assert_eq!(e.to_string(), format!("repository {url} does not exist"));
        assert!(!missing.exists(), "a read created {url}");
        Target::create_in(&url, &ctx).unwrap();
        assert!(missing.is_dir());
        Target::open_in(&url, &ctx).unwrap();
    }
}
