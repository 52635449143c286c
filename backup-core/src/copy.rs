//! The `copy` use-case: an existing backup from one repository to another (off-site copies made
//! after the fact, migrating stores). Every object streams through a SHA-256 check against the
//! manifest on its way, so a corrupt source never yields a "good" copy; the manifest is written
//! last and create-only, so the copy is complete or absent, exactly like a fresh backup.
//!
//! Copying a backup that the destination already holds with an identical manifest is a no-op
//! (`already_present`); a different manifest under the same id is refused.
//! Memory: `jobs` objects in flight, each bounded by the upload buffers of [`Target::put_stream`].

use std::time::Instant;

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use serde::{Deserialize, Serialize};

use crate::catalog;
use crate::codec::checksum::verified;
use crate::error::{Error, Result};
use crate::format::layout;
use crate::format::manifest::MAX_MANIFEST_BYTES;
use crate::model::BackupId;
use crate::progress::Context;
use crate::storage::Target;

/// Input of [`copy`].
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct CopyOptions {
    /// Source repository URL.
    pub from: String,
    /// Destination repository URL.
    pub to: String,
    /// Backup id, `latest` or `tag:NAME`.
    pub backup: String,
    /// Objects copied in parallel.
    pub jobs: usize,
}

impl Default for CopyOptions {
    fn default() -> Self {
        CopyOptions { from: String::new(), to: String::new(), backup: "latest".into(), jobs: 2 }
    }
}

/// Output of [`copy`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CopyReport {
    /// The backup copied.
    pub id: BackupId,
    /// Source repository, as named in messages.
    pub from: String,
    /// Destination repository.
    pub to: String,
    /// Objects copied (manifest excluded).
    pub objects: usize,
    /// Bytes copied.
    pub bytes: u64,
    /// The destination already held this exact backup; nothing was copied.
    pub already_present: bool,
    /// Wall time.
    pub duration_ms: u64,
}

/// Copies one backup between repositories, verifying digests while streaming.
pub async fn copy(opts: &CopyOptions, ctx: &Context) -> Result<CopyReport> {
    let from = Target::open(&opts.from)?;
    let to = Target::open(&opts.to)?;
    copy_between(&from, &to, opts, ctx).await
}

/// [`copy`] between opened repositories (tests, fault injection).
pub async fn copy_between(
    from: &Target,
    to: &Target,
    opts: &CopyOptions,
    ctx: &Context,
) -> Result<CopyReport> {
    let started = Instant::now();
    let manifest = catalog::resolve(from, &opts.backup).await?;
    let id = manifest.id.clone();
    let mkey = layout::manifest_key(&id);
    let source_json = from.get_bytes(&mkey, MAX_MANIFEST_BYTES).await?;
    let report = |objects, bytes, already_present| CopyReport {
        id: id.clone(),
        from: from.display_name().to_string(),
        to: to.display_name().to_string(),
        objects,
        bytes,
        already_present,
        duration_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
    };
    if to.head(&mkey).await?.is_some() {
        let existing = to.get_bytes(&mkey, MAX_MANIFEST_BYTES).await?;
        if existing == source_json {
            return Ok(report(0, 0, true));
        }
        return Err(Error::AlreadyExists(format!(
            "a different backup {id} in {} (refusing to overwrite)",
            to.display_name()
        )));
    }
    for o in &manifest.objects {
        layout::validate_relative_key(&o.key)?;
    }
    let dir = layout::backup_dir(&id);
    let id_ref = &id;
    let dir_ref = &dir;
    let result = futures::stream::iter(manifest.objects.iter())
        .map(|o| {
            let key = format!("{dir_ref}{}", o.key);
            async move {
                ctx.check(&format!("copy {id_ref}"))?;
                let data = verified(
                    from.get_stream(&key),
                    format!("object {key} of {id_ref}"),
                    o.stored_bytes,
                    o.sha256.clone(),
                );
                let n = to.put_stream(&key, data, Some(o.stored_bytes), ctx).await?;
                Ok::<u64, Error>(n)
            }
        })
        .buffer_unordered(opts.jobs.max(1))
        .try_fold(0u64, |acc, n| async move { Ok(acc + n) })
        .await;
    let bytes = match result {
        Ok(b) => b,
        Err(e) => {
            cleanup(to, &id).await;
            return Err(e.context(format!(
                "copy {id} from {} to {}",
                from.display_name(),
                to.display_name()
            )));
        }
    };
    // Manifest last, create-only, byte-identical to the source's.
    if let Err(e) = to.put_create(&mkey, Bytes::clone(&source_json)).await {
        cleanup(to, &id).await;
        return Err(e.context(format!("write manifest of {id} to {}", to.display_name())));
    }
    Ok(report(manifest.objects.len(), bytes, false))
}

/// Best effort: removes what a failed copy wrote (no manifest refers to it); `prune` sweeps any rest.
async fn cleanup(to: &Target, id: &BackupId) {
    match to.list(&layout::backup_dir(id)).await {
        Ok(items) => {
            for item in items {
                if let Err(e) = to.delete(&item.key).await {
                    tracing::warn!("cleanup of failed copy of {id} in {to}: {e}");
                }
            }
        }
        Err(e) => tracing::warn!("cleanup of failed copy of {id} in {to}: {e}"),
    }
}
