//! # backup-core
//!
//! Streaming, verifiable database backups: a consistent snapshot of SQLite, PostgreSQL or
//! MySQL/MariaDB is dumped in parallel chunks, compressed (zstd, gzip), hashed (SHA-256) and
//! uploaded to one or more object stores; the manifest is written last, so a backup is complete
//! or absent. Restore checks every byte, loads into a shadow and swaps it in.
//!
//! Every command is a function taking `XxxOptions` and returning `XxxReport`; progress goes to an
//! [`Observer`] in the [`Context`]; errors are one [`Error`] enum whose [`ErrorKind`] maps to
//! exit codes, and every report says how its command ended ([`Report::verdict`]; how an error or
//! a failed report becomes an exit code or FFI status, and the one error JSON: `outcome.rs`; how
//! the C ABI turns a panic into an error: `backup-ffi/src/boundary.rs`).
//! [`Command::run`] opens what a command's options name (the database and the repositories, by
//! URL, with the context's store settings: the one place that does, `command.rs`) and runs it;
//! `create`, `list`, `copy` and `prune` themselves take opened handles (a [`Target`], a
//! [`Source`]), for callers that bring their own. This list of re-exports is the public API; the
//! modules are private. Below the commands it holds only what the tests, benches and fuzz targets
//! use: the engines' entry points ([`open_source`], [`open_loader`]), the stream stages of stored
//! objects ([`compress`], [`decompress`], [`tally`], [`sha256_hex`], [`Keyring`],
//! [`generate_key`]), object keys ([`manifest_key`], [`data_key`], ...), sealed manifests
//! ([`open_sealed`]), [`Lease`]s, [`RepoUrl`], the script readers ([`mysql_script`],
//! [`pg_script`], [`sqlite_script`]) and, with the feature `testing`, the fault-injecting store
//! (`FaultStore`).
//!
//! ```no_run
//! # async fn demo() -> backup_core::Result<()> {
//! use backup_core::{Command, Context, CreateOptions};
//! let opts = CreateOptions {
//!     source: "sqlite:///srv/app/database.sqlite".into(),
//!     repos: vec!["/srv/backups".into()],
//!     ..Default::default()
//! };
//! let report = opts.run(&Context::default()).await?;
//! println!("backup {} stored {} bytes", report.id, report.stored_bytes);
//! # Ok(()) }
//! ```
//!
//! Where things live (paths under `backup-core/src`; the layers: docs/ARCHITECTURE.md):
//! - the manifest is written last, create-only, to each repository by `commit` in
//!   `backup/mod.rs`; the objects before it by `backup/dump.rs`, sent to every repository by
//!   `backup/fleet.rs`;
//! - a MySQL/MariaDB restore is swapped in by `source/mysql/swap.rs` (journaled `RENAME TABLE`);
//! - store retries are object_store's, configured by `retry` in `storage/url/config.rs`, with the
//!   per-attempt time limits of `storage/http.rs` below them;
//! - an error becomes an exit code by `ErrorKind::exit_code` in `error.rs` and `outcome.rs`;
//! - retention: `retention/` (rules, plan, apply); undo copies: `undo/`; leases: `lease.rs`;
//!   notification text: `notify/text.rs`; e-mail delivery: `mail.rs`.
//! - a restore's verified reads and the load-and-check of every table: `pipeline.rs`; the
//!   engines' contract and the one place an engine is picked: `source/mod.rs`; foreign dump
//!   scripts (mysqldump, pg_dump, sqlite3 `.dump`) run through `source/script/` (one runner, a
//!   hook per engine); the server engines' connection pool: `source/pool.rs`; the names of the
//!   shadows and copies a killed run leaves, and how the next run finds them:
//!   `source/shadow_name.rs`; `--tables`: `source/table_filter.rs`.

mod alert;
mod audit;
mod backup;
mod catalog;
mod codec;
mod command;
mod copy;
mod engine_options;
mod error;
mod failpoint;
#[cfg(feature = "testing")]
pub use failpoint::{delay_on_this_thread, hold_mysql_stats};
mod format;
mod guard;
mod health;
mod lease;
mod mail;
mod model;
mod notify;
mod outcome;
mod pipeline;
mod progress;
mod restore;
mod retention;
mod settings;
mod source;
mod storage;
mod undo;
mod verify;

