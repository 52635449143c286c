//! Stopped from outside: SIGTERM during a backup, a restore and a guarded command is handled
//! like Ctrl-C (the work is cancelled and cleaned up, the process exits 128 + 15), and what is on
//! disk afterwards is checked.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

fn spawn(args: &[&str]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_dbbackup"))
        .args(args)
        .env_remove("APP_ENV")
        .env_remove("DBBACKUP_REPO")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run dbbackup")
}

fn signal(child: &Child, sig: &str) {
    let st = Command::new("kill").args([&format!("-{sig}"), &child.id().to_string()]).status().unwrap();
    assert!(st.success());
}

/// Waits until `ready` holds (polling), failing after 60 s or when the process ended first.
fn wait_for(child: &mut Child, what: &str, ready: impl Fn() -> bool) {
    let t0 = Instant::now();
    while !ready() {
        if let Some(st) = child.try_wait().unwrap() {
            panic!("dbbackup ended ({st}) before {what}");
        }
        assert!(t0.elapsed() < Duration::from_secs(60), "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(2));
    }
}

fn finish(child: Child) -> Output {
    child.wait_with_output().unwrap()
}

/// Every file under `dir`, recursively.
fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir(dir) else { return out };
    for e in rd.flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(files(&p));
        } else {
            out.push(p);
        }
    }
    out
}

/// A SQLite database of about `mib` MiB of poorly compressible text, so that work on it takes
/// long enough for a signal to land in the middle.
fn big_sqlite(path: &Path, mib: u64) {
    let c = rusqlite::Connection::open(path).unwrap();
    let rows = mib * 1024 * 1024 / 1000;
    c.execute_batch(&format!(
        "pragma journal_mode = off; pragma synchronous = off;
         create table t (id integer primary key, v text);
         create index t_v on t(v);
         with recursive n(i) as (select 1 union all select i + 1 from n where i < {rows})
         insert into t select i, hex(randomblob(500)) from n;"
    ))
    .unwrap();
}

fn url(p: &Path) -> String {
    format!("sqlite://{}", p.display())
}

#[test]
fn sigterm_during_a_backup_leaves_no_backup_and_no_temp_files() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("app.sqlite");
    big_sqlite(&db, 48);
    let repo = dir.path().join("repo");
    let spool = dir.path().join("spool");
    std::fs::create_dir(&spool).unwrap();
    // zstd at a high level and one worker: the upload takes seconds.
    let mut child = spawn(&[
        "create",
        "--source",
        &url(&db),
        "--repo",
        repo.to_str().unwrap(),
        "--compression",
        "zstd:19",
        "-j",
        "1",
        "--chunk-mib",
        "8",
        "--temp-dir",
        spool.to_str().unwrap(),
    ]);
    // Mid-upload: the first data object is being written into the repository.
    wait_for(&mut child, "the upload started", || {
        files(&repo).iter().any(|p| p.to_string_lossy().contains("/data/"))
    });
    signal(&child, "TERM");
    let out = finish(child);
    let err = String::from_utf8_lossy(&out.stderr);
    // The alert state (`alerts/`) records the failure; nothing of the backup may remain.
    let left: Vec<_> = files(&repo).into_iter().filter(|p| !p.starts_with(repo.join("alerts"))).collect();
    assert!(left.is_empty(), "left in the repository: {left:?}");
    assert!(files(&spool).is_empty(), "left in the spool: {:?}", files(&spool));
    assert_eq!(out.status.code(), Some(143), "{err}");
    assert!(err.contains("SIGTERM"), "{err}");
}

