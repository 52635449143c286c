//! Test-only crash points: with the `testing` feature, `DBBACKUP_FAILPOINT=<name>` makes the
//! process kill itself with SIGKILL when it reaches [`hit`]`(<name>)`, so the crash-safety tests
//! can stop a real run between two destructive steps (no destructor, no cleanup runs, exactly as
//! when an operator or the OOM killer sends SIGKILL). `<name>:pause` instead prints
//! `failpoint <name> paused` on stderr and waits (for the test to start a concurrent run, then
//! kill this one). `DBBACKUP_TEST_BACKUP_ID=<id>` makes the next backup's first id draw return
//! `<id>` ([`forced_backup_id`]), so a test can make two backups collide. Without the feature
//! [`hit`] is empty, there is no forced id, and the environment is never read.

/// Kills the process with SIGKILL if `DBBACKUP_FAILPOINT` names this point (`testing` builds only).
#[cfg(feature = "testing")]
pub(crate) fn hit(name: &str) {
    let Ok(v) = std::env::var("DBBACKUP_FAILPOINT") else { return };
    if v.strip_suffix(":pause") == Some(name) {
        eprintln!("dbbackup: failpoint {name} paused");
        std::thread::sleep(std::time::Duration::from_secs(120));
        std::process::abort();
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
    std::env::var("DBBACKUP_FAILPOINT").is_ok_and(|v| v == name || v.strip_suffix(":pause") == Some(name))
}

/// Never armed outside `testing` builds.
#[cfg(not(feature = "testing"))]
#[inline(always)]
pub(crate) fn armed(_name: &str) -> bool {
    false
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
