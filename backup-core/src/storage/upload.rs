//! Unfinished uploads: what a run killed mid-write (SIGKILL, power loss, OOM) leaves in a
//! repository besides whole objects, found and removed per backend so `prune` can sweep them and
//! `status` can count them.
//!
//! - **Local directory**: object_store's `LocalFileSystem` writes every object (single PUT or
//!   multipart) into a staging file `<key>#<n>` beside it and renames it into place when done.
//!   A killed writer leaves that file; the store's own listing hides it. Found by walking the
//!   directory; removed with `unlink` (a writer still holding it open then fails its rename,
//!   it never publishes a partial object).
//! - **S3**: a multipart upload that is neither completed nor aborted keeps its parts (billed)
//!   until a bucket lifecycle rule removes it. object_store 0.14 has no call that lists them, so
//!   they are listed with S3's `ListMultipartUploads` (a presigned `GET ?uploads`, signed by
//!   object_store with the store's credentials) and removed with `AbortMultipartUpload`
//!   (object_store's `MultipartStore::abort_multipart`).
//! - **Azure**: uncommitted blocks are not listable per upload through object_store, and Azure
//!   discards them by itself after 7 days: nothing to sweep.
//! - **GCS**: object_store's multipart uploads are XML-API multipart uploads; it cannot list
//!   them and there is no emulator to test a listing against: a bucket lifecycle rule
//!   (`AbortIncompleteMultipartUpload`) removes them.
//! - **memory://**: nothing outlives the process.

use std::path::PathBuf;
#[cfg(feature = "cloud")]
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// An upload a run started and never finished.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpenUpload {
    /// The object it would have become, relative to the repository.
    pub key: String,
    /// The store's handle of the upload: the staging file's key (`<key>#<n>`) in a local
    /// directory, the multipart upload id on S3.
    pub upload_id: String,
    /// When it was last written to (local: the staging file's modification time) or started (S3).
    pub started: DateTime<Utc>,
    /// Bytes written so far, where the store says (local staging files).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes: Option<u64>,
}

/// How a store's unfinished uploads are found and removed.
#[derive(Clone)]
pub(crate) enum Uploads {
    /// Nothing survives the process (`memory://`).
    Vanish,
    /// `LocalFileSystem` staging files under this root directory.
    Local(PathBuf),
    /// S3 multipart uploads.
    #[cfg(feature = "cloud")]
    S3(Arc<S3Uploads>),
    /// The store gives no way to list them; why, and what removes them instead.
    Unlisted(&'static str),
}

impl Default for Uploads {
    /// A store wrapped by [`Target::new`](super::Target::new) without saying how.
    fn default() -> Self {
        Uploads::Unlisted("this store's unfinished uploads cannot be listed")
    }
}

impl Uploads {
    /// Every unfinished upload under `prefix` (the repository's key prefix, no trailing slash),
    /// keys relative to it; `None` when the store cannot list them.
    pub(crate) async fn list(&self, prefix: &str, display: &str) -> Result<Option<Vec<OpenUpload>>> {
        let found = match self {
            Uploads::Vanish => Vec::new(),
            Uploads::Unlisted(_) => return Ok(None),
            Uploads::Local(root) => {
                let root = root.clone();
                let what = format!("list staging files in {display}");
                tokio::task::spawn_blocking(move || staging_files(&root))
                    .await
                    .map_err(|e| Error::io(what.clone(), std::io::Error::other(e)))?
                    .map_err(|e| Error::io(what, e))?
            }
            #[cfg(feature = "cloud")]
            Uploads::S3(s3) => s3.list(prefix, display).await?,
        };
        // Local staging files are found relative to the root (a local repository has no
        // prefix); S3 keys are made relative to the repository here.
        Ok(Some(
            found
                .into_iter()
                .filter_map(|u| Some(OpenUpload { key: relative(prefix, &u.key)?, ..u }))
                .collect(),
        ))
    }

    /// Removes one unfinished upload (keys relative to `prefix`). Removing one that is already
    /// gone is not an error.
    pub(crate) async fn abort(&self, prefix: &str, display: &str, u: &OpenUpload) -> Result<()> {
        #[cfg(not(feature = "cloud"))]
        let _ = prefix; // only S3's multipart uploads are named by their key
        match self {
            Uploads::Vanish | Uploads::Unlisted(_) => Ok(()),
            Uploads::Local(root) => {
                // Only ever a staging file name, never a published object.
                if !is_staging_name(&u.upload_id) || u.upload_id.split('/').any(|s| s == ".." || s.is_empty())
                {
                    return Err(Error::InvalidInput(format!("{} is not a staging file", u.upload_id)));
                }
                let path = root.join(&u.upload_id);
                match std::fs::remove_file(&path) {
                    Ok(()) => Ok(()),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                    Err(e) => Err(Error::io(format!("remove staging file {} in {display}", u.upload_id), e)),
                }
            }
            #[cfg(feature = "cloud")]
            Uploads::S3(s3) => s3.abort(&absolute(prefix, &u.key), &u.upload_id, display).await,
        }
    }

