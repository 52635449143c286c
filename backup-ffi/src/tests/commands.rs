//! Each command through the C ABI: round trips, error statuses and JSON, guard, copy, undo,
//! per-repository store settings.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::undocumented_unsafe_blocks)]

use super::*;

#[test]
fn sqlite_create_list_verify_restore_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("app.sqlite");
    make_db(&src, 4);
    let repo = dir.path().join("repo").display().to_string();
    let h = Handle::new();

    let (code, created) = h.call(
        dbb_create,
        &json!({"source": format!("sqlite://{}", src.display()), "repo": [repo], "tag": "nightly", "jobs": 2}),
    );
    assert_eq!(code, 0, "{created}");
    assert!(last_error().is_null());
    let id = created["id"].as_str().unwrap().to_string();
    assert_eq!(created["tables"], 2);
    assert_eq!(created["rows"], 204);

    let (code, listed) = h.call(dbb_list, &json!({"repo": repo}));
    assert_eq!(code, 0, "{listed}");
    assert_eq!(listed["backups"][0]["id"], id.as_str());
    assert_eq!(listed["backups"][0]["tags"], json!(["nightly"]));

    let (code, verified) = h.call(dbb_verify, &json!({"repo": repo, "backup": id, "level": "full"}));
    assert_eq!(code, 0, "{verified}");
    assert_eq!(verified["ok"], true);
    assert_eq!(verified["level"], "full");

    let into = dir.path().join("restored.sqlite");
    let (code, restored) = h.call(
        dbb_restore,
        &json!({"repo": repo, "backup": "latest", "into": format!("sqlite://{}", into.display())}),
    );
    assert_eq!(code, 0, "{restored}");
    assert_eq!(restored["id"], id.as_str());
    assert_eq!(restored["rows"], 204);
    // All of it: both tables' rows (the blobs too) and the schema (tables and the index).
    let (schema, tables) = content(&src);
    assert_eq!((schema.len(), tables.len(), tables[0].1.len() + tables[1].1.len()), (3, 2, 204));
    assert!(content(&into) == (schema, tables), "the restored database differs from the source");

    // The progress snapshot describes the finished restore.
    let p = take(unsafe { dbb_progress(h.0) });
    assert_eq!(p["operation"], "restore");
    assert_eq!(p["running"], false);
    assert!(p["objects"].as_u64().unwrap() > 0, "{p}");
}

