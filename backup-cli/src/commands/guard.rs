//! `dbbackup guard -- COMMAND...`.

use anyhow::{Context as _, Result};
use std::sync::Arc;
use std::sync::atomic::{AtomicI32, Ordering};

use backup_core::{CommandOutcome, Context, GuardOptions, NotifyConfig, Report, Secret, Verdict, guard};

use super::{jobs, operator};
use crate::cli::GuardArgs;
use crate::output::{Output, millis};

pub async fn run(
    a: GuardArgs,
    password: Option<Secret>,
    alerts: &NotifyConfig,
    ctx: &Context,
    out: &Output,
) -> Result<Verdict> {
    let max_rto_ms = match &a.max_rto {
        Some(d) => {
            Some(backup_core::parse_duration(d).with_context(|| format!("--max-rto {d:?}"))?.as_millis()
                as u64)
        }
        None => None,
    };
    let opts = GuardOptions {
        source: a.source,
        password,
        repos: a.repos,
        compression: a.compression.parse()?,
        jobs: jobs(a.jobs),
        tags: a.tags,
        max_rto_ms,
        operator: Some(operator()),
        engine_options: backup_core::EngineOptions {
            mysql: backup_core::MysqlOptions { no_definer: a.no_definer, ..Default::default() },
            postgres: backup_core::PostgresOptions { keep_owners: a.keep_owners },
            session: a.session.options(),
        },
        staged_rollback: a.staged_rollback,
    };
    let command = a.command;
    let command_line = backup_core::redact_str(&command.join(" "));
    // Set once the command has run and failed: an error after that is the rollback failing.
    let failed_status = Arc::new(AtomicI32::new(-1));
    let failed = failed_status.clone();
    let cancel = ctx.cancel.clone();
    let result = guard(&opts, ctx, || async move {
        // Output passes straight through; the child shares our terminal.
        let mut child = tokio::process::Command::new(&command[0]).args(&command[1..]).spawn()?;
        let status = tokio::select! {
            s = child.wait() => s?,
            () = cancel.cancelled() => stop(&mut child).await?,
        };
        let outcome = match (status.code(), std::os::unix::process::ExitStatusExt::signal(&status)) {
            (Some(c), _) => CommandOutcome::Exited(c),
            (None, Some(s)) => CommandOutcome::Signalled(s),
            (None, None) => CommandOutcome::Exited(1),
        };
        if !outcome.success() {
            failed.store(outcome.status(), Ordering::SeqCst);
        }
        Ok(outcome)
    })
    .await;
    let status = failed_status.load(Ordering::SeqCst);
    if let Some(n) = backup_core::guard_alert(&command_line, &opts, &result, status, alerts, ctx).await {
        let (_, warnings) = backup_core::deliver(alerts, &n).await;
        super::notify::warn("guard", &warnings);
    }
    let r = result?;
    out.report(&r, || {
        if r.rolled_back {
            format!(
                "guard: command failed (status {}) after {}; database restored from {} in {} (recovery time; rollback: {})",
                r.command_status,
                millis(r.command_ms),
                r.backup_id,
                millis(r.recovery_ms.unwrap_or(0)),
                rollback_kind(r.rollback.as_deref().unwrap_or("restore"))
            )
        } else {
            format!(
                "guard: command succeeded in {}; safety backup {} kept{}",
                millis(r.command_ms),
                r.backup_id,
                match r.rollback_point.as_deref() {
                    Some(k) => format!(
                        "; rollback point ({}, {} before the command) removed",
                        rollback_kind(k),
                        millis(r.rollback_point_ms)
                    ),
                    None => String::new(),
                }
            )
        }
    });
    Ok(r.verdict())
}

/// The rollback kinds of `GuardReport::rollback`, for a person.
fn rollback_kind(k: &str) -> &str {
    match k {
        "clone" => "the server-side copy renamed in",
        "staged" => "the staged restore swapped in",
        "restore" => "the backup restored after the command",
        other => other,
    }
}

/// How long a stopped command gets to exit before it is killed.
const STOP_GRACE: std::time::Duration = std::time::Duration::from_secs(10);

/// Stops the guarded command when the run is cancelled (a stop signal or `--timeout`): the same
/// signal (SIGTERM for a timeout) is sent to it, then SIGKILL after [`STOP_GRACE`]. The guard
/// then rolls the database back, since the command did not finish.
async fn stop(child: &mut tokio::process::Child) -> std::io::Result<std::process::ExitStatus> {
    use nix::sys::signal::{Signal, kill};
    use nix::unistd::Pid;
    let sig = crate::signal::received().and_then(|s| Signal::try_from(s).ok()).unwrap_or(Signal::SIGTERM);
    if let Some(pid) = child.id().and_then(|p| i32::try_from(p).ok()) {
        eprintln!("dbbackup: stopping the guarded command (pid {pid}) with {sig}");
        // It may have exited already (it got the terminal's Ctrl-C too): then there is nothing to stop.
        let _ = kill(Pid::from_raw(pid), sig);
    }
    match tokio::time::timeout(STOP_GRACE, child.wait()).await {
        Ok(status) => status,
        Err(_) => {
            eprintln!("dbbackup: the guarded command did not exit within {STOP_GRACE:?}; killing it");
            child.kill().await?;
            child.wait().await
        }
    }
}
