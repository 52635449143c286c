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

use std::collections::BTreeMap;

use chrono::{DateTime, Datelike, Duration, Utc};
use serde::{Deserialize, Serialize};

use crate::catalog::{self, BackupSummary};
use crate::error::{Error, Result};
use crate::format::layout;
use crate::lease::{self, Lease, LeaseKind};
use crate::model::BackupId;
use crate::progress::Context;
use crate::storage::Target;

/// Default grace period before orphan objects are swept.
pub const DEFAULT_ORPHAN_GRACE_SECS: u64 = 24 * 3600;

/// How many backups to keep. `None`/0 rules are off.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct RetentionPolicy {
    /// Keep the N newest.
    pub keep_last: Option<u32>,
    /// Keep the newest of each of the last N hours with a backup.
    pub keep_hourly: Option<u32>,
    /// Keep the newest of each of the last N days with a backup.
    pub keep_daily: Option<u32>,
    /// Keep the newest of each of the last N ISO weeks with a backup.
    pub keep_weekly: Option<u32>,
    /// Keep the newest of each of the last N months with a backup.
    pub keep_monthly: Option<u32>,
    /// Keep the newest of each of the last N years with a backup.
    pub keep_yearly: Option<u32>,
    /// Cap on the stored bytes of kept backups (oldest removed first).
    pub max_size: Option<u64>,
}

impl RetentionPolicy {
    fn has_rule(&self) -> bool {
        [
            self.keep_last,
            self.keep_hourly,
            self.keep_daily,
            self.keep_weekly,
            self.keep_monthly,
            self.keep_yearly,
        ]
        .iter()
        .any(|r| r.unwrap_or(0) > 0)
            || self.max_size.is_some()
    }
}

/// Input of [`prune`].
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
    /// The undo area: its expired undo copies are removed too (by `prune` of undo.rs; the repository's
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

/// The fate of one backup, with why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decision {
    /// Backup id.
    pub id: BackupId,
    /// When it was taken.
    pub created_at: DateTime<Utc>,
    /// Stored bytes.
    pub stored_bytes: u64,
    /// Kept or removed.
    pub keep: bool,
    /// Why (`keep-daily 2026-11-23`, `newest backup (always kept)`, `no rule keeps it`, ...).
    pub reasons: Vec<String>,
}

/// Objects of an incomplete backup (no manifest).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Orphan {
    /// The backup id the objects were written under.
    pub id: BackupId,
    /// Number of objects.
    pub objects: usize,
    /// Their bytes.
    pub bytes: u64,
    /// Newest modification time among them.
    pub newest: DateTime<Utc>,
    /// Swept now (older than the grace period) or left for later.
    pub sweep: bool,
}

/// An upload a dead run started and never finished: a staging file `<key>#<n>` in a local
/// directory, an open multipart upload on S3 ([`crate::storage::OpenUpload`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StaleUpload {
    /// The object it would have become.
    pub key: String,
    /// The staging file (local) or the multipart upload id (S3).
    pub upload_id: String,
    /// Last written (local) or started (S3).
    pub started: DateTime<Utc>,
    /// Bytes written, where the store says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes: Option<u64>,
    /// Removed now (older than the grace period, no live lease covers it) or left for later.
    pub sweep: bool,
}

/// What prune will do: computed first, applied second.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetentionPlan {
    /// One decision per complete backup, newest first.
    pub decisions: Vec<Decision>,
    /// Incomplete backups found.
    pub orphans: Vec<Orphan>,
    /// Lease objects that expired (their run died): removed by the prune.
    #[serde(default)]
    pub stale_leases: Vec<String>,
    /// Unfinished uploads found (empty where the store cannot list them: see
    /// `uploads_unlisted`).
    #[serde(default)]
    pub open_uploads: Vec<StaleUpload>,
    /// Why unfinished uploads were not looked for (Azure, GCS), if they were not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uploads_unlisted: Option<String>,
}

impl RetentionPlan {
    /// Backups to remove.
    pub fn removed(&self) -> impl Iterator<Item = &Decision> {
        self.decisions.iter().filter(|d| !d.keep)
    }
}

/// Output of [`prune`].
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

