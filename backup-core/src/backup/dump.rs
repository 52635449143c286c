//! One backup's objects: the schema parts and every chunk of the dump plan, each streamed raw ->
//! tally -> compress -> [encrypt] -> tally -> every repository, `jobs` at a time, with the
//! tables' stats read from the same snapshot alongside; the manifest they add up to (written
//! last by the caller).

use std::sync::Arc;
use std::sync::atomic::Ordering;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::{StreamExt, TryStreamExt};

use super::fleet::{Fleet, fan_out};
use crate::codec::ByteStream;
use crate::codec::checksum::{read_tally, tally};
use crate::codec::compress;
use crate::codec::encrypt::{self, Recipients};
use crate::error::{Error, Result};
use crate::format::layout::{self, SchemaPart};
use crate::format::manifest::{self, Manifest, ObjectEntry, ObjectKind, ToolInfo};
use crate::model::{BackupId, Compression, Engine};
use crate::progress::{Context, Event, Phase, PhaseGuard};
use crate::source::{ChunkPlan, DumpPlan, Snapshot, TableStats};

/// What one run writes and where: the settings every object of the backup shares.
pub(super) struct Job<'a> {
    /// The new backup's id.
    pub(super) id: &'a BackupId,
    /// The source as recorded in the manifest (no password).
    pub(super) source_display: &'a str,
    /// The repositories.
    pub(super) fleet: &'a Fleet<'a>,
    /// Compression of every object.
    pub(super) compression: Compression,
    /// Record per-table content checksums.
    pub(super) checksums: bool,
    /// Tags recorded in the manifest.
    pub(super) tags: &'a [String],
    /// Objects in flight at once.
    pub(super) jobs: usize,
    /// When the backup started.
    pub(super) started_at: DateTime<Utc>,
    /// Encrypt every object to these recipients.
    pub(super) enc: Option<Arc<Recipients>>,
    /// Observer and cancellation.
    pub(super) ctx: &'a Context,
    /// The zstd contexts of finished objects, kept for the next ones; freed with the job.
    pub(super) zstd_contexts: compress::ZstdContexts,
}

/// Writes every object of the snapshot and returns the manifest describing them.
pub(super) async fn run(snap: &dyn Snapshot, engine: Engine, job: &Job<'_>) -> Result<Manifest> {
    let (ctx, jobs) = (job.ctx, job.jobs);
    // The schema first, then the plan; or, when the engine can, the plan first and the schema
    // written beside the data.
    let beside = snap.schema_beside_data();
    let early = if beside { None } else { Some(snap.schema().await?) };
    let mut plan = snap.plan().await?;
    let total: u64 = plan.chunks.iter().filter_map(|c| c.size_hint).sum();
    let phase = PhaseGuard::start(ctx, Phase::Upload, Some(total));
    let schema_objects = async {
        let schema = match early {
            Some(s) => s,
            None => snap.schema().await?,
        };
        let mut objects = Vec::new();
        for (part, sql) in [(SchemaPart::PreData, schema.pre_data), (SchemaPart::PostData, schema.post_data)]
        {
            let key = stored_key(layout::schema_key(part, job.compression), job.enc.is_some());
            let kind =
                if part == SchemaPart::PreData { ObjectKind::SchemaPre } else { ObjectKind::SchemaPost };
            let len = sql.len() as u64;
            let stream = futures::stream::once(async move { Ok(Bytes::from(sql)) }).boxed();
            let stored = store_object(stream, &key, Some(len), 1, job).await?;
            objects.push(entry(key, kind, None, 0, "sql", job.compression, stored, None, None));
        }
        Ok::<_, Error>(objects)
    };
    let (mut objects, schema_beside) = match beside {
        true => (Vec::new(), Some(schema_objects)),
        false => (schema_objects.await?, None),
    };
    // Fewer chunks than workers: let zstd use the spare cores inside each object.
    let threads = if plan.chunks.len() < jobs { (jobs / plan.chunks.len().max(1)).max(1) as u32 } else { 1 };
    let plan_ref = &plan;
    // Page-level engines (SQLite) learn row counts from stats; row engines count while dumping
    // and stats must agree with the dump.
    let page_level = plan.chunks.iter().all(|c| c.table.is_none());
    let chunks = futures::stream::iter(plan.chunks.iter().enumerate())
        .map(|(i, c)| async move {
            ctx.check("backup")?;
            let e = dump_chunk(snap, plan_ref, c, threads, job).await?;
            Ok::<_, Error>((i, e))
        })
        .buffer_unordered(jobs)
        .try_collect::<Vec<(usize, ObjectEntry)>>();
    // Stats read the same snapshot, so they run alongside the upload rather than after it.
    let want_stats = job.checksums || page_level;
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
    let (mut chunk_results, stats) = match schema_beside {
        Some(schema) => {
            let (schema, chunks, stats) = futures::future::try_join3(schema, chunks, stats).await?;
            objects = schema;
            (chunks, stats)
        }
        None => futures::future::try_join(chunks, stats).await?,
    };
    chunk_results.sort_by_key(|(i, _)| *i);
    objects.extend(chunk_results.into_iter().map(|(_, e)| e));
    count_rows(&mut plan, &objects, stats, page_level, job.checksums)?;
    drop(phase);
    // After the dump: engines may record what they learned while streaming.
    let mut info = snap.info();
    info.position.extend(snap.objects_stored(&objects)?);
    Ok(Manifest {
        format: manifest::FORMAT.into(),
        format_version: manifest::FORMAT_VERSION,
        id: job.id.clone(),
        tool: ToolInfo::default(),
        engine,
        server_version: info.server_version,
        database: info.database,
        source: job.source_display.to_string(),
        snapshot: info.position,
        started_at: job.started_at,
        finished_at: Utc::now(),
        tags: job.tags.to_vec(),
        compression: job.compression.to_string(),
        objects,
        tables: plan.tables,
        notes: info.notes,
        properties: info.properties,
        encryption: None,
    })
}

