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
//! repositories with [`Target::open_in`](crate::Target::open_in), which takes each repository's settings from the
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
//!   that rate, and a response body may pause at most the timeout (`storage/http.rs`);
//! - `DBBACKUP_STORE_LEASE_TTL` (seconds, default 900): how long a lease of a running command
//!   lives without a refresh (every store, local directories included; see `lease`).
//!
//! An `http://` endpoint (MinIO, moto, Azurite on a LAN) is allowed automatically, with a log
//! note, since the user wrote it explicitly. Secrets are never part of `Display`/`Debug`.

#![cfg_attr(not(feature = "cloud"), allow(dead_code, unused_variables))]

#[cfg(feature = "cloud")]
mod cloud;
mod config;
mod opened;
mod parse;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use object_store::ObjectStore;
use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;

use crate::error::{Error, Result};
pub use crate::settings::StoreConfig;
use crate::storage::upload::Uploads;
pub use opened::Capabilities;
pub(crate) use opened::OpenedStore;
use opened::opened;
pub use parse::RepoUrl;

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
                .with_automatic_cleanup(true)
                // A backup is complete or absent: every object's file is synced before it is
                // renamed into place, and the directories that got entries (new ones too) after,
                // all before `put_stream` returns, so the manifest (written after every object's
                // upload returned, synced before it is linked in) is never on disk without them.
                // Cloud stores are durable at PUT; this gives a local directory the same contract.
                .with_fsync(true);
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
        RepoUrl::S3 { bucket, prefix, conditional_put } => {
            cloud::open_s3(bucket, &prefix, conditional_put, cfg)
        }
        #[cfg(feature = "cloud")]
        RepoUrl::Gcs { bucket, prefix } => cloud::open_gcs(&bucket, &prefix, cfg),
        #[cfg(feature = "cloud")]
        RepoUrl::Azure { container, prefix } => cloud::open_azure(&container, &prefix, cfg),
    }
}

#[cfg(test)]
mod tests {
    use crate::storage::Target;

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

    /// A local repository syncs what it writes (object_store's `with_fsync`: each file before it
    /// is renamed or linked into place, then the directories that got entries), so a backup's
    /// objects are on disk before its manifest is written: the store the backup writes through
    /// says so (no power loss can be simulated here), and a multipart upload and a create-only
    /// write still complete through it.
    #[tokio::test]
    async fn a_local_repository_syncs_what_it_writes() {
        let dir = tempfile::tempdir().unwrap();
        let url = dir.path().join("repo").display().to_string();
        let ctx = crate::progress::Context::default();
        let t = Target::create_in(&url, &ctx).unwrap().with_upload_limits(1024, 2);
        let store = format!("{:?}", t.store());
        assert!(store.contains("fsync: true"), "{store}");
        let body = bytes::Bytes::from(vec![7u8; 5000]);
        let stream = futures::StreamExt::boxed(futures::stream::iter(
            body.chunks(700).map(|c| Ok(bytes::Bytes::copy_from_slice(c))).collect::<Vec<_>>(),
        ));
        assert_eq!(t.put_stream("b/new/obj", stream, None, &ctx).await.unwrap(), 5000);
        t.put_create("b/manifest.json", bytes::Bytes::from_static(b"{}")).await.unwrap();
        assert_eq!(std::fs::read(dir.path().join("repo/b/new/obj")).unwrap(), body);
        assert_eq!(t.head("b/manifest.json").await.unwrap(), Some(2));
        let read = format!("{:?}", Target::open_in(&url, &ctx).unwrap().store());
        assert!(read.contains("fsync: true"), "{read}");
    }
}