/// Decides which of `backups` (complete backups, any order) to keep. Pure: the table-driven
/// tests exercise it directly.
pub fn plan_backups(backups: &[BackupSummary], policy: &RetentionPolicy) -> Result<Vec<Decision>> {
    if !policy.has_rule() {
        return Err(Error::InvalidInput(
            "no retention rule given: use --keep-last/--keep-daily/--keep-weekly/--keep-monthly/--keep-yearly or --max-size"
                .into(),
        ));
    }
    let mut sorted: Vec<&BackupSummary> = backups.iter().collect();
    sorted.sort_by(|a, b| b.created_at.cmp(&a.created_at).then_with(|| b.id.cmp(&a.id)));
    type Bucket = fn(&DateTime<Utc>) -> String;
    let rules: [(&str, Option<u32>, Bucket); 6] = [
        ("keep-last", policy.keep_last, |_| String::new()),
        ("keep-hourly", policy.keep_hourly, |t| t.format("%Y-%m-%d %H:00").to_string()),
        ("keep-daily", policy.keep_daily, |t| t.format("%Y-%m-%d").to_string()),
        ("keep-weekly", policy.keep_weekly, |t| {
            let w = t.iso_week();
            format!("{}-W{:02}", w.year(), w.week())
        }),
        ("keep-monthly", policy.keep_monthly, |t| t.format("%Y-%m").to_string()),
        ("keep-yearly", policy.keep_yearly, |t| t.format("%Y").to_string()),
    ];
    // The newest backup that verified successfully is the last proven restore point: kept.
    let newest_verified =
        sorted.iter().find(|b| b.last_verification.as_ref().is_some_and(|v| v.ok)).map(|b| &b.id);
    let mut left: Vec<u32> = rules.iter().map(|r| r.1.unwrap_or(0)).collect();
    let mut last: Vec<Option<String>> = vec![None; rules.len()];
    let mut out = Vec::with_capacity(sorted.len());
    for (i, b) in sorted.iter().enumerate() {
        let mut reasons = Vec::new();
        for (r, (name, _, bucket)) in rules.iter().enumerate() {
            if left[r] == 0 {
                continue;
            }
            if r == 0 {
                left[r] -= 1;
                reasons.push(format!("{name} {}", policy.keep_last.unwrap_or(0)));
                continue;
            }
            let key = bucket(&b.created_at);
            if last[r].as_ref() != Some(&key) {
                left[r] -= 1;
                reasons.push(format!("{name} {key}"));
                last[r] = Some(key);
            }
        }
        if i == 0 {
            reasons.insert(0, "newest backup (always kept)".into());
        }
        if Some(&b.id) == newest_verified {
            reasons.insert(0, "newest verified backup (always kept)".into());
        }
        if !policy_has_keep(policy) && reasons.is_empty() {
            reasons.push("no keep rule (only --max-size)".into());
        }
        let keep = !reasons.is_empty();
        if !keep {
            reasons.push("no rule keeps it".into());
        }
        out.push(Decision {
            id: b.id.clone(),
            created_at: b.created_at,
            stored_bytes: b.stored_bytes,
            keep,
            reasons,
        });
    }
    if let Some(cap) = policy.max_size {
        let mut total: u64 = out.iter().filter(|d| d.keep).map(|d| d.stored_bytes).sum();
        // Oldest first, never the newest (index 0).
        for d in out.iter_mut().skip(1).rev() {
            if total <= cap {
                break;
            }
            if d.keep && Some(&d.id) != newest_verified {
                d.keep = false;
                total -= d.stored_bytes;
                d.reasons = vec![format!("over --max-size {cap} bytes (oldest removed first)")];
            }
        }
    }
    Ok(out)
}

fn policy_has_keep(p: &RetentionPolicy) -> bool {
    [p.keep_last, p.keep_hourly, p.keep_daily, p.keep_weekly, p.keep_monthly, p.keep_yearly]
        .iter()
        .any(|r| r.unwrap_or(0) > 0)
}

