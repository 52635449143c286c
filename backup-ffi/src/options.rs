//! JSON options (keys = the CLI's long flag names in snake_case) -> the core's `*Options`.
//!
//! Every operation accepts the common keys `timeout_ms` (alias `deadline_ms`): the operation is
//! cancelled when it has run that long. Unknown keys are a usage error, so a typo never silently
//! changes what a backup or restore does.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use backup_core::{
    AlertInbox, AlertScope, CopyOptions, CreateOptions, Error, GuardOptions, ListOptions, NotifyConfig,
    PruneOptions, RepoSettings, RestoreOptions, Result, RetentionPolicy, Secret, StatusOptions, StoreConfig,
    VerifyOptions,
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

/// A value given either as one string or as an array of strings (`repo`, `tag`, `tables`).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(crate) enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    fn into_vec(self) -> Vec<String> {
        match self {
            OneOrMany::One(s) => vec![s],
            OneOrMany::Many(v) => v,
        }
    }

    /// Like the CLI's comma-delimited flags: `"a,b"` and `["a", "b"]` mean the same.
    fn into_split_vec(self) -> Vec<String> {
        self.into_vec()
            .iter()
            .flat_map(|s| s.split(','))
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect()
    }
}

fn jobs(j: Option<usize>) -> usize {
    j.unwrap_or_else(backup_core::default_jobs).max(1)
}

/// The session time limits given (`connect_timeout`, `lock_timeout`, `statement_timeout`).
fn session(
    connect_timeout: Option<String>,
    lock_timeout: Option<String>,
    statement_timeout: Option<String>,
) -> backup_core::SessionOptions {
    backup_core::SessionOptions { connect_timeout, lock_timeout, statement_timeout }
}

fn one_repo(repo: Option<OneOrMany>) -> Result<String> {
    let repos = repo.map(OneOrMany::into_vec).unwrap_or_default();
    match <[String; 1]>::try_from(repos) {
        Ok([r]) => Ok(r),
        Err(v) if v.is_empty() => Err(Error::InvalidInput("options: repo is required".into())),
        Err(_) => Err(Error::InvalidInput("options: this operation takes exactly one repo".into())),
    }
}

fn required(value: Option<String>, key: &str) -> Result<String> {
    value.filter(|v| !v.is_empty()).ok_or_else(|| Error::InvalidInput(format!("options: {key} is required")))
}

/// `dbb_create` options: the flags of `dbbackup create`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateArgs {
    source: Option<String>,
    #[serde(alias = "repos")]
    repo: Option<OneOrMany>,
    compression: Option<String>,
    jobs: Option<usize>,
    #[serde(alias = "tags")]
    tag: Option<OneOrMany>,
    chunk_mib: Option<u64>,
    #[serde(default)]
    no_checksums: bool,
    temp_dir: Option<PathBuf>,
    password: Option<String>,
    #[serde(default)]
    no_definer: bool,
    #[serde(default)]
    keep_owners: bool,
    /// Session time limits (`"30s"`, seconds, `"0"` for none), as the CLI's flags.
    connect_timeout: Option<String>,
    lock_timeout: Option<String>,
    statement_timeout: Option<String>,
    /// age recipients (`age1...`): a list or one comma/blank-separated string.
    #[serde(alias = "recipients")]
    encrypt_to: Option<OneOrMany>,
    /// Passphrase that opens the backup (age scrypt).
    passphrase: Option<String>,
}

impl CreateArgs {
    pub(crate) fn into_core(self) -> Result<CreateOptions> {
        let defaults = CreateOptions::default();
        Ok(CreateOptions {
            source: required(self.source, "source")?,
            password: self.password.map(Secret::new),
            repos: self.repo.map(OneOrMany::into_split_vec).unwrap_or_default(),
            compression: match self.compression {
                Some(c) => c.parse()?,
                None => defaults.compression,
            },
            jobs: jobs(self.jobs),
            tags: self.tag.map(OneOrMany::into_split_vec).unwrap_or_default(),
            chunk_bytes: self.chunk_mib.map(|m| m.max(1) << 20).unwrap_or(defaults.chunk_bytes),
            checksums: !self.no_checksums,
            temp_dir: self.temp_dir,
            engine_options: backup_core::EngineOptions {
                mysql: backup_core::MysqlOptions { no_definer: self.no_definer, ..Default::default() },
                postgres: backup_core::PostgresOptions { keep_owners: self.keep_owners },
                session: session(self.connect_timeout, self.lock_timeout, self.statement_timeout),
            },
            encrypt_to: self.encrypt_to.map(OneOrMany::into_split_vec).unwrap_or_default(),
            passphrase: self.passphrase.filter(|p| !p.is_empty()).map(Secret::new),
        })
    }
}

