//! Alerts after a command: configured from the environment (or `dbbackup.toml` via the same
//! names), sent by the core, and never allowed to change the command's outcome.
//!
//! - `DBBACKUP_SLACK_WEBHOOK`: Slack incoming-webhook URL;
//! - `DBBACKUP_WEBHOOK_URL`: generic webhook, receives a JSON POST
//!   (`source`, `command`, `outcome`, `message`, `host`, `at`);
//! - `DBBACKUP_HEARTBEAT_URL`: pinged after every run (`/fail` appended on failure/unhealthy);
//! - `DBBACKUP_NOTIFY_ON`: outcomes posted to Slack/webhook, comma-separated
//!   `success,failure,unhealthy` (default `failure,unhealthy`).

use anyhow::Result;
use backup_core::{Notification, NotifyConfig, Outcome, Secret, notify};

use crate::cli::Command;
use crate::output::kind_of;

/// The command's name, for commands that alert (others: `None`).
pub fn command_name(c: &Command) -> Option<&'static str> {
    match c {
        Command::Create(_) => Some("create"),
        Command::Verify(_) => Some("verify"),
        Command::Guard(_) => Some("guard"),
        Command::Prune(_) => Some("prune"),
        Command::Status(_) => Some("status"),
        Command::Copy(_) => Some("copy"),
        _ => None,
    }
}

fn config() -> NotifyConfig {
    let var = |k: &str| std::env::var(k).ok().filter(|v| !v.trim().is_empty());
    let mut on = Vec::new();
    for o in var("DBBACKUP_NOTIFY_ON").unwrap_or_default().split(',').map(str::trim) {
        match o {
            "success" => on.push(Outcome::Success),
            "failure" => on.push(Outcome::Failure),
            "unhealthy" => on.push(Outcome::Unhealthy),
            "" => {}
            other => tracing::warn!("DBBACKUP_NOTIFY_ON: unknown outcome {other:?} ignored"),
        }
    }
    NotifyConfig {
        slack_webhook: var("DBBACKUP_SLACK_WEBHOOK").map(Secret::new),
        webhook_url: var("DBBACKUP_WEBHOOK_URL").map(Secret::new),
        heartbeat_url: var("DBBACKUP_HEARTBEAT_URL").map(Secret::new),
        on,
        timeout: None,
    }
}

/// Sends the alert for a finished command; problems are logged as warnings only.
pub async fn after(command: Option<&str>, result: &Result<i32>) {
    let Some(command) = command else { return };
    let cfg = config();
    if cfg.is_empty() {
        return;
    }
    let (outcome, message) = match result {
        Ok(0) => (Outcome::Success, format!("{command} completed")),
        Ok(4) if command == "status" => {
            (Outcome::Unhealthy, "health checks failed (see `dbbackup status`)".into())
        }
        Ok(code) => (Outcome::Failure, format!("{command} finished with exit code {code}")),
        Err(e) => (Outcome::Failure, format!("{} error: {e:#}", kind_of(e))),
    };
    let host = std::env::var("HOSTNAME").ok().or_else(|| std::fs::read_to_string("/etc/hostname").ok());
    let n = Notification::new(command, outcome, message, host.map(|h| h.trim().to_string()));
    for w in notify(&cfg, &n).await {
        tracing::warn!("notification not delivered (the {command} result stands): {w}");
        eprintln!("dbbackup: warning: notification not delivered: {w}");
    }
}
