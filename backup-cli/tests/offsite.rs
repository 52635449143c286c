//! Off-site through the real binary: SQLite backup/verify/restore via s3:// (moto) and az://
//! (Azurite) in one 3-2-1 pass, `status` (healthy, unhealthy = exit 4), `copy`, `prune`, and
//! alerts delivered to a local HTTP server (and a dead one that must not change the outcome).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::TcpListener;
use std::process::{Command, Output};

use dbbackup_tests::receiver::http_server;
use serde_json::Value;

const AZURITE_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

fn dbbackup(args: &[&str], env: &[(&str, String)]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_dbbackup"));
    c.args(args).env_remove("APP_ENV").env_remove("DBBACKUP_REPO");
    for k in
        ["DBBACKUP_SLACK_WEBHOOK", "DBBACKUP_WEBHOOK_URL", "DBBACKUP_HEARTBEAT_URL", "DBBACKUP_NOTIFY_ON"]
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

fn unique(p: &str) -> String {
    let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    format!("{p}-{}-{t}", std::process::id())
}

fn make_db(path: &std::path::Path) {
    let c = rusqlite::Connection::open(path).unwrap();
    c.execute_batch(
        "create table users (id integer primary key, email text, blob blob);
         with recursive n(i) as (select 1 union all select i + 1 from n where i < 5000)
         insert into users select i, 'user' || i || '@example.com', randomblob(64) from n;",
    )
    .unwrap();
}

fn dump(path: &std::path::Path) -> Vec<(i64, String, Vec<u8>)> {
    let c = rusqlite::Connection::open(path).unwrap();
    let mut st = c.prepare("select id, email, blob from users order by id").unwrap();
    st.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?))).unwrap().map(Result::unwrap).collect()
}

#[test]
fn three_two_one_through_s3_and_azure() {
    let (Some(s3), Some(bucket), Some(az), Some(container)) = (
        dbbackup_tests::service_env("DBBACKUP_TEST_S3_ENDPOINT"),
        dbbackup_tests::service_env("DBBACKUP_TEST_S3_BUCKET"),
        dbbackup_tests::service_env("DBBACKUP_TEST_AZURITE_URL"),
        dbbackup_tests::service_env("DBBACKUP_TEST_AZ_CONTAINER"),
    ) else {
        return;
    };
    let env: Vec<(&str, String)> = vec![
        ("AWS_ACCESS_KEY_ID", "test".into()),
        ("AWS_SECRET_ACCESS_KEY", "test".into()),
        ("AWS_DEFAULT_REGION", "us-east-1".into()),
        ("AWS_ENDPOINT", s3),
        ("AWS_BUCKET", bucket),
        ("AZURE_STORAGE_ACCOUNT_NAME", "devstoreaccount1".into()),
        ("AZURE_STORAGE_ACCOUNT_KEY", AZURITE_KEY.into()),
        ("AZURE_STORAGE_ENDPOINT", az),
        ("DBBACKUP_STORE_MAX_RETRIES", "2".into()),
        ("DBBACKUP_STORE_RETRY_TIMEOUT", "5".into()),
    ];
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("app.sqlite");
    make_db(&db);
    let src = format!("sqlite://{}", db.display());
    // s3:/// without a bucket: AWS_BUCKET (Laravel's variable) names it.
    let s3_repo = format!("s3:///{}", unique("cli"));
    let az_repo = format!("az://{container}/{}", unique("cli"));
    let out = dbbackup(&["create", "--json", "--source", &src, "--repo", &s3_repo, "--repo", &az_repo], &env);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let id = json(&out)["id"].as_str().unwrap().to_string();
    for repo in [&s3_repo, &az_repo] {
        let out = dbbackup(&["verify", "--json", "--repo", repo, &id, "--level", "full"], &env);
        assert!(out.status.success(), "{repo}: {}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(json(&out)["ok"], true);
        let into = dir.path().join(format!("restored-{}.sqlite", &repo[..2]));
        let out = dbbackup(
            &["restore", "--repo", repo, &id, "--into", &format!("sqlite://{}", into.display())],
            &env,
        );
        assert!(out.status.success(), "{repo}: {}", String::from_utf8_lossy(&out.stderr));
        assert!(dump(&into) == dump(&db), "{repo}: restored content differs");
    }
    // Both copies present and identical: healthy, with the verification recorded above.
    let out =
        dbbackup(&["status", "--json", "--repo", &s3_repo, "--repo", &az_repo, "--max-age", "1h"], &env);
    let st = json(&out);
    assert_eq!(out.status.code(), Some(0), "{st}");
    assert_eq!(st["healthy"], true);
    let checks = st["checks"].as_array().unwrap();
    assert!(checks.iter().any(|c| c["name"] == "copies" && c["ok"] == true), "{st}");
    assert!(
        checks
            .iter()
            .any(|c| c["name"] == "last_verification" && c["message"].as_str().unwrap().contains("full")),
        "{st}"
    );
    // A third repository without the backup breaks 3-2-1 (exit 4) until `copy` fixes it.
    let local = dir.path().join("offline-copy");
    let local = local.to_str().unwrap();
    let out = dbbackup(&["status", "--repo", &s3_repo, "--repo", local], &env);
    assert_eq!(out.status.code(), Some(4), "{}", String::from_utf8_lossy(&out.stdout));
    assert!(String::from_utf8_lossy(&out.stdout).contains("UNHEALTHY"));
    let out = dbbackup(&["copy", "--json", "--from", &az_repo, "--to", local, "latest"], &env);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let c = json(&out);
    assert_eq!((c["id"].as_str().unwrap(), c["already_present"].as_bool()), (id.as_str(), Some(false)));
    let out = dbbackup(&["copy", "--json", "--from", &s3_repo, "--to", local, &id], &env);
    assert_eq!(json(&out)["already_present"], true);
    let out = dbbackup(&["status", "--repo", &s3_repo, "--repo", &az_repo, "--repo", local], &env);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stdout));
    // Prune on S3: a second backup, keep-last 1; the dry run deletes nothing.
    let out = dbbackup(&["create", "--json", "--source", &src, "--repo", &s3_repo], &env);
    let id2 = json(&out)["id"].as_str().unwrap().to_string();
    // Prune never deletes the newest verified backup: verify the new one so the old one may go.
    let out = dbbackup(&["verify", "--repo", &s3_repo, &id2, "--level", "quick"], &env);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = dbbackup(&["prune", "--repo", &s3_repo, "--keep-last", "1", "--dry-run"], &env);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains(&format!("REMOVE {id}")) && text.contains("dry run"),
        "{text}"
    );
    let out = dbbackup(&["list", "--json", "--repo", &s3_repo], &env);
    assert_eq!(json(&out)["backups"].as_array().unwrap().len(), 2);
    let out = dbbackup(&["prune", "--json", "--repo", &s3_repo, "--keep-last", "1"], &env);
    assert_eq!(json(&out)["removed"], 1);
    let out = dbbackup(&["list", "--json", "--repo", &s3_repo], &env);
    let ids: Vec<String> = json(&out)["backups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids, vec![id2]);
    // One repository failing (a bucket that does not exist): the backup lands in the other,
    // the run exits 1 and says where the backup is missing and why.
    let solo = dir.path().join("solo");
    let solo = solo.to_str().unwrap();
    let out =
        dbbackup(&["create", "--source", &src, "--repo", solo, "--repo", "s3://no-such-bucket-dbb/x"], &env);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("is NOT in s3://no-such-bucket-dbb/x") && err.contains("does not exist"), "{err}");
    let out = dbbackup(&["verify", "--json", "--repo", solo], &env);
    assert_eq!(json(&out)["ok"], true);
}