/// Adds the dumped rows to each table of the plan and takes the snapshot's stats: a page-level
/// engine's row counts come from them; a row engine's must agree with what was dumped.
fn count_rows(
    plan: &mut DumpPlan,
    objects: &[ObjectEntry],
    stats: Vec<(usize, TableStats)>,
    page_level: bool,
    checksums: bool,
) -> Result<()> {
    for o in objects {
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
        if checksums {
            t.checksum = s.checksum;
            t.checksum_algo = s.checksum_algo;
            t.properties.extend(s.extra);
        }
    }
    Ok(())
}

async fn dump_chunk(
    snap: &dyn Snapshot,
    plan: &DumpPlan,
    c: &ChunkPlan,
    threads: u32,
    job: &Job<'_>,
) -> Result<ObjectEntry> {
    let (compression, ctx) = (job.compression, job.ctx);
    let table_key = match c.table {
        // Encrypted: the key carries the table's index only, never its name.
        Some(t) if job.enc.is_some() => layout::sealed_table_key(t),
        Some(t) => plan.tables[t].key.clone(),
        None => c.group.unwrap_or(layout::FILE_GROUP).to_string(),
    };
    let key = stored_key(layout::data_key(&table_key, c.chunk, &c.ext, compression), job.enc.is_some());
    let dump = snap.dump(plan, c).await?;
    let ctx2 = ctx.clone();
    let bytes = dump
        .bytes
        .inspect_ok(move |b| ctx2.emit(Event::Advanced { phase: Phase::Upload, bytes: b.len() as u64 }))
        .boxed();
    let stored = store_object(bytes, &key, c.size_hint, threads, job).await?;
    ctx.emit(Event::ObjectDone { phase: Phase::Upload, key: key.clone() });
    let rows = c.table.map(|_| dump.rows.load(Ordering::SeqCst));
    Ok(entry(key, c.kind, c.table, c.chunk, &c.format, compression, stored, rows, c.offset))
}

/// Sizes and digests of one stored object.
struct Stored {
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
async fn store_object(
    raw: ByteStream,
    key: &str,
    size_hint: Option<u64>,
    threads: u32,
    job: &Job<'_>,
) -> Result<Stored> {
    let (raw, raw_tally) = tally(raw);
    let encoded = compress::encode_with(raw, job.compression, threads, Some(job.zstd_contexts.clone()));
    let encoded = match job.enc.clone() {
        Some(r) => encrypt::encrypt(encoded, r),
        None => encoded,
    };
    let (encoded, stored_tally) = tally(encoded);
    let full_key = format!("{}{key}", layout::backup_dir(job.id));
    fan_out(encoded, &full_key, size_hint, job.fleet, job.ctx).await?;
    let (raw_bytes, raw_sha256) = read_tally(&raw_tally);
    let (stored_bytes, sha256) = read_tally(&stored_tally);
    Ok(Stored { raw_bytes, raw_sha256, stored_bytes, sha256 })
}