/// Computes the plan for a repository: decisions for complete backups (the rules applied to
/// each database on its own, or with `all_databases` to all backups together), plus orphan
/// objects.
pub async fn plan(
    target: &Target,
    policy: &RetentionPolicy,
    grace_secs: u64,
    now: DateTime<Utc>,
    all_databases: bool,
) -> Result<RetentionPlan> {
    let listed = catalog::list_in(target, None).await?;
    // Backups stamped in the future of this clock decide nothing and are not deleted by rules.
    let horizon = now + Duration::seconds(crate::catalog::DEFAULT_CLOCK_TOLERANCE_SECS as i64);
    let (future, trusted): (Vec<BackupSummary>, Vec<BackupSummary>) =
        listed.backups.into_iter().partition(|b| b.created_at > horizon);
    let mut decisions: Vec<Decision> = future
        .iter()
        .map(|b| Decision {
            id: b.id.clone(),
            created_at: b.created_at,
            stored_bytes: b.stored_bytes,
            keep: true,
            reasons: vec![
                "stamped in the future of this clock (status check `clock`): counted by no rule, kept".into(),
            ],
        })
        .collect();
    // Each database on its own: a second database in the same repository never uses up the
    // first one's slots (nor takes its "newest backup").
    // (`None`: one group of every database.)
    let mut groups: BTreeMap<Option<catalog::DatabaseScope>, Vec<BackupSummary>> = BTreeMap::new();
    for b in trusted {
        let key = (!all_databases).then(|| catalog::DatabaseScope::of_summary(&b));
        groups.entry(key).or_default().push(b);
    }
    if groups.is_empty() {
        plan_backups(&[], policy)?;
    }
    let several = groups.len() > 1;
    for (scope, backups) in groups {
        for mut d in plan_backups(&backups, policy)? {
            if several && let Some(scope) = &scope {
                for r in &mut d.reasons {
                    if r.starts_with("newest backup") {
                        *r = format!("newest backup of {scope} (always kept)");
                    }
                }
            }
            decisions.push(d);
        }
    }
    decisions.sort_by(|a, b| (b.created_at, &b.id).cmp(&(a.created_at, &a.id)));
    // Backups a running command uses are kept, whatever the rules say.
    let found = lease::leases(target).await?;
    let in_use = lease::in_use(&found, now);
    let user = |id: &BackupId| in_use.iter().find(|(i, _)| i == id).map(|(_, who)| who.clone());
    for d in &mut decisions {
        if let Some(who) = user(&d.id)
            && !d.keep
        {
            d.keep = true;
            d.reasons = vec![format!("in use by {who}")];
        }
    }
    let stale_leases = found.iter().filter(|l| !l.live_at(now)).map(|l| l.key.clone()).collect();
    // Every id with a manifest object, readable or not, is not an orphan.
    let complete: std::collections::HashSet<BackupId> =
        catalog::backup_ids(target).await?.into_iter().collect();
    let mut groups: BTreeMap<BackupId, Orphan> = BTreeMap::new();
    for item in target.list("").await? {
        let Some(id) = layout::id_of_key(&item.key) else { continue };
        if complete.contains(&id) {
            continue;
        }
        let o = groups.entry(id.clone()).or_insert(Orphan {
            id,
            objects: 0,
            bytes: 0,
            newest: item.modified,
            sweep: false,
        });
        o.objects += 1;
        o.bytes += item.size;
        o.newest = o.newest.max(item.modified);
    }
    let grace = Duration::seconds(i64::try_from(grace_secs).unwrap_or(i64::MAX / 1000).min(i64::MAX / 1000));
    let orphans = groups
        .into_values()
        .map(|mut o| {
            o.sweep = o.newest + grace <= now && user(&o.id).is_none();
            o
        })
        .collect();
    // Unfinished uploads: those of a backup are covered by a lease naming it; any other (a lease,
    // an audit record, alert state being written) by any live shared lease.
    let shared_live = found
        .iter()
        .any(|l| l.live_at(now) && l.record.as_ref().map_or(true, |r| r.kind == LeaseKind::Shared));
    let open_uploads = match target.open_uploads().await? {
        Some(found) => found
            .into_iter()
            .map(|u| {
                let covered = match layout::id_of_key(&u.key) {
                    Some(id) => user(&id).is_some(),
                    None => shared_live,
                };
                StaleUpload {
                    sweep: u.started + grace <= now && !covered,
                    key: u.key,
                    upload_id: u.upload_id,
                    started: u.started,
                    bytes: u.bytes,
                }
            })
            .collect(),
        None => Vec::new(),
    };
    let uploads_unlisted = target.uploads_unlisted().map(str::to_string);
    Ok(RetentionPlan { decisions, orphans, stale_leases, open_uploads, uploads_unlisted })
}

/// What [`apply`] did.
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

