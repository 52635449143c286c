//! The `restore` use-case: resolve -> check every object exists -> (optionally verify all) ->
//! load into a shadow with every object's digest checked as it streams -> compare row counts and
//! checksums with the manifest -> swap. Any failure before the swap discards the shadow and
//! leaves the live database exactly as it was.

use std::time::Instant;

use futures::{StreamExt, TryStreamExt};
use serde::{Deserialize, Serialize};

use crate::codec::ByteStream;
use crate::codec::compress::{self, Codec};
use crate::codec::encrypt::Keyring;
use crate::error::{Error, Result};
use crate::format::manifest::Manifest;
use crate::format::sealed;
use crate::model::{DatabaseUrl, Engine, Secret};
use crate::pipeline::load_and_check;
use crate::progress::{Context, Event, Phase, PhaseGuard};
use crate::source::{self, CommitReport, LoadOptions, LoadSession, Loader};
use crate::storage::Target;
use crate::{audit, catalog, pipeline};

/// Input of [`restore`](crate::restore()).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct RestoreOptions {
    /// Repository URL.
    pub repo: String,
    /// `latest` (default), a backup id, `tag:NAME`, or the path of a plain dump script made by
    /// the engine's own tool (`.sql`, `.sql.gz`, `.sql.zst`; `file://` accepted), which is then
    /// streamed into a shadow and swapped in the same way (see [`foreign_script_path`]).
    pub backup: String,
    /// Target database URL.
    pub into: String,
    /// Password for the target (overrides one in the URL).
    pub password: Option<Secret>,
    /// Parallel loaders.
    pub jobs: usize,
    /// Load into the live database instead of a shadow (needs a full verification first).
    pub in_place: bool,
    /// Restore only these tables.
    pub tables: Option<Vec<String>>,
    /// The target is production: refuse unless `force` (the CLI asks the operator first).
    pub production: bool,
    /// Go ahead without confirmation.
    pub force: bool,
    /// Download and check every object before loading anything (always on with `in_place`); for
    /// a dump script, read it whole first (the codec's integrity and the engine's script reader
    /// to the end, see `source::script::check`).
    pub verify_first: bool,
    /// Engine options (MySQL, PostgreSQL switches; session time limits).
    pub engine_options: crate::engine_options::EngineOptions,
    /// Who asked (`user@host`), for the audit record.
    pub operator: Option<String>,
    /// Text of an age identity file (`AGE-SECRET-KEY-1...` lines) for an encrypted backup.
    pub identity: Option<Secret>,
    /// Passphrase of an encrypted backup made with one.
    pub passphrase: Option<Secret>,
    /// `latest` / `tag:NAME` may pick a backup of any database in the repository (by default
    /// only of the target's engine and database name, see [`catalog::resolve_for`]).
    pub all_databases: bool,
    /// The undo area, a local directory (`undo`): where the undo copy of the target is
    /// kept, and where `undo` looks. `None`: no undo copy (the default of the library; the CLI
    /// and the FFI fill in `default_dir` of `undo::area`).
    pub undo_dir: Option<std::path::PathBuf>,
    /// How long the undo copy is kept (seconds; default 24 h). 0: none is taken.
    pub keep_undo_secs: u64,
    /// Put back the newest undo copy of `into` instead of restoring `backup`.
    pub undo: bool,
}

impl Default for RestoreOptions {
    fn default() -> Self {
        RestoreOptions {
            repo: String::new(),
            backup: "latest".into(),
            into: String::new(),
            password: None,
            jobs: crate::model::default_jobs(),
            in_place: false,
            tables: None,
            production: false,
            force: false,
            verify_first: false,
            engine_options: Default::default(),
            operator: None,
            identity: None,
            passphrase: None,
            all_databases: false,
            undo_dir: None,
            keep_undo_secs: crate::catalog::DEFAULT_KEEP_UNDO_SECS,
            undo: false,
        }
    }
}

