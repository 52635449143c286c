//! A fault-injecting [`ObjectStore`] wrapper for tests (feature `testing`): fails the nth write,
//! flips or truncates bytes on read, drops a read connection midway, slows parts down. Real
//! behaviour underneath; only the listed faults are injected.

use std::fmt;
use std::ops::Range;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, GetResultPayload, ListResult, MultipartUpload, ObjectMeta,
    ObjectStore, ObjectStoreExt, PutMultipartOptions, PutOptions, PutPayload, PutResult, Result, UploadPart,
};

/// Which faults to inject. Key filters match when the object's path contains the string.
#[derive(Debug, Default, Clone)]
pub struct Faults {
    /// Writes (single PUTs and multipart parts) that succeed before every later one fails.
    pub fail_writes_after: Option<usize>,
    /// Flip the byte at this offset when reading matching objects.
    pub flip_byte: Option<(String, u64)>,
    /// Serve only this many bytes of matching objects.
    pub truncate: Option<(String, u64)>,
    /// Break the first read of a matching object after this many bytes (a dropped connection).
    pub break_read_once: Option<(String, u64)>,
    /// Break every read of a matching object this many bytes after the offset it starts at (a
    /// flaky link: each resume gets that far and drops again; 0: no read ever gets a byte).
    pub break_read_every: Option<(String, u64)>,
    /// Delay every multipart part by this long (to cancel mid-upload).
    pub part_delay: Option<Duration>,
    /// Just before the first single PUT of a key ending in `.0`, write the objects of `.1` (names
    /// relative to that key's directory) straight into the store: another run that got there
    /// first. Used once.
    pub plant_beside: Option<(String, Vec<(String, Bytes)>)>,
}

/// The wrapper.
pub struct FaultStore {
    inner: Arc<dyn ObjectStore>,
    faults: Arc<Mutex<Faults>>,
    writes: Arc<AtomicUsize>,
    aborted: Arc<AtomicUsize>,
}

impl fmt::Debug for FaultStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FaultStore({})", self.inner)
    }
}

impl fmt::Display for FaultStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FaultStore({})", self.inner)
    }
}

impl FaultStore {
    /// Wraps `inner` with the given faults.
    pub fn new(inner: Arc<dyn ObjectStore>, faults: Faults) -> Self {
        FaultStore {
            inner,
            faults: Arc::new(Mutex::new(faults)),
            writes: Arc::default(),
            aborted: Arc::default(),
        }
    }

    /// Replaces the faults (e.g. to heal the store).
    pub fn set_faults(&self, faults: Faults) {
        *self.lock() = faults;
    }

    /// Number of writes (single PUTs and multipart parts) attempted so far.
    pub fn writes(&self) -> usize {
        self.writes.load(Ordering::SeqCst)
    }

