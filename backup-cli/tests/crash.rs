//! Crash safety through the real binary: a restore killed with SIGKILL at each destructive step
//! (test-only failpoints, `DBBACKUP_FAILPOINT`) leaves the target complete — the old database or
//! the new one — and the next run cleans up; two restores into one target never both run.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use dbbackup_tests::{pg_db, psql};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::Value;

fn dbbackup(args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_dbbackup"))
        .args(args)
        .env_remove("APP_ENV")
        .env_remove("DBBACKUP_REPO")
        .env_remove("DBBACKUP_FAILPOINT")
        .envs(env.iter().copied())
        .output()
        .expect("run dbbackup")
}

fn ok(out: &Output) -> Value {
    assert!(out.status.success(), "dbbackup failed: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_str(String::from_utf8_lossy(&out.stdout).trim()).unwrap()
}

fn killed(out: &Output, step: &str) {
    assert_eq!(
        out.status.signal(),
        Some(9),
        "failpoint {step} not reached (status {:?}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Starts a restore that pauses at `restore-loaded` (everything loaded, nothing swapped) and
/// returns once it says so.
fn paused_restore(args: &[&str]) -> std::process::Child {
    use std::io::BufRead;
    let mut child = Command::new(env!("CARGO_BIN_EXE_dbbackup"))
        .args(args)
        .env_remove("APP_ENV")
        .env_remove("DBBACKUP_REPO")
        .env("DBBACKUP_FAILPOINT", "restore-loaded:pause")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run dbbackup");
    let stderr = child.stderr.take().unwrap();
    let mut seen = String::new();
    for line in std::io::BufReader::new(stderr).lines() {
        let line = line.unwrap();
        if line.contains("failpoint restore-loaded paused") {
            return child;
        }
        seen.push_str(&line);
        seen.push('\n');
    }
    let status = child.wait().unwrap();
    panic!("the restore ended ({status:?}) before pausing: {seen}");
}

// ---------------------------------------------------------------- SQLite

/// Row count and sum of the `users` table, after `integrity_check` passed.
fn sqlite_state(path: &Path) -> (i64, f64) {
    let c = rusqlite::Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
    let check: String = c.query_row("pragma integrity_check", [], |r| r.get(0)).unwrap();
    assert_eq!(check, "ok", "{}", path.display());
    c.query_row("select count(*), total(balance) from users", [], |r| Ok((r.get(0)?, r.get(1)?))).unwrap()
}

fn write_users(path: &Path, rows: i64) {
    let c = rusqlite::Connection::open(path).unwrap();
    c.execute_batch(&format!(
        "pragma journal_mode = wal;
         create table if not exists users (id integer primary key, email text unique, balance numeric);
         delete from users;
         with recursive n(i) as (select 1 union all select i + 1 from n where i < {rows})
         insert into users select i, 'user' || i || '@example.com', i * 1.5 from n;"
    ))
    .unwrap();
}

/// Files in `dir` other than the database itself and its lock file.
fn leftovers(dir: &Path, db: &str) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| ![db.to_string(), format!("{db}-wal"), format!("{db}-shm")].contains(n))
        .collect();
    v.sort();
    v
}

struct SqliteCase {
    dir: tempfile::TempDir,
    repo: String,
}

/// A repository holding a backup of 1000 users; the live databases hold 1500.
fn sqlite_case() -> SqliteCase {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src.sqlite");
    write_users(&src, 1000);
    let repo = dir.path().join("repo").display().to_string();
    ok(&dbbackup(
        &["create", "--json", "--source", &format!("sqlite://{}", src.display()), "--repo", &repo],
        &[],
    ));
    std::fs::remove_file(&src).unwrap();
    SqliteCase { dir, repo }
}

impl SqliteCase {
    /// A fresh live database (1500 users, WAL mode, mode 0640, owned by uid/gid 33 when root).
    fn live(&self, name: &str) -> (PathBuf, String) {
        let sub = self.dir.path().join(name);
        std::fs::create_dir(&sub).unwrap();
        let p = sub.join("app.sqlite");
        write_users(&p, 1500);
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o640)).unwrap();
        let _ = std::os::unix::fs::chown(&p, Some(33), Some(33));
        let url = format!("sqlite://{}", p.display());
        (p, url)
    }

    fn restore(&self, url: &str, failpoint: &str) -> Output {
        dbbackup(
            &["restore", "--json", "--repo", &self.repo, "--into", url, "--force"],
            &[("DBBACKUP_FAILPOINT", failpoint)],
        )
    }
}

const OLD: (i64, f64) = (1500, 1500.0 * 1501.0 / 2.0 * 1.5);
const NEW: (i64, f64) = (1000, 1000.0 * 1001.0 / 2.0 * 1.5);

#[test]
fn sqlite_restore_killed_at_each_step_leaves_old_or_new_and_the_next_run_cleans_up() {
    let case = sqlite_case();
    // (failpoint, what the live name must hold right after the kill)
    let steps = [
        ("restore-loaded", OLD),
        ("sqlite-swap-journaled", OLD),
        ("sqlite-swap-linked", OLD),
        ("sqlite-swap-aside", OLD),
        ("sqlite-swap-renamed", NEW),
    ];
    for (i, (step, want)) in steps.iter().enumerate() {
        let (path, url) = case.live(step);
        let before = std::fs::metadata(&path).unwrap();
        killed(&case.restore(&url, step), step);
        assert_eq!(sqlite_state(&path), *want, "after a kill at {step}");
        let dir = path.parent().unwrap();
        assert!(!leftovers(dir, "app.sqlite").is_empty(), "a kill at {step} leaves something to clean up");
        // The next run of any command touching the target cleans up: a backup for half of the
        // steps, a restore for the others.
        if i % 2 == 0 {
            let other = case.dir.path().join(format!("repo-{step}")).display().to_string();
            ok(&dbbackup(&["create", "--json", "--source", &url, "--repo", &other], &[]));
            assert_eq!(sqlite_state(&path), *want, "{step}: a backup after the kill changes nothing");
            assert_eq!(leftovers(dir, "app.sqlite"), Vec::<String>::new(), "{step}: the backup cleaned up");
        }
        ok(&case.restore(&url, ""));
        assert_eq!(sqlite_state(&path), NEW, "{step}: the next restore succeeds");
        assert_eq!(leftovers(dir, "app.sqlite"), Vec::<String>::new(), "{step}: the next restore cleaned up");
        let after = std::fs::metadata(&path).unwrap();
        assert_eq!(after.mode() & 0o7777, 0o640, "{step}: the restored file keeps the mode");
        assert_eq!((after.uid(), after.gid()), (before.uid(), before.gid()), "{step}: and the owner");
    }
}

#[test]
fn sqlite_second_concurrent_restore_fails_clearly_and_the_first_wins() {
    let case = sqlite_case();
    let (path, url) = case.live("concurrent");
    let mut first = paused_restore(&["restore", "--json", "--repo", &case.repo, "--into", &url, "--force"]);
    let second = case.restore(&url, "");
    first.kill().unwrap();
    first.wait().unwrap();
    assert_eq!(second.status.code(), Some(1), "the second restore must fail");
    let err = String::from_utf8_lossy(&second.stderr);
    assert!(err.contains("another restore into"), "a clear message: {err}");
    assert_eq!(sqlite_state(&path), OLD, "the target is untouched");
}