#[test]
fn errors_map_to_cli_exit_codes_with_a_json_error() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("a.sqlite");
    make_db(&src, 0);
    let repo = dir.path().join("repo").display().to_string();
    let h = Handle::new();
    let (code, created) =
        h.call(dbb_create, &json!({"source": format!("sqlite://{}", src.display()), "repo": repo}));
    assert_eq!(code, 0, "{created}");

    // Unknown backup: 5, and the error lists what exists.
    let into = format!("sqlite://{}", dir.path().join("b.sqlite").display());
    let (code, out) =
        h.call(dbb_restore, &json!({"repo": repo, "backup": "20200101T000000Z-dead", "into": into}));
    assert_eq!(code, DBB_NOT_FOUND);
    assert_eq!(out["ok"], false);
    assert_eq!(out["error"]["kind"], "not_found");
    assert_eq!(out["error"]["available"], json!([created["id"]]));
    let e = last_error();
    assert_eq!(e, out["error"]);
    assert_eq!(e["code"], 5);

    // Typo in an option: 2.
    let (code, out) = h.call(dbb_list, &json!({"repo": repo, "tags": "x"}));
    assert_eq!(code, DBB_USAGE, "{out}");
    assert!(out["error"]["message"].as_str().unwrap().contains("tags"));

    // Production without force: 2 (confirmation required), nothing restored: the live database
    // (other content than the backup's) is byte for byte what it was, and nothing was written
    // beside it.
    let prod = dir.path().join("prod.sqlite");
    make_db(&prod, 1);
    rusqlite::Connection::open(&prod).unwrap().execute_batch("UPDATE users SET name = 'live'").unwrap();
    let (bytes, listing) = (std::fs::read(&prod).unwrap(), walk(dir.path()));
    let into_prod = format!("sqlite://{}", prod.display());
    let (code, out) = h.call(dbb_restore, &json!({"repo": repo, "into": into_prod, "production": true}));
    assert_eq!(code, DBB_USAGE, "{out}");
    assert!(out["error"]["message"].as_str().unwrap().contains("production"), "{out}");
    assert!(std::fs::read(&prod).unwrap() == bytes, "a refused restore changed the database");
    assert_eq!(walk(dir.path()), listing);
    assert!(!dir.path().join("b.sqlite").exists());

    // A success clears the thread's last error.
    let (code, _) = h.call(dbb_list, &json!({"repo": repo}));
    assert_eq!(code, 0);
    assert!(last_error().is_null());

    // Malformed input straight from C: invalid JSON, invalid UTF-8, NULL client.
    let mut out: *mut c_char = std::ptr::null_mut();
    assert_eq!(unsafe { dbb_list(h.0, c"{".as_ptr(), &mut out) }, DBB_USAGE);
    assert_eq!(take(out)["error"]["kind"], "usage");
    let bad = [0xffu8, 0xfe, 0];
    assert_eq!(unsafe { dbb_list(h.0, bad.as_ptr().cast(), std::ptr::null_mut()) }, DBB_USAGE);
    assert!(last_error()["message"].as_str().unwrap().contains("UTF-8"));
    // A NULL client has its own status, distinct from a usage error and from a panic.
    assert_eq!(unsafe { dbb_list(std::ptr::null(), c"{}".as_ptr(), &mut out) }, DBB_NULL_ARGUMENT);
    assert_eq!(take(out)["error"]["kind"], "null_argument");
    assert_eq!(last_error()["code"], DBB_NULL_ARGUMENT);
    assert_eq!(unsafe { dbb_cancel(std::ptr::null()) }, DBB_NULL_ARGUMENT);
    assert_eq!(
        unsafe { dbb_client_set_progress_callback(std::ptr::null(), None, std::ptr::null_mut(), 0) },
        DBB_NULL_ARGUMENT
    );
    let mut out: *mut c_char = std::ptr::null_mut();
    assert_eq!(
        unsafe { dbb_guard(h.0, c"{}".as_ptr(), None, std::ptr::null_mut(), &mut out) },
        DBB_NULL_ARGUMENT
    );
    assert!(take(out)["error"]["message"].as_str().unwrap().contains("command callback"));
    assert!(unsafe { dbb_progress(std::ptr::null()) }.is_null());
    unsafe { dbb_string_free(std::ptr::null_mut()) };
    unsafe { dbb_client_free(std::ptr::null_mut()) };
    assert!(unsafe { dbb_client_new(c"{\"bogus\":1}".as_ptr()) }.is_null());
    assert_eq!(last_error()["kind"], "usage");
}

#[test]
fn a_damaged_backup_verifies_with_status_3_and_its_report() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("a.sqlite");
    make_db(&src, 2);
    let repo = dir.path().join("repo");
    let h = Handle::new();
    let (code, created) = h.call(
        dbb_create,
        &json!({"source": format!("sqlite://{}", src.display()), "repo": repo.display().to_string()}),
    );
    assert_eq!(code, 0, "{created}");
    // Flip one byte in the largest stored data object.
    let mut objects: Vec<_> =
        walk(&repo).into_iter().filter(|p| p.to_string_lossy().contains("/data/")).collect();
    objects.sort_by_key(|p| std::fs::metadata(p).unwrap().len());
    let victim = objects.last().unwrap();
    let mut bytes = std::fs::read(victim).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x55;
    std::fs::write(victim, bytes).unwrap();

    let (code, report) = h.call(dbb_verify, &json!({"repo": repo.display().to_string(), "level": "full"}));
    assert_eq!(code, DBB_INTEGRITY, "{report}");
    assert_eq!(report["ok"], false);
    assert!(!report["findings"].as_array().unwrap().is_empty());
    assert_eq!(last_error()["kind"], "integrity");
}

#[test]
fn a_panic_has_its_own_status_and_the_client_keeps_working() {
    let dir = tempfile::tempdir().unwrap();
    let h = Handle::new();
    let repo = dir.path().join("repo").display().to_string();
    let (code, out) = h.call(dbb_list, &json!({"repo": repo, "debug_panic": true}));
    assert_eq!(code, DBB_PANIC);
    assert_ne!(DBB_PANIC, DBB_FAILED);
    assert_eq!(out["error"]["kind"], "panic");
    assert!(out["error"]["message"].as_str().unwrap().contains("panic"), "{out}");
    assert!(last_error()["message"].as_str().unwrap().contains("debug_panic"));
    let (code, out) = h.call(dbb_list, &json!({"repo": repo}));
    assert_eq!(code, 0, "{out}");
}

