//! Argument definitions. Every flag also reads `DBBACKUP_<FLAG>` from the environment and a
//! `dbbackup.toml` (`--config`); precedence: flag > environment > file. Flags that can carry a
//! secret (database and repository URLs) have `hide_env_values`, so `--help` never prints them.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Fast, verifiable database backups: SQLite, PostgreSQL, MySQL/MariaDB -> local dir, S3, GCS, Azure.
///
/// Exit codes: 0 ok, 1 failed, 2 usage/configuration, 3 integrity (corrupt or incomplete
/// backup), 4 unhealthy (status), 5 not found (backup, repository, database), 124 --timeout
/// reached, 128 + signal when stopped by a signal (130 SIGINT, 143 SIGTERM, 129 SIGHUP).
///
/// Passwords never go on the command line: use DBBACKUP_PASSWORD, --password-file, or
/// PGPASSWORD for PostgreSQL (~/.pgpass, MYSQL_PWD and ~/.my.cnf are not read). Encryption keys
/// likewise: --identity FILE or DBBACKUP_IDENTITY, --passphrase-file FILE or DBBACKUP_PASSPHRASE.
#[derive(Debug, Parser)]
#[command(name = "dbbackup", version, propagate_version = true, max_term_width = 100)]
pub struct Cli {
    /// Print exactly one JSON object on stdout (keys documented in the README).
    #[arg(long, global = true, env = "DBBACKUP_JSON")]
    pub json: bool,
    /// More log output on stderr (-v info, -vv debug).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Less output: errors only, no progress bars.
    #[arg(short, long, global = true)]
    pub quiet: bool,
    /// Configuration file (TOML; keys are the long flag names).
    #[arg(long, global = true, env = "DBBACKUP_CONFIG", value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// Stop the whole operation after this long (e.g. 2h, 30m): it is cancelled and cleaned up
    /// like on Ctrl-C, and the exit code is 124. Default: no limit.
    #[arg(long, global = true, env = "DBBACKUP_TIMEOUT", value_name = "DURATION")]
    pub timeout: Option<String>,
    /// Read the database password from this file (first line).
    #[arg(long, global = true, env = "DBBACKUP_PASSWORD_FILE", hide_env_values = true, value_name = "PATH")]
    pub password_file: Option<PathBuf>,
    /// The command.
    #[command(subcommand)]
    pub command: Command,
}

/// Commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Back up a database into one or more repositories; prints the new backup id.
    ///
    /// The manifest is written only after every object is stored: a backup is complete or absent.
    Create(CreateArgs),
    /// List complete backups, newest first.
    List(ListArgs),
    /// Check a backup: quick (objects present), full (every byte, default) or drill (restore into
    /// a scratch database and compare). Exits 3 when the backup is damaged.
    Verify(VerifyArgs),
    /// Restore a backup into a database, through a shadow that is swapped in only when complete
    /// and checked. A failed restore leaves the database as it was.
    Restore(RestoreArgs),
    /// Take a backup, run COMMAND, and restore the backup if COMMAND fails: a pre-migration
    /// safety net. Exits with COMMAND's status.
    ///
    /// Example: dbbackup guard --source "$DB_URL" --repo /srv/backups -- php artisan migrate --force
    Guard(GuardArgs),
    /// Delete old backups under a keep-last/daily/weekly/monthly/yearly policy and a size cap;
    /// never the newest. Also sweeps objects of failed backups after a grace period.
    Prune(PruneArgs),
    /// Health for monitors and cron: newest backup age, size, last verification, copies in every
    /// repository. Exits 4 when unhealthy.
    Status(StatusArgs),
    /// Copy a backup to another repository (off-site copy), verifying every digest on the way;
    /// the manifest is written last.
    Copy(CopyArgs),
}

