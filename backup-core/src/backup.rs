//! The `create` use-case: snapshot -> chunks -> compress -> sha256 -> every repository, manifest
//! last.
//!
//! Memory: at most `jobs` chunks are in flight; each holds two codec channels of
//! `CHANNEL_DEPTH` x 1 MiB plus, per repository, `(max_concurrency + 1) x part_size` upload buffers.
//! With the defaults (jobs 2, one repository, 8 MiB parts, 4 parts in flight) that is about
//! 2 x (8 + 40) MiB: bounded by options, never by database size.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use bytes::Bytes;
use chrono::Utc;
use futures::{StreamExt, TryStreamExt};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use crate::codec::ByteStream;
use crate::codec::checksum::{read_tally, tally};
use crate::codec::compress::{self, ChannelStream};
use crate::codec::encrypt::{self, Recipients, Sealing};
use crate::engine_options::EngineOptions;
use crate::error::{Error, Result};
use crate::format::layout::{self, SchemaPart};
use crate::format::manifest::{self, Manifest, ObjectEntry, ObjectKind, ToolInfo};
use crate::format::sealed;
use crate::lease::{Lease, LeaseKind};
use crate::model::{BackupId, Compression, DatabaseUrl, Engine, Secret, compression_serde, default_jobs};
use crate::progress::{Context, Event, Phase, PhaseGuard};
use crate::source::{self, ChunkPlan, DumpOptions, DumpPlan, Snapshot, Source};
use crate::storage::Target;

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

/// The repositories of one backup and which of them have failed so far. A failed repository
/// receives nothing more and never gets the manifest; the others carry on.
pub(crate) struct Fleet<'a> {
    targets: &'a [Target],
    failed: std::sync::Mutex<Vec<Option<Error>>>,
    /// Keys this run started writing, per repository: the only objects a failed run removes.
    written: std::sync::Mutex<Vec<Vec<String>>>,
}

impl<'a> Fleet<'a> {
    fn new(targets: &'a [Target]) -> Self {
        Fleet {
            targets,
            failed: std::sync::Mutex::new(targets.iter().map(|_| None).collect()),
            written: std::sync::Mutex::new(targets.iter().map(|_| Vec::new()).collect()),
        }
    }

    /// Notes that this run is about to write `key` in repository `i` (before the upload starts:
    /// an upload that fails after the store took it must still be removed).
    fn writing(&self, i: usize, key: &str) {
        self.written.lock().unwrap_or_else(|p| p.into_inner())[i].push(key.to_string());
    }

    /// Best effort: removes from repository `i` the objects this run wrote, and nothing else: not
    /// the manifest (a failed run never wrote one; one that is there belongs to another run) nor
    /// any other object under the same id. What is left is swept by `prune` after its grace
    /// period.
    async fn cleanup(&self, i: usize, id: &BackupId) {
        let keys = std::mem::take(&mut self.written.lock().unwrap_or_else(|p| p.into_inner())[i]);
        let t = &self.targets[i];
        for key in keys {
            if let Err(e) = t.delete(&key).await {
                tracing::warn!("cleanup of failed backup {id} in {t}: {e}");
            }
        }
    }

