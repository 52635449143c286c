//! JSON options (keys = the CLI's long flag names in snake_case) -> the core's `*Options`.
//!
//! Every operation accepts the common keys `timeout_ms` (alias `deadline_ms`): the operation is
//! cancelled when it has run that long. Unknown keys are a usage error, so a typo never silently
//! changes what a backup or restore does.
//!
//! Split by role: this file the common keys (time limit, store settings, alerts) and each
//! operation's alert scope, `args.rs` each operation's own keys (one `*Args` per command),
//! `values.rs` the value shapes they share (one string or many, sizes, durations, keys).

mod args;
#[cfg(test)]
mod tests;
mod values;

pub(crate) use args::{
    CopyArgs, CreateArgs, GuardArgs, ListArgs, PruneArgs, RestoreArgs, StatusArgs, VerifyArgs,
};

use std::sync::{Arc, Mutex};
use std::time::Duration;

use backup_core::{
    AlertInbox, AlertScope, CopyOptions, CreateOptions, Error, GuardOptions, ListOptions, NotifyConfig,
    PruneOptions, RepoSettings, RestoreOptions, Result, StatusOptions, StoreConfig, VerifyOptions,
};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

/// Options every operation understands, taken out before the operation's own keys are read.
#[derive(Debug, Default)]
pub(crate) struct Common {
    /// Cancel the operation after this long.
    pub timeout: Option<Duration>,
    /// Panic inside the boundary (panic-safety tests; only with the `test-panic` feature).
    pub debug_panic: bool,
    /// `repo_settings`: each repository's store settings (credentials, endpoint), keyed by the
    /// repository URL exactly as given in `repo`/`from`/`to`.
    pub stores: RepoSettings,
    /// `alerts`: the alert settings, as the CLI's environment names them.
    pub alerts: Alerting,
}

/// Alerts of one operation: the settings (none: no alerts), for `dbb_guard` the guarded
/// command's text (`command_line`) the alerts name, and the delivery warnings of alerts sent
/// while the operation ran (a status's checks, a guard's rollback), which go into the report's
/// `alert_warnings` like those sent after it.
#[derive(Debug, Default, Clone)]
pub(crate) struct Alerting {
    pub cfg: Option<NotifyConfig>,
    pub command_line: Option<String>,
    pub warnings: Arc<Mutex<Vec<String>>>,
}

impl Alerting {
    /// Keeps delivery warnings for the report.
    pub(crate) fn warn(&self, warnings: Vec<String>) {
        self.warnings.lock().unwrap_or_else(std::sync::PoisonError::into_inner).extend(warnings);
    }

    /// Takes the warnings kept so far.
    pub(crate) fn take_warnings(&self) -> Vec<String> {
        std::mem::take(&mut *self.warnings.lock().unwrap_or_else(std::sync::PoisonError::into_inner))
    }

    /// The alerts handed back to the caller (`return_alerts`), taken.
    pub(crate) fn take_returned(&self) -> Vec<backup_core::Notification> {
        self.cfg.as_ref().and_then(|c| c.inbox.as_ref()).map(AlertInbox::take).unwrap_or_default()
    }
}

/// Parses the options text into the common part and the operation's own typed options.
pub(crate) fn parse<T: DeserializeOwned>(text: Option<&str>) -> Result<(Common, T)> {
    let text = text.map(str::trim).filter(|t| !t.is_empty()).unwrap_or("{}");
    let value: Value = serde_json::from_str(text)
        .map_err(|e| Error::InvalidInput(format!("options are not valid JSON: {e}")))?;
    let Value::Object(mut map) = value else {
        return Err(Error::InvalidInput("options must be a JSON object".into()));
    };
    let common = take_common(&mut map)?;
    let typed = serde_json::from_value(Value::Object(map))
        .map_err(|e| Error::InvalidInput(format!("options: {e}")))?;
    Ok((common, typed))
}

