//! PostgreSQL-specific end-to-end tests against the real server in `DBBACKUP_TEST_PG_URL`:
//! consistency under concurrent writes, foreign pg_dump scripts, `--tables`, `--in-place`,
//! 2,000 tables, a row over 100 MB, large objects, TLS (`sslmode`, `sslrootcert`). The
//! awkward-data round trip is the source suite's (`tests/sources.rs`, fixture in
//! `src/pg_fixture.rs`).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use backup_core::{
    Compression, Context, CreateOptions, DatabaseUrl, DumpOptions, Error, Manifest, RestoreOptions, Target,
    create, open_loader, open_source, resolve, restore, restore_with,
};
use backup_core::{FaultStore, Faults};
use dbbackup_tests::pg_catalog::{assert_same_catalog, catalog};
use dbbackup_tests::pg_fixture::{PgFixture, assert_same, fingerprint, large_objects};
use dbbackup_tests::source_suite::{Fixture, backup, memory_repo, restore_into};
use dbbackup_tests::unique;

async fn fresh(f: &PgFixture, tag: &str) -> String {
    f.create_db(&unique(tag)).await
}

/// A new, empty LATIN1 database (C collation): its URL.
async fn latin1_db(f: &PgFixture, tag: &str) -> String {
    let name = unique(tag);
    PgFixture::client(&f.base)
        .await
        .batch_execute(&format!(
            "CREATE DATABASE \"{name}\" TEMPLATE template0 ENCODING 'LATIN1' LC_COLLATE 'C' LC_CTYPE 'C'"
        ))
        .await
        .expect("a LATIN1 database");
    f.url_of(&name)
}

async fn populated(f: &PgFixture, tag: &str) -> String {
    let url = fresh(f, tag).await;
    f.populate(&url).await;
    url
}

async fn restore_opts(
    repo: &Target,
    id: &str,
    url: &str,
    opts: RestoreOptions,
) -> backup_core::Result<backup_core::RestoreReport> {
    let m = resolve(repo, id).await?;
    let parsed = DatabaseUrl::parse(url)?;
    let loader = open_loader(&parsed)?;
    let opts = RestoreOptions { into: url.into(), jobs: 2, ..opts };
    restore_with(repo, &m, loader.as_ref(), &parsed.to_string(), &opts, &Context::default()).await
}

async fn scalar(url: &str, sql: &str) -> String {
    let c = PgFixture::client(url).await;
    c.query_one(sql, &[]).await.expect(sql).get(0)
}

/// Transfers between accounts run during the dump; the restored data is one consistent
/// instant: the total is unchanged and every balance matches the transfer log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_transfers_do_not_tear_the_backup() {
    let Some(f) = PgFixture::from_env() else { return };
    let src = fresh(&f, "transfers").await;
    let c = PgFixture::client(&src).await;
    c.batch_execute(
        "CREATE TABLE accounts (id int PRIMARY KEY, balance bigint NOT NULL, pad text); \
         INSERT INTO accounts SELECT i, 1000, repeat('p', 400) FROM generate_series(1, 20000) i; \
         CREATE TABLE transfers (id bigserial PRIMARY KEY, src int, dst int, amount bigint);",
    )
    .await
    .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let mut writers = Vec::new();
    for w in 0..2u64 {
        let (url, stop, done) = (src.clone(), stop.clone(), done.clone());
        writers.push(tokio::spawn(async move {
            let c = PgFixture::client(&url).await;
            let mut i = w;
            while !stop.load(Ordering::Relaxed) {
                i = i.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                let (a, b, amt) = ((i >> 20) % 20000 + 1, (i >> 40) % 20000 + 1, (i >> 8) % 50 + 1);
                let sql = format!(
                    "BEGIN; UPDATE accounts SET balance = balance - {amt} WHERE id = {a}; \
                     INSERT INTO transfers (src, dst, amount) VALUES ({a}, {b}, {amt}); \
                     UPDATE accounts SET balance = balance + {amt} WHERE id = {b}; COMMIT;"
                );
                c.batch_execute(&sql).await.unwrap();
                done.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    while done.load(Ordering::Relaxed) < 50 {
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let repo = memory_repo();
    let id = backup(&src, &repo).await.expect("backup under writes");
    let during = done.load(Ordering::Relaxed);
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        w.await.unwrap();
    }
    let dst = fresh(&f, "transfers_dst").await;
    restore_into(&repo, &id, &dst).await.expect("restore");
    assert_eq!(scalar(&dst, "SELECT sum(balance)::text FROM accounts").await, "20000000");
    // Every balance equals 1000 minus what it sent plus what it received, per the log.
    let mismatched = scalar(
        &dst,
        "SELECT count(*)::text FROM accounts a WHERE a.balance <> 1000 \
         - coalesce((SELECT sum(amount) FROM transfers WHERE src = a.id), 0) \
         + coalesce((SELECT sum(amount) FROM transfers WHERE dst = a.id), 0)",
    )
    .await;
    assert_eq!(mismatched, "0");
    let logged: i64 =
        PgFixture::client(&dst).await.query_one("SELECT count(*) FROM transfers", &[]).await.unwrap().get(0);
    assert!(logged >= 50, "snapshot should contain the transfers made before it ({logged})");
    assert!(during > 50, "writers kept writing during the dump");
    let m = resolve(&repo, &id).await.unwrap();
    assert!(m.snapshot.contains_key("lsn") && m.snapshot.contains_key("snapshot"), "{:?}", m.snapshot);
    assert!(m.server_version.starts_with("15") || !m.server_version.is_empty());
    assert!(
        m.objects.iter().filter(|o| o.table.is_some()).count() > 2,
        "accounts should be split into ctid chunks"
    );
    f.drop_db(&src).await;
    f.drop_db(&dst).await;
}

/// Issue 12: the whole catalog (every object kind, see `dbbackup_tests::pg_catalog`) of the
/// fixture comes back identical, through a backup (into a new database and in place over a
/// changed one) and through a plain pg_dump script compared with what psql loads from it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whole_catalog_comes_back() {
    let Some(f) = PgFixture::from_env() else { return };
    let src = populated(&f, "cat_src").await;
    let want = catalog(&PgFixture::client(&src).await).await;
    // The comparison sees every kind the fixture holds (a query that saw nothing would compare
    // nothing).
    for kind in [
        "catalog aggregate: public.sum_sq(integer)",
        "catalog cast: bytea -> text",
        "catalog collation: other.c_copy",
        "catalog column: public.trucks #1 payload_kg",
        "catalog constraint: public.email has_at",
        "catalog default privileges: postgres schema=other",
        "catalog enum: public.mood {sad,meh,ok,happy,",
        "catalog event trigger: fixture_ddl",
        "catalog extension: hstore",
        "catalog foreign data: server fixture_srv",
        "catalog foreign data: table other.ft",
        "catalog foreign data: user mapping dbbackup_fixture_reader@fixture_srv",
        "catalog operator: public.===(numeric,numeric)",
        "catalog policy: other.nopk p_ins permissive=f",
        "catalog publication schema: fixture_schema_pub other",
        "catalog publication table: fixture_pub public.nulls where=(id > 0)",
        "catalog range: public.textrange",
        "catalog routine: CREATE OR REPLACE PROCEDURE public.log_twice",
        "catalog sequence: other.counter",
        "catalog statistics: CREATE STATISTICS public.sweep_expr",
        "catalog text search: config other.fixture_ts",
        "catalog trigger: CREATE TRIGGER nulls_audit",
        "db settings: dbbackup_fixture_reader",
        "db: encoding=UTF8",
    ] {
        assert!(
            want.lines().any(|l| l.starts_with(kind)),
            "the catalog has no line starting {kind:?}:\n{want}"
        );
    }
    let repo = memory_repo();
    let id = backup(&src, &repo).await.expect("backup");
    let dst = f.url_of(&unique("cat_dst"));
    restore_into(&repo, &id, &dst).await.expect("restore into a new database");
    assert_same_catalog(
        &catalog(&PgFixture::client(&dst).await).await,
        &want,
        "restored into a new database",
    );
    f.mutate(&dst).await;
    restore_opts(&repo, &id, &dst, RestoreOptions { in_place: true, ..Default::default() })
        .await
        .expect("in-place restore");
    assert_same_catalog(&catalog(&PgFixture::client(&dst).await).await, &want, "restored in place");
    // A plain pg_dump script: dbbackup's restore must give what psql gives.
    let dir = tempfile::tempdir().unwrap();
    let sql = dir.path().join("plain.sql");
    pg_dump_plain(&src, &sql, &[]);
    let by_psql = fresh(&f, "cat_psql").await;
    psql_file(&by_psql, &sql);
    let by_dbbackup = f.url_of(&unique("cat_script"));
    restore(
        &RestoreOptions {
            backup: sql.display().to_string(),
            into: by_dbbackup.clone(),
            ..Default::default()
        },
        &Context::default(),
    )
    .await
    .expect("restore the plain script");
    assert_same_catalog(
        &without_db_props(&catalog(&PgFixture::client(&by_dbbackup).await).await),
        &without_db_props(&catalog(&PgFixture::client(&by_psql).await).await),
        "plain script: dbbackup vs psql",
    );
    for db in [&src, &dst, &by_psql, &by_dbbackup] {
        f.drop_db(db).await;
    }
}

/// Issue 12: a child attached after creation whose parent later got a column (which the child
/// only inherits) cannot be written with its own column order without pg_dump's binary-upgrade
/// mode: the backup says so in its notes instead of silently reordering it; a child whose
/// columns are all its own comes back in its order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn column_order_of_late_children_is_kept_or_noted() {
    let Some(f) = PgFixture::from_env() else { return };
    let src = fresh(&f, "late_child").await;
    PgFixture::client(&src)
        .await
        .batch_execute(
            "CREATE TABLE p (id int, name text); CREATE TABLE own (x int, name text, id int); \
             ALTER TABLE own INHERIT p; CREATE TABLE q (id int); CREATE TABLE mixed (y int, id int); \
             ALTER TABLE mixed INHERIT q; ALTER TABLE q ADD COLUMN z text; INSERT INTO own VALUES (1, 'n', 2);",
        )
        .await
        .unwrap();
    let repo = memory_repo();
    let id = backup(&src, &repo).await.expect("backup");
    let m = resolve(&repo, &id).await.unwrap();
    assert!(
        m.notes
            .iter()
            .any(|n| n.contains("column order") && n.contains("public.mixed") && !n.contains("public.own")),
        "{:?}",
        m.notes
    );
    let dst = f.url_of(&unique("late_child_dst"));
    restore_into(&repo, &id, &dst).await.expect("restore");
    let cols = "SELECT string_agg(attname, ',' ORDER BY attnum) FROM pg_attribute WHERE attrelid = 'own'::regclass AND attnum > 0";
    assert_eq!(scalar(&dst, cols).await, "x,name,id");
    f.drop_db(&src).await;
    f.drop_db(&dst).await;
}

/// A `pg_dump --create` script's `ALTER ROLE ... IN DATABASE <source>` names the source
/// database: restored elsewhere it is skipped with a note, and the source's settings are not
/// touched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_scripts_do_not_touch_the_source_databases_role_settings() {
    let Some(f) = PgFixture::from_env() else { return };
    let src = fresh(&f, "create_src").await;
    let db = PgFixture::db_name(&src);
    let c = PgFixture::client(&src).await;
    dbbackup_tests::pg_fixture::ensure_fixture_role(&c).await;
    c.batch_execute(&format!(
        "CREATE TABLE t (a int); INSERT INTO t VALUES (1); \
         ALTER ROLE {role} IN DATABASE \"{db}\" SET work_mem = '2MB'",
        role = dbbackup_tests::pg_fixture::FIXTURE_ROLE
    ))
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let sql = dir.path().join("create.sql");
    pg_dump_plain(&src, &sql, &["--create"]);
    assert!(std::fs::read_to_string(&sql).unwrap().contains("IN DATABASE"), "pg_dump --create writes it");
    // Changed after the dump: a script run must not put the old value back on the source.
    c.batch_execute(&format!(
        "ALTER ROLE {role} IN DATABASE \"{db}\" SET work_mem = '5MB'",
        role = dbbackup_tests::pg_fixture::FIXTURE_ROLE
    ))
    .await
    .unwrap();
    let dst = f.url_of(&unique("create_dst"));
    let r = restore(
        &RestoreOptions { backup: sql.display().to_string(), into: dst.clone(), ..Default::default() },
        &Context::default(),
    )
    .await
    .expect("restore a --create script");
    assert!(r.notes.iter().any(|n| n.starts_with("skipped ALTER ROLE")), "{:?}", r.notes);
    let setting = "SELECT s.setconfig::text FROM pg_db_role_setting s JOIN pg_database d ON d.oid = s.setdatabase \
                   WHERE d.datname = current_database() AND s.setrole <> 0";
    assert_eq!(scalar(&src, setting).await, "{work_mem=5MB}");
    f.drop_db(&src).await;
    f.drop_db(&dst).await;
}

/// Subscriptions come back as pg_dump brings them back: defined, disabled, not connected
/// (`connect = false`), so a restored copy never starts replicating on its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscriptions_come_back_disabled() {
    let Some(f) = PgFixture::from_env() else { return };
    let src = fresh(&f, "subs").await;
    let c = PgFixture::client(&src).await;
    c.batch_execute(
        "CREATE TABLE t (a int PRIMARY KEY); INSERT INTO t VALUES (1); \
         CREATE SUBSCRIPTION fixture_sub CONNECTION 'host=127.0.0.1 port=1 dbname=nowhere' PUBLICATION p \
         WITH (connect = false, slot_name = 'fixture_slot', binary = true)",
    )
    .await
    .unwrap();
    let want = catalog(&c).await;
    assert!(want.contains("catalog subscription: fixture_sub enabled=f slot=fixture_slot"), "{want}");
    let repo = memory_repo();
    let id = backup(&src, &repo).await.expect("backup");
    let dst = f.url_of(&unique("subs_dst"));
    restore_into(&repo, &id, &dst).await.expect("restore");
    assert_same_catalog(&catalog(&PgFixture::client(&dst).await).await, &want, "subscription");
    // A database holding a subscription cannot be dropped: detach the slot, drop it.
    for db in [&src, &dst] {
        PgFixture::client(db)
            .await
            .batch_execute(
                "ALTER SUBSCRIPTION fixture_sub SET (slot_name = NONE); DROP SUBSCRIPTION fixture_sub",
            )
            .await
            .unwrap();
        f.drop_db(db).await;
    }
}

