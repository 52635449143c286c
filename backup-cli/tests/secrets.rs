//! A canary password must appear nowhere it could leak: `--help`, logs at `-vv`, `--json`
//! output, the manifest, audit records, notifications (a local HTTP receiver) and the argv of
//! the child processes the tool spawns (a `pg_dump` wrapper on PATH records its argv).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};

const CANARY: &str = "Canary7pwZX";
const CANARY_Q: &str = "QueryCanary9pw";

fn dbbackup(args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_dbbackup"))
        .args(args)
        .env_remove("APP_ENV")
        .env_remove("DBBACKUP_REPO")
        .envs(env.iter().copied())
        .output()
        .expect("run dbbackup")
}

fn psql(url: &str, sql: &str) {
    let out = Command::new("psql")
        .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", url, "-c", sql])
        .output()
        .unwrap();
    assert!(out.status.success(), "psql {sql}: {}", String::from_utf8_lossy(&out.stderr));
}

/// `base` (postgres://user@host:port/db) pointed at `db`, with `password` in the userinfo.
fn with_password(base: &str, db: &str, password: Option<&str>) -> String {
    let base = base.split('?').next().unwrap();
    let (scheme, rest) = base.split_once("://").unwrap();
    let (auth, _) = rest.split_once('/').unwrap();
    let (user, host) = auth.rsplit_once('@').unwrap();
    let user = user.split(':').next().unwrap();
    match password {
        Some(p) => format!("{scheme}://{user}:{p}@{host}/{db}"),
        None => format!("{scheme}://{user}@{host}/{db}"),
    }
}

/// A one-thread HTTP server that answers 200 and keeps every request it got.
fn receiver() -> (String, Arc<Mutex<Vec<String>>>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hook", l.local_addr().unwrap());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = seen.clone();
    std::thread::spawn(move || {
        for conn in l.incoming() {
            let Ok(mut c) = conn else { continue };
            c.set_read_timeout(Some(std::time::Duration::from_millis(500))).unwrap();
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            // Read until the declared body has arrived (or the client pauses).
            loop {
                match c.read(&mut chunk) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                }
                let text = String::from_utf8_lossy(&buf);
                if let Some((head, body)) = text.split_once("\r\n\r\n") {
                    let len = head
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase()
                                .strip_prefix("content-length:")
                                .map(|v| v.trim().to_string())
                        })
                        .and_then(|v| v.parse::<usize>().ok())
                        .unwrap_or(0);
                    if body.len() >= len {
                        break;
                    }
                }
            }
            s.lock().unwrap().push(String::from_utf8_lossy(&buf).into_owned());
            let _ = c.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok");
        }
    });
    (url, seen)
}

/// Every file's text under `dir`.
fn all_text(dir: &Path) -> String {
    let mut out = String::new();
    let Ok(rd) = std::fs::read_dir(dir) else { return out };
    for e in rd.flatten() {
        let p = e.path();
        if p.is_dir() {
            out.push_str(&all_text(&p));
        } else {
            out.push_str(&String::from_utf8_lossy(&std::fs::read(&p).unwrap()));
        }
    }
    out
}

fn assert_clean(what: &str, text: &str) {
    for c in [CANARY, CANARY_Q] {
        let lines: Vec<&str> = text.lines().filter(|l| l.contains(c)).collect();
        assert!(lines.is_empty(), "the password leaked into {what}:\n{}", lines.join("\n"));
    }
}

#[test]
fn help_never_shows_secret_environment_values() {
    let url = format!("postgres://app:{CANARY}@db.example/app");
    for cmd in ["create", "guard", "restore", "verify", "copy", "list", "status", "prune"] {
        let out = dbbackup(
            &[cmd, "--help"],
            &[
                ("DBBACKUP_SOURCE", &url),
                ("DBBACKUP_INTO", &url),
                ("DBBACKUP_SCRATCH", &url),
                ("DBBACKUP_REPO", &format!("s3://AKIA:{CANARY}@bucket/x")),
                ("DBBACKUP_FROM", &format!("s3://AKIA:{CANARY}@bucket/x")),
                ("DBBACKUP_TO", &format!("s3://AKIA:{CANARY}@bucket/x")),
                ("DBBACKUP_PASSWORD_FILE", &format!("/run/{CANARY}")),
            ],
        );
        assert!(out.status.success());
        assert_clean(&format!("{cmd} --help"), &String::from_utf8_lossy(&out.stdout));
    }
}