fn take_common(map: &mut Map<String, Value>) -> Result<Common> {
    let mut common = Common::default();
    for key in ["timeout_ms", "deadline_ms"] {
        match map.remove(key) {
            None | Some(Value::Null) => {}
            Some(v) => {
                let ms = v.as_u64().ok_or_else(|| {
                    Error::InvalidInput(format!("options: {key} must be a non-negative integer"))
                })?;
                common.timeout = Some(Duration::from_millis(ms));
            }
        }
    }
    if let Some(v) = map.remove("repo_settings") {
        common.stores = repo_settings(v)?;
    }
    if let Some(v) = map.remove("alerts") {
        common.alerts.cfg = alert_settings(v)?;
    }
    match map.remove("return_alerts") {
        None | Some(Value::Null | Value::Bool(false)) => {}
        Some(Value::Bool(true)) => {
            // The alerts are decided as always (state, repeat, `notify_on`) and also handed back
            // in the report's `returned_alerts`: the caller delivers them through its own channels.
            let cfg = common
                .alerts
                .cfg
                .get_or_insert_with(|| NotifyConfig { host: this_host(), ..NotifyConfig::default() });
            cfg.inbox = Some(AlertInbox::default());
        }
        Some(_) => return Err(Error::InvalidInput("options: return_alerts must be true or false".into())),
    }
    if common.alerts.cfg.as_ref().is_some_and(NotifyConfig::is_empty) {
        common.alerts.cfg = None;
    }
    if let Some(v) = map.remove("command_line") {
        common.alerts.command_line = Some(
            v.as_str()
                .ok_or_else(|| Error::InvalidInput("options: command_line must be a string".into()))?
                .to_string(),
        );
    }
    if let Some(v) = map.remove("debug_panic") {
        if !cfg!(any(test, feature = "test-panic")) {
            return Err(Error::InvalidInput(
                "options: unknown field `debug_panic` (only in builds with the test-panic feature)".into(),
            ));
        }
        common.debug_panic = v.as_bool().unwrap_or(false);
    }
    Ok(common)
}

/// `{"slack_webhook": "...", "smtp_url": "...", "mail_to": ["a@b", ...], ...}`: the CLI's alert
/// settings (`DBBACKUP_SLACK_WEBHOOK`, ...; with or without the prefix, any case). An unknown name
/// or a bad value is a usage error; an empty object means no alerts. The host name shown in
/// alerts is `host`, else this machine's.
fn alert_settings(value: Value) -> Result<Option<NotifyConfig>> {
    let bad = |what: String| Error::InvalidInput(format!("options: alerts{what}"));
    let Value::Object(map) = value else {
        return match value {
            Value::Null => Ok(None),
            _ => {
                Err(bad(" must be an object {\"slack_webhook\": \"...\", \"smtp_url\": \"...\", ...}".into()))
            }
        };
    };
    let mut pairs = Vec::with_capacity(map.len());
    let mut host = None;
    for (name, v) in map {
        let text = match v {
            Value::String(s) => s,
            Value::Bool(b) => b.to_string(),
            Value::Number(n) => n.to_string(),
            Value::Array(a) => a
                .iter()
                .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_string))
                .collect::<Vec<_>>()
                .join(","),
            Value::Null => continue,
            Value::Object(_) => {
                return Err(bad(format!(".{name} must be a string, number, boolean or list")));
            }
        };
        if name == "host" {
            host = Some(text);
            continue;
        }
        pairs.push((name, text));
    }
    let mut cfg = NotifyConfig::from_pairs(pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .map_err(|e| bad(format!(": {e}")))?;
    // Kept even without a channel: `return_alerts` may add the caller's inbox (with these
    // `notify_on`/`notify_repeat`/`state_dir`); no channel at all means no alerts.
    cfg.host = host.or_else(this_host);
    Ok(Some(cfg))
}

fn this_host() -> Option<String> {
    std::fs::read_to_string("/etc/hostname").ok().map(|h| h.trim().to_string()).filter(|h| !h.is_empty())
}