/// Output of [`restore`](crate::restore()) (the CLI's `--json` for `restore`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RestoreReport {
    /// Backup restored.
    pub id: String,
    /// Target, without credentials.
    pub into: String,
    /// Engine.
    pub engine: Engine,
    /// Tables restored.
    pub tables: usize,
    /// Rows restored.
    pub rows: u64,
    /// Uncompressed bytes loaded.
    pub raw_bytes: u64,
    /// Objects read.
    pub objects: usize,
    /// Wall time of the whole restore, cleanup after the swap included.
    pub duration_ms: u64,
    /// Time from the start until the restored data was live (the swap committed: MySQL's
    /// `RENAME TABLE` and the restored views, routines, triggers and events in place), which is
    /// the measured recovery time (`guard`'s `recovery_ms`). Lower than `duration_ms` where the
    /// swap leaves cleanup behind it (MySQL/MariaDB: dropping the replaced tables); the same
    /// elsewhere. `None` only in reports of older versions.
    #[serde(default)]
    pub live_ms: Option<u64>,
    /// Notes for the operator.
    pub notes: Vec<String>,
    /// The undo copy kept of what this restore replaced (`restore --undo` puts it back), if any.
    #[serde(default)]
    pub undo: Option<crate::catalog::UndoCopy>,
}

/// The name the operator must type to confirm, when confirmation is needed.
pub fn confirmation_needed(opts: &RestoreOptions) -> Result<Option<String>> {
    if !opts.production || opts.force {
        return Ok(None);
    }
    Ok(Some(DatabaseUrl::parse(&opts.into)?.database()))
}

/// Restores a backup (see the module docs). This is the restore alone: `restore` of `undo` (the
/// library's `restore`) wraps it with the undo copy and `--undo`.
pub async fn restore(opts: &RestoreOptions, ctx: &Context) -> Result<RestoreReport> {
    let url = checked_target(opts)?;
    let prepared = prepare(opts, &url, ctx).await?;
    run_prepared(prepared, &url, opts, ctx).await
}

/// The target's URL (with the password), once the production confirmation is settled.
pub(crate) fn checked_target(opts: &RestoreOptions) -> Result<DatabaseUrl> {
    let mut url = DatabaseUrl::parse(&opts.into)?;
    url.set_password(opts.password.clone());
    if let Some(name) = confirmation_needed(opts)? {
        return Err(Error::ConfirmationRequired(format!(
            "{} is marked production; confirm by typing the database name {name:?} or pass --force",
            url
        )));
    }
    Ok(url)
}

/// What a restore will load, resolved before anything is touched (an unknown backup or a wrong
/// key fails here).
pub(crate) enum Prepared {
    /// A plain dump file.
    Script { path: std::path::PathBuf, loader: Box<dyn Loader> },
    /// A backup in a repository.
    Backup { target: Target, manifest: Box<Manifest>, loader: Box<dyn Loader> },
}

/// Resolves what `opts` restores into `url`.
pub(crate) async fn prepare(opts: &RestoreOptions, url: &DatabaseUrl, ctx: &Context) -> Result<Prepared> {
    if let Some(path) = foreign_script_path(&opts.backup) {
        return Ok(Prepared::Script { path, loader: source::open_loader(url)? });
    }
    let target = Target::open_in(&opts.repo, ctx)?;
    let scope = (!opts.all_databases).then(|| catalog::DatabaseScope::of_url(url));
    let manifest = catalog::resolve_for(&target, &opts.backup, scope.as_ref()).await?;
    // An encrypted backup opens with the key before anything else happens: a wrong or missing
    // key fails here, with the target untouched.
    let keys = Keyring::from_secrets(opts.identity.as_ref(), opts.passphrase.as_ref())?;
    let manifest = sealed::open(&manifest, keys.as_ref())?;
    Ok(Prepared::Backup { target, manifest: Box::new(manifest), loader: source::open_loader(url)? })
}

