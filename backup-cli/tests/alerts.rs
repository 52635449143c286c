//! Alerts people can trust, through the real binary against a local HTTP receiver: one alert per
//! state change (failing twice sends one, recovering sends one "recovered", healthy twice sends
//! nothing), reminders at the repeat interval, the state shown by `status --json`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};

use serde_json::Value;

const ALERT_VARS: [&str; 8] = [
    "DBBACKUP_SLACK_WEBHOOK",
    "DBBACKUP_WEBHOOK_URL",
    "DBBACKUP_HEARTBEAT_URL",
    "DBBACKUP_NOTIFY_ON",
    "DBBACKUP_NOTIFY_REPEAT",
    "DBBACKUP_STATE_DIR",
    "DBBACKUP_SMTP_URL",
    "DBBACKUP_MAIL_TO",
];

fn dbbackup(args: &[&str], env: &[(&str, String)]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_dbbackup"));
    c.args(args).env_remove("APP_ENV").env_remove("DBBACKUP_REPO");
    for k in ALERT_VARS {
        c.env_remove(k);
    }
    c.envs(env.iter().map(|(k, v)| (k, v))).output().expect("run dbbackup")
}

fn json(out: &Output) -> Value {
    let text = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(text.trim()).unwrap_or_else(|e| {
        panic!("not JSON ({e}): {text}\nstderr: {}", String::from_utf8_lossy(&out.stderr))
    })
}

/// A tiny HTTP server recording `METHOD PATH BODY` of each request; answers 200.
fn http_server() -> (String, Arc<Mutex<Vec<String>>>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", l.local_addr().unwrap());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = seen.clone();
    std::thread::spawn(move || {
        for conn in l.incoming() {
            let Ok(mut conn) = conn else { continue };
            let mut r = BufReader::new(conn.try_clone().unwrap());
            let mut line = String::new();
            r.read_line(&mut line).unwrap();
            let mut len = 0usize;
            loop {
                let mut h = String::new();
                r.read_line(&mut h).unwrap();
                if h.trim().is_empty() {
                    break;
                }
                if let Some(v) = h.to_ascii_lowercase().strip_prefix("content-length:") {
                    len = v.trim().parse().unwrap();
                }
            }
            let mut body = vec![0; len];
            r.read_exact(&mut body).unwrap();
            let mut parts = line.split_whitespace();
            let req = format!(
                "{} {} {}",
                parts.next().unwrap(),
                parts.next().unwrap(),
                String::from_utf8_lossy(&body)
            );
            s.lock().unwrap().push(req);
            let _ = conn.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok");
        }
    });
    (url, seen)
}

fn make_db(path: &Path, rows: usize) {
    let c = rusqlite::Connection::open(path).unwrap();
    c.execute_batch(&format!(
        "create table if not exists users (id integer primary key, email text, blob blob);
         delete from users;
         with recursive n(i) as (select 1 union all select i + 1 from n where i < {rows})
         insert into users select i, 'user' || i || '@example.com', randomblob(200) from n;"
    ))
    .unwrap();
}

/// The webhook bodies received since the last call, as JSON.
fn take_hooks(seen: &Arc<Mutex<Vec<String>>>) -> Vec<Value> {
    let got: Vec<String> = std::mem::take(&mut *seen.lock().unwrap());
    got.iter()
        .filter_map(|r| r.strip_prefix("POST /hook "))
        .map(|b| serde_json::from_str(b).unwrap())
        .collect()
}

