//! The command-line contract of CLI.md, through the real binary: JSON keys, exit codes, damaged
//! backups, production guard, not-found listings.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use dbbackup_tests::{pg_db, psql};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

fn dbbackup(args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_dbbackup"))
        .args(args)
        .env_remove("APP_ENV")
        .env_remove("DBBACKUP_REPO")
        .envs(env.iter().copied())
        .output()
        .expect("run dbbackup")
}

fn json(out: &Output) -> Value {
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(text.lines().count(), 1, "exactly one JSON line expected, got: {text}");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

struct Fixture {
    dir: tempfile::TempDir,
}

impl Fixture {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let c = rusqlite::Connection::open(dir.path().join("app.sqlite")).unwrap();
        c.execute_batch(
            "create table users (id integer primary key, email text unique, balance numeric);
             create index users_balance on users(balance);
             with recursive n(i) as (select 1 union all select i + 1 from n where i < 20000)
             insert into users select i, 'user' || i || '@example.com', i * 1.5 from n;",
        )
        .unwrap();
        Fixture { dir }
    }
    fn p(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
    fn url(&self, name: &str) -> String {
        format!("sqlite://{}", self.p(name).display())
    }
    fn repo(&self) -> String {
        self.p("repo").display().to_string()
    }
    fn create(&self) -> String {
        let out = dbbackup(
            &[
                "create",
                "--json",
                "--source",
                &self.url("app.sqlite"),
                "--repo",
                &self.repo(),
                "--tag",
                "nightly",
            ],
            &[],
        );
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        json(&out)["id"].as_str().unwrap().to_string()
    }
    /// The stored object file of the backup's first data chunk.
    fn data_object(&self, id: &str) -> PathBuf {
        self.p("repo").join(id).join("data/db/000000.db.zst")
    }
}

#[test]
fn json_keys_follow_the_contract() {
    let f = Fixture::new();
    let out = dbbackup(
        &["create", "--json", "--source", &f.url("app.sqlite"), "--repo", &f.repo(), "--tag", "nightly"],
        &[],
    );
    assert!(out.status.success());
    let c = json(&out);
    for k in
        ["id", "engine", "database", "tables", "rows", "raw_bytes", "stored_bytes", "duration_ms", "repos"]
    {
        assert!(c.get(k).is_some(), "create --json lacks {k}: {c}");
    }
    assert_eq!(c["rows"], 20000);
    assert_eq!(c["engine"], "sqlite");
    let id = c["id"].as_str().unwrap();

    let l = json(&dbbackup(&["list", "--json", "--repo", &f.repo()], &[]));
    let b = &l["backups"][0];
    for k in ["id", "created_at", "engine", "database", "stored_bytes", "tags"] {
        assert!(b.get(k).is_some(), "list --json lacks {k}: {l}");
    }
    assert_eq!(b["tags"][0], "nightly");

    let v = json(&dbbackup(&["verify", "--json", "--repo", &f.repo()], &[]));
    for k in ["id", "level", "ok", "findings"] {
        assert!(v.get(k).is_some(), "verify --json lacks {k}: {v}");
    }
    assert_eq!(v["ok"], true);
    assert_eq!(v["level"], "full");

    let r = json(&dbbackup(
        &["restore", "--json", "--repo", &f.repo(), id, "--into", &f.url("copy.sqlite")],
        &[],
    ));
    for k in ["id", "into", "tables", "rows", "duration_ms"] {
        assert!(r.get(k).is_some(), "restore --json lacks {k}: {r}");
    }
    assert_eq!(r["rows"], 20000);
    let c = rusqlite::Connection::open(f.p("copy.sqlite")).unwrap();
    let sum: f64 = c.query_row("select sum(balance) from users", [], |r| r.get(0)).unwrap();
    assert_eq!(sum, 1.5 * 20000.0 * 20001.0 / 2.0);

    // The verification was recorded and shows in list.
    let l = json(&dbbackup(&["list", "--json", "--repo", &f.repo()], &[]));
    assert_eq!(l["backups"][0]["last_verification"]["level"], "full");
    assert_eq!(l["backups"][0]["last_verification"]["ok"], true);
}

#[test]
fn human_create_prints_the_id_on_stdout() {
    let f = Fixture::new();
    let out = dbbackup(&["create", "--source", &f.url("app.sqlite"), "--repo", &f.repo()], &[]);
    assert!(out.status.success());
    let id = String::from_utf8(out.stdout).unwrap();
    assert!(id.trim().parse::<backup_core::BackupId>().is_ok(), "{id:?}");
}

fn flip_byte(path: &Path, at: usize) {
    let mut b = std::fs::read(path).unwrap();
    b[at] ^= 0x40;
    std::fs::write(path, b).unwrap();
}

#[test]
fn flipped_byte_is_found_named_and_refused() {
    let f = Fixture::new();
    let id = f.create();
    let obj = f.data_object(&id);
    let len = std::fs::metadata(&obj).unwrap().len() as usize;
    flip_byte(&obj, len / 2);
    let out = dbbackup(&["verify", "--json", "--repo", &f.repo(), &id], &[]);
    assert_eq!(out.status.code(), Some(3));
    let v = json(&out);
    assert_eq!(v["ok"], false);
    assert_eq!(v["findings"][0]["object"], "data/db/000000.db.zst");
    // Restore refuses and leaves the target byte for byte as it was.
    std::fs::copy(f.p("app.sqlite"), f.p("target.sqlite")).unwrap();
    let c = rusqlite::Connection::open(f.p("target.sqlite")).unwrap();
    c.execute("update users set balance = 0 where id = 1", []).unwrap();
    drop(c);
    let before = std::fs::read(f.p("target.sqlite")).unwrap();
    let out = dbbackup(&["restore", "--repo", &f.repo(), &id, "--into", &f.url("target.sqlite")], &[]);
    assert_eq!(out.status.code(), Some(3), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("data/db/000000.db.zst"));
    assert_eq!(std::fs::read(f.p("target.sqlite")).unwrap(), before);
    let leftovers: Vec<_> = std::fs::read_dir(f.dir.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("dbbackup"))
        .collect();
    assert!(leftovers.is_empty(), "temp files left: {leftovers:?}");
}

#[test]
fn truncated_and_missing_objects_are_integrity_failures() {
    let f = Fixture::new();
    let id = f.create();
    let obj = f.data_object(&id);
    let b = std::fs::read(&obj).unwrap();
    std::fs::write(&obj, &b[..b.len() / 3]).unwrap();
    let out = dbbackup(&["verify", "--json", "--level", "quick", "--repo", &f.repo(), &id], &[]);
    assert_eq!(out.status.code(), Some(3));
    assert!(json(&out)["findings"][0]["problem"].as_str().unwrap().contains("size"));
    std::fs::remove_file(&obj).unwrap();
    let out = dbbackup(&["verify", "--json", "--repo", &f.repo(), &id], &[]);
    assert_eq!(out.status.code(), Some(3));
    assert_eq!(json(&out)["findings"][0]["problem"], "missing");
    let out = dbbackup(&["restore", "--repo", &f.repo(), &id, "--into", &f.url("new.sqlite")], &[]);
    assert_eq!(out.status.code(), Some(3));
    assert!(!f.p("new.sqlite").exists());
}

#[test]
fn unknown_manifest_version_is_a_clear_integrity_error() {
    let f = Fixture::new();
    let id = f.create();
    let mpath = f.p("repo").join(&id).join("manifest.json");
    let mut m: Value = serde_json::from_slice(&std::fs::read(&mpath).unwrap()).unwrap();
    m["format_version"] = 9.into();
    std::fs::write(&mpath, serde_json::to_vec(&m).unwrap()).unwrap();
    let out = dbbackup(&["verify", "--repo", &f.repo(), &id], &[]);
    assert_eq!(out.status.code(), Some(3));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("format version 9"), "{err}");
    // list still works and reports it as unreadable rather than hiding it.
    let l = json(&dbbackup(&["list", "--json", "--repo", &f.repo()], &[]));
    assert_eq!(l["unreadable"][0]["id"], id.as_str());
}