    /// [`Fleet::cleanup`] in every repository.
    async fn cleanup_all(&self, id: &BackupId) {
        for i in 0..self.targets.len() {
            self.cleanup(i, id).await;
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Option<Error>>> {
        self.failed.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Indexes and targets still alive.
    fn live(&self) -> Vec<(usize, &'a Target)> {
        let failed = self.lock();
        self.targets.iter().enumerate().filter(|(i, _)| failed[*i].is_none()).collect()
    }

    /// Marks a repository failed. Returns the error back if no repository is left alive.
    fn fail(&self, i: usize, e: Error) -> Option<Error> {
        let mut failed = self.lock();
        tracing::warn!("repository {} failed, continuing with the others: {e}", self.targets[i]);
        let msg = e.to_string();
        failed[i] = Some(e);
        if failed.iter().all(Option::is_some) {
            return Some(Error::source(format!("every repository failed; last: {}", self.targets[i]), msg));
        }
        None
    }

    fn take_failures(&self) -> Vec<(usize, Error)> {
        self.lock().iter_mut().enumerate().filter_map(|(i, e)| e.take().map(|e| (i, e))).collect()
    }
}

/// Backs up the database at `opts.source` into every repository in `opts.repos`.
pub async fn create(opts: &CreateOptions, ctx: &Context) -> Result<CreateReport> {
    let mut url = DatabaseUrl::parse(&opts.source)?;
    url.set_password(opts.password.clone());
    let source = source::open_source(&url)?;
    let targets = open_targets(&opts.repos, ctx)?;
    create_with(source.as_ref(), &url.to_string(), &targets, opts, ctx).await
}

pub(crate) fn open_targets(repos: &[String], ctx: &Context) -> Result<Vec<Target>> {
    if repos.is_empty() {
        return Err(Error::InvalidInput("no repository given (--repo)".into()));
    }
    repos.iter().map(|r| Target::create_in(r, ctx)).collect()
}

/// [`create`] with an already opened source and repositories (tests, fault injection).
pub async fn create_with(
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
    let result =
        run(snapshot.as_ref(), engine, &id, source_display, &fleet, opts, jobs, started_at, enc, ctx).await;
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
    // Manifest last, create-only, to each repository that holds every object. A repository
    // that failed on the way gets no manifest and its objects are removed; the backup still
    // counts in the others, and the report lists the failures (the CLI exits 1).
    let json = Bytes::from(match &sealing {
        Some(s) => sealed::to_json(&manifest, s)?,
        None => manifest.to_json()?,
    });
    for (i, t) in fleet.live() {
        if let Err(e) = t.put_create(&layout::manifest_key(&id), json.clone()).await {
            let e = e.context(format!("write manifest of {id}"));
            if let Some(all) = fleet.fail(i, e) {
                fleet.cleanup_all(&id).await;
                return Err(all);
            }
        }
    }
    let mut failed_repos = Vec::new();
    for (i, e) in fleet.take_failures() {
        fleet.cleanup(i, &id).await;
        failed_repos.push(FailedRepo { repo: targets[i].display_name().to_string(), error: e.to_string() });
    }
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

#[allow(clippy::too_many_arguments)]
async fn run(
    snap: &dyn Snapshot,
    engine: crate::model::Engine,
    id: &BackupId,
    source_display: &str,
    targets: &Fleet<'_>,
    opts: &CreateOptions,
    jobs: usize,
    started_at: chrono::DateTime<Utc>,
    enc: Option<Arc<Recipients>>,
    ctx: &Context,
) -> Result<Manifest> {
    let schema = snap.schema().await?;
    let mut plan = snap.plan().await?;
    let total: u64 = plan.chunks.iter().filter_map(|c| c.size_hint).sum();
    let phase = PhaseGuard::start(ctx, Phase::Upload, Some(total));
    let mut objects = Vec::new();
    for (part, sql) in [(SchemaPart::PreData, schema.pre_data), (SchemaPart::PostData, schema.post_data)] {
        let key = stored_key(layout::schema_key(part, opts.compression), enc.is_some());
        let kind = if part == SchemaPart::PreData { ObjectKind::SchemaPre } else { ObjectKind::SchemaPost };
        let len = sql.len() as u64;
        let stream = futures::stream::once(async move { Ok(Bytes::from(sql)) }).boxed();
        let stored =
            store_object(stream, id, &key, Some(len), opts.compression, 1, enc.clone(), targets, ctx).await?;
        objects.push(entry(key, kind, None, 0, "sql", opts.compression, stored, None, None));
    }
    // Fewer chunks than workers: let zstd use the spare cores inside each object.
    let threads = if plan.chunks.len() < jobs { (jobs / plan.chunks.len().max(1)).max(1) as u32 } else { 1 };
    let plan_ref = &plan;
    // Page-level engines (SQLite) learn row counts from stats; row engines count while dumping
    // and stats must agree with the dump.
    let page_level = plan.chunks.iter().all(|c| c.table.is_none());
    let enc_ref = &enc;
    let chunks = futures::stream::iter(plan.chunks.iter().enumerate())
        .map(|(i, c)| async move {
            ctx.check("backup")?;
            let enc = enc_ref.clone();
            let e = dump_chunk(snap, plan_ref, c, id, opts.compression, threads, enc, targets, ctx).await?;
            Ok::<_, Error>((i, e))
        })
        .buffer_unordered(jobs)
        .try_collect::<Vec<(usize, ObjectEntry)>>();
    // Stats read the same snapshot, so they run alongside the upload rather than after it.
    let want_stats = opts.checksums || page_level;
    let stats = async {
        if !want_stats {
            return Ok(Vec::new());
        }
        futures::stream::iter(plan_ref.tables.iter().enumerate())
            .map(|(i, t)| async move { snap.table_stats(t).await.map(|s| (i, s)) })
            .buffer_unordered(jobs)
            .try_collect::<Vec<_>>()
            .await
    };
    let (mut chunk_results, stats) = futures::future::try_join(chunks, stats).await?;
    chunk_results.sort_by_key(|(i, _)| *i);
    objects.extend(chunk_results.into_iter().map(|(_, e)| e));
    for o in &objects {
        if let (Some(t), Some(r)) = (o.table, o.rows) {
            plan.tables[t].rows += r;
        }
    }
    for (i, s) in stats {
        let t = &mut plan.tables[i];
        if page_level {
            t.rows = s.rows;
        } else if t.rows != s.rows {
            return Err(Error::integrity(
                format!("table {}", t.display_name()),
                format!("{} rows dumped", t.rows),
                format!("{} rows in the snapshot", s.rows),
            ));
        }
        if opts.checksums {
            t.checksum = s.checksum;
            t.checksum_algo = s.checksum_algo;
            t.properties.extend(s.extra);
        }
    }
    drop(phase);
    // After the dump: engines may record what they learned while streaming.
    let info = snap.info();
    Ok(Manifest {
        format: manifest::FORMAT.into(),
        format_version: manifest::FORMAT_VERSION,
        id: id.clone(),
        tool: ToolInfo::default(),
        engine,
        server_version: info.server_version,
        database: info.database,
        source: source_display.to_string(),
        snapshot: info.position,
        started_at,
        finished_at: Utc::now(),
        tags: opts.tags.clone(),
        compression: opts.compression.to_string(),
        objects,
        tables: plan.tables,
        notes: info.notes,
        properties: info.properties,
        encryption: None,
    })
}

#[allow(clippy::too_many_arguments)]
async fn dump_chunk(
    snap: &dyn Snapshot,
    plan: &DumpPlan,
    c: &ChunkPlan,
    id: &BackupId,
    compression: Compression,
    threads: u32,
    enc: Option<Arc<Recipients>>,
    targets: &Fleet<'_>,
    ctx: &Context,
) -> Result<ObjectEntry> {
    let table_key = match c.table {
        // Encrypted: the key carries the table's index only, never its name.
        Some(t) if enc.is_some() => layout::sealed_table_key(t),
        Some(t) => plan.tables[t].key.clone(),
        None => c.group.unwrap_or(layout::FILE_GROUP).to_string(),
    };
    let key = stored_key(layout::data_key(&table_key, c.chunk, &c.ext, compression), enc.is_some());
    let dump = snap.dump(plan, c).await?;
    let ctx2 = ctx.clone();
    let bytes = dump
        .bytes
        .inspect_ok(move |b| ctx2.emit(Event::Advanced { phase: Phase::Upload, bytes: b.len() as u64 }))
        .boxed();
    let stored = store_object(bytes, id, &key, c.size_hint, compression, threads, enc, targets, ctx).await?;
    ctx.emit(Event::ObjectDone { phase: Phase::Upload, key: key.clone() });
    let rows = c.table.map(|_| dump.rows.load(Ordering::SeqCst));
    Ok(entry(key, c.kind, c.table, c.chunk, &c.format, compression, stored, rows, c.offset))
}

/// Sizes and digests of one stored object.
pub(crate) struct Stored {
    raw_bytes: u64,
    raw_sha256: String,
    stored_bytes: u64,
    sha256: String,
}

#[allow(clippy::too_many_arguments)]
fn entry(
    key: String,
    kind: ObjectKind,
    table: Option<usize>,
    chunk: u32,
    format: &str,
    compression: Compression,
    s: Stored,
    rows: Option<u64>,
    offset: Option<u64>,
) -> ObjectEntry {
    ObjectEntry {
        key,
        kind,
        table,
        chunk,
        format: format.to_string(),
        codec: compression.codec_name().to_string(),
        raw_bytes: s.raw_bytes,
        stored_bytes: s.stored_bytes,
        sha256: s.sha256,
        raw_sha256: s.raw_sha256,
        rows,
        offset,
    }
}

/// An object's key as stored: `.age` appended when the backup is encrypted.
fn stored_key(key: String, encrypted: bool) -> String {
    if encrypted { layout::encrypted_key(&key) } else { key }
}

/// raw -> tally -> compress -> [encrypt] -> tally -> every repository (the same bytes to each).
#[allow(clippy::too_many_arguments)]
async fn store_object(
    raw: ByteStream,
    id: &BackupId,
    key: &str,
    size_hint: Option<u64>,
    compression: Compression,
    threads: u32,
    enc: Option<Arc<Recipients>>,
    targets: &Fleet<'_>,
    ctx: &Context,
) -> Result<Stored> {
    let (raw, raw_tally) = tally(raw);
    let encoded = compress::encode(raw, compression, threads);
    let encoded = match enc {
        Some(r) => encrypt::encrypt(encoded, r),
        None => encoded,
    };
    let (encoded, stored_tally) = tally(encoded);
    let full_key = format!("{}{key}", layout::backup_dir(id));
    fan_out(encoded, &full_key, size_hint, targets, ctx).await?;
    let (raw_bytes, raw_sha256) = read_tally(&raw_tally);
    let (stored_bytes, sha256) = read_tally(&stored_tally);
    Ok(Stored { raw_bytes, raw_sha256, stored_bytes, sha256 })
}

/// Sends one stream to every live repository. A repository whose upload fails is marked failed
/// and dropped from the rest of the backup; the call fails only when the stream itself fails,
/// on cancellation, or when no repository is left.
pub(crate) async fn fan_out(
    mut data: ByteStream,
    key: &str,
    size_hint: Option<u64>,
    fleet: &Fleet<'_>,
    ctx: &Context,
) -> Result<()> {
    if let [only] = fleet.targets {
        fleet.writing(0, key);
        only.put_stream(key, data, size_hint, ctx).await?;
        return Ok(());
    }
    let live = fleet.live();
    let mut senders = Vec::new();
    let mut uploads = Vec::new();
    for (i, t) in &live {
        fleet.writing(*i, key);
        let (tx, rx) = mpsc::channel::<Result<Bytes>>(compress::CHANNEL_DEPTH);
        senders.push(tx);
        let stream = ChannelStream::new(rx).boxed();
        uploads.push(async move { t.put_stream(key, stream, size_hint, ctx).await });
    }
    let pump = async move {
        while let Some(item) = data.next().await {
            match item {
                Ok(b) => {
                    for tx in &senders {
                        // A closed receiver means that upload failed; its error is reported below.
                        let _ = tx.send(Ok(b.clone())).await;
                    }
                }
                Err(e) => {
                    let msg = e.to_string();
                    for tx in &senders {
                        let _ = tx.send(Err(Error::source("backup stream", msg.clone()))).await;
                    }
                    return Err(e);
                }
            }
        }
        Ok(())
    };
    let (pumped, results) = tokio::join!(pump, futures::future::join_all(uploads));
    pumped?;
    for ((i, _), r) in live.iter().zip(results) {
        match r {
            Ok(_) => {}
            Err(e @ Error::Cancelled(_)) => return Err(e),
            Err(e) => {
                if let Some(all) = fleet.fail(*i, e) {
                    return Err(all);
                }
            }
        }
    }
    Ok(())
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
    create(
        &CreateOptions {
            source: source.to_string(),
            password,
            repos,
            compression,
            jobs,
            tags,
            engine_options: engine_options.clone(),
            temp_dir,
            ..Default::default()
        },
        ctx,
    )
    .await
}