/// Issue 12: per-role settings inside the database need their roles on the target; a missing
/// role fails the restore before anything is touched (roles are cluster-level).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn role_settings_need_their_roles() {
    let Some(f) = PgFixture::from_env() else { return };
    let src = fresh(&f, "roleset").await;
    let role = unique("dbbackup_gone_role");
    let db = PgFixture::db_name(&src);
    let c = PgFixture::client(&src).await;
    c.batch_execute(&format!(
        "CREATE TABLE t (a int); INSERT INTO t VALUES (1); CREATE ROLE \"{role}\" NOLOGIN; \
         ALTER ROLE \"{role}\" IN DATABASE \"{db}\" SET work_mem = '2MB'"
    ))
    .await
    .unwrap();
    let repo = memory_repo();
    let id = backup(&src, &repo).await.expect("backup");
    let m = resolve(&repo, &id).await.unwrap();
    assert!(m.properties.contains_key("pg.role_settings"), "{:?}", m.properties);
    c.batch_execute(&format!("DROP ROLE \"{role}\"")).await.unwrap();
    let before = fingerprint(&src).await;
    let e = restore_into(&repo, &id, &src).await.unwrap_err();
    assert!(e.to_string().contains(&role) && e.to_string().contains("create them first"), "{e}");
    let e = restore_opts(&repo, &id, &src, RestoreOptions { in_place: true, ..Default::default() })
        .await
        .unwrap_err();
    assert!(e.to_string().contains(&role), "{e}");
    assert_same(&fingerprint(&src).await, &before, "a refused restore");
    f.drop_db(&src).await;
}

/// Loads a script with psql (the peer), stopping at the first error.
fn psql_file(url: &str, sql: &std::path::Path) {
    let u = url::Url::parse(url).unwrap();
    let out = std::process::Command::new("psql")
        .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-f"])
        .arg(sql)
        .env("PGHOST", u.host_str().unwrap())
        .env("PGPORT", u.port().unwrap_or(5432).to_string())
        .env("PGUSER", if u.username().is_empty() { "postgres" } else { u.username() })
        .env("PGDATABASE", PgFixture::db_name(url))
        .output()
        .expect("psql");
    assert!(out.status.success(), "psql: {}", String::from_utf8_lossy(&out.stderr));
}

fn pg_dump_plain(url: &str, out: &std::path::Path, extra: &[&str]) {
    let u = url::Url::parse(url).unwrap();
    let st = std::process::Command::new("pg_dump")
        .args(extra)
        .arg("--file")
        .arg(out)
        .env("PGHOST", u.host_str().unwrap())
        .env("PGPORT", u.port().unwrap_or(5432).to_string())
        .env("PGUSER", if u.username().is_empty() { "postgres" } else { u.username() })
        .env("PGDATABASE", PgFixture::db_name(url))
        .status()
        .expect("pg_dump");
    assert!(st.success());
}

/// The fingerprint without the lines about the database itself (its comment, ACL, settings and
/// per-role settings: a plain pg_dump without `--create` does not carry them).
fn without_db_props(s: &str) -> String {
    s.lines().filter(|l| !l.starts_with("db")).collect::<Vec<_>>().join("\n")
}

/// Plain pg_dump scripts (.sql, .sql.gz, .sql.zst) restore natively, through a shadow, into
/// a new database and over an existing one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreign_pg_dump_scripts_restore_losslessly() {
    let Some(f) = PgFixture::from_env() else { return };
    let src = populated(&f, "foreign_src").await;
    let dir = tempfile::tempdir().unwrap();
    let sql = dir.path().join("prod.sql");
    pg_dump_plain(&src, &sql, &[]);
    // What psql loads from the script is the reference: the script itself loses what pg_dump
    // cannot write (the column order of a child attached with ALTER TABLE ... INHERIT).
    let by_psql = fresh(&f, "foreign_psql").await;
    psql_file(&by_psql, &sql);
    let want = without_db_props(&fingerprint(&by_psql).await);
    f.drop_db(&by_psql).await;
    let gz = dir.path().join("prod.sql.gz");
    let zst = dir.path().join("prod.sql.zst");
    assert!(
        std::process::Command::new("sh")
            .arg("-c")
            .arg(format!(
                "gzip -c {0} > {1} && zstd -q -c {0} > {2}",
                sql.display(),
                gz.display(),
                zst.display()
            ))
            .status()
            .unwrap()
            .success()
    );
    // A new database (does not exist yet).
    let name = unique("foreign_new");
    let new_url = f.url_of(&name);
    for file in [&sql, &gz, &zst] {
        let into = new_url.clone();
        let r = restore(
            &RestoreOptions {
                backup: file.display().to_string(),
                into: into.clone(),
                jobs: 2,
                ..Default::default()
            },
            &Context::default(),
        )
        .await
        .unwrap_or_else(|e| panic!("restore {}: {e}", file.display()));
        assert!(r.rows > 6000, "{r:?}");
        assert_eq!(without_db_props(&fingerprint(&into).await), want, "after restoring {}", file.display());
    }
    // A truncated script is refused and the target is untouched.
    let before = fingerprint(&new_url).await;
    let text = std::fs::read(&sql).unwrap();
    let cut_at = text.windows(5).position(|w| w == b"COPY ").unwrap() + 200;
    let cut = dir.path().join("cut.sql");
    std::fs::write(&cut, &text[..cut_at]).unwrap();
    let e = restore(
        &RestoreOptions { backup: cut.display().to_string(), into: new_url.clone(), ..Default::default() },
        &Context::default(),
    )
    .await
    .unwrap_err();
    assert!(e.to_string().contains("truncated") || e.to_string().contains("COPY"), "{e}");
    assert_eq!(fingerprint(&new_url).await, before);
    // With verify_first the whole file is read before anything is touched: a truncated .gz, and
    // the script cut between two statements (which alone would load, short of its last objects
    // and of pg_dump's "dump complete" footer), are integrity errors; the target is unchanged.
    let gz_bytes = std::fs::read(&gz).unwrap();
    std::fs::write(dir.path().join("cut.sql.gz"), &gz_bytes[..gz_bytes.len() - 20]).unwrap();
    let at_stmt = text.windows(8).rposition(|w| w == b"\nCREATE ").unwrap() + 1;
    std::fs::write(dir.path().join("cut2.sql"), &text[..at_stmt]).unwrap();
    for cut in ["cut.sql.gz", "cut2.sql"] {
        let e = restore(
            &RestoreOptions {
                backup: dir.path().join(cut).display().to_string(),
                into: new_url.clone(),
                verify_first: true,
                ..Default::default()
            },
            &Context::default(),
        )
        .await
        .unwrap_err();
        assert_eq!(e.kind(), backup_core::ErrorKind::Integrity, "{cut}: {e}");
        assert_eq!(fingerprint(&new_url).await, before, "{cut}: the target was touched");
    }
    // In place, one transaction: the script's own BEGIN/COMMIT around the large-object data must
    // not commit it midway. A script cut after that COMMIT changes nothing; a whole one restores.
    f.mutate(&new_url).await;
    let before = fingerprint(&new_url).await;
    let blobs_done = text.windows(9).rposition(|w| w == b"\nCOMMIT;\n").expect("large-object data block") + 9;
    let cut_at = blobs_done + text[blobs_done..].windows(7).position(|w| w == b"CREATE ").unwrap() + 10;
    std::fs::write(&cut, &text[..cut_at]).unwrap();
    let e = restore(
        &RestoreOptions {
            backup: cut.display().to_string(),
            into: new_url.clone(),
            in_place: true,
            ..Default::default()
        },
        &Context::default(),
    )
    .await
    .unwrap_err();
    assert!(e.to_string().contains("CREATE"), "{e}");
    assert_same(&fingerprint(&new_url).await, &before, "a refused in-place script restore");
    restore(
        &RestoreOptions {
            backup: sql.display().to_string(),
            into: new_url.clone(),
            in_place: true,
            ..Default::default()
        },
        &Context::default(),
    )
    .await
    .expect("in-place script restore");
    assert_same(&without_db_props(&fingerprint(&new_url).await), &want, "in-place script restore");
    f.drop_db(&src).await;
    f.drop_db(&new_url).await;
}

/// `--tables` reloads only the chosen tables; everything else keeps its current state.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tables_option_restores_only_those_tables() {
    let Some(f) = PgFixture::from_env() else { return };
    let db = populated(&f, "tables").await;
    let repo = memory_repo();
    let id = backup(&db, &repo).await.unwrap();
    let c = PgFixture::client(&db).await;
    c.batch_execute(
        "DELETE FROM big WHERE id > 10; UPDATE typed SET ci = 'changed'; INSERT INTO other.empty VALUES (7)",
    )
    .await
    .unwrap();
    let r = restore_opts(
        &repo,
        &id,
        &db,
        RestoreOptions { tables: Some(vec!["public.big".into(), "typed".into()]), ..Default::default() },
    )
    .await
    .expect("restore --tables");
    assert_eq!(r.tables, 2);
    assert_eq!(scalar(&db, "SELECT count(*)::text FROM big").await, "6000");
    assert_eq!(
        scalar(&db, "SELECT string_agg(coalesce(ci::text, '-'), ',' ORDER BY id) FROM typed").await,
        "MiXeD,-"
    );
    assert_eq!(
        scalar(&db, "SELECT count(*)::text FROM other.empty").await,
        "1",
        "unselected table untouched"
    );
    let e = restore_opts(
        &repo,
        &id,
        &db,
        RestoreOptions { tables: Some(vec!["nope".into()]), ..Default::default() },
    )
    .await
    .unwrap_err();
    assert!(e.to_string().contains("nope"), "{e}");
    f.drop_db(&db).await;
}

/// `--in-place` replaces the contents inside one transaction (no CREATE DATABASE needed), and
/// a failure at the last check (stats mismatch) rolls everything back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_place_restore_replaces_contents_atomically() {
    let Some(f) = PgFixture::from_env() else { return };
    let db = populated(&f, "inplace").await;
    let want = fingerprint(&db).await;
    let repo = memory_repo();
    let id = backup(&db, &repo).await.unwrap();
    f.mutate(&db).await;
    PgFixture::client(&db)
        .await
        .batch_execute("CREATE SCHEMA extra; CREATE TABLE extra.t (x int)")
        .await
        .unwrap();
    let r = restore_opts(&repo, &id, &db, RestoreOptions { in_place: true, ..Default::default() })
        .await
        .expect("in place");
    assert!(r.notes.iter().any(|n| n.contains("one transaction")), "{:?}", r.notes);
    assert_same(&fingerprint(&db).await, &want, "in-place restore");
    // Same backup, but the manifest claims other content for one table: the load runs to the
    // end, the check fails, and the transaction rolls back.
    f.mutate(&db).await;
    let before = fingerprint(&db).await;
    let mut m = resolve(&repo, &id).await.unwrap();
    let t = m.tables.iter_mut().find(|t| t.name == "big").unwrap();
    t.checksum = Some("12345".into());
    let parsed = DatabaseUrl::parse(&db).unwrap();
    let loader = open_loader(&parsed).unwrap();
    let opts = RestoreOptions { into: db.clone(), in_place: true, jobs: 2, ..Default::default() };
    let e = restore_with(&repo, &m, loader.as_ref(), &db, &opts, &Context::default()).await.unwrap_err();
    assert!(e.to_string().contains("checksum"), "{e}");
    assert_eq!(fingerprint(&db).await, before, "rolled back");
    f.drop_db(&db).await;
}

