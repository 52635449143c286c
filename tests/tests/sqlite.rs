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

/// A backup records each table's row count from its snapshot and no per-table content checksum:
/// the page image digest proves the restored file byte for byte, and with it every table
/// (docs/FORMAT.md). The counts still match the source, WITHOUT ROWID and quoted names included.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_records_row_counts_and_the_page_image_not_table_checksums() {
    let f = SqliteFixture;
    let src = f.create_db(&dbbackup_tests::unique("rows_src")).await;
    f.populate(&src).await;
    let repo = memory_repo();
    let id = backup(&src, &repo).await.unwrap();
    let m = backup_core::resolve(&repo, &id).await.unwrap();
    let c = Connection::open(path_of(&src)).unwrap();
    assert!(m.tables.len() >= 5, "{:?}", m.tables);
    for t in &m.tables {
        let q = format!("select count(*) from \"{}\"", t.name.replace('"', "\"\""));
        let n: i64 = c.query_row(&q, [], |r| r.get(0)).unwrap();
        assert_eq!(t.rows, n as u64, "rows of {}", t.name);
        assert_eq!(
            (&t.checksum, &t.checksum_algo),
            (&None, &None),
            "table {} has a content checksum",
            t.name
        );
    }
    let json = serde_json::to_value(&m).unwrap();
    assert_eq!(json["snapshot"]["page_image_algo"], "sqlite-chunk-list-sha256-v1", "{json}");
    let dst = f.create_db(&dbbackup_tests::unique("rows_dst")).await;
    restore_into(&repo, &id, &dst).await.unwrap();
    assert_eq!(fingerprint_conn(&Connection::open(path_of(&dst)).unwrap()), fingerprint_conn(&c));
    f.drop_db(&src).await;
    f.drop_db(&dst).await;
}

/// `sqlite-rows-sha256-v1` as docs/FORMAT.md defines it, written here from the text (not the
/// crate's code): SHA-256 over every row of `SELECT * FROM t NOT INDEXED`, per value a type byte
/// and the value.
fn documented_rows_sha256(c: &Connection, table: &str) -> String {
    use rusqlite::types::ValueRef;
    let mut all = Vec::new();
    let mut stmt =
        c.prepare(&format!("select * from \"{}\" not indexed", table.replace('"', "\"\""))).unwrap();
    let n = stmt.column_count();
    let mut rows = stmt.query([]).unwrap();
    while let Some(r) = rows.next().unwrap() {
        for i in 0..n {
            match r.get_ref(i).unwrap() {
                ValueRef::Null => all.push(0u8),
                ValueRef::Integer(v) => {
                    all.push(1u8);
                    all.extend_from_slice(&v.to_le_bytes());
                }
                ValueRef::Real(v) => {
                    all.push(2u8);
                    all.extend_from_slice(&v.to_bits().to_le_bytes());
                }
                ValueRef::Text(t) => {
                    all.push(3u8);
                    all.extend_from_slice(&(t.len() as u64).to_le_bytes());
                    all.extend_from_slice(t);
                }
                ValueRef::Blob(b) => {
                    all.push(4u8);
                    all.extend_from_slice(&(b.len() as u64).to_le_bytes());
                    all.extend_from_slice(b);
                }
            }
        }
    }
    backup_core::sha256_hex(&all)
}