#[test]
fn unknown_backup_lists_the_available_ones() {
    let f = Fixture::new();
    let id = f.create();
    let out = dbbackup(
        &["restore", "--repo", &f.repo(), "20200101T000000Z-dead", "--into", &f.url("x.sqlite")],
        &[],
    );
    assert_eq!(out.status.code(), Some(5));
    assert!(String::from_utf8_lossy(&out.stderr).contains(&id));
    let out = dbbackup(&["verify", "--json", "--repo", &f.repo(), "nope"], &[]);
    assert_eq!(out.status.code(), Some(5));
    let v = json(&out);
    assert_eq!(v["error"]["kind"], "not_found");
    assert_eq!(v["error"]["available"][0], id.as_str());
}

/// Every file under `dir` with its size, sorted.
fn listing(dir: &Path) -> Vec<(PathBuf, u64)> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(listing(&p));
        } else {
            out.push((p.clone(), std::fs::metadata(&p).unwrap().len()));
        }
    }
    out.sort();
    out
}

#[test]
fn production_restore_needs_confirmation() {
    let f = Fixture::new();
    f.create();
    // The live database: a real one, with other rows than the backup's.
    let c = rusqlite::Connection::open(f.p("prod.sqlite")).unwrap();
    c.execute_batch(
        "create table users (id integer primary key, email text); insert into users values (1, 'live');",
    )
    .unwrap();
    drop(c);
    let before = (std::fs::read(f.p("prod.sqlite")).unwrap(), listing(f.dir.path()));
    let untouched = |why: &str| {
        let now = (std::fs::read(f.p("prod.sqlite")).unwrap(), listing(f.dir.path()));
        assert!(now.0 == before.0, "{why}: the database changed");
        assert_eq!(now.1, before.1, "{why}: files were added or removed");
    };
    // No terminal and no --force: refused with a usage error, nothing changed.
    let out = dbbackup(
        &["restore", "--repo", &f.repo(), "--into", &f.url("prod.sqlite")],
        &[("APP_ENV", "production")],
    );
    assert_eq!(out.status.code(), Some(2), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--force"));
    untouched("APP_ENV=production without --force");
    let out =
        dbbackup(&["restore", "--production", "--repo", &f.repo(), "--into", &f.url("prod.sqlite")], &[]);
    assert_eq!(out.status.code(), Some(2));
    untouched("--production without --force");
    // --force goes ahead, keeping what it replaced as the undo copy.
    let undo_dir = f.dir.path().with_extension("undo");
    let out = dbbackup(
        &["restore", "--json", "--force", "--repo", &f.repo(), "--into", &f.url("prod.sqlite")],
        &[("APP_ENV", "production"), ("DBBACKUP_UNDO_DIR", &undo_dir.display().to_string())],
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(json(&out)["undo"]["id"].is_string(), "no undo copy of the production database");
    let _ = std::fs::remove_dir_all(&undo_dir);
    let c = rusqlite::Connection::open(f.p("prod.sqlite")).unwrap();
    let n: i64 = c.query_row("select count(*) from users", [], |r| r.get(0)).unwrap();
    assert_eq!(n, 20000);
}

#[test]
fn usage_and_not_found_exit_codes() {
    let f = Fixture::new();
    let out = dbbackup(
        &["create", "--source", &f.url("app.sqlite"), "--repo", &f.repo(), "--compression", "lz4"],
        &[],
    );
    assert_eq!(out.status.code(), Some(2));
    let out = dbbackup(&["create", "--source", &f.url("missing.sqlite"), "--repo", &f.repo()], &[]);
    assert_eq!(out.status.code(), Some(5));
    let out = dbbackup(&["create", "--source", "oracle://x/y", "--repo", &f.repo()], &[]);
    assert_eq!(out.status.code(), Some(2));
    let out = dbbackup(&["frobnicate"], &[]);
    assert_eq!(out.status.code(), Some(2));
    let out = dbbackup(&["verify", "--repo", &f.repo()], &[]);
    assert_eq!(out.status.code(), Some(5), "empty repository: latest does not exist");
    // A failed create leaves no manifest behind.
    assert!(
        json(&dbbackup(&["list", "--json", "--repo", &f.repo()], &[]))["backups"]
            .as_array()
            .unwrap()
            .is_empty()
    );
}

/// The hint depends on what is missing: only a backup gets "list the repository"; a restore
/// target's missing directory gets the database URL's, a missing undo copy none (its message
/// says why there is none). The whole stderr, line for line.
#[test]
fn hints_fit_what_is_missing() {
    let f = Fixture::new();
    f.create();
    let into = f.p("no-such-dir").join("x.sqlite");
    let out = dbbackup(
        &["restore", "--repo", &f.repo(), "latest", "--into", &format!("sqlite://{}", into.display())],
        &[],
    );
    assert_eq!(out.status.code(), Some(5));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        format!(
            "dbbackup: error: directory {} for the restored database does not exist\n\
             hint: check the database name and host (or the file's directory) in the database URL\n",
            f.p("no-such-dir").display()
        )
    );
    let undo = f.p("undo");
    let out = dbbackup(
        &[
            "restore",
            "--undo",
            "--into",
            &f.url("never-restored.sqlite"),
            "--undo-dir",
            &undo.display().to_string(),
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(5));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "one line, no hint: {err}");
    assert!(err.starts_with("dbbackup: error: undo copy of ") && err.ends_with("not found\n"), "{err}");
    // A backup that is not there still gets it.
    std::fs::create_dir(f.p("empty")).unwrap();
    let out = dbbackup(&["verify", "--repo", &f.p("empty").display().to_string(), "latest"], &[]);
    assert_eq!(out.status.code(), Some(5));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        format!(
            "dbbackup: error: any backup in {} not found\n\
             hint: `dbbackup list --repo ...` shows what the repository holds\n",
            f.p("empty").display()
        )
    );
}