/// The shadow restore's sessions TOAST-compress large values with lz4 where the server has it
/// (less server CPU than the default pglz); the values read back are the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_values_are_restored_lz4_compressed_where_the_server_has_it() {
    let Some(f) = PgFixture::from_env() else { return };
    let src = fresh(&f, "lz4").await;
    PgFixture::client(&src)
        .await
        .batch_execute(
            "CREATE TABLE docs (id int PRIMARY KEY, body text); \
             INSERT INTO docs SELECT i, repeat(md5(i::text), 200) FROM generate_series(1, 20) i",
        )
        .await
        .unwrap();
    let repo = memory_repo();
    let id = backup(&src, &repo).await.unwrap();
    let dst = f.url_of(&unique("lz4_dst"));
    restore_opts(&repo, &id, &dst, RestoreOptions::default()).await.expect("restore");
    let has_lz4 = scalar(
        &dst,
        "SELECT coalesce((SELECT 'lz4' = ANY (enumvals) FROM pg_settings \
         WHERE name = 'default_toast_compression'), false)::text",
    )
    .await;
    let want = if has_lz4 == "true" {
        "lz4".to_string()
    } else {
        scalar(&dst, "SHOW default_toast_compression").await
    };
    let got = scalar(&dst, "SELECT string_agg(DISTINCT pg_column_compression(body), ',') FROM docs").await;
    assert_eq!(got, want, "compression of the restored values");
    let sum = "SELECT md5(string_agg(body, '' ORDER BY id)) FROM docs";
    assert_eq!(scalar(&dst, sum).await, scalar(&src, sum).await);
    f.drop_db(&src).await;
    f.drop_db(&dst).await;
}

/// The shadow restore loads each table in one transaction that truncates it first, so every
/// COPY writes its rows already frozen (`COPY ... FREEZE`): right after the restore, every page
/// of every restored table is all-frozen in the visibility map (nothing left for hint bits or
/// vacuum to rewrite). Covered: a table of several chunks, the partitions of a partitioned table
/// (the parent itself holds no rows), an inheritance parent and its child (`TRUNCATE ONLY`
/// leaves the child's rows alone), and a table a foreign key refers to (added by post-data).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restored_rows_are_written_frozen() {
    let Some(f) = PgFixture::from_env() else { return };
    let src = fresh(&f, "freeze").await;
    PgFixture::client(&src)
        .await
        .batch_execute(
            "CREATE TABLE big (id int PRIMARY KEY, body text); \
             INSERT INTO big SELECT i, repeat(md5(i::text), 4) FROM generate_series(1, 40000) i; \
             CREATE TABLE refs (id int PRIMARY KEY, big_id int REFERENCES big); \
             INSERT INTO refs SELECT i, i FROM generate_series(1, 500) i; \
             CREATE TABLE parted (k int, v text) PARTITION BY RANGE (k); \
             CREATE TABLE parted_a PARTITION OF parted FOR VALUES FROM (0) TO (1000); \
             CREATE TABLE parted_b PARTITION OF parted FOR VALUES FROM (1000) TO (2000); \
             INSERT INTO parted SELECT i, 'p' || i FROM generate_series(0, 1999) i; \
             CREATE TABLE base (id int, v text); \
             CREATE TABLE kid (extra int) INHERITS (base); \
             INSERT INTO base SELECT i, 'b' || i FROM generate_series(1, 300) i; \
             INSERT INTO kid SELECT i, 'k' || i, i FROM generate_series(1, 200) i",
        )
        .await
        .unwrap();
    let repo = memory_repo();
    let id = backup(&src, &repo).await.unwrap();
    let m = resolve(&repo, &id).await.unwrap();
    let big = m.tables.iter().position(|t| t.name == "big").unwrap();
    let chunks = m.objects.iter().filter(|o| o.table == Some(big)).count();
    assert!(chunks >= 2, "big must load in several chunks, has {chunks}");
    let dst = f.url_of(&unique("freeze_dst"));
    let r = restore_opts(&repo, &id, &dst, RestoreOptions::default()).await.expect("restore");
    assert_eq!(r.rows, 40000 + 500 + 2000 + 300 + 200);
    PgFixture::client(&dst)
        .await
        .batch_execute("CREATE EXTENSION IF NOT EXISTS pg_visibility")
        .await
        .unwrap();
    for t in ["big", "refs", "parted_a", "parted_b", "base", "kid"] {
        let got = scalar(
            &dst,
            &format!(
                "SELECT (SELECT all_frozen FROM pg_visibility_map_summary('{t}'))::text || '/' || \
                 (pg_relation_size('{t}') / current_setting('block_size')::int)::text"
            ),
        )
        .await;
        let (frozen, pages) = got.split_once('/').unwrap();
        assert!(pages != "0", "{t}: no pages");
        assert_eq!(frozen, pages, "{t}: all-frozen pages / pages");
    }
    for (t, sum) in [
        ("big", "md5(string_agg(body, '' ORDER BY id))"),
        ("parted", "count(*)::text"),
        ("kid", "count(*)::text"),
    ] {
        let sql = format!("SELECT {sum} FROM {t}");
        assert_eq!(scalar(&dst, &sql).await, scalar(&src, &sql).await, "{t}");
    }
    f.drop_db(&src).await;
    f.drop_db(&dst).await;
}

/// Table checksums: a new backup names `pg-copy-xxh3-sum-v3` (computed on the dumped lines) for
/// every table; manifests naming the client-side MD5 sum `pg-copy-md5-sum-v2` or the server-side
/// `pg-md5-row-sum-v1` are still verified with their algorithm (right value restores, wrong value
/// is refused); an algorithm this version does not know is refused instead of skipped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checksum_algorithms_old_new_and_unknown() {
    let Some(f) = PgFixture::from_env() else { return };
    let db = populated(&f, "algos").await;
    let repo = memory_repo();
    let id = backup(&db, &repo).await.unwrap();
    let m = resolve(&repo, &id).await.unwrap();
    for t in &m.tables {
        assert_eq!(t.checksum_algo.as_deref(), Some("pg-copy-xxh3-sum-v3"), "{}", t.name);
        assert!(t.checksum.as_deref().is_some_and(|c| c.contains(':')), "{}", t.name);
    }
    let v1: String = scalar(
        &db,
        "SELECT coalesce(sum(('x' || substr(md5(r::text), 1, 16))::bit(64)::bigint::numeric), 0)::text FROM ONLY public.big r",
    )
    .await;
    let big = m.tables.iter().find(|t| t.name == "big").unwrap();
    let v2 = md5_line_sum(&db, "big", &big.properties["columns"]).await;
    let attempt = |algo: &'static str, checksum: String| {
        let (repo, m, f) = (&repo, m.clone(), &f);
        async move {
            let mut m = m;
            let t = m.tables.iter_mut().find(|t| t.name == "big").unwrap();
            t.checksum_algo = Some(algo.into());
            t.checksum = Some(checksum);
            let target = fresh(f, "algo-into").await;
            let parsed = DatabaseUrl::parse(&target).unwrap();
            let loader = open_loader(&parsed).unwrap();
            let opts = RestoreOptions { into: target.clone(), jobs: 2, ..Default::default() };
            let r = restore_with(repo, &m, loader.as_ref(), &target, &opts, &Context::default()).await;
            f.drop_db(&target).await;
            r
        }
    };
    attempt("pg-md5-row-sum-v1", v1.clone()).await.expect("a v1 manifest with the right value restores");
    let e = attempt("pg-md5-row-sum-v1", format!("{v1}0")).await.unwrap_err();
    assert!(e.to_string().contains("checksum"), "{e}");
    attempt("pg-copy-md5-sum-v2", v2.clone()).await.expect("a v2 manifest with the right value restores");
    let e = attempt("pg-copy-md5-sum-v2", format!("{v2}0")).await.unwrap_err();
    assert!(e.to_string().contains("checksum"), "{e}");
    // v3 is not v2 under another name: the MD5 value under the v3 name is refused.
    let e = attempt("pg-copy-xxh3-sum-v3", v2).await.unwrap_err();
    assert!(e.to_string().contains("checksum"), "{e}");
    let e = attempt("pg-md5-row-sum-v9", v1).await.unwrap_err();
    assert!(e.to_string().contains("algorithm"), "{e}");
    f.drop_db(&db).await;
}

/// `pg-copy-md5-sum-v2` of a table, computed here independently of the library: the COPY text
/// lines of its columns under the documented session settings, MD5 per line, the big-endian
/// halves summed.
async fn md5_line_sum(db: &str, table: &str, columns: &serde_json::Value) -> String {
    use md5::Digest;
    let c = PgFixture::client(db).await;
    c.batch_execute(
        "SET client_encoding = 'UTF8'; SET DateStyle = 'ISO, YMD'; SET IntervalStyle = 'postgres'; \
         SET TimeZone = 'UTC'; SET extra_float_digits = 3; SET bytea_output = 'hex'",
    )
    .await
    .unwrap();
    let cols: Vec<String> = serde_json::from_value(columns.clone()).unwrap();
    let cols: Vec<String> = cols.iter().map(|c| format!("\"{}\"", c.replace('"', "\"\""))).collect();
    let sql = format!("COPY (SELECT {} FROM ONLY public.\"{}\") TO STDOUT", cols.join(", "), table);
    let out = c.copy_out(sql.as_str()).await.unwrap();
    let mut out = std::pin::pin!(out);
    let mut text = Vec::new();
    while let Some(b) = futures::StreamExt::next(&mut out).await {
        text.extend_from_slice(&b.unwrap());
    }
    let (mut hi, mut lo) = (0u128, 0u128);
    for line in text.strip_suffix(b"\n").unwrap_or(&text).split(|&b| b == b'\n') {
        let d = md5::Md5::digest(line);
        hi += u128::from(u64::from_be_bytes(d[..8].try_into().unwrap()));
        lo += u128::from(u64::from_be_bytes(d[8..].try_into().unwrap()));
    }
    format!("{hi}:{lo}")
}

/// While a dump runs, its tables are held with ACCESS SHARE (as pg_dump does): writes go on, a
/// DROP TABLE waits instead of pulling the table from under the dump.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dump_holds_access_share_locks() {
    let Some(f) = PgFixture::from_env() else { return };
    let db = populated(&f, "locks").await;
    let parsed = DatabaseUrl::parse(&db).unwrap();
    let src = open_source(&parsed).unwrap();
    let opts = DumpOptions { jobs: 1, chunk_bytes: 1 << 20, ..Default::default() };
    let snap = src.snapshot(&opts, &Context::default()).await.unwrap();
    let plan = snap.plan().await.unwrap();
    assert!(plan.tables.iter().any(|t| t.name == "big"));
    let other = PgFixture::client(&db).await;
    other.batch_execute("SET lock_timeout = '300ms'").await.unwrap();
    other
        .batch_execute("INSERT INTO big VALUES (-1, 'written during the dump')")
        .await
        .expect("writes go on");
    let e = other.batch_execute("DROP TABLE big").await.expect_err("DROP must wait for the dump");
    assert!(format!("{e:?}").contains("lock timeout"), "{e:?}");
    snap.close().await.unwrap();
    other.batch_execute("DROP TABLE big").await.expect("after the dump");
    f.drop_db(&db).await;
}

/// 2,000 tables dump and restore (locks, schema size, many small chunks).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_thousand_tables() {
    let Some(f) = PgFixture::from_env() else { return };
    let db = fresh(&f, "t2000").await;
    PgFixture::client(&db)
        .await
        .batch_execute(
            "DO $$ BEGIN FOR i IN 1..2000 LOOP \
               EXECUTE format('CREATE TABLE t%s (id int, v text)', i); \
               EXECUTE format('INSERT INTO t%s VALUES (1, %L), (2, NULL)', i, 'v' || i); \
             END LOOP; END $$;",
        )
        .await
        .unwrap();
    let t0 = std::time::Instant::now();
    let repo = memory_repo();
    let id = backup(&db, &repo).await.expect("backup 2000 tables");
    eprintln!("2000 tables: backup {:?}", t0.elapsed());
    let dst = f.url_of(&unique("t2000_dst"));
    let r = restore_into(&repo, &id, &dst).await.expect("restore 2000 tables");
    eprintln!("2000 tables: backup + restore {:?}", t0.elapsed());
    assert_eq!(r.tables, 2000);
    assert_eq!(r.rows, 4000);
    assert_eq!(
        scalar(&dst, "SELECT count(*)::text FROM pg_tables WHERE schemaname = 'public'").await,
        "2000"
    );
    assert_eq!(scalar(&dst, "SELECT v FROM t1999 WHERE id = 1").await, "v1999");
    f.drop_db(&db).await;
    f.drop_db(&dst).await;
}

/// A single row with more than 100 MB of text survives byte for byte.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn row_over_100_mb() {
    let Some(f) = PgFixture::from_env() else { return };
    let db = fresh(&f, "hugerow").await;
    PgFixture::client(&db)
        .await
        .batch_execute(
            "CREATE TABLE huge (id int PRIMARY KEY, body text); \
             ALTER TABLE huge ALTER COLUMN body SET STORAGE EXTERNAL; \
             INSERT INTO huge SELECT 1, string_agg(md5(i::text) || E'\\t\\\\\\n', '') FROM generate_series(1, 2900000) i; \
             INSERT INTO huge VALUES (2, 'small');",
        )
        .await
        .unwrap();
    let want = scalar(&db, "SELECT length(body)::text || ':' || md5(body) FROM huge WHERE id = 1").await;
    assert!(want.split(':').next().unwrap().parse::<u64>().unwrap() > 100_000_000);
    let repo = memory_repo();
    let id = backup(&db, &repo).await.expect("backup huge row");
    let dst = f.url_of(&unique("hugerow_dst"));
    restore_into(&repo, &id, &dst).await.expect("restore huge row");
    assert_eq!(
        scalar(&dst, "SELECT length(body)::text || ':' || md5(body) FROM huge WHERE id = 1").await,
        want
    );
    f.drop_db(&db).await;
    f.drop_db(&dst).await;
}

