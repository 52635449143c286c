//! Carrying out a retention plan: manifests first, then objects, orphans, unfinished uploads and
//! stale leases, re-checking the leases taken since the plan.

use chrono::Utc;

use super::plan::RetentionPlan;
use crate::error::Result;
use crate::format::layout;
use crate::lease::{self, LeaseKind};
use crate::model::BackupId;
use crate::progress::Context;
use crate::storage::Target;

/// What `apply` did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Applied {
    /// Orphan objects deleted.
    pub swept: usize,
    /// Bytes freed.
    pub freed: u64,
    /// Unfinished uploads removed.
    pub uploads_aborted: usize,
    /// Deletions that failed.
    pub errors: Vec<String>,
}

/// Carries out a plan: manifests of removed backups first, then (unless a reader leased them
/// meanwhile) their objects, then swept orphans and unfinished uploads, then stale leases.
/// Failures are collected, not fatal. Call it holding the exclusive lease ([`prune`] does).
pub async fn apply(target: &Target, plan: &RetentionPlan, ctx: &Context) -> Result<Applied> {
    let mut errors = Vec::new();
    let mut swept = 0usize;
    let mut freed = 0u64;
    let mut unlisted = Vec::new();
    for d in plan.removed() {
        ctx.check("prune")?;
        if let Err(e) = target.delete(&layout::manifest_key(&d.id)).await {
            errors.push(format!("remove backup {}: {e}", d.id));
            continue;
        }
        unlisted.push(&d.id);
    }
    crate::failpoint::hit("prune-unlisted");
    // A reader that leased one of these before its manifest went is reading it now: its objects
    // stay (orphans, for a later prune).
    let in_use = lease::in_use(&lease::leases(target).await?, Utc::now());
    for id in unlisted {
        ctx.check("prune")?;
        if let Some((_, who)) = in_use.iter().find(|(i, _)| i == id) {
            tracing::warn!("backup {id} was leased by {who} while pruning: its objects stay for now");
            continue;
        }
        let (_, b) = delete_dir(target, id, &mut errors).await;
        freed += b;
    }
    for o in plan.orphans.iter().filter(|o| o.sweep) {
        ctx.check("prune")?;
        if in_use.iter().any(|(i, _)| *i == o.id) {
            continue;
        }
        let (n, b) = delete_dir(target, &o.id, &mut errors).await;
        swept += n;
        freed += b;
    }
    // Leases taken since the plan (a create that started meanwhile) cover their uploads too.
    let live = lease::leases(target).await?;
    let now = Utc::now();
    let shared_live = live
        .iter()
        .any(|l| l.live_at(now) && l.record.as_ref().map_or(true, |r| r.kind == LeaseKind::Shared));
    let in_use = lease::in_use(&live, now);
    let mut uploads_aborted = 0;
    for u in plan.open_uploads.iter().filter(|u| u.sweep) {
        ctx.check("prune")?;
        let covered = match layout::id_of_key(&u.key) {
            Some(id) => in_use.iter().any(|(i, _)| *i == id),
            None => shared_live,
        };
        if covered {
            continue;
        }
        let open = crate::storage::OpenUpload {
            key: u.key.clone(),
            upload_id: u.upload_id.clone(),
            started: u.started,
            bytes: u.bytes,
        };
        match target.abort_upload(&open).await {
            Ok(()) => {
                uploads_aborted += 1;
                freed += u.bytes.unwrap_or(0);
            }
            Err(e) => errors.push(format!("remove unfinished upload {} of {}: {e}", u.upload_id, u.key)),
        }
    }
    for key in &plan.stale_leases {
        if let Err(e) = target.delete(key).await {
            errors.push(format!("remove stale lease {key}: {e}"));
        }
    }
    Ok(Applied { swept, freed, uploads_aborted, errors })
}

async fn delete_dir(target: &Target, id: &BackupId, errors: &mut Vec<String>) -> (usize, u64) {
    let items = match target.list(&layout::backup_dir(id)).await {
        Ok(i) => i,
        Err(e) => {
            errors.push(format!("list objects of {id}: {e}"));
            return (0, 0);
        }
    };
    let (mut n, mut bytes) = (0, 0);
    for item in items {
        match target.delete(&item.key).await {
            Ok(()) => {
                n += 1;
                bytes += item.size;
            }
            Err(e) => errors.push(format!("delete {}: {e}", item.key)),
        }
    }
    (n, bytes)
}
