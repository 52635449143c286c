//! Health (`status`): is there a recent, proven, replicated backup? One [`StatusReport`] with
//! named checks, for monitors and cron (`healthy` false -> CLI exit 4).
//!
//! Checks, per repository: `reachable` (listing works), `clock` (no backup stamped in the future
//! of this clock beyond the tolerance; such backups are never "newest"), `has_backup`,
//! `newest_age` (vs `max_age_secs`), `total_size` (every object under the repository prefix, vs
//! `max_size`), `backup_size` (the newest backup's data vs `min_size`, and vs `max_shrink` of
//! the previous backup of the same database), `last_verification` (the newest recorded
//! verify/drill over all backups: failed or none at all is unhealthy), `drill_age` (with
//! `max_drill_age_secs`: the newest successful drill). Across repositories: `offsite` (a
//! warning, or unhealthy with `require_offsite`: a single repository, or every repository on the
//! source database's file system) and, with two or more, `copies` (3-2-1): the newest backup
//! across all of them is present in each, with identical object digests.

mod repo;

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::catalog::{self, VerificationRecord};
use crate::error::Result;
use crate::format::manifest::Manifest;
use crate::model::BackupId;
use crate::progress::Context;
use crate::storage::Target;

pub use crate::catalog::DEFAULT_CLOCK_TOLERANCE_SECS;
/// Default smallest fraction of the previous backup's size the newest may have.
pub const DEFAULT_MAX_SHRINK: f64 = 0.5;

/// Input of [`status`](crate::status()).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct StatusOptions {
    /// Repository URLs (the first is the primary).
    pub repos: Vec<String>,
    /// The newest backup must be younger than this (seconds).
    pub max_age_secs: Option<u64>,
    /// Every repository must hold at most this many bytes.
    pub max_size: Option<u64>,
    /// The newest successful drill must be younger than this (seconds).
    pub max_drill_age_secs: Option<u64>,
    /// The newest backup must hold at least this many bytes of data (uncompressed).
    pub min_size: Option<u64>,
    /// The newest backup must hold at least this fraction of the previous one's data
    /// (default 0.5; 0 turns the check off).
    pub max_shrink: Option<f64>,
    /// The source database (URL): repositories on its file system are not off-site.
    pub source: Option<String>,
    /// A single repository, or all on the source's file system, is unhealthy (else a warning).
    pub require_offsite: bool,
    /// Backups stamped further than this in the future are not trusted (default 600 s).
    pub clock_tolerance_secs: Option<u64>,
    /// With `source`, still look at the backups of every database (by default only those of
    /// the source's engine and database name count, plus encrypted ones, whose name is sealed).
    pub all_databases: bool,
    /// The undo area whose kept undo copies are listed in the report (by `status` of `undo`; the
    /// repositories' status alone leaves it).
    pub undo_dir: Option<std::path::PathBuf>,
}

/// One check's result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Check {
    /// `reachable`, `has_backup`, `newest_age`, `total_size`, `last_verification`, `copies`.
    pub name: String,
    /// Repository concerned (none for cross-repository checks).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub repo: Option<String>,
    /// Passed.
    pub ok: bool,
    /// A failure that does not make the status unhealthy (`offsite` without `require_offsite`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub warning: bool,
    /// Human explanation with the numbers.
    pub message: String,
    /// What the check wants (`a backup younger than 26.0h`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected: Option<String>,
    /// What it found (`the newest is 30.2h old`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub found: Option<String>,
    /// Alert state of this check: `healthy` or `failing` (filled by [`crate::track`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<crate::notify::Health>,
    /// Since when the check is in that state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<DateTime<Utc>>,
}

impl Check {
    /// A check result with what was expected and what was found.
    pub fn new(
        name: &str,
        repo: Option<&str>,
        ok: bool,
        message: impl Into<String>,
        expected: impl Into<String>,
        found: impl Into<String>,
    ) -> Self {
        Check {
            name: name.into(),
            repo: repo.map(str::to_string),
            ok,
            warning: false,
            message: message.into(),
            expected: Some(expected.into()),
            found: Some(found.into()),
            state: None,
            since: None,
        }
    }

    /// The alert subject of this check.
    pub fn subject(&self) -> crate::notify::Subject {
        crate::notify::Subject {
            check: self.name.clone(),
            repo: self.repo.clone(),
            ok: self.ok || self.warning,
            expected: self.expected.clone().unwrap_or_else(|| "the check to pass".into()),
            found: self.found.clone().unwrap_or_else(|| self.message.clone()),
        }
    }
}