/// Large objects of every awkward kind, plus 300 small ones (read and written in batches).
const LARGE_OBJECTS: &str = r#"
SELECT lo_from_bytea(50001, '');
SELECT lo_from_bytea(50002, (SELECT string_agg(set_byte('\x00'::bytea, 0, i), ''::bytea ORDER BY i) FROM generate_series(0, 255) i));
SELECT lo_from_bytea(50003, (SELECT decode(string_agg(md5(i::text), ''), 'hex') FROM generate_series(1, 230000) i));
SELECT lo_from_bytea(50004, 'with a comment');
COMMENT ON LARGE OBJECT 50004 IS E'it''s a "comment" \\ with\nnewline ✓';
SELECT lo_from_bytea(0, convert_to('small ' || i, 'UTF8')) FROM generate_series(1, 300) i;
CREATE TABLE docs (id int PRIMARY KEY, body oid);
INSERT INTO docs VALUES (1, 50003), (2, 50004);
"#;

/// Changes every kind of large-object state a restore must undo.
const LO_MUTATION: &str = "SELECT lo_unlink(50001); SELECT lo_put(50003, 2097150, '\\x0102030405'); \
     COMMENT ON LARGE OBJECT 50004 IS 'changed'; SELECT lo_from_bytea(0, 'added'); DELETE FROM docs";

async fn lo_state(url: &str) -> String {
    let c = PgFixture::client(url).await;
    let docs = c.query_one("SELECT count(*)::text FROM docs", &[]).await.map(|r| r.get::<_, String>(0));
    format!("{}docs {:?}\n", large_objects(&c).await, docs.ok())
}

/// Large objects survive a backup and a restore with their oids, bytes and comments: the empty
/// one, all 256 byte values, one of 3.5 MiB (read and written across 1 MiB pieces), a comment with
/// quotes, backslash and newline, and many small ones. In place too; `--tables` leaves them alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_objects_round_trip_byte_for_byte() {
    let Some(f) = PgFixture::from_env() else { return };
    let src = fresh(&f, "lo_src").await;
    PgFixture::client(&src).await.batch_execute(LARGE_OBJECTS).await.unwrap();
    let want = lo_state(&src).await;
    assert_eq!(want.lines().filter(|l| l.starts_with("lo ")).count(), 304, "{want}");
    assert!(want.contains("lo 50003 3680000 "), "{want}");
    let repo = memory_repo();
    let id = backup(&src, &repo).await.expect("backup with large objects");
    let m = resolve(&repo, &id).await.unwrap();
    let lo_objects: Vec<_> = m.objects.iter().filter(|o| o.format == "pg-large-objects-v1").collect();
    assert!(lo_objects.len() >= 2, "1 MiB chunks: the 3.5 MiB object gets its own: {lo_objects:?}");
    assert!(lo_objects.iter().all(|o| o.key.starts_with("data/large-objects/") && o.table.is_none()));
    let p = &m.properties["pg.large_objects"];
    assert_eq!(p["count"], 304, "{p}");
    assert_eq!(p["checksum_algo"], "pg-lo-sha256-sum-v1", "{p}");
    assert!(m.notes.iter().all(|n| !n.contains("large object")), "{:?}", m.notes);

    // A new database (shadow + swap).
    let dst = f.url_of(&unique("lo_dst"));
    let r = restore_into(&repo, &id, &dst).await.expect("restore");
    assert_same(&lo_state(&dst).await, &want, "restored large objects");
    assert!(r.notes.iter().any(|n| n.contains("304 large object(s)")), "{:?}", r.notes);

    // Over a database whose large objects changed, shadow and in place.
    for in_place in [false, true] {
        PgFixture::client(&dst).await.batch_execute(LO_MUTATION).await.unwrap();
        assert_ne!(lo_state(&dst).await, want);
        restore_opts(&repo, &id, &dst, RestoreOptions { in_place, ..Default::default() })
            .await
            .unwrap_or_else(|e| panic!("restore in_place={in_place}: {e}"));
        assert_same(&lo_state(&dst).await, &want, &format!("in_place={in_place}"));
    }

    // `--tables` reloads the table and leaves the large objects as they are.
    PgFixture::client(&dst).await.batch_execute(LO_MUTATION).await.unwrap();
    let mutated = large_objects(&PgFixture::client(&dst).await).await;
    restore_opts(
        &repo,
        &id,
        &dst,
        RestoreOptions { tables: Some(vec!["docs".into()]), ..Default::default() },
    )
    .await
    .expect("restore --tables");
    assert_same(&large_objects(&PgFixture::client(&dst).await).await, &mutated, "--tables");
    assert_eq!(scalar(&dst, "SELECT count(*)::text FROM docs").await, "2");
    f.drop_db(&src).await;
    f.drop_db(&dst).await;
}

fn faulty(repo: &Target, faults: Faults) -> Target {
    repo.with_store(Arc::new(FaultStore::new(repo.store(), faults))).with_resume_attempts(0)
}

/// A flipped byte or a truncation in a large-object object, or a manifest whose large-object
/// totals do not match what was loaded, is refused before anything reaches the target (shadow
/// and in place). Uncompressed objects, so a corrupt header reaches the framing parser and the
/// database before the digest check fails at the end of the object.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_large_objects_are_refused_and_target_untouched() {
    let Some(f) = PgFixture::from_env() else { return };
    let src = fresh(&f, "lo_bad_src").await;
    PgFixture::client(&src).await.batch_execute(LARGE_OBJECTS).await.unwrap();
    let repo = memory_repo();
    let parsed = DatabaseUrl::parse(&src).unwrap();
    let s = open_source(&parsed).unwrap();
    let opts = CreateOptions {
        source: src.clone(),
        chunk_bytes: 1 << 20,
        jobs: 2,
        compression: Compression::None,
        ..Default::default()
    };
    let id = create(s.as_ref(), &src, std::slice::from_ref(&repo), &opts, &Context::default())
        .await
        .expect("backup")
        .id
        .to_string();
    let m = resolve(&repo, &id).await.unwrap();
    let dst = fresh(&f, "lo_bad_dst").await;
    restore_into(&repo, &id, &dst).await.expect("restore");
    PgFixture::client(&dst).await.batch_execute(LO_MUTATION).await.unwrap();
    let before = fingerprint(&dst).await;
    let lo_keys: Vec<&str> =
        m.objects.iter().filter(|o| o.format == "pg-large-objects-v1").map(|o| o.key.as_str()).collect();
    assert!(lo_keys.len() >= 2);
    for key in &lo_keys {
        let size = m.objects.iter().find(|o| o.key == *key).unwrap().stored_bytes;
        // Offset 0 is the first header's oid; the middle is data.
        for (what, faults) in [
            ("flipped header", Faults { flip_byte: Some((key.to_string(), 0)), ..Default::default() }),
            ("flipped data", Faults { flip_byte: Some((key.to_string(), size / 2)), ..Default::default() }),
            ("truncated", Faults { truncate: Some((key.to_string(), size / 2)), ..Default::default() }),
        ] {
            for in_place in [false, true] {
                let bad = faulty(&repo, faults.clone());
                let e = restore_opts(&bad, &id, &dst, RestoreOptions { in_place, ..Default::default() })
                    .await
                    .unwrap_err();
                assert!(matches!(e, Error::Integrity { .. }), "{what} {key} in_place={in_place}: {e}");
                assert_eq!(
                    fingerprint(&dst).await,
                    before,
                    "{what} {key} in_place={in_place}: target changed"
                );
            }
        }
    }
    // Intact objects, but the manifest's totals disagree with what the objects hold: the check
    // after the load catches it.
    for (field, value) in [
        ("checksum", serde_json::json!("12345")),
        ("count", serde_json::json!(303)),
        ("bytes", serde_json::json!(1)),
    ] {
        for in_place in [false, true] {
            let mut tampered: Manifest = m.clone();
            tampered.properties.get_mut("pg.large_objects").unwrap()[field] = value.clone();
            let loader = open_loader(&DatabaseUrl::parse(&dst).unwrap()).unwrap();
            let o = RestoreOptions { into: dst.clone(), in_place, jobs: 2, ..Default::default() };
            let e = restore_with(&repo, &tampered, loader.as_ref(), &dst, &o, &Context::default())
                .await
                .unwrap_err();
            assert!(
                matches!(&e, Error::Integrity { what, .. } if what.contains("large objects")),
                "{field} in_place={in_place}: {e}"
            );
            assert_eq!(fingerprint(&dst).await, before, "{field} in_place={in_place}: target changed");
        }
    }
    // A backup from before large objects were included (no large-object objects, no totals)
    // still restores; it simply has none.
    let mut old = m.clone();
    old.objects.retain(|o| o.format != "pg-large-objects-v1");
    old.properties.remove("pg.large_objects");
    let loader = open_loader(&DatabaseUrl::parse(&dst).unwrap()).unwrap();
    let o = RestoreOptions { into: dst.clone(), jobs: 2, ..Default::default() };
    restore_with(&repo, &old, loader.as_ref(), &dst, &o, &Context::default()).await.expect("old manifest");
    assert_eq!(lo_state(&dst).await, "docs Some(\"2\")\n");
    f.drop_db(&src).await;
    f.drop_db(&dst).await;
}

/// The server and its CA for the TLS tests (`scripts/services.sh` signs the server's certificate
/// for 127.0.0.1 and localhost with a throwaway CA). Skips/fails like every service test.
fn tls_server() -> Option<(PgFixture, String)> {
    let f = PgFixture::from_env()?;
    let ca = dbbackup_tests::service_env("DBBACKUP_TEST_PG_CA")?;
    Some((f, ca))
}

/// `url` logged in as `dbbackup_tls`, a role the server refuses on any connection without TLS
/// (services.sh: `hostnossl ... reject`), with the query `params`. Whatever dbbackup does with
/// such a URL, the leader, the workers and pg_dump, only succeeds over TLS.
fn tls_url(url: &str, params: &[(&str, &str)]) -> String {
    let mut u = url::Url::parse(url).unwrap();
    u.set_username("dbbackup_tls").unwrap();
    u.query_pairs_mut().clear().extend_pairs(params);
    u.to_string()
}

async fn small_db(f: &PgFixture, tag: &str) -> String {
    let url = fresh(f, tag).await;
    PgFixture::client(&url)
        .await
        .batch_execute(
            "CREATE TABLE t (id int PRIMARY KEY, v text); INSERT INTO t VALUES (1, 'a'), (2, 'b');",
        )
        .await
        .unwrap();
    url
}

/// A backup and restore of the awkward fixture over `verify-full` with the CA from
/// `sslrootcert` (pg_dump gets the same `PGSSLMODE`/`PGSSLROOTCERT`), by address and by name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_verify_full_round_trip() {
    let Some((f, ca)) = tls_server() else { return };
    let src = populated(&f, "tls_src").await;
    let want = fingerprint(&src).await;
    let repo = memory_repo();
    let params = [("sslmode", "verify-full"), ("sslrootcert", ca.as_str())];
    let id = backup(&tls_url(&src, &params), &repo).await.expect("backup over verify-full");
    let dst = f.url_of(&unique("tls_dst"));
    restore_into(&repo, &id, &tls_url(&dst, &params)).await.expect("restore over verify-full");
    assert_same(&fingerprint(&dst).await, &want, "restored over verify-full");
    // The certificate names localhost too.
    let mut by_name = url::Url::parse(&tls_url(&src, &params)).unwrap();
    by_name.set_host(Some("localhost")).unwrap();
    backup(by_name.as_str(), &repo).await.expect("backup over verify-full to localhost");
    f.drop_db(&src).await;
    f.drop_db(&dst).await;
}

/// Reaching the server under a name its certificate does not hold (`hostaddr` connects to
/// 127.0.0.1, the name is what TLS checks): `verify-full` refuses it, `verify-ca` (chain only)
/// and `require` accept it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_verify_full_checks_the_host_name_and_verify_ca_does_not() {
    let Some((f, ca)) = tls_server() else { return };
    let src = small_db(&f, "tls_name").await;
    let repo = memory_repo();
    let wrong_name = |mode: &str| {
        let mut u = url::Url::parse(&tls_url(
            &src,
            &[("sslmode", mode), ("sslrootcert", ca.as_str()), ("hostaddr", "127.0.0.1")],
        ))
        .unwrap();
        u.set_host(Some("db.invalid")).unwrap();
        u.to_string()
    };
    let e = backup(&wrong_name("verify-full"), &repo).await.unwrap_err().to_string();
    assert!(
        e.contains("certificate verification of PostgreSQL server db.invalid failed (sslmode=verify-full")
            && e.contains("not valid for name \"db.invalid\""),
        "{e}"
    );
    backup(&wrong_name("verify-ca"), &repo).await.expect("verify-ca does not check the name");
    backup(&wrong_name("require"), &repo).await.expect("require with sslrootcert checks the chain only");
    f.drop_db(&src).await;
}

