//! Alerts people can trust, through the real binary against a local HTTP receiver and the SMTP
//! sink (`scripts/smtp-sink.py`): one alert per state change (failing twice sends one, recovering
//! sends one "recovered", healthy twice sends nothing), reminders at the repeat interval, the
//! state shown by `status --json`; e-mail over STARTTLS and TLS with the message read back.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::{Command, Output};

use dbbackup_tests::receiver::{Seen, http_server, mail_sink, mails_to, take_posts};
use dbbackup_tests::unique;
use serde_json::Value;

fn dbbackup(args: &[&str], env: &[(&str, String)]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_dbbackup"));
    c.args(args).env_remove("APP_ENV").env_remove("DBBACKUP_REPO");
    for k in
        backup_core::NotifyConfig::NAMES.iter().chain(&["DBBACKUP_SMTP_PASSWORD_FILE", "DBBACKUP_CONFIG"])
    {
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
fn take_hooks(seen: &Seen) -> Vec<Value> {
    take_posts(seen, "/hook")
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
    std::thread::sleep(std::time::Duration::from_millis(3100));
    let mut short = env.clone();
    short.push(("DBBACKUP_NOTIFY_REPEAT", "3s".into()));
    status(&short);
    let hooks = take_hooks(&seen);
    assert_eq!(hooks.len(), 1, "{hooks:?}");
    assert!(hooks[0]["message"].as_str().unwrap().starts_with("STILL FAILING"), "{hooks:?}");
    // ... and not again before the interval: the next run must start within it of the
    // reminder's (it was 1 s: the end of one run and the start of the next can take longer than
    // that on a loaded machine, and the second run then sent a second reminder).
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

#[test]
fn email_over_starttls_once_per_state_change_with_the_check_and_never_the_password() {
    let Some(sink) = mail_sink() else { return };
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo");
    let repo = repo.to_str().unwrap();
    let rcpt = format!("{}@example.test", unique("ops"));
    let password = unique("smtp-pw-Zq9");
    let env = vec![
        ("DBBACKUP_SMTP_URL", sink.url.clone()),
        ("DBBACKUP_SMTP_USER", "alerts@example.test".to_string()),
        ("DBBACKUP_SMTP_PASSWORD", password.clone()),
        ("DBBACKUP_SMTP_CA_FILE", sink.ca.clone()),
        ("DBBACKUP_MAIL_FROM", "Backups <backups@example.test>".to_string()),
        ("DBBACKUP_MAIL_TO", rcpt.clone()),
    ];
    let status = || dbbackup(&["status", "--json", "--repo", repo], &env);
    // No backup: one FAILING e-mail, sent over STARTTLS with the user's credentials.
    let out = status();
    assert_eq!(out.status.code(), Some(4), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        out.stderr.is_empty() || !String::from_utf8_lossy(&out.stderr).contains("not delivered"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mails = mails_to(&sink.dir, &rcpt);
    assert_eq!(mails.len(), 1, "{mails:?}");
    let m = &mails[0];
    assert_eq!(
        (m.header("X-Sink-TLS"), m.header("X-Sink-Auth-User")),
        (Some("yes"), Some("alerts@example.test")),
        "{m:?}"
    );
    let subject = m.header("Subject").unwrap();
    assert!(
        subject.starts_with("[dbbackup] status unhealthy") && subject.contains("FAILING: has_backup ["),
        "{subject}"
    );
    assert!(m.header("From").unwrap().contains("backups@example.test"), "{m:?}");
    for want in [
        "FAILING: has_backup [",
        "expected:   at least one complete backup",
        "found:      none",
        "failing since ",
        &format!("repository: {repo}"),
    ] {
        assert!(m.body.contains(want), "{want:?} not in the body:\n{}", m.body);
    }
    // Failing twice: still one e-mail.
    status();
    assert_eq!(mails_to(&sink.dir, &rcpt).len(), 1, "failing twice must send one e-mail");
    // A backup and a verification: one RECOVERED e-mail saying how long it failed.
    let db = dir.path().join("app.sqlite");
    make_db(&db, 50);
    let out = dbbackup(&["create", "--source", &format!("sqlite://{}", db.display()), "--repo", repo], &env);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = dbbackup(&["verify", "--repo", repo, "--level", "quick"], &env);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(mails_to(&sink.dir, &rcpt).len(), 1, "a create/verify that never failed sends nothing");
    assert_eq!(status().status.code(), Some(0));
    let mails = mails_to(&sink.dir, &rcpt);
    assert_eq!(mails.len(), 2, "{mails:?}");
    let r = &mails[1];
    let subject = r.header("Subject").unwrap();
    assert!(
        subject.starts_with("[dbbackup] status recovered") && subject.contains("RECOVERED: has_backup"),
        "{subject}"
    );
    assert!(
        r.body.contains("healthy again after failing for") && r.body.contains("was failing for"),
        "{}",
        r.body
    );
    // Healthy twice: nothing more. The password is in no message.
    status();
    let mails = mails_to(&sink.dir, &rcpt);
    assert_eq!(mails.len(), 2);
    assert!(mails.iter().all(|m| !m.raw.contains(&password)), "the SMTP password leaked into a message");
}

#[test]
fn email_over_tls_checks_the_certificate_and_refuses_a_password_in_clear() {
    let Some(sink) = mail_sink() else { return };
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo");
    let repo = repo.to_str().unwrap();
    let rcpt = format!("{}@example.test", unique("dba"));
    let password = unique("smtp-pw-Xk4");
    let missing = format!("sqlite://{}", dir.path().join("missing/app.sqlite").display());
    let mut env = vec![
        ("DBBACKUP_SMTP_URL", sink.tls_url.clone()),
        ("DBBACKUP_SMTP_USER", "dba".to_string()),
        ("DBBACKUP_SMTP_PASSWORD", password.clone()),
        ("DBBACKUP_MAIL_TO", rcpt.clone()),
    ];
    // Without the sink's CA the certificate is refused: nothing sent, a warning without the
    // password, and the command's own result unchanged.
    let out = dbbackup(&["create", "--source", &missing, "--repo", repo], &env);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_ne!(out.status.code(), Some(0));
    assert!(err.contains("notification not delivered: e-mail smtp://dba@127.0.0.1:"), "{err}");
    assert!(!err.contains(&password), "{err}");
    assert!(mails_to(&sink.dir, &rcpt).is_empty());
    // With it: one FAILING e-mail for the failed create (TLS from the first byte), once.
    env.push(("DBBACKUP_SMTP_CA_FILE", sink.ca.clone()));
    let out = dbbackup(&["create", "--source", &missing, "--repo", repo], &env);
    assert_ne!(out.status.code(), Some(0));
    dbbackup(&["create", "--source", &missing, "--repo", repo], &env);
    let mails = mails_to(&sink.dir, &rcpt);
    assert_eq!(mails.len(), 1, "{mails:?}\n{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(
        (mails[0].header("X-Sink-TLS"), mails[0].header("X-Sink-Auth-User")),
        (Some("yes"), Some("dba"))
    );
    let subject = mails[0].header("Subject").unwrap();
    assert!(
        subject.starts_with("[dbbackup] create failure") && subject.contains("FAILING: create"),
        "{subject}"
    );
    assert!(
        mails[0].body.contains("expected:   `create` succeeds") && mails[0].body.contains("found:      "),
        "{}",
        mails[0].body
    );
    assert!(!mails[0].raw.contains(&password));
    // A password over an unencrypted connection is a configuration error (exit 2), said without it.
    env.push(("DBBACKUP_SMTP_TLS", "none".to_string()));
    let out = dbbackup(&["status", "--repo", repo], &env);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("in clear") && !err.contains(&password), "{err}");
}

#[test]
fn the_config_file_takes_the_alert_settings_and_the_environment_wins() {
    let (url, seen) = http_server();
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo");
    let repo = repo.to_str().unwrap();
    let cfg = dir.path().join("dbbackup.toml");
    std::fs::write(
        &cfg,
        format!(
            "max-age = \"26h\"\n\n[alerts]\nwebhook_url = \"{url}/file\"\nDBBACKUP_NOTIFY_REPEAT = \"1s\"\n"
        ),
    )
    .unwrap();
    let cfg = cfg.to_str().unwrap();
    let out = dbbackup(&["--config", cfg, "status", "--repo", repo], &[]);
    assert_eq!(out.status.code(), Some(4), "{}", String::from_utf8_lossy(&out.stderr));
    let hooks = take_posts(&seen, "/file");
    assert_eq!(hooks.len(), 1, "the file's webhook got no alert");
    assert!(hooks[0]["message"].as_str().unwrap().starts_with("FAILING: has_backup"), "{hooks:?}");
    // The file's repeat interval applies: a reminder after a second.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    // The environment wins over the file.
    let env = [("DBBACKUP_WEBHOOK_URL", format!("{url}/env"))];
    dbbackup(&["--config", cfg, "status", "--repo", repo], &env);
    let got: Vec<String> = std::mem::take(&mut *seen.lock().unwrap());
    assert!(
        got.len() == 1 && got[0].starts_with("POST /env ") && got[0].contains("STILL FAILING"),
        "{got:?}"
    );
    // A typo in [alerts] is a configuration error, not alerts silently off.
    std::fs::write(dir.path().join("bad.toml"), "[alerts]\nslack_webhok = \"x\"\n").unwrap();
    let bad = dir.path().join("bad.toml");
    let out = dbbackup(&["--config", bad.to_str().unwrap(), "status", "--repo", repo], &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("slack_webhok"), "{err}");
}