/// Errors read like a person wrote them: each cause once, a hint only where it fits.
#[test]
fn errors_say_each_cause_once_with_a_fitting_hint() {
    let f = Fixture::new();
    // A missing source database is not a missing backup: no "list the repository" hint.
    let out = dbbackup(&["create", "--source", &f.url("missing.sqlite"), "--repo", &f.repo()], &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(5), "{err}");
    assert!(err.contains("does not exist") && !err.contains("dbbackup list"), "{err}");
    // A missing backup gets it.
    let out = dbbackup(&["restore", "--repo", &f.repo(), "latest", "--into", &f.url("x.sqlite")], &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(5), "{err}");
    assert!(err.contains("hint: `dbbackup list --repo"), "{err}");
    // A refused connection: the OS error once, not once per wrapping layer. The port is held by
    // a connected socket for as long as it is used, never listening: a connection to it is
    // refused, and no other program can bind it meanwhile (a port from a listener closed at once,
    // as before, could be taken and then answer).
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let held = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let port = held.local_addr().unwrap().port();
    for url in [format!("mysql://root@127.0.0.1:{port}/x"), format!("postgres://postgres@127.0.0.1:{port}/x")]
    {
        let out = dbbackup(&["create", "--source", &url, "--repo", &f.repo()], &[]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert_eq!(err.matches("Connection refused").count(), 1, "{err}");
        let line = err.lines().next().unwrap_or_default();
        let segs: Vec<&str> = line.split(": ").collect();
        assert!(segs.windows(2).all(|w| w[0] != w[1]), "a segment repeated: {line}");
    }
    drop((held, listener));
    // A PostgreSQL database that does not exist: exit 5 like the other engines, said once.
    if let Some(base) = pg_url() {
        let url = pg_db(&base, "dbbackup_no_such_database");
        let out = dbbackup(&["create", "--source", &url, "--repo", &f.repo()], &[]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(5), "{err}");
        assert_eq!(err.matches("does not exist").count(), 1, "{err}");
    }
}

#[test]
fn environment_and_config_file_supply_flags() {
    let f = Fixture::new();
    let cfg = f.p("dbbackup.toml");
    std::fs::write(
        &cfg,
        format!("source = \"{}\"\nrepo = \"{}\"\ncompression = \"gzip:1\"\n", f.url("app.sqlite"), f.repo()),
    )
    .unwrap();
    let out = dbbackup(&["create", "--json", "--config", cfg.to_str().unwrap()], &[]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let id = json(&out)["id"].as_str().unwrap().to_string();
    assert!(f.p("repo").join(&id).join("data/db/000000.db.gz").exists());
    // Env wins over the file; flags win over env.
    let other = f.p("repo2").display().to_string();
    let out =
        dbbackup(&["create", "--json", "--config", cfg.to_str().unwrap()], &[("DBBACKUP_REPO", &other)]);
    assert!(out.status.success());
    assert!(f.p("repo2").exists());
    // Flags win over the environment (and the file): both set, the flag is used.
    let out = dbbackup(
        &[
            "create",
            "--json",
            "--config",
            cfg.to_str().unwrap(),
            "--compression",
            "none",
            "--repo",
            &f.repo(),
        ],
        &[("DBBACKUP_COMPRESSION", "gzip:1"), ("DBBACKUP_REPO", &other)],
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let id = json(&out)["id"].as_str().unwrap().to_string();
    assert!(f.p("repo").join(&id).join("data/db/000000.db").exists());
    assert!(!f.p("repo2").join(&id).exists());
    // A typo in the config file is an error, not silently ignored.
    std::fs::write(&cfg, "sorce = \"x\"\n").unwrap();
    let out = dbbackup(&["list", "--config", cfg.to_str().unwrap(), "--repo", &f.repo()], &[]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn help_answers_the_questions() {
    let out = dbbackup(&["--help"], &[]);
    let text = String::from_utf8_lossy(&out.stdout);
    for needle in ["Exit codes", "DBBACKUP_PASSWORD", "create", "restore", "verify", "list"] {
        assert!(text.contains(needle), "--help lacks {needle}:\n{text}");
    }
    let out = dbbackup(&["restore", "--help"], &[]);
    let text = String::from_utf8_lossy(&out.stdout);
    for needle in ["--into", "--force", "--in-place", "--tables", "DBBACKUP_REPO"] {
        assert!(text.contains(needle), "restore --help lacks {needle}");
    }
}

fn users_fingerprint(path: &Path) -> String {
    let c = rusqlite::Connection::open(path).unwrap();
    let schema: String =
        c.query_row("select group_concat(sql, ';') from sqlite_schema", [], |r| r.get(0)).unwrap();
    let rows: String = c
        .query_row("select group_concat(id || ':' || email || ':' || balance, ',') from users", [], |r| {
            r.get(0)
        })
        .unwrap();
    format!("{schema}\n{rows}")
}

const MIGRATE_AND_FAIL: &str = "import sqlite3, sys; c = sqlite3.connect(sys.argv[1]); \
    c.execute('alter table users add column nickname text'); c.execute('delete from users where id > 100'); \
    c.execute('create table migrations (id integer)'); c.commit(); print('migrating...'); sys.exit(3)";

#[test]
fn guard_restores_when_the_command_fails_and_exits_with_its_status() {
    let f = Fixture::new();
    let db = f.p("app.sqlite");
    let before = users_fingerprint(&db);
    let out = dbbackup(
        &[
            "guard",
            "--json",
            "--source",
            &f.url("app.sqlite"),
            "--repo",
            &f.repo(),
            "--",
            "python3",
            "-c",
            MIGRATE_AND_FAIL,
            db.to_str().unwrap(),
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(3), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("migrating...\n"), "command output passes through: {text}");
    let report: Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
    assert_eq!(report["rolled_back"], true);
    assert!(report["recovery_ms"].as_u64().is_some());
    assert_eq!(users_fingerprint(&db), before, "database differs from its state before the guard");
    // The rollback is audited beside the backups.
    let audit: Vec<_> = std::fs::read_dir(f.p("repo").join("audit")).unwrap().collect();
    assert_eq!(audit.len(), 1);
    // A command killed by a signal is a failure too.
    let out = dbbackup(
        &[
            "guard",
            "--source",
            &f.url("app.sqlite"),
            "--repo",
            &f.repo(),
            "--",
            "sh",
            "-c",
            &format!(
                "python3 -c \"{}\" {} ; kill -9 $$",
                MIGRATE_AND_FAIL.replace('"', "\\\""),
                db.display()
            ),
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(137), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(users_fingerprint(&db), before);
}

#[test]
fn guard_keeps_a_successful_command_and_checks_the_rto_budget() {
    let f = Fixture::new();
    let db = f.p("app.sqlite");
    let src = f.url("app.sqlite");
    let repo = f.repo();
    // No drill recorded yet: a budget cannot be checked, so guard refuses (exit 4) and runs nothing.
    let out = dbbackup(
        &["guard", "--max-rto", "2m", "--source", &src, "--repo", &repo, "--", "sh", "-c", "touch ran"],
        &[],
    );
    assert_eq!(out.status.code(), Some(4), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(!Path::new("ran").exists());
    f.create();
    let out = dbbackup(&["verify", "--level", "drill", "--repo", &repo], &[]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = dbbackup(&["guard", "--max-rto", "0s", "--source", &src, "--repo", &repo, "--", "true"], &[]);
    assert_eq!(out.status.code(), Some(4));
    assert!(String::from_utf8_lossy(&out.stderr).contains("budget"));
    let out = dbbackup(
        &[
            "guard",
            "--max-rto",
            "10m",
            "--source",
            &src,
            "--repo",
            &repo,
            "--",
            "python3",
            "-c",
            "import sqlite3,sys; c=sqlite3.connect(sys.argv[1]); c.execute('delete from users where id > 5'); c.commit()",
            db.to_str().unwrap(),
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let c = rusqlite::Connection::open(&db).unwrap();
    let n: i64 = c.query_row("select count(*) from users", [], |r| r.get(0)).unwrap();
    assert_eq!(n, 5, "a successful command's changes are kept");
    let l = json(&dbbackup(&["list", "--json", "--repo", &repo, "--tag", "guard"], &[]));
    assert_eq!(l["backups"].as_array().unwrap().len(), 1);
}

/// `DBBACKUP_TEST_PG_URL`, or `None` after saying why; under `CI=true` a missing server fails.
fn pg_url() -> Option<String> {
    dbbackup_tests::service_env("DBBACKUP_TEST_PG_URL")
}

/// Runs its SQL statements on the server of `base` when dropped, so the databases and roles a
/// test made go away even when an assertion fails. Errors are ignored.
struct PgCleanup {
    base: String,
    sql: Vec<String>,
}

impl Drop for PgCleanup {
    fn drop(&mut self) {
        for sql in &self.sql {
            let _ = Command::new("psql").args(["-X", "-q", "-d", &self.base, "-c", sql]).output();
        }
    }
}

/// `--keep-owners` reaches the PostgreSQL engine on both sides: a table and a large object owned
/// by another role keep that owner only when the backup was made and restored with the flag.
#[test]
fn keep_owners_flag_keeps_postgres_owners() {
    let Some(base) = pg_url() else { return };
    let tag = dbbackup_tests::unique("t");
    let role = format!("dbb_owner_{tag}");
    let me = psql(&base, "SELECT current_user");
    psql(&base, &format!("CREATE ROLE {role} NOLOGIN"));
    let mut sql: Vec<String> = ["src", "dst0", "dst1", "dst2"]
        .iter()
        .map(|db| format!("DROP DATABASE IF EXISTS owners_{db}_{tag} WITH (FORCE)"))
        .collect();
    sql.push(format!("DROP ROLE IF EXISTS {role}"));
    let _cleanup = PgCleanup { base: base.clone(), sql };
    let src = pg_db(&base, &format!("owners_src_{tag}"));
    psql(&base, &format!("CREATE DATABASE owners_src_{tag}"));
    psql(
        &src,
        &format!(
            "CREATE TABLE t (x int); INSERT INTO t VALUES (1); ALTER TABLE t OWNER TO {role}; \
             SELECT lo_from_bytea(60001, 'x'); ALTER LARGE OBJECT 60001 OWNER TO {role}"
        ),
    );
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo").display().to_string();
    let create = |extra: &[&str]| {
        let mut args = vec!["create", "--json", "--source", &src, "--repo", &repo];
        args.extend_from_slice(extra);
        let out = dbbackup(&args, &[]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        json(&out)["id"].as_str().unwrap().to_string()
    };
    let with = create(&["--keep-owners"]);
    let without = create(&[]);
    let owners = "SELECT (SELECT tableowner FROM pg_tables WHERE tablename = 't') || ' ' || \
                  (SELECT pg_get_userbyid(lomowner) FROM pg_largeobject_metadata WHERE oid = 60001)";
    for (i, (id, flag, owner)) in
        [(&with, true, &role), (&with, false, &me), (&without, true, &me)].into_iter().enumerate()
    {
        let name = format!("owners_dst{i}_{tag}");
        let into = pg_db(&base, &name);
        let mut args = vec!["restore", "--json", "--repo", &repo, id, "--into", &into];
        if flag {
            args.push("--keep-owners");
        }
        let out = dbbackup(&args, &[]);
        assert!(out.status.success(), "restore {i}: {}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(psql(&into, owners), format!("{owner} {owner}"), "case {i} (restore flag {flag})");
    }
}

/// `guard --keep-owners` takes the safety backup with owners and gives them back on rollback: a
/// failed command that dropped a table owned by another role leaves it restored with that owner
/// (without the flag the rollback's no-owner default would hand it to the connecting role).
#[test]
fn guard_keep_owners_rolls_back_with_the_owners() {
    let Some(base) = pg_url() else { return };
    let tag = dbbackup_tests::unique("t");
    let role = format!("dbb_gowner_{tag}");
    let name = format!("guard_owners_{tag}");
    psql(&base, &format!("CREATE ROLE {role} NOLOGIN"));
    let _cleanup = PgCleanup {
        base: base.clone(),
        sql: vec![
            format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
            format!("DROP ROLE IF EXISTS {role}"),
        ],
    };
    psql(&base, &format!("CREATE DATABASE {name}"));
    let src = pg_db(&base, &name);
    psql(
        &src,
        &format!("CREATE TABLE t (x int); INSERT INTO t VALUES (1), (2); ALTER TABLE t OWNER TO {role}"),
    );
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo").display().to_string();
    let out = dbbackup(
        &[
            "guard",
            "--json",
            "--keep-owners",
            "--source",
            &src,
            "--repo",
            &repo,
            "--",
            "sh",
            "-c",
            "psql -X -q -v ON_ERROR_STOP=1 -d \"$1\" -c 'DROP TABLE t' && exit 3",
            "migrate",
            &src,
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(3), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(json(&out)["rolled_back"], true);
    assert_eq!(
        psql(
            &src,
            "SELECT tableowner || ' ' || (SELECT count(*) FROM t) FROM pg_tables WHERE tablename = 't'"
        ),
        format!("{role} 2")
    );
}

/// The keys the README's `--json` table lists for `command`, each with its parents (`backups`,
/// `last_verification`, ...): read from the README itself, so the contract and the test cannot
/// drift apart.
fn readme_json_keys(command: &str) -> Vec<(Vec<String>, String)> {
    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md")).unwrap();
    let cell = if command.contains(' ') { format!("| {command} | ") } else { format!("| `{command}` | ") };
    let row = readme
        .lines()
        .find_map(|l| l.strip_prefix(&cell))
        .unwrap_or_else(|| panic!("no README row for {command}"));
    let mut out = Vec::new();
    let mut stack: Vec<String> = Vec::new();
    let mut last = String::new();
    let mut chars = row.chars();
    while let Some(c) = chars.next() {
        match c {
            '`' => {
                let token: String = chars.by_ref().take_while(|&c| c != '`').collect();
                last = token.split(':').next().unwrap().trim().to_string();
                out.push((stack.clone(), last.clone()));
            }
            '[' | '{' => stack.push(last.clone()),
            ']' | '}' => {
                stack.pop();
            }
            '(' | '|' if stack.is_empty() => break,
            _ => {}
        }
    }
    assert!(!out.is_empty(), "no keys in the README row for {command}");
    out
}

/// Every key of the README's row for `command` is in `v` (nested keys checked in the first
/// element of a non-empty array).
fn assert_readme_keys(command: &str, v: &Value) {
    'keys: for (path, key) in readme_json_keys(command) {
        let mut at = v;
        for p in &path {
            at = &at[p.as_str()];
            if let Some(a) = at.as_array() {
                match a.first() {
                    Some(first) => at = first,
                    None => continue 'keys,
                }
            }
        }
        assert!(
            at.get(&key).is_some(),
            "{command} --json lacks {}{key}: {v}",
            path.iter().map(|p| format!("{p}.")).collect::<String>()
        );
    }
}

#[test]
fn json_output_has_every_key_the_readme_lists() {
    let f = Fixture::new();
    let out = dbbackup(&["create", "--json", "--source", &f.url("app.sqlite"), "--repo", &f.repo()], &[]);
    assert!(out.status.success());
    let c = json(&out);
    assert_readme_keys("create", &c);
    let id = c["id"].as_str().unwrap().to_string();
    let v = json(&dbbackup(&["verify", "--json", "--repo", &f.repo()], &[]));
    assert_readme_keys("verify", &v);
    // A drill, so the recorded verification has its recovery time.
    let v = json(&dbbackup(&["verify", "--json", "--level", "drill", "--repo", &f.repo()], &[]));
    assert_eq!(v["ok"], true, "{v}");
    let l = json(&dbbackup(&["list", "--json", "--repo", &f.repo()], &[]));
    assert!(!l["backups"][0]["last_verification"].is_null());
    assert_readme_keys("list", &l);
    // Over an existing database, so the report carries the undo copy it kept.
    let undo_dir = f.p("undo").display().to_string();
    let r = json(&dbbackup(
        &["restore", "--json", "--repo", &f.repo(), &id, "--into", &f.url("app.sqlite")],
        &[("DBBACKUP_UNDO_DIR", &undo_dir)],
    ));
    assert!(r["undo"]["id"].is_string(), "{r}");
    assert_readme_keys("restore", &r);
    let s = json(&dbbackup(&["status", "--json", "--repo", &f.repo()], &[("DBBACKUP_UNDO_DIR", &undo_dir)]));
    assert_readme_keys("status", &s);
    let p = json(&dbbackup(
        &["prune", "--json", "--dry-run", "--keep-last", "1", "--repo", &f.repo()],
        &[("DBBACKUP_UNDO_DIR", &undo_dir)],
    ));
    assert_readme_keys("prune", &p);
    // Into a new file (guard's source below): nothing replaced, so `undo` is null.
    let r = json(&dbbackup(
        &["restore", "--json", "--repo", &f.repo(), &id, "--into", &f.url("copy.sqlite")],
        &[("DBBACKUP_UNDO_DIR", &undo_dir)],
    ));
    assert!(r["undo"].is_null(), "{r}");
    let out = dbbackup(
        &[
            "guard",
            "--json",
            "--source",
            &f.url("copy.sqlite"),
            "--repo",
            &f.repo(),
            "--",
            "sh",
            "-c",
            "exit 3",
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(3));
    let g = json(&out);
    assert_eq!(g["rolled_back"], true);
    assert_readme_keys("guard", &g);
    // A damaged backup: findings carry their keys too.
    let obj = f.data_object(&id);
    let len = std::fs::metadata(&obj).unwrap().len() as usize;
    flip_byte(&obj, len / 2);
    let out = dbbackup(&["verify", "--json", "--repo", &f.repo(), &id], &[]);
    let v = json(&out);
    assert!(!v["findings"].as_array().unwrap().is_empty());
    assert_readme_keys("verify", &v);
    let s = json(&dbbackup(&["status", "--json", "--repo", &f.repo()], &[]));
    assert_readme_keys("status", &s);
    let p = json(&dbbackup(&["prune", "--json", "--repo", &f.repo(), "--keep-last", "1", "--dry-run"], &[]));
    assert_readme_keys("prune", &p);
    let out = dbbackup(&["verify", "--json", "--repo", &f.repo(), "nope"], &[]);
    assert_readme_keys("any failure", &json(&out));
}

/// Undo through the binary: `restore` keeps what it replaced (`undo` in `--json`, listed by
/// `status`), `restore --undo` puts it back exactly, `--no-undo` keeps none (then `--undo` exits 5
/// saying so), `--keep-undo` sets the time and `prune` removes an expired copy.
#[test]
fn restore_undo_puts_back_what_a_restore_replaced() {
    use dbbackup_tests::sqlite_fixture::fingerprint_conn;
    let f = Fixture::new();
    let id = f.create();
    let undo_dir = f.p("undo").display().to_string();
    let env = [("DBBACKUP_UNDO_DIR", undo_dir.as_str())];
    let target = f.url("target.sqlite");
    rusqlite::Connection::open(f.p("target.sqlite"))
        .unwrap()
        .execute_batch(
            "create table b (x text primary key, n int); insert into b values ('before', 1), ('kept', 2);
             create view bv as select x from b; pragma user_version = 7;",
        )
        .unwrap();
    let fp = |name: &str| fingerprint_conn(&rusqlite::Connection::open(f.p(name)).unwrap());
    let (fa, fb) = (fp("app.sqlite"), fp("target.sqlite"));
    // (status exits 4 here: the backup was never verified; its report is what counts.)
    let run = |args: &[&str]| {
        let out = dbbackup(args, &env);
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        json(&out)
    };
    let r = run(&["restore", "--json", "--repo", &f.repo(), &id, "--into", &target]);
    assert_eq!(fp("target.sqlite"), fa);
    let kept = r["undo"]["id"].as_str().expect("an undo copy in the report").to_string();
    assert_eq!(r["undo"]["target"], target.as_str(), "{r}");
    let s = json(&dbbackup(&["status", "--json", "--repo", &f.repo()], &env));
    assert_eq!(s["undo"][0]["id"], kept.as_str(), "status does not list the undo copy: {s}");
    assert_eq!(s["undo"][0]["expired"], false);

    let u = run(&["restore", "--json", "--undo", "--into", &target]);
    assert_eq!(fp("target.sqlite"), fb, "restore --undo did not put the database back");
    assert_eq!(u["id"], kept.as_str());
    assert!(u["undo"]["id"].is_string(), "the pre-undo state is the new copy: {u}");

    // --no-undo: nothing kept, and --undo refuses instead of putting back an older state.
    run(&["restore", "--json", "--no-undo", "--repo", &f.repo(), &id, "--into", &target]);
    let out = dbbackup(&["restore", "--undo", "--into", &target], &env);
    assert_eq!(out.status.code(), Some(5), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("undo copy of"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(fp("target.sqlite"), fa);

    // --keep-undo: the copy expires; status says so and prune removes it.
    let r = run(&["restore", "--json", "--keep-undo", "1s", "--repo", &f.repo(), &id, "--into", &target]);
    let kept = r["undo"]["id"].as_str().unwrap().to_string();
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let s = json(&dbbackup(&["status", "--json", "--repo", &f.repo()], &env));
    assert_eq!(s["undo"][0]["expired"], true, "{s}");
    let p = run(&["prune", "--json", "--keep-last", "5", "--repo", &f.repo()]);
    assert_eq!(p["undo_removed"][0]["id"], kept.as_str(), "{p}");
    let s = json(&dbbackup(&["status", "--json", "--repo", &f.repo()], &env));
    assert_eq!(s["undo"], serde_json::json!([]), "{s}");
}
