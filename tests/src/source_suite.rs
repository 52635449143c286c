//! The source conformance suite: the same end-to-end checks for every engine (SQLite,
//! PostgreSQL, MySQL/MariaDB). An engine provides a [`Fixture`]; adding it is one
//! `source_suite!` line.

use std::sync::Arc;

use backup_core::{
    Context, CreateOptions, DatabaseUrl, Error, RestoreOptions, Target, VerifyLevel, VerifyOptions, create,
    open_loader, open_source, resolve, restore_with, verify_with,
};
use backup_core::{FaultStore, Faults};

/// What an engine's test fixture must provide.
#[async_trait::async_trait]
pub trait Fixture: Send + Sync {
    /// Creates a fresh, empty database and returns its URL.
    async fn create_db(&self, name: &str) -> String;
    /// Fills a database with the engine's awkward-content fixture.
    async fn populate(&self, url: &str);
    /// Changes data and schema (a "migration" that must be undone by a restore).
    async fn mutate(&self, url: &str);
    /// A canonical text of the database's schema and every row, for equality checks.
    async fn fingerprint(&self, url: &str) -> String;
    /// Drops a database.
    async fn drop_db(&self, url: &str);
}

/// Generates the suite for an engine. `$fixture` is an expression yielding `Option<F>`.
#[macro_export]
macro_rules! source_suite {
    ($name:ident, $fixture:expr) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn round_trip_is_lossless() {
                let Some(f) = $fixture else { return };
                $crate::source_suite::round_trip_is_lossless(&f).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn restore_over_a_changed_database_brings_it_back() {
                let Some(f) = $fixture else { return };
                $crate::source_suite::restore_over_a_changed_database_brings_it_back(&f).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn corrupt_object_is_refused_and_target_untouched() {
                let Some(f) = $fixture else { return };
                $crate::source_suite::corrupt_object_is_refused_and_target_untouched(&f).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn failure_midway_leaves_target_untouched() {
                let Some(f) = $fixture else { return };
                $crate::source_suite::failure_midway_leaves_target_untouched(&f).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn failed_upload_leaves_no_backup() {
                let Some(f) = $fixture else { return };
                $crate::source_suite::failed_upload_leaves_no_backup(&f).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn guard_rolls_back_a_failed_migration() {
                let Some(f) = $fixture else { return };
                $crate::source_suite::guard_rolls_back_a_failed_migration(&f).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn encrypted_round_trip_and_bad_keys_leave_target_untouched() {
                let Some(f) = $fixture else { return };
                $crate::source_suite::encrypted_round_trip_and_bad_keys_leave_target_untouched(&f).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn restore_can_be_undone() {
                let Some(f) = $fixture else { return };
                $crate::source_suite::restore_can_be_undone(&f).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn drill_proves_restorable() {
                let Some(f) = $fixture else { return };
                $crate::source_suite::drill_proves_restorable(&f).await;
            }
        }
    };
}

/// A fresh in-memory repository.
pub fn memory_repo() -> Target {
    Target::open(&format!("memory://{}", crate::unique("repo"))).expect("memory repo")
}

/// Backs up `url` into `repo` with small chunks (so chunking is exercised); returns the id.
pub async fn backup(url: &str, repo: &Target) -> Result<String, Error> {
    let parsed = DatabaseUrl::parse(url)?;
    let src = open_source(&parsed)?;
    let opts = CreateOptions { source: url.into(), chunk_bytes: 1 << 20, jobs: 2, ..Default::default() };
    create(src.as_ref(), &parsed.to_string(), std::slice::from_ref(repo), &opts, &Context::default())
        .await
        .map(|r| r.id.to_string())
}

/// Restores backup `id` from `repo` into `url`.
pub async fn restore_into(repo: &Target, id: &str, url: &str) -> Result<backup_core::RestoreReport, Error> {
    let m = resolve(repo, id).await?;
    let parsed = DatabaseUrl::parse(url)?;
    let loader = open_loader(&parsed)?;
    let opts = RestoreOptions { into: url.into(), jobs: 2, ..Default::default() };
    restore_with(repo, &m, loader.as_ref(), &parsed.to_string(), &opts, &Context::default()).await
}

async fn populated<F: Fixture + ?Sized>(f: &F, tag: &str) -> String {
    let url = f.create_db(&crate::unique(tag)).await;
    f.populate(&url).await;
    url
}

/// Dump, restore into a new database: schema and every row equal. Full verification passes.
pub async fn round_trip_is_lossless<F: Fixture + ?Sized>(f: &F) {
    let src = populated(f, "rt_src").await;
    let repo = memory_repo();
    let id = backup(&src, &repo).await.expect("backup");
    let m = resolve(&repo, &id).await.unwrap();
    assert!(m.rows() > 0, "the fixture must have rows");
    let v = verify_with(
        &repo,
        &m,
        &VerifyOptions { level: VerifyLevel::Full, ..Default::default() },
        &Context::default(),
    )
    .await
    .unwrap();
    assert!(v.ok, "{:?}", v.findings);
    let dst = f.create_db(&crate::unique("rt_dst")).await;
    let r = restore_into(&repo, &id, &dst).await.expect("restore");
    assert_eq!(r.rows, m.rows());
    assert_eq!(
        f.fingerprint(&src).await,
        f.fingerprint(&dst).await,
        "restored database differs from the source"
    );
    f.drop_db(&src).await;
    f.drop_db(&dst).await;
}

/// A restore over a database that changed since the backup makes it equal to the backup again.
pub async fn restore_over_a_changed_database_brings_it_back<F: Fixture + ?Sized>(f: &F) {
    let db = populated(f, "over").await;
    let before = f.fingerprint(&db).await;
    let repo = memory_repo();
    let id = backup(&db, &repo).await.expect("backup");
    f.mutate(&db).await;
    assert_ne!(f.fingerprint(&db).await, before, "mutate must change the fingerprint");
    restore_into(&repo, &id, &db).await.expect("restore");
    assert_eq!(f.fingerprint(&db).await, before);
    f.drop_db(&db).await;
}

fn faulty(repo: &Target, faults: Faults) -> Target {
    repo.with_store(Arc::new(FaultStore::new(repo.store(), faults)))
}

/// A flipped byte in any data object: full verify names it, restore refuses, target unchanged.
pub async fn corrupt_object_is_refused_and_target_untouched<F: Fixture + ?Sized>(f: &F) {
    let src = populated(f, "corrupt_src").await;
    let repo = memory_repo();
    let id = backup(&src, &repo).await.expect("backup");
    let m = resolve(&repo, &id).await.unwrap();
    let target = populated(f, "corrupt_dst").await;
    f.mutate(&target).await;
    let before = f.fingerprint(&target).await;
    for o in &m.objects {
        let bad = faulty(
            &repo,
            Faults { flip_byte: Some((o.key.clone(), o.stored_bytes / 2)), ..Default::default() },
        );
        let v = verify_with(
            &bad,
            &m,
            &VerifyOptions { level: VerifyLevel::Full, record: false, ..Default::default() },
            &Context::default(),
        )
        .await
        .unwrap();
        assert!(!v.ok, "flipped byte in {} not found", o.key);
        assert_eq!(v.findings.len(), 1, "{:?}", v.findings);
        assert_eq!(v.findings[0].object.as_deref(), Some(o.key.as_str()));
        let parsed = DatabaseUrl::parse(&target).unwrap();
        let loader = open_loader(&parsed).unwrap();
        let e = restore_with(
            &bad,
            &m,
            loader.as_ref(),
            &target,
            &RestoreOptions { into: target.clone(), jobs: 2, ..Default::default() },
            &Context::default(),
        )
        .await
        .unwrap_err();
        assert!(matches!(e, Error::Integrity { .. }), "restore of a corrupt {} gave {e}", o.key);
        assert_eq!(f.fingerprint(&target).await, before, "target changed by a refused restore ({})", o.key);
    }
    f.drop_db(&src).await;
    f.drop_db(&target).await;
}

/// A restore that fails in the middle (truncated object, broken connection) leaves the target as it was.
pub async fn failure_midway_leaves_target_untouched<F: Fixture + ?Sized>(f: &F) {
    let src = populated(f, "mid_src").await;
    let repo = memory_repo();
    let id = backup(&src, &repo).await.expect("backup");
    let m = resolve(&repo, &id).await.unwrap();
    let target = populated(f, "mid_dst").await;
    f.mutate(&target).await;
    let before = f.fingerprint(&target).await;
    let last = m.objects.iter().rfind(|o| o.kind != backup_core::ObjectKind::SchemaPost).unwrap();
    let bad = faulty(
        &repo,
        Faults { truncate: Some((last.key.clone(), last.stored_bytes / 2)), ..Default::default() },
    )
    .with_resume_attempts(0);
    let parsed = DatabaseUrl::parse(&target).unwrap();
    let loader = open_loader(&parsed).unwrap();
    let e = restore_with(
        &bad,
        &m,
        loader.as_ref(),
        &target,
        &RestoreOptions { into: target.clone(), jobs: 2, ..Default::default() },
        &Context::default(),
    )
    .await
    .unwrap_err();
    assert!(matches!(e, Error::Integrity { .. }), "{e}");
    assert_eq!(f.fingerprint(&target).await, before, "target changed by a failed restore");
    f.drop_db(&src).await;
    f.drop_db(&target).await;
}

/// A store failure or cancellation in the middle of a backup leaves no manifest: the backup does
/// not exist for list/restore, and its objects are cleaned up.
pub async fn failed_upload_leaves_no_backup<F: Fixture + ?Sized>(f: &F) {
    let src = populated(f, "fail_src").await;
    let repo = memory_repo();
    let bad = faulty(&repo, Faults { fail_writes_after: Some(2), ..Default::default() });
    assert!(backup(&src, &bad).await.is_err());
    let listed = backup_core::list(&repo, None).await.unwrap();
    assert!(listed.backups.is_empty(), "{:?}", listed.backups);
    assert!(matches!(resolve(&repo, "latest").await, Err(Error::NotFound { .. })));
    // Cancel midway.
    let ctx = Context::default();
    ctx.cancel.cancel();
    let parsed = DatabaseUrl::parse(&src).unwrap();
    let s = open_source(&parsed).unwrap();
    let opts = CreateOptions { source: src.clone(), chunk_bytes: 1 << 20, ..Default::default() };
    let e = create(s.as_ref(), &src, std::slice::from_ref(&repo), &opts, &ctx).await.unwrap_err();
    assert!(matches!(e, Error::Cancelled(_)), "{e}");
    assert!(backup_core::list(&repo, None).await.unwrap().backups.is_empty());
    assert!(repo.list("").await.unwrap().is_empty(), "objects of failed backups must be cleaned up");
    f.drop_db(&src).await;
}

/// A drill restores into a scratch shadow, checks every table, and records the result.
pub async fn drill_proves_restorable<F: Fixture + ?Sized>(f: &F) {
    let src = populated(f, "drill_src").await;
    let repo = memory_repo();
    let id = backup(&src, &repo).await.expect("backup");
    let m = resolve(&repo, &id).await.unwrap();
    let scratch = f.create_db(&crate::unique("drill_scratch")).await;
    let before = f.fingerprint(&scratch).await;
    let v = verify_with(
        &repo,
        &m,
        &VerifyOptions { level: VerifyLevel::Drill, scratch: Some(scratch.clone()), ..Default::default() },
        &Context::default(),
    )
    .await
    .unwrap();
    assert!(v.ok, "{:?}", v.findings);
    assert_eq!(v.rows, Some(m.rows()));
    assert!(v.recovery_ms.is_some());
    let last = backup_core::last_verification(&repo, &m.id).await.unwrap().expect("recorded");
    assert_eq!(last.level.as_str(), "drill");
    assert!(last.ok);
    assert_eq!(f.fingerprint(&scratch).await, before, "a drill must not change the scratch database itself");
    f.drop_db(&src).await;
    f.drop_db(&scratch).await;
}

/// `guard`: a "migration" that changes schema and data and then fails is rolled back, so the
/// database equals its state before the guard; a succeeding one is kept. Every rollback leaves an
/// audit record.
pub async fn guard_rolls_back_a_failed_migration<F: Fixture + ?Sized>(f: &F) {
    use backup_core::{CommandOutcome, GuardOptions, guard};
    let db = populated(f, "guard").await;
    let before = f.fingerprint(&db).await;
    let repo_url = format!("memory://{}", crate::unique("guard_repo"));
    let opts =
        GuardOptions { source: db.clone(), repos: vec![repo_url.clone()], jobs: 2, ..Default::default() };
    let r = guard(&opts, &Context::default(), || async {
        f.mutate(&db).await;
        Ok(CommandOutcome::Exited(3))
    })
    .await
    .expect("guard");
    assert!(r.rolled_back);
    assert_eq!(r.command_status, 3);
    assert!(r.recovery_ms.is_some());
    assert_eq!(f.fingerprint(&db).await, before, "the failed migration was not rolled back");
    // PostgreSQL (nobody else connected) and SQLite roll back by renaming in the server-side
    // copy taken before the command; MySQL restores the safety backup.
    let engine = DatabaseUrl::parse(&db).unwrap().engine();
    let want = if engine == backup_core::Engine::Mysql { "restore" } else { "clone" };
    assert_eq!(r.rollback.as_deref(), Some(want), "{engine}: {:?}", r.notes);
    let repo = Target::open(&repo_url).unwrap();
    let audit = backup_core::audit_log(&repo).await.unwrap();
    assert_eq!(audit.len(), 1);
    assert_eq!(audit[0].backup_id, r.backup_id);
    assert_eq!(audit[0].outcome, "ok");
    assert_eq!(audit[0].action, if want == "clone" { "rollback" } else { "restore" });
    assert_eq!(r.restore.is_some(), want == "restore");
    // A migration that succeeds is kept.
    let r = guard(&opts, &Context::default(), || async {
        f.mutate(&db).await;
        Ok(CommandOutcome::Exited(0))
    })
    .await
    .expect("guard");
    assert!(!r.rolled_back);
    assert_ne!(f.fingerprint(&db).await, before);
    let listed = backup_core::list(&repo, Some("guard")).await.unwrap();
    assert_eq!(listed.backups.len(), 2);
    f.drop_db(&db).await;
}

/// Restores `m` (opened with `identity` when encrypted) from `repo` into `url`.
async fn restore_keyed(
    repo: &Target,
    m: &backup_core::Manifest,
    url: &str,
    identity: Option<&backup_core::Secret>,
) -> Result<backup_core::RestoreReport, Error> {
    let keys = backup_core::Keyring::from_secrets(identity, None)?;
    let m = backup_core::open_sealed(m, keys.as_ref())?;
    let parsed = DatabaseUrl::parse(url)?;
    let loader = open_loader(&parsed)?;
    let opts = RestoreOptions { into: url.into(), jobs: 2, ..Default::default() };
    restore_with(repo, &m, loader.as_ref(), &parsed.to_string(), &opts, &Context::default()).await
}

/// An encrypted backup: nothing readable in the repository (table names, the clear manifest);
/// verify without the key checks the stored bytes; a restore without an identity, with a wrong,
/// empty or malformed one, of a flipped byte or of a truncated object fails before the target
/// changes, naming the cause; with the right identity it is lossless.
pub async fn encrypted_round_trip_and_bad_keys_leave_target_untouched<F: Fixture + ?Sized>(f: &F) {
    use backup_core::ObjectKind;
    use backup_core::generate_key;
    let src = populated(f, "enc_src").await;
    let repo = memory_repo();
    let (identity, recipient) = generate_key();
    let parsed = DatabaseUrl::parse(&src).unwrap();
    let s = open_source(&parsed).unwrap();
    let opts = CreateOptions {
        source: src.clone(),
        chunk_bytes: 1 << 20,
        jobs: 2,
        encrypt_to: vec![recipient.clone()],
        ..Default::default()
    };
    let id = create(s.as_ref(), &parsed.to_string(), std::slice::from_ref(&repo), &opts, &Context::default())
        .await
        .expect("encrypted backup")
        .id
        .to_string();
    let sealed = resolve(&repo, &id).await.unwrap();
    assert!(sealed.is_sealed() && sealed.tables.is_empty() && sealed.database.is_empty());
    let keys = backup_core::Keyring::from_secrets(Some(&identity), None).unwrap();
    let m = backup_core::open_sealed(&sealed, keys.as_ref()).unwrap();
    assert!(m.rows() > 0 && !m.tables.is_empty());
    // Nothing stored says what the tables are called: not the keys, the clear manifest, or
    // any object's bytes.
    let names: Vec<String> = m.tables.iter().map(|t| t.name.clone()).filter(|n| n.len() >= 4).collect();
    let mut stored = Vec::new();
    for item in repo.list("").await.unwrap() {
        let bytes = repo.get_bytes(&item.key, 64 << 20).await.unwrap();
        stored.push((item.key.clone(), bytes));
    }
    for (key, bytes) in &stored {
        for n in &names {
            assert!(!key.contains(n.as_str()), "table name {n} in key {key}");
            let hay = String::from_utf8_lossy(bytes);
            // In the clear manifest a name would be a JSON string (field names such as
            // "raw_bytes" are not names).
            let needle = if key.ends_with("manifest.json") { format!("\"{n}\"") } else { n.clone() };
            assert!(!hay.contains(&needle), "table name {n} readable in {key}");
        }
        if key.ends_with("manifest.json") {
            assert!(String::from_utf8_lossy(bytes).contains(&recipient), "recipients are listed in clear");
        } else {
            assert!(key.ends_with(".age"), "{key}");
            assert!(bytes.starts_with(b"age-encryption.org/v1\n"), "{key} is not an age file");
        }
    }
    // Verification without the key: stored bytes only, and still finds damage.
    let v = verify_with(
        &repo,
        &sealed,
        &VerifyOptions { record: false, ..Default::default() },
        &Context::default(),
    )
    .await
    .unwrap();
    assert!(v.ok && v.without_key, "{:?}", v.findings);
    let victim = m
        .objects
        .iter()
        .filter(|o| matches!(o.kind, ObjectKind::Data | ObjectKind::File))
        .max_by_key(|o| o.stored_bytes)
        .unwrap();
    let flipped = faulty(
        &repo,
        Faults { flip_byte: Some((victim.key.clone(), victim.stored_bytes / 2)), ..Default::default() },
    );
    let v = verify_with(
        &flipped,
        &sealed,
        &VerifyOptions { record: false, ..Default::default() },
        &Context::default(),
    )
    .await
    .unwrap();
    assert!(!v.ok && v.findings[0].object.as_deref() == Some(victim.key.as_str()), "{:?}", v.findings);
    let e = verify_with(
        &repo,
        &sealed,
        &VerifyOptions { level: VerifyLevel::Drill, record: false, ..Default::default() },
        &Context::default(),
    )
    .await
    .unwrap_err();
    assert!(e.to_string().contains("no identity for recipients"), "{e}");
    // With the key, full decrypts and checks the raw digests.
    let v =
        verify_with(&repo, &m, &VerifyOptions { record: false, ..Default::default() }, &Context::default())
            .await
            .unwrap();
    assert!(v.ok && !v.without_key, "{:?}", v.findings);

    let target = populated(f, "enc_dst").await;
    f.mutate(&target).await;
    let before = f.fingerprint(&target).await;
    let (wrong, _) = generate_key();
    for (key, want) in [
        (None, "no identity for recipients"),
        (Some(wrong), "wrong key"),
        (Some(backup_core::Secret::new("")), "empty key"),
        (Some(backup_core::Secret::new("AGE-SECRET-KEY-1QQQQ\n")), "malformed key"),
    ] {
        let e = restore_keyed(&repo, &sealed, &target, key.as_ref()).await.unwrap_err();
        assert!(matches!(e, Error::Key(_)) && e.to_string().contains(want), "{want}: {e}");
        assert!(e.to_string().contains(&recipient) || !want.contains("recipients"), "{e}");
        assert_eq!(f.fingerprint(&target).await, before, "target changed ({want})");
    }
    let e = restore_keyed(&flipped, &sealed, &target, Some(&identity)).await.unwrap_err();
    assert!(matches!(e, Error::Integrity { .. }) && e.to_string().contains(&victim.key), "{e}");
    assert_eq!(f.fingerprint(&target).await, before, "target changed by a tampered object");
    let cut = faulty(
        &repo,
        Faults { truncate: Some((victim.key.clone(), victim.stored_bytes / 2)), ..Default::default() },
    )
    .with_resume_attempts(0);
    let e = restore_keyed(&cut, &sealed, &target, Some(&identity)).await.unwrap_err();
    assert!(matches!(e, Error::Integrity { .. }) && e.to_string().contains(&victim.key), "{e}");
    assert_eq!(f.fingerprint(&target).await, before, "target changed by a truncated object");

    let r = restore_keyed(&repo, &sealed, &target, Some(&identity)).await.expect("restore with the key");
    assert_eq!(r.rows, m.rows());
    assert_eq!(f.fingerprint(&src).await, f.fingerprint(&target).await, "restored database differs");
    f.drop_db(&src).await;
    f.drop_db(&target).await;
}

/// Undo (issue 15): restoring backup A over database B keeps B as the undo copy (listed by
/// `status`); `restore --undo` puts B back exactly (schema and every row) through the same shadow
/// and swap, keeping A as the new copy, so a second undo redoes; a copy expires and `prune`
/// removes it; a restore into a database that did not exist keeps nothing, and `--undo` refuses.
pub async fn restore_can_be_undone<F: Fixture + ?Sized>(f: &F) {
    use backup_core::{
        ErrorKind, PruneOptions, RetentionPolicy, StatusOptions, prune, restore, status_in, undo_copies,
    };
    let ctx = Context::default();
    let a = populated(f, "undo_a").await;
    let repo_url = format!("memory://{}", crate::unique("undo_repo"));
    let repo = Target::open(&repo_url).unwrap();
    let id = backup(&a, &repo).await.expect("backup of A");
    let b = populated(f, "undo_b").await;
    f.mutate(&b).await;
    let (fa, fb) = (f.fingerprint(&a).await, f.fingerprint(&b).await);
    assert_ne!(fa, fb, "A and B must differ");
    let area = tempfile::tempdir().unwrap();
    let opts = RestoreOptions {
        repo: repo_url.clone(),
        backup: id.clone(),
        into: b.clone(),
        jobs: 2,
        undo_dir: Some(area.path().into()),
        ..Default::default()
    };
    let r = restore(&opts, &ctx).await.expect("restore A over B");
    assert_eq!(f.fingerprint(&b).await, fa, "the restore did not bring A");
    let kept = r.undo.clone().expect("the restore kept no undo copy of B");
    assert!(kept.expires_at > kept.created_at + chrono::Duration::hours(23), "{kept:?}");
    let st = StatusOptions {
        repos: vec![repo_url.clone()],
        undo_dir: Some(area.path().into()),
        ..Default::default()
    };
    let listed = status_in(std::slice::from_ref(&repo), &st, chrono::Utc::now(), &ctx).await.unwrap();
    assert_eq!(listed.undo, vec![kept.clone()], "status does not list the undo copy");

    let u = restore(&RestoreOptions { undo: true, ..opts.clone() }, &ctx).await.expect("undo");
    assert_eq!(f.fingerprint(&b).await, fb, "undo did not put B back exactly");
    let copies = undo_copies(area.path(), chrono::Utc::now(), &ctx).await.unwrap();
    assert_eq!(copies.len(), 1, "the last copy per database is kept: {copies:?}");
    assert_eq!(Some(&copies[0]), u.undo.as_ref());
    assert_ne!(copies[0].id, kept.id, "the state undo replaced (A) is the new copy");
    // A second undo redoes (and with no keep time, keeps nothing).
    restore(&RestoreOptions { undo: true, keep_undo_secs: 0, ..opts.clone() }, &ctx).await.expect("redo");
    assert_eq!(f.fingerprint(&b).await, fa, "a second undo did not redo");
    assert!(undo_copies(area.path(), chrono::Utc::now(), &ctx).await.unwrap().is_empty());

    // Expiry: listed as expired after its time, then removed by prune.
    let r = restore(&RestoreOptions { keep_undo_secs: 3600, ..opts.clone() }, &ctx).await.expect("restore");
    let kept = r.undo.expect("undo copy");
    let later = chrono::Utc::now() + chrono::Duration::hours(2);
    let listed = status_in(std::slice::from_ref(&repo), &st, later, &ctx).await.unwrap();
    assert!(listed.undo.len() == 1 && listed.undo[0].expired, "{:?}", listed.undo);
    let p = PruneOptions {
        policy: RetentionPolicy { keep_last: Some(5), ..Default::default() },
        undo_dir: Some(area.path().into()),
        ..Default::default()
    };
    let pruned = prune(&repo, &p, later, &ctx).await.unwrap();
    assert_eq!(pruned.undo_removed.iter().map(|c| &c.id).collect::<Vec<_>>(), vec![&kept.id]);
    assert!(pruned.errors.is_empty(), "{:?}", pruned.errors);
    assert!(undo_copies(area.path(), chrono::Utc::now(), &ctx).await.unwrap().is_empty());
    assert_eq!(
        backup_core::backup_ids(&repo).await.unwrap().len(),
        1,
        "prune touched the repository's backup"
    );

    // A target that did not exist: nothing to keep, and --undo refuses, naming the target.
    let absent = f.create_db(&crate::unique("undo_new")).await;
    f.drop_db(&absent).await;
    let r = restore(&RestoreOptions { into: absent.clone(), ..opts.clone() }, &ctx)
        .await
        .expect("restore into new");
    assert!(r.undo.is_none());
    assert!(r.notes.iter().any(|n| n.contains("did not exist")), "{:?}", r.notes);
    let e = restore(&RestoreOptions { into: absent.clone(), undo: true, ..opts.clone() }, &ctx)
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");
    assert!(e.to_string().contains("undo copy of"), "{e}");
    for db in [&a, &b, &absent] {
        f.drop_db(db).await;
    }
}
