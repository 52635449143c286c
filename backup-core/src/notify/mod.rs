//! Alerts: tell a human or a monitor how a run ended. Four channels, any combination:
//! - a Slack incoming webhook (`{"text": ...}`),
//! - a generic JSON webhook (the [`Notification`] as JSON),
//! - e-mail over SMTP (see [`crate::mail`]),
//! - a heartbeat URL (dead-man's switch, healthchecks.io convention): `GET URL` on success,
//!   `GET URL/fail` on failure or unhealthy, so the monitor alerts when pings stop or fail.
//!
//! Beside them, an [`AlertInbox`] hands the alerts back to the caller, which delivers them
//! through its own channels (the FFI's `return_alerts`: Laravel notifications).
//!
//! What is sent when is decided by [`crate::alert`] (state changes) and by the callers for
//! events (a guard that rolled back, a failed restore); this module only delivers.
//!
//! [`notify`] never fails: every problem (unreachable URL, non-2xx, timeout) comes back as a
//! warning string for the caller to log. A notification can never fail or abort a backup.
//! Webhook URLs carry secrets (Slack's does), so they are [`Secret`]s and never printed.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

mod text;

use crate::error::{Error, Result};
use crate::mail::{EmailConfig, SmtpTls};
use crate::model::{Secret, redact_str};

/// One thing that is either healthy or failing right now (a `status` check, a command's result).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subject {
    /// Check name (`has_backup`, `newest_age`, ..., or a command: `create`, `prune`, ...).
    pub check: String,
    /// Repository the check is about, if one.
    pub repo: Option<String>,
    /// Passed.
    pub ok: bool,
    /// What was expected.
    pub expected: String,
    /// What was found.
    pub found: String,
}

/// Healthy or failing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Health {
    /// Passing.
    Healthy,
    /// Failing.
    Failing,
}

/// What a state change means for the people on call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Transition {
    /// Healthy -> failing (or failing and never alerted).
    Failing,
    /// Still failing, reminder interval passed.
    StillFailing,
    /// Failing -> healthy.
    Recovered,
}

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// It worked.
    Success,
    /// It failed.
    Failure,
    /// `status` found problems.
    Unhealthy,
    /// A check that was failing (and alerted) is healthy again.
    Recovered,
    /// The loudest: the database may be broken (a guard whose rollback failed).
    Critical,
}

impl Outcome {
    /// `success`, `failure`, `unhealthy`.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Failure => "failure",
            Outcome::Unhealthy => "unhealthy",
            Outcome::Recovered => "recovered",
            Outcome::Critical => "critical",
        }
    }
}

/// Where to send alerts and which outcomes Slack and the webhook hear about.
#[derive(Debug, Clone, Default)]
pub struct NotifyConfig {
    /// Slack incoming-webhook URL.
    pub slack_webhook: Option<Secret>,
    /// Generic webhook: receives the [`Notification`] as a JSON POST.
    pub webhook_url: Option<Secret>,
    /// Heartbeat URL: pinged on every run (`/fail` appended on failure/unhealthy).
    pub heartbeat_url: Option<Secret>,
    /// E-mail over SMTP.
    pub email: Option<EmailConfig>,
    /// Outcomes posted to Slack and the webhook (empty: failure and unhealthy).
    pub on: Vec<Outcome>,
    /// Per-request time limit (default 10 s).
    pub timeout: Option<Duration>,
    /// Reminder interval while a check stays failing (default 24 h).
    pub repeat: Option<Duration>,
    /// Local directory for alert state where the first repository cannot be written.
    pub state_dir: Option<PathBuf>,
    /// Host name shown in alerts.
    pub host: Option<String>,
    /// Alerts handed back to the caller (which delivers them itself); a channel like the others:
    /// an alert put there counts as delivered.
    pub inbox: Option<AlertInbox>,
}

/// The alerts of one run kept for the caller, in the order they were decided. Clones share the
/// same list.
#[derive(Debug, Clone, Default)]
pub struct AlertInbox(Arc<Mutex<Vec<Notification>>>);

impl AlertInbox {
    /// Takes the alerts collected so far.
    pub fn take(&self) -> Vec<Notification> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner))
    }

    fn push(&self, n: &Notification) {
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(n.clone());
    }
}

impl NotifyConfig {
    /// Whether any channel is configured.
    pub fn is_empty(&self) -> bool {
        !self.has_alert_channel() && self.heartbeat_url.is_none()
    }

    /// Whether a channel that carries alert text (Slack, webhook, e-mail, the caller's inbox)
    /// is configured.
    pub fn has_alert_channel(&self) -> bool {
        self.slack_webhook.is_some()
            || self.webhook_url.is_some()
            || self.email.is_some()
            || self.inbox.is_some()
    }