/// `create`.
#[derive(Debug, Args)]
pub struct CreateArgs {
    /// Database to back up: sqlite:///abs/path.sqlite, postgres://user@host/db, mysql://user@host/db.
    #[arg(long, env = "DBBACKUP_SOURCE", hide_env_values = true, value_name = "URL")]
    pub source: String,
    /// Repository (repeat for 3-2-1: the same bytes go to each): a path, file://, s3://, gs://, az://.
    #[arg(
        long = "repo",
        env = "DBBACKUP_REPO",
        hide_env_values = true,
        value_name = "URL",
        required = true,
        value_delimiter = ','
    )]
    pub repos: Vec<String>,
    /// zstd[:LEVEL] (default zstd:3), gzip[:LEVEL] or none.
    #[arg(long, env = "DBBACKUP_COMPRESSION", default_value = "zstd:3")]
    pub compression: String,
    /// Parallel workers (default: number of CPUs).
    #[arg(long, short = 'j', env = "DBBACKUP_JOBS")]
    pub jobs: Option<usize>,
    /// Tag to record (repeatable), e.g. `nightly`, `pre-migration`.
    #[arg(long = "tag", env = "DBBACKUP_TAG", value_delimiter = ',')]
    pub tags: Vec<String>,
    /// Target uncompressed size of one chunk, in MiB (PostgreSQL splits a table only when the
    /// workers cannot share the tables out whole).
    #[arg(long, env = "DBBACKUP_CHUNK_MIB", default_value_t = 64)]
    pub chunk_mib: u64,
    /// Skip per-table content checksums (faster; restores still check every object's digest).
    #[arg(long, env = "DBBACKUP_NO_CHECKSUMS")]
    pub no_checksums: bool,
    /// Directory for temporary files (SQLite snapshot copy).
    #[arg(long, env = "DBBACKUP_TEMP_DIR", value_name = "DIR")]
    pub temp_dir: Option<PathBuf>,
    /// MySQL: leave DEFINER clauses out of views, routines, triggers and events (for managed
    /// servers where the original definer does not exist).
    #[arg(long, env = "DBBACKUP_NO_DEFINER")]
    pub no_definer: bool,
    /// PostgreSQL: record object owners (`ALTER ... OWNER TO`, large-object owners) in the backup.
    /// Default: no-owner. Restore with --keep-owners too to apply them.
    #[arg(long, env = "DBBACKUP_KEEP_OWNERS")]
    pub keep_owners: bool,
    /// Database session time limits.
    #[command(flatten)]
    pub session: SessionArgs,
    /// Encryption.
    #[command(flatten)]
    pub encryption: EncryptArgs,
    /// Encrypt so that the passphrase in this file (first line) opens the backup (or put it in
    /// DBBACKUP_PASSPHRASE); with or without --encrypt-to.
    #[arg(long, env = "DBBACKUP_PASSPHRASE_FILE", value_name = "PATH")]
    pub passphrase_file: Option<PathBuf>,
}

/// Recipients of a backup (create; copy re-encrypts to them).
#[derive(Debug, Args)]
pub struct EncryptArgs {
    /// Encrypt to this age recipient (`age1...`, public key from `age-keygen`); repeatable.
    /// Restoring then needs one of the matching identities (--identity).
    #[arg(long = "encrypt-to", env = "DBBACKUP_RECIPIENTS", value_name = "RECIPIENT", value_delimiter = ',')]
    pub encrypt_to: Vec<String>,
    /// Encrypt to every recipient in this file (one `age1...` per line, `#` comments).
    #[arg(long, env = "DBBACKUP_RECIPIENTS_FILE", value_name = "PATH")]
    pub recipients_file: Option<PathBuf>,
}

/// Opening an encrypted backup (restore, verify, copy --encrypt-to).
#[derive(Debug, Args)]
pub struct KeyArgs {
    /// age identity file (`AGE-SECRET-KEY-1...`, from `age-keygen`) that opens an encrypted backup.
    /// Or put the key itself in DBBACKUP_IDENTITY.
    #[arg(long, env = "DBBACKUP_IDENTITY_FILE", value_name = "PATH")]
    pub identity: Option<PathBuf>,
    /// File whose first line is the passphrase of an encrypted backup (or DBBACKUP_PASSPHRASE).
    #[arg(long, env = "DBBACKUP_PASSPHRASE_FILE", value_name = "PATH")]
    pub passphrase_file: Option<PathBuf>,
}