/// The key of an encrypted backup: the identity itself (`AGE-SECRET-KEY-1...`), a path to an
/// identity file, and/or a passphrase.
fn identity(text: Option<String>, file: Option<PathBuf>) -> Result<Option<Secret>> {
    if let Some(t) = text.filter(|t| !t.is_empty()) {
        return Ok(Some(Secret::new(t)));
    }
    match file {
        Some(path) => std::fs::read_to_string(&path)
            .map(|t| Some(Secret::new(t)))
            .map_err(|e| Error::io(format!("read identity file {}", path.display()), e)),
        None => Ok(None),
    }
}

/// `dbb_list` options: the flags of `dbbackup list`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ListArgs {
    #[serde(alias = "repos")]
    repo: Option<OneOrMany>,
    tag: Option<String>,
}

impl ListArgs {
    pub(crate) fn into_core(self) -> Result<ListOptions> {
        Ok(ListOptions { repo: one_repo(self.repo)?, tag: self.tag })
    }
}

/// `dbb_verify` options: the flags of `dbbackup verify`, `backup` for the positional argument.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct VerifyArgs {
    #[serde(alias = "repos")]
    repo: Option<OneOrMany>,
    backup: Option<String>,
    level: Option<String>,
    scratch: Option<String>,
    jobs: Option<usize>,
    #[serde(default)]
    no_record: bool,
    password: Option<String>,
    identity: Option<String>,
    identity_file: Option<PathBuf>,
    passphrase: Option<String>,
}

impl VerifyArgs {
    pub(crate) fn into_core(self) -> Result<VerifyOptions> {
        let defaults = VerifyOptions::default();
        Ok(VerifyOptions {
            repo: one_repo(self.repo)?,
            backup: self.backup.filter(|b| !b.is_empty()).unwrap_or(defaults.backup),
            level: match self.level {
                Some(l) => l.parse()?,
                None => defaults.level,
            },
            scratch: self.scratch,
            password: self.password.map(Secret::new),
            jobs: jobs(self.jobs),
            record: !self.no_record,
            identity: identity(self.identity, self.identity_file)?,
            passphrase: self.passphrase.filter(|p| !p.is_empty()).map(Secret::new),
        })
    }
}

/// `dbb_restore` options: the flags of `dbbackup restore`, `backup` for the positional argument.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RestoreArgs {
    #[serde(alias = "repos")]
    repo: Option<OneOrMany>,
    backup: Option<String>,
    into: Option<String>,
    #[serde(default)]
    force: bool,
    #[serde(default)]
    production: bool,
    #[serde(default)]
    in_place: bool,
    tables: Option<OneOrMany>,
    #[serde(default)]
    verify_first: bool,
    jobs: Option<usize>,
    password: Option<String>,
    #[serde(default)]
    no_definer: bool,
    #[serde(default)]
    keep_owners: bool,
    #[serde(default)]
    full_checksum: bool,
    /// Session time limits (`"30s"`, seconds, `"0"` for none), as the CLI's flags.
    connect_timeout: Option<String>,
    lock_timeout: Option<String>,
    statement_timeout: Option<String>,
    identity: Option<String>,
    identity_file: Option<PathBuf>,
    passphrase: Option<String>,
    #[serde(default)]
    undo: bool,
    keep_undo: Option<Secs>,
    #[serde(default)]
    no_undo: bool,
    undo_dir: Option<PathBuf>,
}

/// The undo area: the `undo_dir` option, else the default under the state directory (from the
/// process environment, like the CLI: `DBBACKUP_UNDO_DIR`, `XDG_STATE_HOME`, `HOME`).
fn undo_dir(given: Option<PathBuf>) -> Option<PathBuf> {
    given
        .filter(|d| !d.as_os_str().is_empty())
        .or_else(|| backup_core::default_undo_dir(|k| std::env::var(k).ok()))
}

