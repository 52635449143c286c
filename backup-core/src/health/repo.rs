//! The checks of one repository (`reachable`, `clock`, `has_backup`, `newest_age`,
//! `total_size`, `backup_size`, `last_verification`, `drill_age`) and what they record in its
//! [`RepoStatus`].

use std::collections::HashMap;

use chrono::{DateTime, Utc};

use super::{Check, DEFAULT_CLOCK_TOLERANCE_SECS, DEFAULT_MAX_SHRINK, RepoStatus, StatusOptions, dur};
use crate::catalog::{self, VerificationRecord};
use crate::error::Result;
use crate::format::manifest::Manifest;
use crate::model::BackupId;
use crate::storage::Target;

/// The checks of one repository, appended to `checks`; its status and the manifest of its
/// newest backup (for the copies check).
pub(super) async fn check_repo(
    t: &Target,
    listed: Result<catalog::ListReport>,
    opts: &StatusOptions,
    now: DateTime<Utc>,
    recorded: &HashMap<BackupId, (String, VerificationRecord)>,
    checks: &mut Vec<Check>,
) -> (RepoStatus, Option<Manifest>) {
    let name = t.display_name().to_string();
    let mut rs = RepoStatus { repo: name.clone(), ..Default::default() };
    let listed = match listed {
        Ok(l) => l,
        Err(e) => {
            checks.push(Check::new(
                "reachable",
                Some(&name),
                false,
                format!("cannot list {name}: {e}"),
                "the repository can be listed",
                e.to_string(),
            ));
            rs.error = Some(e.to_string());
            return (rs, None);
        }
    };
    let tolerance = chrono::Duration::seconds(
        i64::try_from(opts.clock_tolerance_secs.unwrap_or(DEFAULT_CLOCK_TOLERANCE_SECS))
            .unwrap_or(i64::MAX / 1000),
    );
    // A backup stamped in the future (a wrong clock) is reported and never "newest".
    let (future, trusted): (Vec<_>, Vec<_>) =
        listed.backups.iter().partition(|b| b.created_at > now + tolerance);
    rs.future = future.iter().map(|b| b.id.clone()).collect();
    checks.extend(clock_check(&name, &future, now, tolerance));
    rs.backups = trusted.len();
    let items = match t.list("").await {
        Ok(items) => items,
        Err(e) => {
            rs.error = Some(e.to_string());
            Vec::new()
        }
    };
    rs.total_bytes = items.iter().map(|i| i.size).sum();
    rs.open_uploads = match t.open_uploads().await {
        Ok(found) => found.map(|v| v.len()),
        Err(e) => {
            tracing::warn!("counting unfinished uploads in {name}: {e}");
            None
        }
    };
    let newest = trusted.first().copied();
    let manifest = match newest {
        None => {
            checks.push(no_backup_check(&name));
            None
        }
        Some(b) => {
            checks.extend(newest_checks(&name, b, &trusted, opts, now, &mut rs));
            catalog::read_manifest(t, &b.id).await.ok()
        }
    };
    if let Some(max) = opts.max_size {
        checks.push(Check::new(
            "total_size",
            Some(&name),
            rs.total_bytes <= max,
            format!("repository holds {} bytes (max {max})", rs.total_bytes),
            format!("at most {max} bytes"),
            format!("{} bytes", rs.total_bytes),
        ));
    }
    checks.extend(verification_check(&name, &trusted, recorded, newest.is_some(), &mut rs));
    if let (Some(max), Some(_)) = (opts.max_drill_age_secs, newest) {
        checks.push(drill_check(t, &name, &items, &trusted, max, now).await);
    }
    (rs, manifest)
}

