//! The `restore` use-case: resolve -> check every object exists -> (optionally verify all) ->
//! load into a shadow with every object's digest checked as it streams -> compare row counts and
//! checksums with the manifest -> swap. Any failure before the swap discards the shadow and
//! leaves the live database exactly as it was.

use std::time::Instant;

use futures::{StreamExt, TryStreamExt};
use serde::{Deserialize, Serialize};

use crate::codec::ByteStream;
use crate::codec::checksum::verified;
use crate::codec::compress::{self, Codec};
use crate::codec::encrypt::Keyring;
use crate::error::{Error, Result};
use crate::format::manifest::{Manifest, ObjectEntry, ObjectKind};
use crate::format::{layout, sealed};
use crate::model::{DatabaseUrl, Secret};
use crate::progress::{Context, Event, Phase, PhaseGuard};
use crate::source::{self, LoadOptions, LoadSession, Loader, TableStats};
use crate::storage::Target;
use crate::{audit, catalog, verify};

/// Input of [`restore`].
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
    /// to the end, see `source::script_check`).
    pub verify_first: bool,
    /// Engine-specific switches.
    pub engine_options: std::collections::BTreeMap<String, String>,
    /// Who asked (`user@host`), for the audit record.
    pub operator: Option<String>,
    /// Text of an age identity file (`AGE-SECRET-KEY-1...` lines) for an encrypted backup.
    pub identity: Option<Secret>,
    /// Passphrase of an encrypted backup made with one.
    pub passphrase: Option<Secret>,
    /// `latest` / `tag:NAME` may pick a backup of any database in the repository (by default
    /// only of the target's engine and database name, see [`catalog::resolve_for`]).
    pub all_databases: bool,
}

impl Default for RestoreOptions {
    fn default() -> Self {
        RestoreOptions {
            repo: String::new(),
            backup: "latest".into(),
            into: String::new(),
            password: None,
            jobs: crate::backup::default_jobs(),
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
        }
    }
}

/// Output of [`restore`] (the CLI's `--json` for `restore`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RestoreReport {
    /// Backup restored.
    pub id: String,
    /// Target, without credentials.
    pub into: String,
    /// Engine.
    pub engine: String,
    /// Tables restored.
    pub tables: usize,
    /// Rows restored.
    pub rows: u64,
    /// Uncompressed bytes loaded.
    pub raw_bytes: u64,
    /// Objects read.
    pub objects: usize,
    /// Wall time, which is the measured recovery time.
    pub duration_ms: u64,
    /// Notes for the operator.
    pub notes: Vec<String>,
}

/// The name the operator must type to confirm, when confirmation is needed.
pub fn confirmation_needed(opts: &RestoreOptions) -> Result<Option<String>> {
    if !opts.production || opts.force {
        return Ok(None);
    }
    Ok(Some(DatabaseUrl::parse(&opts.into)?.database()))
}

/// Restores a backup (see the module docs).
pub async fn restore(opts: &RestoreOptions, ctx: &Context) -> Result<RestoreReport> {
    let mut url = DatabaseUrl::parse(&opts.into)?;
    url.set_password(opts.password.clone());
    if let Some(name) = confirmation_needed(opts)? {
        return Err(Error::ConfirmationRequired(format!(
            "{} is marked production; confirm by typing the database name {name:?} or pass --force",
            url
        )));
    }
    if let Some(path) = foreign_script_path(&opts.backup) {
        let loader = source::open_loader(&url)?;
        return restore_script(&path, loader.as_ref(), &url.to_string(), opts, ctx).await;
    }
    let target = Target::open_in(&opts.repo, ctx)?;
    let scope = (!opts.all_databases).then(|| catalog::DatabaseScope::of_url(&url));
    let manifest = catalog::resolve_for(&target, &opts.backup, scope.as_ref()).await?;
    // An encrypted backup opens with the key before anything else happens: a wrong or missing
    // key fails here, with the target untouched.
    let keys = Keyring::from_secrets(opts.identity.as_ref(), opts.passphrase.as_ref())?;
    let manifest = sealed::open(&manifest, keys.as_ref())?;
    let loader = source::open_loader(&url)?;
    let started_at = chrono::Utc::now();
    let result = restore_with(&target, &manifest, loader.as_ref(), &url.to_string(), opts, ctx).await;
    audit::record(
        &target,
        &manifest,
        &url.to_string(),
        opts.operator.as_deref(),
        "restore",
        started_at,
        &result,
    )
    .await;
    result
}

/// [`restore`] with an opened repository, a resolved manifest and a loader. Holds a shared
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
    let result = restore_leased(target, manifest, loader, into_display, opts, &lease.context(ctx)).await;
    lease.release().await;
    result
}

