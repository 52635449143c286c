//! The C ABI called the way C (or PHP's FFI) calls it: raw pointers in, owned strings out.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::undocumented_unsafe_blocks)]

use dbbackup_tests::{pg_db, psql};
use std::ffi::{CStr, CString, c_char, c_void};
use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use serde_json::{Value, json};

use super::*;

type Op = unsafe extern "C" fn(*const dbb_client, *const c_char, *mut *mut c_char) -> i32;

struct Handle(*mut dbb_client);

impl Handle {
    fn new() -> Self {
        let c = unsafe { dbb_client_new(c"{\"worker_threads\": 2}".as_ptr()) };
        assert!(!c.is_null());
        Handle(c)
    }

    fn ptr(&self) -> *mut dbb_client {
        self.0
    }

    fn call(&self, op: Op, options: &Value) -> (i32, Value) {
        let text = CString::new(options.to_string()).unwrap();
        let mut out: *mut c_char = std::ptr::null_mut();
        let code = unsafe { op(self.0, text.as_ptr(), &mut out) };
        (code, take(out))
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        unsafe { dbb_client_free(self.0) }
    }
}

// SAFETY (test): the client is Sync; the pointer is only shared for dbb_cancel/dbb_progress.
unsafe impl Send for Handle {}
unsafe impl Sync for Handle {}

/// Takes ownership of a library string, parses it and frees it.
fn take(s: *mut c_char) -> Value {
    if s.is_null() {
        return Value::Null;
    }
    let text = unsafe { CStr::from_ptr(s) }.to_str().unwrap().to_string();
    unsafe { dbb_string_free(s) };
    serde_json::from_str(&text).unwrap()
}

fn make_db(path: &Path, blob_rows: usize) {
    let db = rusqlite::Connection::open(path).unwrap();
    db.execute_batch(
        "CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT NOT NULL, email TEXT);
         CREATE TABLE blobs (id INTEGER PRIMARY KEY, data BLOB);
         CREATE INDEX users_email ON users(email);",
    )
    .unwrap();
    let tx = db.unchecked_transaction().unwrap();
    for i in 0..200 {
        tx.execute(
            "INSERT INTO users (name, email) VALUES (?1, ?2)",
            (format!("user {i} é"), format!("u{i}@x.test")),
        )
        .unwrap();
    }
    for i in 0..blob_rows {
        // Incompressible-ish bytes so compression does real work.
        let data: Vec<u8> = (0..65536u32)
            .map(|j| (j.wrapping_mul(2_654_435_761).wrapping_add(i as u32) >> 13) as u8)
            .collect();
        tx.execute("INSERT INTO blobs (data) VALUES (?1)", [data]).unwrap();
    }
    tx.commit().unwrap();
}

/// Everything in a SQLite database: its schema (every object's type, name and SQL) and every
/// table's rows, all columns, in rowid order.
type Content = (Vec<(String, String, Option<String>)>, Vec<(String, Vec<Vec<rusqlite::types::Value>>)>);

fn content(path: &Path) -> Content {
    let db = rusqlite::Connection::open(path).unwrap();
    let mut st = db
        .prepare(
            "SELECT type, name, sql FROM sqlite_master WHERE name NOT LIKE 'sqlite_%' ORDER BY type, name",
        )
        .unwrap();
    let schema: Vec<(String, String, Option<String>)> =
        st.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?))).unwrap().map(Result::unwrap).collect();
    let mut tables = Vec::new();
    for (kind, name, _) in &schema {
        if kind != "table" {
            continue;
        }
        let mut st = db.prepare(&format!("SELECT * FROM \"{name}\" ORDER BY rowid")).unwrap();
        let n = st.column_count();
        let rows: Vec<Vec<rusqlite::types::Value>> = st
            .query_map([], |r| (0..n).map(|i| r.get::<_, rusqlite::types::Value>(i)).collect())
            .unwrap()
            .map(Result::unwrap)
            .collect();
        tables.push((name.clone(), rows));
    }
    (schema, tables)
}