    /// Why the store's unfinished uploads are not listed, when they are not.
    pub(crate) fn unlisted_reason(&self) -> Option<&'static str> {
        match self {
            Uploads::Unlisted(why) => Some(why),
            _ => None,
        }
    }
}

fn relative(prefix: &str, key: &str) -> Option<String> {
    if prefix.is_empty() {
        return Some(key.to_string());
    }
    key.strip_prefix(prefix)?.strip_prefix('/').map(str::to_string)
}

#[cfg(feature = "cloud")]
fn absolute(prefix: &str, key: &str) -> String {
    if prefix.is_empty() { key.to_string() } else { format!("{prefix}/{key}") }
}

/// `name#123`: object_store's staging file for `name` (a `#` followed by digits only).
fn is_staging_name(name: &str) -> bool {
    let file = name.rsplit('/').next().unwrap_or(name);
    match file.rsplit_once('#') {
        Some((base, n)) => !base.is_empty() && !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()),
        None => false,
    }
}

/// Walks `root` (never following symbolic links) for staging files; keys relative to `root`.
fn staging_files(root: &std::path::Path) -> std::io::Result<Vec<OpenUpload>> {
    let mut out = Vec::new();
    let mut dirs = vec![root.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            // Removed meanwhile (a prune deleting a backup's last object).
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && dir != root => continue,
            Err(e) => return Err(e),
        };
        for entry in entries {
            let entry = entry?;
            let meta = match entry.path().symlink_metadata() {
                Ok(m) => m,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            };
            if meta.is_dir() {
                dirs.push(entry.path());
                continue;
            }
            if !meta.is_file() {
                continue;
            }
            let Ok(rel) = entry.path().strip_prefix(root).map(|p| p.to_string_lossy().into_owned()) else {
                continue;
            };
            if !is_staging_name(&rel) {
                continue;
            }
            let key = rel.rsplit_once('#').map(|(k, _)| k.to_string()).unwrap_or_default();
            let started = meta.modified().map(DateTime::<Utc>::from).unwrap_or_else(|_| Utc::now());
            out.push(OpenUpload { key, upload_id: rel, started, bytes: Some(meta.len()) });
        }
    }
    out.sort_by(|a, b| a.upload_id.cmp(&b.upload_id));
    Ok(out)
}

/// S3 multipart uploads: listed through a presigned `ListMultipartUploads`, aborted through
/// object_store.
#[cfg(feature = "cloud")]
pub(crate) struct S3Uploads {
    store: Arc<object_store::aws::AmazonS3>,
    http: reqwest::Client,
}

#[cfg(feature = "cloud")]
impl S3Uploads {
    pub(crate) fn new(store: Arc<object_store::aws::AmazonS3>, http: reqwest::Client) -> Self {
        S3Uploads { store, http }
    }

    async fn list(&self, prefix: &str, display: &str) -> Result<Vec<OpenUpload>> {
        use object_store::signer::{Method, SignedUrlOptions, Signer};
        let what = || format!("list unfinished uploads in {display}");
        let wanted = if prefix.is_empty() { String::new() } else { format!("{prefix}/") };
        let mut out = Vec::new();
        let mut markers: Option<(String, String)> = None;
        // Bounded: at most 1000 uploads a page, and a page that does not move on ends it.
        for _ in 0..10_000 {
            let mut query =
                vec![("uploads".to_string(), String::new()), ("prefix".to_string(), wanted.clone())];
            if let Some((key, id)) = &markers {
                query.push(("key-marker".into(), key.clone()));
                query.push(("upload-id-marker".into(), id.clone()));
            }
            let opts = SignedUrlOptions::default().with_query(query);
            let url = self
                .store
                .signed_url_opts(
                    Method::GET,
                    &object_store::path::Path::from(""),
                    std::time::Duration::from_secs(300),
                    &opts,
                )
                .await
                .map_err(|e| Error::storage(what(), e))?;
            let resp = self.http.get(url).send().await.map_err(|e| s3_error(what(), e.without_url()))?;
            let status = resp.status();
            let body = resp.text().await.map_err(|e| s3_error(what(), e.without_url()))?;
            if !status.is_success() {
                let code = xml_code(&body).unwrap_or_default();
                return Err(s3_error(what(), format!("HTTP {status} {code}").trim().to_string()));
            }
            let page: ListUploadsPage = quick_xml::de::from_str(&body)
                .map_err(|e| s3_error(what(), format!("unreadable answer: {e}")))?;
            for u in page.uploads {
                if !u.key.starts_with(&wanted) {
                    continue;
                }
                let started = u.initiated.parse::<DateTime<Utc>>().unwrap_or_else(|_| Utc::now());
                out.push(OpenUpload { key: u.key, upload_id: u.upload_id, started, bytes: None });
            }
            let next = page.next_key_marker.zip(page.next_upload_id_marker);
            match next {
                Some(n) if page.is_truncated && markers.as_ref() != Some(&n) => markers = Some(n),
                _ => return Ok(out),
            }
        }
        Ok(out)
    }

