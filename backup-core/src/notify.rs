//! Alerts: tell a human or a monitor how a run ended. Three channels, any combination:
//! - a Slack incoming webhook (`{"text": ...}`),
//! - a generic JSON webhook (the [`Notification`] as JSON),
//! - a heartbeat URL (dead-man's switch, healthchecks.io convention): `GET URL` on success,
//!   `GET URL/fail` on failure or unhealthy, so the monitor alerts when pings stop or fail.
//!
//! [`notify`] never fails: every problem (unreachable URL, non-2xx, timeout) comes back as a
//! warning string for the caller to log. A notification can never fail or abort a backup.
//! Webhook URLs carry secrets (Slack's does), so they are [`Secret`]s and never printed.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::model::{Secret, redact_str};

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
}

impl Outcome {
    /// `success`, `failure`, `unhealthy`.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Failure => "failure",
            Outcome::Unhealthy => "unhealthy",
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
    /// Outcomes posted to Slack and the webhook (empty: failure and unhealthy).
    pub on: Vec<Outcome>,
    /// Per-request time limit (default 10 s).
    pub timeout: Option<Duration>,
}

impl NotifyConfig {
    /// Whether any channel is configured.
    pub fn is_empty(&self) -> bool {
        self.slack_webhook.is_none() && self.webhook_url.is_none() && self.heartbeat_url.is_none()
    }

    fn wants(&self, o: Outcome) -> bool {
        if self.on.is_empty() { o != Outcome::Success } else { self.on.contains(&o) }
    }
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
        }
    }
}

/// Sends `n` to every configured channel; returns warnings (empty when all went well).
pub async fn notify(cfg: &NotifyConfig, n: &Notification) -> Vec<String> {
    let mut warnings = Vec::new();
    if cfg.is_empty() {
        return warnings;
    }
    let client =
        match reqwest::Client::builder().timeout(cfg.timeout.unwrap_or(Duration::from_secs(10))).build() {
            Ok(c) => c,
            Err(e) => return vec![format!("notifications: cannot build HTTP client: {e}")],
        };
    let wants = cfg.wants(n.outcome);
    if let (Some(url), true) = (&cfg.slack_webhook, wants) {
        let icon = match n.outcome {
            Outcome::Success => ":white_check_mark:",
            Outcome::Failure => ":x:",
            Outcome::Unhealthy => ":warning:",
        };
        let host = n.host.as_deref().map(|h| format!(" on {h}")).unwrap_or_default();
        let text = format!("{icon} dbbackup {} {}{host}: {}", n.command, n.outcome.as_str(), n.message);
        let body = serde_json::json!({ "text": text }).to_string();
        send(&client, "Slack webhook", url, Some(body), &mut warnings).await;
    }
    if let (Some(url), true) = (&cfg.webhook_url, wants) {
        match serde_json::to_string(n) {
            Ok(body) => send(&client, "webhook", url, Some(body), &mut warnings).await,
            Err(e) => warnings.push(format!("webhook: {e}")),
        }
    }
    if let Some(url) = &cfg.heartbeat_url {
        let base = url.expose().trim_end_matches('/');
        let target = if n.outcome == Outcome::Success { base.to_string() } else { format!("{base}/fail") };
        send(&client, "heartbeat", &Secret::new(target), None, &mut warnings).await;
    }
    warnings
}

async fn send(
    client: &reqwest::Client,
    what: &str,
    url: &Secret,
    json: Option<String>,
    warnings: &mut Vec<String>,
) {
    let req = match json {
        Some(body) => client.post(url.expose()).header("content-type", "application/json").body(body),
        None => client.get(url.expose()),
    };
    // Errors may quote the URL; the path of a Slack/heartbeat URL is the secret, so print the host only.
    let shown = redact_url(url.expose());
    match req.send().await {
        Ok(r) if r.status().is_success() => {}
        Ok(r) => warnings.push(format!("{what} {shown} answered {}", r.status())),
        Err(e) => {
            warnings.push(format!("{what} {shown} failed: {}", redact_str(&e.without_url().to_string())))
        }
    }
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
