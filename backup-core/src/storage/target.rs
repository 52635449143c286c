//! [`Target`]: one repository, seen through the operations backups need.
//!
//! Contract:
//! - `put_stream` uploads a stream of unknown length with bounded memory: at most
//!   `(max_concurrency + 1) * part_size` bytes are buffered. Small objects (under one part) are
//!   sent with a single PUT. On error or cancellation the multipart upload is aborted, so no
//!   partial object becomes visible.
//! - `put_create` writes only if nothing exists at the key (conditional PUT where the store has
//!   it; otherwise a HEAD check, which is racy but the key is unique anyway).
//! - `get_stream` resumes from the current offset after a dropped connection, as often as each
//!   resume makes progress (at most 5 times in a row without a byte).
//! - Keys are relative to the repository prefix and come only from `format::layout`.

use std::sync::Arc;

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{
    GetOptions, GetRange, ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload, WriteMultipart,
};

pub use super::url::Capabilities;
use super::url::{Access, OpenedStore, StoreConfig};
use crate::codec::ByteStream;
use crate::error::{Error, Result};
use crate::progress::Context;

/// Default multipart part size: above S3's 5 MiB minimum.
pub const DEFAULT_PART_SIZE: usize = 8 << 20;
/// S3's limit on parts per upload.
pub const MAX_PARTS: u64 = 10_000;

/// Metadata of a listed object, key relative to the repository.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    /// Key relative to the repository prefix.
    pub key: String,
    /// Size in bytes.
    pub size: u64,
    /// Last modification time.
    pub modified: chrono::DateTime<chrono::Utc>,
}

/// Default time to live of a repository lease (`lease`): a holder refreshes it every third of
/// this; `DBBACKUP_STORE_LEASE_TTL` overrides it per repository.
pub const DEFAULT_LEASE_TTL_SECS: u64 = 900;

/// One repository.
#[derive(Clone)]
pub struct Target {
    store: Arc<dyn ObjectStore>,
    prefix: String,
    display: String,
    caps: Capabilities,
    part_size: usize,
    max_concurrency: usize,
    resume_attempts: u32,
    lease_ttl: std::time::Duration,
    uploads: super::upload::Uploads,
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Target({})", self.display)
    }
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.display)
    }
}

/// Bytes per read of a local file (see [`body_stream`]).
const FILE_READ_CHUNK: usize = 1 << 20;

/// The body of a GET as a stream. A local file (object_store's `LocalFileSystem`) is read by one
/// blocking thread in [`FILE_READ_CHUNK`]s, a chunk ahead of the consumer: object_store's own
/// stream reads it 8 KiB at a time with a `spawn_blocking` each (~80 000 thread hand-offs per
/// 600 MiB object), which cost a restore from a local repository more CPU in wakeups than its
/// SHA-256. Other payloads stream as the store gives them.
fn body_stream(r: object_store::GetResult) -> ByteStream {
    let object_store::GetResult { payload, range, .. } = r;
    let (mut file, path) = match payload {
        object_store::GetResultPayload::File(file, path) => (file, path),
        object_store::GetResultPayload::Stream(s) => {
            return s.map_err(|e| Error::storage("read body", e)).boxed();
        }
    };
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes>>(2);
    tokio::task::spawn_blocking(move || {
        use std::io::{Read, Seek, SeekFrom};
        let fail = |e: std::io::Error| Error::io(format!("read {}", path.display()), e);
        if let Err(e) = file.seek(SeekFrom::Start(range.start)) {
            let _ = tx.blocking_send(Err(fail(e)));
            return;
        }
        let mut left = range.end.saturating_sub(range.start);
        while left > 0 {
            let want = left.min(FILE_READ_CHUNK as u64);
            let mut buf = Vec::with_capacity(want as usize);
            match (&mut file).take(want).read_to_end(&mut buf) {
                // The file is shorter than the store said: the stream ends short, and the
                // size check downstream reports it.
                Ok(0) => return,
                Ok(n) => {
                    left -= n as u64;
                    if tx.blocking_send(Ok(Bytes::from(buf))).is_err() {
                        return; // the consumer went away
                    }
                }
                Err(e) => {
                    let _ = tx.blocking_send(Err(fail(e)));
                    return;
                }
            }
        }
    });
    crate::codec::compress::ChannelStream::new(rx).boxed()
}