impl RestoreArgs {
    pub(crate) fn into_core(self) -> Result<RestoreOptions> {
        let defaults = RestoreOptions::default();
        let backup = self.backup.filter(|b| !b.is_empty()).unwrap_or(defaults.backup);
        // A plain dump file (`.sql`, `.sql.gz`, `.sql.zst`) needs no repository; nor does --undo,
        // which reads the undo area.
        let repo = match self.repo {
            None if self.undo || backup_core::foreign_script_path(&backup).is_some() => String::new(),
            repo => one_repo(repo)?,
        };
        Ok(RestoreOptions {
            repo,
            backup,
            into: required(self.into, "into")?,
            password: self.password.map(Secret::new),
            jobs: jobs(self.jobs),
            in_place: self.in_place,
            tables: self.tables.map(OneOrMany::into_split_vec),
            production: self.production,
            force: self.force,
            verify_first: self.verify_first,
            engine_options: backup_core::EngineOptions {
                mysql: backup_core::MysqlOptions {
                    no_definer: self.no_definer,
                    full_checksum: self.full_checksum,
                    ..Default::default()
                },
                postgres: backup_core::PostgresOptions { keep_owners: self.keep_owners },
                session: session(self.connect_timeout, self.lock_timeout, self.statement_timeout),
            },
            identity: identity(self.identity, self.identity_file)?,
            passphrase: self.passphrase.filter(|p| !p.is_empty()).map(Secret::new),
            undo_dir: undo_dir(self.undo_dir),
            keep_undo_secs: match (self.no_undo, self.keep_undo) {
                (true, _) => 0,
                (false, Some(k)) => k.secs()?,
                (false, None) => defaults.keep_undo_secs,
            },
            undo: self.undo,
            ..defaults
        })
    }
}

/// A size given as bytes (`1048576`) or text (`50GiB`, `500MB`), like the CLI's `--max-size`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(crate) enum Size {
    Bytes(u64),
    Text(String),
}

impl Size {
    fn bytes(self) -> Result<u64> {
        let t = match self {
            Size::Bytes(n) => return Ok(n),
            Size::Text(t) => t,
        };
        backup_core::parse_size(&t)
    }
}

/// A duration given as seconds (`93600`) or text (`26h`, `7d`, `30m`), like the CLI's
/// `--max-age`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(crate) enum Secs {
    Secs(u64),
    Text(String),
}

impl Secs {
    /// Like the CLI's `--max-rto`: seconds as a number, or text such as `90s`, `2m`, `1h 30m`.
    fn millis(self) -> Result<u64> {
        let t = match self {
            Secs::Secs(n) => return Ok(n.saturating_mul(1000)),
            Secs::Text(t) => t,
        };
        Ok(u64::try_from(backup_core::parse_duration(&t)?.as_millis()).unwrap_or(u64::MAX))
    }

    fn secs(self) -> Result<u64> {
        let t = match self {
            Secs::Secs(n) => return Ok(n),
            Secs::Text(t) => t,
        };
        Ok(backup_core::parse_duration(&t)?.as_secs())
    }
}

/// `dbb_prune` options: the flags of `dbbackup prune`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PruneArgs {
    #[serde(alias = "repos")]
    repo: Option<OneOrMany>,
    keep_last: Option<u32>,
    keep_hourly: Option<u32>,
    keep_daily: Option<u32>,
    keep_weekly: Option<u32>,
    keep_monthly: Option<u32>,
    keep_yearly: Option<u32>,
    max_size: Option<Size>,
    orphan_grace: Option<Secs>,
    #[serde(default)]
    dry_run: bool,
    undo_dir: Option<PathBuf>,
}

impl PruneArgs {
    pub(crate) fn into_core(self) -> Result<PruneOptions> {
        let defaults = PruneOptions::default();
        Ok(PruneOptions {
            repo: one_repo(self.repo)?,
            policy: RetentionPolicy {
                keep_last: self.keep_last,
                keep_hourly: self.keep_hourly,
                keep_daily: self.keep_daily,
                keep_weekly: self.keep_weekly,
                keep_monthly: self.keep_monthly,
                keep_yearly: self.keep_yearly,
                max_size: self.max_size.map(Size::bytes).transpose()?,
            },
            dry_run: self.dry_run,
            orphan_grace_secs: self
                .orphan_grace
                .map(Secs::secs)
                .transpose()?
                .unwrap_or(defaults.orphan_grace_secs),
            undo_dir: undo_dir(self.undo_dir),
            ..defaults
        })
    }
}

/// `dbb_status` options: the flags of `dbbackup status`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct StatusArgs {
    #[serde(alias = "repos")]
    repo: Option<OneOrMany>,
    max_age: Option<Secs>,
    max_size: Option<Size>,
    max_drill_age: Option<Secs>,
    min_size: Option<Size>,
    max_shrink: Option<Fraction>,
    source: Option<String>,
    require_offsite: Option<bool>,
    undo_dir: Option<PathBuf>,
}

/// `--max-shrink`: `0.5` or `"50%"`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(crate) enum Fraction {
    Num(f64),
    Text(String),
}

