//! `status` catches what the team feared: never verified, a drill too old, a single copy (or all
//! copies on the source's disk), a backup much smaller than the one before, the newest
//! verification looked up across all backups, and a backup stamped ten years in the future
//! (reported as `clock`, never `latest`, never deciding what `prune` keeps).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use backup_core::{
    BackupId, Context, DatabaseUrl, PruneOptions, RetentionPolicy, StatusOptions, StatusReport, Target,
    VerificationRecord, backup_ids, prune, read_manifest, record_verification, resolve, status_in,
};
use chrono::{DateTime, Duration, Utc};
use dbbackup_tests::source_suite::{Fixture, backup, memory_repo};
use dbbackup_tests::sqlite_fixture::SqliteFixture;

async fn sqlite_db() -> String {
    let f = SqliteFixture;
    let url = f.create_db(&dbbackup_tests::unique("health")).await;
    f.populate(&url).await;
    url
}

fn failing(r: &StatusReport) -> Vec<String> {
    r.checks.iter().filter(|c| !c.ok && !c.warning).map(|c| c.name.clone()).collect()
}

fn check<'a>(r: &'a StatusReport, name: &str) -> &'a backup_core::Check {
    r.checks.iter().find(|c| c.name == name).unwrap_or_else(|| panic!("no {name} check: {:?}", r.checks))
}

