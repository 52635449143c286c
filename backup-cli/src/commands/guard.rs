//! `dbbackup guard -- COMMAND...`.

use anyhow::{Context as _, Result};
use backup_core::{CommandOutcome, Context, GuardOptions, Secret, guard};

use super::{jobs, operator};
use crate::cli::GuardArgs;
use crate::output::{Output, millis};

pub async fn run(a: GuardArgs, password: Option<Secret>, ctx: &Context, out: &Output) -> Result<i32> {
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
        engine_options: backup_core::engine_flags(&[
            (backup_core::engine_option::NO_DEFINER, a.no_definer),
            (backup_core::engine_option::KEEP_OWNERS, a.keep_owners),
        ]),
    };
    let command = a.command;
    let r = guard(&opts, ctx, || async move {
        // Output passes straight through; the child shares our terminal and signals.
        let status = tokio::process::Command::new(&command[0]).args(&command[1..]).status().await?;
        Ok(match (status.code(), std::os::unix::process::ExitStatusExt::signal(&status)) {
            (Some(c), _) => CommandOutcome::Exited(c),
            (None, Some(s)) => CommandOutcome::Signalled(s),
            (None, None) => CommandOutcome::Exited(1),
        })
    })
    .await?;
    out.report(&r, || {
        if r.rolled_back {
            format!(
                "guard: command failed (status {}) after {}; database restored from {} in {} (recovery time)",
                r.command_status,
                millis(r.command_ms),
                r.backup_id,
                millis(r.recovery_ms.unwrap_or(0))
            )
        } else {
            format!(
                "guard: command succeeded in {}; safety backup {} kept",
                millis(r.command_ms),
                r.backup_id
            )
        }
    });
    Ok(r.command_status)
}