/// `clock`: backups stamped further in the future than the tolerance (none: no check).
fn clock_check(
    name: &str,
    future: &[&catalog::BackupSummary],
    now: DateTime<Utc>,
    tolerance: chrono::Duration,
) -> Option<Check> {
    let f = future.first()?;
    let ahead = u64::try_from((f.created_at - now).num_seconds()).unwrap_or(0);
    let found = format!(
        "{} backup(s) stamped in the future, e.g. {} at {} ({} ahead)",
        future.len(),
        f.id,
        f.created_at.format("%Y-%m-%d %H:%M UTC"),
        dur(ahead)
    );
    Some(Check::new(
        "clock",
        Some(name),
        false,
        format!("{found}; they are never taken as the newest (check the backup host's clock)"),
        format!("backup times at most {} ahead of this clock", dur(tolerance.num_seconds().max(0) as u64)),
        found,
    ))
}

/// `has_backup` failed: the repository holds no complete backup.
fn no_backup_check(name: &str) -> Check {
    Check::new(
        "has_backup",
        Some(name),
        false,
        format!("no complete backup in {name}"),
        "at least one complete backup",
        "none",
    )
}

/// `has_backup`, `newest_age` and `backup_size` of the newest trusted backup `b`, which `rs`
/// records.
fn newest_checks(
    name: &str,
    b: &catalog::BackupSummary,
    trusted: &[&catalog::BackupSummary],
    opts: &StatusOptions,
    now: DateTime<Utc>,
    rs: &mut RepoStatus,
) -> Vec<Check> {
    let age = u64::try_from((now - b.finished_at).num_seconds()).unwrap_or(0);
    rs.newest = Some(b.id.clone());
    rs.newest_at = Some(b.created_at);
    rs.newest_age_secs = Some(age);
    let mut checks = vec![Check::new(
        "has_backup",
        Some(name),
        true,
        format!("{} complete backups, newest {}", rs.backups, b.id),
        "at least one complete backup",
        format!("{} complete backups", rs.backups),
    )];
    if let Some(max) = opts.max_age_secs {
        checks.push(Check::new(
            "newest_age",
            Some(name),
            age <= max,
            format!("newest backup is {} old (max {})", dur(age), dur(max)),
            format!("a backup younger than {}", dur(max)),
            format!("the newest ({}) is {} old", b.id, dur(age)),
        ));
    }
    checks.extend(size_check(name, b, trusted, opts));
    checks
}

/// `last_verification`: the newest verification over every trusted backup (not only the newest
/// few), recorded here or, failing that, in another repository of the set; `rs` records it.
/// No check when the repository holds no backup.
fn verification_check(
    name: &str,
    trusted: &[&catalog::BackupSummary],
    recorded: &HashMap<BackupId, (String, VerificationRecord)>,
    has_backup: bool,
    rs: &mut RepoStatus,
) -> Option<Check> {
    let here = trusted
        .iter()
        .filter_map(|b| b.last_verification.clone().map(|v| (b.id.clone(), v, String::new())))
        .max_by_key(|(_, v, _)| v.at);
    let verified = here.or_else(|| {
        trusted
            .iter()
            .filter_map(|b| {
                recorded.get(&b.id).map(|(r, v)| (b.id.clone(), v.clone(), format!(" (recorded in {r})")))
            })
            .max_by_key(|(_, v, _)| v.at)
    });
    match verified {
        Some((id, v, elsewhere)) => {
            let check = Check::new(
                "last_verification",
                Some(name),
                v.ok,
                format!(
                    "{} of {id} at {}: {}{elsewhere}",
                    v.level,
                    v.at.format("%Y-%m-%d %H:%M UTC"),
                    if v.ok { "ok".to_string() } else { format!("FAILED ({} findings)", v.findings) }
                ),
                "the last verification passed",
                format!("{} of {id} {}", v.level, if v.ok { "passed" } else { "FAILED" }),
            );
            rs.last_verification = Some(v);
            rs.last_verified_backup = Some(id);
            Some(check)
        }
        None if has_backup => Some(Check::new(
            "last_verification",
            Some(name),
            false,
            format!("none of the {} backups was ever verified (run `dbbackup verify`)", rs.backups),
            "a recorded verification",
            "never verified",
        )),
        None => None,
    }
}

