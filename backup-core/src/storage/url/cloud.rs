//! The cloud stores (S3 and S3-compatible, Google Cloud Storage, Azure Blob Storage) built
//! from their settings, with the retry policy and the per-attempt time limits of `config`.

use std::sync::Arc;
use std::time::Duration;

use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey, S3ConditionalPut};
use object_store::azure::{AzureConfigKey, MicrosoftAzureBuilder};
use object_store::gcp::{GoogleCloudStorageBuilder, GoogleConfigKey};

use crate::error::{Error, Result};
use crate::settings::StoreConfig;
use crate::storage::http::TimedConnector;
use crate::storage::upload::{S3Uploads, Uploads};
use crate::storage::url::opened::{Capabilities, OpenedStore, opened};

/// Why unfinished Azure uploads are not swept.
const AZURE_UPLOADS: &str = "Azure keeps uncommitted blocks for 7 days, then discards them by itself";
/// Why unfinished GCS uploads are not swept.
const GCS_UPLOADS: &str = "object_store cannot list GCS multipart uploads: a bucket lifecycle rule (AbortIncompleteMultipartUpload) removes them";

fn join_display(scheme: &str, bucket: &str, prefix: &str) -> String {
    if prefix.is_empty() { format!("{scheme}://{bucket}") } else { format!("{scheme}://{bucket}/{prefix}") }
}

fn config_error(display: &str, e: object_store::Error) -> Error {
    Error::InvalidInput(format!("cannot configure repository {display}: {e}"))
}

/// An S3 (or S3-compatible) bucket with the `AWS_*` settings and Laravel's names.
pub(super) fn open_s3(
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

/// A Google Cloud Storage bucket with the `GOOGLE_*` settings.
pub(super) fn open_gcs(bucket: &str, prefix: &str, cfg: &StoreConfig) -> Result<OpenedStore> {
    let mut b = GoogleCloudStorageBuilder::new();
    for (k, v) in cfg.pairs("GOOGLE_") {
        if let Ok(key) = k.parse::<GoogleConfigKey>() {
            b = b.with_config(key, v);
        }
    }
    let display = join_display("gs", bucket, prefix);
    let store = b
        .with_bucket_name(bucket)
        .with_retry(cfg.retry()?)
        .with_client_options(cfg.client(None)?)
        .with_http_connector(TimedConnector::new(cfg.attempt_limits()?))
        .build()
        .map_err(|e| config_error(&display, e))?;
    let uploads = Uploads::Unlisted(GCS_UPLOADS);
    opened(Arc::new(store), prefix, display, Capabilities { conditional_put: true }, uploads)
}

/// An Azure Blob Storage container with the `AZURE_*` settings.
pub(super) fn open_azure(container: &str, prefix: &str, cfg: &StoreConfig) -> Result<OpenedStore> {
    let mut b = MicrosoftAzureBuilder::new();
    for (k, v) in cfg.pairs("AZURE_") {
        if let Ok(key) = k.parse::<AzureConfigKey>() {
            b = b.with_config(key, v);
        }
    }
    let endpoint = b.get_config_value(&AzureConfigKey::Endpoint);
    let display = join_display("az", container, prefix);
    let store = b
        .with_container_name(container)
        .with_retry(cfg.retry()?)
        .with_client_options(cfg.client(endpoint.as_deref())?)
        .with_http_connector(TimedConnector::new(cfg.attempt_limits()?))
        .build()
        .map_err(|e| config_error(&display, e))?;
    let uploads = Uploads::Unlisted(AZURE_UPLOADS);
    opened(Arc::new(store), prefix, display, Capabilities { conditional_put: true }, uploads)
}

#[cfg(test)]
mod tests {
    use crate::error::Error;
    use crate::settings::StoreConfig;
    use crate::storage::Target;

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
}