/// Applies a retention policy to an opened repository at a given time (or only reports the plan
/// with `dry_run`); the library's `prune` is `prune` of undo.rs, which also cleans the undo area.
pub async fn prune_in(
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
        // (`prune_in` of undo.rs fills it.)
        undo_removed: Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn b(ts: &str, size: u64) -> BackupSummary {
        let at: DateTime<Utc> = format!("{ts}Z").parse().unwrap();
        BackupSummary {
            id: BackupId::new(at),
            created_at: at,
            finished_at: at,
            engine: crate::model::Engine::Sqlite,
            database: "d".into(),
            tables: 1,
            rows: 1,
            raw_bytes: size,
            stored_bytes: size,
            tags: vec![],
            last_verification: None,
            encrypted: false,
        }
    }

    fn kept(backups: &[BackupSummary], p: RetentionPolicy) -> Vec<String> {
        let mut v: Vec<String> = plan_backups(backups, &p)
            .unwrap()
            .into_iter()
            .filter(|d| d.keep)
            .map(|d| d.created_at.format("%Y-%m-%dT%H:%M").to_string())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn grandfather_father_son_table() {
        // Two backups a day from 2026-10-25 to 2026-11-23 plus a few older ones.
        let mut bs =
            vec![b("2024-06-01T03:00:00", 10), b("2025-01-15T03:00:00", 10), b("2025-12-31T23:00:00", 10)];
        let mut day = chrono::NaiveDate::from_ymd_opt(2026, 10, 25).unwrap();
        while day <= chrono::NaiveDate::from_ymd_opt(2026, 11, 23).unwrap() {
            bs.push(b(&format!("{day}T03:00:00"), 10));
            bs.push(b(&format!("{day}T15:00:00"), 10));
            day = day.succ_opt().unwrap();
        }
        let p = |f: fn(&mut RetentionPolicy)| {
            let mut p = RetentionPolicy::default();
            f(&mut p);
            p
        };
        let cases: Vec<(&str, RetentionPolicy, Vec<&str>)> = vec![
            (
                "last 3",
                p(|p| p.keep_last = Some(3)),
                vec!["2026-11-22T15:00", "2026-11-23T03:00", "2026-11-23T15:00"],
            ),
            (
                "daily 3: newest of each of the last 3 days",
                p(|p| p.keep_daily = Some(3)),
                vec!["2026-11-21T15:00", "2026-11-22T15:00", "2026-11-23T15:00"],
            ),
            (
                // ISO weeks: 2026-11-23 is a Monday (W48); W47 ends Sunday 11-22, W46 ends 11-15.
                "weekly 3",
                p(|p| p.keep_weekly = Some(3)),
                vec!["2026-11-15T15:00", "2026-11-22T15:00", "2026-11-23T15:00"],
            ),
            (
                "monthly 4 reaches back to months that have backups",
                p(|p| p.keep_monthly = Some(4)),
                vec!["2025-01-15T03:00", "2025-12-31T23:00", "2026-10-31T15:00", "2026-11-23T15:00"],
            ),
            (
                "yearly 10 keeps the newest of every year",
                p(|p| p.keep_yearly = Some(10)),
                vec!["2024-06-01T03:00", "2025-12-31T23:00", "2026-11-23T15:00"],
            ),
            (
                "rules combine (union)",
                p(|p| {
                    p.keep_last = Some(1);
                    p.keep_daily = Some(2);
                    p.keep_yearly = Some(2);
                }),
                vec!["2025-12-31T23:00", "2026-11-22T15:00", "2026-11-23T15:00"],
            ),
            (
                "max-size trims the oldest kept, never the newest",
                p(|p| {
                    p.keep_daily = Some(5);
                    p.max_size = Some(25);
                }),
                vec!["2026-11-22T15:00", "2026-11-23T15:00"],
            ),
            (
                "max-size alone",
                p(|p| p.max_size = Some(30)),
                vec!["2026-11-22T15:00", "2026-11-23T03:00", "2026-11-23T15:00"],
            ),
            (
                "a cap below the newest still keeps the newest",
                p(|p| p.max_size = Some(1)),
                vec!["2026-11-23T15:00"],
            ),
        ];
        for (name, policy, want) in cases {
            assert_eq!(kept(&bs, policy), want, "{name}");
        }
    }

    #[test]
    fn reasons_are_given_and_empty_policy_refused() {
        let bs = [b("2026-11-23T10:00:00", 1), b("2026-11-23T09:00:00", 1), b("2026-11-22T09:00:00", 1)];
        let d = plan_backups(&bs, &RetentionPolicy { keep_daily: Some(2), ..Default::default() }).unwrap();
        assert_eq!(d[0].reasons, vec!["newest backup (always kept)", "keep-daily 2026-11-23"]);
        assert_eq!((d[1].keep, d[1].reasons.clone()), (false, vec!["no rule keeps it".to_string()]));
        assert_eq!(d[2].reasons, vec!["keep-daily 2026-11-22"]);
        let e = plan_backups(&bs, &RetentionPolicy::default()).unwrap_err();
        assert_eq!(e.kind(), crate::error::ErrorKind::Usage);
        // keep-last 0 is "off", not "delete everything".
        assert!(plan_backups(&bs, &RetentionPolicy { keep_last: Some(0), ..Default::default() }).is_err());
        assert!(
            plan_backups(&[], &RetentionPolicy { keep_last: Some(1), ..Default::default() })
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn the_newest_is_kept_even_if_no_rule_matches() {
        let bs = [b("2026-11-23T10:00:00", 100)];
        let d = plan_backups(&bs, &RetentionPolicy { max_size: Some(0), ..Default::default() }).unwrap();
        assert!(d[0].keep);
    }
}