#[test]
fn version_is_static() {
    let v = unsafe { CStr::from_ptr(dbb_version()) }.to_str().unwrap();
    assert_eq!(v, env!("CARGO_PKG_VERSION"));
}

#[test]
fn prune_and_status_through_the_abi() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("a.sqlite");
    make_db(&src, 0);
    let repo = dir.path().join("repo").display().to_string();
    let h = Handle::new();
    let source = format!("sqlite://{}", src.display());
    let (code, first) = h.call(dbb_create, &json!({"source": source, "repo": repo}));
    assert_eq!(code, 0, "{first}");
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let (code, second) = h.call(dbb_create, &json!({"source": source, "repo": repo}));
    assert_eq!(code, 0, "{second}");

    // A backup never verified is unhealthy: verify first.
    let (code, v) = h.call(dbb_verify, &json!({"repo": repo, "level": "quick"}));
    assert_eq!(code, 0, "{v}");
    let (code, st) = h.call(dbb_status, &json!({"repo": [repo], "max_age": "1h"}));
    assert_eq!(code, 0, "{st}");
    assert_eq!(st["healthy"], true);
    let (code, st) = h.call(dbb_status, &json!({"repo": repo, "max_size": 1}));
    assert_eq!(code, DBB_UNHEALTHY, "{st}");
    assert_eq!(st["healthy"], false);
    assert_eq!(last_error()["kind"], "unhealthy");

    let (code, pr) = h.call(dbb_prune, &json!({"repo": repo, "keep_last": 1}));
    assert_eq!(code, 0, "{pr}");
    assert_eq!(pr["removed"], 1);
    let (_, listed) = h.call(dbb_list, &json!({"repo": repo}));
    let ids: Vec<&str> =
        listed["backups"].as_array().unwrap().iter().map(|b| b["id"].as_str().unwrap()).collect();
    assert_eq!(ids, vec![second["id"].as_str().unwrap()]);
}

#[test]
fn guard_rolls_back_a_failed_command_and_keeps_a_successful_one() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("g.sqlite");
    make_db(&src, 20);
    let before = rows(&src);
    let repo = dir.path().join("repo").display().to_string();
    let source = format!("sqlite://{}", src.display());
    let h = Handle::new();
    let guard_call = |status: i32| {
        let data = (src.clone(), status);
        let text = CString::new(json!({"source": source, "repo": repo}).to_string()).unwrap();
        let mut out: *mut c_char = std::ptr::null_mut();
        let code = unsafe {
            dbb_guard(
                h.0,
                text.as_ptr(),
                Some(command_exits_with),
                (&raw const data).cast_mut().cast(),
                &mut out,
            )
        };
        (code, take(out))
    };
    let (code, report) = guard_call(3);
    assert_eq!(code, DBB_OK, "{report}");
    assert_eq!((report["command_status"].as_i64(), report["rolled_back"].as_bool()), (Some(3), Some(true)));
    assert!(report["recovery_ms"].is_u64());
    assert_eq!(rows(&src), before, "the failed command's changes are rolled back");
    let (code, report) = guard_call(0);
    assert_eq!(code, DBB_OK, "{report}");
    assert_eq!(report["rolled_back"], false);
    assert_eq!(rows(&src).len(), before.len() / 2, "a successful command's changes stay");
    // --max-rto without any drill recorded: refused before anything runs (status 4).
    let text = CString::new(json!({"source": source, "repo": repo, "max_rto": "1h"}).to_string()).unwrap();
    let mut out: *mut c_char = std::ptr::null_mut();
    let data = (src.clone(), 0);
    let code = unsafe {
        dbb_guard(h.0, text.as_ptr(), Some(command_exits_with), (&raw const data).cast_mut().cast(), &mut out)
    };
    assert_eq!(code, DBB_UNHEALTHY, "{}", take(out));
}

