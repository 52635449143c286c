//! Each operation's own keys: the flags of its `dbbackup` command in snake_case, turned into
//! the core's `*Options`.

use std::path::PathBuf;

use backup_core::{
    CopyOptions, CreateOptions, GuardOptions, ListOptions, PruneOptions, RestoreOptions, Result,
    RetentionPolicy, Secret, StatusOptions, VerifyOptions,
};
use serde::Deserialize;

use super::values::*;

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
    /// `--staged-rollback`.
    #[serde(default)]
    staged_rollback: bool,
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
            staged_rollback: self.staged_rollback,
        })
    }
}