pub use alert::{
    AlertReport, AlertScope, CheckState, DEFAULT_REPEAT_SECS, Health, Subject, Transition, after_command,
    guard_alert, scope_hash, step, track, track_command, track_status,
};
pub use audit::{AuditRecord, audit_log};
pub use backup::{CreateOptions, CreateReport, FailedRepo, create};
pub use catalog::{
    BackupSummary, DatabaseScope, ListOptions, ListReport, Unreadable, VerificationRecord, backup_footprint,
    backup_ids, last_verification, list, read_manifest, record_verification, resolve, resolve_for,
};
pub use codec::ByteStream;
pub use codec::checksum::{read_tally, sha256_hex, tally};
pub use codec::compress::{Codec, decode as decompress, encode as compress};
pub use codec::encrypt::{Keyring, generate_key};
pub use command::Command;
pub use copy::{CopyOptions, CopyReport, copy};
pub use engine_options::{EngineOptions, MysqlOptions, PostgresOptions, SessionOptions};
pub use error::{Error, ErrorKind, Result, chain_text};
pub use format::layout::{backup_dir, data_key, manifest_key, table_key, validate_relative_key};
pub use format::manifest::{Manifest, ObjectKind};
pub use format::sealed::open as open_sealed;
pub use guard::{CommandOutcome, GuardOptions, GuardReport, guard, last_drill_recovery_ms};
pub use health::{
    Check, DEFAULT_CLOCK_TOLERANCE_SECS, DEFAULT_MAX_SHRINK, RepoStatus, StatusOptions, StatusReport,
};
pub use lease::{Lease, LeaseKind};
pub use mail::{EmailConfig, SmtpTls};
pub use model::{
    BackupId, Compression, DatabaseUrl, Engine, Secret, VerifyLevel, default_jobs, parse_duration,
    parse_fraction, parse_size, redact_str,
};
pub use notify::{
    AlertInbox, AlertLine, Notification, NotifyConfig, Outcome, alert_text, deliver, heartbeat, human_secs,
    notify, slack_text,
};
pub use outcome::{ErrorReport, Report, Verdict};
pub use pipeline::{Finding, check_full, check_quick};
pub use progress::{CancellationToken, Context, Critical, CriticalGuard, Event, NoProgress, Observer, Phase};
pub use restore::{
    RestoreOptions, RestoreReport, confirmation_needed, foreign_script_path, restore_script, restore_with,
};
pub use retention::{
    Applied, DEFAULT_ORPHAN_GRACE_SECS, Decision, Orphan, PruneOptions, PruneReport, RetentionPlan,
    RetentionPolicy, StaleUpload, plan_backups,
};
pub use settings::{RepoSettings, StoreConfig};
/// The MySQL/MariaDB SQL script splitter used for foreign dumps (public for fuzzing).
pub use source::mysql_script;
/// Binary COPY rows from PostgreSQL text COPY lines, for the restore (public for fuzzing).
pub use source::pg_binary;
/// The PostgreSQL plain-script reader used for foreign dumps and schema scripts (public for
/// fuzzing).
pub use source::pg_script;
/// The SQLite script splitter used for foreign dumps (public for fuzzing).
pub use source::sqlite_script;
pub use source::{DumpOptions, LoadOptions, Loader, Source, open_loader, open_source};
pub use storage::Target;
#[cfg(feature = "testing")]
pub use storage::fault::{FaultStore, Faults};
pub use storage::url::RepoUrl;
/// `restore`, `prune` and `status` keep and clean the undo area around the plain use-cases.
pub use undo::{
    DEFAULT_KEEP_UNDO_SECS, UNDO_TAG, UndoCopy, default_dir as default_undo_dir, prune, restore, status,
    status_in, target_key as undo_target_key, undo_copies,
};
pub use verify::{VerifyOptions, VerifyReport, verify, verify_with};