#[test]
fn status_alerts_once_per_state_change_with_reminders_and_recovery() {
    let (url, seen) = http_server();
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo");
    let repo = repo.to_str().unwrap();
    let env = vec![("DBBACKUP_WEBHOOK_URL", format!("{url}/hook"))];
    let status = |env: &[(&str, String)]| {
        let out = dbbackup(&["status", "--json", "--repo", repo], env);
        (out.status.code(), json(&out))
    };
    // No backup: FAILING, with the check, what was expected and what was found.
    let (code, st) = status(&env);
    assert_eq!(code, Some(4), "{st}");
    let hooks = take_hooks(&seen);
    assert_eq!(hooks.len(), 1, "{hooks:?}");
    let msg = hooks[0]["message"].as_str().unwrap();
    assert!(
        msg.starts_with("FAILING: has_backup [")
            && msg.contains("expected at least one complete backup, found none"),
        "{msg}"
    );
    assert_eq!(hooks[0]["alerts"][0]["transition"], "failing");
    let check = st["checks"].as_array().unwrap().iter().find(|c| c["name"] == "has_backup").unwrap().clone();
    assert_eq!(check["state"], "failing", "{st}");
    let since = check["since"].as_str().unwrap().to_string();
    // Failing again: no second alert, same "since".
    let (code, st) = status(&env);
    assert_eq!(code, Some(4));
    assert!(take_hooks(&seen).is_empty(), "failing twice must alert once");
    let check = st["checks"].as_array().unwrap().iter().find(|c| c["name"] == "has_backup").unwrap().clone();
    assert_eq!(check["since"].as_str(), Some(since.as_str()));
    // Still failing once the repeat interval has passed: one reminder.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let mut short = env.clone();
    short.push(("DBBACKUP_NOTIFY_REPEAT", "1s".into()));
    status(&short);
    let hooks = take_hooks(&seen);
    assert_eq!(hooks.len(), 1, "{hooks:?}");
    assert!(hooks[0]["message"].as_str().unwrap().starts_with("STILL FAILING"), "{hooks:?}");
    // ... and not again before the interval.
    status(&short);
    assert!(take_hooks(&seen).is_empty(), "reminder sent before the repeat interval");
    // A backup: the status recovers, one RECOVERED saying how long it failed.
    let db = dir.path().join("app.sqlite");
    make_db(&db, 100);
    let out = dbbackup(&["create", "--source", &format!("sqlite://{}", db.display()), "--repo", repo], &env);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(take_hooks(&seen).is_empty(), "a successful create that never failed sends nothing");
    let out = dbbackup(&["verify", "--repo", repo, "--level", "quick"], &env);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(take_hooks(&seen).is_empty());
    status(&env);
    let hooks = take_hooks(&seen);
    let recovered: Vec<&Value> =
        hooks.iter().filter(|h| h["message"].as_str().unwrap().contains("RECOVERED: has_backup")).collect();
    assert_eq!(recovered.len(), 1, "{hooks:?}");
    assert!(recovered[0]["message"].as_str().unwrap().contains("after failing for"), "{hooks:?}");
    assert_eq!(recovered[0]["outcome"], "recovered");
    // Healthy twice: nothing.
    status(&env);
    status(&env);
    assert!(take_hooks(&seen).is_empty());
}

#[test]
fn a_guard_that_rolled_back_and_a_failed_restore_alert_with_their_content() {
    let (url, seen) = http_server();
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo");
    let repo = repo.to_str().unwrap();
    let db = dir.path().join("app.sqlite");
    make_db(&db, 50);
    let src = format!("sqlite://{}", db.display());
    let env = vec![("DBBACKUP_WEBHOOK_URL", format!("{url}/hook"))];
    let out = dbbackup(&["guard", "--source", &src, "--repo", repo, "--", "sh", "-c", "exit 3"], &env);
    assert_eq!(out.status.code(), Some(3), "{}", String::from_utf8_lossy(&out.stderr));
    let hooks = take_hooks(&seen);
    assert_eq!(hooks.len(), 1, "{hooks:?}");
    let h = &hooks[0];
    let msg = h["message"].as_str().unwrap();
    assert!(msg.starts_with("ROLLED BACK: guarded command `sh -c exit 3` failed (exit status 3)"), "{msg}");
    assert!(msg.contains("recovery time") && msg.contains("the rollback succeeded"), "{msg}");
    let d = &h["details"];
    assert_eq!(
        (d["command_status"].as_i64(), d["rollback_succeeded"].as_bool()),
        (Some(3), Some(true)),
        "{h}"
    );
    assert!(d["backup_id"].as_str().is_some_and(|id| msg.contains(id)) && d["recovery_ms"].is_u64(), "{h}");
    // Every rollback alerts (an event, not a state).
    dbbackup(&["guard", "--source", &src, "--repo", repo, "--", "sh", "-c", "exit 4"], &env);
    assert_eq!(take_hooks(&seen).len(), 1);
    // A successful guarded command: nothing.
    dbbackup(&["guard", "--source", &src, "--repo", repo, "--", "true"], &env);
    assert!(take_hooks(&seen).is_empty());
    // A failed restore alerts, with the error.
    let into = format!("sqlite://{}", dir.path().join("r.sqlite").display());
    let out = dbbackup(&["restore", "--repo", repo, "20200101T000000Z-dead", "--into", &into], &env);
    assert_eq!(out.status.code(), Some(5));
    let hooks = take_hooks(&seen);
    assert_eq!(hooks.len(), 1, "{hooks:?}");
    let msg = hooks[0]["message"].as_str().unwrap();
    assert!(msg.starts_with("FAILED: restore: ") && msg.contains("20200101T000000Z-dead"), "{msg}");
}
