//! Stop signals. SIGINT, SIGTERM and SIGHUP all cancel the running operation (uploads aborted,
//! shadows and temp copies removed, no manifest) and the process exits with 128 + the signal;
//! a second signal exits at once. `--timeout` cancels the same way and exits 124.

use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::time::Duration;

use backup_core::CancellationToken;
use nix::sys::signal::Signal;
use tokio::signal::unix::{SignalKind, signal};

/// The first stop signal received (0: none).
static RECEIVED: AtomicI32 = AtomicI32::new(0);
/// Whether `--timeout` ran out.
static TIMED_OUT: AtomicBool = AtomicBool::new(false);

/// The first stop signal received, if any.
pub fn received() -> Option<i32> {
    match RECEIVED.load(Ordering::SeqCst) {
        0 => None,
        s => Some(s),
    }
}

/// Whether the operation was stopped by `--timeout`.
pub fn timed_out() -> bool {
    TIMED_OUT.load(Ordering::SeqCst)
}

/// The exit code of a run stopped from outside: 128 + the first signal, 124 after `--timeout`.
pub fn stopped_exit_code() -> Option<i32> {
    match received() {
        Some(s) => Some(128 + s),
        None if timed_out() => Some(124),
        None => None,
    }
}

/// Cancels `cancel` on the first SIGINT/SIGTERM/SIGHUP; exits the process on the second.
pub fn install(cancel: CancellationToken) {
    let kinds = [
        (SignalKind::interrupt(), Signal::SIGINT),
        (SignalKind::terminate(), Signal::SIGTERM),
        (SignalKind::hangup(), Signal::SIGHUP),
    ];
    for (kind, sig) in kinds {
        let signo = sig as i32;
        let mut stream = match signal(kind) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!("cannot handle signal {signo}: {e}");
                continue;
            }
        };
        let cancel = cancel.clone();
        tokio::spawn(async move {
            while stream.recv().await.is_some() {
                if RECEIVED.compare_exchange(0, signo, Ordering::SeqCst, Ordering::SeqCst).is_ok() {
                    eprintln!(
                        "dbbackup: {}; stopping and cleaning up (no manifest will be written; a second signal exits at once)",
                        name(sig)
                    );
                    cancel.cancel();
                } else {
                    eprintln!("dbbackup: {}: second signal, exiting now without cleaning up", name(sig));
                    std::process::exit(128 + signo);
                }
            }
        });
    }
}

/// Cancels `cancel` after `limit` (`--timeout`).
pub fn deadline(cancel: CancellationToken, limit: Duration) {
    tokio::spawn(async move {
        tokio::time::sleep(limit).await;
        if !cancel.is_cancelled() {
            TIMED_OUT.store(true, Ordering::SeqCst);
            eprintln!("dbbackup: --timeout of {:?} reached; stopping and cleaning up", limit);
            cancel.cancel();
        }
    });
}

fn name(sig: Signal) -> &'static str {
    match sig {
        Signal::SIGINT => "interrupted (SIGINT)",
        Signal::SIGTERM => "terminated (SIGTERM)",
        Signal::SIGHUP => "hung up (SIGHUP)",
        _ => "stopped by a signal",
    }
}