#[test]
fn sigterm_during_a_restore_leaves_the_target_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("app.sqlite");
    big_sqlite(&db, 48);
    let repo = dir.path().join("repo");
    let out = Command::new(env!("CARGO_BIN_EXE_dbbackup"))
        .args(["create", "--source", &url(&db), "--repo", repo.to_str().unwrap(), "--compression", "zstd:1"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let target_dir = dir.path().join("target");
    std::fs::create_dir(&target_dir).unwrap();
    let target = target_dir.join("live.sqlite");
    let c = rusqlite::Connection::open(&target).unwrap();
    c.execute_batch("create table live (x); insert into live values (42);").unwrap();
    drop(c);
    let before = std::fs::read(&target).unwrap();
    let mut child = spawn(&["restore", "--repo", repo.to_str().unwrap(), "--into", &url(&target), "-j", "1"]);
    // Mid-load: the restore's temp file beside the target exists.
    wait_for(&mut child, "the load started", || {
        files(&target_dir).iter().any(|p| p.to_string_lossy().contains("dbbackup-restore"))
    });
    signal(&child, "TERM");
    let out = finish(child);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(std::fs::read(&target).unwrap(), before, "the target changed");
    assert_eq!(files(&target_dir), vec![target.clone()], "temp files left beside the target");
    assert_eq!(out.status.code(), Some(143), "{err}");
}

#[test]
fn sigterm_during_guard_stops_the_command_and_rolls_back() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("app.sqlite");
    let c = rusqlite::Connection::open(&db).unwrap();
    c.execute_batch("create table users (id integer primary key, name text); insert into users values (1, 'a'), (2, 'b');")
        .unwrap();
    drop(c);
    let started = dir.path().join("started");
    let script = format!(
        "python3 -c \"import sqlite3; c = sqlite3.connect('{db}'); c.execute('delete from users'); c.commit()\" \
         && touch '{started}' && exec sleep 60",
        db = db.display(),
        started = started.display()
    );
    let t0 = Instant::now();
    let mut child = spawn(&[
        "guard",
        "--source",
        &url(&db),
        "--repo",
        dir.path().join("repo").to_str().unwrap(),
        "--",
        "sh",
        "-c",
        &script,
    ]);
    wait_for(&mut child, "the command changed the database", || started.exists());
    signal(&child, "TERM");
    let out = finish(child);
    let err = String::from_utf8_lossy(&out.stderr);
    let c = rusqlite::Connection::open(&db).unwrap();
    let n: i64 = c.query_row("select count(*) from users", [], |r| r.get(0)).unwrap();
    assert_eq!(n, 2, "not rolled back: {err}");
    assert!(t0.elapsed() < Duration::from_secs(50), "the command was not stopped: {err}");
    assert_eq!(out.status.code(), Some(143), "{err}");
}

/// SIGTERM during a PostgreSQL restore (which runs on a current-thread runtime: the signal's task
/// shares the thread with the load) cancels it: exit 143, the target as it was, no shadow left.
#[test]
fn sigterm_during_a_postgres_restore_leaves_the_target_untouched() {
    use dbbackup_tests::{pg_db, psql};
    let Some(base) = dbbackup_tests::service_env("DBBACKUP_TEST_PG_URL") else { return };
    let (src, dst) = (dbbackup_tests::unique("sig_pg_src"), dbbackup_tests::unique("sig_pg_dst"));
    psql(&base, &format!("CREATE DATABASE {src}"));
    psql(&base, &format!("CREATE DATABASE {dst}"));
    // ~70 MB of poorly compressible rows: the load takes long enough for the signal to land in it.
    psql(
        &pg_db(&base, &src),
        "CREATE TABLE t (id int PRIMARY KEY, v text NOT NULL);
         INSERT INTO t SELECT i, md5(i::text) || md5((i * 3)::text) || md5((i * 7)::text)
         FROM generate_series(1, 600000) i",
    );
    psql(&pg_db(&base, &dst), "CREATE TABLE live (x int); INSERT INTO live VALUES (42)");
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo").display().to_string();
    let out = Command::new(env!("CARGO_BIN_EXE_dbbackup"))
        .args(["create", "-q", "--source", &pg_db(&base, &src), "--repo", &repo])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let shadows = || {
        psql(
            &base,
            &format!("SELECT count(*) FROM pg_database WHERE starts_with(datname, '{dst}_dbbackup_')"),
        )
    };
    let mut child =
        spawn(&["restore", "--repo", &repo, "latest", "--into", &pg_db(&base, &dst), "--no-undo"]);
    wait_for(&mut child, "the shadow exists", || shadows() != "0");
    signal(&child, "TERM");
    let out = finish(child);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(143), "{err}");
    assert_eq!(psql(&pg_db(&base, &dst), "SELECT string_agg(x::text, ',') FROM live"), "42");
    assert_eq!(shadows(), "0", "a shadow was left");
    for db in [&src, &dst] {
        psql(&base, &format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"));
    }
}