fn record(level: &str, at: DateTime<Utc>, ok: bool) -> VerificationRecord {
    VerificationRecord {
        level: level.parse().unwrap(),
        at,
        ok,
        recovery_ms: Some(1000),
        findings: 0,
        scratch: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn never_verified_old_drill_single_copy_and_verification_beyond_the_newest_five() {
    let url = sqlite_db().await;
    let repo = memory_repo();
    let ctx = Context::default();
    let mut ids = Vec::new();
    for _ in 0..7 {
        ids.push(backup(&url, &repo).await.unwrap());
        tokio::time::sleep(std::time::Duration::from_millis(1050)).await;
    }
    let now = Utc::now();
    let opts = StatusOptions::default();
    // Never verified: unhealthy, named, with what was expected.
    let r = status_in(std::slice::from_ref(&repo), &opts, now, &ctx).await.unwrap();
    assert!(!r.healthy);
    assert_eq!(failing(&r), vec!["last_verification"]);
    assert_eq!(check(&r, "last_verification").found.as_deref(), Some("never verified"));
    // A verification of the oldest of seven backups counts (not only the 5 newest).
    record_verification(&repo, &ids[0].parse().unwrap(), &record("drill", now - Duration::days(40), true))
        .await
        .unwrap();
    let r = status_in(std::slice::from_ref(&repo), &opts, now, &ctx).await.unwrap();
    assert!(r.healthy, "{:?}", r.checks);
    assert!(check(&r, "last_verification").message.contains(&ids[0]), "{:?}", r.checks);
    // A single repository: a warning, not unhealthy; unhealthy with require_offsite.
    let off = check(&r, "offsite");
    assert!(!off.ok && off.warning && off.message.contains("single repository"), "{off:?}");
    let strict = StatusOptions { require_offsite: true, ..Default::default() };
    let r = status_in(std::slice::from_ref(&repo), &strict, now, &ctx).await.unwrap();
    assert_eq!(failing(&r), vec!["offsite"]);
    // The last drill is 40 days old: unhealthy with --max-drill-age 35d, healthy with 45d.
    let drill =
        |days: i64| StatusOptions { max_drill_age_secs: Some(days as u64 * 86400), ..Default::default() };
    let r = status_in(std::slice::from_ref(&repo), &drill(35), now, &ctx).await.unwrap();
    assert_eq!(failing(&r), vec!["drill_age"]);
    assert!(check(&r, "drill_age").found.as_deref().unwrap().contains("40.0d old"), "{:?}", r.checks);
    let r = status_in(std::slice::from_ref(&repo), &drill(45), now, &ctx).await.unwrap();
    assert!(r.healthy, "{:?}", r.checks);
    // No drill at all (another repository with a full verification only): unhealthy.
    let other = memory_repo();
    let id = backup(&url, &other).await.unwrap();
    record_verification(&other, &id.parse().unwrap(), &record("full", now, true)).await.unwrap();
    let r = status_in(std::slice::from_ref(&other), &drill(35), now, &ctx).await.unwrap();
    assert_eq!(failing(&r), vec!["drill_age"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_copies_on_the_source_disk_is_not_offsite() {
    let url = sqlite_db().await;
    let dir = tempfile::tempdir().unwrap();
    let db_dir = DatabaseUrl::parse(&url).unwrap().sqlite_path().unwrap().parent().unwrap().to_path_buf();
    // Two repositories beside the database file: same file system.
    let (a, b) =
        (db_dir.join(dbbackup_tests::unique("repo-a")), db_dir.join(dbbackup_tests::unique("repo-b")));
    let targets: Vec<Target> = [&a, &b].iter().map(|p| Target::open(p.to_str().unwrap()).unwrap()).collect();
    let opts = StatusOptions { source: Some(url.clone()), ..Default::default() };
    let r = status_in(&targets, &opts, Utc::now(), &Context::default()).await.unwrap();
    let off = check(&r, "offsite");
    assert!(!off.ok && off.warning && off.message.contains("source database's file system"), "{off:?}");
    // A memory (remote) repository beside them is off-site.
    let targets = vec![targets[0].clone(), memory_repo()];
    let r = status_in(&targets, &opts, Utc::now(), &Context::default()).await.unwrap();
    assert!(check(&r, "offsite").ok, "{:?}", r.checks);
    drop(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_much_smaller_than_the_previous_or_the_floor_is_unhealthy() {
    let url = sqlite_db().await;
    let repo = memory_repo();
    let ctx = Context::default();
    let first = backup(&url, &repo).await.unwrap();
    record_verification(&repo, &first.parse().unwrap(), &record("full", Utc::now(), true)).await.unwrap();
    // The job "silently produced tiny files": most of the data is gone.
    let path = DatabaseUrl::parse(&url).unwrap().sqlite_path().unwrap().to_path_buf();
    let c = rusqlite::Connection::open(&path).unwrap();
    c.execute_batch("delete from filler; delete from blobs; vacuum;").unwrap();
    drop(c);
    tokio::time::sleep(std::time::Duration::from_millis(1050)).await;
    let second = backup(&url, &repo).await.unwrap();
    let (m1, m2) = (
        read_manifest(&repo, &first.parse().unwrap()).await.unwrap(),
        read_manifest(&repo, &second.parse().unwrap()).await.unwrap(),
    );
    assert!(m2.raw_bytes() * 2 < m1.raw_bytes(), "fixture: {} vs {}", m2.raw_bytes(), m1.raw_bytes());
    let now = Utc::now();
    let r = status_in(std::slice::from_ref(&repo), &StatusOptions::default(), now, &ctx).await.unwrap();
    assert_eq!(failing(&r), vec!["backup_size"]);
    let c = check(&r, "backup_size");
    assert!(c.found.as_deref().unwrap().contains(&format!("of the previous backup {first}")), "{c:?}");
    // --max-shrink 0 turns it off; --min-size is a floor of its own.
    let off = StatusOptions { max_shrink: Some(0.0), ..Default::default() };
    let r = status_in(std::slice::from_ref(&repo), &off, now, &ctx).await.unwrap();
    assert!(r.healthy, "{:?}", r.checks);
    let floor = StatusOptions { max_shrink: Some(0.0), min_size: Some(m1.raw_bytes()), ..Default::default() };
    let r = status_in(std::slice::from_ref(&repo), &floor, now, &ctx).await.unwrap();
    assert_eq!(failing(&r), vec!["backup_size"]);
    assert!(check(&r, "backup_size").message.contains("below --min-size"), "{:?}", r.checks);
}

/// Copies the newest manifest under an id stamped `ahead` in the future (a host with a wrong clock).
async fn stamp_ahead(repo: &Target, ahead: Duration) -> BackupId {
    let m = resolve(repo, "latest").await.unwrap();
    let mut f = m.clone();
    f.started_at = m.started_at + ahead;
    f.finished_at = m.finished_at + ahead;
    f.id = BackupId::new(f.started_at);
    repo.put_bytes(&backup_core::manifest_key(&f.id), f.to_json().unwrap().into()).await.unwrap();
    f.id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_stamped_ten_years_ahead_is_reported_never_latest_and_never_decides_prune() {
    let url = sqlite_db().await;
    let repo = memory_repo();
    let ctx = Context::default();
    let old = backup(&url, &repo).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(1050)).await;
    let real = backup(&url, &repo).await.unwrap();
    record_verification(&repo, &real.parse().unwrap(), &record("full", Utc::now(), true)).await.unwrap();
    let future = stamp_ahead(&repo, Duration::days(3653)).await;
    assert!(backup_ids(&repo).await.unwrap().contains(&future));
    // status: `clock` names it; the newest is the real one, its age is real.
    let opts = StatusOptions { max_age_secs: Some(3600), ..Default::default() };
    let r = status_in(std::slice::from_ref(&repo), &opts, Utc::now(), &ctx).await.unwrap();
    assert_eq!(failing(&r), vec!["clock"]);
    assert!(check(&r, "clock").message.contains(&future.to_string()), "{:?}", r.checks);
    assert_eq!(r.repos[0].newest.as_ref().map(ToString::to_string), Some(real.clone()));
    // latest is the real newest.
    assert_eq!(resolve(&repo, "latest").await.unwrap().id.to_string(), real);
    // prune --keep-last 1 keeps the real newest (and the verified one), removes the old one, and
    // does not let the future-dated backup take the newest's place.
    let p = PruneOptions {
        repo: String::new(),
        policy: RetentionPolicy { keep_last: Some(1), ..Default::default() },
        dry_run: false,
        ..Default::default()
    };
    let rep = prune(&repo, &p, Utc::now(), &ctx).await.unwrap();
    let left: Vec<String> = backup_ids(&repo).await.unwrap().iter().map(ToString::to_string).collect();
    assert!(left.contains(&real), "the real newest was deleted: {left:?} {:?}", rep.plan);
    assert!(!left.contains(&old), "{left:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prune_never_deletes_the_newest_verified_backup() {
    let url = sqlite_db().await;
    let repo = memory_repo();
    let ctx = Context::default();
    let verified = backup(&url, &repo).await.unwrap();
    record_verification(&repo, &verified.parse().unwrap(), &record("full", Utc::now(), true)).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(1050)).await;
    let unverified = backup(&url, &repo).await.unwrap();
    let p = PruneOptions {
        policy: RetentionPolicy { keep_last: Some(1), ..Default::default() },
        ..Default::default()
    };
    let rep = prune(&repo, &p, Utc::now(), &ctx).await.unwrap();
    let left: Vec<String> = backup_ids(&repo).await.unwrap().iter().map(ToString::to_string).collect();
    assert!(left.contains(&verified) && left.contains(&unverified), "{left:?} {:?}", rep.plan);
    let d = rep.plan.decisions.iter().find(|d| d.id.to_string() == verified).unwrap();
    assert!(d.reasons.iter().any(|r| r.contains("newest verified")), "{d:?}");
}