async fn restore_leased(
    target: &Target,
    manifest: &Manifest,
    loader: &dyn Loader,
    into_display: &str,
    opts: &RestoreOptions,
    ctx: &Context,
) -> Result<RestoreReport> {
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
    let quick = verify::check_quick(target, manifest).await?;
    if let Some(f) = quick.first() {
        return Err(Error::integrity(
            format!("backup {}: {}", manifest.id, f.object.clone().unwrap_or_default()),
            "every object present with its recorded size",
            format!("{} ({} problem(s))", f.problem, quick.len()),
        ));
    }
    if opts.in_place || opts.verify_first {
        let findings = verify::check_full(target, manifest, opts.jobs.max(1), ctx).await?;
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
    let commit = {
        let _p = PhaseGuard::start(ctx, Phase::Finish, None);
        session.commit(ctx).await?
    };
    let mut notes = loaded.notes;
    notes.extend(commit.notes);
    if let Some(p) = commit.previous_kept_at {
        notes.push(format!("previous data kept at {p}"));
    }
    Ok(RestoreReport {
        id: manifest.id.to_string(),
        into: into_display.to_string(),
        engine: manifest.engine.to_string(),
        tables: loaded.tables,
        rows: loaded.rows,
        raw_bytes: loaded.raw_bytes,
        objects: loaded.objects,
        duration_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        notes,
    })
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
/// which is then swapped in exactly like a backup ([`LoadSession::commit`]); any failure
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
        // engine's script reader to the end (see `source::script_check`).
        let (sql, size) = open_script(path).await?;
        let _p = PhaseGuard::start(ctx, Phase::Verify, size);
        source::script_check::check_script(loader.engine(), sql, &format!("dump script {shown}")).await?;
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
    let commit = {
        let _p = PhaseGuard::start(ctx, Phase::Finish, None);
        session.commit(ctx).await?
    };
    let mut notes = report.notes;
    notes.extend(commit.notes);
    if let Some(p) = commit.previous_kept_at {
        notes.push(format!("previous data kept at {p}"));
    }
    Ok(RestoreReport {
        id: shown,
        into: into_display.to_string(),
        engine: loader.engine().to_string(),
        tables: report.tables,
        rows: report.rows,
        raw_bytes: raw_bytes.load(std::sync::atomic::Ordering::Relaxed),
        objects: 1,
        duration_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        notes,
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

/// What a load put into a session.
#[derive(Debug, Clone, Default)]
pub(crate) struct Loaded {
    pub(crate) tables: usize,
    pub(crate) rows: u64,
    pub(crate) raw_bytes: u64,
    pub(crate) objects: usize,
    pub(crate) notes: Vec<String>,
}

/// Does the table filter select this table?
pub(crate) fn selected(tables: &Option<Vec<String>>, t: &crate::format::manifest::TableEntry) -> bool {
    match tables {
        None => true,
        Some(list) => list.iter().any(|n| *n == t.name || *n == t.display_name()),
    }
}

/// Loads every object of `manifest` into `session` (digests checked as bytes stream), then
/// compares each selected table's row count and checksum with the manifest.
pub(crate) async fn load_and_check<'a>(
    target: &'a Target,
    manifest: &'a Manifest,
    session: &'a dyn LoadSession,
    opts: &LoadOptions,
    ctx: &'a Context,
) -> Result<Loaded> {
    if let Some(list) = &opts.tables {
        for name in list {
            if !manifest.tables.iter().any(|t| t.name == *name || t.display_name() == *name) {
                return Err(Error::NotFound {
                    what: format!("table {name:?} in backup {}", manifest.id),
                    available: manifest.tables.iter().map(|t| t.display_name()).collect(),
                });
            }
        }
    }
    let wanted = |o: &ObjectEntry| match o.table {
        Some(t) => selected(&opts.tables, &manifest.tables[t]),
        None => true,
    };
    let total: u64 = manifest.objects.iter().filter(|o| wanted(o)).map(|o| o.raw_bytes).sum();
    let phase = PhaseGuard::start(ctx, Phase::Load, Some(total));
    let mut loaded = Loaded::default();
    for o in manifest.objects.iter().filter(|o| o.kind == ObjectKind::SchemaPre) {
        session
            .pre_data(read_object(target, manifest, o, ctx))
            .await
            .map_err(|e| e.context("apply pre-data schema"))?;
        loaded.objects += 1;
    }
    let data: Vec<&ObjectEntry> = manifest
        .objects
        .iter()
        .filter(|o| matches!(o.kind, ObjectKind::Data | ObjectKind::File) && wanted(o))
        .collect();
    let load_one = |o: &'a ObjectEntry| async move {
        ctx.check("restore")?;
        let r = session
            .load(o, read_object(target, manifest, o, ctx))
            .await
            .map_err(|e| e.context(format!("load {}", o.key)))?;
        ctx.emit(Event::ObjectDone { phase: Phase::Load, key: o.key.clone() });
        Ok::<u64, Error>(r)
    };
    if session.one_table_at_a_time() {
        // One group per table (chunks in manifest order), biggest tables first.
        let mut groups: Vec<(Option<usize>, Vec<&ObjectEntry>)> = Vec::new();
        for o in &data {
            match groups.iter_mut().find(|(t, _)| *t == o.table && t.is_some()) {
                Some((_, g)) => g.push(o),
                None => groups.push((o.table, vec![o])),
            }
        }
        groups.sort_by_key(|(_, g)| std::cmp::Reverse(g.iter().map(|o| o.raw_bytes).sum::<u64>()));
        futures::stream::iter(groups)
            .map(|(t, g)| async move {
                for o in g {
                    load_one(o).await?;
                }
                if let Some(t) = t.and_then(|i| manifest.tables.get(i)) {
                    session
                        .table_loaded(t)
                        .await
                        .map_err(|e| e.context(format!("finish loading table {}", t.display_name())))?;
                }
                Ok::<(), Error>(())
            })
            .buffer_unordered(opts.jobs.max(1))
            .try_collect::<Vec<()>>()
            .await?;
    } else {
        futures::stream::iter(data.iter().copied())
            .map(load_one)
            .buffer_unordered(opts.jobs.max(1))
            .try_collect::<Vec<u64>>()
            .await?;
    }
    loaded.objects += data.len();
    loaded.raw_bytes = data.iter().map(|o| o.raw_bytes).sum();
    for o in manifest.objects.iter().filter(|o| o.kind == ObjectKind::SchemaPost) {
        session
            .post_data(read_object(target, manifest, o, ctx))
            .await
            .map_err(|e| e.context("apply post-data schema"))?;
        loaded.objects += 1;
    }
    drop(phase);
    let _p = PhaseGuard::start(ctx, Phase::Finish, None);
    let tables: Vec<_> = manifest.tables.iter().filter(|t| selected(&opts.tables, t)).collect();
    // The database-level check (SQLite: integrity_check, PostgreSQL: large objects) is read-only
    // and independent of the tables: it runs alongside their scans, and counts after them.
    let stats = futures::stream::iter(tables.iter().enumerate())
        .map(|(i, t)| async move { session.table_stats(t).await.map(|s| (i, s)) })
        .buffer_unordered(opts.jobs.max(1))
        .try_collect::<Vec<(usize, TableStats)>>();
    let (stats, database_check) = futures::join!(stats, session.check_database());
    let stats = stats?;
    for (i, s) in stats {
        let t = tables[i];
        if s.rows != t.rows {
            return Err(Error::integrity(
                format!("table {} after load", t.display_name()),
                format!("{} rows", t.rows),
                format!("{} rows", s.rows),
            ));
        }
        // A loader that answers with another algorithm than the manifest names cannot prove
        // anything: refuse rather than skip the comparison.
        if t.checksum.is_some() && s.checksum.is_some() && t.checksum_algo != s.checksum_algo {
            return Err(Error::Unsupported(format!(
                "table {}: the backup's checksum algorithm {:?} is not the one this restore computed ({:?})",
                t.display_name(),
                t.checksum_algo.as_deref().unwrap_or("none"),
                s.checksum_algo.as_deref().unwrap_or("none"),
            )));
        }
        if let (Some(want), Some(got)) = (&t.checksum, &s.checksum)
            && want != got
        {
            return Err(Error::integrity(
                format!("table {} after load", t.display_name()),
                format!("checksum {want}"),
                format!("checksum {got}"),
            ));
        }
        loaded.rows += s.rows;
    }
    loaded.tables = tables.len();
    loaded.notes = database_check?;
    Ok(loaded)
}

/// Streams a stored object's stored bytes, checked against their recorded size and SHA-256 (no
/// decryption or decompression).
pub(crate) fn read_stored(target: &Target, manifest: &Manifest, o: &ObjectEntry) -> ByteStream {
    let key = format!("{}{}", layout::backup_dir(&manifest.id), o.key);
    let what = format!("object {} of {}", o.key, manifest.id);
    verified(target.get_stream(&key), what, o.stored_bytes, o.sha256.clone())
}

/// Streams a stored object: stored-digest check, decryption (encrypted backups, authenticated
/// by age), decompression, raw-digest check. The stream ends in an error, before its
/// end-of-stream, if any byte is wrong.
pub(crate) fn read_object(
    target: &Target,
    manifest: &Manifest,
    o: &ObjectEntry,
    ctx: &Context,
) -> ByteStream {
    let key = format!("{}{}", layout::backup_dir(&manifest.id), o.key);
    let what = format!("object {} of {}", o.key, manifest.id);
    let codec = match Codec::from_name(&o.codec) {
        Ok(c) => c,
        Err(e) => return futures::stream::once(async move { Err(e) }).boxed(),
    };
    let stored = verified(target.get_stream(&key), what.clone(), o.stored_bytes, o.sha256.clone());
    let plain = sealed::decrypted(manifest, stored, &what);
    let raw = compress::decode(plain, codec, what.clone());
    let ctx = ctx.clone();
    verified(raw, format!("{what} (decompressed)"), o.raw_bytes, o.raw_sha256.clone())
        .inspect_ok(move |b| ctx.emit(Event::Advanced { phase: Phase::Load, bytes: b.len() as u64 }))
        .boxed()
}