/// Loads what [`prepare`] resolved (audited for a backup).
pub(crate) async fn run_prepared(
    prepared: Prepared,
    url: &DatabaseUrl,
    opts: &RestoreOptions,
    ctx: &Context,
) -> Result<RestoreReport> {
    let shown = url.to_string();
    match prepared {
        Prepared::Script { path, loader } => restore_script(&path, loader.as_ref(), &shown, opts, ctx).await,
        Prepared::Backup { target, manifest, loader } => {
            let started_at = chrono::Utc::now();
            let result = restore_with(&target, &manifest, loader.as_ref(), &shown, opts, ctx).await;
            audit::record(
                &target,
                &manifest,
                &shown,
                opts.operator.as_deref(),
                "restore",
                started_at,
                result.as_ref().map(|r| r.rows),
            )
            .await;
            result
        }
    }
}

/// [`restore`](crate::restore()) with an opened repository, a resolved manifest and a loader. Holds a shared
/// lease on the backup while it runs (`prune` keeps it), taken before anything is touched.
pub async fn restore_with(
    target: &Target,
    manifest: &Manifest,
    loader: &dyn Loader,
    into_display: &str,
    opts: &RestoreOptions,
    ctx: &Context,
) -> Result<RestoreReport> {
    let lease = crate::lease::share(target, "restore", vec![manifest.id.clone()]).await?;
    let leased = lease.context(ctx);
    let result = match stage_leased(target, manifest, loader, into_display, opts, &leased).await {
        Ok(staged) => {
            let started = staged.started;
            staged.commit(started, &leased).await
        }
        Err(e) => Err(e),
    };
    lease.release().await;
    result
}

/// A restore staged up to its swap ([`stage_with`]): the backup loaded into the engine's shadow
/// and every proof checked (per-object digests, row counts, content checksums), with the load
/// session (its connections and the target's restore lock) kept open. [`Staged::commit`] is
/// the swap that ends every restore; [`Staged::abort`] discards the shadow. Dropped without
/// either, the session's connections close and the shadow is left for the next run into the
/// target to remove (as a killed restore's).
pub(crate) struct Staged {
    session: Box<dyn LoadSession>,
    /// When staging began (a plain restore measures its times from here).
    pub(crate) started: Instant,
    /// The report without the commit's part (times and the commit's notes are filled in by
    /// [`Staged::commit`]).
    report: RestoreReport,
}

impl Staged {
    /// The swap (see [`commit_uninterrupted`]): the restored database live, or, on error, the
    /// target as it was. The report's `duration_ms` and `live_ms` are measured from `since`.
    pub(crate) async fn commit(self, since: Instant, ctx: &Context) -> Result<RestoreReport> {
        let Staged { session, mut report, .. } = self;
        let commit = commit_uninterrupted(session, ctx).await?;
        let duration_ms = ms_between(since, Instant::now());
        report.duration_ms = duration_ms;
        report.live_ms = Some(commit.live_at.map_or(duration_ms, |t| ms_between(since, t)));
        report.notes.extend(commit.notes);
        if let Some(p) = commit.previous_kept_at {
            report.notes.push(format!("previous data kept at {p}"));
        }
        Ok(report)
    }

    /// Discards the shadow; the target is as it was.
    pub(crate) async fn abort(self) -> Result<()> {
        self.session.abort().await
    }
}

/// Everything a restore does before its swap, under a shared lease on the backup released when
/// it returns (the staged shadow no longer reads the repository): see [`Staged`].
pub(crate) async fn stage_with(
    target: &Target,
    manifest: &Manifest,
    loader: &dyn Loader,
    into_display: &str,
    opts: &RestoreOptions,
    ctx: &Context,
) -> Result<Staged> {
    let lease = crate::lease::share(target, "restore", vec![manifest.id.clone()]).await?;
    let result = stage_leased(target, manifest, loader, into_display, opts, &lease.context(ctx)).await;
    lease.release().await;
    result
}