/// A manifest as a dbbackup from before the page image wrote it (no `page_image_sha256`, each
/// table's `sqlite-rows-sha256-v1` checksum; this version's backups record neither the one
/// without the other) is still proven by reading every table back: with the documented checksums
/// it restores the source exactly; with one table's checksum not the rows' (or its row count off
/// by one) it is refused after the load, before the swap, and the target is left byte for byte.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_manifest_without_the_page_image_is_proven_by_reading_every_table_back() {
    use backup_core::{Context, DatabaseUrl, ErrorKind, RestoreOptions, open_loader, restore_with};
    let f = SqliteFixture;
    let src = f.create_db(&dbbackup_tests::unique("old_src")).await;
    f.populate(&src).await;
    let repo = memory_repo();
    let id = backup(&src, &repo).await.unwrap();
    let m = backup_core::resolve(&repo, &id).await.unwrap();
    let c = Connection::open(path_of(&src)).unwrap();
    let mut old = m.clone();
    assert!(
        old.snapshot.remove("page_image_sha256").is_some()
            && old.snapshot.remove("page_image_algo").is_some()
    );
    for t in &mut old.tables {
        t.checksum = Some(documented_rows_sha256(&c, &t.name));
        t.checksum_algo = Some("sqlite-rows-sha256-v1".into());
    }
    let dst = f.create_db(&dbbackup_tests::unique("old_dst")).await;
    Connection::open(path_of(&dst))
        .unwrap()
        .execute_batch("create table keep (x); insert into keep values (42);")
        .unwrap();
    let before = std::fs::read(path_of(&dst)).unwrap();
    let restore = |m: backup_core::Manifest| {
        let (repo, dst) = (repo.clone(), dst.clone());
        async move {
            let url = DatabaseUrl::parse(&dst).unwrap();
            let loader = open_loader(&url).unwrap();
            let o = RestoreOptions { into: dst.clone(), jobs: 2, ..Default::default() };
            restore_with(&repo, &m, loader.as_ref(), &dst, &o, &Context::default()).await
        }
    };
    let i = old.tables.iter().position(|t| t.rows > 1).expect("a table with rows");
    let mut wrong_sum = old.clone();
    wrong_sum.tables[i].checksum = Some(documented_rows_sha256(&c, "sqlite_schema"));
    let mut wrong_rows = old.clone();
    wrong_rows.tables[i].rows -= 1;
    for (what, bad) in [("checksum", wrong_sum), ("rows", wrong_rows)] {
        let e = restore(bad).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Integrity, "{what}: {e}");
        assert!(e.to_string().contains("after load"), "{what}: {e}");
        assert_eq!(std::fs::read(path_of(&dst)).unwrap(), before, "{what}: the target was touched");
    }
    restore(old).await.expect("the older manifest restores");
    assert_eq!(fingerprint_conn(&Connection::open(path_of(&dst)).unwrap()), fingerprint_conn(&c));
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
    // `done`: transfers committed; `begun`: transfers whose commit may have started. A transfer
    // between its COMMIT and `done.store` (a writer preempted there on a loaded machine) can be
    // in the snapshot: the upper bound is `begun`, not `done`.
    let done = Arc::new(AtomicU64::new(0));
    let begun = Arc::new(AtomicU64::new(0));
    let writer = {
        let (stop, done, begun, path) = (stop.clone(), done.clone(), begun.clone(), path.clone());
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
                begun.store(i as u64, Ordering::SeqCst);
                tx.commit().unwrap();
                done.store(i as u64, Ordering::SeqCst);
            }
        })
    };
    while done.load(Ordering::SeqCst) < 200 {
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    let repo = memory_repo();
    // A backup during which the writer committed nothing (it can be descheduled for the whole
    // backup on a loaded machine) proves nothing about concurrent writes: take another.
    let mut attempts = 0;
    let (id, before, after) = loop {
        attempts += 1;
        let before = done.load(Ordering::SeqCst);
        let id = backup(&src, &repo).await.unwrap();
        let (committed, after) = (done.load(Ordering::SeqCst), begun.load(Ordering::SeqCst));
        if committed > before {
            break (id, before, after);
        }
        assert!(attempts < 20, "the writer committed nothing during any of {attempts} backups");
    };
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

fn sh(cmd: &str) {
    let st = std::process::Command::new("sh").arg("-c").arg(cmd).status().unwrap();
    assert!(st.success(), "{cmd}: {st}");
}

/// Records whether any load began (anything touched the target's side).
#[derive(Default)]
struct LoadSeen(AtomicBool);

impl backup_core::Observer for LoadSeen {
    fn on_event(&self, e: &backup_core::Event) {
        if let backup_core::Event::PhaseStarted { phase: backup_core::Phase::Load, .. } = e {
            self.0.store(true, Ordering::SeqCst);
        }
    }
}

/// The target's file: contents and inode (a swap would change the inode), and no leftovers of a
/// restore beside it.
fn target_state(url: &str) -> (Vec<u8>, u64, Vec<String>) {
    use std::os::unix::fs::MetadataExt;
    let p = path_of(url);
    let name = p.file_name().unwrap().to_string_lossy().into_owned();
    let leftovers = std::fs::read_dir(p.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(&format!(".{name}.dbbackup")))
        .collect();
    (std::fs::read(&p).unwrap(), std::fs::metadata(&p).unwrap().ino(), leftovers)
}

/// Issue 15: a plain SQL script from sqlite3's `.dump` (also `.gz`/`.zst`) restores through the
/// same temp file, checks and crash-safe swap as a backup, equal to what `sqlite3 < dump.sql`
/// builds. With `verify_first` the whole file is read first (codec to the end, the script cut
/// into statements to the end): a truncated `.gz`/`.zst`, a script cut mid-statement and one cut
/// before its `COMMIT` fail before any load begins, the target byte for byte as it was.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_dump_scripts_restore_through_the_swap() {
    use backup_core::{Context, ErrorKind, RestoreOptions, restore};
    let f = SqliteFixture;
    let src = f.create_db(&dbbackup_tests::unique("dump_src")).await;
    f.populate(&src).await;
    // The reference is what the sqlite3 shell loads, and Debian's shell (3.40) reads the
    // subnormal 4.9e-324 as 0 where the bundled library keeps it: leave that row out.
    Connection::open(path_of(&src)).unwrap().execute_batch("delete from kv where k = 'tiny'").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display();
    let sql = dir.path().join("app.sql");
    sh(&format!("sqlite3 {} .dump > {d}/app.sql", path_of(&src).display()));
    sh(&format!(
        "sqlite3 {d}/ref.db < {d}/app.sql && gzip -c {d}/app.sql > {d}/app.sql.gz && zstd -q -c {d}/app.sql > {d}/app.sql.zst"
    ));
    let want = fingerprint_conn(&Connection::open(dir.path().join("ref.db")).unwrap());
    assert!(want.contains("kv_audit") && want.contains("filler|"), "{want}");
    let dst = f.create_db(&dbbackup_tests::unique("dump_dst")).await;
    let run = |file: String, verify: bool, seen: Arc<LoadSeen>| {
        let dst = dst.clone();
        async move {
            restore(
                &RestoreOptions { backup: file, into: dst, verify_first: verify, ..Default::default() },
                &Context::with_observer(seen),
            )
            .await
        }
    };
    // Into a new file, then over a changed one, each codec, with and without --verify.
    for (file, verify) in
        [("app.sql", false), ("app.sql.gz", true), ("app.sql.zst", false), ("app.sql", true)]
    {
        let r = run(format!("{d}/{file}"), verify, Arc::default())
            .await
            .unwrap_or_else(|e| panic!("{file}: {e}"));
        assert!(r.rows > 3000 && r.tables > 40, "{r:?}");
        assert_same_catalog(&f.fingerprint(&dst).await, &want, file);
        assert!(target_state(&dst).2.is_empty(), "{file}: leftovers {:?}", target_state(&dst).2);
        f.mutate(&dst).await;
    }
    // Cut short: each fails; with verify_first before any load began; the target unchanged.
    let text = std::fs::read(&sql).unwrap();
    let gz = std::fs::read(dir.path().join("app.sql.gz")).unwrap();
    let zst = std::fs::read(dir.path().join("app.sql.zst")).unwrap();
    let mid = text.windows(12).position(|w| w == b"INSERT INTO ").unwrap() + 30;
    let before_commit = text.windows(7).rposition(|w| w == b"COMMIT;").unwrap();
    let cuts: [(&str, &[u8], &str); 4] = [
        ("cut.sql.gz", &gz[..gz.len() - 9], "gzip"),
        ("cut.sql.zst", &zst[..zst.len() * 2 / 3], "zstd"),
        ("cut.sql", &text[..mid], "ends inside"),
        ("nocommit.sql", &text[..before_commit], "BEGIN without COMMIT"),
    ];
    let before = target_state(&dst);
    for (name, bytes, says) in cuts {
        std::fs::write(dir.path().join(name), bytes).unwrap();
        for verify in [true, false] {
            let seen = Arc::new(LoadSeen::default());
            let e = run(format!("{d}/{name}"), verify, seen.clone()).await.unwrap_err();
            let msg = e.to_string();
            assert!(
                msg.contains(says) || msg.to_lowercase().contains(says),
                "{name} (verify {verify}): {msg}"
            );
            if verify {
                assert!(!seen.0.load(Ordering::SeqCst), "{name}: the load began before the file was checked");
                assert_eq!(e.kind(), ErrorKind::Integrity, "{name}: {e}");
            }
            assert_eq!(target_state(&dst), before, "{name} (verify {verify}): the target was touched");
        }
    }
    f.drop_db(&src).await;
    f.drop_db(&dst).await;
}

