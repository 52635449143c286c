//! One module per command: build options from arguments, call the core, render the report.

mod copy;
mod create;
mod guard;
mod list;
mod notify;
mod prune;
mod restore;
mod status;
mod verify;

use std::sync::Arc;

use anyhow::{Context as _, Result};
use backup_core::{Context, RepoSettings, Secret, StoreConfig};

use crate::cli::{Cli, Command};
use crate::output::Output;
use crate::progress::Bars;

/// Runs the parsed command and returns the process exit code.
pub async fn run(cli: Cli, out: &Output) -> i32 {
    // Store settings come from the environment here, in the CLI, once; the core never reads it.
    let ctx = Context::with_observer(Arc::new(Bars::new(cli.quiet, cli.json)))
        .with_stores(RepoSettings::new(StoreConfig::from_env()));
    crate::signal::install(ctx.cancel.clone());
    if let Some(t) = &cli.timeout {
        match backup_core::parse_duration(t) {
            Ok(limit) => crate::signal::deadline(ctx.cancel.clone(), limit),
            Err(e) => return out.error(&anyhow::Error::from(e).context(format!("--timeout {t:?}"))),
        }
    }
    let password = match password(&cli) {
        Ok(p) => p,
        Err(e) => return out.error(&e),
    };
    let alert_cfg = match notify::config(cli.config.as_deref()) {
        Ok(c) => c,
        Err(e) => return out.error(&e),
    };
    let scope = notify::scope_of(&cli.command);
    let result = match cli.command {
        Command::Create(a) => create::run(a, password, &ctx, out).await,
        Command::List(a) => list::run(a, &ctx, out).await,
        Command::Verify(a) => verify::run(a, password, &ctx, out).await,
        Command::Restore(a) => restore::run(a, password, &ctx, out).await,
        Command::Guard(a) => guard::run(a, password, &alert_cfg, &ctx, out).await,
        Command::Prune(a) => prune::run(a, &ctx, out).await,
        Command::Status(a) => status::run(a, &alert_cfg, &ctx, out).await,
        Command::Copy(a) => copy::run(a, &ctx, out).await,
    };
    // Alerts never change the outcome: failures to notify are logged and ignored.
    notify::after(scope, &alert_cfg, &result, &ctx).await;
    match result {
        Ok(verdict) => crate::output::verdict_code(&verdict),
        Err(e) => out.error(&e),
    }
}

/// The database password: `--password-file`, else `DBBACKUP_PASSWORD`. Never from argv.
fn password(cli: &Cli) -> Result<Option<Secret>> {
    if let Some(path) = &cli.password_file {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("read password file {}", path.display()))?;
        let line = text.lines().next().unwrap_or_default().to_string();
        return Ok(Some(Secret::new(line)));
    }
    Ok(std::env::var("DBBACKUP_PASSWORD").ok().filter(|p| !p.is_empty()).map(Secret::new))
}

/// A secret from a file (first line, or the whole text for identity files) or else an
/// environment variable; never from argv.
fn secret_from(
    path: Option<&std::path::Path>,
    env: &str,
    first_line: bool,
    what: &str,
) -> Result<Option<Secret>> {
    if let Some(path) = path {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("read {what} {}", path.display()))?;
        let text = if first_line { text.lines().next().unwrap_or_default().to_string() } else { text };
        return Ok(Some(Secret::new(text)));
    }
    Ok(std::env::var(env).ok().filter(|v| !v.is_empty()).map(Secret::new))
}

/// The key that opens an encrypted backup: (identity file text, passphrase).
fn keys(k: &crate::cli::KeyArgs) -> Result<(Option<Secret>, Option<Secret>)> {
    Ok((
        secret_from(k.identity.as_deref(), "DBBACKUP_IDENTITY", false, "identity file")?,
        secret_from(k.passphrase_file.as_deref(), "DBBACKUP_PASSPHRASE", true, "passphrase file")?,
    ))
}

/// Recipients from `--encrypt-to` / DBBACKUP_RECIPIENTS plus a recipients file's text.
fn recipients(e: &crate::cli::EncryptArgs) -> Result<Vec<String>> {
    let mut list = e.encrypt_to.clone();
    if let Some(path) = &e.recipients_file {
        list.push(
            std::fs::read_to_string(path)
                .with_context(|| format!("read recipients file {}", path.display()))?,
        );
    }
    Ok(list)
}

/// The undo area: `--undo-dir` / DBBACKUP_UNDO_DIR, else under the state directory.
fn undo_dir(flag: Option<std::path::PathBuf>) -> Option<std::path::PathBuf> {
    flag.or_else(|| backup_core::default_undo_dir(|k| std::env::var(k).ok()))
}

/// Default parallelism when `--jobs` is not given.
fn jobs(j: Option<usize>) -> usize {
    j.unwrap_or_else(backup_core::default_jobs).max(1)
}

/// `user@host` for audit records.
fn operator() -> String {
    let user =
        std::env::var("USER").or_else(|_| std::env::var("LOGNAME")).unwrap_or_else(|_| "unknown".into());
    let host = std::fs::read_to_string("/etc/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "localhost".into());
    format!("{user}@{host}")
}