async fn stage_leased(
    target: &Target,
    manifest: &Manifest,
    loader: &dyn Loader,
    into_display: &str,
    opts: &RestoreOptions,
    ctx: &Context,
) -> Result<Staged> {
    let started = Instant::now();
    if manifest.is_sealed() {
        // Callers of restore_with open the manifest first; without that nothing can be loaded.
        sealed::open(manifest, None)?;
    }
    if loader.engine() != manifest.engine {
        return Err(Error::InvalidInput(format!(
            "backup {} is a {} backup and cannot be restored into a {} database",
            manifest.id,
            manifest.engine,
            loader.engine()
        )));
    }
    // Every object must exist with its recorded size before anything is touched.
    let quick = pipeline::check_quick(target, manifest).await?;
    if let Some(f) = quick.first() {
        return Err(Error::integrity(
            format!("backup {}: {}", manifest.id, f.object.clone().unwrap_or_default()),
            "every object present with its recorded size",
            format!("{} ({} problem(s))", f.problem, quick.len()),
        ));
    }
    if opts.in_place || opts.verify_first {
        let findings = pipeline::check_full(target, manifest, opts.jobs.max(1), ctx).await?;
        if let Some(f) = findings.first() {
            return Err(Error::integrity(
                format!("backup {}: {}", manifest.id, f.object.clone().unwrap_or_default()),
                "every object intact",
                format!("{} ({} problem(s))", f.problem, findings.len()),
            ));
        }
    }
    let load_opts = LoadOptions {
        jobs: opts.jobs.max(1),
        in_place: opts.in_place,
        tables: opts.tables.clone(),
        engine_options: opts.engine_options.clone(),
    };
    let session = loader.begin(manifest, &load_opts, ctx).await?;
    tracing::debug!("restore: session open");
    let loaded = match load_and_check(target, manifest, session.as_ref(), &load_opts, ctx).await {
        Ok(l) => l,
        Err(e) => {
            if let Err(abort) = session.abort().await {
                tracing::warn!("discarding the partial restore after error: {abort}");
            }
            return Err(e);
        }
    };
    crate::failpoint::hit("restore-loaded");
    tracing::debug!("restore: loaded and checked");
    Ok(Staged {
        session,
        started,
        report: RestoreReport {
            id: manifest.id.to_string(),
            into: into_display.to_string(),
            engine: manifest.engine,
            tables: loaded.tables,
            rows: loaded.rows,
            raw_bytes: loaded.raw_bytes,
            objects: loaded.objects,
            duration_ms: 0,
            live_ms: None,
            notes: loaded.notes,
            undo: None,
        },
    })
}

/// Swaps the load in, or, when the operation was cancelled before the swap began, discards it
/// ([`Error::Cancelled`], nothing changed). Once begun, the swap runs to its end: it is never
/// given the cancellation token, and it runs as a [`crate::Critical`] step that a caller
/// dropping a cancelled operation after a grace period waits for. Every statement of a swap is
/// bounded by the server's lock timeout, so the wait is bounded too.
async fn commit_uninterrupted(session: Box<dyn LoadSession>, ctx: &Context) -> Result<CommitReport> {
    crate::failpoint::delay("restore-before-swap").await;
    let _swap = ctx.critical.enter();
    if let Err(e) = ctx.check("restore (stopped before the swap; the target is unchanged)") {
        drop(_swap);
        if let Err(abort) = session.abort().await {
            tracing::warn!("discarding the restore after it was cancelled: {abort}");
        }
        return Err(e);
    }
    let _p = PhaseGuard::start(ctx, Phase::Finish, None);
    crate::failpoint::delay("restore-swap").await;
    session.commit(ctx).await
}

/// The local path of a foreign plain dump script, when `backup` names one: an existing file whose
/// name ends in `.sql`, `.sql.gz` or `.sql.zst` (a `file://` prefix is accepted).
pub fn foreign_script_path(backup: &str) -> Option<std::path::PathBuf> {
    let raw = backup.strip_prefix("file://").unwrap_or(backup);
    let lower = raw.to_ascii_lowercase();
    let is_script = [".sql", ".sql.gz", ".sql.zst", ".sql.zstd"].iter().any(|s| lower.ends_with(s));
    let path = std::path::PathBuf::from(raw);
    (is_script && path.is_file()).then_some(path)
}

