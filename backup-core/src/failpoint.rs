//! Test-only crash points: with the `testing` feature, `DBBACKUP_FAILPOINT=<name>` makes the
//! process kill itself with SIGKILL when it reaches [`hit`]`(<name>)`, so the crash-safety tests
//! can stop a real run between two destructive steps (no destructor, no cleanup runs, exactly as
//! when an operator or the OOM killer sends SIGKILL). `<name>:pause` instead prints
//! `failpoint <name> paused` on stderr and waits (for the test to start a concurrent run, then
//! kill this one); `<name>:stop` prints `failpoint <name> stopped` and stops the process
//! (SIGSTOP), for the test to let it go on later (SIGCONT). `DBBACKUP_TEST_BACKUP_ID=<id>` makes the next backup's first id draw return
//! `<id>` ([`forced_backup_id`]), so a test can make two backups collide. [`delay`] points wait
//! instead, without blocking the runtime: `DBBACKUP_FAILPOINT=<name>:delay=<ms>` for the real
//! binary, or [`delay_on_this_thread`] for a test that drives an operation on its own thread
//! (the FFI runs an operation on the calling thread), so tests running side by side in one
//! process do not slow each other. `<name>:error` makes [`fail`]`(<name>)` return an error
//! instead (a step that fails without killing the process). The variable may name several
//! points, separated by commas (`mysql-swap-forward:error,mysql-swap-back-renamed`). Without the
//! feature [`hit`], [`fail`] and [`delay`] are empty, there is no forced id, and the environment
//! is never read.

/// The points `DBBACKUP_FAILPOINT` names, each with its suffix (`:pause`, `:error`, `:delay=..`).
#[cfg(feature = "testing")]
fn points() -> Vec<String> {
    std::env::var("DBBACKUP_FAILPOINT")
        .map(|v| v.split(',').map(str::to_string).collect())
        .unwrap_or_default()
}

/// Kills the process with SIGKILL if `DBBACKUP_FAILPOINT` names this point (`testing` builds only).
#[cfg(feature = "testing")]
pub(crate) fn hit(name: &str) {
    for v in points() {
        hit_one(&v, name);
    }
}

#[cfg(feature = "testing")]
fn hit_one(v: &str, name: &str) {
    if v.strip_suffix(":pause") == Some(name) {
        eprintln!("dbbackup: failpoint {name} paused");
        std::thread::sleep(std::time::Duration::from_secs(120));
        std::process::abort();
    }
    if v.strip_suffix(":stop") == Some(name) {
        eprintln!("dbbackup: failpoint {name} stopped");
        let pid = std::process::id().to_string();
        // Stopped until the test sends SIGCONT (or SIGKILL); the process then goes on.
        let _ = std::process::Command::new("kill").args(["-STOP", &pid]).status();
        return;
    }
    if v == name {
        eprintln!("dbbackup: failpoint {name} reached, killing the process (SIGKILL)");
        let pid = std::process::id().to_string();
        let _ = std::process::Command::new("kill").args(["-KILL", &pid]).status();
        // `kill` missing: still die without running any cleanup.
        std::process::abort();
    }
}

/// No-op outside `testing` builds.
#[cfg(not(feature = "testing"))]
#[inline(always)]
pub(crate) fn hit(_name: &str) {}

/// Whether `DBBACKUP_FAILPOINT` names this point (to reach a state worth killing in first, e.g.
/// wait for a part to be written).
#[cfg(feature = "testing")]
pub(crate) fn armed(name: &str) -> bool {
    points().iter().any(|v| v == name || [":pause", ":stop"].iter().any(|s| v.strip_suffix(s) == Some(name)))
}

/// Fails with an error if `DBBACKUP_FAILPOINT` names `<name>:error` (`testing` builds only).
#[cfg(feature = "testing")]
#[cfg_attr(not(feature = "mysql"), allow(dead_code))]
pub(crate) fn fail(name: &str) -> crate::error::Result<()> {
    if points().iter().any(|v| v.strip_suffix(":error") == Some(name)) {
        eprintln!("dbbackup: failpoint {name} fails");
        return Err(crate::error::Error::source(
            format!("failpoint {name}"),
            std::io::Error::other("failed on purpose (DBBACKUP_FAILPOINT)"),
        ));
    }
    Ok(())
}

