//! `dbbackup status`.

use anyhow::Result;
use backup_core::{
    AlertScope, Context, NotifyConfig, Report, StatusOptions, StatusReport, Target, Verdict, status,
};

use super::prune::{parse_duration, parse_size};
use crate::cli::StatusArgs;
use crate::output::{Output, bytes, verification};

pub async fn run(a: StatusArgs, alerts: &NotifyConfig, ctx: &Context, out: &Output) -> Result<Verdict> {
    let opts = options(a)?;
    let mut r = status(&opts, ctx).await?;
    // Alert state lives in the first repository (or the local state directory).
    let scope = AlertScope { repos: opts.repos.clone(), database: None };
    let state_repo = opts.repos.first().and_then(|u| Target::open_in(u, ctx).ok());
    let tracked =
        backup_core::track_status(alerts, &mut r, state_repo.as_ref(), &scope, chrono::Utc::now()).await;
    super::notify::warn("status", &tracked.warnings);
    out.report(&r, || text(&r));
    Ok(r.verdict())
}

/// The core's options from the command line.
fn options(a: StatusArgs) -> Result<StatusOptions> {
    Ok(StatusOptions {
        repos: a.repos,
        max_age_secs: a.max_age.as_deref().map(parse_duration).transpose()?,
        max_size: a.max_size.as_deref().map(parse_size).transpose()?,
        max_drill_age_secs: a.max_drill_age.as_deref().map(parse_duration).transpose()?,
        min_size: a.min_size.as_deref().map(parse_size).transpose()?,
        max_shrink: a.max_shrink.as_deref().map(backup_core::parse_fraction).transpose()?,
        source: a.source,
        require_offsite: a.require_offsite,
        clock_tolerance_secs: None,
        all_databases: a.all_databases,
        undo_dir: super::undo_dir(a.undo_dir),
    })
}

/// The human rendering: a table of the repositories, their unfinished uploads, the checks, the
/// undo copies, then the verdict.
fn text(r: &StatusReport) -> String {
    let mut s = format!(
        "{:<36} {:>7} {:<33} {:>8} {:>10}  {}\n",
        "REPOSITORY", "BACKUPS", "NEWEST", "AGE", "SIZE", "LAST VERIFIED"
    );
    for rs in &r.repos {
        let age = rs.newest_age_secs.map(|a| format!("{:.1}h", a as f64 / 3600.0)).unwrap_or("-".into());
        let v = verification(rs.last_verification.as_ref());
        let newest = rs.newest.as_ref().map(ToString::to_string).unwrap_or_else(|| "-".into());
        s.push_str(&format!(
            "{:<36} {:>7} {:<33} {:>8} {:>10}  {}\n",
            rs.repo,
            rs.backups,
            newest,
            age,
            bytes(rs.total_bytes),
            v
        ));
    }
    for rs in &r.repos {
        if let Some(n @ 1..) = rs.open_uploads {
            s.push_str(&format!(
                "{}: {n} unfinished upload(s) (a killed or running backup's; prune removes dead ones after --orphan-grace)\n",
                rs.repo
            ));
        }
    }
    s.push('\n');
    for c in &r.checks {
        let repo = c.repo.as_deref().map(|r| format!(" [{r}]")).unwrap_or_default();
        let since = match (c.ok, c.since) {
            (false, Some(t)) => format!(" (failing since {})", t.format("%Y-%m-%d %H:%M UTC")),
            _ => String::new(),
        };
        s.push_str(&format!(
            "{} {}{repo}: {}{since}\n",
            match (c.ok, c.warning) {
                (true, _) => "ok  ",
                (false, true) => "WARN",
                (false, false) => "FAIL",
            },
            c.name,
            c.message
        ));
    }
    for u in &r.undo {
        s.push_str(&format!(
            "undo copy {} of {} ({}), {} until {}\n",
            u.id,
            u.target,
            bytes(u.stored_bytes),
            if u.expired { "expired" } else { "kept" },
            u.expires_at.format("%Y-%m-%d %H:%M UTC")
        ));
    }
    s.push_str(if r.healthy { "healthy" } else { "UNHEALTHY" });
    s
}
