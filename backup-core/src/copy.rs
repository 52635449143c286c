//! The `copy` use-case: an existing backup from one repository to another (off-site copies made
//! after the fact, migrating stores). Every object streams through a SHA-256 check against the
//! manifest on its way, so a corrupt source never yields a "good" copy; the manifest is written
//! last and create-only, so the copy is complete or absent, exactly like a fresh backup.
//!
//! With `encrypt_to` (or `new_passphrase`) the copy re-encrypts an encrypted backup to new
//! recipients (key rotation): each object's stored SHA-256 is checked and its age authentication
//! verified as it is decrypted with the old key and encrypted to the new recipients; the new
//! manifest records the new stored digests and is written last.
//!
//! Copying a backup that the destination already holds with an identical manifest is a no-op
//! (`already_present`); a different manifest under the same id is refused.
//! Memory: `jobs` objects in flight, each bounded by the upload buffers of [`Target::put_stream`].

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use serde::{Deserialize, Serialize};

use crate::catalog;
use crate::codec::checksum::{read_tally, tally, verified};
use crate::codec::encrypt::{self, Keyring, Sealing};
use crate::error::{Error, Result};
use crate::format::layout;
use crate::format::manifest::{MAX_MANIFEST_BYTES, Manifest};
use crate::format::sealed;
use crate::lease::{Lease, LeaseKind};
use crate::model::{BackupId, Secret};
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
    /// Re-encrypt to these age recipients (`age1...`) instead of copying the bytes as they are.
    pub encrypt_to: Vec<String>,
    /// Re-encrypt so this passphrase opens the copy (with or instead of `encrypt_to`).
    pub new_passphrase: Option<Secret>,
    /// Identity file text that opens the source backup (needed to re-encrypt).
    pub identity: Option<Secret>,
    /// Passphrase that opens the source backup (instead of `identity`).
    pub passphrase: Option<Secret>,
}