/// `backup_size`: the newest backup against `min_size` and against the previous backup of the
/// same database (`max_shrink`).
fn size_check(
    name: &str,
    newest: &catalog::BackupSummary,
    trusted: &[&catalog::BackupSummary],
    opts: &StatusOptions,
) -> Option<Check> {
    let shrink = opts.max_shrink.unwrap_or(DEFAULT_MAX_SHRINK);
    let previous = trusted
        .iter()
        .skip(1)
        .find(|p| p.engine == newest.engine && p.database == newest.database && p.id != newest.id);
    let mut problems = Vec::new();
    let mut expected = Vec::new();
    if let Some(min) = opts.min_size {
        expected.push(format!("at least {min} bytes of data"));
        if newest.raw_bytes < min {
            problems.push(format!(
                "{} holds {} bytes of data, below --min-size {min}",
                newest.id, newest.raw_bytes
            ));
        }
    }
    if let Some(p) = previous.filter(|_| shrink > 0.0) {
        let floor = (p.raw_bytes as f64 * shrink) as u64;
        expected.push(format!("at least {:.0}% of the previous backup ({floor} bytes)", shrink * 100.0));
        if newest.raw_bytes < floor {
            problems.push(format!(
                "{} holds {} bytes of data, {:.0}% of the previous backup {} ({} bytes)",
                newest.id,
                newest.raw_bytes,
                newest.raw_bytes as f64 * 100.0 / p.raw_bytes.max(1) as f64,
                p.id,
                p.raw_bytes
            ));
        }
    }
    if expected.is_empty() {
        return None;
    }
    let ok = problems.is_empty();
    let found = if ok {
        format!("{} holds {} bytes of data", newest.id, newest.raw_bytes)
    } else {
        problems.join("; ")
    };
    Some(Check::new("backup_size", Some(name), ok, found.clone(), expected.join(" and "), found))
}

/// `drill_age`: the newest successful drill recorded in the repository must be younger than
/// `max` seconds. `items` is the repository's listing.
async fn drill_check(
    t: &Target,
    name: &str,
    items: &[crate::storage::target::Listed],
    trusted: &[&catalog::BackupSummary],
    max: u64,
    now: DateTime<Utc>,
) -> Check {
    let ids: std::collections::HashSet<&BackupId> = trusted.iter().map(|b| &b.id).collect();
    let mut keys: Vec<&str> = items
        .iter()
        .filter_map(|i| {
            let (id, level) = crate::format::layout::verification_of_key(&i.key)?;
            (level == "drill" && ids.contains(&id)).then_some(i.key.as_str())
        })
        .collect();
    // Keys carry the record's timestamp after the id: newest record first.
    keys.sort_by(|a, b| b.split("/verify/").nth(1).cmp(&a.split("/verify/").nth(1)));
    let mut newest_ok: Option<(String, VerificationRecord)> = None;
    for key in keys.into_iter().take(20) {
        if let Ok(bytes) = t.get_bytes(key, 1 << 20).await
            && let Ok(r) = serde_json::from_slice::<VerificationRecord>(&bytes)
            && r.ok
            && r.at <= now + chrono::Duration::seconds(DEFAULT_CLOCK_TOLERANCE_SECS as i64)
        {
            newest_ok = Some((key.split('/').next().unwrap_or_default().to_string(), r));
            break;
        }
    }
    let expected = format!("a successful drill younger than {}", dur(max));
    match newest_ok {
        None => Check::new(
            "drill_age",
            Some(name),
            false,
            format!("no successful restore drill recorded in {name} (run `dbbackup verify --level drill`)"),
            expected,
            "no successful drill".to_string(),
        ),
        Some((id, r)) => {
            let age = u64::try_from((now - r.at).num_seconds()).unwrap_or(0);
            let found =
                format!("the last successful drill ({id}, {}) is {} old", r.at.format("%Y-%m-%d"), dur(age));
            Check::new("drill_age", Some(name), age <= max, found.clone(), expected, found)
        }
    }
}