/// The state of one repository.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RepoStatus {
    /// Repository, as named in messages.
    pub repo: String,
    /// Complete backups.
    pub backups: usize,
    /// Newest complete backup.
    pub newest: Option<BackupId>,
    /// When it was taken.
    pub newest_at: Option<DateTime<Utc>>,
    /// Its age in seconds.
    pub newest_age_secs: Option<u64>,
    /// Bytes of every object in the repository.
    pub total_bytes: u64,
    /// Newest verification record among the newest backups, and which backup it is for.
    pub last_verification: Option<VerificationRecord>,
    /// The backup the verification is for.
    pub last_verified_backup: Option<BackupId>,
    /// Listing or reading failed.
    pub error: Option<String>,
    /// Backups stamped in the future of this clock (never counted as newest).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub future: Vec<BackupId>,
    /// Unfinished uploads of runs that died or are still running (local staging files `<key>#<n>`,
    /// open S3 multipart uploads); `prune` removes the dead ones after its grace period. `None`
    /// where the store cannot list them (Azure, GCS) or listing them failed.
    pub open_uploads: Option<usize>,
}

/// Output of [`status`](crate::status()).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StatusReport {
    /// Every check passed (warnings aside).
    pub healthy: bool,
    /// The checks, in order.
    pub checks: Vec<Check>,
    /// Per repository.
    pub repos: Vec<RepoStatus>,
    /// Undo copies kept in the undo area, newest first (they do not change the health).
    #[serde(default)]
    pub undo: Vec<crate::catalog::UndoCopy>,
}

/// Checks the health of one or more repositories.
pub async fn status(opts: &StatusOptions, ctx: &Context) -> Result<StatusReport> {
    if opts.repos.is_empty() {
        return Err(crate::error::Error::InvalidInput("no repository given (--repo)".into()));
    }
    let targets = opts.repos.iter().map(|r| Target::create_in(r, ctx)).collect::<Result<Vec<_>>>()?;
    status_in(&targets, opts, Utc::now(), ctx).await
}

/// [`status`] on opened repositories at a given time (tests).
pub async fn status_in(
    targets: &[Target],
    opts: &StatusOptions,
    now: DateTime<Utc>,
    _ctx: &Context,
) -> Result<StatusReport> {
    let mut checks = Vec::new();
    let mut repos = Vec::new();
    let mut newest_manifests: Vec<Option<Manifest>> = Vec::new();
    // Another database sharing the repository never stands in for the source's.
    let scope = match (&opts.source, opts.all_databases) {
        (Some(s), false) => Some(catalog::DatabaseScope::of_url(&crate::model::DatabaseUrl::parse(s)?)),
        _ => None,
    };
    let listings = list_in_scope(targets, scope.as_ref()).await;
    let recorded = recorded_verifications(targets, &listings);
    for (t, listed) in targets.iter().zip(listings) {
        let (rs, newest) = repo::check_repo(t, listed, opts, now, &recorded, &mut checks).await;
        repos.push(rs);
        newest_manifests.push(newest);
    }
    checks.push(offsite_check(targets, opts));
    if targets.len() > 1 {
        checks.push(copies_check(targets, &newest_manifests));
    }
    let healthy = checks.iter().all(|c| c.ok || c.warning);
    // (`status_in` of `undo` lists the undo area's copies.)
    Ok(StatusReport { healthy, checks, repos, undo: Vec::new() })
}

/// Each repository's backups, only those of the source's database when a scope is given
/// (encrypted ones stay: their database cannot be read without the key).
async fn list_in_scope(
    targets: &[Target],
    scope: Option<&catalog::DatabaseScope>,
) -> Vec<Result<catalog::ListReport>> {
    let mut listings = Vec::with_capacity(targets.len());
    for t in targets {
        let mut l = catalog::list(t, None).await;
        if let (Ok(l), Some(scope)) = (&mut l, scope) {
            l.backups.retain(|b| b.encrypted || catalog::DatabaseScope::of_summary(b) == *scope);
        }
        listings.push(l);
    }
    listings
}