/// Every file under `dir`, relative, sorted.
fn all_files(dir: &Path) -> Vec<String> {
    fn walk(base: &Path, d: &Path, out: &mut Vec<String>) {
        for e in std::fs::read_dir(d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(base, &p, out);
            } else {
                out.push(p.strip_prefix(base).unwrap().display().to_string());
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

/// A restore killed while it takes its undo copy (objects written, the engine's snapshot spooled,
/// no manifest yet) leaves the target as it was; the next restore removes that run's lease,
/// objects and spool from the undo area, keeps exactly its own copy, and that copy undoes.
#[test]
fn sqlite_restore_killed_taking_its_undo_copy_and_the_next_run_cleans_the_undo_area() {
    let case = sqlite_case();
    let (path, url) = case.live("undo-killed");
    let undo = case.dir.path().join("undo");
    let undo_dir = undo.display().to_string();
    let run = |args: &[&str], failpoint: &str| {
        dbbackup(args, &[("DBBACKUP_UNDO_DIR", undo_dir.as_str()), ("DBBACKUP_FAILPOINT", failpoint)])
    };
    let restore = ["restore", "--json", "--repo", &case.repo, "--into", &url, "--force"];
    killed(&run(&restore, "create-uploaded"), "create-uploaded");
    assert_eq!(sqlite_state(&path), OLD, "a kill while taking the undo copy changes nothing");
    let left = all_files(&undo);
    assert!(left.iter().any(|f| f.starts_with("locks/")), "the killed run's lease: {left:?}");
    assert!(left.iter().any(|f| f.starts_with("tmp/")), "the killed run's spooled snapshot: {left:?}");
    assert!(left.iter().any(|f| !f.starts_with("locks/") && !f.starts_with("tmp/")), "its objects: {left:?}");
    assert!(!left.iter().any(|f| f.ends_with("manifest.json")), "{left:?}");

    let r = ok(&run(&restore, ""));
    assert_eq!(sqlite_state(&path), NEW);
    let id = r["undo"]["id"].as_str().expect("an undo copy").to_string();
    let left = all_files(&undo);
    assert!(
        !left.is_empty() && left.iter().all(|f| f.starts_with(&format!("{id}/"))),
        "the undo area keeps a killed run's leftovers: {left:?}"
    );

    // Killed after its copy is complete but before the swap: that copy (of the unchanged target)
    // is not what --undo puts back; the last successful restore's is, and the killed one goes.
    killed(&run(&restore, "restore-loaded"), "restore-loaded");
    assert_eq!(sqlite_state(&path), NEW);
    let u = ok(&run(&["restore", "--json", "--undo", "--into", &url, "--force"], ""));
    assert_eq!(u["id"], id.as_str(), "--undo took the killed restore's copy");
    assert_eq!(sqlite_state(&path), OLD, "the kept copy puts the old database back");
    let redo = u["undo"]["id"].as_str().expect("the undo keeps a copy").to_string();
    let left = all_files(&undo);
    assert!(
        left.iter().all(|f| f.starts_with(&format!("{redo}/")) || f.starts_with("audit/")),
        "only the undo's own copy is left: {left:?}"
    );
}

/// Unmounts a test tmpfs when dropped.
struct Mounted(PathBuf);

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

/// A tmpfs of `size` at `dir` (needs root, as on CI; skipped with a message elsewhere).
fn small_tmpfs(dir: &Path, size: &str) -> Option<Mounted> {
    std::fs::create_dir_all(dir).unwrap();
    let out =
        Command::new("mount").args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"]).arg(dir).output();
    match out {
        Ok(o) if o.status.success() => Some(Mounted(dir.to_path_buf())),
        other => {
            let ci = std::env::var("CI").is_ok_and(|v| v == "true" || v == "1");
            assert!(!ci, "CI must be able to mount a small tmpfs (a real full disk): {other:?}");
            eprintln!("SKIPPED: cannot mount a tmpfs here: {other:?}");
            None
        }
    }
}

#[test]
fn sqlite_backup_into_a_full_spool_fails_and_leaves_the_spool_empty() {
    let dir = tempfile::tempdir().unwrap();
    let Some(spool) = small_tmpfs(&dir.path().join("spool"), "1m") else { return };
    let db = dir.path().join("big.sqlite");
    let c = rusqlite::Connection::open(&db).unwrap();
    c.execute_batch(
        "create table b (x blob);
         with recursive n(i) as (select 1 union all select i + 1 from n where i < 1000)
         insert into b select randomblob(4000) from n;",
    )
    .unwrap();
    drop(c);
    let repo = dir.path().join("repo").display().to_string();
    let out = dbbackup(
        &["create", "--json", "--source", &format!("sqlite://{}", db.display()), "--repo", &repo],
        &[("TMPDIR", spool.0.to_str().unwrap())],
    );
    assert!(!out.status.success(), "a 4 MB snapshot cannot fit a 1 MB spool");
    let left: Vec<String> = std::fs::read_dir(&spool.0)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(left, Vec::<String>::new(), "the spool is empty after the failed backup");
}

/// A backup killed after copying its snapshot leaves the copy in the temp dir; the next backup
/// using that temp dir removes it (and a copy's side files whose copy is gone), but not the copy
/// of a backup that is still running (it holds a lock on it) nor other files.
#[test]
fn sqlite_backup_killed_leaves_a_snapshot_copy_the_next_backup_removes() {
    let dir = tempfile::tempdir().unwrap();
    let spool = dir.path().join("spool");
    std::fs::create_dir(&spool).unwrap();
    let db = dir.path().join("src.sqlite");
    write_users(&db, 2000);
    let source = format!("sqlite://{}", db.display());
    let repo = dir.path().join("repo").display().to_string();
    let tmp = [("TMPDIR", spool.to_str().unwrap())];
    let names = |d: &Path| -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(d)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    };
    let out = dbbackup(
        &["create", "--json", "--source", &source, "--repo", &repo],
        &[tmp[0], ("DBBACKUP_FAILPOINT", "sqlite-snapshot-copied")],
    );
    killed(&out, "sqlite-snapshot-copied");
    let left = names(&spool);
    assert_eq!(left.len(), 1, "the killed backup's snapshot copy: {left:?}");
    assert!(left[0].starts_with("dbbackup-sqlite-") && left[0].ends_with(".snapshot"), "{left:?}");
    // Time passes (a copy younger than a minute may be a starting backup's), and other files sit
    // beside it: an orphan side file, the copy of a running backup (locked), an unrelated file.
    let age = |p: &Path| {
        let f = std::fs::File::options().write(true).open(p).unwrap();
        f.set_modified(std::time::SystemTime::now() - std::time::Duration::from_secs(3600)).unwrap();
    };
    age(&spool.join(&left[0]));
    std::fs::write(spool.join("dbbackup-sqlite-gone12.snapshot-shm"), b"x").unwrap();
    let running = spool.join("dbbackup-sqlite-live12.snapshot");
    std::fs::write(&running, b"x").unwrap();
    age(&running);
    let held = std::fs::File::open(&running).unwrap();
    held.try_lock().unwrap();
    std::fs::write(spool.join("mine.snapshot"), b"x").unwrap();
    age(&spool.join("mine.snapshot"));
    ok(&dbbackup(&["create", "--json", "--source", &source, "--repo", &repo], &tmp));
    assert_eq!(
        names(&spool),
        vec!["dbbackup-sqlite-live12.snapshot".to_string(), "mine.snapshot".to_string()]
    );
    drop(held);
}

// ---------------------------------------------------------------- PostgreSQL

/// Databases a restore into `target` derived from its name (shadows, previous databases).
fn pg_leftovers(base: &str, target: &str) -> Vec<String> {
    let list = psql(
        base,
        &format!(
            "SELECT datname FROM pg_database WHERE starts_with(datname, '{target}_dbbackup_') ORDER BY 1"
        ),
    );
    list.lines().map(str::to_string).collect()
}

fn pg_users(url: &str) -> String {
    psql(url, "SELECT count(*) || ' ' || sum(balance) FROM users")
}

/// A PostgreSQL restore killed (SIGKILL) after loading its shadow, and between the two renames of
/// its swap, leaves the target the old database, complete (the renames are one transaction the
/// server rolls back); the next restore removes the killed runs' shadows and swaps; and while one
/// restore holds the target's lock, a second one is refused and changes nothing.
#[test]
fn postgres_restore_killed_at_each_step_leaves_old_or_new_and_the_next_run_cleans_up() {
    let Some(base) = dbbackup_tests::service_env("DBBACKUP_TEST_PG_URL") else { return };
    let src = dbbackup_tests::unique("crash_pg_src");
    let dst = dbbackup_tests::unique("crash_pg_dst");
    for (db, rows) in [(&src, 300), (&dst, 40)] {
        psql(&base, &format!("CREATE DATABASE {db}"));
        psql(
            &pg_db(&base, db),
            &format!(
                "CREATE TABLE users (id int PRIMARY KEY, balance bigint NOT NULL);
                 INSERT INTO users SELECT i, i * 7 FROM generate_series(1, {rows}) i"
            ),
        );
    }
    let (src_url, dst_url) = (pg_db(&base, &src), pg_db(&base, &dst));
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo").display().to_string();
    ok(&dbbackup(&["create", "--json", "--source", &src_url, "--repo", &repo], &[]));
    let (old, new) = (pg_users(&dst_url), pg_users(&src_url));
    assert_ne!(old, new);
    let restore = ["restore", "--json", "--repo", &repo, "latest", "--into", &dst_url];
    for step in ["restore-loaded", "pg-swap-renamed-aside"] {
        let out = dbbackup(&restore, &[("DBBACKUP_FAILPOINT", step)]);
        killed(&out, step);
        assert_eq!(pg_users(&dst_url), old, "killed at {step}: the target must be the old database");
    }
    assert!(!pg_leftovers(&base, &dst).is_empty(), "the killed runs left their shadows");
    // Two at once: the second is refused while the first holds the lock, and changes nothing.
    let mut first = paused_restore(&restore);
    let out = dbbackup(&restore, &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("another restore into PostgreSQL database"), "{err}");
    first.kill().unwrap();
    first.wait().unwrap();
    assert_eq!(pg_users(&dst_url), old);
    // The next run cleans up what the killed ones left and swaps.
    let report = ok(&dbbackup(&restore, &[]));
    assert_eq!(pg_users(&dst_url), new);
    assert_eq!(pg_leftovers(&base, &dst), Vec::<String>::new(), "{report}");
    assert!(report.to_string().contains("the shadow of an interrupted restore"), "{report}");
    for db in [&src, &dst] {
        psql(&base, &format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"));
    }
}

/// `guard --staged-rollback` with a session connected to the database (so no server-side copy:
/// the safety backup is restored into a shadow before the command) killed (SIGKILL) while staging,
/// while its command runs, and between the two renames of the swap after its command failed:
/// the target is always complete — as it was before the swap (the renames are one transaction
/// the server rolls back) — and the next guard of it drops the shadow the killed one left. While
/// a staged guard lives its shadow is protected: a restore into the same database run by the
/// guarded command itself is refused (the staged restore holds the target's restore lock).
#[test]
fn postgres_guard_staged_killed_at_each_step_leaves_old_or_new_and_the_next_run_cleans_up() {
    let Some(base) = dbbackup_tests::service_env("DBBACKUP_TEST_PG_URL") else { return };
    let db = dbbackup_tests::unique("crash_pg_guard");
    psql(&base, &format!("CREATE DATABASE {db}"));
    let url = pg_db(&base, &db);
    psql(
        &url,
        "CREATE TABLE users (id int PRIMARY KEY, balance bigint NOT NULL);
         INSERT INTO users SELECT i, i * 7 FROM generate_series(1, 300) i",
    );
    // An application session held open: PostgreSQL then takes no server-side copy. Returned once
    // the server shows it (a guard started before psql had connected took the copy: no staging).
    let hold = || {
        let app = Command::new("psql")
            .args(["-X", "-q", "-d", &url, "-c", "SELECT pg_sleep(3600)"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let seen = format!(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = '{db}' AND query = 'SELECT pg_sleep(3600)' \
             AND pid <> pg_backend_pid()"
        );
        let t0 = std::time::Instant::now();
        while psql(&base, &seen) == "0" {
            assert!(
                t0.elapsed() < std::time::Duration::from_secs(60),
                "the application session never showed"
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        app
    };
    let mut app = hold();
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo").display().to_string();
    let old = pg_users(&url);
    let guard = |command: &str, failpoint: Option<&str>| {
        let args = [
            "guard",
            "--json",
            "--staged-rollback",
            "--source",
            &url,
            "--repo",
            &repo,
            "--",
            "sh",
            "-c",
            command,
        ];
        dbbackup(&args, &failpoint.map(|f| vec![("DBBACKUP_FAILPOINT", f)]).unwrap_or_default())
    };
    // Killed with the shadow loaded and checked (staging), then while the command runs.
    killed(&guard("true", Some("restore-loaded")), "restore-loaded");
    assert_eq!(pg_users(&url), old, "killed while staging: the target is as it was");
    assert!(!pg_leftovers(&base, &db).is_empty(), "the killed staging left its shadow");
    killed(&guard("kill -KILL $PPID", None), "the guard killed by its command");
    assert_eq!(pg_users(&url), old, "killed during the command: the target is as the command left it");
    // The command changes the database and fails; the guard is killed inside the swap.
    let change = format!("psql -X -q -d '{url}' -c 'DELETE FROM users WHERE id > 100'; exit 1");
    killed(&guard(&change, Some("pg-swap-renamed-aside")), "pg-swap-renamed-aside");
    let changed = pg_users(&url);
    assert_ne!(
        changed, old,
        "killed inside the swap: the target is as the command left it (the renames rolled back)"
    );
    assert!(
        pg_leftovers(&base, &db).iter().any(|n| n.contains("_dbbackup_shadow_")),
        "{:?}",
        pg_leftovers(&base, &db)
    );
    // The swap ended the application's session: a new one.
    let _ = app.kill();
    app.wait().unwrap();
    app = hold();
    // The next guard drops every leftover. Its command runs a restore into the same database,
    // which the staged restore's lock refuses; the command's failure is rolled back by the swap.
    let restore = format!(
        "'{}' restore --json --repo '{repo}' latest --into '{url}' >/dev/null; exit 3",
        env!("CARGO_BIN_EXE_dbbackup")
    );
    let out = guard(&restore, None);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(err.contains("another restore into PostgreSQL database"), "{err}");
    let report: Value = serde_json::from_str(String::from_utf8_lossy(&out.stdout).trim()).unwrap();
    assert_eq!(report["rollback"], "staged", "{report}");
    assert_eq!(pg_users(&url), changed, "the backup taken by this guard is what it rolled back to");
    assert_eq!(pg_leftovers(&base, &db), Vec::<String>::new(), "{report}");
    app.kill().unwrap();
    app.wait().unwrap();
    psql(&base, &format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"));
}

// ---------------------------------------------------------------- MySQL / MariaDB

use dbbackup_tests::mysql_fixture::{self, MysqlFixture};
use dbbackup_tests::source_suite::Fixture;

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(f)
}

/// Everything a restore must bring back: the whole catalog (tests/src/mysql_catalog.rs) and every
/// object's definition and row (the source suite's fingerprint).
fn my_state(fx: &MysqlFixture, db: &str) -> (Vec<String>, String) {
    block_on(async {
        let mut c = fx.conn(None).await;
        let catalog = dbbackup_tests::mysql_catalog::snapshot(&mut c, db).await;
        (catalog, fx.fingerprint(&fx.url_of(db)).await)
    })
}

/// Databases a restore into `target` derived from its name (shadows, previous databases).
fn my_leftovers(fx: &MysqlFixture, target: &str) -> Vec<String> {
    block_on(async {
        let mut c = fx.conn(None).await;
        let like = format!("{}\\_dbb%", target.replace('_', "\\_"));
        mysql_fixture::column(
            &mut c,
            &format!("SELECT SCHEMA_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME LIKE '{like}' ORDER BY 1"),
        )
        .await
    })
}

type MyState = (Vec<String>, String);

/// A source database and a target that differs from it (a dropped view and trigger, a new table
/// and column, other rows), a backup of each, and both states.
struct MyCase {
    fx: MysqlFixture,
    src_url: String,
    dst: String,
    dst_url: String,
    _dir: tempfile::TempDir,
    repo: String,
    old_repo: String,
    scratch: String,
    old: MyState,
    new: MyState,
}

fn my_case(fx: MysqlFixture, name: &str) -> MyCase {
    let src = dbbackup_tests::unique(&format!("{name}_src"));
    let dst = dbbackup_tests::unique(&format!("{name}_dst"));
    let (src_url, dst_url) = block_on(async {
        let s = fx.create_db(&src).await;
        let d = fx.create_db(&dst).await;
        fx.populate(&s).await;
        fx.populate(&d).await;
        fx.mutate(&d).await;
        (s, d)
    });
    let dir = tempfile::tempdir().unwrap();
    let path = |n: &str| dir.path().join(n).display().to_string();
    let (repo, old_repo, scratch) = (path("repo"), path("old"), path("scratch"));
    ok(&dbbackup(&["create", "--json", "--source", &src_url, "--repo", &repo], &[]));
    ok(&dbbackup(&["create", "--json", "--source", &dst_url, "--repo", &old_repo], &[]));
    let (old, new) = (my_state(&fx, &dst), my_state(&fx, &db_name(&src_url)));
    assert_ne!(old, new);
    MyCase { fx, src_url, dst, dst_url, _dir: dir, repo, old_repo, scratch, old, new }
}

fn db_name(url: &str) -> String {
    mysql_fixture::db_of(url)
}

impl MyCase {
    fn which(&self) -> &'static str {
        let s = my_state(&self.fx, &self.dst);
        if s == self.old {
            "old"
        } else if s == self.new {
            "new"
        } else {
            "neither"
        }
    }

    fn restore_args<'a>(&'a self, repo: &'a str, in_place: bool) -> Vec<&'a str> {
        let mut v = vec!["restore", "--json", "--repo", repo, "latest", "--into", &self.dst_url];
        if in_place {
            v.push("--in-place");
        }
        v
    }

    /// Puts the target back to the old database (a plain restore of its own backup).
    fn reset(&self) {
        if self.which() != "old" {
            ok(&dbbackup(&self.restore_args(&self.old_repo, false), &[]));
            assert_eq!(self.which(), "old", "reset");
        }
    }

    /// Kills a restore at each step and checks the state right after (when already complete)
    /// and after the next run touching the target, a backup of it.
    fn kill_at_each(&self, in_place: bool, steps: &[(&str, Option<&str>, &str)]) {
        for &(step, right_after, then) in steps {
            self.reset();
            killed(
                &dbbackup(&self.restore_args(&self.repo, in_place), &[("DBBACKUP_FAILPOINT", step)]),
                step,
            );
            if let Some(want) = right_after {
                assert_eq!(self.which(), want, "right after a kill at {step}");
            }
            ok(&dbbackup(&["create", "--json", "--source", &self.dst_url, "--repo", &self.scratch], &[]));
            assert_eq!(self.which(), then, "after a kill at {step} (in place: {in_place}) and the next run");
            assert_eq!(
                my_leftovers(&self.fx, &self.dst),
                Vec::<String>::new(),
                "{step}: the next run cleaned up"
            );
        }
    }
}

impl Drop for MyCase {
    fn drop(&mut self) {
        block_on(async {
            self.fx.drop_db(&self.src_url).await;
            self.fx.drop_db(&self.dst_url).await;
        });
    }
}

/// A MariaDB restore killed (SIGKILL) at each step — after the load, after its journal, after
/// dropping the live triggers, after the one `RENAME TABLE`, halfway through the objects, after
/// them, between dropping the shadow and the previous database — leaves a target that the next
/// run touching it (here a backup of it) turns into the old database or the new one, complete
/// (catalog, definitions and rows), with no leftover database; a second restore is refused while
/// one runs; and the next restore cleans up after a killed one and succeeds.
#[test]
fn mysql_restore_killed_at_each_step_leaves_old_or_new_and_the_next_run_cleans_up() {
    let Some(fx) = MysqlFixture::from_env() else { return };
    let case = my_case(fx, "crash_my");
    // (failpoint, the state right after the kill when it is already complete, the state the
    // next run leaves: the swap is undone before its RENAME and finished after it)
    case.kill_at_each(
        false,
        &[
            ("restore-loaded", Some("old"), "old"),
            ("mysql-swap-journaled", Some("old"), "old"),
            ("mysql-swap-triggers-dropped", None, "old"),
            ("mysql-swap-renamed", None, "new"),
            ("mysql-swap-objects-dropped", None, "new"),
            ("mysql-swap-objects-created", Some("new"), "new"),
            ("mysql-swap-shadow-dropped", Some("new"), "new"),
        ],
    );
    // Two at once: the second is refused while the first holds the lock, and changes nothing.
    case.reset();
    let restore = case.restore_args(&case.repo, false);
    let mut first = paused_restore(&restore);
    let out = dbbackup(&restore, &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("another restore into MySQL database"), "{err}");
    first.kill().unwrap();
    first.wait().unwrap();
    assert_eq!(case.which(), "old");
    // Killed after its RENAME (its start dropped the paused run's shadow).
    killed(&dbbackup(&restore, &[("DBBACKUP_FAILPOINT", "mysql-swap-renamed")]), "mysql-swap-renamed");
    assert!(!my_leftovers(&case.fx, &case.dst).is_empty());
    // The next restore finishes the killed swap, drops every leftover and restores.
    let report = ok(&dbbackup(&restore, &[]));
    assert_eq!(case.which(), "new", "{report}");
    assert_eq!(my_leftovers(&case.fx, &case.dst), Vec::<String>::new(), "{report}");
    assert!(report.to_string().contains("the shadow of an interrupted restore"), "{report}");
    assert!(report.to_string().contains("finished an interrupted restore"), "{report}");
}

/// A MariaDB restore killed while it drops the tables it replaced (after its shadow: its objects
/// were in place, the restore complete) leaves only that previous database. The next run drops it
/// and nothing else: the objects changed in the live database meanwhile (a view created, a
/// trigger dropped by the application) stay as they are, not put back to the restore's. The
/// journal's `step` row is deleted before the next run, so it reads what a version before that
/// row wrote there: the shadow already gone says the restore had completed.
#[test]
fn mysql_restore_killed_in_its_cleanup_leaves_later_changes_alone() {
    let Some(fx) = MysqlFixture::from_env() else { return };
    let case = my_case(fx, "crash_myc");
    let dst = db_name(&case.dst_url);
    let step = "mysql-swap-shadow-dropped";
    killed(&dbbackup(&case.restore_args(&case.repo, false), &[("DBBACKUP_FAILPOINT", step)]), step);
    assert_eq!(case.which(), "new", "killed in its cleanup: the restore is complete");
    let left = my_leftovers(&case.fx, &case.dst);
    assert_eq!(left.len(), 1, "the replaced tables are left: {left:?}");
    my_sql(&case.fx, &left[0], "DELETE FROM `dbbackup:journal` WHERE k = 'step'");
    my_sql(&case.fx, &dst, "CREATE VIEW v_after AS SELECT 1 AS one; DROP TRIGGER trg_gen2");
    let changed = my_state(&case.fx, &dst);
    assert_ne!(changed, case.new);
    let report =
        ok(&dbbackup(&["create", "--json", "--source", &case.dst_url, "--repo", &case.scratch], &[]));
    assert_eq!(my_state(&case.fx, &dst), changed, "the next run only dropped the leftover: {report}");
    assert_eq!(my_leftovers(&case.fx, &case.dst), Vec::<String>::new(), "{report}");
}

/// Once a MariaDB restore — or the next run's recovery of a killed one — has brought the target
/// to the new or the old database, complete, it records that in its journal before it drops its
/// databases; killed there, the next run only drops them. So an object the application changed
/// meanwhile (a view created, a trigger dropped) stays as it is, not set back to the restore's
/// or the old database's. Each case: the restore killed at a step (the first failpoints), the
/// next run (a backup) killed right after its recovery (when a second failpoint is given), the
/// change, then a backup.
#[test]
fn mysql_restore_killed_once_the_target_is_complete_leaves_later_changes_alone() {
    let Some(fx) = MysqlFixture::from_env() else { return };
    let case = my_case(fx, "crash_myl");
    let dst = db_name(&case.dst_url);
    let restore = case.restore_args(&case.repo, false);
    let backup = ["create", "--json", "--source", &case.dst_url, "--repo", &case.scratch];
    for (restore_at, recovery_at, want) in [
        // The restore's objects created, before its databases are dropped.
        ("mysql-swap-objects-created", None, "new"),
        // Killed creating them; the next run finished them and was killed before dropping.
        ("mysql-swap-objects-dropped", Some("mysql-recovered"), "new"),
        // Killed before its rename; the next run put the triggers back and was killed.
        ("mysql-swap-triggers-dropped", Some("mysql-recovered"), "old"),
        // Its objects failed and it was killed swapping back; the next run put the old objects
        // back and was killed.
        ("mysql-swap-forward:error,mysql-swap-back-renamed", Some("mysql-recovered"), "old"),
    ] {
        case.reset();
        killed(&dbbackup(&restore, &[("DBBACKUP_FAILPOINT", restore_at)]), restore_at);
        if let Some(at) = recovery_at {
            killed(&dbbackup(&backup, &[("DBBACKUP_FAILPOINT", at)]), at);
        }
        assert_eq!(case.which(), want, "{restore_at}, {recovery_at:?}: complete");
        assert!(!my_leftovers(&case.fx, &case.dst).is_empty(), "{restore_at}: its databases are left");
        my_sql(&case.fx, &dst, "CREATE VIEW v_after AS SELECT 1 AS one; DROP TRIGGER trg_gen");
        let changed = my_state(&case.fx, &dst);
        let report = ok(&dbbackup(&backup, &[]));
        assert_eq!(
            my_state(&case.fx, &dst),
            changed,
            "{restore_at}, {recovery_at:?}: the next run only dropped the leftovers: {report}"
        );
        assert_eq!(my_leftovers(&case.fx, &case.dst), Vec::<String>::new(), "{report}");
    }
}

/// A MariaDB restore whose objects step fails swaps back (the old database, complete, exit 1);
/// killed right after the rename back — the old tables live again, none of the old views,
/// routines, triggers, events — the next run puts every old object back. A restore whose rename
/// fails and whose put-back of the live triggers fails too keeps its journal, and the next run
/// puts them back.
#[test]
fn mysql_restore_failing_in_its_swap_leaves_the_old_database_even_killed_undoing_it() {
    let Some(fx) = MysqlFixture::from_env() else { return };
    let case = my_case(fx, "crash_myb");
    let restore = case.restore_args(&case.repo, false);
    let backup = ["create", "--json", "--source", &case.dst_url, "--repo", &case.scratch];
    let failed = |out: &Output, what: &str| {
        assert_eq!(out.status.code(), Some(1), "{what}: {}", String::from_utf8_lossy(&out.stderr));
    };
    failed(&dbbackup(&restore, &[("DBBACKUP_FAILPOINT", "mysql-swap-forward:error")]), "objects fail");
    assert_eq!(case.which(), "old", "swapped back");
    assert_eq!(my_leftovers(&case.fx, &case.dst), Vec::<String>::new());

    let at = "mysql-swap-forward:error,mysql-swap-back-renamed";
    killed(&dbbackup(&restore, &[("DBBACKUP_FAILPOINT", at)]), at);
    assert_eq!(case.which(), "neither", "killed swapping back: the old tables without their objects");
    let report = ok(&dbbackup(&backup, &[]));
    assert_eq!(case.which(), "old", "the next run put the old objects back: {report}");
    assert_eq!(my_leftovers(&case.fx, &case.dst), Vec::<String>::new(), "{report}");

    let at = "mysql-swap-rename:error,mysql-swap-put-back:error";
    failed(&dbbackup(&restore, &[("DBBACKUP_FAILPOINT", at)]), at);
    assert_eq!(case.which(), "neither", "the live triggers were dropped and not put back");
    assert!(!my_leftovers(&case.fx, &case.dst).is_empty(), "its journal is kept for the next run");
    let report = ok(&dbbackup(&backup, &[]));
    assert_eq!(case.which(), "old", "the next run put the triggers back: {report}");
    assert_eq!(my_leftovers(&case.fx, &case.dst), Vec::<String>::new(), "{report}");
}

/// An in-place MariaDB restore killed once its held-back events are created (dropping the aside
/// tables) is finished by the next run without creating the events again: an event the
/// application created meanwhile stays. A failure while dropping the aside tables (after the
/// first one is gone) is a note, not a put-back over a half-dropped old database: the target is
/// the backup, and the next run drops what is left.
#[test]
fn mysql_in_place_restore_ended_in_its_cleanup_is_the_backup_and_later_events_stay() {
    let Some(fx) = MysqlFixture::from_env() else { return };
    let case = my_case(fx, "crash_myie");
    let dst = db_name(&case.dst_url);
    let restore = case.restore_args(&case.repo, true);
    let backup = ["create", "--json", "--source", &case.dst_url, "--repo", &case.scratch];
    let at = "mysql-in-place-events-created";
    killed(&dbbackup(&restore, &[("DBBACKUP_FAILPOINT", at)]), at);
    my_sql(
        &case.fx,
        &dst,
        "CREATE EVENT ev_after ON SCHEDULE EVERY 1 DAY STARTS '2030-01-01 00:00:00' DISABLE DO SELECT 1",
    );
    let report = ok(&dbbackup(&backup, &[]));
    assert!(report.to_string().contains("finished an interrupted in-place restore"), "{report}");
    let events = block_on(async {
        let mut c = case.fx.conn(None).await;
        let sql = format!(
            "SELECT EVENT_NAME FROM information_schema.EVENTS WHERE EVENT_SCHEMA = '{dst}' ORDER BY 1"
        );
        mysql_fixture::column(&mut c, &sql).await
    });
    assert!(events.iter().any(|e| e == "ev_after"), "the event created after the kill is gone: {events:?}");
    my_sql(&case.fx, &dst, "DROP EVENT ev_after");
    assert_eq!(case.which(), "new", "the event created after the kill was left alone: {report}");

    case.reset();
    let out = dbbackup(&restore, &[("DBBACKUP_FAILPOINT", "mysql-in-place-drop-aside:error")]);
    let report = ok(&out);
    assert!(report.to_string().contains("dropping the tables it replaced"), "{report}");
    let report = ok(&dbbackup(&backup, &[]));
    assert_eq!(case.which(), "new", "{report}");
}

/// An in-place commit that fails before its held-back events are in place puts the old database
/// back; killed while it does (the old tables renamed back, their keys and objects not yet), the
/// next run puts the rest back from the journal: the old database, never the commit finished
/// over the old tables (the journal still said committing: the restore's events created, the
/// old views, triggers and routines missing).
#[test]
fn mysql_in_place_commit_failing_then_killed_putting_back_leaves_the_old_database() {
    let Some(fx) = MysqlFixture::from_env() else { return };
    let case = my_case(fx, "crash_myiu");
    let restore = case.restore_args(&case.repo, true);
    let out = dbbackup(&restore, &[("DBBACKUP_FAILPOINT", "mysql-in-place-events:error")]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("the previous data was put back"), "{err}");
    assert_eq!(case.which(), "old", "{err}");
    let at = "mysql-in-place-undo-renamed";
    let fail_then_kill = format!("mysql-in-place-events:error,{at}");
    killed(&dbbackup(&restore, &[("DBBACKUP_FAILPOINT", &fail_then_kill)]), at);
    let report =
        ok(&dbbackup(&["create", "--json", "--source", &case.dst_url, "--repo", &case.scratch], &[]));
    assert_eq!(case.which(), "old", "{report}");
    assert!(report.to_string().contains("undid an interrupted in-place restore"), "{report}");
}

/// Runs `sql` (one or more statements) in database `db` of the test server with the `mysql` client.
fn my_sql(fx: &MysqlFixture, db: &str, sql: &str) {
    let out =
        Command::new("sh").args(["-c", &format!("{} -e \"$0\"", my_cli(fx, db)), sql]).output().unwrap();
    assert!(out.status.success(), "{sql}: {}", String::from_utf8_lossy(&out.stderr));
}

/// `mysql` command-line client arguments for database `db` of the test server.
fn my_cli(fx: &MysqlFixture, db: &str) -> String {
    // mysql://[user[:password]@]host[:port]/db[?query]
    let rest = fx.admin.split_once("://").unwrap().1;
    let authority = rest.split(['/', '?']).next().unwrap();
    let (user, hostport) = authority.rsplit_once('@').unwrap_or(("root", authority));
    let (user, password) = user.split_once(':').unwrap_or((user, ""));
    let (host, port) = hostport.rsplit_once(':').unwrap_or((hostport, "3306"));
    let password = if password.is_empty() { String::new() } else { format!(" -p'{password}'") };
    format!("mysql --protocol=tcp -h {host} -P {port} -u {user}{password} {db}")
}

/// `guard --staged-rollback` on MariaDB killed (SIGKILL) while staging (its shadow loaded and
/// checked), while its command runs, and inside the swap after its command failed (journaled,
/// before the `RENAME TABLE`; after it): the target is the database as the command left it or
/// the safety backup, complete, once the next run touching it (a backup of it) has undone or
/// finished the swap, and no database is left beside it. While a staged guard lives its shadow
/// is protected: a restore into the same database run by the guarded command is refused (the
/// staged restore holds the target's restore lock), and the next guard cleans up and rolls back
/// by the swap.
#[test]
fn mysql_guard_staged_killed_at_each_step_leaves_old_or_new_and_the_next_run_cleans_up() {
    let Some(fx) = MysqlFixture::from_env() else { return };
    let case = my_case(fx, "crash_myg");
    let dst = db_name(&case.dst_url);
    let cli = my_cli(&case.fx, &dst);
    let guard = |command: &str, failpoint: Option<&str>| {
        let args = [
            "guard",
            "--json",
            "--staged-rollback",
            "--source",
            &case.dst_url,
            "--repo",
            &case.scratch,
            "--",
            "sh",
            "-c",
            command,
        ];
        dbbackup(&args, &failpoint.map(|f| vec![("DBBACKUP_FAILPOINT", f)]).unwrap_or_default())
    };
    let next_run =
        || ok(&dbbackup(&["create", "--json", "--source", &case.dst_url, "--repo", &case.scratch], &[]));
    let has_cmd_table = || my_state(&case.fx, &dst).0.iter().any(|l| l.contains("guard_cmd"));
    // Killed while staging, then while the command runs: the target is as it was.
    killed(&guard("true", Some("restore-loaded")), "restore-loaded");
    assert_eq!(case.which(), "old", "killed while staging");
    assert!(!my_leftovers(&case.fx, &case.dst).is_empty(), "the killed staging left its shadow");
    killed(&guard("kill -KILL $PPID", None), "the guard killed by its command");
    assert_eq!(case.which(), "old", "killed during the command");
    next_run();
    assert_eq!(case.which(), "old");
    assert_eq!(my_leftovers(&case.fx, &case.dst), Vec::<String>::new(), "the next run cleaned up");
    // The command changes the database and fails; killed journaled, before the RENAME: the next
    // run undoes the swap, the database stays as the command left it.
    let change = format!("{cli} -e 'CREATE TABLE guard_cmd (x INT)'; exit 1");
    killed(&guard(&change, Some("mysql-swap-journaled")), "mysql-swap-journaled");
    assert!(has_cmd_table(), "killed before the RENAME: as the command left it");
    next_run();
    assert!(has_cmd_table(), "the next run undid the swap");
    assert_eq!(my_leftovers(&case.fx, &case.dst), Vec::<String>::new(), "the next run cleaned up");
    ok(&dbbackup(&case.restore_args(&case.old_repo, false), &[]));
    assert_eq!(case.which(), "old");
    // Killed after the RENAME: the next run finishes the swap, the database is the backup.
    killed(&guard(&change, Some("mysql-swap-renamed")), "mysql-swap-renamed");
    next_run();
    assert_eq!(case.which(), "old", "the next run finished the swap to the safety backup");
    assert_eq!(my_leftovers(&case.fx, &case.dst), Vec::<String>::new(), "the next run cleaned up");
    // A guard killed while its command runs, then the next guard: it drops the shadow the killed
    // one left; its own staged shadow refuses a restore into the database run by its command,
    // and the command's failure is rolled back by the swap.
    killed(&guard("kill -KILL $PPID", None), "the guard killed by its command");
    assert!(!my_leftovers(&case.fx, &case.dst).is_empty());
    let restore = format!(
        "{cli} -e 'CREATE TABLE guard_cmd (x INT)'; '{}' restore --json --repo '{}' latest --into '{}' >/dev/null; exit 3",
        env!("CARGO_BIN_EXE_dbbackup"),
        case.repo,
        case.dst_url
    );
    let out = guard(&restore, None);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(err.contains("another restore into MySQL database"), "{err}");
    let report: Value = serde_json::from_str(String::from_utf8_lossy(&out.stdout).trim()).unwrap();
    assert_eq!(report["rollback"], "staged", "{report}");
    assert_eq!(case.which(), "old", "{report}");
    assert_eq!(my_leftovers(&case.fx, &case.dst), Vec::<String>::new(), "{report}");
}

/// `--in-place` (non-atomic DDL): killed after removing the live objects and keys, after the
/// load, and while committing, the next run puts the old database back from the journal kept
/// in the live database, or finishes the commit; a second in-place restore is refused meanwhile
/// (its undo copy, a backup, cannot read the half-restored database: busy, after the lock
/// timeout).
#[test]
fn mysql_in_place_restore_killed_is_undone_or_finished_by_the_next_run() {
    let Some(fx) = MysqlFixture::from_env() else { return };
    let case = my_case(fx, "crash_myip");
    case.kill_at_each(
        true,
        &[
            ("mysql-in-place-dropped", None, "old"),
            ("restore-loaded", None, "old"),
            ("mysql-in-place-committing", None, "new"),
        ],
    );
    case.reset();
    let restore = case.restore_args(&case.repo, true);
    let mut first = paused_restore(&restore);
    // The second one's undo copy (a backup) waits for the first's swap lock, held from the
    // first drop to the end, and is refused after the lock timeout, naming the restore.
    let mut second = restore.clone();
    second.extend(["--lock-timeout", "2s"]);
    let out = dbbackup(&second, &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    first.kill().unwrap();
    first.wait().unwrap();
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("a restore into it") && err.contains("dbbackup-swap:"), "{err}");
    // The paused run was killed after its load: the next in-place restore undoes it, then restores.
    let report = ok(&dbbackup(&restore, &[]));
    assert_eq!(case.which(), "new", "{report}");
    assert!(report.to_string().contains("undid an interrupted in-place restore"), "{report}");
}

/// A run of `dbbackup` stopped (SIGSTOP) at a failpoint, holding its server sessions and locks;
/// [`Stopped::go_on`] lets it go on. Killed when dropped.
struct Stopped {
    child: std::process::Child,
    stderr: Option<std::thread::JoinHandle<String>>,
}

/// Starts `dbbackup args` with `DBBACKUP_FAILPOINT=<point>:stop` and returns once it stopped there.
fn stopped_at(args: &[&str], point: &str) -> Stopped {
    use std::io::BufRead;
    let mut child = Command::new(env!("CARGO_BIN_EXE_dbbackup"))
        .args(args)
        .env_remove("APP_ENV")
        .env_remove("DBBACKUP_REPO")
        .env("DBBACKUP_FAILPOINT", format!("{point}:stop"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run dbbackup");
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let marker = format!("failpoint {point} stopped");
    // Drains stderr to the end (a closed pipe would fail the run's later messages).
    let reader = std::thread::spawn(move || {
        let mut seen = String::new();
        for line in std::io::BufReader::new(stderr).lines() {
            let line = line.unwrap_or_default();
            if line.contains(&marker) {
                let _ = tx.send(());
            }
            seen.push_str(&line);
            seen.push('\n');
        }
        seen
    });
    let mut stopped = Stopped { child, stderr: Some(reader) };
    if rx.recv().is_err() {
        let status = stopped.child.wait().unwrap();
        let seen = stopped.stderr.take().unwrap().join().unwrap();
        panic!("dbbackup {args:?} ended ({status:?}) before stopping at {point}: {seen}");
    }
    stopped
}

impl Stopped {
    fn go_on(&self) {
        let ok = Command::new("kill").args(["-CONT", &self.child.id().to_string()]).status().unwrap();
        assert!(ok.success());
    }

    /// Its exit status, stdout and stderr, once it ended (let go on first).
    fn finish(mut self) -> Output {
        let status = self.child.wait().unwrap();
        let mut stdout = Vec::new();
        if let Some(mut o) = self.child.stdout.take() {
            std::io::Read::read_to_end(&mut o, &mut stdout).unwrap();
        }
        let stderr = self.stderr.take().unwrap().join().unwrap().into_bytes();
        Output { status, stdout, stderr }
    }
}

impl Drop for Stopped {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `dbbackup create --json` of `source` into `repo` with a 5 minute lock timeout, its
/// output piped, no failpoint: a backup that may have to wait for a restore's lock.
fn spawn_backup(source: &str, repo: &str) -> std::process::Child {
    Command::new(env!("CARGO_BIN_EXE_dbbackup"))
        .args(["create", "--json", "--source", source, "--repo", repo, "--lock-timeout", "5m"])
        .env_remove("APP_ENV")
        .env_remove("DBBACKUP_REPO")
        .env_remove("DBBACKUP_FAILPOINT")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Waits (at most 90 s) until another server session waits for the user lock `lock`
/// (`GET_LOCK('<lock>', ..)`, e.g. `dbbackup-swap:<db>`, a database's swap lock, or `dbbackup:<db>`,
/// its restore lock), or `child` ends first: whether one waited. This session's own query is left
/// out (its text names the lock too).
fn waits_for_user_lock(fx: &MysqlFixture, lock: &str, child: &mut std::process::Child) -> bool {
    let sql = format!(
        "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE ID <> CONNECTION_ID() \
         AND STATE = 'User lock' AND INFO LIKE 'SELECT GET_LOCK(''{lock}''%'"
    );
    block_on(async {
        let mut c = fx.conn(None).await;
        for _ in 0..900 {
            if child.try_wait().unwrap().is_some() {
                return false;
            }
            if mysql_fixture::column(&mut c, &sql).await.first().map(String::as_str) != Some("0") {
                return true;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        panic!("nothing waited for lock {lock}, and the run did not end, within 90 s");
    })
}

/// A MariaDB backup started while a restore into the same database is changing it — a shadow
/// restore stopped right after its `RENAME TABLE` (the new tables live, their views, routines,
/// triggers and events not yet), an in-place restore stopped after its load (the old tables
/// aside, the new ones loaded, no objects) — waits for the restore's swap lock, and once the
/// restore has finished stores exactly the restored database: restored into the target, the
/// whole catalog and every definition and row are the new database's. (Without the lock it read
/// the half-changed database and stored one that never existed.)
#[test]
fn mysql_backup_during_a_restore_swap_waits_and_stores_the_whole_database() {
    let Some(fx) = MysqlFixture::from_env() else { return };
    let case = my_case(fx, "crash_mysw");
    for (in_place, point) in [(false, "mysql-swap-renamed"), (true, "restore-loaded")] {
        case.reset();
        let mut restore_args = case.restore_args(&case.repo, in_place);
        restore_args.extend(["--lock-timeout", "5m"]);
        let restore = stopped_at(&restore_args, point);
        let repo = case._dir.path().join(format!("during-{point}")).display().to_string();
        let mut backup = spawn_backup(&case.dst_url, &repo);
        let waited = waits_for_user_lock(&case.fx, &format!("dbbackup-swap:{}", case.dst), &mut backup);
        restore.go_on();
        ok(&restore.finish());
        let backed_up = backup.wait_with_output().unwrap();
        ok(&backed_up);
        assert_eq!(case.which(), "new", "{point}: the restore finished");
        // What the backup stored, restored into the target (the old database first).
        case.reset();
        ok(&dbbackup(&["restore", "--json", "--repo", &repo, "latest", "--into", &case.dst_url], &[]));
        assert_eq!(case.which(), "new", "the backup taken during the restore's {point} (waited: {waited})");
        assert!(waited, "{point}: the backup waited for the restore's swap lock");
        assert_eq!(my_leftovers(&case.fx, &case.dst), Vec::<String>::new());
    }
}

/// A MariaDB restore whose swap meets a backup reading the database (stopped holding the swap
/// lock: its tables pinned, its schema read) waits for it, and once the backup is gone swaps in
/// the whole new database; with a lock timeout shorter than the backup, it fails clearly naming
/// the backup (exit 1), the target as it was and no database left beside it.
#[test]
fn mysql_restore_swap_meeting_a_backup_waits_for_it_or_fails_clearly() {
    let Some(fx) = MysqlFixture::from_env() else { return };
    let case = my_case(fx, "crash_mysb");
    let backup_args = ["create", "--json", "--source", &case.dst_url, "--repo", &case.scratch];
    let reading = "mysql-snapshot-schema-read";
    // Waits for the backup, then swaps.
    case.reset();
    let mut restore_args = case.restore_args(&case.repo, false);
    restore_args.extend(["--lock-timeout", "5m"]);
    let mut restore = stopped_at(&restore_args, "restore-loaded");
    let backup = stopped_at(&backup_args, reading);
    restore.go_on();
    let waited = waits_for_user_lock(&case.fx, &format!("dbbackup-swap:{}", case.dst), &mut restore.child);
    drop(backup);
    let out = restore.finish();
    assert!(waited, "the restore's swap waited for the backup: {}", String::from_utf8_lossy(&out.stderr));
    ok(&out);
    assert_eq!(case.which(), "new");
    assert_eq!(my_leftovers(&case.fx, &case.dst), Vec::<String>::new());
    // A lock timeout shorter than the backup: fails clearly, nothing changed.
    case.reset();
    let mut restore_args = case.restore_args(&case.repo, false);
    restore_args.extend(["--lock-timeout", "3s"]);
    let restore = stopped_at(&restore_args, "restore-loaded");
    let backup = stopped_at(&backup_args, reading);
    restore.go_on();
    let out = restore.finish();
    drop(backup);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("a backup of it") && err.contains("dbbackup-swap:"), "{err}");
    assert_eq!(case.which(), "old", "{err}");
    assert_eq!(my_leftovers(&case.fx, &case.dst), Vec::<String>::new(), "{err}");
}

/// Holds the user lock `name` on a server session of its own (a thread with its own runtime)
/// until the returned sender is dropped or sent to; returns once the lock is held.
fn hold_user_lock(
    fx: &MysqlFixture,
    name: &str,
) -> (std::sync::mpsc::Sender<()>, std::thread::JoinHandle<()>) {
    let (admin, lock) = (fx.admin.clone(), name.to_string());
    let (held_tx, held_rx) = std::sync::mpsc::channel();
    let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
    let thread = std::thread::spawn(move || {
        block_on(async {
            let fx = MysqlFixture { admin };
            let mut c = fx.conn(None).await;
            let got = mysql_fixture::column(&mut c, &format!("SELECT GET_LOCK('{lock}', 0)")).await;
            held_tx.send(got.first().cloned()).unwrap();
            let _ = release_rx.recv();
            mysql_fixture::column(&mut c, &format!("SELECT RELEASE_LOCK('{lock}')")).await;
        })
    });
    assert_eq!(held_rx.recv().unwrap().as_deref(), Some("1"), "the test holds lock {name}");
    (release_tx, thread)
}

/// The server frees a killed restore's two named locks one after the other: a backup can get
/// the swap lock while the restore lock still looks held, and must not then read the
/// half-swapped database the killed run left. Reproduced deterministically: a restore killed
/// right after its `RENAME TABLE` (new tables, old objects), the test holding the target's
/// restore lock as the dying connection would. A backup finding a journal left mid-swap outside
/// the swap lock (a live restore never leaves one) waits for the restore lock: with a short lock
/// timeout it fails naming it and stores nothing; once the lock is free it finishes the killed
/// swap and stores the whole new database.
#[test]
fn mysql_backup_finding_a_half_swapped_journal_waits_for_the_dying_restore_and_recovers() {
    let Some(fx) = MysqlFixture::from_env() else { return };
    let case = my_case(fx, "crash_myhs");
    case.reset();
    killed(
        &dbbackup(&case.restore_args(&case.repo, false), &[("DBBACKUP_FAILPOINT", "mysql-swap-renamed")]),
        "mysql-swap-renamed",
    );
    assert_eq!(case.which(), "neither", "killed after its RENAME: new tables, old objects");
    let dst = db_name(&case.dst_url);
    let half = my_state(&case.fx, &dst);
    let restore_lock = format!("dbbackup:{dst}");
    let (release, holder) = hold_user_lock(&case.fx, &restore_lock);
    // A short lock timeout: refused, naming the lock, nothing stored, nothing changed.
    let short = case._dir.path().join("short").display().to_string();
    let out = dbbackup(
        &["create", "--json", "--source", &case.dst_url, "--repo", &short, "--lock-timeout", "2s"],
        &[],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "a backup of a half-swapped database must not succeed: {err}");
    assert!(err.contains(&restore_lock), "{err}");
    assert!(my_state(&case.fx, &dst) == half, "the refused backup changed nothing: {err}");
    // Waits for the lock, then recovers and stores the whole new database.
    let repo = case._dir.path().join("waited").display().to_string();
    let mut backup = spawn_backup(&case.dst_url, &repo);
    let waited = waits_for_user_lock(&case.fx, &restore_lock, &mut backup);
    release.send(()).unwrap();
    holder.join().unwrap();
    let report = ok(&backup.wait_with_output().unwrap());
    assert!(waited, "the backup waited for the restore lock: {report}");
    assert!(report.to_string().contains("finished an interrupted restore"), "{report}");
    assert_eq!(case.which(), "new", "{report}");
    assert_eq!(my_leftovers(&case.fx, &case.dst), Vec::<String>::new(), "{report}");
    case.reset();
    ok(&dbbackup(&["restore", "--json", "--repo", &repo, "latest", "--into", &case.dst_url], &[]));
    assert_eq!(case.which(), "new", "what the backup stored");
}

/// The other side of the test above: a backup beside a running restore that holds its restore
/// lock but not the swap lock finds nothing mid-swap and does not wait for it — the restore
/// loading its shadow (the shadow's journal holds no plan yet), right after its swap (the
/// journal in the previous database marked `objects-created`, the shadow still there), and
/// dropping its databases (the shadow gone). With a 2 s lock timeout the backup succeeds and
/// stores the old database, resp. the new one; the restore then finishes.
#[test]
fn mysql_backup_beside_a_restore_outside_its_swap_does_not_wait_for_it() {
    let Some(fx) = MysqlFixture::from_env() else { return };
    let case = my_case(fx, "crash_myns");
    for (point, stored) in
        [("restore-loaded", "old"), ("mysql-swap-unlocked", "new"), ("mysql-swap-shadow-dropped", "new")]
    {
        case.reset();
        let restore = stopped_at(&case.restore_args(&case.repo, false), point);
        let repo = case._dir.path().join(format!("beside-{point}")).display().to_string();
        let args = ["create", "--json", "--source", &case.dst_url, "--repo", &repo, "--lock-timeout", "2s"];
        let started = std::time::Instant::now();
        let backup = dbbackup(&args, &[]);
        let took = started.elapsed();
        restore.go_on();
        ok(&restore.finish());
        let report = ok(&backup);
        assert!(!report.to_string().contains("interrupted restore"), "{point}: nothing recovered: {report}");
        assert_eq!(case.which(), "new", "{point}: the restore finished");
        case.reset();
        ok(&dbbackup(&["restore", "--json", "--repo", &repo, "latest", "--into", &case.dst_url], &[]));
        assert_eq!(case.which(), stored, "{point}: what the backup stored (it took {took:?})");
        assert_eq!(my_leftovers(&case.fx, &case.dst), Vec::<String>::new(), "{point}");
    }
}