/// Restores a foreign plain dump script (pg_dump / mysqldump output) from a local file: the
/// file is streamed, decompressed by its extension, and executed by the engine into a shadow
/// which is then swapped in exactly like a backup (`LoadSession::commit`); any failure
/// discards the shadow and leaves the live database as it was.
pub async fn restore_script(
    path: &std::path::Path,
    loader: &dyn Loader,
    into_display: &str,
    opts: &RestoreOptions,
    ctx: &Context,
) -> Result<RestoreReport> {
    let started = Instant::now();
    let shown = path.display().to_string();
    if opts.verify_first {
        // The whole file, before anything is touched: the codec's integrity to the end, and the
        // engine's script reader to the end (see `source::script::check`).
        let (sql, size) = open_script(path).await?;
        let _p = PhaseGuard::start(ctx, Phase::Verify, size);
        source::script::check::check_script(loader.engine(), sql, &format!("dump script {shown}")).await?;
    }
    let (sql, size) = open_script(path).await?;
    let ctx2 = ctx.clone();
    let raw_bytes = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let counted = raw_bytes.clone();
    let sql = sql
        .inspect_ok(move |b| {
            counted.fetch_add(b.len() as u64, std::sync::atomic::Ordering::Relaxed);
            ctx2.emit(Event::Advanced { phase: Phase::Load, bytes: b.len() as u64 });
        })
        .boxed();
    let load_opts = LoadOptions {
        jobs: opts.jobs.max(1),
        in_place: opts.in_place,
        tables: opts.tables.clone(),
        engine_options: opts.engine_options.clone(),
    };
    let session = loader.begin_script(&load_opts, ctx).await?;
    let phase = PhaseGuard::start(ctx, Phase::Load, size);
    let report = match session.script(sql, ctx).await {
        Ok(r) => r,
        Err(e) => {
            if let Err(abort) = session.abort().await {
                tracing::warn!("discarding the partial restore after error: {abort}");
            }
            return Err(e.context(format!("restore {shown}")));
        }
    };
    drop(phase);
    let commit = commit_uninterrupted(session, ctx).await?;
    let duration_ms = ms_between(started, Instant::now());
    let live_ms = commit.live_at.map_or(duration_ms, |t| ms_between(started, t));
    let mut notes = report.notes;
    notes.extend(commit.notes);
    if let Some(p) = commit.previous_kept_at {
        notes.push(format!("previous data kept at {p}"));
    }
    Ok(RestoreReport {
        id: shown,
        into: into_display.to_string(),
        engine: loader.engine(),
        tables: report.tables,
        rows: report.rows,
        raw_bytes: raw_bytes.load(std::sync::atomic::Ordering::Relaxed),
        objects: 1,
        duration_ms,
        live_ms: Some(live_ms),
        notes,
        undo: None,
    })
}

/// A dump script's bytes, decompressed by the file's extension, and the file's size.
async fn open_script(path: &std::path::Path) -> Result<(ByteStream, Option<u64>)> {
    let shown = path.display().to_string();
    let file =
        tokio::fs::File::open(path).await.map_err(|e| Error::io(format!("open dump script {shown}"), e))?;
    let size = file.metadata().await.map(|m| m.len()).ok();
    let what = format!("dump script {shown}");
    let io_what = what.clone();
    let raw: ByteStream = tokio_util::io::ReaderStream::with_capacity(file, 1 << 20)
        .map_err(move |e| Error::io(format!("read {io_what}"), e))
        .boxed();
    Ok((compress::decode(raw, Codec::from_file_name(&shown), what), size))
}

/// Milliseconds from `from` to `to`.
fn ms_between(from: Instant, to: Instant) -> u64 {
    u64::try_from(to.saturating_duration_since(from).as_millis()).unwrap_or(u64::MAX)
}
