//! SQLite-specific cases beyond the shared suite: huge rows, and a WAL database written to while
//! the backup runs.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use dbbackup_tests::source_suite::{Fixture, backup, memory_repo, restore_into};
use dbbackup_tests::sqlite_fixture::{
    SqliteFixture, assert_same_catalog, catalog_conn, fingerprint_conn, path_of,
};
use rusqlite::Connection;

/// Issue 12: the whole catalog of the fixture (schema objects, what SQLite derives from them, and
/// the settings kept in the file: page size, auto-vacuum, WAL mode, user_version,
/// application_id, encoding) comes back identical, into a new file and over a changed one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whole_catalog_comes_back() {
    let f = SqliteFixture;
    let src = f.create_db(&dbbackup_tests::unique("cat_src")).await;
    f.populate(&src).await;
    let want = catalog_conn(&Connection::open(path_of(&src)).unwrap());
    assert!(want.contains("pragma page_size = 8192") && want.contains("pragma journal_mode = wal"), "{want}");
    let repo = memory_repo();
    let id = backup(&src, &repo).await.unwrap();
    let dst = f.create_db(&dbbackup_tests::unique("cat_dst")).await;
    restore_into(&repo, &id, &dst).await.unwrap();
    assert_same_catalog(&catalog_conn(&Connection::open(path_of(&dst)).unwrap()), &want, "new file");
    f.mutate(&dst).await;
    Connection::open(path_of(&dst))
        .unwrap()
        .execute_batch("pragma user_version = 7; pragma application_id = 9")
        .unwrap();
    restore_into(&repo, &id, &dst).await.unwrap();
    assert_same_catalog(
        &catalog_conn(&Connection::open(path_of(&dst)).unwrap()),
        &want,
        "over a changed file",
    );
    f.drop_db(&src).await;
    f.drop_db(&dst).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_over_16_mib_round_trip_exactly() {
    let f = SqliteFixture;
    let src = f.create_db(&dbbackup_tests::unique("huge")).await;
    {
        let c = Connection::open(path_of(&src)).unwrap();
        c.execute_batch("create table big (id integer primary key, b blob, t text)").unwrap();
        let blob: Vec<u8> = (0..17_000_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8).collect();
        let text: String =
            (0..17_000_000u32).map(|i| char::from(b'a' + (i % 26) as u8)).collect::<String>() + "😀";
        c.execute("insert into big (b, t) values (?1, ?2)", rusqlite::params![blob, text]).unwrap();
    }
    let repo = memory_repo();
    let id = backup(&src, &repo).await.unwrap();
    let m = backup_core::resolve(&repo, &id).await.unwrap();
    assert!(
        m.objects.iter().filter(|o| o.key.starts_with("data/")).count() > 10,
        "a 34 MB file in 1 MiB chunks"
    );
    let dst = f.create_db(&dbbackup_tests::unique("huge_dst")).await;
    restore_into(&repo, &id, &dst).await.unwrap();
    assert_eq!(f.fingerprint(&src).await, f.fingerprint(&dst).await);
    let c = Connection::open(path_of(&dst)).unwrap();
    let (bl, tl): (i64, i64) =
        c.query_row("select length(b), length(t) from big", [], |r| Ok((r.get(0)?, r.get(1)?))).unwrap();
    assert_eq!((bl, tl), (17_000_000, 17_000_001));
}