/// Time limits of the database sessions (PostgreSQL, MySQL/MariaDB); a URL parameter of the
/// same name (`?lock_timeout=5s`) wins. Durations like 30s, 5m; a plain number is seconds; 0 is
/// no limit.
#[derive(Debug, Args)]
pub struct SessionArgs {
    /// Give up connecting (TCP, TLS, login) to the database server after this long (default 30s).
    #[arg(long, env = "DBBACKUP_CONNECT_TIMEOUT", value_name = "DURATION")]
    pub connect_timeout: Option<String>,
    /// Fail when a lock is not granted within this long (default 30s): a table locked by a
    /// migration, MySQL's global read lock behind a long query (then the dump continues on one
    /// connection), the restore's swap behind an open transaction.
    #[arg(long, env = "DBBACKUP_LOCK_TIMEOUT", value_name = "DURATION")]
    pub lock_timeout: Option<String>,
    /// Cancel any single statement that runs longer than this (default: no limit; one statement
    /// reads or loads a whole table chunk).
    #[arg(long, env = "DBBACKUP_STATEMENT_TIMEOUT", value_name = "DURATION")]
    pub statement_timeout: Option<String>,
}

impl SessionArgs {
    /// The session time limits these flags set.
    pub fn options(&self) -> backup_core::SessionOptions {
        backup_core::SessionOptions {
            connect_timeout: self.connect_timeout.clone(),
            lock_timeout: self.lock_timeout.clone(),
            statement_timeout: self.statement_timeout.clone(),
        }
    }
}

/// `list`.
#[derive(Debug, Args)]
pub struct ListArgs {
    /// Repository.
    #[arg(long, env = "DBBACKUP_REPO", hide_env_values = true, value_name = "URL")]
    pub repo: String,
    /// Only backups with this tag.
    #[arg(long, env = "DBBACKUP_TAG")]
    pub tag: Option<String>,
}

/// `verify`.
#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// Repository.
    #[arg(long, env = "DBBACKUP_REPO", hide_env_values = true, value_name = "URL")]
    pub repo: String,
    /// Backup id, `latest` or `tag:NAME`.
    #[arg(default_value = "latest")]
    pub backup: String,
    /// quick | full | drill.
    #[arg(long, env = "DBBACKUP_LEVEL", default_value = "full")]
    pub level: String,
    /// Scratch database server for drills (a throwaway database is created and dropped there).
    #[arg(long, env = "DBBACKUP_SCRATCH", hide_env_values = true, value_name = "URL")]
    pub scratch: Option<String>,
    /// Parallel downloads (default: number of CPUs).
    #[arg(long, short = 'j', env = "DBBACKUP_JOBS")]
    pub jobs: Option<usize>,
    /// Do not record the result beside the backup.
    #[arg(long)]
    pub no_record: bool,
    /// Key of an encrypted backup: without it, quick and full check the stored bytes only.
    #[command(flatten)]
    pub keys: KeyArgs,
}

