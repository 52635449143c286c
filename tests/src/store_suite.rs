//! The store conformance suite: the same checks against every repository backend (memory,
//! local directory, S3 via moto, Azure via Azurite). Adding a backend is one `store_suite!` line.

use std::sync::Arc;

use backup_core::{Context, Error, Target};
use backup_core::{FaultStore, Faults};
use bytes::Bytes;
use futures::StreamExt;

/// Generates the suite for a backend. `$factory` is an async expression yielding
/// `Option<Target>`, or `Option<(Target, TempDir)>` for a backend living in a temp directory that
/// is removed when the test ends (None: service unavailable outside CI).
#[macro_export]
macro_rules! store_suite {
    ($name:ident, $factory:expr) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;
            async fn target() -> Option<$crate::store_suite::Backend> {
                $factory.await.map(Into::into)
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn small_and_multipart_round_trip() {
                let Some(b) = target().await else { return };
                $crate::store_suite::small_and_multipart_round_trip(&b.target).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn create_only_refuses_overwrite() {
                let Some(b) = target().await else { return };
                $crate::store_suite::create_only_refuses_overwrite(&b.target).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn failed_upload_leaves_nothing() {
                let Some(b) = target().await else { return };
                $crate::store_suite::failed_upload_leaves_nothing(&b.target).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn download_resumes_after_dropped_connection() {
                let Some(b) = target().await else { return };
                $crate::store_suite::download_resumes_after_dropped_connection(&b.target).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn abandoned_upload_is_listed_and_removed() {
                let Some(b) = target().await else { return };
                $crate::store_suite::abandoned_upload_is_listed_and_removed(&b.target).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn list_dirs_and_delete() {
                let Some(b) = target().await else { return };
                $crate::store_suite::list_dirs_and_delete(&b.target).await;
            }
        }
    };
}

/// A backend under test, with the temp directory it lives in (if any), removed when it drops.
pub struct Backend {
    pub target: Target,
    _dir: Option<tempfile::TempDir>,
}

impl From<Target> for Backend {
    fn from(target: Target) -> Self {
        Backend { target, _dir: None }
    }
}

impl From<(Target, tempfile::TempDir)> for Backend {
    fn from((target, dir): (Target, tempfile::TempDir)) -> Self {
        Backend { target, _dir: Some(dir) }
    }
}

/// Part size used by the suite (S3's minimum).
pub const PART: usize = 5 << 20;

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| (i as u32).wrapping_mul(2_654_435_761).to_le_bytes()[3] ^ seed).collect()
}

fn chunked(data: Vec<u8>, piece: usize) -> backup_core::ByteStream {
    let b = Bytes::from(data);
    let pieces: Vec<_> = (0..b.len().div_ceil(piece))
        .map(|i| Ok(b.slice(i * piece..((i + 1) * piece).min(b.len()))))
        .collect();
    futures::stream::iter(pieces).boxed()
}

async fn read_all(t: &Target, key: &str) -> Result<Vec<u8>, Error> {
    let mut s = t.get_stream(key);
    let mut out = Vec::new();
    while let Some(b) = s.next().await {
        out.extend_from_slice(&b?);
    }
    Ok(out)
}

/// Unique key prefix per test run so backends shared across tests never collide.
pub fn scope(name: &str) -> String {
    format!("{}/{name}", crate::unique("suite"))
}

/// Small single-PUT objects (one piece, or several: `under-a-part`) and multi-part objects come
/// back byte for byte.
pub async fn small_and_multipart_round_trip(t: &Target) {
    let t = t.clone().with_upload_limits(PART, 2);
    let dir = scope("rt");
    let ctx = Context::default();
    for (name, len) in [
        ("empty", 0usize),
        ("small", 1000),
        ("under-a-part", PART - 1),
        ("exact", PART),
        ("three-parts", 2 * PART + 12345),
    ] {
        let data = pattern(len, 7);
        let key = format!("{dir}/{name}");
        let n = t.put_stream(&key, chunked(data.clone(), 777_777), Some(len as u64), &ctx).await.unwrap();
        assert_eq!(n, len as u64, "{name}");
        assert_eq!(t.head(&key).await.unwrap(), Some(len as u64), "{name}");
        assert!(read_all(&t, &key).await.unwrap() == data, "{name}: content differs");
    }
    let listed = t.list(&dir).await.unwrap();
    assert_eq!(listed.len(), 5, "{listed:?}");
    assert!(listed.iter().all(|l| l.key.starts_with(&dir)), "{listed:?}");
}

/// `put_create` succeeds once and then fails with AlreadyExists, leaving the first content.
pub async fn create_only_refuses_overwrite(t: &Target) {
    let key = format!("{}/manifest.json", scope("create"));
    t.put_create(&key, Bytes::from_static(b"first")).await.unwrap();
    let e = t.put_create(&key, Bytes::from_static(b"second")).await.unwrap_err();
    assert!(matches!(e, Error::AlreadyExists(_)), "{e}");
    assert_eq!(t.get_bytes(&key, 100).await.unwrap().as_ref(), b"first");
}

/// A source error in the middle of a multi-part upload aborts it: nothing is visible at the key.
/// So does a store failure on a later part, and cancellation.
pub async fn failed_upload_leaves_nothing(t: &Target) {
    let t = t.clone().with_upload_limits(PART, 2);
    let dir = scope("abort");
    let ctx = Context::default();
    // Source error after 2.5 parts.
    let good = pattern(PART * 5 / 2, 1);
    let stream = chunked(good, 1 << 20)
        .chain(futures::stream::once(async { Err(Error::Cancelled("injected source error".into())) }))
        .boxed();
    let key = format!("{dir}/source-error");
    assert!(t.put_stream(&key, stream, None, &ctx).await.is_err());
    assert_eq!(t.head(&key).await.unwrap(), None);
    // Store failure on the second part.
    let faulty = FaultStore::new(t.store(), Faults { fail_writes_after: Some(1), ..Default::default() });
    let ft = t.with_store(Arc::new(faulty));
    let key = format!("{dir}/store-error");
    assert!(ft.put_stream(&key, chunked(pattern(PART * 3, 2), 1 << 20), None, &ctx).await.is_err());
    assert_eq!(t.head(&key).await.unwrap(), None);
    // Cancellation while parts are in flight.
    let slow = FaultStore::new(
        t.store(),
        Faults { part_delay: Some(std::time::Duration::from_millis(300)), ..Default::default() },
    );
    let st = t.with_store(Arc::new(slow));
    let key = format!("{dir}/cancelled");
    let cctx = Context::default();
    let c = cctx.cancel.clone();
    tokio::spawn(async move {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        c.cancel();
    });
    let e = st.put_stream(&key, chunked(pattern(PART * 4, 3), 1 << 20), None, &cctx).await.unwrap_err();
    assert!(matches!(e, Error::Cancelled(_)), "{e}");
    assert_eq!(t.head(&key).await.unwrap(), None);
}

/// A download whose connection drops midway resumes at the offset and yields the exact bytes,
/// however many times it drops as long as each resume gets further.
pub async fn download_resumes_after_dropped_connection(t: &Target) {
    let t = t.clone().with_upload_limits(PART, 2);
    let key = format!("{}/obj", scope("resume"));
    let data = pattern(PART + 4321, 9);
    t.put_stream(&key, chunked(data.clone(), 1 << 20), None, &Context::default()).await.unwrap();
    let faulty = FaultStore::new(
        t.store(),
        Faults { break_read_once: Some((key.clone(), 1_000_003)), ..Default::default() },
    );
    let ft = t.with_store(Arc::new(faulty));
    assert!(read_all(&ft, &key).await.unwrap() == data, "resumed download differs");
    // Without resume attempts the break is an error, not silent truncation.
    let faulty = FaultStore::new(
        t.store(),
        Faults { break_read_once: Some((key.clone(), 1_000_003)), ..Default::default() },
    );
    let ft = t.with_store(Arc::new(faulty)).with_resume_attempts(0);
    assert!(read_all(&ft, &key).await.is_err());
    // A flaky link: every read drops 400 KiB after where it started, 12 times for this object.
    // Each resume makes progress, so the count of resumes (5 in a row) restarts every time.
    let flaky = FaultStore::new(
        t.store(),
        Faults { break_read_every: Some((key.clone(), 400 << 10)), ..Default::default() },
    );
    let ft = t.with_store(Arc::new(flaky));
    assert!(read_all(&ft, &key).await.unwrap() == data, "a download with 12 breaks differs");
    // A link that never gives a byte: 5 resumes in a row without progress, then an error.
    let dead =
        FaultStore::new(t.store(), Faults { break_read_every: Some((key.clone(), 0)), ..Default::default() });
    let e = read_all(&t.with_store(Arc::new(dead)), &key).await.unwrap_err();
    assert!(e.to_string().contains("injected dropped connection"), "{e}");
}

/// Listing "directories" finds backup-like prefixes; deleting is idempotent.
pub async fn list_dirs_and_delete(t: &Target) {
    let dir = scope("dirs");
    for k in ["a/x", "a/y", "b/z"] {
        t.put_bytes(&format!("{dir}/{k}"), Bytes::from_static(b"1")).await.unwrap();
    }
    let mut dirs = t.list_dirs(&dir).await.unwrap();
    dirs.sort();
    assert_eq!(dirs, vec![format!("{dir}/a"), format!("{dir}/b")]);
    t.delete(&format!("{dir}/a/x")).await.unwrap();
    t.delete(&format!("{dir}/a/x")).await.unwrap();
    assert_eq!(t.list(&format!("{dir}/a")).await.unwrap().len(), 1);
}

/// A multipart upload whose writer died (never completed, never aborted, no destructor ran) is
/// listed by `open_uploads` under the key it was writing, where the store can list them, and
/// `abort_upload` removes it (twice is fine). Stores that cannot list them say why; nothing of a
/// dead upload outlives an in-memory store.
pub async fn abandoned_upload_is_listed_and_removed(t: &Target) {
    use object_store::ObjectStoreExt;
    let key = format!("{}/data/000001.db", scope("abandoned"));
    let full = if t.prefix().is_empty() { key.clone() } else { format!("{}/{key}", t.prefix()) };
    let mut upload = t.store().put_multipart(&object_store::path::Path::from(full)).await.unwrap();
    upload.put_part(object_store::PutPayload::from(pattern(PART, 4))).await.unwrap();
    // As SIGKILL would: the upload object is never completed, aborted or dropped.
    std::mem::forget(upload);
    let Some(found) = t.open_uploads().await.unwrap() else {
        assert!(t.uploads_unlisted().is_some(), "an unlisted store says why");
        return;
    };
    let mine: Vec<_> = found.iter().filter(|u| u.key == key).cloned().collect();
    if t.display_name().starts_with("memory://") {
        assert!(mine.is_empty(), "{found:?}");
        return;
    }
    assert_eq!(mine.len(), 1, "the abandoned upload of {key} is listed: {found:?}");
    assert!(mine[0].started <= chrono::Utc::now() + chrono::Duration::seconds(5), "{mine:?}");
    assert_eq!(t.head(&key).await.unwrap(), None, "nothing was published");
    t.abort_upload(&mine[0]).await.unwrap();
    t.abort_upload(&mine[0]).await.unwrap();
    let left = t.open_uploads().await.unwrap().unwrap();
    assert!(left.iter().all(|u| u.key != key), "removed: {left:?}");
    assert_eq!(t.head(&key).await.unwrap(), None);
}