impl Target {
    /// Wraps a store. `prefix` (no leading/trailing slash needed) is prepended to every key;
    /// `display` is how the repository is named in messages (never with credentials).
    pub fn new(
        store: Arc<dyn ObjectStore>,
        prefix: &str,
        display: impl Into<String>,
        caps: Capabilities,
    ) -> Self {
        Target {
            store,
            prefix: prefix.trim_matches('/').to_string(),
            display: display.into(),
            caps,
            part_size: DEFAULT_PART_SIZE,
            max_concurrency: 4,
            resume_attempts: 5,
            lease_ttl: std::time::Duration::from_secs(DEFAULT_LEASE_TTL_SECS),
            uploads: super::upload::Uploads::default(),
        }
    }

    /// How the store's unfinished uploads are found and removed (see [`super::upload`]).
    pub(crate) fn with_uploads(mut self, uploads: super::upload::Uploads) -> Self {
        self.uploads = uploads;
        self
    }

    /// Uploads that were started and never finished (a killed run's staging files in a local
    /// directory, open S3 multipart uploads), keys relative to the repository; `None` when the
    /// store gives no way to list them (Azure, GCS: see `storage/upload.rs`).
    pub async fn open_uploads(&self) -> Result<Option<Vec<super::OpenUpload>>> {
        self.uploads.list(&self.prefix, &self.display).await
    }

    /// Removes an unfinished upload found by [`Target::open_uploads`] (aborts it on S3, deletes
    /// the staging file of a local directory). One already gone is not an error.
    pub async fn abort_upload(&self, upload: &super::OpenUpload) -> Result<()> {
        self.uploads.abort(&self.prefix, &self.display, upload).await
    }

