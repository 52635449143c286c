//! `dbbackup prune`.

use anyhow::Result;
use backup_core::{Command, Context, PruneOptions, PruneReport, Report, RetentionPolicy, Verdict};

use crate::cli::PruneArgs;
use crate::output::{Output, bytes};

pub async fn run(a: PruneArgs, ctx: &Context, out: &Output) -> Result<Verdict> {
    let r = options(a)?.run(ctx).await?;
    out.report(&r, || text(&r));
    Ok(r.verdict())
}

/// The core's options from the command line.
fn options(a: PruneArgs) -> Result<PruneOptions> {
    Ok(PruneOptions {
        repo: a.repo,
        policy: RetentionPolicy {
            keep_last: a.keep_last,
            keep_hourly: a.keep_hourly,
            keep_daily: a.keep_daily,
            keep_weekly: a.keep_weekly,
            keep_monthly: a.keep_monthly,
            keep_yearly: a.keep_yearly,
            max_size: a.max_size.as_deref().map(parse_size).transpose()?,
        },
        dry_run: a.dry_run,
        orphan_grace_secs: parse_duration(&a.orphan_grace)?,
        all_databases: a.all_databases,
        undo_dir: super::undo_dir(a.undo_dir),
    })
}

/// The human rendering: one line per backup, incomplete backup, unfinished upload and undo copy,
/// then the totals and the errors.
fn text(r: &PruneReport) -> String {
    let mut s = String::new();
    for d in &r.plan.decisions {
        let verb = if d.keep {
            "keep  "
        } else if r.dry_run {
            "REMOVE"
        } else {
            "removed"
        };
        s.push_str(&format!("{verb} {}  {:>10}  {}\n", d.id, bytes(d.stored_bytes), d.reasons.join("; ")));
    }
    for o in &r.plan.orphans {
        let what = if !o.sweep {
            "leave  "
        } else if r.dry_run {
            "SWEEP  "
        } else {
            "swept  "
        };
        s.push_str(&format!(
            "{what}{} incomplete backup: {} objects, {} (newest {})\n",
            o.id,
            o.objects,
            bytes(o.bytes),
            o.newest.format("%Y-%m-%d %H:%M")
        ));
    }
    for u in &r.plan.open_uploads {
        let what = if !u.sweep {
            "leave  "
        } else if r.dry_run {
            "ABORT  "
        } else {
            "aborted"
        };
        let size = u.bytes.map(|b| format!(", {}", bytes(b))).unwrap_or_default();
        s.push_str(&format!(
            "{what} unfinished upload of {} ({}{size}, {})\n",
            u.key,
            u.upload_id,
            u.started.format("%Y-%m-%d %H:%M")
        ));
    }
    if let Some(why) = &r.plan.uploads_unlisted {
        s.push_str(&format!("unfinished uploads not looked for: {why}\n"));
    }
    for u in &r.undo_removed {
        s.push_str(&format!(
            "{} undo copy {} of {} (expired {})\n",
            if r.dry_run { "REMOVE " } else { "removed" },
            u.id,
            u.target,
            u.expires_at.format("%Y-%m-%d %H:%M")
        ));
    }
    s.push_str(&format!(
        "{}{} kept, {} removed, {} freed in {}",
        if r.dry_run { "dry run: " } else { "" },
        r.kept,
        r.removed,
        bytes(r.freed_bytes),
        r.repo
    ));
    for e in &r.errors {
        s.push_str(&format!("\nERROR {e}"));
    }
    s
}

/// `50GiB`, `500MB`, `1.5T`, `1024` (bytes): [`backup_core::parse_size`].
pub fn parse_size(s: &str) -> Result<u64> {
    Ok(backup_core::parse_size(s)?)
}

/// `26h`, `30m`, `7d`, `1h 30m`, in seconds: [`backup_core::parse_duration`].
pub fn parse_duration(s: &str) -> Result<u64> {
    Ok(backup_core::parse_duration(s)?.as_secs())
}