fn last_error() -> Value {
    take(dbb_last_error())
}

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

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() { out.extend(walk(&p)) } else { out.push(p) }
    }
    out.sort();
    out
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
fn deadline_and_cancel_stop_a_backup_without_leaving_one() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("big.sqlite");
    make_db(&src, 400); // ~26 MiB
    let repo = dir.path().join("repo").display().to_string();
    let source = format!("sqlite://{}", src.display());
    let h = Handle::new();

    let (code, out) = h.call(dbb_create, &json!({"source": source, "repo": repo, "timeout_ms": 1}));
    assert_eq!(code, DBB_CANCELLED, "{out}");
    assert!(out["error"]["message"].as_str().unwrap().contains("deadline"), "{out}");

    // dbb_cancel from another thread, as soon as the backup is seen running.
    let (code, out) = std::thread::scope(|s| {
        let hr = &h;
        let canceller = s.spawn(move || {
            for _ in 0..5000 {
                let p = take(unsafe { dbb_progress(hr.ptr()) });
                if p["running"] == true && p["operation"] == "create" {
                    assert_eq!(unsafe { dbb_cancel(hr.ptr()) }, 0);
                    return true;
                }
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
            false
        });
        let r =
            h.call(dbb_create, &json!({"source": source, "repo": repo, "compression": "zstd:19", "jobs": 1}));
        assert!(canceller.join().unwrap(), "never saw the backup running");
        r
    });
    assert_eq!(code, DBB_CANCELLED, "{out}");

    let (code, listed) = h.call(dbb_list, &json!({"repo": repo}));
    assert_eq!(code, 0);
    assert_eq!(listed["backups"], json!([]), "a cancelled backup must not exist");

    // The client is usable again after a cancel.
    let (code, out) = h.call(dbb_create, &json!({"source": source, "repo": repo, "compression": "none"}));
    assert_eq!(code, 0, "{out}");
}

static CALLS: AtomicUsize = AtomicUsize::new(0);
static THREADS: Mutex<Vec<std::thread::ThreadId>> = Mutex::new(Vec::new());
static SNAPSHOTS: Mutex<Vec<Value>> = Mutex::new(Vec::new());

unsafe extern "C" fn on_progress(json: *const c_char, user_data: *mut c_void) {
    let text = unsafe { CStr::from_ptr(json) }.to_str().unwrap();
    let v: Value = serde_json::from_str(text).unwrap();
    assert!(v.get("operation").is_some());
    assert_eq!(user_data as usize, 42);
    CALLS.fetch_add(1, Ordering::SeqCst);
    THREADS.lock().unwrap().push(std::thread::current().id());
    SNAPSHOTS.lock().unwrap().push(v);
}

#[test]
fn the_progress_callback_runs_only_on_the_calling_thread() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("a.sqlite");
    // ~13 MiB: several times what the pipeline reads ahead of the compressor (a few MiB), so
    // the byte count moves while the upload runs.
    make_db(&src, 200);
    let h = Handle::new();
    let rc = unsafe { dbb_client_set_progress_callback(h.0, Some(on_progress), 42 as *mut c_void, 1) };
    assert_eq!(rc, 0);
    let repo = dir.path().join("repo").display().to_string();
    let (code, out) = h.call(
        dbb_create,
        &json!({"source": format!("sqlite://{}", src.display()), "repo": repo, "compression": "zstd:9", "jobs": 1}),
    );
    assert_eq!(code, 0, "{out}");
    assert!(CALLS.load(Ordering::SeqCst) >= 1);
    let me = std::thread::current().id();
    assert!(THREADS.lock().unwrap().iter().all(|t| *t == me));
    // Called while the backup ran, not only once at the end: at least one snapshot shows the
    // upload under way (some bytes done, not all), and the last one shows the finished run.
    let seen = std::mem::take(&mut *SNAPSHOTS.lock().unwrap());
    let midway = |p: &Value| {
        let (done, total) = (p["phase_bytes"].as_u64().unwrap(), p["phase_total_bytes"].as_u64());
        p["running"] == true && p["phase"] == "upload" && total.is_some_and(|t| 0 < done && done < t)
    };
    assert!(seen.iter().any(midway), "no snapshot while the upload ran: {seen:?}");
    let last = seen.last().unwrap();
    assert_eq!((last["operation"].as_str(), last["running"].as_bool()), (Some("create"), Some(false)));
    let rc = unsafe { dbb_client_set_progress_callback(h.0, None, std::ptr::null_mut(), 0) };
    assert_eq!(rc, 0);
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