/// `require` encrypts without a CA (no verification, as libpq), and so does the default
/// `prefer` against a server that offers TLS; `disable` is refused for the TLS-only role, which
/// proves the other backups could not have succeeded without TLS.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_require_and_prefer_encrypt_without_a_ca() {
    let Some((f, _ca)) = tls_server() else { return };
    let src = small_db(&f, "tls_require").await;
    let repo = memory_repo();
    backup(&tls_url(&src, &[("sslmode", "require")]), &repo).await.expect("backup over require");
    backup(&tls_url(&src, &[]), &repo).await.expect("backup with the default sslmode (prefer)");
    let e = backup(&tls_url(&src, &[("sslmode", "disable")]), &repo).await.unwrap_err().to_string();
    assert!(e.contains("no encryption"), "the server must refuse dbbackup_tls without TLS: {e}");
    f.drop_db(&src).await;
}

/// `verify-full` and `verify-ca` against a CA that did not sign the server's certificate, or
/// against the system store (which does not hold the throwaway CA), fail with a message naming
/// the server, the mode and where the roots came from.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_wrong_ca_is_refused_with_a_clear_error() {
    let Some((f, _ca)) = tls_server() else { return };
    let src = small_db(&f, "tls_wrong_ca").await;
    let dir = tempfile::tempdir().unwrap();
    let other = dir.path().join("other-ca.pem");
    let status = std::process::Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=not the server's CA",
        ])
        .arg("-keyout")
        .arg(dir.path().join("other-ca.key"))
        .arg("-out")
        .arg(&other)
        .stderr(std::process::Stdio::null())
        .status()
        .expect("run openssl");
    assert!(status.success(), "openssl req: {status}");
    let other = other.to_str().unwrap();
    let repo = memory_repo();
    for mode in ["verify-full", "verify-ca"] {
        let e = backup(&tls_url(&src, &[("sslmode", mode), ("sslrootcert", other)]), &repo)
            .await
            .unwrap_err()
            .to_string();
        let want = format!("certificate verification of PostgreSQL server 127.0.0.1 failed (sslmode={mode}");
        assert!(e.contains(&want) && e.contains(other), "{mode}: {e}");
    }
    let e = backup(&tls_url(&src, &[("sslmode", "verify-full")]), &repo).await.unwrap_err().to_string();
    assert!(
        e.contains("certificate verification") && e.contains("system root store")
            || e.contains("no root certificates in the system store"),
        "verify-full without sslrootcert: {e}"
    );
    f.drop_db(&src).await;
}

/// Role `dbbackup_cert` may only log in over TLS with a client certificate the CA signed
/// (services.sh: `hostssl ... cert`, everything else rejected). With `sslcert`/`sslkey` a backup
/// and restore over `verify-ca` work (the sessions and pg_dump, which gets `PGSSLCERT`/`PGSSLKEY`);
/// without them the server's refusal says a client certificate is needed; a key that does not
/// parse is an error naming the file, never its contents.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_client_certificate_round_trip_and_refusal_without_it() {
    let Some((f, ca)) = tls_server() else { return };
    let (Some(cert), Some(key)) = (
        dbbackup_tests::service_env("DBBACKUP_TEST_PG_CLIENT_CERT"),
        dbbackup_tests::service_env("DBBACKUP_TEST_PG_CLIENT_KEY"),
    ) else {
        return;
    };
    let src = populated(&f, "tls_cert_src").await;
    let want = fingerprint(&src).await;
    let as_cert = |url: &str, params: &[(&str, &str)]| {
        let mut u = url::Url::parse(&tls_url(url, params)).unwrap();
        u.set_username("dbbackup_cert").unwrap();
        u.to_string()
    };
    let params = [
        ("sslmode", "verify-ca"),
        ("sslrootcert", ca.as_str()),
        ("sslcert", cert.as_str()),
        ("sslkey", key.as_str()),
    ];
    let repo = memory_repo();
    let id = backup(&as_cert(&src, &params), &repo).await.expect("backup with a client certificate");
    let dst = f.url_of(&unique("tls_cert_dst"));
    restore_into(&repo, &id, &as_cert(&dst, &params)).await.expect("restore with a client certificate");
    assert_same(&fingerprint(&dst).await, &want, "restored with a client certificate");

    let e = backup(&as_cert(&src, &params[..2]), &repo).await.unwrap_err().to_string();
    assert!(e.contains("client certificate"), "without sslcert the server must refuse dbbackup_cert: {e}");
    let dir = tempfile::tempdir().unwrap();
    let bad_key = dir.path().join("bad.key");
    std::fs::write(&bad_key, "-----BEGIN PRIVATE KEY-----\ncanary-not-a-key\n-----END PRIVATE KEY-----\n")
        .unwrap();
    let bad = [params[0], params[1], params[2], ("sslkey", bad_key.to_str().unwrap())];
    let e = backup(&as_cert(&src, &bad), &repo).await.unwrap_err().to_string();
    assert!(e.contains("sslkey") && e.contains(bad_key.to_str().unwrap()) && !e.contains("canary"), "{e}");
    f.drop_db(&src).await;
    f.drop_db(&dst).await;
}

/// `guard` rolls back by renaming in its server-side copy only when it could take one: with
/// another session connected to the database, `CREATE DATABASE ... TEMPLATE` is refused, the
/// report says why, and the rollback restores the safety backup instead; either way the database
/// equals its state before the command. No copy is left behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guard_falls_back_to_restore_when_another_session_is_connected() {
    use backup_core::{CommandOutcome, GuardOptions, guard};
    let Some(f) = PgFixture::from_env() else { return };
    let db = populated(&f, "guard_busy").await;
    let before = f.fingerprint(&db).await;
    let opts = GuardOptions {
        source: db.clone(),
        repos: vec![format!("memory://{}", unique("guard_busy_repo"))],
        jobs: 2,
        ..Default::default()
    };
    // An application session holding the database open for the whole guard.
    let app = PgFixture::client(&db).await;
    app.batch_execute("SELECT 1").await.unwrap();
    let r = guard(&opts, &Context::default(), || async {
        f.mutate(&db).await;
        Ok(CommandOutcome::Exited(1))
    })
    .await
    .expect("guard");
    assert!(r.rolled_back);
    assert_eq!(r.rollback.as_deref(), Some("restore"), "{:?}", r.notes);
    assert!(r.notes.iter().any(|n| n.contains("other sessions")), "{:?}", r.notes);
    // guard asked who was connected every 25 ms for its 3 s budget before giving up on the copy
    // (those 3 s are in the time before the command), and gave up on what pg_stat_activity
    // showed, without asking the server for a copy while the application is connected (which
    // costs the server's own 5 s wait for other sessions and ends in its refusal, 55006): the
    // note counts the sessions still connected after the wait. No upper bound on the time: at
    // load 10+ the polling itself can take longer than the server's 5 s.
    assert!(
        r.rollback_point_ms >= 3000,
        "rollback_point_ms {} (time before the command spent finding there can be no copy)",
        r.rollback_point_ms
    );
    assert!(
        r.notes.iter().any(|n| n.contains(" still connected after ")),
        "guard did not give up on what pg_stat_activity showed: {:?}",
        r.notes
    );
    assert_eq!(f.fingerprint(&db).await, before, "the failed migration was not rolled back");
    drop(app);
    // Nobody connected now: the copy is the rollback point; a second failing command is undone
    // by the rename.
    let r = guard(&opts, &Context::default(), || async {
        f.mutate(&db).await;
        Ok(CommandOutcome::Exited(1))
    })
    .await
    .expect("guard");
    assert_eq!(r.rollback.as_deref(), Some("clone"), "{:?}", r.notes);
    assert_eq!(f.fingerprint(&db).await, before, "the rename did not bring the database back");
    let name = PgFixture::db_name(&db);
    let left = scalar(
        &db,
        &format!("SELECT count(*)::text FROM pg_database WHERE datname LIKE '{name}\\_dbbackup\\_%'"),
    )
    .await;
    assert_eq!(left, "0", "a copy or a replaced database was left behind");
    f.drop_db(&db).await;
}

/// Databases a restore or guard into `db` left beside it (shadows, copies, previous databases).
async fn pg_aux_databases(db: &str) -> Vec<String> {
    let name = PgFixture::db_name(db);
    let c = PgFixture::client(db).await;
    let rows = c
        .query(
            "SELECT datname FROM pg_database WHERE starts_with(datname, $1) ORDER BY 1",
            &[&format!("{name}_dbbackup_")],
        )
        .await
        .unwrap();
    rows.iter().map(|r| r.get(0)).collect()
}

/// `guard --staged-rollback` on PostgreSQL with an application session connected (so no
/// server-side copy): the safety backup is restored into a verified shadow before the command
/// (it exists while the command runs), and a failed command is rolled back by that restore's
/// swap alone: the database equals its state before the command and the report says `staged`.
/// The server ending the held session (the one holding the target's restore lock) during the
/// command makes the swap fail cleanly and guard restores the backup instead. A command that
/// succeeds keeps its changes and the shadow is dropped. Nothing is left beside the database.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guard_staged_rollback_swaps_in_a_verified_shadow_with_a_session_connected() {
    use backup_core::{CommandOutcome, GuardOptions, guard};
    let Some(f) = PgFixture::from_env() else { return };
    let db = populated(&f, "guard_staged").await;
    let before = f.fingerprint(&db).await;
    let opts = GuardOptions {
        source: db.clone(),
        repos: vec![format!("memory://{}", unique("guard_staged_repo"))],
        jobs: 2,
        staged_rollback: true,
        ..Default::default()
    };
    // An application session holding the database open (the swap ends it, so it is opened again).
    let mut app = PgFixture::client(&db).await;
    let r = guard(&opts, &Context::default(), || async {
        let shadows = pg_aux_databases(&db).await;
        assert!(
            shadows.len() == 1 && shadows[0].contains("_dbbackup_shadow_"),
            "the staged shadow exists while the command runs: {shadows:?}"
        );
        f.mutate(&db).await;
        Ok(CommandOutcome::Exited(1))
    })
    .await
    .expect("guard");
    assert!(r.rolled_back, "{:?}", r.notes);
    assert!(r.notes.iter().any(|n| n.contains("other sessions")), "{:?}", r.notes);
    assert_eq!(r.rollback_point.as_deref(), Some("staged"), "{:?}", r.notes);
    assert_eq!(r.rollback.as_deref(), Some("staged"), "{:?}", r.notes);
    assert_eq!(f.fingerprint(&db).await, before, "the failed command was not rolled back");
    // That the rollback was the swap alone is said by `rollback` above and by the shadow that
    // existed while the command ran; comparing the swap's time with the staging's (hundreds of
    // milliseconds each at the fixture's size) measured the machine's load, as the MariaDB
    // test's comparison did (removed in 85055bc).
    assert!(r.recovery_ms.is_some(), "recovery_ms");
    assert_eq!(pg_aux_databases(&db).await, Vec::<String>::new(), "nothing left beside the database");

    // The server ends the held session that holds the restore lock during the command.
    drop(app);
    app = PgFixture::client(&db).await;
    let r = guard(&opts, &Context::default(), || async {
        let c = PgFixture::client(&db).await;
        let killed: i64 = c
            .query_one(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_locks WHERE locktype = 'advisory' AND granted \
                 AND objsubid = 1 AND objid::text::bigint = (hashtext($1)::bigint & 4294967295)",
                &[&format!("dbbackup restore {}", PgFixture::db_name(&db))],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(killed, 1, "the staged restore holds the target's restore lock while the command runs");
        f.mutate(&db).await;
        Ok(CommandOutcome::Exited(1))
    })
    .await
    .expect("guard");
    assert!(r.rolled_back, "{:?}", r.notes);
    assert_eq!(r.rollback.as_deref(), Some("restore"), "{:?}", r.notes);
    assert!(r.notes.iter().any(|n| n.contains("swap of the staged restore failed")), "{:?}", r.notes);
    assert_eq!(f.fingerprint(&db).await, before, "the fallback restore brought the backup back");
    assert_eq!(pg_aux_databases(&db).await, Vec::<String>::new(), "the staged shadow was dropped");

    // The command succeeds: its changes stay and the shadow is dropped.
    drop(app);
    let _app = PgFixture::client(&db).await;
    let r = guard(&opts, &Context::default(), || async {
        f.mutate(&db).await;
        Ok(CommandOutcome::Exited(0))
    })
    .await
    .expect("guard");
    assert!(!r.rolled_back && r.rollback.is_none(), "{:?}", r.notes);
    assert_eq!(r.rollback_point.as_deref(), Some("staged"), "{:?}", r.notes);
    assert_ne!(f.fingerprint(&db).await, before, "the command's changes stay");
    assert_eq!(pg_aux_databases(&db).await, Vec::<String>::new(), "the staged shadow was dropped");
    drop(_app);
    f.drop_db(&db).await;
}

/// Tablespaces on the test server for one test (`scripts/services.sh` runs the server on this
/// host as its own OS user): each an empty directory in a temp dir, owned by the user that owns
/// the server's data directory, as `CREATE TABLESPACE ... LOCATION` wants. The test's databases
/// are named by [`Tablespaces::db`]. Dropped when it goes, also when the test panics: first every
/// database whose name starts with its tag (the test's, and any a restore left), then the
/// tablespaces, and only then, once the server has let go of them, their directories (removing
/// a directory the server still writes to makes its checkpoints fail).
struct Tablespaces {
    tag: String,
    names: Vec<String>,
    base: String,
    dir: std::path::PathBuf,
}