    /// Number of multipart uploads aborted so far.
    pub fn aborted_uploads(&self) -> usize {
        self.aborted.load(Ordering::SeqCst)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Faults> {
        self.faults.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn write_allowed(faults: &Mutex<Faults>, writes: &AtomicUsize) -> Result<()> {
        let n = writes.fetch_add(1, Ordering::SeqCst);
        let limit = faults.lock().unwrap_or_else(|p| p.into_inner()).fail_writes_after;
        match limit {
            Some(limit) if n >= limit => Err(object_store::Error::Generic {
                store: "FaultStore",
                source: format!("injected write failure (write #{n})").into(),
            }),
            _ => Ok(()),
        }
    }
}

fn injected(msg: &str) -> object_store::Error {
    object_store::Error::Generic { store: "FaultStore", source: msg.to_string().into() }
}

#[async_trait]
impl ObjectStore for FaultStore {
    async fn put_opts(&self, location: &Path, payload: PutPayload, opts: PutOptions) -> Result<PutResult> {
        let plant = {
            let mut f = self.lock();
            match &f.plant_beside {
                Some((suffix, _)) if location.as_ref().ends_with(suffix.as_str()) => f.plant_beside.take(),
                _ => None,
            }
        };
        if let Some((_, objects)) = plant {
            let dir = location.as_ref().rsplit_once('/').map(|(d, _)| format!("{d}/")).unwrap_or_default();
            for (name, bytes) in objects {
                self.inner.put(&Path::from(format!("{dir}{name}")), PutPayload::from(bytes)).await?;
            }
        }
        Self::write_allowed(&self.faults, &self.writes)?;
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> Result<Box<dyn MultipartUpload>> {
        let inner = self.inner.put_multipart_opts(location, opts).await?;
        Ok(Box::new(FaultUpload {
            inner,
            faults: self.faults.clone(),
            writes: self.writes.clone(),
            aborted: self.aborted.clone(),
        }))
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        let faults = self.lock().clone();
        let key = location.as_ref().to_string();
        let mut r = self.inner.get_opts(location, options).await?;
        let start = r.range.start;
        let payload =
            std::mem::replace(&mut r.payload, GetResultPayload::Stream(futures::stream::empty().boxed()));
        let tmp = GetResult {
            payload,
            meta: r.meta.clone(),
            range: r.range.clone(),
            attributes: r.attributes.clone(),
            extensions: Default::default(),
        };
        let mut stream = tmp.into_stream();
        if let Some((pat, at)) = faults.flip_byte.clone()
            && key.contains(&pat)
        {
            let mut pos = start;
            stream = stream
                .map(move |item| {
                    item.map(|b| {
                        let range = pos..pos + b.len() as u64;
                        pos = range.end;
                        if range.contains(&at) {
                            let mut v = b.to_vec();
                            v[(at - range.start) as usize] ^= 0x01;
                            Bytes::from(v)
                        } else {
                            b
                        }
                    })
                })
                .boxed();
        }
        if let Some((pat, len)) = faults.truncate.clone()
            && key.contains(&pat)
        {
            stream = limit(stream, start, len, false).boxed();
        }
        if let Some((pat, at)) = faults.break_read_once.clone()
            && key.contains(&pat)
            && start < at
        {
            self.lock().break_read_once = None;
            stream = limit(stream, start, at, true).boxed();
        }
        if let Some((pat, n)) = faults.break_read_every.clone()
            && key.contains(&pat)
            && start < r.meta.size
        {
            stream = limit(stream, start, start + n, true).boxed();
        }
        r.payload = GetResultPayload::Stream(stream);
        Ok(r)
    }

    async fn get_ranges(&self, location: &Path, ranges: &[Range<u64>]) -> Result<Vec<Bytes>> {
        self.inner.get_ranges(location, ranges).await
    }

    fn delete_stream(&self, locations: BoxStream<'static, Result<Path>>) -> BoxStream<'static, Result<Path>> {
        self.inner.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        self.inner.list(prefix)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        self.inner.copy_opts(from, to, options).await
    }
}

/// Passes at most `end - start` bytes (absolute offsets), then ends, or errors if `error`.
fn limit(
    stream: BoxStream<'static, Result<Bytes>>,
    start: u64,
    end: u64,
    error: bool,
) -> BoxStream<'static, Result<Bytes>> {
    futures::stream::unfold((stream, start, false), move |(mut s, pos, done)| async move {
        if done || pos >= end {
            if error && !done {
                return Some((Err(injected("injected dropped connection")), (s, pos, true)));
            }
            return None;
        }
        match s.next().await {
            Some(Ok(b)) => {
                let keep = ((end - pos) as usize).min(b.len());
                Some((Ok(b.slice(..keep)), (s, pos + keep as u64, false)))
            }
            other => other.map(|item| (item, (s, pos, true))),
        }
    })
    .boxed()
}

#[derive(Debug)]
struct FaultUpload {
    inner: Box<dyn MultipartUpload>,
    faults: Arc<Mutex<Faults>>,
    writes: Arc<AtomicUsize>,
    aborted: Arc<AtomicUsize>,
}

#[async_trait]
impl MultipartUpload for FaultUpload {
    fn put_part(&mut self, data: PutPayload) -> UploadPart {
        let allowed = FaultStore::write_allowed(&self.faults, &self.writes);
        let delay = self.faults.lock().unwrap_or_else(|p| p.into_inner()).part_delay;
        let fut = self.inner.put_part(data);
        Box::pin(async move {
            if let Some(d) = delay {
                tokio::time::sleep(d).await;
            }
            allowed?;
            fut.await
        })
    }

    async fn complete(&mut self) -> Result<PutResult> {
        self.inner.complete().await
    }

    async fn abort(&mut self) -> Result<()> {
        self.aborted.fetch_add(1, Ordering::SeqCst);
        self.inner.abort().await
    }
}