/// Writers keep transferring money between accounts (total constant) and logging each transfer
/// while the backup runs. The restored database must be one consistent instant: total intact,
/// one log row per transfer, and a count strictly between the counts before and after.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wal_database_with_writes_during_backup_is_a_consistent_snapshot() {
    let f = SqliteFixture;
    let src = f.create_db(&dbbackup_tests::unique("wal")).await;
    let path = path_of(&src);
    {
        let c = Connection::open(&path).unwrap();
        c.execute_batch(
            "pragma journal_mode = wal;
             create table accounts (id integer primary key, balance integer not null);
             create table transfers (id integer primary key, src integer, dst integer, amount integer, pad blob);
             with recursive n(i) as (select 1 union all select i + 1 from n where i < 1000)
             insert into accounts select i, 1000 from n;",
        )
        .unwrap();
        // Enough data that the copy takes a moment.
        c.execute_batch("create table ballast (b blob); with recursive n(i) as (select 1 union all select i + 1 from n where i < 3000) insert into ballast select randomblob(4000) from n;").unwrap();
    }
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let writer = {
        let (stop, done, path) = (stop.clone(), done.clone(), path.clone());
        std::thread::spawn(move || {
            let c = Connection::open(&path).unwrap();
            c.busy_timeout(std::time::Duration::from_secs(10)).unwrap();
            let mut i = 0i64;
            while !stop.load(Ordering::SeqCst) {
                i += 1;
                let (a, b) = ((i * 7919) % 1000 + 1, (i * 104_729) % 1000 + 1);
                let tx = c.unchecked_transaction().unwrap();
                tx.execute("update accounts set balance = balance - 5 where id = ?1", [a]).unwrap();
                tx.execute("update accounts set balance = balance + 5 where id = ?1", [b]).unwrap();
                tx.execute(
                    "insert into transfers (src, dst, amount, pad) values (?1, ?2, 5, randomblob(200))",
                    [a, b],
                )
                .unwrap();
                tx.commit().unwrap();
                done.store(i as u64, Ordering::SeqCst);
            }
        })
    };
    while done.load(Ordering::SeqCst) < 200 {
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    let before = done.load(Ordering::SeqCst);
    let repo = memory_repo();
    let id = backup(&src, &repo).await.unwrap();
    let after = done.load(Ordering::SeqCst);
    stop.store(true, Ordering::SeqCst);
    writer.join().unwrap();
    let dst = f.create_db(&dbbackup_tests::unique("wal_dst")).await;
    restore_into(&repo, &id, &dst).await.unwrap();
    let c = Connection::open(path_of(&dst)).unwrap();
    let total: i64 = c.query_row("select sum(balance) from accounts", [], |r| r.get(0)).unwrap();
    assert_eq!(total, 1_000_000, "money created or destroyed: torn snapshot");
    let n: i64 = c.query_row("select count(*) from transfers", [], |r| r.get(0)).unwrap();
    let n = n as u64;
    assert!(n >= before && n <= after, "snapshot count {n} outside [{before}, {after}]");
    let ok: String = c.query_row("pragma integrity_check", [], |r| r.get(0)).unwrap();
    assert_eq!(ok, "ok");
    assert!(after > before, "writers kept writing during the backup");
    // The manifest's row count is the snapshot's, not the live one's.
    let m = backup_core::resolve(&repo, &id).await.unwrap();
    let t = m.tables.iter().find(|t| t.name == "transfers").unwrap();
    assert_eq!(t.rows, n);
    let _ = fingerprint_conn(&c);
}

/// A source whose index disagrees with its table (two indexes' root pages swapped, as a damaged
/// file can be) is backed up page for page; its rows still scan and checksum fine, so only the
/// restore's `PRAGMA integrity_check` can tell. The restore must refuse and leave the target file
/// byte for byte as it was.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restore_refuses_a_file_that_fails_integrity_check() {
    let f = SqliteFixture;
    let src = f.create_db(&dbbackup_tests::unique("badindex")).await;
    {
        let c = Connection::open(path_of(&src)).unwrap();
        c.execute_batch(
            "create table t (id integer primary key, a text, b text);
             with recursive n(x) as (select 1 union all select x + 1 from n where x < 500)
             insert into t (a, b) select 'a' || x, 'b' || (1000 - x) from n;
             create index ia on t (a); create index ib on t (b);",
        )
        .unwrap();
        let roots: Vec<i64> = c
            .prepare("select rootpage from sqlite_schema where name in ('ia', 'ib') order by name")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        c.execute_batch(&format!(
            "pragma writable_schema = on;
             update sqlite_schema set rootpage = {} where name = 'ia';
             update sqlite_schema set rootpage = {} where name = 'ib';
             pragma writable_schema = off;",
            roots[1], roots[0]
        ))
        .unwrap();
    }
    {
        let c = Connection::open(path_of(&src)).unwrap();
        let check: String = c.query_row("pragma integrity_check", [], |r| r.get(0)).unwrap();
        assert_ne!(check, "ok", "the source must really be damaged for this test");
    }
    let repo = memory_repo();
    let id = backup(&src, &repo).await.expect("the page copy does not judge the content");
    let dst = f.create_db(&dbbackup_tests::unique("badindex_dst")).await;
    {
        let c = Connection::open(path_of(&dst)).unwrap();
        c.execute_batch("create table keep (x); insert into keep values (42);").unwrap();
    }
    let before = std::fs::read(path_of(&dst)).unwrap();
    let e = restore_into(&repo, &id, &dst).await.unwrap_err();
    assert!(e.to_string().contains("integrity_check"), "{e}");
    assert_eq!(e.kind(), backup_core::ErrorKind::Integrity, "{e}");
    assert_eq!(std::fs::read(path_of(&dst)).unwrap(), before, "the target was touched");
}