#[test]
fn a_canary_password_leaks_nowhere() {
    let Some(base) = dbbackup_tests::service_env("DBBACKUP_TEST_PG_URL") else { return };
    let name = dbbackup_tests::unique("canary");
    let admin = with_password(&base, "postgres", None);
    psql(&admin, &format!("CREATE DATABASE {name}"));
    struct Drop1(String, String);
    impl Drop for Drop1 {
        fn drop(&mut self) {
            for db in [self.1.clone(), format!("{}_r", self.1)] {
                let _ = Command::new("psql")
                    .args([
                        "-X",
                        "-q",
                        "-d",
                        &self.0,
                        "-c",
                        &format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"),
                    ])
                    .output();
            }
        }
    }
    let _cleanup = Drop1(admin.clone(), name.clone());
    psql(&with_password(&base, &name, None), "CREATE TABLE t (x int); INSERT INTO t VALUES (1), (2)");

    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo").display().to_string();
    // A pg_dump on PATH that records its argv, then runs the real one.
    let bin = dir.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    let argv_log = dir.path().join("argv.log");
    let real = Command::new("sh").args(["-c", "command -v pg_dump"]).output().unwrap();
    let real = String::from_utf8_lossy(&real.stdout).trim().to_string();
    assert!(!real.is_empty(), "pg_dump not on PATH");
    let wrapper = bin.join("pg_dump");
    std::fs::write(
        &wrapper,
        format!("#!/bin/sh\necho \"pg_dump $*\" >> '{}'\nexec '{real}' \"$@\"\n", argv_log.display()),
    )
    .unwrap();
    Command::new("chmod").args(["+x", wrapper.to_str().unwrap()]).status().unwrap();
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap_or_default());
    let (hook, seen) = receiver();
    let env = [
        ("PATH", path.as_str()),
        ("DBBACKUP_WEBHOOK_URL", hook.as_str()),
        ("DBBACKUP_NOTIFY_ON", "success,failure"),
    ];

    let mut transcript = String::new();
    let mut run = |args: &[&str]| -> Output {
        let out = dbbackup(args, &env);
        transcript.push_str(&format!(
            "$ dbbackup {}\n{}\n{}\n",
            args[0],
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ));
        out
    };
    // The password in the userinfo, and in libpq's ?password= form.
    let src = with_password(&base, &name, Some(CANARY));
    let src_q = format!("{}?password={CANARY_Q}", with_password(&base, &name, None));
    for s in [&src, &src_q] {
        let out = run(&["create", "-vv", "--json", "--source", s, "--repo", &repo]);
        assert!(out.status.success(), "{transcript}");
    }
    let into = with_password(&base, &format!("{name}_r"), Some(CANARY));
    let out = run(&["restore", "-vv", "--json", "--repo", &repo, "--into", &into]);
    assert!(out.status.success(), "{transcript}");
    let out =
        run(&["guard", "-vv", "--json", "--source", &src_q, "--repo", &repo, "--", "sh", "-c", "exit 3"]);
    assert_eq!(out.status.code(), Some(3), "{transcript}");
    // Failures: a server that is not there, and a database that does not exist.
    let down = format!("postgres://postgres:{CANARY}@127.0.0.1:1/{name}");
    let out = run(&["create", "-vv", "--json", "--source", &down, "--repo", &repo]);
    assert!(!out.status.success());
    let missing = format!("{}?password={CANARY_Q}", with_password(&base, "no_such_db_canary", None));
    let out = run(&["create", "-vv", "--json", "--source", &missing, "--repo", &repo]);
    assert!(!out.status.success());

    assert_clean("output or logs", &transcript);
    assert_clean("the repository (manifests, audit records)", &all_text(Path::new(&repo)));
    let argv = std::fs::read_to_string(&argv_log).unwrap_or_default();
    assert!(argv.contains("pg_dump"), "the pg_dump wrapper was not used: {transcript}");
    assert_clean("pg_dump's argv", &argv);
    let hooks = seen.lock().unwrap().join("\n");
    assert!(hooks.contains("create"), "no notification arrived: {transcript}");
    assert_clean("notifications", &hooks);
    // The manifest still names the source, without the password.
    assert!(all_text(Path::new(&repo)).contains(&name));
}