/// Never fails outside `testing` builds.
#[cfg(not(feature = "testing"))]
#[cfg_attr(not(feature = "mysql"), allow(dead_code))]
#[inline(always)]
pub(crate) fn fail(_name: &str) -> crate::error::Result<()> {
    Ok(())
}

/// Never armed outside `testing` builds.
#[cfg(not(feature = "testing"))]
#[inline(always)]
pub(crate) fn armed(_name: &str) -> bool {
    false
}

#[cfg(feature = "testing")]
thread_local! {
    static DELAYS: std::cell::RefCell<Vec<(String, std::time::Duration)>> =
        const { std::cell::RefCell::new(Vec::new()) };
}

/// Makes `failpoint::delay(name)` wait `by` when it is reached on the calling thread (`testing` builds
/// only; `by` zero removes it).
#[cfg(feature = "testing")]
pub fn delay_on_this_thread(name: &str, by: std::time::Duration) {
    DELAYS.with(|d| {
        let mut d = d.borrow_mut();
        d.retain(|(n, _)| n != name);
        if !by.is_zero() {
            d.push((name.to_string(), by));
        }
    });
}

/// Waits at a delay point when this thread or `DBBACKUP_FAILPOINT=<name>:delay=<ms>` asks for
/// it (`testing` builds only).
#[cfg(feature = "testing")]
pub(crate) async fn delay(name: &str) {
    let here = DELAYS.with(|d| d.borrow().iter().find(|(n, _)| n == name).map(|(_, by)| *by));
    let by = here.or_else(|| {
        points().iter().find_map(|v| {
            let ms = v.strip_prefix(name)?.strip_prefix(":delay=")?.parse::<u64>().ok()?;
            Some(std::time::Duration::from_millis(ms))
        })
    });
    if let Some(by) = by {
        eprintln!("dbbackup: failpoint {name} waits {by:?}");
        tokio::time::sleep(by).await;
    }
}

/// No-op outside `testing` builds.
#[cfg(not(feature = "testing"))]
#[inline(always)]
pub(crate) async fn delay(_name: &str) {}

/// Databases whose MySQL table stats wait for a user lock (`testing` builds only).
#[cfg(feature = "testing")]
static STATS_HOLDS: std::sync::Mutex<Vec<(String, String)>> = std::sync::Mutex::new(Vec::new());

/// Makes every table stats statement of a MySQL snapshot of database `db` first wait, on the
/// server, for the user lock `lock` (`GET_LOCK`, up to 5 minutes), so that a test can hold a
/// stats statement in flight whatever the run's table locks; `None` removes it (`testing`
/// builds only).
#[cfg(feature = "testing")]
pub fn hold_mysql_stats(db: &str, lock: Option<&str>) {
    if let Ok(mut h) = STATS_HOLDS.lock() {
        h.retain(|(d, _)| d != db);
        if let Some(l) = lock {
            h.push((db.to_string(), l.to_string()));
        }
    }
}

/// The user lock the table stats of `db` wait for ([`hold_mysql_stats`]).
#[cfg(feature = "testing")]
#[cfg_attr(not(feature = "mysql"), allow(dead_code))]
pub(crate) fn mysql_stats_hold(db: &str) -> Option<String> {
    STATS_HOLDS.lock().ok()?.iter().find(|(d, _)| d == db).map(|(_, l)| l.clone())
}

/// None outside `testing` builds.
#[cfg(not(feature = "testing"))]
#[cfg_attr(not(feature = "mysql"), allow(dead_code))]
#[inline(always)]
pub(crate) fn mysql_stats_hold(_db: &str) -> Option<String> {
    None
}

/// The id a test forces on the first draw of a backup id (`DBBACKUP_TEST_BACKUP_ID`).
#[cfg(feature = "testing")]
pub(crate) fn forced_backup_id() -> Option<String> {
    std::env::var("DBBACKUP_TEST_BACKUP_ID").ok().filter(|s| !s.is_empty())
}

/// Never a forced id outside `testing` builds.
#[cfg(not(feature = "testing"))]
#[inline(always)]
pub(crate) fn forced_backup_id() -> Option<String> {
    None
}
