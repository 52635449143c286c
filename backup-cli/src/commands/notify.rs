//! Alerts after a command: configured from the environment over the config file's `[alerts]`
//! table (names in `NotifyConfig::NAMES`, documented in docs/storage.md), decided by the core
//! (state changes, see `backup_core::track`), and never allowed to change the command's outcome.

use anyhow::{Context as _, Result};
use backup_core::{AlertScope, Context, ErrorReport, NotifyConfig, Verdict};

use crate::cli::Command;

/// What a command's alert concerns: its name, repositories and database.
pub struct Scope {
    pub command: &'static str,
    pub scope: AlertScope,
}

fn env_set(k: &str) -> bool {
    std::env::var(k).is_ok_and(|v| !v.is_empty())
}

/// The command's alert scope, for commands that alert (others: `None`).
pub fn scope_of(c: &Command) -> Option<Scope> {
    let (command, repos, database_url, encrypted) = match c {
        Command::Create(a) => {
            let encrypted = !a.encryption.encrypt_to.is_empty()
                || a.encryption.recipients_file.is_some()
                || a.passphrase_file.is_some()
                || env_set("DBBACKUP_PASSPHRASE");
            ("create", a.repos.clone(), Some(&a.source), encrypted)
        }
        Command::Verify(a) => ("verify", vec![a.repo.clone()], None, false),
        Command::Restore(a) => {
            let encrypted = a.keys.identity.is_some()
                || a.keys.passphrase_file.is_some()
                || env_set("DBBACKUP_IDENTITY")
                || env_set("DBBACKUP_PASSPHRASE");
            ("restore", a.repo.iter().cloned().collect(), Some(&a.into), encrypted)
        }
        Command::Guard(a) => ("guard", a.repos.clone(), Some(&a.source), false),
        Command::Prune(a) => ("prune", vec![a.repo.clone()], None, false),
        Command::Status(a) => ("status", a.repos.clone(), None, false),
        Command::Copy(a) => ("copy", vec![a.from.clone(), a.to.clone()], None, false),
        Command::List(_) => return None,
    };
    Some(Scope { command, scope: AlertScope::of(repos, database_url.map(String::as_str), encrypted) })
}

/// The alert settings: the environment, over the config file's `[alerts]` table (same names,
/// with or without `DBBACKUP_`); `DBBACKUP_SMTP_PASSWORD_FILE` reads the SMTP password from a file.
pub fn config(file: Option<&std::path::Path>) -> Result<NotifyConfig> {
    let mut pairs: std::collections::BTreeMap<&'static str, String> = std::collections::BTreeMap::new();
    for (k, v) in crate::config::alerts(file)? {
        let name = NotifyConfig::setting_name(&k).ok_or_else(|| {
            anyhow::anyhow!(
                "config file [alerts]: unknown key {k:?} (known: {})",
                NotifyConfig::NAMES.join(", ")
            )
        })?;
        pairs.insert(name, v);
    }
    for name in NotifyConfig::NAMES {
        if let Some(v) = var(name) {
            pairs.insert(name, v);
        }
    }
    if let Some(path) = var("DBBACKUP_SMTP_PASSWORD_FILE") {
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("read DBBACKUP_SMTP_PASSWORD_FILE {path}"))?;
        pairs.insert("DBBACKUP_SMTP_PASSWORD", text.lines().next().unwrap_or_default().to_string());
    }
    let mut cfg = NotifyConfig::from_pairs(pairs.iter().map(|(k, v)| (*k, v.as_str())))?;
    if cfg.state_dir.is_none() {
        cfg.state_dir = var("XDG_STATE_HOME")
            .map(std::path::PathBuf::from)
            .or_else(|| var("HOME").map(|h| std::path::Path::new(&h).join(".local/state")))
            .map(|d| d.join("dbbackup"));
    }
    cfg.host = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty());
    Ok(cfg)
}

fn var(k: &str) -> Option<String> {
    std::env::var(k).ok().filter(|v| !v.trim().is_empty())
}

/// Prints delivery problems as warnings; they never change the command's result.
pub fn warn(command: &str, warnings: &[String]) {
    for w in warnings {
        tracing::warn!("alerts (the {command} result stands): {w}");
        eprintln!("dbbackup: warning: notification not delivered: {w}");
    }
}

/// Alerts for a finished command (decided by the core, the same as the FFI's).
pub async fn after(scope: Option<Scope>, cfg: &NotifyConfig, result: &Result<Verdict>, ctx: &Context) {
    let Some(Scope { command, scope }) = scope else { return };
    let error = match result {
        Ok(verdict) => verdict.alert_error(),
        Err(e) => {
            let e = ErrorReport::of(e.as_ref());
            Some(format!("{} error: {}", e.kind, e.message))
        }
    };
    // status tracked its checks; guard alerted its rollback itself (with its details).
    let handled = result.is_ok() && matches!(command, "status" | "guard");
    let warnings = backup_core::after_command(cfg, command, &scope, error, handled, ctx).await;
    warn(command, &warnings);
}
