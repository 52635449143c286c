//! The keep rules of retention (restic's `forget`, in UTC): which of a list of complete backups
//! a [`RetentionPolicy`] keeps, and why. Pure: the table-driven tests exercise it directly.

use chrono::{DateTime, Datelike, Utc};
use serde::{Deserialize, Serialize};

use crate::catalog::BackupSummary;
use crate::error::{Error, Result};
use crate::model::BackupId;

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
        cap_size(&mut out, cap, newest_verified);
    }
    Ok(out)
}

/// `--max-size`: removes the oldest kept backups of `decisions` (newest first) until the kept
/// total fits `cap`; never the newest (index 0) nor the newest verified one.
fn cap_size(decisions: &mut [Decision], cap: u64, newest_verified: Option<&BackupId>) {
    let mut total: u64 = decisions.iter().filter(|d| d.keep).map(|d| d.stored_bytes).sum();
    for d in decisions.iter_mut().skip(1).rev() {
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

fn policy_has_keep(p: &RetentionPolicy) -> bool {
    [p.keep_last, p.keep_hourly, p.keep_daily, p.keep_weekly, p.keep_monthly, p.keep_yearly]
        .iter()
        .any(|r| r.unwrap_or(0) > 0)
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