#[test]
fn copy_moves_a_backup_between_repositories() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("c.sqlite");
    make_db(&src, 5);
    let (a, b) = (dir.path().join("a").display().to_string(), dir.path().join("b").display().to_string());
    let h = Handle::new();
    let (code, created) =
        h.call(dbb_create, &json!({"source": format!("sqlite://{}", src.display()), "repo": a}));
    assert_eq!(code, 0, "{created}");
    let (code, copied) = h.call(dbb_copy, &json!({"from": a, "to": b}));
    assert_eq!(code, 0, "{copied}");
    assert_eq!(copied["id"], created["id"]);
    let (code, listed) = h.call(dbb_list, &json!({"repo": b}));
    assert_eq!((code, listed["backups"][0]["id"].clone()), (0, created["id"].clone()));
    let (code, out) = h.call(dbb_copy, &json!({"from": a}));
    assert_eq!(code, DBB_USAGE, "{out}");
}

#[test]
fn repo_settings_are_per_repository_and_checked() {
    // A misspelt setting name is a usage error naming it (never a silently dropped credential).
    let h = Handle::new();
    let (code, out) = h.call(
        dbb_list,
        &json!({"repo": "s3://b/x", "repo_settings": {"s3://b/x": {"AWS_ACESS_KEY_ID": "k"}}}),
    );
    assert_eq!(code, DBB_USAGE, "{out}");
    assert!(out["error"]["message"].as_str().unwrap().contains("AWS_ACESS_KEY_ID"), "{out}");
    // Against the S3 emulator: two repositories in one client and one call sequence, one with a
    // working endpoint, the other with an endpoint where nothing listens. Each is opened with its
    // own settings, whatever order they are used in (moto accepts any key, so the endpoints are
    // what tells them apart).
    let Some(endpoint) = std::env::var("DBBACKUP_TEST_S3_ENDPOINT").ok().filter(|e| !e.is_empty()) else {
        eprintln!("SKIPPED: DBBACKUP_TEST_S3_ENDPOINT is not set");
        return;
    };
    let bucket = std::env::var("DBBACKUP_TEST_S3_BUCKET").unwrap();
    let n = std::process::id();
    let good = format!("s3://{bucket}/ffi-settings-{n}/good");
    let bad = format!("s3://{bucket}/ffi-settings-{n}/bad");
    let s3 = |endpoint: &str| {
        json!({"AWS_ACCESS_KEY_ID": "k1", "AWS_SECRET_ACCESS_KEY": "s1", "AWS_DEFAULT_REGION": "us-east-1",
               "AWS_ENDPOINT": endpoint, "DBBACKUP_STORE_MAX_RETRIES": 0, "DBBACKUP_STORE_RETRY_TIMEOUT": 1})
    };
    let settings = json!({ good.clone(): s3(&endpoint), bad.clone(): s3("http://127.0.0.1:9") });
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("s.sqlite");
    make_db(&src, 3);
    let source = format!("sqlite://{}", src.display());
    let (code, created) =
        h.call(dbb_create, &json!({"source": source, "repo": [good.clone()], "repo_settings": settings}));
    assert_eq!(code, 0, "{created}");
    let (code, out) = h.call(dbb_list, &json!({"repo": bad, "repo_settings": settings}));
    assert_eq!(code, DBB_FAILED, "the repository with the wrong endpoint must fail: {out}");
    let (code, listed) = h.call(dbb_list, &json!({"repo": good, "repo_settings": settings}));
    assert_eq!(code, 0, "{listed}");
    assert_eq!(listed["backups"][0]["id"], created["id"]);
}