unsafe extern "C" fn command_exits_with(user_data: *mut c_void) -> i32 {
    // The test passes a pointer to (database path, status to return); the "command" damages
    // the database first, like a migration failing halfway.
    let (path, status) = unsafe { &*(user_data as *const (std::path::PathBuf, i32)) };
    let c = rusqlite::Connection::open(path).unwrap();
    c.execute_batch("DELETE FROM users WHERE id % 2 = 0; CREATE TABLE half_done (x INTEGER);").unwrap();
    *status
}

fn rows(path: &Path) -> Vec<(i64, String)> {
    let c = rusqlite::Connection::open(path).unwrap();
    let mut st = c.prepare("SELECT id, name FROM users ORDER BY id").unwrap();
    st.query_map([], |r| Ok((r.get(0)?, r.get(1)?))).unwrap().map(Result::unwrap).collect()
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

#[test]
fn the_same_alerts_as_the_cli_once_per_change_and_guard_rollbacks_with_their_command() {
    use dbbackup_tests::receiver::{http_server, take_posts};
    let (url, seen) = http_server();
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo").display().to_string();
    let src = dir.path().join("a.sqlite");
    let source = format!("sqlite://{}", src.display());
    let alerts =
        json!({"webhook_url": format!("{url}/hook"), "DBBACKUP_STATE_DIR": dir.path().join("state")});
    let h = Handle::new();
    // A failing create, twice: one FAILING alert (state kept beside the backups).
    for _ in 0..2 {
        let (code, report) = h.call(dbb_create, &json!({"source": source, "repo": repo, "alerts": alerts}));
        assert_eq!(code, DBB_NOT_FOUND, "{report}");
    }
    let hooks = take_posts(&seen, "/hook");
    assert_eq!(hooks.len(), 1, "failing twice must alert once: {hooks:?}");
    let msg = hooks[0]["message"].as_str().unwrap();
    assert!(
        msg.starts_with("FAILING: create (database a.sqlite)") && msg.contains("does not exist"),
        "{msg}"
    );
    assert_eq!(
        (hooks[0]["outcome"].as_str(), hooks[0]["alerts"][0]["transition"].as_str()),
        (Some("failure"), Some("failing"))
    );
    // It works again: one RECOVERED.
    make_db(&src, 1);
    let (code, report) = h.call(dbb_create, &json!({"source": source, "repo": repo, "alerts": alerts}));
    assert_eq!(code, DBB_OK, "{report}");
    let hooks = take_posts(&seen, "/hook");
    assert_eq!(hooks.len(), 1, "{hooks:?}");
    assert!(hooks[0]["message"].as_str().unwrap().starts_with("RECOVERED: create"), "{hooks:?}");
    // status: never verified is a failing check, alerted once, its state in the report.
    for round in 0..2 {
        let (code, report) = h.call(dbb_status, &json!({"repo": repo, "alerts": alerts}));
        assert_eq!(code, DBB_UNHEALTHY, "{report}");
        let c = report["checks"].as_array().unwrap().iter().find(|c| c["ok"] == false).unwrap().clone();
        assert_eq!(c["state"], "failing", "{report}");
        let hooks = take_posts(&seen, "/hook");
        assert_eq!(hooks.len(), 1 - round, "{hooks:?}");
        if round == 0 {
            assert!(hooks[0]["message"].as_str().unwrap().starts_with("FAILING: "), "{hooks:?}");
            assert_eq!(hooks[0]["outcome"], "unhealthy");
        }
    }
    // A guarded command that fails: the rollback alert names the command given in command_line.
    let text = CString::new(
        json!({"source": source, "repo": repo, "alerts": alerts, "command_line": "php artisan migrate --force"}).to_string(),
    )
    .unwrap();
    let data = (src.clone(), 3);
    let mut out: *mut c_char = std::ptr::null_mut();
    let code = unsafe {
        dbb_guard(h.0, text.as_ptr(), Some(command_exits_with), (&raw const data).cast_mut().cast(), &mut out)
    };
    assert_eq!(code, DBB_OK, "{}", take(out));
    let hooks = take_posts(&seen, "/hook");
    assert_eq!(hooks.len(), 1, "{hooks:?}");
    let msg = hooks[0]["message"].as_str().unwrap();
    assert!(
        msg.starts_with("ROLLED BACK: guarded command `php artisan migrate --force` failed (exit status 3)"),
        "{msg}"
    );
    assert_eq!(hooks[0]["details"]["rollback_succeeded"], true);
    // No alert settings: nothing sent; a typo in them: a usage error before anything runs.
    let (code, _) = h.call(dbb_status, &json!({"repo": repo}));
    assert_eq!(code, DBB_UNHEALTHY);
    assert!(take_posts(&seen, "/hook").is_empty());
    let (code, report) = h.call(dbb_status, &json!({"repo": repo, "alerts": {"slack_webhok": "x"}}));
    assert_eq!(code, DBB_USAGE, "{report}");
    assert!(report["error"]["message"].as_str().unwrap().contains("slack_webhok"), "{report}");
}

#[test]
fn status_and_guard_alerts_that_cannot_be_delivered_are_in_the_report() {
    // Nothing listens on port 1: every alert fails to go out, and says so in `alert_warnings`,
    // as the CLI prints them (sent while the operation ran, not only after it).
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo").display().to_string();
    let src = dir.path().join("a.sqlite");
    make_db(&src, 1);
    let source = format!("sqlite://{}", src.display());
    let alerts = json!({"webhook_url": "http://127.0.0.1:1/hook", "state_dir": dir.path().join("state")});
    let h = Handle::new();
    let (code, report) = h.call(dbb_create, &json!({"source": source, "repo": repo}));
    assert_eq!(code, DBB_OK, "{report}");
    let (code, report) = h.call(dbb_status, &json!({"repo": repo, "alerts": alerts}));
    assert_eq!(code, DBB_UNHEALTHY, "{report}");
    let w = report["alert_warnings"].as_array().unwrap_or_else(|| panic!("no alert_warnings: {report}"));
    assert!(w.iter().any(|w| w.as_str().unwrap().contains("webhook")), "{report}");
    let text = CString::new(json!({"source": source, "repo": repo, "alerts": alerts}).to_string()).unwrap();
    let data = (src.clone(), 3);
    let mut out: *mut c_char = std::ptr::null_mut();
    let code = unsafe {
        dbb_guard(h.0, text.as_ptr(), Some(command_exits_with), (&raw const data).cast_mut().cast(), &mut out)
    };
    let report = take(out);
    assert_eq!(code, DBB_OK, "{report}");
    assert_eq!(report["rolled_back"], true, "{report}");
    let w = report["alert_warnings"].as_array().unwrap_or_else(|| panic!("no alert_warnings: {report}"));
    assert!(w.iter().any(|w| w.as_str().unwrap().contains("webhook")), "{report}");
}

#[test]
fn return_alerts_hands_the_decided_alerts_back_with_their_texts() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo").display().to_string();
    let src = dir.path().join("a.sqlite");
    let source = format!("sqlite://{}", src.display());
    let h = Handle::new();
    // Failing twice: the first failure returns one FAILING alert, the second none (state kept).
    let (code, report) = h.call(dbb_create, &json!({"source": source, "repo": repo, "return_alerts": true}));
    assert_eq!(code, DBB_NOT_FOUND, "{report}");
    let returned = report["error"]["returned_alerts"].as_array().unwrap_or_else(|| panic!("{report}"));
    assert_eq!(returned.len(), 1, "{report}");
    let a = &returned[0];
    assert_eq!((a["command"].as_str(), a["outcome"].as_str()), (Some("create"), Some("failure")), "{a}");
    assert!(a["subject"].as_str().unwrap().starts_with("[dbbackup] create failure"), "{a}");
    let body = a["body"].as_str().unwrap();
    assert!(body.contains("FAILING: create") && body.contains("expected:   `create` succeeds"), "{body}");
    assert!(a["slack_text"].as_str().unwrap().contains("FAILING: create"), "{a}");
    assert_eq!(last_error()["returned_alerts"].as_array().map(Vec::len), Some(1));
    let (code, report) = h.call(dbb_create, &json!({"source": source, "repo": repo, "return_alerts": true}));
    assert_eq!(code, DBB_NOT_FOUND, "{report}");
    assert_eq!(report["error"]["returned_alerts"], json!([]), "failing twice alerts once: {report}");
    // Recovering: the report carries one RECOVERED.
    make_db(&src, 1);
    let (code, report) = h.call(dbb_create, &json!({"source": source, "repo": repo, "return_alerts": true}));
    assert_eq!(code, DBB_OK, "{report}");
    assert_eq!(report["returned_alerts"].as_array().map(Vec::len), Some(1), "{report}");
    assert_eq!(report["returned_alerts"][0]["outcome"], "recovered", "{report}");
    // Without the option: no field; a non-boolean is a usage error.
    let (_, report) = h.call(dbb_list, &json!({"repo": repo}));
    assert!(report.get("returned_alerts").is_none(), "{report}");
    let (code, _) = h.call(dbb_list, &json!({"repo": repo, "return_alerts": "yes"}));
    assert_eq!(code, DBB_USAGE);
}

