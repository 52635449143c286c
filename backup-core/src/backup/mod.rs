//! The `create` use-case: snapshot -> chunks -> compress -> sha256 -> every repository, manifest
//! last.
//!
//! Memory: at most `jobs` chunks are in flight; each holds two codec channels of
//! `CHANNEL_DEPTH` x 1 MiB plus, per repository, `(max_concurrency + 1) x part_size` upload buffers.
//! With the defaults (jobs 2, one repository, 8 MiB parts, 4 parts in flight) that is about
//! 2 x (8 + 40) MiB: bounded by options, never by database size.
//!
//! The parts: this file holds the options, the report and the run around the upload (id, leases,
//! snapshot, manifest last); `dump` writes the objects and builds the manifest; `fleet` sends
//! each object to every repository and drops a failing one.

mod dump;
mod fleet;

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use chrono::Utc;
use serde::{Deserialize, Serialize};

use crate::codec::encrypt::Sealing;
use crate::engine_options::EngineOptions;
use crate::error::{Error, Result};
use crate::format::layout;
use crate::format::manifest::Manifest;
use crate::format::sealed;
use crate::lease::{Lease, LeaseKind};
use crate::model::{BackupId, Compression, DatabaseUrl, Engine, Secret, compression_serde, default_jobs};
use crate::progress::{Context, Phase, PhaseGuard};
use crate::source::{self, DumpOptions, Source};
use crate::storage::Target;
use dump::Job;
use fleet::Fleet;

/// Input of [`create`].
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct CreateOptions {
    /// Database URL (`sqlite:`, `postgres://`, `mysql://`).
    pub source: String,
    /// Password (overrides one in the URL).
    pub password: Option<Secret>,
    /// Repository URLs; the same bytes go to each.
    pub repos: Vec<String>,
    /// Compression (`zstd:3` by default).
    #[serde(with = "compression_serde")]
    pub compression: Compression,
    /// Parallel workers.
    pub jobs: usize,
    /// Tags recorded in the manifest.
    pub tags: Vec<String>,
    /// Target raw size per chunk.
    pub chunk_bytes: u64,
    /// Record per-table content checksums.
    pub checksums: bool,
    /// Temp directory for engines that need one.
    pub temp_dir: Option<std::path::PathBuf>,
    /// Engine options (MySQL, PostgreSQL switches; session time limits).
    pub engine_options: EngineOptions,
    /// Encrypt the backup to these age X25519 recipients (`age1...`; `#` comments and blank
    /// lines skipped, so a recipients file's text works too). Empty: not encrypted, unless
    /// `passphrase` is set.
    pub encrypt_to: Vec<String>,
    /// Also (or only) let this passphrase open the backup (age scrypt; see docs/FORMAT.md).
    pub passphrase: Option<Secret>,
}

impl Default for CreateOptions {
    fn default() -> Self {
        let d = DumpOptions::default();
        CreateOptions {
            source: String::new(),
            password: None,
            repos: Vec::new(),
            compression: Compression::default(),
            jobs: default_jobs(),
            tags: Vec::new(),
            chunk_bytes: d.chunk_bytes,
            checksums: true,
            temp_dir: None,
            engine_options: EngineOptions::default(),
            encrypt_to: Vec::new(),
            passphrase: None,
        }
    }
}

/// Output of [`create`] (the CLI's `--json` for `create`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CreateReport {
    /// New backup id.
    pub id: BackupId,
    /// Source engine.
    pub engine: Engine,
    /// Database name.
    pub database: String,
    /// Tables dumped.
    pub tables: usize,
    /// Rows at snapshot time.
    pub rows: u64,
    /// Uncompressed bytes.
    pub raw_bytes: u64,
    /// Stored bytes (per repository).
    pub stored_bytes: u64,
    /// Objects stored (per repository).
    pub objects: usize,
    /// Wall time.
    pub duration_ms: u64,
    /// Repositories written, as named in messages.
    pub repos: Vec<String>,
    /// Notes (fallbacks taken).
    pub notes: Vec<String>,
    /// Repositories that failed while others succeeded: they hold no manifest (and their
    /// objects were removed), so the backup does not exist there. Empty on full success.
    #[serde(default)]
    pub failed_repos: Vec<FailedRepo>,
}