/// `restore`.
#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// Repository (not needed when restoring a plain dump file, or with --undo).
    #[arg(long, env = "DBBACKUP_REPO", hide_env_values = true, value_name = "URL")]
    pub repo: Option<String>,
    /// Backup id, `latest`, `tag:NAME`, or a plain dump file from pg_dump, mysqldump or
    /// sqlite3 `.dump` (`.sql`, `.sql.gz`, `.sql.zst`).
    #[arg(default_value = "latest")]
    pub backup: String,
    /// Database to restore into (created if missing).
    #[arg(long, env = "DBBACKUP_INTO", hide_env_values = true, value_name = "URL")]
    pub into: String,
    /// Do not ask for confirmation on production targets.
    #[arg(long)]
    pub force: bool,
    /// The target is production (also when APP_ENV=production): ask the operator to type its name.
    #[arg(long)]
    pub production: bool,
    /// Load into the live database instead of a shadow (for hosts without CREATE DATABASE);
    /// every object is verified first.
    #[arg(long)]
    pub in_place: bool,
    /// Restore only these tables (comma-separated).
    #[arg(long, value_delimiter = ',')]
    pub tables: Option<Vec<String>>,
    /// Download and check every object before loading anything (a dump file: read it whole,
    /// compression and statements to the end).
    #[arg(long)]
    pub verify_first: bool,
    /// Parallel loaders (default: number of CPUs).
    #[arg(long, short = 'j', env = "DBBACKUP_JOBS")]
    pub jobs: Option<usize>,
    /// MySQL: drop DEFINER clauses and SUPER-only statements (managed servers such as RDS).
    #[arg(long, env = "DBBACKUP_NO_DEFINER")]
    pub no_definer: bool,
    /// PostgreSQL: give restored objects the owners recorded in the backup (or the dump
    /// script) instead of the restoring role; those roles must exist. Default: no-owner.
    #[arg(long, env = "DBBACKUP_KEEP_OWNERS")]
    pub keep_owners: bool,
    /// MySQL: recompute every table's content checksum on the server even when the backup's
    /// faster `CHECKSUM TABLE` value (same server version) already matches.
    #[arg(long)]
    pub full_checksum: bool,
    /// `latest`/`tag:NAME`: take the newest backup of any database in the repository (by
    /// default only backups of the target's engine and database name, or of the one database
    /// the repository holds for that engine).
    #[arg(long)]
    pub all_databases: bool,
    /// Database session time limits.
    #[command(flatten)]
    pub session: SessionArgs,
    /// Put back what the last restore into --into replaced (its undo copy), through the same
    /// shadow and swap; the state it replaces becomes the new undo copy (a second --undo redoes).
    #[arg(long, conflicts_with_all = ["tables", "in_place"])]
    pub undo: bool,
    /// Keep what this restore replaces for this long (an undo copy: a safety backup of the
    /// target taken before the swap, in --undo-dir); the last one per database is kept.
    #[arg(long, env = "DBBACKUP_KEEP_UNDO", default_value = "24h", value_name = "DURATION")]
    pub keep_undo: String,
    /// Take no undo copy (faster; the restore cannot be undone).
    #[arg(long, env = "DBBACKUP_NO_UNDO")]
    pub no_undo: bool,
    /// Undo area: the local directory where restores keep undo copies (default
    /// $XDG_STATE_HOME/dbbackup/undo, or under DBBACKUP_STATE_DIR).
    #[arg(long, env = "DBBACKUP_UNDO_DIR", value_name = "DIR")]
    pub undo_dir: Option<PathBuf>,
    /// Key of an encrypted backup.
    #[command(flatten)]
    pub keys: KeyArgs,
}