    async fn abort(&self, key: &str, upload_id: &str, display: &str) -> Result<()> {
        use object_store::multipart::MultipartStore;
        let path = object_store::path::Path::from(key);
        match self.store.abort_multipart(&path, &upload_id.to_string()).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(Error::storage(format!("abort upload {upload_id} of {key} in {display}"), e)),
        }
    }
}

#[cfg(feature = "cloud")]
fn s3_error(context: String, e: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Error {
    Error::storage(context, object_store::Error::Generic { store: "S3", source: e.into() })
}

#[cfg(feature = "cloud")]
fn xml_code(body: &str) -> Option<String> {
    let start = body.find("<Code>")? + "<Code>".len();
    let end = body[start..].find("</Code>")? + start;
    Some(body[start..end].to_string())
}

/// One page of S3's `ListMultipartUploadsResult`.
#[cfg(feature = "cloud")]
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ListUploadsPage {
    #[serde(default)]
    is_truncated: bool,
    #[serde(default)]
    next_key_marker: Option<String>,
    #[serde(default)]
    next_upload_id_marker: Option<String>,
    #[serde(default, rename = "Upload")]
    uploads: Vec<ListedUpload>,
}

#[cfg(feature = "cloud")]
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ListedUpload {
    key: String,
    upload_id: String,
    #[serde(default)]
    initiated: String,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn staging_names() {
        assert!(is_staging_name("a/b/000001.db.zst#1"));
        assert!(is_staging_name("x.json#12"));
        assert!(!is_staging_name("a/b#c/file"));
        assert!(!is_staging_name("a/file#"));
        assert!(!is_staging_name("a/file#1a"));
        assert!(!is_staging_name("a/#1"));
        assert!(!is_staging_name("a/manifest.json"));
    }

    #[cfg(feature = "cloud")]
    #[test]
    fn reads_a_list_multipart_uploads_page() {
        let body = r#"<?xml version="1.0" encoding="UTF-8"?>
<ListMultipartUploadsResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">
  <Bucket>b</Bucket><KeyMarker></KeyMarker><UploadIdMarker></UploadIdMarker>
  <NextKeyMarker>p/k2</NextKeyMarker><NextUploadIdMarker>id2</NextUploadIdMarker>
  <MaxUploads>1000</MaxUploads><IsTruncated>true</IsTruncated>
  <Upload><Key>p/k1</Key><UploadId>id1</UploadId><Initiated>2026-11-23T10:00:00.000Z</Initiated></Upload>
  <CommonPrefixes><Prefix>p/x/</Prefix></CommonPrefixes>
  <Upload><Key>p/k2</Key><UploadId>id2</UploadId><Initiated>2026-11-23T11:00:00.000Z</Initiated></Upload>
</ListMultipartUploadsResult>"#;
        let page: ListUploadsPage = quick_xml::de::from_str(body).unwrap();
        assert!(page.is_truncated);
        assert_eq!(page.uploads.len(), 2);
        assert_eq!((page.uploads[1].key.as_str(), page.uploads[1].upload_id.as_str()), ("p/k2", "id2"));
        assert_eq!(page.next_key_marker.as_deref(), Some("p/k2"));
        let empty: ListUploadsPage = quick_xml::de::from_str(
            "<ListMultipartUploadsResult><IsTruncated>false</IsTruncated></ListMultipartUploadsResult>",
        )
        .unwrap();
        assert!(empty.uploads.is_empty() && !empty.is_truncated);
    }
}
