//! Progress callbacks, deadlines and cancellation through the C ABI (a cancel never cuts a
//! restore's swap).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::undocumented_unsafe_blocks)]

use super::*;

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

/// Where a restore's progress `p` is: `None` while the load's checks run (their phase not yet
/// finished), then whether a phase (the swap's) has started since they ended.
fn swap_started(p: &Value) -> Option<bool> {
    let events = p["events"].as_array().unwrap();
    let is = |e: &Value, what: &str| e["event"] == what && e["phase"] == "finish";
    let checked = events.iter().position(|e| is(e, "phase_finished"))?;
    Some(events[checked + 1..].iter().any(|e| is(e, "phase_started")))
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
    let ms = std::time::Duration::from_millis;

    // Cancelled just before the swap (a delay point there, shorter than the grace): discarded.
    // The cancel waits for the load's checks to have ended (their phase finished, the swap's not
    // started): the restore is then in the delay before the swap, and the canceller has all of it
    // to act. Before, it cancelled 200 ms after the checks started, inside an 800 ms delay: the
    // checks and a canceller slowed by load had 600 ms together, or the swap began first and the
    // restore went through. The delay splits the grace (1.5 s) evenly: 750 ms for the canceller
    // to act, and at least 750 ms after the delay for the restore to see the cancel and discard
    // the load before the grace runs out.
    let before_swap = |p: &Value| swap_started(p) == Some(false);
    backup_core::delay_on_this_thread("restore-before-swap", ms(750));
    let (code, out) = std::thread::scope(|s| {
        cancel_when(s, &h, before_swap, ms(0));
        h.call(dbb_restore, &restore)
    });
    backup_core::delay_on_this_thread("restore-before-swap", ms(0));
    assert_eq!(code, DBB_CANCELLED, "{out}");
    assert!(content(&live) == old, "a restore cancelled before its swap changed the database");
    assert_eq!(names(&live_dir), files, "files left beside the database");

    // Cancelled during the swap, which outlasts the grace: finished, and reported as such. The
    // cancel waits for the swap's own phase, started after the load's checks ended (200 ms
    // after those checks started came before the swap when they and the steps after them took
    // longer, on a loaded machine: the restore was then discarded and the test failed).
    let in_swap = |p: &Value| swap_started(p) == Some(true);
    backup_core::delay_on_this_thread("restore-swap", ms(2500));
    let t0 = std::time::Instant::now();
    let (code, out) = std::thread::scope(|s| {
        cancel_when(s, &h, in_swap, ms(0));
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
