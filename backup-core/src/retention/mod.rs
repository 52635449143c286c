//! Retention (`prune`): which backups to keep under a grandfather-father-son policy, computed as a
//! [`RetentionPlan`] with a reason for every decision, then [`apply`]d.
//!
//! Semantics (restic's `forget`, in UTC):
//! - backups are considered newest first; `keep_last` keeps the N newest;
//! - `keep_hourly`/`daily`/`weekly` (ISO week)/`monthly`/`yearly` N keep the newest backup of
//!   each of the last N hours/days/weeks/months/years that *have* a backup;
//! - a backup kept by any rule is kept; every rule it matched is listed as a reason;
//! - `max_size` then removes the oldest kept backups until the kept total (stored bytes) fits;
//! - the newest complete backup is always kept, whatever the rules or the size cap say, and so is
//!   the newest backup whose last verification succeeded;
//! - backups stamped in the future of this clock (beyond the `status` clock tolerance) count for
//!   no rule and are kept;
//! - a policy without any rule is refused (it would delete everything but the newest).
//!
//! Applying: for each removed backup the manifest is deleted first (the backup stops existing for
//! `list`/`restore` at once), then its objects. Objects under a backup id without a manifest
//! (failed or interrupted backups, copies) are swept once the newest of them is older than the
//! grace period (default 24 h), so a backup still being written is never touched.
//! Unfinished uploads of dead runs (object_store's staging files `<key>#<n>` in a local
//! directory, open S3 multipart uploads: `storage::upload`) are removed under the same rule:
//! older than the grace period (last write, or start of the upload) and not covered by a live
//! lease (one naming the backup the upload belongs to; for an upload outside any backup, a lease
//! or audit record being written, any live shared lease).
//! Manifests that exist but cannot be read are never touched.
//!
//! Leases (`lease`): a prune holds the exclusive lease while it deletes (a second prune fails
//! with [`Error::Locked`]); a backup named by a live shared lease (a running create, restore,
//! drill, verify or copy) is kept and its objects are not swept, whatever the rules say; a
//! backup leased between the plan and the deletion keeps its objects (its manifest may be gone:
//! the reader already holds it); stale leases (expired: their run died) are removed.
//!
//! The parts: `policy` (the keep rules, pure: [`plan_backups`]), `plan` (what a repository holds,
//! leases and leftovers included: [`plan`] gives the [`RetentionPlan`]), `apply` (the deletions:
//! [`apply`]); this file holds the options, the report and [`prune_repository`], which runs the
//! three under the exclusive lease.

mod apply;
mod plan;
mod policy;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::lease::{Lease, LeaseKind};
use crate::progress::Context;
use crate::storage::Target;

pub use apply::{Applied, apply};
pub use plan::{Orphan, RetentionPlan, StaleUpload, plan};
pub use policy::{Decision, RetentionPolicy, plan_backups};

/// Default grace period before orphan objects are swept.
pub const DEFAULT_ORPHAN_GRACE_SECS: u64 = 24 * 3600;

/// Input of [`prune`](crate::prune()).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct PruneOptions {
    /// Repository URL.
    pub repo: String,
    /// The policy.
    pub policy: RetentionPolicy,
    /// Compute and report the plan, delete nothing.
    pub dry_run: bool,
    /// Orphan objects younger than this (seconds) are left alone.
    pub orphan_grace_secs: u64,
    /// Apply the rules to all backups together, whatever database they are of (by default
    /// each database, engine and name, is kept by the rules on its own).
    pub all_databases: bool,
    /// The undo area: its expired undo copies are removed too (by `prune` of `undo`; the repository's
    /// prune alone leaves it). `None`: left alone.
    pub undo_dir: Option<std::path::PathBuf>,
}

impl Default for PruneOptions {
    fn default() -> Self {
        PruneOptions {
            repo: String::new(),
            policy: RetentionPolicy::default(),
            dry_run: false,
            orphan_grace_secs: DEFAULT_ORPHAN_GRACE_SECS,
            all_databases: false,
            undo_dir: None,
        }
    }
}

/// Output of [`prune`](crate::prune()).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PruneReport {
    /// Repository, as named in messages.
    pub repo: String,
    /// Whether anything was deleted.
    pub dry_run: bool,
    /// The plan.
    pub plan: RetentionPlan,
    /// Backups kept.
    pub kept: usize,
    /// Backups removed (or that would be, in a dry run).
    pub removed: usize,
    /// Orphan objects swept (or that would be).
    pub orphan_objects_swept: usize,
    /// Unfinished uploads removed (or that would be): staging files, open multipart uploads.
    pub uploads_aborted: usize,
    /// Bytes freed (or that would be).
    pub freed_bytes: u64,
    /// Deletions that failed (prune continues past them; run it again).
    pub errors: Vec<String>,
    /// Expired undo copies removed from the undo area (or that would be, in a dry run).
    #[serde(default)]
    pub undo_removed: Vec<crate::catalog::UndoCopy>,
}

/// Applies a retention policy to an opened repository at a given time (or only reports the plan
/// with `dry_run`); the library's `prune` is `prune` of `undo`, which also cleans the undo area.
pub(crate) async fn prune_repository(
    target: &Target,
    opts: &PruneOptions,
    now: DateTime<Utc>,
    ctx: &Context,
) -> Result<PruneReport> {
    // A dry run deletes nothing and needs no lease; a prune holds the exclusive one throughout.
    let held = if opts.dry_run {
        None
    } else {
        Some(Lease::acquire(target, LeaseKind::Exclusive, "prune", Vec::new()).await?)
    };
    let result = async {
        let ctx = &match &held {
            Some(l) => l.context(ctx),
            None => ctx.clone(),
        };
        let plan = plan(target, &opts.policy, opts.orphan_grace_secs, now, opts.all_databases).await?;
        crate::failpoint::hit("prune-planned");
        let done = if opts.dry_run {
            let sweep_uploads = || plan.open_uploads.iter().filter(|u| u.sweep);
            Applied {
                swept: plan.orphans.iter().filter(|o| o.sweep).map(|o| o.objects).sum(),
                freed: plan.removed().map(|d| d.stored_bytes).sum::<u64>()
                    + plan.orphans.iter().filter(|o| o.sweep).map(|o| o.bytes).sum::<u64>()
                    + sweep_uploads().filter_map(|u| u.bytes).sum::<u64>(),
                uploads_aborted: sweep_uploads().count(),
                errors: Vec::new(),
            }
        } else {
            apply(target, &plan, ctx).await?
        };
        Ok::<_, Error>((plan, done))
    }
    .await;
    if let Some(l) = held {
        l.release().await;
    }
    let (plan, Applied { swept, freed, uploads_aborted, errors }) = result?;
    let removed = plan.removed().count();
    let kept = plan.decisions.len() - removed;
    Ok(PruneReport {
        repo: target.display_name().to_string(),
        dry_run: opts.dry_run,
        plan,
        kept,
        removed,
        orphan_objects_swept: swept,
        uploads_aborted,
        freed_bytes: freed,
        errors,
        // (`prune` of `undo` fills it.)
        undo_removed: Vec::new(),
    })
}