/// Two S3 repositories with different keys in one client, against the moto instance that checks
/// signatures and IAM policies (scripts/services.sh start_moto_iam: user A's key may only touch
/// bucket A, user B's only bucket B). One create writes both, one copy reads A with key A and
/// writes B with key B; each key is refused on the other bucket, so a repository opened with the
/// wrong settings fails here.
#[test]
fn two_repositories_with_their_own_keys_against_a_checking_s3() {
    let Some(endpoint) = dbbackup_tests::service_env("DBBACKUP_TEST_S3_IAM_ENDPOINT") else { return };
    let var = |n: &str| std::env::var(format!("DBBACKUP_TEST_S3_IAM_{n}")).unwrap();
    let prefix = dbbackup_tests::unique("ffi-keys");
    let repo = |u: &str| format!("s3://{}/{prefix}", var(&format!("BUCKET_{u}")));
    let keys = |u: &str| {
        json!({"AWS_ACCESS_KEY_ID": var(&format!("KEY_{u}")), "AWS_SECRET_ACCESS_KEY": var(&format!("SECRET_{u}")),
               "AWS_DEFAULT_REGION": "us-east-1", "AWS_ENDPOINT": endpoint, "DBBACKUP_STORE_MAX_RETRIES": 0})
    };
    let (a, b) = (repo("A"), repo("B"));
    let settings = json!({ a.clone(): keys("A"), b.clone(): keys("B") });
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("s.sqlite");
    make_db(&src, 1);
    let source = format!("sqlite://{}", src.display());
    let h = Handle::new();
    let (code, first) =
        h.call(dbb_create, &json!({"source": source, "repo": [a, b], "repo_settings": settings}));
    assert_eq!(code, 0, "{first}");
    assert_eq!(first["failed_repos"], json!([]), "{first}");
    let (code, second) = h.call(dbb_create, &json!({"source": source, "repo": a, "repo_settings": settings}));
    assert_eq!(code, 0, "{second}");
    let (code, copied) = h.call(dbb_copy, &json!({"from": a, "to": b, "repo_settings": settings}));
    assert_eq!((code, &copied["id"]), (0, &second["id"]), "{copied}");
    let mut want = vec![first["id"].to_string(), second["id"].to_string()];
    want.sort();
    for r in [&a, &b] {
        let (code, listed) = h.call(dbb_list, &json!({"repo": r, "repo_settings": settings}));
        assert_eq!(code, 0, "{listed}");
        let mut ids: Vec<String> =
            listed["backups"].as_array().unwrap().iter().map(|b| b["id"].to_string()).collect();
        ids.sort();
        assert_eq!(ids, want, "{r}: {listed}");
    }
    // Each key on the other user's bucket is refused (so the emulator tells the keys apart).
    for (r, k) in [(&b, "A"), (&a, "B")] {
        let (code, out) = h.call(dbb_list, &json!({"repo": r, "repo_settings": { r.clone(): keys(k) }}));
        assert_eq!(code, DBB_FAILED, "{r} with key {k}: {out}");
        assert!(out["error"]["message"].as_str().unwrap().contains("access denied"), "{out}");
    }
}

/// Undo through the ABI: `dbb_restore` keeps what it replaced in `undo_dir` (the report's
/// `undo`, listed by `dbb_status`), `"undo": true` puts it back exactly (no `repo` needed),
/// `keep_undo` takes a duration, `no_undo` keeps nothing and then `undo` fails with 5.
#[test]
fn restore_keeps_an_undo_copy_and_undo_puts_it_back() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("a.sqlite");
    make_db(&src, 1);
    let target = dir.path().join("b.sqlite");
    make_db(&target, 0);
    rusqlite::Connection::open(&target).unwrap().execute_batch("DELETE FROM users WHERE id > 7").unwrap();
    let before = dump(&target);
    let repo = dir.path().join("repo").display().to_string();
    let undo_dir = dir.path().join("undo").display().to_string();
    let into = format!("sqlite://{}", target.display());
    let h = Handle::new();
    let (code, created) =
        h.call(dbb_create, &json!({"source": format!("sqlite://{}", src.display()), "repo": repo}));
    assert_eq!(code, 0, "{created}");

    let (code, r) =
        h.call(dbb_restore, &json!({"repo": repo, "into": into, "undo_dir": undo_dir, "keep_undo": "2h"}));
    assert_eq!(code, 0, "{r}");
    assert_eq!(dump(&target), dump(&src));
    let kept = r["undo"]["id"].as_str().expect("an undo copy").to_string();
    let (_, st) = h.call(dbb_status, &json!({"repo": repo, "undo_dir": undo_dir}));
    assert_eq!(st["undo"][0]["id"], kept.as_str(), "{st}");

    let (code, u) = h.call(dbb_restore, &json!({"into": into, "undo": true, "undo_dir": undo_dir}));
    assert_eq!(code, 0, "{u}");
    assert_eq!(u["id"], kept.as_str());
    assert_eq!(dump(&target), before, "undo did not put the database back");

    let (code, r) =
        h.call(dbb_restore, &json!({"repo": repo, "into": into, "undo_dir": undo_dir, "no_undo": true}));
    assert_eq!(code, 0, "{r}");
    assert!(r["undo"].is_null(), "{r}");
    let (code, e) = h.call(dbb_restore, &json!({"into": into, "undo": true, "undo_dir": undo_dir}));
    assert_eq!(code, 5, "{e}");
    assert!(last_error()["message"].as_str().unwrap().contains("undo copy of"), "{}", last_error());
    assert_eq!(dump(&target), dump(&src));
}
