//! Overlapping runs on one repository, in the core: a create that loses a race for its id never
//! deletes what it did not write; leases keep prune away from backups that are being read or
//! written and keep two prunes apart; stale leases of dead runs stop counting after their
//! expiry; a create cancelled mid-upload leaves nothing in the store.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use backup_core::{Context, CreateOptions, Target, create};
use backup_core::{FaultStore, Faults};
use bytes::Bytes;
use dbbackup_tests::source_suite::{Fixture, memory_repo};
use dbbackup_tests::sqlite_fixture::SqliteFixture;

async fn sqlite_db(name: &str) -> String {
    let f = SqliteFixture;
    let url = f.create_db(&dbbackup_tests::unique(name)).await;
    f.populate(&url).await;
    url
}

async fn create_in(
    url: &str,
    targets: &[Target],
    ctx: &Context,
) -> backup_core::Result<backup_core::CreateReport> {
    let parsed = backup_core::DatabaseUrl::parse(url).unwrap();
    let src = backup_core::open_source(&parsed).unwrap();
    let opts = CreateOptions { source: url.into(), jobs: 2, ..Default::default() };
    create(src.as_ref(), "db", targets, &opts, ctx).await
}

/// Another run writes a manifest (and an object of its own) under this run's id just before this
/// run writes its manifest: the create fails on the create-only manifest, and its cleanup
/// removes only the objects it wrote itself — the other run's manifest and object survive.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_create_that_loses_its_id_deletes_only_what_it_wrote() {
    let url = sqlite_db("race").await;
    let repo = memory_repo();
    let theirs = Bytes::from_static(b"{\"the other run's manifest\": true}");
    let foreign = Bytes::from_static(b"an object of the other run");
    let fault = Faults {
        plant_beside: Some((
            "/manifest.json".into(),
            vec![
                ("manifest.json".into(), theirs.clone()),
                ("data/9999-theirs/000000.tsv".into(), foreign.clone()),
            ],
        )),
        ..Default::default()
    };
    let faulty = repo.with_store(Arc::new(FaultStore::new(repo.store(), fault)));
    let e = create_in(&url, &[faulty], &Context::default()).await.unwrap_err();
    assert!(e.to_string().contains("manifest"), "the manifest write fails: {e}");
    let left = repo.list("").await.unwrap();
    let keys: Vec<&str> = left.iter().map(|l| l.key.as_str()).collect();
    assert_eq!(keys.len(), 2, "only the other run's objects are left: {keys:?}");
    let manifest = left.iter().find(|l| l.key.ends_with("/manifest.json")).expect("their manifest survives");
    assert_eq!(repo.get_bytes(&manifest.key, 1 << 10).await.unwrap(), theirs);
    let object = left.iter().find(|l| l.key.ends_with("/data/9999-theirs/000000.tsv")).expect("their object");
    assert_eq!(repo.get_bytes(&object.key, 1 << 10).await.unwrap(), foreign);
}

/// New ids carry 64 random bits, so a thousand ids drawn in one second are all distinct (with
/// 16 bits, the birthday bound makes a collision among 1000 likely: ~99.95%).
#[test]
fn ids_drawn_in_one_second_do_not_collide() {
    let at = chrono::Utc::now();
    let ids: std::collections::HashSet<String> =
        (0..1000).map(|_| backup_core::BackupId::new(at).to_string()).collect();
    assert_eq!(ids.len(), 1000);
}

/// Every file under `dir`, staging files (`<key>#N`) included, relative to it.
fn files_under(dir: &std::path::Path) -> Vec<String> {
    fn walk(root: &std::path::Path, dir: &std::path::Path, out: &mut Vec<String>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(root, &p, out);
            } else {
                out.push(p.strip_prefix(root).unwrap().display().to_string());
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

/// A create cancelled while its data object is being uploaded in parts (not before the run
/// starts): no manifest, the multipart upload aborted, and nothing left in the repository, not
/// even a staging file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_create_cancelled_mid_upload_aborts_its_parts_and_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("big.sqlite");
    {
        let c = rusqlite::Connection::open(&db).unwrap();
        c.execute_batch(
            "create table blobs (b blob);
             with recursive n(i) as (select 1 union all select i + 1 from n where i < 2048)
             insert into blobs select randomblob(2048) from n;",
        )
        .unwrap();
    }
    let url = format!("sqlite://{}", db.display());
    let root = dir.path().join("repo");
    let repo = Target::open(&root.display().to_string()).unwrap().with_upload_limits(256 << 10, 2);
    let slow = Arc::new(FaultStore::new(
        repo.store(),
        Faults { part_delay: Some(std::time::Duration::from_millis(200)), ..Default::default() },
    ));
    let faulty = repo.with_store(slow.clone());
    let ctx = Context::default();
    let cancel = ctx.cancel.clone();
    let watched = slow.clone();
    // Cancel once two parts of the data object have gone out (the lease and the two schema
    // scripts are the first three writes).
    let canceller = tokio::spawn(async move {
        while watched.writes() < 5 {
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        cancel.cancel();
    });
    let parsed = backup_core::DatabaseUrl::parse(&url).unwrap();
    let src = backup_core::open_source(&parsed).unwrap();
    let opts = CreateOptions {
        source: url.clone(),
        jobs: 1,
        compression: backup_core::Compression::None,
        ..Default::default()
    };
    let e = create(src.as_ref(), "db", &[faulty], &opts, &ctx).await.unwrap_err();
    canceller.abort();
    assert!(matches!(e, backup_core::Error::Cancelled(_)), "{e}");
    assert!(slow.writes() >= 5, "cancelled mid-upload, {} writes", slow.writes());
    assert!(slow.aborted_uploads() >= 1, "the multipart upload was aborted");
    assert!(backup_core::backup_ids(&repo).await.unwrap().is_empty(), "no manifest");
    assert_eq!(repo.list("").await.unwrap(), Vec::new(), "nothing listed");
    assert_eq!(files_under(&root), Vec::<String>::new(), "no file at all, staging files included");
}
