//! Nothing waits forever: `--timeout` for the whole operation, a connect timeout against a server
//! that accepts but never answers, a lock timeout behind a conflicting lock (PostgreSQL `LOCK
//! TABLE`, MariaDB's global read lock behind a long query, the MariaDB restore's swap behind an
//! open transaction). Every run of the real binary is bounded here, so a missing limit shows as a
//! test failure ("still running after ..."), not as a hung suite.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use dbbackup_tests::{pg_db, psql};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

fn spawn(args: &[&str]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_dbbackup"))
        .args(args)
        .env_remove("APP_ENV")
        .env_remove("DBBACKUP_REPO")
        .env_remove("DBBACKUP_TIMEOUT")
        .env_remove("DBBACKUP_LOCK_TIMEOUT")
        .env_remove("DBBACKUP_CONNECT_TIMEOUT")
        .env_remove("DBBACKUP_STATEMENT_TIMEOUT")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run dbbackup")
}

/// Runs dbbackup, killing it (and failing the test) when it is still running after `limit`.
fn run_within(args: &[&str], limit: Duration) -> (Output, Duration) {
    let t0 = Instant::now();
    let mut child = spawn(args);
    while child.try_wait().unwrap().is_none() {
        if t0.elapsed() > limit {
            child.kill().unwrap();
            let out = child.wait_with_output().unwrap();
            panic!(
                "dbbackup {args:?} still running after {limit:?} (waiting forever?): {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    (out, t0.elapsed())
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

// ---------------------------------------------------------------- --timeout

/// `--timeout` stops a backup that would take longer: exit 124, cleaned up like on a signal (no
/// manifest, no objects, no temp files in the spool).
#[test]
fn timeout_flag_stops_a_long_backup_with_exit_124_and_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("big.sqlite");
    let c = rusqlite::Connection::open(&db).unwrap();
    // About 60 MiB of incompressible text: far more than 300 ms of work at zstd -19.
    c.execute_batch(
        "pragma journal_mode = off; pragma synchronous = off;
         create table t (id integer primary key, v text);
         with recursive n(i) as (select 1 union all select i + 1 from n where i < 60000)
         insert into t select i, hex(randomblob(500)) from n;",
    )
    .unwrap();
    drop(c);
    let repo = dir.path().join("repo");
    let spool = dir.path().join("spool");
    std::fs::create_dir(&spool).unwrap();
    let src = format!("sqlite://{}", db.display());
    let args = [
        "create",
        "--source",
        &src,
        "--repo",
        repo.to_str().unwrap(),
        "--compression",
        "zstd:9",
        "--temp-dir",
        spool.to_str().unwrap(),
        "--timeout",
        "300ms",
        "--json",
    ];
    let (out, took) = run_within(&args, Duration::from_secs(60));
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(124), "{err}");
    assert!(took < Duration::from_secs(20), "stopped after {took:?}");
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["ok"], false, "{json}");
    let left: Vec<_> = walk(&repo).into_iter().filter(|p| !p.ends_with(".dbbackup-lock")).collect();
    assert!(left.iter().all(|p| !p.to_string_lossy().contains("manifest")), "{left:?}");
    assert!(left.iter().all(|p| !p.to_string_lossy().contains("/data/")), "objects left: {left:?}");
    assert_eq!(walk(&spool), Vec::<std::path::PathBuf>::new(), "the spool is empty");
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir(dir) else { return out };
    for e in rd.flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

// ---------------------------------------------------------------- connect timeout

/// A server that accepts the TCP connection and then says nothing (a hung server, a firewall
/// that swallows packets after the handshake): connecting gives up after the connect timeout.
#[test]
fn connect_timeout_gives_up_on_a_silent_server() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    // Accept and hold every connection, never writing a byte.
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for s in listener.incoming().flatten() {
            held.push(s);
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo");
    for url in [
        format!("postgres://postgres@127.0.0.1:{port}/x?sslmode=disable"),
        format!("mysql://root@127.0.0.1:{port}/x"),
    ] {
        let args = ["create", "--source", &url, "--repo", repo.to_str().unwrap(), "--connect-timeout", "1s"];
        let (out, took) = run_within(&args, Duration::from_secs(30));
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(1), "{url}: {err}");
        assert!(err.contains("connect timeout of 1s"), "{url}: {err}");
        assert!(took < Duration::from_secs(15), "{url}: gave up after {took:?}");
    }
}

// ---------------------------------------------------------------- PostgreSQL

/// Polls `ready` every 50 ms for up to 30 s.
fn wait_until(what: &str, ready: impl Fn() -> bool) {
    let t0 = Instant::now();
    while !ready() {
        assert!(t0.elapsed() < Duration::from_secs(30), "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A backup whose `LOCK TABLE ... IN ACCESS SHARE MODE` meets a migration holding ACCESS
/// EXCLUSIVE on a table fails after the lock timeout, naming the lock, instead of waiting for
/// the migration; and succeeds once the lock is gone. The backup meets the lock in pg_dump
/// (`--lock-wait-timeout`); an in-place restore meets it in dbbackup's own session
/// (`lock_timeout`), and fails the same way with the table untouched.
#[test]
fn postgres_backup_behind_an_exclusive_lock_fails_within_the_lock_timeout() {
    let Some(base) = dbbackup_tests::service_env("DBBACKUP_TEST_PG_URL") else { return };
    let db = dbbackup_tests::unique("to_pg_lock");
    psql(&base, &format!("CREATE DATABASE {db}"));
    let url = pg_db(&base, &db);
    psql(&url, "CREATE TABLE orders (id int PRIMARY KEY); INSERT INTO orders SELECT generate_series(1, 100)");
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo");
    let args =
        ["create", "--source", &url, "--repo", repo.to_str().unwrap(), "--lock-timeout", "1s", "--jobs", "2"];
    let (out, _) = run_within(&args, Duration::from_secs(60));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    // The "migration": holds ACCESS EXCLUSIVE on orders for a minute.
    let mut holder = Command::new("psql")
        .args([
            "-X",
            "-q",
            "-d",
            &url,
            "-c",
            "BEGIN; LOCK TABLE orders IN ACCESS EXCLUSIVE MODE; SELECT pg_sleep(60); COMMIT",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_until("the exclusive lock", || {
        psql(
            &url,
            "SELECT count(*) FROM pg_locks WHERE relation = 'orders'::regclass AND mode = 'AccessExclusiveLock' AND granted",
        ) == "1"
    });
    let (out, took) = run_within(&args, Duration::from_secs(40));
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("lock timeout") && err.contains("--lock-timeout"), "{err}");
    assert!(took < Duration::from_secs(20), "gave up after {took:?}");
    let restore = [
        "restore",
        "--repo",
        repo.to_str().unwrap(),
        "--into",
        &url,
        "--in-place",
        "--force",
        "--lock-timeout",
        "1s",
    ];
    let (out, took) = run_within(&restore, Duration::from_secs(40));
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("lock timeout") && err.contains("--lock-timeout"), "{err}");
    assert!(took < Duration::from_secs(20), "the restore gave up after {took:?}");
    holder.kill().unwrap();
    holder.wait().unwrap();
    // The session behind the killed psql keeps its lock until its sleep ends: end it.
    psql(
        &base,
        &format!(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{db}' AND application_name <> 'dbbackup' AND pid <> pg_backend_pid()"
        ),
    );
    assert_eq!(psql(&url, "SELECT count(*) FROM orders"), "100", "the refused restore touched the table");
    let (out, _) = run_within(&args, Duration::from_secs(60));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    psql(&base, &format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"));
}

// ---------------------------------------------------------------- MariaDB

/// `mariadb` client arguments for a `mysql://user@host:port/db` URL (no password in tests).
fn mariadb_args(url: &str) -> Vec<String> {
    let u = url.strip_prefix("mysql://").unwrap();
    let (user, rest) = u.split_once('@').unwrap();
    let (hostport, _) = rest.split_once('/').unwrap_or((rest, ""));
    let (host, port) = hostport.split_once(':').unwrap_or((hostport, "3306"));
    vec![
        "--no-defaults".into(),
        "-h".into(),
        host.into(),
        "-P".into(),
        port.into(),
        "-u".into(),
        user.split(':').next().unwrap().into(),
        "-N".into(),
        "-B".into(),
    ]
}

fn mariadb(base: &str, sql: &str) -> String {
    let out =
        Command::new("mariadb").args(mariadb_args(base)).args(["-e", sql]).output().expect("run mariadb");
    assert!(out.status.success(), "mariadb {sql}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn mariadb_spawn(base: &str, sql: &str) -> Child {
    Command::new("mariadb")
        .args(mariadb_args(base))
        .args(["-e", sql])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

fn my_db(base: &str, name: &str) -> String {
    let (server, _) = base.rsplit_once('/').unwrap();
    format!("{server}/{name}")
}

/// Kills the server sessions whose query text contains `marker`.
fn kill_queries(base: &str, marker: &str) {
    let ids = mariadb(
        base,
        &format!(
            "SELECT id FROM information_schema.PROCESSLIST WHERE INFO LIKE '%{marker}%' AND id <> CONNECTION_ID()"
        ),
    );
    for id in ids.lines().filter(|l| !l.is_empty()) {
        let _ = Command::new("mariadb").args(mariadb_args(base)).args(["-e", &format!("KILL {id}")]).output();
    }
}

/// FLUSH TABLES WITH READ LOCK behind a long write (MariaDB 10.11 waits for running writes, not
/// for reads) stalls every other write on the server until that one ends. With a lock timeout the backup gives up the global lock after it, says so in its
/// notes, and dumps through one consistent connection; a writer that queued behind the lock
/// request goes through as soon as the lock timeout has passed, not when the long query ends.
#[test]
fn mariadb_global_read_lock_behind_a_long_query_gives_up_and_writers_go_on() {
    let Some(base) = dbbackup_tests::service_env("DBBACKUP_TEST_MYSQL_URL") else { return };
    let db = dbbackup_tests::unique("to_my_ftwrl");
    mariadb(&base, &format!("CREATE DATABASE {db}"));
    mariadb(
        &base,
        &format!(
            "CREATE TABLE {db}.orders (id int PRIMARY KEY) ENGINE=InnoDB; INSERT INTO {db}.orders VALUES (1),(2),(3);
             CREATE TABLE {db}.audit (id int AUTO_INCREMENT PRIMARY KEY, at datetime) ENGINE=InnoDB;
             CREATE TABLE {db}.report (v int) ENGINE=InnoDB"
        ),
    );
    // The long write: 60 s inside one INSERT ... SELECT (far beyond every bound below). The wait
    // below must not count its own polling session, whose query text also contains the marker (it
    // did: the backup could then start before the long write and take the global lock at once,
    // and CI saw no FTWRL waiting).
    let marker = format!("long_write_{db}");
    let mut long = mariadb_spawn(&base, &format!("INSERT INTO {db}.report (v) SELECT SLEEP(60) AS {marker}"));
    wait_until("the long write", || {
        mariadb(
            &base,
            &format!(
                "SELECT count(*) FROM information_schema.PROCESSLIST WHERE INFO LIKE '%AS {marker}%' AND id <> CONNECTION_ID()"
            ),
        ) != "0"
    });
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo");
    let url = my_db(&base, &db);
    let args = [
        "create",
        "--source",
        &url,
        "--repo",
        repo.to_str().unwrap(),
        "--lock-timeout",
        "5s",
        "--jobs",
        "2",
        "--json",
    ];
    let t0 = Instant::now();
    let backup = spawn(&args);
    // A writer arriving while FTWRL waits. FTWRL shows for the lock timeout only: 5 s, so that a
    // test stalled for seconds on a loaded machine still sees it (with 2 s, about 15 polls of a
    // spawned client, a stall of 2 s could miss it, and the wait below then timed out).
    wait_until("FTWRL waiting", || {
        mariadb(
            &base,
            "SELECT count(*) FROM information_schema.PROCESSLIST WHERE INFO LIKE 'FLUSH TABLES WITH READ LOCK%'",
        ) != "0"
    });
    let w0 = Instant::now();
    let mut writer = mariadb_spawn(&base, &format!("INSERT INTO {db}.audit (at) VALUES (NOW())"));
    let mut wrote = None;
    while w0.elapsed() < Duration::from_secs(50) {
        if writer.try_wait().unwrap().is_some() {
            wrote = Some(w0.elapsed());
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = writer.kill();
    let status = writer.wait().unwrap();
    assert!(wrote.is_none() || status.success(), "the writer failed: {status}");
    let mut backup = backup;
    while backup.try_wait().unwrap().is_none() && t0.elapsed() < Duration::from_secs(55) {
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = backup.kill();
    let out = backup.wait_with_output().unwrap();
    let took = t0.elapsed();
    kill_queries(&base, &marker);
    let _ = long.kill();
    let _ = long.wait();
    let wrote = wrote.expect("the writer was still blocked 50 s after FTWRL started waiting");
    // The lock timeout (5 s) and room for a loaded machine, well before the long write ends.
    assert!(wrote < Duration::from_secs(20), "the writer waited {wrote:?}");
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(took < Duration::from_secs(30), "the backup took {took:?} (waited for the long query?)");
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let notes = json["notes"].to_string();
    assert!(notes.contains("not granted within the lock timeout of 5s"), "{notes}");
    mariadb(&base, &format!("DROP DATABASE {db}"));
}