/// Cancels the client's operation from another thread of `s` once `ready(progress)` holds,
/// `after` that.
fn cancel_when<'scope>(
    s: &'scope std::thread::Scope<'scope, '_>,
    h: &Handle,
    ready: impl Fn(&Value) -> bool + Send + 'scope,
    after: std::time::Duration,
) {
    let ptr = h.ptr() as usize;
    s.spawn(move || {
        let p = ptr as *mut dbb_client;
        let t0 = std::time::Instant::now();
        loop {
            assert!(t0.elapsed() < std::time::Duration::from_secs(30), "never saw the moment to cancel");
            let v = take(unsafe { dbb_progress(p) });
            if v["running"] == true && ready(&v) {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        std::thread::sleep(after);
        assert_eq!(unsafe { dbb_cancel(p) }, 0);
    });
}

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// Issue 13: a cancel (or `timeout_ms`) never cuts a restore's swap. Cancelled before the swap
/// began, the load is discarded and the live database stays as it was; cancelled while the swap
/// runs (a delay point inside it keeps it running past the cancel grace, as a swap waiting on a
/// lock would), the call waits for it and reports the finished restore, instead of dropping the
/// operation in the middle of the swap. Either way no temp file is left beside the database.
#[test]
fn a_cancel_never_cuts_a_restore_swap_in_the_middle() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src.sqlite");
    make_db(&src, 2);
    let repo = dir.path().join("repo").display().to_string();
    let h = Handle::new();
    let (code, out) =
        h.call(dbb_create, &json!({"source": format!("sqlite://{}", src.display()), "repo": repo}));
    assert_eq!(code, 0, "{out}");
    let live_dir = dir.path().join("live");
    std::fs::create_dir(&live_dir).unwrap();
    let live = live_dir.join("app.sqlite");
    make_db(&live, 0);
    rusqlite::Connection::open(&live).unwrap().execute_batch("UPDATE users SET name = 'old'").unwrap();
    let (old, new) = (content(&live), content(&src));
    let files = names(&live_dir);
    let restore = json!({"repo": repo, "into": format!("sqlite://{}", live.display())});
    // The load's own checks end in the finish phase; the swap comes right after them.
    let in_finish = |p: &Value| p["operation"] == "restore" && p["phase"] == "finish";
    let ms = std::time::Duration::from_millis;

    // Cancelled just before the swap (a delay point there, shorter than the grace): discarded.
    backup_core::delay_on_this_thread("restore-before-swap", ms(800));
    let (code, out) = std::thread::scope(|s| {
        cancel_when(s, &h, in_finish, ms(200));
        h.call(dbb_restore, &restore)
    });
    backup_core::delay_on_this_thread("restore-before-swap", ms(0));
    assert_eq!(code, DBB_CANCELLED, "{out}");
    assert!(content(&live) == old, "a restore cancelled before its swap changed the database");
    assert_eq!(names(&live_dir), files, "files left beside the database");

    // Cancelled during the swap, which outlasts the grace: finished, and reported as such.
    backup_core::delay_on_this_thread("restore-swap", ms(2500));
    let t0 = std::time::Instant::now();
    let (code, out) = std::thread::scope(|s| {
        cancel_when(s, &h, in_finish, ms(200));
        h.call(dbb_restore, &restore)
    });
    backup_core::delay_on_this_thread("restore-swap", ms(0));
    assert!(t0.elapsed() > crate::client::CANCEL_GRACE, "the swap did not outlast the grace");
    assert_eq!(code, DBB_OK, "a swap under way was cut by the cancel: {out}");
    assert!(content(&live) == new, "the reported restore is not what the database holds");
    assert_eq!(names(&live_dir), files, "files left beside the database");
}

/// Issue 13: a cancel while PostgreSQL builds the indexes (post-data) stops the builds and
/// drops the shadow within the cancel grace; before, post-data never looked at the cancel, the
/// FFI dropped the operation after the grace and the shadow (with its build still running) was
/// left on the server. The index here calls a function that sleeps a second per row, but only
/// outside the source database, so the backup is quick and the restore's build takes a minute.
#[test]
fn a_cancel_during_postgres_index_builds_drops_the_shadow_and_keeps_the_target() {
    let Some(base) = dbbackup_tests::service_env("DBBACKUP_TEST_PG_URL") else { return };
    let (src, live) = (dbbackup_tests::unique("ffi_pd_src"), dbbackup_tests::unique("ffi_pd_live"));
    psql(&base, &format!("CREATE DATABASE {src}"));
    psql(&base, &format!("CREATE DATABASE {live}"));
    psql(
        &pg_db(&base, &src),
        &format!(
            "CREATE FUNCTION slow(i int) RETURNS int IMMUTABLE LANGUAGE plpgsql AS $$ BEGIN \
               IF pg_catalog.current_database() <> '{src}' THEN PERFORM pg_catalog.pg_sleep(1); END IF; RETURN i; END $$;
             CREATE TABLE t (id int PRIMARY KEY, v text);
             INSERT INTO t SELECT g, 'row ' || g FROM generate_series(1, 60) g;
             CREATE INDEX t_slow ON t (public.slow(id));"
        ),
    );
    psql(&pg_db(&base, &live), "CREATE TABLE t (id int, v text); INSERT INTO t VALUES (1, 'old')");
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo").display().to_string();
    let h = Handle::new();
    let (code, out) = h.call(dbb_create, &json!({"source": pg_db(&base, &src), "repo": repo}));
    assert_eq!(code, 0, "{out}");
    // The one data object loaded: post-data (the index build) is next.
    let loaded = |p: &Value| {
        p["operation"] == "restore"
            && p["events"].as_array().unwrap().iter().any(|e| e["event"] == "object_done")
    };
    let t0 = std::time::Instant::now();
    let (code, out) = std::thread::scope(|s| {
        cancel_when(s, &h, loaded, std::time::Duration::from_millis(700));
        h.call(dbb_restore, &json!({"repo": repo, "into": pg_db(&base, &live), "jobs": 1}))
    });
    let took = t0.elapsed();
    let shadows = psql(
        &base,
        &format!("SELECT datname FROM pg_database WHERE datname LIKE '{live}%' AND datname <> '{live}'"),
    );
    for s in shadows.lines().filter(|l| !l.is_empty()) {
        psql(&base, &format!("DROP DATABASE IF EXISTS {s} WITH (FORCE)"));
    }
    let rows = psql(&pg_db(&base, &live), "SELECT string_agg(id || ':' || v, ',') FROM t");
    psql(&base, &format!("DROP DATABASE {src} WITH (FORCE)"));
    psql(&base, &format!("DROP DATABASE {live} WITH (FORCE)"));
    assert_eq!(code, DBB_CANCELLED, "{out}");
    assert_eq!(shadows, "", "the cancelled restore left its shadow on the server");
    assert_eq!(rows, "1:old", "the target changed");
    assert!(took < std::time::Duration::from_secs(20), "the cancel took {took:?}");
}

/// Every row of `users`, ordered.
fn dump(path: &Path) -> Vec<(i64, String, Option<String>)> {
    let db = rusqlite::Connection::open(path).unwrap();
    let mut st = db.prepare("SELECT id, name, email FROM users ORDER BY id").unwrap();
    st.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?))).unwrap().map(Result::unwrap).collect()
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