    /// Why [`Target::open_uploads`] cannot list this store's unfinished uploads, if it cannot.
    pub fn uploads_unlisted(&self) -> Option<&'static str> {
        self.uploads.unlisted_reason()
    }

    /// Opens a repository from its URL without store settings (local directories, `memory://`;
    /// a cloud store opened this way has no credentials). A local directory is created if
    /// missing. See `storage/url.rs`.
    pub fn open(url: &str) -> Result<Self> {
        Self::open_with(url, &StoreConfig::default())
    }

    /// Opens a repository to read it, with the settings the context holds for it
    /// ([`RepoSettings`](crate::settings::RepoSettings)): how the use-cases open the repositories
    /// they read. A local directory that does not exist is an error
    /// ([`Error::MissingRepository`]), never created.
    pub fn open_in(url: &str, ctx: &Context) -> Result<Self> {
        Ok(Self::from_opened(super::url::open_with(url, ctx.stores.for_repo(url), Access::Read)?))
    }

    /// Opens a repository to write backups into it, with the settings the context holds for it:
    /// a local directory is created if missing.
    pub fn create_in(url: &str, ctx: &Context) -> Result<Self> {
        Ok(Self::from_opened(super::url::open_with(url, ctx.stores.for_repo(url), Access::Create)?))
    }

    /// Opens a repository from its URL with explicit store settings (see `storage/url.rs`); a local
    /// directory is created if missing.
    pub fn open_with(url: &str, cfg: &StoreConfig) -> Result<Self> {
        Ok(Self::from_opened(super::url::open_with(url, cfg, Access::Create)?))
    }

    fn from_opened(o: OpenedStore) -> Self {
        let target = Target::new(o.store, &o.prefix, o.display, o.caps).with_uploads(o.uploads);
        match o.lease_ttl {
            Some(ttl) => target.with_lease_ttl(ttl),
            None => target,
        }
    }

    /// Sets the multipart part size (bytes, at least 5 MiB for S3) and the number of parts in
    /// flight per upload. Peak buffered bytes per upload = `(max_concurrency + 1) * part_size`.
    pub fn with_upload_limits(mut self, part_size: usize, max_concurrency: usize) -> Self {
        self.part_size = part_size.max(1024);
        self.max_concurrency = max_concurrency.max(1);
        self
    }

    /// How many times in a row a broken download is resumed without getting a byte further before
    /// giving up (the count restarts after progress).
    pub fn with_resume_attempts(mut self, n: u32) -> Self {
        self.resume_attempts = n;
        self
    }

    /// How long a lease taken on this repository lives without a refresh (see `lease`).
    pub fn with_lease_ttl(mut self, ttl: std::time::Duration) -> Self {
        self.lease_ttl = ttl.max(std::time::Duration::from_secs(1));
        self
    }

    /// The time to live of leases taken on this repository.
    pub fn lease_ttl(&self) -> std::time::Duration {
        self.lease_ttl
    }

    /// The underlying store (to wrap it, e.g. with the fault injector in tests).
    pub fn store(&self) -> Arc<dyn ObjectStore> {
        self.store.clone()
    }

    /// The key prefix inside the store.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The same repository seen through another store (a wrapper of this one).
    pub fn with_store(&self, store: Arc<dyn ObjectStore>) -> Self {
        Target { store, ..self.clone() }
    }

    /// How the repository is named in messages.
    pub fn display_name(&self) -> &str {
        &self.display
    }

    /// The store's capabilities.
    pub fn capabilities(&self) -> Capabilities {
        self.caps
    }

    /// The part size used for an upload of about `size_hint` bytes: the configured size, grown
    /// so the upload stays under `MAX_PARTS` parts.
    pub fn part_size_for(&self, size_hint: Option<u64>) -> usize {
        let min = self.part_size as u64;
        let needed = size_hint.map(|s| s.div_ceil(MAX_PARTS - 100)).unwrap_or(0);
        usize::try_from(min.max(needed)).unwrap_or(usize::MAX)
    }

    fn path(&self, key: &str) -> Path {
        if self.prefix.is_empty() { Path::from(key) } else { Path::from(format!("{}/{key}", self.prefix)) }
    }

    fn relative(&self, p: &Path) -> String {
        let s = p.as_ref();
        if self.prefix.is_empty() {
            s.to_string()
        } else {
            s.strip_prefix(&self.prefix)
                .map(|r| r.trim_start_matches('/').to_string())
                .unwrap_or_else(|| s.to_string())
        }
    }

    fn ctx(&self, op: &str, key: &str) -> String {
        format!("{op} {key} in {}", self.display)
    }

    /// Uploads a stream; returns the number of bytes stored. See the module contract.
    pub async fn put_stream(
        &self,
        key: &str,
        mut data: ByteStream,
        size_hint: Option<u64>,
        ctx: &Context,
    ) -> Result<u64> {
        let part_size = self.part_size_for(size_hint);
        let path = self.path(key);
        // Buffer the first part: objects smaller than one part go up in a single PUT. The
        // chunks are kept as they came (no copy into one buffer: growing it copied every byte
        // of the first part about twice).
        let mut first: Vec<Bytes> = Vec::new();
        let mut total = 0u64;
        while total < part_size as u64 {
            ctx.check(&self.ctx("upload", key))?;
            match data.next().await {
                Some(Ok(b)) => {
                    total += b.len() as u64;
                    first.push(b);
                }
                Some(Err(e)) => return Err(e),
                None => {
                    let payload: PutPayload = first.into_iter().collect();
                    self.store
                        .put(&path, payload)
                        .await
                        .map_err(|e| Error::storage(self.ctx("upload", key), e))?;
                    return Ok(total);
                }
            }
        }
        let upload = self
            .store
            .put_multipart(&path)
            .await
            .map_err(|e| Error::storage(self.ctx("start upload of", key), e))?;
        let mut w = WriteMultipart::new_with_chunk_size(upload, part_size);
        for b in first {
            w.put(b);
        }
        if crate::failpoint::armed("upload-part-written") {
            // Crash tests: die with a part on the store (a staging file with bytes, an open
            // multipart upload with a part).
            let _ = w.wait_for_capacity(0).await;
            crate::failpoint::hit("upload-part-written");
        }
        let result: Result<()> = async {
            loop {
                ctx.check(&self.ctx("upload", key))?;
                w.wait_for_capacity(self.max_concurrency)
                    .await
                    .map_err(|e| Error::storage(self.ctx("upload part of", key), e))?;
                tokio::select! {
                    biased;
                    _ = ctx.cancel.cancelled() => return Err(Error::Cancelled(self.ctx("upload", key))),
                    item = data.next() => match item {
                        Some(Ok(b)) => {
                            total += b.len() as u64;
                            w.put(b);
                        }
                        Some(Err(e)) => return Err(e),
                        None => return Ok(()),
                    }
                }
            }
        }
        .await;
        match result {
            Ok(()) => {
                w.finish().await.map_err(|e| Error::storage(self.ctx("complete upload of", key), e))?;
                Ok(total)
            }
            Err(e) => {
                // Report the first error, not the abort's (the abort's is only logged).
                if let Err(abort) = w.abort().await {
                    tracing::warn!("aborting upload of {key} in {} after error: {abort}", self.display);
                }
                Err(e)
            }
        }
    }

    /// Writes small bytes only if nothing exists at `key`. Fails with [`Error::AlreadyExists`]
    /// otherwise.
    pub async fn put_create(&self, key: &str, bytes: Bytes) -> Result<()> {
        let path = self.path(key);
        if self.caps.conditional_put {
            let opts = PutOptions { mode: PutMode::Create, ..Default::default() };
            match self.store.put_opts(&path, PutPayload::from(bytes.clone()), opts).await {
                Ok(_) => return Ok(()),
                Err(object_store::Error::NotImplemented { .. }) => {}
                Err(e) => return Err(Error::storage(self.ctx("create", key), e)),
            }
        }
        if self.head(key).await?.is_some() {
            return Err(Error::AlreadyExists(self.ctx("object", key)));
        }
        self.put_bytes(key, bytes).await
    }

    /// Writes small bytes, replacing whatever is there.
    pub async fn put_bytes(&self, key: &str, bytes: Bytes) -> Result<()> {
        self.store
            .put(&self.path(key), PutPayload::from(bytes))
            .await
            .map_err(|e| Error::storage(self.ctx("write", key), e))?;
        Ok(())
    }

    /// Reads a small object whole, refusing anything over `max` bytes.
    pub async fn get_bytes(&self, key: &str, max: u64) -> Result<Bytes> {
        let r =
            self.store.get(&self.path(key)).await.map_err(|e| Error::storage(self.ctx("read", key), e))?;
        if r.meta.size > max {
            return Err(Error::integrity(
                self.ctx("object", key),
                format!("at most {max} bytes"),
                format!("{} bytes", r.meta.size),
            ));
        }
        r.bytes().await.map_err(|e| Error::storage(self.ctx("read", key), e))
    }

    /// Size of the object at `key`, or `None` if absent.
    pub async fn head(&self, key: &str) -> Result<Option<u64>> {
        match self.store.head(&self.path(key)).await {
            Ok(m) => Ok(Some(m.size)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(Error::storage(self.ctx("stat", key), e)),
        }
    }

    /// Streams an object, resuming at the current offset when the connection breaks mid-body:
    /// any number of times as long as each resume brings data, at most the configured number of
    /// times (5) in a row without a byte of progress.
    pub fn get_stream(&self, key: &str) -> ByteStream {
        struct St {
            t: Target,
            key: String,
            offset: u64,
            body: Option<ByteStream>,
            attempts: u32,
            done: bool,
        }
        let st =
            St { t: self.clone(), key: key.to_string(), offset: 0, body: None, attempts: 0, done: false };
        futures::stream::unfold(st, |mut st| async move {
            loop {
                if st.done {
                    return None;
                }
                if st.body.is_none() {
                    let path = st.t.path(&st.key);
                    let opts = GetOptions {
                        range: (st.offset > 0).then_some(GetRange::Offset(st.offset)),
                        ..Default::default()
                    };
                    match st.t.store.get_opts(&path, opts).await {
                        Ok(r) => st.body = Some(body_stream(r)),
                        Err(e) => {
                            st.done = true;
                            return Some((Err(Error::storage(st.t.ctx("read", &st.key), e)), st));
                        }
                    }
                }
                let body = st.body.as_mut()?;
                match body.next().await {
                    Some(Ok(b)) => {
                        st.offset += b.len() as u64;
                        // Progress: the budget of resumes is for breaks in a row without any.
                        if !b.is_empty() {
                            st.attempts = 0;
                        }
                        return Some((Ok(b), st));
                    }
                    None => return None,
                    Some(Err(e)) => {
                        st.body = None;
                        if st.attempts < st.t.resume_attempts && !matches!(e, Error::NotFound { .. }) {
                            st.attempts += 1;
                            tracing::warn!(
                                "download of {} from {} broke at byte {} ({e}); resuming (attempt {})",
                                st.key,
                                st.t.display,
                                st.offset,
                                st.attempts
                            );
                            continue;
                        }
                        st.done = true;
                        return Some((Err(e.context(st.t.ctx("read", &st.key))), st));
                    }
                }
            }
        })
        .boxed()
    }

    /// Lists every object under `prefix` (relative), recursively.
    pub async fn list(&self, prefix: &str) -> Result<Vec<Listed>> {
        let p = self.path(prefix.trim_end_matches('/'));
        let p = if p.as_ref().is_empty() { None } else { Some(p) };
        let items: Vec<_> =
            self.store.list(p.as_ref()).try_collect().await.map_err(|e| {
                Error::storage(self.ctx("list", if prefix.is_empty() { "/" } else { prefix }), e)
            })?;
        Ok(items
            .into_iter()
            .map(|m| Listed { key: self.relative(&m.location), size: m.size, modified: m.last_modified })
            .collect())
    }

    /// Lists the immediate "directories" under `prefix` (relative), e.g. backup ids at the top.
    pub async fn list_dirs(&self, prefix: &str) -> Result<Vec<String>> {
        let p = self.path(prefix.trim_end_matches('/'));
        let p = if p.as_ref().is_empty() { None } else { Some(p) };
        let r =
            self.store.list_with_delimiter(p.as_ref()).await.map_err(|e| {
                Error::storage(self.ctx("list", if prefix.is_empty() { "/" } else { prefix }), e)
            })?;
        Ok(r.common_prefixes.iter().map(|p| self.relative(p)).collect())
    }

    /// Deletes one object; deleting an absent object is not an error.
    pub async fn delete(&self, key: &str) -> Result<()> {
        match self.store.delete(&self.path(key)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(Error::storage(self.ctx("delete", key), e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A local repository's object streams in [`FILE_READ_CHUNK`]s (not object_store's 8 KiB
    /// pieces, one thread hand-off each), every byte in order, and a resume from an offset reads
    /// the rest.
    #[tokio::test]
    async fn local_objects_stream_in_large_chunks() {
        let dir = tempfile::tempdir().unwrap();
        let t = Target::open(dir.path().to_str().unwrap()).unwrap();
        let body: Vec<u8> = (0..(3 * FILE_READ_CHUNK + 5)).map(|i| (i % 251) as u8).collect();
        t.put_bytes("b/obj", Bytes::from(body.clone())).await.unwrap();
        let chunks: Vec<Bytes> = t.get_stream("b/obj").try_collect().await.unwrap();
        let sizes: Vec<usize> = chunks.iter().map(|c| c.len()).collect();
        assert_eq!(sizes, [FILE_READ_CHUNK, FILE_READ_CHUNK, FILE_READ_CHUNK, 5]);
        assert_eq!(chunks.concat(), body);
        let r = t
            .store
            .get_opts(&t.path("b/obj"), GetOptions { range: Some(GetRange::Offset(7)), ..Default::default() })
            .await
            .unwrap();
        let rest: Vec<Bytes> = body_stream(r).try_collect().await.unwrap();
        assert_eq!(rest.concat(), body[7..]);
    }
}
