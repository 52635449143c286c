//! `dbbackup prune`.

use anyhow::{Context as _, Result, bail};
use backup_core::{Context, PruneOptions, RetentionPolicy, prune};

use crate::cli::PruneArgs;
use crate::output::{Output, bytes};

pub async fn run(a: PruneArgs, ctx: &Context, out: &Output) -> Result<i32> {
    let opts = PruneOptions {
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
    };
    let r = prune(&opts, ctx).await?;
    out.report(&r, || {
        let mut s = String::new();
        for d in &r.plan.decisions {
            let verb = if d.keep {
                "keep  "
            } else if r.dry_run {
                "REMOVE"
            } else {
                "removed"
            };
            s.push_str(&format!(
                "{verb} {}  {:>10}  {}\n",
                d.id,
                bytes(d.stored_bytes),
                d.reasons.join("; ")
            ));
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
    });
    Ok(if r.errors.is_empty() { 0 } else { 1 })
}

/// `50GiB`, `500MB`, `1.5T`, `1024` (bytes). Binary and decimal units.
pub fn parse_size(s: &str) -> Result<u64> {
    let t = s.trim();
    let split = t.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: f64 = num.parse().with_context(|| format!("bad size {s:?} (e.g. 50GiB, 500MB)"))?;
    let mult: f64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kib" => 1024.0,
        "kb" => 1e3,
        "m" | "mib" => 1024f64.powi(2),
        "mb" => 1e6,
        "g" | "gib" => 1024f64.powi(3),
        "gb" => 1e9,
        "t" | "tib" => 1024f64.powi(4),
        "tb" => 1e12,
        u => bail!("bad size unit {u:?} in {s:?} (B, KB, KiB, MB, MiB, GB, GiB, TB, TiB)"),
    };
    Ok((n * mult) as u64)
}

/// `26h`, `30m`, `7d`, `1h 30m` (humantime), in seconds.
pub fn parse_duration(s: &str) -> Result<u64> {
    Ok(humantime::parse_duration(s.trim())
        .with_context(|| format!("bad duration {s:?} (e.g. 26h, 30m, 7d)"))?
        .as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_durations() {
        assert_eq!(parse_size("50GiB").unwrap(), 50 << 30);
        assert_eq!(parse_size("500MB").unwrap(), 500_000_000);
        assert_eq!(parse_size("1.5k").unwrap(), 1536);
        assert_eq!(parse_size("1024").unwrap(), 1024);
        assert!(parse_size("lots").is_err() && parse_size("5 parsecs").is_err());
        assert_eq!(parse_duration("26h").unwrap(), 26 * 3600);
        assert_eq!(parse_duration("7d").unwrap(), 7 * 86400);
        assert!(parse_duration("soon").is_err());
    }
}