/// The newest verification recorded for each backup id, with the repository holding the
/// record: a verification in any repository of the set counts for the same backup elsewhere
/// (a `copy` is byte-identical, digest-checked on the way).
fn recorded_verifications(
    targets: &[Target],
    listings: &[Result<catalog::ListReport>],
) -> HashMap<BackupId, (String, VerificationRecord)> {
    let mut recorded: HashMap<BackupId, (String, VerificationRecord)> = HashMap::new();
    for (t, l) in targets.iter().zip(listings) {
        for b in l.iter().flat_map(|l| &l.backups) {
            if let Some(v) = &b.last_verification
                && recorded.get(&b.id).is_none_or(|(_, o)| o.at < v.at)
            {
                recorded.insert(b.id.clone(), (t.display_name().to_string(), v.clone()));
            }
        }
    }
    recorded
}

/// `offsite`: more than one repository, and not all of them on the source's file system.
fn offsite_check(targets: &[Target], opts: &StatusOptions) -> Check {
    let on_source: Vec<&str> = targets
        .iter()
        .map(Target::display_name)
        .filter(|r| opts.source.as_deref().is_some_and(|s| same_file_system(s, r)))
        .collect();
    let expected = "a copy in a second repository off the source's file system";
    let (ok, found) = if targets.len() < 2 {
        (
            false,
            format!(
                "a single repository ({}): one disk or account lost loses every backup",
                targets.first().map_or("-", |t| t.display_name())
            ),
        )
    } else if on_source.len() == targets.len() {
        (
            false,
            format!("every repository is on the source database's file system ({})", on_source.join(", ")),
        )
    } else {
        (
            true,
            format!(
                "{} repositories, {} off the source's file system",
                targets.len(),
                targets.len() - on_source.len()
            ),
        )
    };
    let mut c = Check::new("offsite", None, ok, found.clone(), expected, found);
    c.warning = !ok && !opts.require_offsite;
    c
}

/// Whether repository `repo` (a path) lives on the file system of `source` (a SQLite file, or a
/// server on this machine). Remote stores never do.
fn same_file_system(source: &str, repo: &str) -> bool {
    use std::os::unix::fs::MetadataExt;
    let Ok(crate::storage::url::RepoUrl::Local { path }) = crate::storage::url::RepoUrl::parse(repo) else {
        return false;
    };
    let Ok(url) = crate::model::DatabaseUrl::parse(source) else { return false };
    // The nearest existing ancestor stands for a repository not created yet.
    let dev_of = |p: &std::path::Path| p.ancestors().find_map(|a| std::fs::metadata(a).ok()).map(|m| m.dev());
    match url.sqlite_path() {
        Some(db) => dev_of(db).is_some() && dev_of(db) == dev_of(std::path::Path::new(&path)),
        None => matches!(url.url().host_str(), None | Some("localhost" | "127.0.0.1" | "::1" | "[::1]")),
    }
}

/// The 3-2-1 check: the overall newest backup is in every repository, byte-identical.
fn copies_check(targets: &[Target], newest: &[Option<Manifest>]) -> Check {
    let check = |ok: bool, message: String| {
        Check::new(
            "copies",
            None,
            ok,
            message.clone(),
            "the newest backup, identical, in every repository",
            message,
        )
    };
    let Some(reference) =
        newest.iter().flatten().max_by(|a, b| (a.started_at, &a.id).cmp(&(b.started_at, &b.id)))
    else {
        return check(false, "no repository holds a backup".into());
    };
    let digests = |m: &Manifest| {
        let mut v: Vec<(String, String)> =
            m.objects.iter().map(|o| (o.key.clone(), o.sha256.clone())).collect();
        v.sort();
        v
    };
    let want = digests(reference);
    let mut problems = Vec::new();
    for (t, m) in targets.iter().zip(newest) {
        match m {
            Some(m) if m.id == reference.id => {
                if digests(m) != want {
                    problems.push(format!(
                        "{} holds {} with different object digests",
                        t.display_name(),
                        m.id
                    ));
                }
            }
            Some(m) => {
                problems.push(format!("{} lacks {} (its newest is {})", t.display_name(), reference.id, m.id))
            }
            None => problems.push(format!("{} lacks {}", t.display_name(), reference.id)),
        }
    }
    if problems.is_empty() {
        check(
            true,
            format!("newest backup {} is in all {} repositories, identical", reference.id, targets.len()),
        )
    } else {
        check(false, problems.join("; "))
    }
}

fn dur(secs: u64) -> String {
    match secs {
        s if s < 120 => format!("{s}s"),
        s if s < 2 * 3600 => format!("{}m", s / 60),
        s if s < 2 * 86400 => format!("{:.1}h", s as f64 / 3600.0),
        s => format!("{:.1}d", s as f64 / 86400.0),
    }
}
