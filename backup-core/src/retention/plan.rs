//! The retention plan of a repository: the keep rules applied to each database's backups (or to
//! all together), backups in use by a live lease kept, orphan objects and unfinished uploads of
//! dead runs found, each with whether it is swept now.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

use super::policy::{Decision, RetentionPolicy, plan_backups};
use crate::catalog::{self, BackupSummary};
use crate::error::Result;
use crate::format::layout;
use crate::lease::{self, LeaseKind};
use crate::model::BackupId;
use crate::storage::Target;

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
/// directory, an open multipart upload on S3 (`storage::OpenUpload`).
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
    let mut decisions = decide(target, policy, now, all_databases).await?;
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
    let grace = Duration::seconds(i64::try_from(grace_secs).unwrap_or(i64::MAX / 1000).min(i64::MAX / 1000));
    let in_use_by = |id: &BackupId| user(id).is_some();
    let orphans = orphans(target, now, grace, &in_use_by).await?;
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
                    Some(id) => in_use_by(&id),
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

/// The rules' decisions for every complete backup, newest first: those stamped in the future of
/// this clock kept, the others grouped by database (or all together) and given to
/// [`plan_backups`].
async fn decide(
    target: &Target,
    policy: &RetentionPolicy,
    now: DateTime<Utc>,
    all_databases: bool,
) -> Result<Vec<Decision>> {
    let listed = catalog::list(target, None).await?;
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
    Ok(decisions)
}

/// Objects under a backup id without a manifest, grouped by id; swept once the newest of them is
/// older than `grace` and no live lease names the id.
async fn orphans(
    target: &Target,
    now: DateTime<Utc>,
    grace: Duration,
    in_use: &dyn Fn(&BackupId) -> bool,
) -> Result<Vec<Orphan>> {
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
    Ok(groups
        .into_values()
        .map(|mut o| {
            o.sweep = o.newest + grace <= now && !in_use(&o.id);
            o
        })
        .collect())
}