impl Tablespaces {
    async fn create(f: &PgFixture, n: usize) -> Tablespaces {
        use std::os::unix::fs::MetadataExt;
        let data_dir = scalar(&f.base, "SHOW data_directory").await;
        let meta = std::fs::metadata(&data_dir).unwrap_or_else(|e| {
            panic!(
                "the test server's data directory {data_dir} must be on this host (scripts/services.sh): {e}"
            )
        });
        let owner = (Some(meta.uid()), Some(meta.gid()));
        let chown = |p: &std::path::Path| {
            std::os::unix::fs::chown(p, owner.0, owner.1).unwrap_or_else(|e| {
                panic!(
                    "chown {} to the server's OS user (run as root, as scripts/test.sh does): {e}",
                    p.display()
                )
            })
        };
        let dir = tempfile::Builder::new().prefix("dbb-tablespaces").tempdir().unwrap().keep();
        let tag = unique("pgts");
        let mut ts = Tablespaces { tag, names: Vec::new(), base: f.base.clone(), dir };
        chown(&ts.dir);
        let admin = PgFixture::client(&f.base).await;
        for i in 0..n {
            let path = ts.dir.join(format!("ts{i}"));
            std::fs::create_dir(&path).unwrap();
            chown(&path);
            let name = format!("{}_ts{i}", ts.tag);
            admin
                .batch_execute(&format!("CREATE TABLESPACE \"{name}\" LOCATION '{}'", path.display()))
                .await
                .expect("create tablespace");
            ts.names.push(name);
        }
        ts
    }

    /// The name of the test's database `what`.
    fn db(&self, what: &str) -> String {
        format!("{}_{what}", self.tag)
    }
}

impl Drop for Tablespaces {
    fn drop(&mut self) {
        let run = |sql: &str| {
            std::process::Command::new("psql")
                .args(["-X", "-q", "-At", "-d", &self.base, "-c", sql])
                .output()
                .ok()
                .filter(|o| o.status.success())
                .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        };
        let dbs = run(&format!("SELECT datname FROM pg_database WHERE starts_with(datname, '{}')", self.tag));
        for db in dbs.unwrap_or_default().lines() {
            run(&format!("DROP DATABASE \"{db}\" WITH (FORCE)"));
        }
        let dropped = self.names.iter().all(|n| run(&format!("DROP TABLESPACE IF EXISTS \"{n}\"")).is_some());
        if dropped {
            let _ = std::fs::remove_dir_all(&self.dir);
        } else {
            eprintln!("tablespaces {:?} still in use: {} left in place", self.names, self.dir.display());
        }
    }
}

/// Where every relation of schema `public` lives and what it is, one line per object: kind,
/// tablespace (`-` for the database's default), the index or constraint definition; plus
/// `pg_indexes`' own view of each index. The tablespace names are written as `ts0`, `ts1`...
async fn layout(url: &str, ts: &Tablespaces) -> String {
    let c = PgFixture::client(url).await;
    let rows = c
        .query(
            "SELECT format('relation %s kind=%s tablespace=%s %s', c.relname, c.relkind, \
               coalesce(t.spcname, '-'), CASE WHEN c.relkind IN ('i', 'I') THEN pg_get_indexdef(c.oid) ELSE '' END) \
             FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
             LEFT JOIN pg_tablespace t ON t.oid = c.reltablespace \
             WHERE n.nspname = 'public' \
             UNION ALL SELECT format('pg_indexes %s.%s tablespace=%s %s', tablename, indexname, \
               coalesce(tablespace, '-'), indexdef) FROM pg_indexes WHERE schemaname = 'public' \
             UNION ALL SELECT format('constraint %s.%s %s index=%s', k.conrelid::regclass, k.conname, \
               pg_get_constraintdef(k.oid), k.conindid::regclass) \
             FROM pg_constraint k JOIN pg_namespace n ON n.oid = k.connamespace WHERE n.nspname = 'public' \
             ORDER BY 1",
            &[],
        )
        .await
        .expect("layout");
    let mut out: String = rows.iter().map(|r| format!("{}\n", r.get::<_, String>(0))).collect();
    for (i, n) in ts.names.iter().enumerate() {
        out = out.replace(n.as_str(), &format!("ts{i}"));
    }
    out
}

/// pg_dump's post-data script places each index and constraint index with the
/// `SET default_tablespace = ...` before it; the restore builds them in parallel on several
/// connections, each with exactly the settings the script had at that statement. Two tablespaces
/// (tables, indexes, primary-key, unique and exclusion constraint indexes in each, others in the
/// default), restored into a new database, over an existing one (the shadow swapped in) and in
/// place: every relation, index and constraint in the same tablespace with the same definition.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn post_data_keeps_each_indexs_tablespace() {
    let Some(f) = PgFixture::from_env() else { return };
    let ts = Tablespaces::create(&f, 2).await;
    let (a, b) = (&ts.names[0], &ts.names[1]);
    let src = f.create_db(&ts.db("src")).await;
    let schema = format!(
        "CREATE TABLE plain (id int PRIMARY KEY, a int, b text, c int); \
         CREATE TABLE in_a (id int, a int, b text, c int, \
           CONSTRAINT in_a_pk PRIMARY KEY (id) USING INDEX TABLESPACE \"{b}\", CONSTRAINT in_a_b UNIQUE (b)) \
           TABLESPACE \"{a}\"; \
         CREATE TABLE in_b (id int PRIMARY KEY USING INDEX TABLESPACE \"{a}\", a int, b text, c int, \
           CONSTRAINT in_b_c_excl EXCLUDE USING btree (c WITH =) USING INDEX TABLESPACE \"{b}\", \
           CONSTRAINT in_b_plain FOREIGN KEY (a) REFERENCES plain (id)) TABLESPACE \"{b}\"; \
         INSERT INTO plain SELECT i, i % 97, md5(i::text), i % 13 FROM generate_series(1, 3000) i; \
         INSERT INTO in_a SELECT i, i % 89, md5(i::text), i % 7 FROM generate_series(1, 3000) i; \
         INSERT INTO in_b SELECT i, 1 + i % 83, md5(i::text), i FROM generate_series(1, 3000) i; \
         CREATE INDEX plain_a ON plain (a) TABLESPACE \"{a}\"; \
         CREATE INDEX plain_b ON plain (b); \
         CREATE INDEX plain_c ON plain (c) TABLESPACE \"{b}\"; \
         CREATE INDEX in_a_a ON in_a (a) TABLESPACE \"{b}\"; \
         CREATE INDEX in_a_c ON in_a (c); \
         CREATE UNIQUE INDEX in_b_a_id ON in_b (a, id) TABLESPACE \"{a}\"; \
         CREATE INDEX in_b_lower ON in_b (lower(b)) WHERE c > 10; \
         CREATE INDEX in_b_hash ON in_b USING hash (b) TABLESPACE \"{a}\"; \
         CREATE MATERIALIZED VIEW mv TABLESPACE \"{a}\" AS SELECT id, a FROM plain; \
         CREATE INDEX mv_a ON mv (a) TABLESPACE \"{b}\"; \
         CREATE INDEX mv_id ON mv (id); \
         COMMENT ON INDEX plain_c IS 'in the second tablespace'"
    );
    PgFixture::client(&src).await.batch_execute(&schema).await.expect("schema");
    let want = layout(&src, &ts).await;
    // The comparison sees each placement it is about.
    for line in [
        "relation in_a_pk kind=i tablespace=ts1",
        "relation in_a_b kind=i tablespace=-",
        "relation in_b_c_excl kind=i tablespace=ts1",
        "relation plain_a kind=i tablespace=ts0",
        "relation plain_b kind=i tablespace=-",
        "relation mv kind=m tablespace=ts0",
        "relation mv_a kind=i tablespace=ts1",
        "relation in_a kind=r tablespace=ts0",
        "pg_indexes in_b.in_b_pkey tablespace=ts0",
    ] {
        assert!(want.lines().any(|l| l.starts_with(line)), "the source has no line {line:?}:\n{want}");
    }
    let want_catalog = catalog(&PgFixture::client(&src).await).await;
    let repo = memory_repo();
    let id = backup(&src, &repo).await.expect("backup");
    let dst = f.url_of(&ts.db("dst"));
    restore_opts(&repo, &id, &dst, RestoreOptions::default()).await.expect("restore into a new database");
    assert_same(&layout(&dst, &ts).await, &want, "restored into a new database");
    assert_same_catalog(&catalog(&PgFixture::client(&dst).await).await, &want_catalog, "new database");
    // Over an existing database (the shadow swapped in): changed placements and contents first.
    PgFixture::client(&dst)
        .await
        .batch_execute(&format!(
            "ALTER INDEX plain_a SET TABLESPACE pg_default; ALTER TABLE in_a SET TABLESPACE \"{b}\"; \
             DROP INDEX in_b_hash; CREATE INDEX extra ON plain (b, c) TABLESPACE \"{a}\""
        ))
        .await
        .unwrap();
    restore_opts(&repo, &id, &dst, RestoreOptions::default()).await.expect("restore over the database");
    assert_same(&layout(&dst, &ts).await, &want, "restored over an existing database");
    assert_same_catalog(&catalog(&PgFixture::client(&dst).await).await, &want_catalog, "swapped in");
    PgFixture::client(&dst)
        .await
        .batch_execute("ALTER INDEX in_a_pk SET TABLESPACE pg_default")
        .await
        .unwrap();
    restore_opts(&repo, &id, &dst, RestoreOptions { in_place: true, ..Default::default() })
        .await
        .expect("in-place restore");
    assert_same(&layout(&dst, &ts).await, &want, "restored in place");
    drop(ts);
}

/// The settings of pg_dump's scripts stay with the scripts' statements: a LATIN1 database's
/// scripts say `SET client_encoding = 'LATIN1'`, while dbbackup's own COPY and read-back on the
/// same connections speak UTF-8. Restored into a new database and in place (one connection
/// for the scripts, the COPY and the read-back), the text comes back as it was; and a shadow
/// session's pool connections, which ran the post-data builds, read the tables back with the
/// checksums of the manifest.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn script_settings_do_not_reach_the_sessions_own_statements() {
    let Some(f) = PgFixture::from_env() else { return };
    let src = latin1_db(&f, "pgpd_latin1").await;
    PgFixture::client(&src)
        .await
        .batch_execute(
            "CREATE TABLE words (id int PRIMARY KEY, w text); \
             INSERT INTO words VALUES (1, 'café'), (2, 'naïve'), (3, 'Ærøskøbing'), (4, 'plain'); \
             CREATE INDEX words_w ON words (w); CREATE INDEX words_lower ON words (lower(w)); \
             CREATE TABLE more (id int PRIMARY KEY, w text); \
             INSERT INTO more SELECT i, 'façade ' || i FROM generate_series(1, 200) i; \
             CREATE INDEX more_w ON more (w)",
        )
        .await
        .unwrap();
    let text = "SELECT (SELECT string_agg(w, ',' ORDER BY id) FROM words) || ';' || (SELECT string_agg(w, ',' ORDER BY id) FROM more)";
    let want = scalar(&src, text).await;
    assert!(want.starts_with("café,naïve,Ærøskøbing,plain;façade 1,"), "{want}");
    let repo = memory_repo();
    let id = backup(&src, &repo).await.expect("backup");
    let dst = f.url_of(&unique("pgpd_latin1_dst"));
    restore_opts(&repo, &id, &dst, RestoreOptions::default()).await.expect("restore into a new database");
    assert_eq!(scalar(&dst, text).await, want, "restored into a new database");
    PgFixture::client(&dst).await.batch_execute("UPDATE words SET w = 'changed'").await.unwrap();
    restore_opts(&repo, &id, &dst, RestoreOptions { in_place: true, ..Default::default() })
        .await
        .expect("in-place restore");
    assert_eq!(scalar(&dst, text).await, want, "restored in place");
    // The scripts of backups made before pg_dump ran with `--encoding=UTF8` say the database's
    // encoding (`SET client_encoding = 'LATIN1'`; this schema is ASCII): sessions driven by hand
    // with the scripts as they were. The shadow session reads every table back after post-data,
    // on the pool connections that ran the builds (the restore reads most tables back before
    // post-data); the in-place session runs the scripts, the COPY and the read-back on one
    // connection, and its committed text is compared (its read-back, had it run in LATIN1, would
    // have matched the manifest).
    let m = resolve(&repo, &id).await.unwrap();
    let stream = |key: &str, codec: &str| {
        let raw = repo.get_stream(&format!("{}{key}", backup_core::backup_dir(&m.id)));
        backup_core::decompress(raw, backup_core::Codec::from_name(codec).unwrap(), key.into())
    };
    let latin1_script = async |key: &str, codec: &str| -> backup_core::ByteStream {
        use futures::StreamExt;
        let parts: Vec<bytes::Bytes> = stream(key, codec).map(|b| b.unwrap()).collect().await;
        let script = String::from_utf8(parts.concat()).unwrap();
        assert!(script.contains("SET client_encoding = 'UTF8';"), "{script}");
        let script = script.replace("SET client_encoding = 'UTF8';", "SET client_encoding = 'LATIN1';");
        futures::stream::once(async move { Ok(bytes::Bytes::from(script)) }).boxed()
    };
    use backup_core::ObjectKind::{Data, SchemaPost, SchemaPre};
    let session_db = f.url_of(&unique("pgpd_latin1_session"));
    for (target, in_place) in [(&session_db, false), (&dst, true)] {
        PgFixture::client(&dst).await.batch_execute("UPDATE words SET w = 'changed'").await.unwrap();
        let parsed = DatabaseUrl::parse(target).unwrap();
        let loader = open_loader(&parsed).unwrap();
        let opts = backup_core::LoadOptions { jobs: 2, in_place, ..Default::default() };
        let session = loader.begin(&m, &opts, &Context::default()).await.unwrap();
        for o in m.objects.iter().filter(|o| o.kind == SchemaPre) {
            session.pre_data(latin1_script(&o.key, &o.codec).await).await.unwrap();
        }
        for o in m.objects.iter().filter(|o| o.kind == Data) {
            session.load(o, stream(&o.key, &o.codec)).await.unwrap();
        }
        // As the pipeline does after each table's last chunk (the shadow commits its load there).
        for t in &m.tables {
            session.table_loaded(t).await.unwrap();
        }
        for o in m.objects.iter().filter(|o| o.kind == SchemaPost) {
            session.post_data(latin1_script(&o.key, &o.codec).await, &Context::default()).await.unwrap();
        }
        for t in &m.tables {
            let got = session.table_stats(t).await.unwrap();
            assert_eq!(
                (got.rows, &got.checksum),
                (t.rows, &t.checksum),
                "{} read back after post-data",
                t.name
            );
        }
        match in_place {
            false => session.abort().await.unwrap(),
            true => {
                session.commit(&Context::default()).await.unwrap();
                assert_eq!(scalar(&dst, text).await, want, "restored in place by hand");
            }
        }
    }
    for db in [&src, &dst] {
        f.drop_db(db).await;
    }
}