/// `guard`.
#[derive(Debug, Args)]
pub struct GuardArgs {
    /// Database the command changes.
    #[arg(long, env = "DBBACKUP_SOURCE", hide_env_values = true, value_name = "URL")]
    pub source: String,
    /// Repository for the safety backup (repeatable; the first is restored from).
    #[arg(
        long = "repo",
        env = "DBBACKUP_REPO",
        hide_env_values = true,
        value_name = "URL",
        required = true,
        value_delimiter = ','
    )]
    pub repos: Vec<String>,
    /// Refuse to start when the last drill's measured recovery time exceeds this (e.g. 2m).
    #[arg(long, env = "DBBACKUP_MAX_RTO", value_name = "DURATION")]
    pub max_rto: Option<String>,
    /// zstd[:LEVEL], gzip[:LEVEL] or none.
    #[arg(long, env = "DBBACKUP_COMPRESSION", default_value = "zstd:3")]
    pub compression: String,
    /// Extra tag for the safety backup (it is always tagged `guard`).
    #[arg(long = "tag", value_delimiter = ',')]
    pub tags: Vec<String>,
    /// Parallel workers (default: number of CPUs).
    #[arg(long, short = 'j', env = "DBBACKUP_JOBS")]
    pub jobs: Option<usize>,
    /// MySQL: drop DEFINER clauses and SUPER-only statements when rolling back (managed servers
    /// such as RDS).
    #[arg(long, env = "DBBACKUP_NO_DEFINER")]
    pub no_definer: bool,
    /// PostgreSQL: record owners in the safety backup and give them back on rollback (those
    /// roles must exist). Default: no-owner, objects end up owned by the connecting role.
    #[arg(long, env = "DBBACKUP_KEEP_OWNERS")]
    pub keep_owners: bool,
    /// Where the engine has no cheap server-side copy (MySQL/MariaDB; PostgreSQL with another
    /// session connected), restore the safety backup into a verified shadow before the command
    /// and hold it while the command runs: a rollback is then the swap alone (about a second),
    /// at the cost of the restore's time before the command and the database's size again on
    /// the server while it runs.
    #[arg(long, env = "DBBACKUP_STAGED_ROLLBACK")]
    pub staged_rollback: bool,
    /// Database session time limits (safety backup and rollback).
    #[command(flatten)]
    pub session: SessionArgs,
    /// The command to run, after `--`.
    #[arg(last = true, required = true, value_name = "COMMAND")]
    pub command: Vec<String>,
}

/// `prune`.
#[derive(Debug, Args)]
pub struct PruneArgs {
    /// Repository.
    #[arg(long, env = "DBBACKUP_REPO", hide_env_values = true, value_name = "URL")]
    pub repo: String,
    /// Keep the N newest backups.
    #[arg(long, env = "DBBACKUP_KEEP_LAST", value_name = "N")]
    pub keep_last: Option<u32>,
    /// Keep the newest backup of each of the last N hours that have one.
    #[arg(long, env = "DBBACKUP_KEEP_HOURLY", value_name = "N")]
    pub keep_hourly: Option<u32>,
    /// Keep the newest backup of each of the last N days that have one (UTC).
    #[arg(long, env = "DBBACKUP_KEEP_DAILY", value_name = "N")]
    pub keep_daily: Option<u32>,
    /// Keep the newest backup of each of the last N ISO weeks that have one.
    #[arg(long, env = "DBBACKUP_KEEP_WEEKLY", value_name = "N")]
    pub keep_weekly: Option<u32>,
    /// Keep the newest backup of each of the last N months that have one.
    #[arg(long, env = "DBBACKUP_KEEP_MONTHLY", value_name = "N")]
    pub keep_monthly: Option<u32>,
    /// Keep the newest backup of each of the last N years that have one.
    #[arg(long, env = "DBBACKUP_KEEP_YEARLY", value_name = "N")]
    pub keep_yearly: Option<u32>,
    /// Cap on the kept backups' size (e.g. 50GiB, 500MB); the oldest go first.
    #[arg(long, env = "DBBACKUP_MAX_SIZE", value_name = "SIZE")]
    pub max_size: Option<String>,
    /// Leave objects of incomplete backups and unfinished uploads (a killed run's staging files,
    /// open S3 multipart uploads) alone until they are this old (e.g. 24h, 30m; 0 for no grace).
    #[arg(long, env = "DBBACKUP_ORPHAN_GRACE", default_value = "24h", value_name = "DURATION")]
    pub orphan_grace: String,
    /// Print the plan (with a reason per backup) and delete nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Apply the rules to all backups together (by default to each database's own: engine and
    /// database name).
    #[arg(long)]
    pub all_databases: bool,
    /// Undo area: the local directory whose expired undo copies are removed too (default
    /// $XDG_STATE_HOME/dbbackup/undo, or under DBBACKUP_STATE_DIR).
    #[arg(long, env = "DBBACKUP_UNDO_DIR", value_name = "DIR")]
    pub undo_dir: Option<PathBuf>,
}