impl Fraction {
    fn value(self) -> Result<f64> {
        Ok(match self {
            Fraction::Num(n) => backup_core::parse_fraction(&n.to_string())?,
            Fraction::Text(t) => backup_core::parse_fraction(&t)?,
        })
    }
}

impl StatusArgs {
    pub(crate) fn into_core(self) -> Result<StatusOptions> {
        Ok(StatusOptions {
            repos: self.repo.map(OneOrMany::into_split_vec).unwrap_or_default(),
            max_age_secs: self.max_age.map(Secs::secs).transpose()?,
            max_size: self.max_size.map(Size::bytes).transpose()?,
            max_drill_age_secs: self.max_drill_age.map(Secs::secs).transpose()?,
            min_size: self.min_size.map(Size::bytes).transpose()?,
            max_shrink: self.max_shrink.map(Fraction::value).transpose()?,
            source: self.source,
            require_offsite: self.require_offsite.unwrap_or(false),
            clock_tolerance_secs: None,
            all_databases: false,
            undo_dir: undo_dir(self.undo_dir),
        })
    }
}

/// `dbb_copy` options: the flags of `dbbackup copy`, `backup` for the positional argument.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CopyArgs {
    from: Option<String>,
    to: Option<String>,
    backup: Option<String>,
    jobs: Option<usize>,
}

impl CopyArgs {
    pub(crate) fn into_core(self) -> Result<CopyOptions> {
        let defaults = CopyOptions::default();
        Ok(CopyOptions {
            from: required(self.from, "from")?,
            to: required(self.to, "to")?,
            backup: self.backup.filter(|b| !b.is_empty()).unwrap_or(defaults.backup),
            jobs: self.jobs.map_or(defaults.jobs, |j| j.max(1)),
            ..defaults
        })
    }
}

/// `dbb_guard` options: the flags of `dbbackup guard` (the command itself is the callback).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct GuardArgs {
    source: Option<String>,
    #[serde(alias = "repos")]
    repo: Option<OneOrMany>,
    max_rto: Option<Secs>,
    max_rto_ms: Option<u64>,
    compression: Option<String>,
    #[serde(alias = "tags")]
    tag: Option<OneOrMany>,
    jobs: Option<usize>,
    password: Option<String>,
    operator: Option<String>,
    #[serde(default)]
    no_definer: bool,
    #[serde(default)]
    keep_owners: bool,
    /// Session time limits (`"30s"`, seconds, `"0"` for none), as the CLI's flags.
    connect_timeout: Option<String>,
    lock_timeout: Option<String>,
    statement_timeout: Option<String>,
}