/// A LATIN1 database with non-ASCII schema text (names, a default, a comment, a partial index)
/// is backed up (pg_dump's LATIN1 output was refused as not UTF-8 before pg_dump ran with
/// `--encoding=UTF8`) and its schema comes back as it was, into a new database and in place.
/// Among it `Ã©`, whose LATIN1 bytes C3 A9 also read as UTF-8 `é`: it passed as UTF-8 in a
/// LATIN1 script, where a statement sent in the same message as the script's
/// `SET client_encoding = 'LATIN1'` (a batch, or a post-data build with its settings) was read
/// as UTF-8 and came back as `é` (column default, check constraint, comments, partial index,
/// trigger condition); the batches of such a script are `schema::batches`' unit test.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn script_text_is_read_in_the_scripts_client_encoding() {
    let Some(f) = PgFixture::from_env() else { return };
    let src = latin1_db(&f, "pgenc_latin1").await;
    PgFixture::client(&src)
        .await
        .batch_execute(
            "CREATE TABLE t (id int PRIMARY KEY, a text DEFAULT 'Ã©' CHECK (a <> 'Ã©x')); \
             COMMENT ON TABLE t IS 'Ã© table'; \
             INSERT INTO t VALUES (1, 'plain'); \
             CREATE INDEX t_partial ON t (a) WHERE a <> 'Ã©'; \
             COMMENT ON INDEX t_partial IS 'Ã© index'; \
             CREATE FUNCTION f() RETURNS trigger LANGUAGE plpgsql AS 'BEGIN RETURN NEW; END'; \
             CREATE TRIGGER t_trg BEFORE UPDATE ON t FOR EACH ROW WHEN (NEW.a <> 'Ã©') EXECUTE FUNCTION f(); \
             CREATE TABLE café (naïve text DEFAULT 'déjà vu'); COMMENT ON TABLE café IS 'façade'; \
             CREATE INDEX ON café (naïve) WHERE naïve <> 'über';",
        )
        .await
        .unwrap();
    let schema = "SELECT concat_ws(' | ', \
        (SELECT pg_get_expr(adbin, adrelid) FROM pg_attrdef WHERE adrelid = 't'::regclass), \
        (SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conrelid = 't'::regclass AND contype = 'c'), \
        obj_description('t'::regclass, 'pg_class'), \
        pg_get_indexdef('t_partial'::regclass), obj_description('t_partial'::regclass, 'pg_class'), \
        (SELECT pg_get_triggerdef(oid) FROM pg_trigger WHERE tgname = 't_trg'), \
        (SELECT pg_get_expr(adbin, adrelid) FROM pg_attrdef WHERE adrelid = 'café'::regclass), \
        obj_description('café'::regclass, 'pg_class'), \
        (SELECT pg_get_indexdef(indexrelid) FROM pg_index WHERE indrelid = 'café'::regclass))";
    let want = scalar(&src, schema).await;
    assert_eq!(want.matches("Ã©").count(), 6, "{want}");
    assert!(want.contains("'déjà vu'") && want.contains("façade") && want.contains("'über'"), "{want}");
    let repo = memory_repo();
    let id = backup(&src, &repo).await.expect("backup");
    let dst = f.url_of(&unique("pgenc_latin1_dst"));
    restore_opts(&repo, &id, &dst, RestoreOptions::default()).await.expect("restore into a new database");
    assert_eq!(scalar(&dst, schema).await, want, "restored into a new database");
    assert_same_catalog(
        &catalog(&PgFixture::client(&dst).await).await,
        &catalog(&PgFixture::client(&src).await).await,
        "restored into a new database",
    );
    restore_opts(&repo, &id, &dst, RestoreOptions { in_place: true, ..Default::default() })
        .await
        .expect("in-place restore");
    assert_eq!(scalar(&dst, schema).await, want, "restored in place");
    for db in [&src, &dst] {
        f.drop_db(db).await;
    }
}

/// Every type with a binary COPY encoder, edge values first, then 20,000 generated rows spread
/// over each type's range (BC dates, scales, exponents, escapes).
const ENCODABLE: &str = r#"
CREATE TABLE enc (id int PRIMARY KEY, b bool, by bytea, i2 int2, i4 int4, i8 int8, t text, vc varchar(20),
  c char(5), nm name, j json, jb jsonb, f4 real, f8 double precision, n numeric, n2 numeric(14,2), d date,
  ts timestamp, ts3 timestamp(3), tz timestamptz, u uuid);
INSERT INTO enc VALUES
  (1, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL),
  (2, true, '\x', -32768, -2147483648, -9223372036854775808, '', '', '', '', '""', '""', '-0', '-0', '0', '0.00',
   '4713-11-24 BC', '4713-11-24 00:00:00 BC', '-infinity', '4713-11-24 00:00:00+00 BC', '00000000-0000-0000-0000-000000000000'),
  (3, false, '\x00ff5c0a0d09', 32767, 2147483647, 9223372036854775807, E'\\N', E'tab\there', 'ab', 'x', '{"a": "\\u00e9\n"}',
   '{"b": [1, 2.50, null], "a": "\\\\ \" é"}', 'NaN', 'NaN', 'NaN', '-123456789012.34', '5874897-12-31', '294276-12-31 23:59:59.999999',
   'infinity', '294276-12-31 23:59:59.999999+00', 'ffffffff-ffff-ffff-ffff-ffffffffffff'),
  (4, true, '\x5c4e', 0, 0, 0, E'a\\b\nc\rd\be\ff' || chr(11) || 'g', E'\\', 'é', 'Name With Space', 'null', 'null', 'Infinity', 'Infinity',
   'Infinity', '0.01', 'infinity', 'infinity', '2000-01-01 00:00:00', 'infinity', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'),
  (5, false, NULL, -1, -1, -1, 'emoji 😀🐘 𝄞', NULL, NULL, NULL, '[1,   2]', '[]', '-Infinity', '-Infinity', '-Infinity', '-0.01',
   '-infinity', '-infinity', '1999-12-31 23:59:59.999', '-infinity', NULL),
  (6, NULL, NULL, 1, 1, 1, 'x', 'y', 'z', 'w', '{}', '{}', '3.4028235e+38', '1.7976931348623157e+308',
   '123456789012345678901234567890.123456789012345678901234567890', '999999999999.99', '0001-01-01 BC', '0001-12-31 23:59:59.5 BC',
   '0001-01-01 00:00:00.001', '1969-12-31 23:59:59.5+14', NULL),
  (7, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, '1.1754944e-38', '4.9e-324', '-0.000000000000000000001',
   NULL, '2000-02-29', '2024-02-29 12:00:00', NULL, '2024-03-10 02:30:00 America/New_York', NULL),
  (8, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, '1e-45', '2.2250738585072014e-308', '10000', NULL,
   '1970-01-01', '1970-01-01 00:00:00', NULL, '1883-11-18 12:00:00+00', NULL),
  (9, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, '0.1', '0.1', '0.0001000', NULL, NULL, NULL, NULL, NULL, NULL);
INSERT INTO enc SELECT 100 + i, i % 3 = 0, decode(md5(i::text), 'hex'), (i % 65536 - 32768)::int2,
  (i::bigint * 48271 % 4294967296 - 2147483648)::int4, (i::numeric * 2654435761 * 1000000007 % 18446744073709551616 - 9223372036854775808)::int8,
  repeat(md5(i::text) || E'\t\\\n\r\b\f' || chr(11), i % 4), left(md5(i::text), i % 21), left(md5((i * 7)::text), i % 6), md5(i::text),
  json_build_object('i', i, 's', E'q"\\\t' || i)::json, jsonb_build_object('i', i, 'f', i / 7.0, 'a', jsonb_build_array(i, NULL, 'x')),
  ((random() - 0.5) * 10 ^ (i % 70 - 35))::real, (random() - 0.5) * 10 ^ (i % 600 - 300),
  round(((random() - 0.5) * 10 ^ (i % 80 - 40))::numeric, i % 50), ((random() - 0.5) * 10 ^ (i % 12))::numeric(14,2),
  '4713-11-24 BC'::date + i * 997, '4713-11-24 00:00:00 BC'::timestamp + i * interval '997 days 01:02:03.456789',
  '1900-01-01'::timestamp + i * interval '1 day 00:00:01.2345', '0100-01-01 00:00:00+00 BC'::timestamptz + i * interval '173 days 00:00:00.000007',
  md5(i::text)::uuid
FROM generate_series(1, 20000) i;
"#;

/// Edge values the generated rows of [`ENCODABLE`] do not reach: numerics of 1,000 digits, of
/// scale 16,383 and of a negative-scale column, denormal floats, shortest-float output,
/// timestamps written as 24:00:00 or with a leap second (the server normalizes them), years past
/// 10000, json kept as written, jsonb normalized, control characters, backslashes that are
/// data, padded char, a 63-byte multibyte name, all 256 byte values, an upper-case uuid.
/// (Not `'-NaN'`: its bits differ from NaN's, but its text is `NaN`, which the server reads as
/// its own NaN, as the encoder does; a text dump cannot keep a NaN's sign.)
const ENCODABLE_EDGES: &str = r#"
CREATE TABLE enc_edges (id int PRIMARY KEY, n numeric, nneg numeric(5,-2), f4 real, f8 double precision, ts timestamp,
  tz timestamptz, d date, j json, jb jsonb, t text, c char(3), nm name, by bytea, u uuid);
INSERT INTO enc_edges (id, n, nneg, f4, f8, ts, tz, d, j, jb, t, c, nm, by, u) VALUES
  (1, '0.000000000000000000000000000000', 12345, '1e-40', '1e-310', '2000-01-01 24:00:00', '2016-12-31 23:59:60+00',
   '5874897-12-31', '  {"a" : 1 ,"a":2}  ', '{"b":1,"a":[1.0,2.50e2,-0,1e-5,1E+2],"aa":"\u00e9\t\"\\"}',
   chr(1) || chr(27) || chr(127) || E'\\x41\\101', 'a', repeat('x', 63), '\x', 'A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11'),
  (2, repeat('9', 1000)::numeric, -99949, '-1.4e-45', '-4.9e-324', '12345-06-07 08:09:10.5', '4713-11-24 00:00:00+00 BC',
   '4713-11-24 BC', '"\u0000 \ud83d\ude00"', '"\ud83d\ude00 \\u0041"', E'\\.', '', repeat('é', 31) || 'x',
   decode(repeat('00', 1), 'hex'), NULL),
  (3, ('0.' || repeat('0', 16382) || '1')::numeric, 0, '1.17549435e-38', '2.225073858507201e-308', '294276-12-31 23:59:59.999999',
   '294276-12-31 23:59:59.999999+00', 'epoch', '[]', '[1e400]', E'\\N', 'é', '', NULL, NULL),
  (4, ('-' || repeat('1234567890', 100) || '.' || repeat('0987654321', 100))::numeric, 50, '3.4028235e38', '123456789012345680000',
   '0001-01-01 00:00:00', '0001-01-01 00:00:00+00', '0001-01-01', 'null', '{"a": {"b": [true, false, null]}}', E'\\', 'ab ', 'a b',
   NULL, NULL),
  (5, '-0.0', NULL, '-0', '0.30000000000000004', '2000-02-29 00:00:00.000001', now(), '2000-02-29', '1.5e3', '1.5e3',
   E'tail\\', 'x', '"q"', NULL, NULL),
  (6, 1e100, NULL, 'NaN', 'NaN', '1999-12-31 23:59:59.999999 BC', '1999-12-31 23:59:59.999999+00 BC', '1999-12-31 BC',
   '{"\u00e9": "é"}', '{"\u00e9": "é", "": ""}', E'é\u0301', 'abc', 'ééé', NULL, NULL),
  (7, 1e-100, NULL, '1e-45', '5e-324', NULL, '2000-01-01 00:00:00+14:59', NULL, NULL, '0', NULL, NULL, NULL, NULL, NULL),
  (8, 'Infinity', NULL, 'Infinity', 'Infinity', 'infinity', 'infinity', 'infinity', NULL, '-0.0', NULL, NULL, NULL, NULL, NULL),
  (9, '-Infinity', NULL, '-Infinity', '-Infinity', '-infinity', '-infinity', '-infinity', NULL, '1e-400', NULL, NULL, NULL, NULL, NULL),
  (10, 'NaN', NULL, NULL, NULL, NULL, '1883-11-18 12:00:00 America/New_York', NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL);
UPDATE enc_edges SET by = (SELECT string_agg(set_byte('\x00'::bytea, 0, i), '') FROM generate_series(0, 255) i) WHERE id = 3;
"#;

/// Splits a binary COPY stream into its rows (the bytes after each row's field count).
fn binary_rows(b: &[u8]) -> Vec<Vec<u8>> {
    assert_eq!(&b[..19], backup_core::pg_binary::HEADER);
    let mut rows = Vec::new();
    let mut p = 19;
    loop {
        let n = i16::from_be_bytes([b[p], b[p + 1]]);
        if n == -1 {
            assert_eq!(p + 2, b.len(), "data after the trailer");
            return rows;
        }
        let start = p;
        p += 2;
        for _ in 0..n {
            let len = i32::from_be_bytes(b[p..p + 4].try_into().unwrap());
            p += 4 + len.max(0) as usize;
        }
        rows.push(b[start..p].to_vec());
    }
}

async fn copy_out_bytes(c: &tokio_postgres::Client, sql: &str) -> Vec<u8> {
    use futures::StreamExt;
    let mut out = Vec::new();
    let mut s = std::pin::pin!(c.copy_out(sql).await.expect(sql));
    while let Some(b) = s.next().await {
        out.extend_from_slice(&b.expect("copy out"));
    }
    out
}

/// The restore's binary encoder, given the server's own text COPY lines, writes exactly the
/// server's own binary COPY rows, value for value (column types as the server reports them).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_copy_encoder_writes_what_the_server_writes() {
    let Some(f) = PgFixture::from_env() else { return };
    let db = fresh(&f, "binenc").await;
    let c = PgFixture::client(&db).await;
    c.batch_execute(ENCODABLE).await.expect("fill enc");
    c.batch_execute(ENCODABLE_EDGES).await.expect("fill enc_edges");
    // The dump's session settings (PgFixture::client sets TimeZone, DateStyle, extra_float_digits).
    c.batch_execute("SET bytea_output = 'hex'; SET IntervalStyle = 'postgres'").await.unwrap();
    for (table, rows) in [("enc", 20_009), ("enc_edges", 10)] {
        let oids: Vec<u32> = c
            .query(
                &format!("SELECT atttypid FROM pg_attribute WHERE attrelid = '{table}'::regclass AND attnum > 0 ORDER BY attnum"),
                &[],
            )
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        let text = copy_out_bytes(&c, &format!("COPY {table} TO STDOUT")).await;
        let want = binary_rows(&copy_out_bytes(&c, &format!("COPY {table} TO STDOUT (FORMAT binary)")).await);
        let mut enc =
            backup_core::pg_binary::RowEncoder::for_oids(&oids).expect("every column has an encoder");
        let lines: Vec<&[u8]> = text.strip_suffix(b"\n").unwrap().split(|b| *b == b'\n').collect();
        assert_eq!(lines.len(), want.len());
        assert_eq!(lines.len(), rows, "{table}");
        for (line, want) in lines.iter().zip(&want) {
            let mut got = Vec::new();
            enc.encode_line(line, &mut got)
                .unwrap_or_else(|e| panic!("{table}: {e:?}: {}", String::from_utf8_lossy(line)));
            assert!(
                got == *want,
                "{table}: line {}\n got {got:02x?}\nwant {want:02x?}",
                String::from_utf8_lossy(line)
            );
        }
    }
    f.drop_db(&db).await;
}