    /// The settings' names, as environment variables spell them (see [`NotifyConfig::from_pairs`]).
    pub const NAMES: [&'static str; 13] = [
        "DBBACKUP_SLACK_WEBHOOK",
        "DBBACKUP_WEBHOOK_URL",
        "DBBACKUP_HEARTBEAT_URL",
        "DBBACKUP_NOTIFY_ON",
        "DBBACKUP_NOTIFY_REPEAT",
        "DBBACKUP_STATE_DIR",
        "DBBACKUP_SMTP_URL",
        "DBBACKUP_SMTP_TLS",
        "DBBACKUP_SMTP_USER",
        "DBBACKUP_SMTP_PASSWORD",
        "DBBACKUP_SMTP_CA_FILE",
        "DBBACKUP_MAIL_FROM",
        "DBBACKUP_MAIL_TO",
    ];

    /// The canonical name of a setting: `smtp_url`, `smtp-url` and `DBBACKUP_SMTP_URL` are one
    /// setting; `None` when it is not an alert setting.
    pub fn setting_name(name: &str) -> Option<&'static str> {
        let n = name.trim().replace('-', "_").to_ascii_uppercase();
        let n = if n.starts_with("DBBACKUP_") { n } else { format!("DBBACKUP_{n}") };
        Self::NAMES.iter().copied().find(|k| *k == n)
    }

    /// Builds the settings from `(name, value)` pairs, whatever they were read from (the CLI's
    /// environment and config file, the FFI's JSON, Laravel's config). Names as in
    /// [`NotifyConfig::NAMES`], with or without the `DBBACKUP_` prefix, any case; an unknown name
    /// or a bad value is an error (a typo must not silently switch alerts off). Empty values are
    /// unset. `host` and `timeout` are left for the caller.
    pub fn from_pairs<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Result<Self> {
        let mut v = std::collections::BTreeMap::new();
        for (k, val) in pairs {
            let name = Self::setting_name(k).ok_or_else(|| {
                Error::InvalidInput(format!(
                    "unknown alert setting {k:?} (known: {})",
                    Self::NAMES.join(", ")
                ))
            })?;
            if !val.trim().is_empty() {
                v.insert(name, val.trim().to_string());
            }
        }
        let on = outcomes(v.get("DBBACKUP_NOTIFY_ON").map(String::as_str).unwrap_or_default())?;
        let repeat = match v.get("DBBACKUP_NOTIFY_REPEAT") {
            Some(d) => Some(
                crate::model::parse_duration(d)
                    .map_err(|e| Error::InvalidInput(format!("DBBACKUP_NOTIFY_REPEAT {d:?}: {e}")))?,
            ),
            None => None,
        };
        let email = email_settings(&v)?;
        Ok(NotifyConfig {
            slack_webhook: v.get("DBBACKUP_SLACK_WEBHOOK").cloned().map(Secret::new),
            webhook_url: v.get("DBBACKUP_WEBHOOK_URL").cloned().map(Secret::new),
            heartbeat_url: v.get("DBBACKUP_HEARTBEAT_URL").cloned().map(Secret::new),
            email,
            on,
            timeout: None,
            repeat,
            state_dir: v.get("DBBACKUP_STATE_DIR").map(Into::into),
            host: None,
            inbox: None,
        })
    }

    /// Whether alerts of this outcome are sent (`on`; empty: everything but success). A
    /// recovery follows the failure it ends; a critical alert is always sent.
    pub fn wants(&self, o: Outcome) -> bool {
        match o {
            Outcome::Critical => true,
            _ if self.on.is_empty() => o != Outcome::Success,
            Outcome::Recovered => self.on.iter().any(|x| *x != Outcome::Success),
            _ => self.on.contains(&o),
        }
    }
}

/// `DBBACKUP_NOTIFY_ON`: a comma-separated list of outcomes.
fn outcomes(list: &str) -> Result<Vec<Outcome>> {
    let mut on = Vec::new();
    for o in list.split(',').map(str::trim) {
        match o {
            "success" => on.push(Outcome::Success),
            "failure" => on.push(Outcome::Failure),
            "unhealthy" => on.push(Outcome::Unhealthy),
            "" => {}
            other => {
                return Err(Error::InvalidInput(format!(
                    "DBBACKUP_NOTIFY_ON: unknown outcome {other:?} (success, failure, unhealthy)"
                )));
            }
        }
    }
    Ok(on)
}