/// `{"URL": {"AWS_ACCESS_KEY_ID": "...", "AWS_ENDPOINT": "...", ...}, ...}` -> per-repository
/// settings. Names are the environment variables' (see the core's `storage::url`); values are
/// strings, numbers or booleans; an unknown name is a usage error, so a typo never silently drops
/// a credential.
fn repo_settings(value: Value) -> Result<RepoSettings> {
    let bad = |what: String| Error::InvalidInput(format!("options: repo_settings{what}"));
    let Value::Object(repos) = value else {
        return Err(bad(" must be an object {\"REPO URL\": {\"NAME\": \"value\"}}".into()));
    };
    let mut settings = RepoSettings::default();
    for (url, vars) in repos {
        let Value::Object(vars) = vars else {
            return Err(bad(format!("[{url:?}] must be an object of settings")));
        };
        let mut pairs = Vec::with_capacity(vars.len());
        for (name, v) in vars {
            let text = match v {
                Value::String(s) => s,
                Value::Bool(b) => b.to_string(),
                Value::Number(n) => n.to_string(),
                Value::Null => continue,
                _ => return Err(bad(format!("[{url:?}].{name} must be a string, number or boolean"))),
            };
            pairs.push((name, text));
        }
        let cfg = StoreConfig::from_pairs(pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        let dropped =
            pairs.iter().find(|(k, v)| !v.trim().is_empty() && cfg.get(&k.to_ascii_uppercase()).is_none());
        if let Some(name) = dropped.map(|(k, _)| k.clone()).or_else(|| cfg.unknown_names().into_iter().next())
        {
            return Err(bad(format!(
                "[{url:?}]: unknown setting {name} (AWS_*, AZURE_*, GOOGLE_* as object_store names them, AWS_BUCKET, AWS_USE_PATH_STYLE_ENDPOINT, DBBACKUP_S3_CONDITIONAL_PUT, DBBACKUP_STORE_*)"
            )));
        }
        settings = settings.with_repo(url, cfg);
    }
    Ok(settings)
}

/// The alert scope of an operation's options (`None`: the operation does not alert).
pub(crate) trait Scoped {
    fn alert_scope(&self) -> Option<AlertScope>;
}

impl Scoped for CreateOptions {
    fn alert_scope(&self) -> Option<AlertScope> {
        let encrypted = !self.encrypt_to.is_empty() || self.passphrase.is_some();
        Some(AlertScope::of(self.repos.clone(), Some(&self.source), encrypted))
    }
}

impl Scoped for ListOptions {
    fn alert_scope(&self) -> Option<AlertScope> {
        None
    }
}

impl Scoped for VerifyOptions {
    fn alert_scope(&self) -> Option<AlertScope> {
        Some(AlertScope::of(vec![self.repo.clone()], None, false))
    }
}

impl Scoped for RestoreOptions {
    fn alert_scope(&self) -> Option<AlertScope> {
        let encrypted = self.identity.is_some() || self.passphrase.is_some();
        Some(AlertScope::of(vec![self.repo.clone()], Some(&self.into), encrypted))
    }
}

impl Scoped for PruneOptions {
    fn alert_scope(&self) -> Option<AlertScope> {
        Some(AlertScope::of(vec![self.repo.clone()], None, false))
    }
}

impl Scoped for StatusOptions {
    fn alert_scope(&self) -> Option<AlertScope> {
        Some(AlertScope::of(self.repos.clone(), None, false))
    }
}

impl Scoped for CopyOptions {
    fn alert_scope(&self) -> Option<AlertScope> {
        Some(AlertScope::of(vec![self.from.clone(), self.to.clone()], None, false))
    }
}

impl Scoped for GuardOptions {
    fn alert_scope(&self) -> Option<AlertScope> {
        Some(AlertScope::of(self.repos.clone(), Some(&self.source), false))
    }
}

/// `dbb_client_new` options.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ClientArgs {
    /// Worker threads of the handle's runtime (default: number of CPUs).
    pub worker_threads: Option<usize>,
}