/// A restore loads `enc` with binary COPY and a table whose 9 MiB row sends the rest of its
/// chunk as text; every value comes back as it was (compared value by value as text) and the
/// restore's own content proof passed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_copy_restore_round_trips_every_value() {
    let Some(f) = PgFixture::from_env() else { return };
    let db = fresh(&f, "binrt").await;
    let c = PgFixture::client(&db).await;
    c.batch_execute(ENCODABLE).await.expect("fill enc");
    c.batch_execute(
        "CREATE TABLE mixed (id int PRIMARY KEY, body text, at timestamptz); \
         INSERT INTO mixed SELECT i, md5(i::text), now() - i * interval '1 minute' FROM generate_series(1, 1000) i; \
         INSERT INTO mixed VALUES (1001, repeat('0123456789abcdef', 600000), NULL); \
         INSERT INTO mixed SELECT i, E'after\\t' || i, 'epoch' FROM generate_series(1002, 2000) i;",
    )
    .await
    .unwrap();
    let repo = memory_repo();
    let id = backup(&db, &repo).await.expect("backup");
    let dst = f.url_of(&unique("binrt_dst"));
    restore_into(&repo, &id, &dst).await.expect("restore");
    for t in ["enc", "mixed"] {
        let q = format!("SELECT string_agg(x::text, E'\\n' ORDER BY id) FROM {t} x");
        assert_eq!(scalar(&dst, &q).await, scalar(&db, &q).await, "{t}");
    }
    f.drop_db(&db).await;
    f.drop_db(&dst).await;
}

/// What a backup of `url` into `repo` did, in the order first seen while `run` goes on (polled
/// every 20 ms): `count` (a `SELECT count(*)` in `pg_stat_activity`, where a session's last
/// statement stays after it ends), `copy` (a chunk's `COPY`), `schema stored` (the pre-data
/// object in the repository).
async fn first_seen<T>(
    url: &str,
    repo: &Target,
    run: impl std::future::Future<Output = T>,
) -> (T, Vec<&'static str>) {
    let db = PgFixture::db_name(url);
    let watcher = PgFixture::client(url).await;
    let mut order = Vec::new();
    let mut run = std::pin::pin!(run);
    loop {
        tokio::select! {
            out = &mut run => return (out, order),
            _ = tokio::time::sleep(std::time::Duration::from_millis(20)) => {}
        }
        // The repository first: what a poll sees there happened before what it then sees in
        // pg_stat_activity.
        let mut now = Vec::new();
        if repo.list("").await.unwrap().iter().any(|l| l.key.contains("schema/pre-data")) {
            now.push("schema stored");
        }
        let rows = watcher
            .query(
                "SELECT query FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()",
                &[&db],
            )
            .await
            .unwrap();
        now.extend(rows.iter().filter_map(|r| r.get::<_, Option<String>>(0)).filter_map(|q| match q {
            q if q.starts_with("SELECT count(*) FROM ONLY") => Some("count"),
            q if q.starts_with("COPY ") => Some("copy"),
            _ => None,
        }));
        for tag in now {
            if !order.contains(&tag) {
                order.push(tag);
            }
        }
    }
}

async fn two_tables(f: &PgFixture, tag: &str) -> String {
    let src = fresh(f, tag).await;
    PgFixture::client(&src)
        .await
        .batch_execute(
            "CREATE TABLE a (id int PRIMARY KEY, pad text); \
             INSERT INTO a SELECT i, repeat('a', 200) FROM generate_series(1, 20000) i; \
             CREATE TABLE b (id int); INSERT INTO b SELECT generate_series(1, 500);",
        )
        .await
        .unwrap();
    src
}

fn rows_of(m: &Manifest) -> Vec<(String, u64)> {
    m.tables.iter().map(|t| (t.name.clone(), t.rows)).collect()
}

/// Tables the workers can share out whole are dumped whole (`COPY t TO`: a chunk's TID range
/// scan costs the server ~7% more CPU per row), and their rows are still proven: two tables of
/// ~3 MiB each, 1 MiB chunks and two workers give one object per table (each was split into
/// 1 MiB page ranges before), and the backup restores. A table bigger than a worker's share is still split (`a` in
/// `row_counts_are_taken_beside_the_data`, `big` in `restored_rows_are_written_frozen`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tables_the_workers_share_out_whole_are_not_split() {
    let Some(f) = PgFixture::from_env() else { return };
    let src = fresh(&f, "whole").await;
    PgFixture::client(&src)
        .await
        .batch_execute(
            "CREATE TABLE x (id int PRIMARY KEY, pad text); \
             INSERT INTO x SELECT i, repeat('x', 200) FROM generate_series(1, 12000) i; \
             CREATE TABLE y (id int PRIMARY KEY, pad text); \
             INSERT INTO y SELECT i, repeat('y', 200) FROM generate_series(1, 12000) i;",
        )
        .await
        .unwrap();
    let repo = memory_repo();
    let id = backup(&src, &repo).await.expect("backup");
    let m = resolve(&repo, &id).await.unwrap();
    assert_eq!(rows_of(&m), [("x".to_string(), 12000), ("y".to_string(), 12000)]);
    for (i, t) in m.tables.iter().enumerate() {
        let objects = m.objects.iter().filter(|o| o.table == Some(i)).count();
        assert_eq!(objects, 1, "{} is dumped whole", t.name);
    }
    let dst = fresh(&f, "whole_dst").await;
    restore_into(&repo, &id, &dst).await.expect("restore");
    assert_eq!(
        scalar(&dst, "SELECT (SELECT count(*) FROM x) || '/' || (SELECT count(DISTINCT id) FROM y)").await,
        "12000/12000"
    );
    f.drop_db(&src).await;
    f.drop_db(&dst).await;
}

/// Every table's row count (the proof that the chunks cover the snapshot) is taken on a
/// connection of its own as soon as the plan is made, beside the data, instead of on the dump
/// workers after each table's last chunk (which left the counts for the end of the backup, with
/// the client idle). Every chunk's COPY is held back 2 s by a delay point (set on this thread:
/// a current-thread runtime): the counts show before any COPY, and still agree with the rows
/// dumped.
#[tokio::test(flavor = "current_thread")]
async fn row_counts_are_taken_beside_the_data() {
    let Some(f) = PgFixture::from_env() else { return };
    let src = two_tables(&f, "countsbeside").await;
    let repo = memory_repo();
    backup_core::delay_on_this_thread("pg-chunk", std::time::Duration::from_millis(2000));
    let (id, order) = first_seen(&src, &repo, backup(&src, &repo)).await;
    backup_core::delay_on_this_thread("pg-chunk", std::time::Duration::ZERO);
    let m = resolve(&repo, &id.expect("backup")).await.unwrap();
    assert_eq!(rows_of(&m), [("a".to_string(), 20000), ("b".to_string(), 500)]);
    assert!(m.objects.iter().filter(|o| o.table == Some(0)).count() > 2, "a is split into chunks");
    let (count, copy) = (order.iter().position(|t| *t == "count"), order.iter().position(|t| *t == "copy"));
    assert!(count.is_some() && count < copy, "the row counts come before the data: {order:?}");
    f.drop_db(&src).await;
}

/// The schema (two pg_dump runs and the leader's catalog reads) is written beside the data
/// instead of before it: with the schema held back 2 s by a delay point, the chunks' COPY runs
/// before the schema is stored; the manifest still lists the schema first and the backup
/// restores.
#[tokio::test(flavor = "current_thread")]
async fn schema_is_written_beside_the_data() {
    let Some(f) = PgFixture::from_env() else { return };
    let src = two_tables(&f, "schemabeside").await;
    let repo = memory_repo();
    backup_core::delay_on_this_thread("pg-schema", std::time::Duration::from_millis(2000));
    let (id, order) = first_seen(&src, &repo, backup(&src, &repo)).await;
    backup_core::delay_on_this_thread("pg-schema", std::time::Duration::ZERO);
    let id = id.expect("backup");
    let m = resolve(&repo, &id).await.unwrap();
    let kinds: Vec<_> = m.objects.iter().take(2).map(|o| o.kind).collect();
    assert_eq!(kinds, [backup_core::ObjectKind::SchemaPre, backup_core::ObjectKind::SchemaPost]);
    let (copy, schema) =
        (order.iter().position(|t| *t == "copy"), order.iter().position(|t| *t == "schema stored"));
    // (The schema may be stored too late to be seen: the backup ends right after it.)
    assert!(
        copy.is_some() && schema.is_none_or(|s| copy < Some(s)),
        "the data starts before the schema is stored: {order:?}"
    );
    let dst = fresh(&f, "schemabeside_dst").await;
    restore_into(&repo, &id, &dst).await.expect("restore");
    assert_eq!(
        scalar(&dst, "SELECT (SELECT count(*) FROM a) || '/' || (SELECT count(*) FROM b)").await,
        "20000/500"
    );
    f.drop_db(&src).await;
    f.drop_db(&dst).await;
}