/// A repository that failed during a multi-repository backup.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FailedRepo {
    /// The repository, as named in messages.
    pub repo: String,
    /// What went wrong.
    pub error: String,
}

/// Backs up the database `source` into every repository of `targets` (opened from
/// `opts.source` and `opts.repos` by [`crate::Command::run`], or given opened: tests, fault
/// injection); `source_display` names the source in the report (its URL without the password).
/// `opts.source` and `opts.repos` are not read here.
pub async fn create(
    source: &dyn Source,
    source_display: &str,
    targets: &[Target],
    opts: &CreateOptions,
    ctx: &Context,
) -> Result<CreateReport> {
    if targets.is_empty() {
        return Err(Error::InvalidInput("no repository given (--repo)".into()));
    }
    for t in &opts.tags {
        if t.is_empty() || t.len() > 128 || t.chars().any(char::is_control) {
            return Err(Error::InvalidInput(format!("bad tag {t:?}: 1 to 128 printable characters")));
        }
    }
    // Bad recipients fail before the snapshot is taken.
    let sealing = Sealing::new(&opts.encrypt_to, opts.passphrase.as_ref())?;
    let started = Instant::now();
    let started_at = Utc::now();
    let id = fresh_id(targets, started_at).await?;
    // Shared leases naming the new id: `prune` leaves its objects alone while it is written. A
    // repository where the lease cannot be taken fails in the upload, like any failing one.
    let mut leases = Vec::new();
    for t in targets {
        match Lease::acquire(t, LeaseKind::Shared, "create", vec![id.clone()]).await {
            Ok(l) => leases.push(l),
            Err(e) => tracing::warn!("taking a lease in {t}: {e}"),
        }
    }
    let ctx = &match leases.first() {
        Some(l) => leases.iter().skip(1).fold(l.context(ctx), |c, l| l.context(&c)),
        None => ctx.clone(),
    };
    let result =
        create_leased(source, source_display, targets, opts, ctx, sealing, id, started, started_at).await;
    for l in leases {
        l.release().await;
    }
    result
}

#[allow(clippy::too_many_arguments)]
async fn create_leased(
    source: &dyn Source,
    source_display: &str,
    targets: &[Target],
    opts: &CreateOptions,
    ctx: &Context,
    sealing: Option<Sealing>,
    id: BackupId,
    started: Instant,
    started_at: chrono::DateTime<Utc>,
) -> Result<CreateReport> {
    let jobs = opts.jobs.max(1);
    let dump_opts = DumpOptions {
        jobs,
        chunk_bytes: opts.chunk_bytes,
        checksums: opts.checksums,
        temp_dir: opts.temp_dir.clone(),
        engine_options: opts.engine_options.clone(),
    };
    let snapshot = {
        let _phase = PhaseGuard::start(ctx, Phase::Snapshot, None);
        source.snapshot(&dump_opts, ctx).await?
    };
    let engine = source.engine();
    let fleet = Fleet::new(targets);
    let enc = sealing.as_ref().map(|s| Arc::new(s.recipients().clone()));
    let job = Job {
        id: &id,
        source_display,
        fleet: &fleet,
        compression: opts.compression,
        checksums: opts.checksums,
        tags: &opts.tags,
        jobs,
        started_at,
        enc,
        ctx,
        zstd_contexts: Default::default(),
    };
    let result = dump::run(snapshot.as_ref(), engine, &job).await;
    // (Objects written, snapshot still open, no manifest yet: a kill here leaves all three.)
    crate::failpoint::hit("create-uploaded");
    let closed = snapshot.close().await;
    let manifest = match (result, closed) {
        (Ok(m), Ok(())) => m,
        (Err(e), _) | (Ok(_), Err(e)) => {
            fleet.cleanup_all(&id).await;
            return Err(e);
        }
    };
    let failed_repos = commit(&fleet, &id, &manifest, sealing.as_ref()).await?;
    let ok_repos: Vec<String> = targets
        .iter()
        .map(|t| t.display_name().to_string())
        .filter(|n| !failed_repos.iter().any(|f| &f.repo == n))
        .collect();
    Ok(CreateReport {
        id,
        engine: manifest.engine,
        database: manifest.database.clone(),
        tables: manifest.tables.len(),
        rows: manifest.rows(),
        raw_bytes: manifest.raw_bytes(),
        stored_bytes: manifest.stored_bytes(),
        objects: manifest.objects.len(),
        duration_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        repos: ok_repos,
        notes: manifest.notes.clone(),
        failed_repos,
    })
}