#[test]
fn alerts_reach_slack_webhook_and_heartbeat_and_never_change_the_outcome() {
    let (url, seen) = http_server();
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty-repo");
    let env = vec![
        ("DBBACKUP_SLACK_WEBHOOK", format!("{url}/slack/T000/B000/secret")),
        ("DBBACKUP_WEBHOOK_URL", format!("{url}/hook")),
        ("DBBACKUP_HEARTBEAT_URL", format!("{url}/hb/uuid")),
    ];
    // No backup at all: unhealthy -> exit 4, and all three channels hear about it.
    let out = dbbackup(&["status", "--repo", empty.to_str().unwrap()], &env);
    assert_eq!(out.status.code(), Some(4));
    let mut got = seen.lock().unwrap().clone();
    got.sort();
    assert_eq!(got.len(), 3, "{got:?}");
    assert_eq!(got[0], "GET /hb/uuid/fail ");
    let hook: Value = serde_json::from_str(got[1].strip_prefix("POST /hook ").unwrap()).unwrap();
    assert_eq!((hook["command"].as_str(), hook["outcome"].as_str()), (Some("status"), Some("unhealthy")));
    let slack: Value =
        serde_json::from_str(got[2].strip_prefix("POST /slack/T000/B000/secret ").unwrap()).unwrap();
    assert!(slack["text"].as_str().unwrap().contains("dbbackup status unhealthy"), "{slack}");
    // A successful backup pings the heartbeat only (Slack/webhook default to failures).
    seen.lock().unwrap().clear();
    let db = dir.path().join("a.sqlite");
    make_db(&db);
    let repo = dir.path().join("repo");
    let args =
        ["create", "--source", &format!("sqlite://{}", db.display()), "--repo", repo.to_str().unwrap()];
    let out = dbbackup(&args, &env);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(seen.lock().unwrap().clone(), vec!["GET /hb/uuid ".to_string()]);
    // Dead endpoints: the backup still succeeds, with a warning that does not leak the secret path.
    let dead = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let env = vec![
        ("DBBACKUP_SLACK_WEBHOOK", format!("http://{dead}/services/T/B/topsecret")),
        ("DBBACKUP_HEARTBEAT_URL", format!("http://{dead}/hb")),
        ("DBBACKUP_NOTIFY_ON", "success,failure".to_string()),
    ];
    let out = dbbackup(&args, &env);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("notification not delivered") && !err.contains("topsecret"), "{err}");
}
