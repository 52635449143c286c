//! Health (`status`): is there a recent, proven, replicated backup? One [`StatusReport`] with
//! named checks, for monitors and cron (`healthy` false -> CLI exit 4).
//!
//! Checks, per repository: `reachable` (listing works), `has_backup`, `newest_age` (vs
//! `max_age_secs`), `total_size` (every object under the repository prefix, vs `max_size`),
//! `last_verification` (the newest recorded verify/drill over the newest backups: a failed one is
//! unhealthy; none at all is reported but not unhealthy). With two or more repositories,
//! `copies` (3-2-1): the newest backup across all of them is present in each, with identical
//! object digests.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::catalog::{self, VerificationRecord};
use crate::error::Result;
use crate::format::manifest::Manifest;
use crate::model::BackupId;
use crate::progress::Context;
use crate::storage::Target;

/// How many of the newest backups are searched for a verification record.
const VERIFY_LOOKBACK: usize = 5;

/// Input of [`status`].
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct StatusOptions {
    /// Repository URLs (the first is the primary).
    pub repos: Vec<String>,
    /// The newest backup must be younger than this (seconds).
    pub max_age_secs: Option<u64>,
    /// Every repository must hold at most this many bytes.
    pub max_size: Option<u64>,
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
    pub state: Option<crate::alert::Health>,
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
            message: message.into(),
            expected: Some(expected.into()),
            found: Some(found.into()),
            state: None,
            since: None,
        }
    }

    /// The alert subject of this check.
    pub fn subject(&self) -> crate::alert::Subject {
        crate::alert::Subject {
            check: self.name.clone(),
            repo: self.repo.clone(),
            ok: self.ok,
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
}

/// Output of [`status`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StatusReport {
    /// Every check passed.
    pub healthy: bool,
    /// The checks, in order.
    pub checks: Vec<Check>,
    /// Per repository.
    pub repos: Vec<RepoStatus>,
}

/// Checks the health of one or more repositories.
pub async fn status(opts: &StatusOptions, ctx: &Context) -> Result<StatusReport> {
    if opts.repos.is_empty() {
        return Err(crate::error::Error::InvalidInput("no repository given (--repo)".into()));
    }
    let targets = opts.repos.iter().map(|r| Target::open(r)).collect::<Result<Vec<_>>>()?;
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
    for t in targets {
        let name = t.display_name().to_string();
        let check = |n: &str, ok: bool, message: String, expected: String, found: String| {
            Check::new(n, Some(&name), ok, message, expected, found)
        };
        let mut rs = RepoStatus { repo: name.clone(), ..Default::default() };
        let listed = match catalog::list_in(t, None).await {
            Ok(l) => l,
            Err(e) => {
                checks.push(check(
                    "reachable",
                    false,
                    format!("cannot list {name}: {e}"),
                    "the repository can be listed".into(),
                    e.to_string(),
                ));
                rs.error = Some(e.to_string());
                repos.push(rs);
                newest_manifests.push(None);
                continue;
            }
        };
        rs.backups = listed.backups.len();
        match t.list("").await {
            Ok(items) => rs.total_bytes = items.iter().map(|i| i.size).sum(),
            Err(e) => rs.error = Some(e.to_string()),
        }
        let newest = listed.backups.first();
        match newest {
            None => {
                checks.push(check(
                    "has_backup",
                    false,
                    format!("no complete backup in {name}"),
                    "at least one complete backup".into(),
                    "none".into(),
                ));
                newest_manifests.push(None);
            }
            Some(b) => {
                let age = u64::try_from((now - b.finished_at).num_seconds()).unwrap_or(0);
                rs.newest = Some(b.id.clone());
                rs.newest_at = Some(b.created_at);
                rs.newest_age_secs = Some(age);
                checks.push(check(
                    "has_backup",
                    true,
                    format!("{} complete backups, newest {}", rs.backups, b.id),
                    "at least one complete backup".into(),
                    format!("{} complete backups", rs.backups),
                ));
                if let Some(max) = opts.max_age_secs {
                    checks.push(check(
                        "newest_age",
                        age <= max,
                        format!("newest backup is {} old (max {})", dur(age), dur(max)),
                        format!("a backup younger than {}", dur(max)),
                        format!("the newest ({}) is {} old", b.id, dur(age)),
                    ));
                }
                newest_manifests.push(catalog::read_manifest(t, &b.id).await.ok());
            }
        }
        if let Some(max) = opts.max_size {
            checks.push(check(
                "total_size",
                rs.total_bytes <= max,
                format!("repository holds {} bytes (max {max})", rs.total_bytes),
                format!("at most {max} bytes"),
                format!("{} bytes", rs.total_bytes),
            ));
        }
        let verified = listed
            .backups
            .iter()
            .take(VERIFY_LOOKBACK)
            .filter_map(|b| b.last_verification.clone().map(|v| (b.id.clone(), v)))
            .max_by_key(|(_, v)| v.at);
        match verified {
            Some((id, v)) => {
                checks.push(check(
                    "last_verification",
                    v.ok,
                    format!(
                        "{} of {id} at {}: {}",
                        v.level,
                        v.at.format("%Y-%m-%d %H:%M UTC"),
                        if v.ok { "ok".to_string() } else { format!("FAILED ({} findings)", v.findings) }
                    ),
                    "the last verification passed".into(),
                    format!("{} of {id} {}", v.level, if v.ok { "passed" } else { "FAILED" }),
                ));
                rs.last_verification = Some(v);
                rs.last_verified_backup = Some(id);
            }
            None if newest.is_some() => checks.push(check(
                "last_verification",
                true,
                format!(
                    "none of the {VERIFY_LOOKBACK} newest backups was ever verified (run `dbbackup verify`)"
                ),
                "a recorded verification".into(),
                "none".into(),
            )),
            None => {}
        }
        repos.push(rs);
    }
    if targets.len() > 1 {
        checks.push(copies_check(targets, &newest_manifests));
    }
    let healthy = checks.iter().all(|c| c.ok);
    Ok(StatusReport { healthy, checks, repos })
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