/// Manifest last, create-only, to each repository that holds every object. A repository
/// that failed on the way gets no manifest and its objects are removed; the backup still
/// counts in the others, and the report lists the failures (the CLI exits 1).
async fn commit(
    fleet: &Fleet<'_>,
    id: &BackupId,
    manifest: &Manifest,
    sealing: Option<&Sealing>,
) -> Result<Vec<FailedRepo>> {
    let json = Bytes::from(match sealing {
        Some(s) => sealed::to_json(manifest, s)?,
        None => manifest.to_json()?,
    });
    for (i, t) in fleet.live() {
        if let Err(e) = t.put_create(&layout::manifest_key(id), json.clone()).await {
            let e = e.context(format!("write manifest of {id}"));
            if let Some(all) = fleet.fail(i, e) {
                fleet.cleanup_all(id).await;
                return Err(all);
            }
        }
    }
    let mut failed_repos = Vec::new();
    for (i, e) in fleet.take_failures() {
        fleet.cleanup(i, id).await;
        failed_repos
            .push(FailedRepo { repo: fleet.target(i).display_name().to_string(), error: e.to_string() });
    }
    Ok(failed_repos)
}

/// An id for a new backup that no repository uses yet: drawn at random (64 bits, see
/// [`BackupId::new`]) and checked against every repository, so even a collision (or a test
/// forcing one) never writes into an existing backup. A repository that cannot be checked is
/// left to fail during the upload, where a failing repository is handled.
async fn fresh_id(targets: &[Target], at: chrono::DateTime<Utc>) -> Result<BackupId> {
    for attempt in 0..4 {
        let id = match crate::failpoint::forced_backup_id() {
            Some(forced) if attempt == 0 => forced.parse()?,
            _ => BackupId::new(at),
        };
        let mut taken = None;
        for t in targets {
            match t.list(&layout::backup_dir(&id)).await {
                Ok(items) if !items.is_empty() => {
                    taken = Some(t);
                    break;
                }
                Ok(_) => {}
                Err(e) => tracing::warn!("checking that backup id {id} is free in {t}: {e}"),
            }
        }
        match taken {
            None => return Ok(id),
            Some(t) => tracing::warn!("backup id {id} is already used in {t}; drawing another"),
        }
    }
    Err(Error::AlreadyExists(format!("a free backup id for a backup started at {at} (4 draws were taken)")))
}

/// A safety backup of the live database `source` before something replaces it: guard's backup
/// before its command, and a restore's undo copy (`undo`). A complete backup with the
/// given tags, taken with the engine switches the later restore uses; `temp_dir` is where the
/// engine spools (the system's temp directory when `None`).
#[allow(clippy::too_many_arguments)]
pub(crate) async fn safety_backup(
    source: &str,
    password: Option<Secret>,
    repos: Vec<String>,
    compression: Compression,
    jobs: usize,
    tags: Vec<String>,
    engine_options: &crate::engine_options::EngineOptions,
    temp_dir: Option<std::path::PathBuf>,
    ctx: &Context,
) -> Result<CreateReport> {
    let opts = CreateOptions {
        source: source.to_string(),
        password,
        repos,
        compression,
        jobs,
        tags,
        engine_options: engine_options.clone(),
        temp_dir,
        ..Default::default()
    };
    let (source, display, targets) = open(&opts, ctx)?;
    create(source.as_ref(), &display, &targets, &opts, ctx).await
}

/// What `opts` names, opened: the source database (with its password; and its URL without the
/// password, naming it in the report) and every repository (created when missing). For
/// [`crate::Command::run`] and the safety backups of guard and undo.
pub(crate) fn open(opts: &CreateOptions, ctx: &Context) -> Result<(Box<dyn Source>, String, Vec<Target>)> {
    let mut url = DatabaseUrl::parse(&opts.source)?;
    url.set_password(opts.password.clone());
    let source = source::open_source(&url)?;
    if opts.repos.is_empty() {
        return Err(Error::InvalidInput("no repository given (--repo)".into()));
    }
    let targets = opts.repos.iter().map(|r| Target::create_in(r, ctx)).collect::<Result<Vec<_>>>()?;
    Ok((source, url.to_string(), targets))
}