/// The e-mail settings among the alert settings `v`: none without `DBBACKUP_SMTP_URL` (then a
/// recipient or SMTP login is an error: it would be dropped silently).
fn email_settings(v: &std::collections::BTreeMap<&str, String>) -> Result<Option<EmailConfig>> {
    let Some(url) = v.get("DBBACKUP_SMTP_URL") else {
        if let Some(k) = ["DBBACKUP_MAIL_TO", "DBBACKUP_SMTP_USER", "DBBACKUP_SMTP_PASSWORD"]
            .into_iter()
            .find(|k| v.contains_key(k))
        {
            return Err(Error::InvalidInput(format!(
                "{k} is set but DBBACKUP_SMTP_URL is not: e-mail alerts need the SMTP server"
            )));
        }
        return Ok(None);
    };
    let tls = v.get("DBBACKUP_SMTP_TLS").map(|t| t.parse::<SmtpTls>()).transpose()?;
    let mut e = EmailConfig::from_url(url, tls)?;
    if let Some(u) = v.get("DBBACKUP_SMTP_USER") {
        e.user = Some(u.clone());
    }
    if let Some(p) = v.get("DBBACKUP_SMTP_PASSWORD") {
        e.password = Some(Secret::new(p.clone()));
    }
    e.ca_file = v.get("DBBACKUP_SMTP_CA_FILE").map(Into::into);
    e.from = v.get("DBBACKUP_MAIL_FROM").cloned();
    e.to = v
        .get("DBBACKUP_MAIL_TO")
        .map(|t| t.split(',').map(str::trim).filter(|a| !a.is_empty()).map(str::to_string).collect())
        .unwrap_or_default();
    e.check()?;
    Ok(Some(e))
}

/// What is reported.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notification {
    /// Always `dbbackup`.
    pub source: String,
    /// The command (`create`, `prune`, `status`, ...).
    pub command: String,
    /// How it ended.
    pub outcome: Outcome,
    /// One line for humans (the error message on failure).
    pub message: String,
    /// Host name, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// When.
    pub at: DateTime<Utc>,
    /// State changes this alert reports (see `alert.rs`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub alerts: Vec<AlertLine>,
    /// The repositories concerned.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub repos: Vec<String>,
    /// The database concerned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database: Option<String>,
    /// Event details (a guard's command, exit status, backup id, recovery time, ...).
    #[serde(default, skip_serializing_if = "serde_json::Map::is_empty")]
    pub details: serde_json::Map<String, serde_json::Value>,
}

/// One state change inside an alert.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlertLine {
    /// `failing`, `still_failing` or `recovered`.
    pub transition: Transition,
    /// Check name.
    pub check: String,
    /// Repository concerned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repo: Option<String>,
    /// Database concerned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database: Option<String>,
    /// What was expected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected: Option<String>,
    /// What was found.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub found: Option<String>,
    /// Failing since.
    pub failing_since: DateTime<Utc>,
    /// Failing for (seconds).
    pub failing_secs: u64,
}

/// The text of an alert: one line per state change.
pub fn alert_text(lines: &[AlertLine]) -> String {
    lines.iter().map(AlertLine::text).collect::<Vec<_>>().join("\n")
}

/// `45s`, `12m`, `3.2h`, `2.0d`.
pub fn human_secs(secs: u64) -> String {
    match secs {
        s if s < 120 => format!("{s}s"),
        s if s < 2 * 3600 => format!("{}m", s / 60),
        s if s < 2 * 86400 => format!("{:.1}h", s as f64 / 3600.0),
        s => format!("{:.1}d", s as f64 / 86400.0),
    }
}

impl Notification {
    /// A notification stamped now.
    pub fn new(command: &str, outcome: Outcome, message: impl Into<String>, host: Option<String>) -> Self {
        Notification {
            source: "dbbackup".into(),
            command: command.into(),
            outcome,
            message: message.into(),
            host,
            at: Utc::now(),
            alerts: Vec::new(),
            repos: Vec::new(),
            database: None,
            details: serde_json::Map::new(),
        }
    }
}

/// Sends `n` to every configured channel when its outcome is wanted, and pings the heartbeat;
/// returns warnings (empty when all went well).
pub async fn notify(cfg: &NotifyConfig, n: &Notification) -> Vec<String> {
    let mut warnings = Vec::new();
    if cfg.wants(n.outcome) {
        warnings.extend(deliver(cfg, n).await.1);
    }
    warnings.extend(heartbeat(cfg, n.outcome == Outcome::Success).await);
    warnings
}

fn client(cfg: &NotifyConfig) -> Result<reqwest::Client, String> {
    reqwest::Client::builder()
        .timeout(cfg.timeout.unwrap_or(Duration::from_secs(10)))
        .build()
        .map_err(|e| format!("notifications: cannot build HTTP client: {e}"))
}