/// A backup of a WAL database leaves nothing in its temp dir: the snapshot copy keeps the
/// source's header (WAL), and reading it must not create `-wal`/`-shm` files that a read-only
/// connection then cannot remove (they were left behind by every such backup).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wal_database_backup_leaves_nothing_in_the_temp_dir() {
    let f = SqliteFixture;
    let src = f.create_db(&dbbackup_tests::unique("wal_tmp")).await;
    Connection::open(path_of(&src))
        .unwrap()
        .execute_batch(
            "pragma journal_mode = wal;
             create table t (id integer primary key, v text);
             with recursive n(i) as (select 1 union all select i + 1 from n where i < 5000)
             insert into t select i, printf('row %d', i) from n;",
        )
        .unwrap();
    let temp = tempfile::tempdir().unwrap();
    let repo = memory_repo();
    let parsed = backup_core::DatabaseUrl::parse(&src).unwrap();
    let source = backup_core::open_source(&parsed).unwrap();
    let opts = backup_core::CreateOptions {
        source: src.clone(),
        temp_dir: Some(temp.path().to_path_buf()),
        ..Default::default()
    };
    let report = backup_core::create(
        source.as_ref(),
        &parsed.to_string(),
        std::slice::from_ref(&repo),
        &opts,
        &backup_core::Context::default(),
    )
    .await
    .unwrap();
    let left: Vec<_> = std::fs::read_dir(temp.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert!(left.is_empty(), "left in the temp dir: {left:?}");
    let m = backup_core::resolve(&repo, &report.id.to_string()).await.unwrap();
    let t = m.tables.iter().find(|t| t.name == "t").unwrap();
    assert_eq!(t.rows, 5000);
}