impl GuardArgs {
    pub(crate) fn into_core(self) -> Result<GuardOptions> {
        let defaults = GuardOptions::default();
        let max_rto_ms = match (self.max_rto_ms, self.max_rto) {
            (Some(ms), _) => Some(ms),
            (None, Some(d)) => Some(d.millis()?),
            (None, None) => None,
        };
        Ok(GuardOptions {
            source: required(self.source, "source")?,
            password: self.password.map(Secret::new),
            repos: self.repo.map(OneOrMany::into_split_vec).unwrap_or_default(),
            compression: match self.compression {
                Some(c) => c.parse()?,
                None => defaults.compression,
            },
            jobs: jobs(self.jobs),
            tags: self.tag.map(OneOrMany::into_split_vec).unwrap_or_default(),
            max_rto_ms,
            operator: self.operator,
            engine_options: backup_core::EngineOptions {
                mysql: backup_core::MysqlOptions { no_definer: self.no_definer, ..Default::default() },
                postgres: backup_core::PostgresOptions { keep_owners: self.keep_owners },
                session: session(self.connect_timeout, self.lock_timeout, self.statement_timeout),
            },
        })
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cli_flag_names_map_to_core_options() {
        let (common, a): (Common, CreateArgs) = parse(Some(
            r#"{"source":"sqlite:///x.db","repo":["/a","/b"],"compression":"gzip:6","jobs":3,
                "tag":"nightly,pre","password":"pw","timeout_ms":1500}"#,
        ))
        .unwrap();
        let o = a.into_core().unwrap();
        assert_eq!(o.repos, vec!["/a", "/b"]);
        assert_eq!(o.compression.to_string(), "gzip:6");
        assert_eq!(o.jobs, 3);
        assert_eq!(o.tags, vec!["nightly", "pre"]);
        assert_eq!(o.password.unwrap().expose(), "pw");
        assert_eq!(common.timeout, Some(Duration::from_millis(1500)));

        let (_, r): (Common, RestoreArgs) = parse(Some(
            r#"{"repo":"/a","backup":"tag:x","into":"sqlite:///y.db","force":true,"tables":"a,b"}"#,
        ))
        .unwrap();
        let r = r.into_core().unwrap();
        assert_eq!((r.backup.as_str(), r.force), ("tag:x", true));
        assert_eq!(r.tables, Some(vec!["a".to_string(), "b".to_string()]));

        let (_, v): (Common, VerifyArgs) = parse(Some(r#"{"repo":"/a","level":"quick"}"#)).unwrap();
        let v = v.into_core().unwrap();
        assert_eq!((v.backup.as_str(), v.level.as_str()), ("latest", "quick"));
    }

    #[test]
    fn mistakes_are_usage_errors() {
        for (text, needle) in [
            (r#"{"repo":"/a","levle":"quick"}"#, "levle"),
            ("[1]", "JSON object"),
            ("{", "valid JSON"),
            (r#"{"repo":"/a","timeout_ms":-1}"#, "timeout_ms"),
        ] {
            let e = parse::<VerifyArgs>(Some(text)).unwrap_err();
            assert_eq!(e.kind().exit_code(), 2, "{text}");
            assert!(e.to_string().contains(needle), "{text}: {e}");
        }
        let (_, l): (Common, ListArgs) = parse(None).unwrap();
        assert!(l.into_core().unwrap_err().to_string().contains("repo is required"));
        let (_, l): (Common, ListArgs) = parse(Some(r#"{"repo":["/a","/b"]}"#)).unwrap();
        assert!(l.into_core().is_err());
    }

    #[test]
    fn sizes_and_durations_like_the_cli() {
        assert_eq!(Size::Text("50GiB".into()).bytes().unwrap(), 50 << 30);
        assert_eq!(Size::Text("500MB".into()).bytes().unwrap(), 500_000_000);
        assert_eq!(Size::Bytes(7).bytes().unwrap(), 7);
        assert!(Size::Text("lots".into()).bytes().is_err());
        assert_eq!(Secs::Text("26h".into()).secs().unwrap(), 26 * 3600);
        assert_eq!(Secs::Text("1h 30m".into()).secs().unwrap(), 5400);
        assert_eq!(Secs::Text("7d".into()).secs().unwrap(), 7 * 86400);
        assert_eq!(Secs::Secs(5).secs().unwrap(), 5);
        assert!(Secs::Text("soon".into()).secs().is_err());
        let (_, p): (Common, PruneArgs) =
            parse(Some(r#"{"repo":"/a","keep_last":3,"dry_run":true,"orphan_grace":"1h"}"#)).unwrap();
        let p = p.into_core().unwrap();
        assert_eq!((p.policy.keep_last, p.dry_run, p.orphan_grace_secs), (Some(3), true, 3600));
        let (_, st): (Common, StatusArgs) = parse(Some(r#"{"repo":["/a","/b"],"max_age":"26h"}"#)).unwrap();
        let st = st.into_core().unwrap();
        assert_eq!((st.repos.len(), st.max_age_secs), (2, Some(93600)));
    }

    #[test]
    fn engine_switches_reach_the_engine_options() {
        let (_, c): (Common, CreateArgs) =
            parse(Some(r#"{"source":"postgres://h/db","keep_owners":true,"no_definer":false}"#)).unwrap();
        let c = c.into_core().unwrap();
        assert_eq!(c.engine_options.pairs().iter().map(|(k, _)| *k).collect::<Vec<_>>(), ["keep_owners"]);
        let (_, r): (Common, RestoreArgs) = parse(Some(
            r#"{"repo":"/a","into":"mysql://h/db","no_definer":true,"full_checksum":true,"keep_owners":false}"#,
        ))
        .unwrap();
        let r = r.into_core().unwrap();
        assert_eq!(
            r.engine_options.pairs().iter().map(|(k, _)| *k).collect::<Vec<_>>(),
            ["full_checksum", "no_definer"]
        );
        assert!(r.engine_options.pairs().iter().all(|(_, v)| v == "true"));
        let (_, r): (Common, RestoreArgs) = parse(Some(r#"{"repo":"/a","into":"sqlite:x"}"#)).unwrap();
        assert!(r.into_core().unwrap().engine_options.pairs().is_empty());
        let (_, g): (Common, GuardArgs) = parse(Some(
            r#"{"source":"mysql://h/db","repo":"/a","lock_timeout":"5s","connect_timeout":"10","statement_timeout":"1h"}"#,
        ))
        .unwrap();
        let o = g.into_core().unwrap().engine_options;
        assert_eq!(
            o.pairs().iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>(),
            ["connect_timeout=10", "lock_timeout=5s", "statement_timeout=1h"]
        );
    }
}