/// Sends `n` to Slack and the webhook, whatever its outcome. Returns whether at least one
/// channel accepted it, and the warnings.
pub async fn deliver(cfg: &NotifyConfig, n: &Notification) -> (bool, Vec<String>) {
    let mut warnings = Vec::new();
    if !cfg.has_alert_channel() {
        return (false, warnings);
    }
    let mut delivered = false;
    if let Some(inbox) = &cfg.inbox {
        inbox.push(n);
        delivered = true;
    }
    if let Some(email) = &cfg.email {
        let timeout = cfg.timeout.unwrap_or(Duration::from_secs(10));
        match crate::mail::send(email, &n.subject(), n.body(), cfg.host.as_deref(), timeout).await {
            Ok(()) => delivered = true,
            Err(w) => warnings.push(w),
        }
    }
    if cfg.slack_webhook.is_none() && cfg.webhook_url.is_none() {
        return (delivered, warnings);
    }
    let client = match client(cfg) {
        Ok(c) => c,
        Err(e) => {
            warnings.push(e);
            return (delivered, warnings);
        }
    };
    if let Some(url) = &cfg.slack_webhook {
        let body = serde_json::json!({ "text": slack_text(n) }).to_string();
        delivered |= send(&client, "Slack webhook", url, Some(body), &mut warnings).await;
    }
    if let Some(url) = &cfg.webhook_url {
        match serde_json::to_string(n) {
            Ok(body) => delivered |= send(&client, "webhook", url, Some(body), &mut warnings).await,
            Err(e) => warnings.push(format!("webhook: {e}")),
        }
    }
    (delivered, warnings)
}

/// Pings the heartbeat URL: `GET URL` when the run succeeded, `GET URL/fail` otherwise.
pub async fn heartbeat(cfg: &NotifyConfig, ok: bool) -> Vec<String> {
    let mut warnings = Vec::new();
    let Some(url) = &cfg.heartbeat_url else { return warnings };
    let client = match client(cfg) {
        Ok(c) => c,
        Err(e) => return vec![e],
    };
    let base = url.expose().trim_end_matches('/');
    let target = if ok { base.to_string() } else { format!("{base}/fail") };
    send(&client, "heartbeat", &Secret::new(target), None, &mut warnings).await;
    warnings
}

/// The one-paragraph text of Slack and the e-mail subject/body head.
pub fn slack_text(n: &Notification) -> String {
    let icon = match n.outcome {
        Outcome::Success => ":white_check_mark:",
        Outcome::Failure => ":x:",
        Outcome::Unhealthy => ":warning:",
        Outcome::Recovered => ":large_green_circle:",
        Outcome::Critical => ":rotating_light:",
    };
    let host = n.host.as_deref().map(|h| format!(" on {h}")).unwrap_or_default();
    format!("{icon} dbbackup {} {}{host}: {}", n.command, n.outcome.as_str(), n.message)
}

async fn send(
    client: &reqwest::Client,
    what: &str,
    url: &Secret,
    json: Option<String>,
    warnings: &mut Vec<String>,
) -> bool {
    let req = match json {
        Some(body) => client.post(url.expose()).header("content-type", "application/json").body(body),
        None => client.get(url.expose()),
    };
    // Errors may quote the URL; the path of a Slack/heartbeat URL is the secret, so print the host only.
    let shown = redact_url(url.expose());
    match req.send().await {
        Ok(r) if r.status().is_success() => return true,
        Ok(r) => warnings.push(format!("{what} {shown} answered {}", r.status())),
        Err(e) => {
            warnings.push(format!("{what} {shown} failed: {}", redact_str(&e.without_url().to_string())))
        }
    }
    false
}

fn redact_url(u: &str) -> String {
    match url::Url::parse(u) {
        Ok(p) => format!("{}://{}/***", p.scheme(), p.host_str().unwrap_or("?")),
        Err(_) => "(invalid URL)".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_outcomes_and_redaction() {
        let c = NotifyConfig::default();
        assert!(
            c.is_empty()
                && !c.wants(Outcome::Success)
                && c.wants(Outcome::Failure)
                && c.wants(Outcome::Unhealthy)
        );
        let c = NotifyConfig { on: vec![Outcome::Success], ..Default::default() };
        assert!(c.wants(Outcome::Success) && !c.wants(Outcome::Failure));
        assert_eq!(
            redact_url("https://hooks.slack.com/services/T0/B0/secret"),
            "https://hooks.slack.com/***"
        );
    }
}