/// `status`.
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Repository (repeat to check the copies in each: 3-2-1).
    #[arg(
        long = "repo",
        env = "DBBACKUP_REPO",
        hide_env_values = true,
        value_name = "URL",
        required = true,
        value_delimiter = ','
    )]
    pub repos: Vec<String>,
    /// Unhealthy when the newest backup is older than this (e.g. 26h).
    #[arg(long, env = "DBBACKUP_MAX_AGE", value_name = "DURATION")]
    pub max_age: Option<String>,
    /// Unhealthy when a repository holds more than this (e.g. 50GiB).
    #[arg(long, env = "DBBACKUP_MAX_SIZE", value_name = "SIZE")]
    pub max_size: Option<String>,
    /// Unhealthy when the newest successful restore drill is older than this (e.g. 35d), or
    /// there is none.
    #[arg(long, env = "DBBACKUP_MAX_DRILL_AGE", value_name = "DURATION")]
    pub max_drill_age: Option<String>,
    /// Unhealthy when the newest backup holds less data (uncompressed) than this (e.g. 10MiB).
    #[arg(long, env = "DBBACKUP_MIN_SIZE", value_name = "SIZE")]
    pub min_size: Option<String>,
    /// Unhealthy when the newest backup holds less than this fraction of the previous backup of
    /// the same database (default 50%; 0 turns it off).
    #[arg(long, env = "DBBACKUP_MAX_SHRINK", value_name = "FRACTION")]
    pub max_shrink: Option<String>,
    /// The source database: repositories on its file system do not count as off-site.
    #[arg(long, env = "DBBACKUP_SOURCE", hide_env_values = true, value_name = "URL")]
    pub source: Option<String>,
    /// A single repository, or all on the source's file system, is unhealthy (exit 4) instead
    /// of a warning.
    #[arg(long, env = "DBBACKUP_REQUIRE_OFFSITE")]
    pub require_offsite: bool,
    /// With --source: count backups of every database in the repository (by default only the
    /// source database's).
    #[arg(long)]
    pub all_databases: bool,
    /// Undo area: the local directory whose undo copies are listed (default
    /// $XDG_STATE_HOME/dbbackup/undo, or under DBBACKUP_STATE_DIR).
    #[arg(long, env = "DBBACKUP_UNDO_DIR", value_name = "DIR")]
    pub undo_dir: Option<PathBuf>,
}

/// `copy`.
#[derive(Debug, Args)]
pub struct CopyArgs {
    /// Repository to copy from.
    #[arg(long, env = "DBBACKUP_FROM", hide_env_values = true, value_name = "URL")]
    pub from: String,
    /// Repository to copy to.
    #[arg(long, env = "DBBACKUP_TO", hide_env_values = true, value_name = "URL")]
    pub to: String,
    /// Backup id, `latest` or `tag:NAME`.
    #[arg(default_value = "latest")]
    pub backup: String,
    /// Objects copied in parallel (default: number of CPUs).
    #[arg(long, short = 'j', env = "DBBACKUP_JOBS")]
    pub jobs: Option<usize>,
    /// Re-encrypt an encrypted backup to new recipients (key rotation); needs its current key.
    #[command(flatten)]
    pub encryption: EncryptArgs,
    /// Re-encrypt so that the passphrase in this file (first line) opens the copy (or
    /// DBBACKUP_NEW_PASSPHRASE).
    #[arg(long, env = "DBBACKUP_NEW_PASSPHRASE_FILE", value_name = "PATH")]
    pub new_passphrase_file: Option<PathBuf>,
    /// Current key of the backup, to re-encrypt it.
    #[command(flatten)]
    pub keys: KeyArgs,
}
