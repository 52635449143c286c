//! Crash safety through the real binary: a restore killed with SIGKILL at each destructive step
//! (test-only failpoints, `DBBACKUP_FAILPOINT`) leaves the target complete — the old database or
//! the new one — and the next run cleans up; two restores into one target never both run.

#![allow(clippy::unwrap_used, clippy::expect_used)]

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

// ---------------------------------------------------------------- PostgreSQL

fn psql(url: &str, sql: &str) -> String {
    let out = Command::new("psql")
        .args(["-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-d", url, "-c", sql])
        .output()
        .expect("run psql");
    assert!(out.status.success(), "psql {sql}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// The URL of database `name` on the server of `base`.
fn pg_db(base: &str, name: &str) -> String {
    let (url, query) = base.split_once('?').map_or((base, None), |(u, q)| (u, Some(q)));
    let (server, _) = url.rsplit_once('/').unwrap();
    match query {
        Some(q) => format!("{server}/{name}?{q}"),
        None => format!("{server}/{name}"),
    }
}

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