impl Default for CopyOptions {
    fn default() -> Self {
        CopyOptions {
            from: String::new(),
            to: String::new(),
            backup: "latest".into(),
            jobs: 2,
            encrypt_to: Vec::new(),
            new_passphrase: None,
            identity: None,
            passphrase: None,
        }
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
    /// The copy was re-encrypted to these recipients (empty: bytes copied as they are).
    #[serde(default)]
    pub reencrypted_to: Vec<String>,
    /// Wall time.
    pub duration_ms: u64,
}

/// Copies one backup from `from` to `to`, verifying digests while streaming (the repositories
/// opened from `opts.from`/`opts.to` by [`crate::Command::run`], or given opened: tests, fault
/// injection; `opts.from` and `opts.to` are not read here). Holds a shared lease on the backup in
/// both repositories while it runs (`prune` keeps the source and does not sweep the half-written
/// copy).
pub async fn copy(from: &Target, to: &Target, opts: &CopyOptions, ctx: &Context) -> Result<CopyReport> {
    let manifest = catalog::resolve(from, &opts.backup).await?;
    let id = manifest.id.clone();
    let source = crate::lease::share(from, "copy", vec![id.clone()]).await?;
    let dest = match Lease::acquire(to, LeaseKind::Shared, "copy", vec![id.clone()]).await {
        Ok(l) => l,
        Err(e) => {
            source.release().await;
            return Err(e);
        }
    };
    let result = copy_leased(from, to, manifest, opts, &dest.context(&source.context(ctx))).await;
    dest.release().await;
    source.release().await;
    result
}

async fn copy_leased(
    from: &Target,
    to: &Target,
    manifest: Manifest,
    opts: &CopyOptions,
    ctx: &Context,
) -> Result<CopyReport> {
    let started = Instant::now();
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
        reencrypted_to: Vec::new(),
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
    if let Some(sealing) = Sealing::new(&opts.encrypt_to, opts.new_passphrase.as_ref())? {
        let bytes = match reencrypt(from, to, &manifest, &sealing, opts, ctx).await {
            Ok(b) => b,
            Err(e) => {
                cleanup(to, &id).await;
                return Err(e.context(format!(
                    "re-encrypt {id} from {} to {}",
                    from.display_name(),
                    to.display_name()
                )));
            }
        };
        let mut r = report(manifest.objects.len(), bytes, false);
        r.reencrypted_to = sealing.listed().to_vec();
        return Ok(r);
    }
    let result = copy_objects(from, to, &manifest, opts, ctx).await;
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

/// Copies every object of `manifest` as stored, `jobs` at a time, each digest-checked as it
/// streams. Returns the bytes written.
async fn copy_objects(
    from: &Target,
    to: &Target,
    manifest: &Manifest,
    opts: &CopyOptions,
    ctx: &Context,
) -> Result<u64> {
    let id = &manifest.id;
    let dir = layout::backup_dir(id);
    let dir_ref = &dir;
    futures::stream::iter(manifest.objects.iter())
        .map(|o| {
            let key = format!("{dir_ref}{}", o.key);
            async move {
                ctx.check(&format!("copy {id}"))?;
                let data = verified(
                    from.get_stream(&key),
                    format!("object {key} of {id}"),
                    o.stored_bytes,
                    o.sha256.clone(),
                );
                let n = to.put_stream(&key, data, Some(o.stored_bytes), ctx).await?;
                Ok::<u64, Error>(n)
            }
        })
        .buffer_unordered(opts.jobs.max(1))
        .try_fold(0u64, |acc, n| async move { Ok(acc + n) })
        .await
}

/// Re-encrypts every object of an encrypted backup to `sealing`'s recipients, then writes the
/// new manifest (create-only, last). Returns the bytes written.
async fn reencrypt(
    from: &Target,
    to: &Target,
    manifest: &Manifest,
    sealing: &Sealing,
    opts: &CopyOptions,
    ctx: &Context,
) -> Result<u64> {
    let id = &manifest.id;
    if !manifest.is_encrypted() {
        return Err(Error::InvalidInput(format!(
            "backup {id} is not encrypted: copy re-encrypts encrypted backups only (make a new backup with --encrypt-to; its object keys carry no table names)"
        )));
    }
    // A wrong or missing key fails here, before anything is written.
    let keys = Keyring::from_secrets(opts.identity.as_ref(), opts.passphrase.as_ref())?;
    let opened = sealed::open(manifest, keys.as_ref())?;
    let recipients = Arc::new(sealing.recipients().clone());
    let dir = layout::backup_dir(id);
    let opened_ref = &opened;
    let written: Vec<(usize, u64, String)> = futures::stream::iter(opened.objects.iter().enumerate())
        .map(|(i, o)| {
            let key = format!("{dir}{}", o.key);
            let recipients = recipients.clone();
            async move {
                ctx.check(&format!("copy {id}"))?;
                let what = format!("object {} of {id}", o.key);
                let stored = verified(from.get_stream(&key), what.clone(), o.stored_bytes, o.sha256.clone());
                let plain = sealed::decrypted(opened_ref, stored, &what);
                let (out, t) = tally(encrypt::encrypt(plain, recipients));
                to.put_stream(&key, out, Some(o.stored_bytes), ctx).await?;
                let (n, sha) = read_tally(&t);
                Ok::<_, Error>((i, n, sha))
            }
        })
        .buffer_unordered(opts.jobs.max(1))
        .try_collect()
        .await?;
    let mut new = opened.clone();
    let mut bytes = 0;
    for (i, n, sha) in written {
        new.objects[i].stored_bytes = n;
        new.objects[i].sha256 = sha;
        bytes += n;
    }
    let json = sealed::to_json(&new, sealing)?;
    to.put_create(&layout::manifest_key(id), Bytes::from(json))
        .await
        .map_err(|e| e.context(format!("write manifest of {id} to {}", to.display_name())))?;
    Ok(bytes)
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
