//! The PostgreSQL dump side: one exported snapshot shared by a leader and `jobs` workers (see
//! the [module docs](super)).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use futures::StreamExt;
use tokio_postgres::Client;

use super::FORMAT;
use super::checksum::CHECKSUM_ALGO;
use super::conn::{self, column_list, connect, pg_err, qualified, quote_ident, quote_literal};
use super::properties::database_properties;
use super::{column_order, large_object, lo_frame};
use crate::codec::buffers::Buffers;
use crate::codec::compress::CHANNEL_DEPTH;
use crate::error::{Error, Result};
use crate::format::layout;
use crate::format::manifest::{ObjectKind, TableEntry};
use crate::model::{DatabaseUrl, Engine};
use crate::progress::Context;
use crate::source::limits::SessionLimits;
use crate::source::pool::Pool;
use crate::source::rowsum::{ChunkSums, LineSum, RowHash};
use crate::source::{
    ChunkPlan, ChunkSpec, DumpOptions, DumpPlan, DumpStream, SchemaScripts, Snapshot, SnapshotInfo, Source,
    TableStats,
};

/// The PostgreSQL dump side.
pub(crate) struct PgSource {
    url: DatabaseUrl,
}

impl PgSource {
    pub(crate) fn new(url: &DatabaseUrl) -> Result<Self> {
        Ok(PgSource { url: url.clone() })
    }
}

#[async_trait]
impl Source for PgSource {
    fn engine(&self) -> Engine {
        Engine::Postgres
    }

    async fn snapshot(&self, opts: &DumpOptions, _ctx: &Context) -> Result<Box<dyn Snapshot>> {
        let limits = SessionLimits::of(&self.url, &opts.engine_options.session)?;
        let leader = connect(&self.url, "dump leader", &limits).await?;
        leader
            .batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            .await
            .map_err(pg_err("begin the snapshot transaction"))?;
        let row = leader
            .query_one(
                "SELECT pg_export_snapshot(), current_setting('server_version'), \
                 (CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn() ELSE pg_current_wal_lsn() END)::text, \
                 current_database(), pg_is_in_recovery()",
                &[],
            )
            .await
            .map_err(pg_err("export the snapshot"))?;
        let snapshot_id: String = row.get(0);
        let server_version: String = row.get(1);
        let lsn: Option<String> = row.get(2);
        let database: String = row.get(3);
        let in_recovery: bool = row.get(4);
        let mut position = BTreeMap::new();
        position.insert("method".into(), "pg_export_snapshot".into());
        position.insert("snapshot".into(), snapshot_id.clone());
        if let Some(l) = lsn {
            position.insert("lsn".into(), l);
        }
        if in_recovery {
            position.insert("standby".into(), "true".into());
        }
        let notes = Vec::new();
        // The workers and the row-count connection import the snapshot side by side (each
        // connect is a TLS handshake and a round trip or three), while the leader reads the
        // database's properties.
        let import = |role: String| {
            let (url, limits, snapshot_id) = (&self.url, &limits, &snapshot_id);
            async move {
                let c = connect(url, &role, limits).await?;
                c.batch_execute(&format!(
                    "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY; SET TRANSACTION SNAPSHOT {}",
                    quote_literal(snapshot_id)
                ))
                .await
                .map_err(pg_err(format!("import the snapshot ({role})")))?;
                Ok::<_, Error>(c)
            }
        };
        let jobs = opts.jobs.max(1);
        let (properties, workers, counter) = futures::future::try_join3(
            database_properties(&leader),
            futures::future::try_join_all((0..jobs).map(|i| import(format!("dump worker {i}")))),
            import("row counts".into()),
        )
        .await?;
        Ok(Box::new(PgSnapshot {
            url: self.url.clone(),
            limits,
            leader,
            pool: Pool::new(workers),
            snapshot_id,
            info: SnapshotInfo { server_version, database, position, notes, properties },
            chunk_bytes: opts.chunk_bytes.max(1 << 20),
            jobs,
            keep_owners: opts.engine_options.postgres.keep_owners,
            temp_dir: opts.temp_dir.clone(),
            sums: Default::default(),
            large_objects: Arc::new(large_object::Tally::default()),
            schema_notes: Default::default(),
            counter: Arc::new(counter),
            counts: Arc::new(tokio::sync::watch::Sender::new(Counted::default())),
            counting: Default::default(),
        }))
    }
}

struct PgSnapshot {
    url: DatabaseUrl,
    limits: SessionLimits,
    leader: Client,
    pool: Pool<Client>,
    snapshot_id: String,
    info: SnapshotInfo,
    chunk_bytes: u64,
    /// Workers dumping at once (see [`chunk_counts`]).
    jobs: usize,
    keep_owners: bool,
    temp_dir: Option<std::path::PathBuf>,
    /// Checksums of the chunks dumped so far, per table key.
    sums: Arc<ChunkSums>,
    /// Large-object totals, planned and summed while streaming.
    large_objects: Arc<large_object::Tally>,
    /// Notes found while writing the schema, for the manifest.
    schema_notes: std::sync::Mutex<Vec<String>>,
    /// The connection that counts every table's rows in the snapshot (kept open, like the
    /// workers, until the snapshot closes).
    counter: Arc<Client>,
    /// The row counts taken so far (see [`count_rows`]).
    counts: Arc<tokio::sync::watch::Sender<Counted>>,
    /// The counting task, stopped with the snapshot.
    counting: std::sync::Mutex<Option<tokio::task::AbortHandle>>,
}

/// Row counts taken on the snapshot's own counting connection, by table key.
#[derive(Default)]
struct Counted {
    rows: BTreeMap<String, u64>,
    /// The count that failed (taken by the first table that asks for it).
    failed: Option<Error>,
    /// Every table counted, or the counting stopped.
    ended: bool,
}

/// `SELECT count(*)` of every table in `tables` (key, name shown, table as quoted SQL), one after
/// another on `counter`, in the snapshot it imported: the row-count proof of the dump, taken
/// while the workers dump the data instead of on their connections after it.
async fn count_rows(
    counter: &Client,
    tables: Vec<(String, String, String)>,
    counts: &tokio::sync::watch::Sender<Counted>,
) {
    for (key, name, sql_name) in tables {
        let counted = counter
            .query_one(&format!("SELECT count(*) FROM ONLY {sql_name}"), &[])
            .await
            .map_err(pg_err(format!("count rows of {name}")));
        match counted {
            Ok(row) => counts.send_modify(|c| {
                c.rows.insert(key, u64::try_from(row.get::<_, i64>(0)).unwrap_or(0));
            }),
            Err(e) => {
                counts.send_modify(|c| {
                    c.failed = Some(e);
                    c.ended = true;
                });
                return;
            }
        }
    }
    counts.send_modify(|c| c.ended = true);
}

/// How much more than an even share of the data ([`chunk_counts`]) the busiest worker may get
/// before tables are split, in tenths.
const SHARE_SLACK_TENTHS: u64 = 1;

/// Tables tried split one by one, biggest first, before every table bigger than a chunk is.
const MAX_SPLIT_TRIES: usize = 32;

/// How many chunks each table is dumped in. `tables` gives each table's size in bytes and heap
/// pages, `others` the sizes of the chunks dumped beside them (large objects).
///
/// A chunk of a table is a page range, read by a TID range scan (`WHERE ctid >= ...`), which
/// costs the server ~7% more CPU per row than `COPY table TO` (its sequential scan reads through
/// a small ring of buffers; a TID range scan evicts a shared buffer for every page). So a table
/// is dumped whole unless splitting it is needed to share the work out: with the chunks handed
/// to the first free worker biggest first (the dump's order), the biggest tables are split, one
/// more at a time, until the busiest of `jobs` workers gets at most an even share plus
/// [`SHARE_SLACK_TENTHS`]. A split table has `size / chunk_bytes` chunks (at most one per page,
/// at most 10,000), as before.
fn chunk_counts(tables: &[(u64, u64)], others: &[u64], chunk_bytes: u64, jobs: usize) -> Vec<u64> {
    let split =
        |(size, pages): (u64, u64)| size.div_ceil(chunk_bytes.max(1)).clamp(1, pages.max(1)).min(10_000);
    let mut order: Vec<usize> = (0..tables.len()).filter(|&i| split(tables[i]) > 1).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(tables[i].0));
    let jobs = jobs.max(1) as u64;
    let total: u64 = tables.iter().map(|t| t.0).chain(others.iter().copied()).sum();
    let share = total.div_ceil(jobs);
    let bound = share.saturating_add(share / 10 * SHARE_SLACK_TENTHS);
    let mut counts = vec![1u64; tables.len()];
    for k in 0..=order.len().min(MAX_SPLIT_TRIES) {
        if k > 0 {
            counts[order[k - 1]] = split(tables[order[k - 1]]);
        }
        if busiest_worker(tables, &counts, others, jobs) <= bound {
            return counts;
        }
    }
    for &i in &order {
        counts[i] = split(tables[i]);
    }
    counts
}

/// The most bytes one of `jobs` workers dumps when the chunks (`counts[i]` equal parts of table
/// `i`, and `others`) go biggest first to the worker with the fewest bytes so far.
fn busiest_worker(tables: &[(u64, u64)], counts: &[u64], others: &[u64], jobs: u64) -> u64 {
    let mut pieces: Vec<(u64, u64)> = tables.iter().zip(counts).map(|(t, &n)| (t.0 / n, n)).collect();
    pieces.extend(others.iter().map(|&o| (o, 1)));
    pieces.sort_unstable_by_key(|p| std::cmp::Reverse(p.0));
    let mut load: std::collections::BinaryHeap<std::cmp::Reverse<u64>> =
        (0..jobs.min(1 << 16)).map(|_| std::cmp::Reverse(0)).collect();
    for (size, n) in pieces {
        for _ in 0..n {
            let std::cmp::Reverse(least) = load.pop().unwrap_or(std::cmp::Reverse(0));
            load.push(std::cmp::Reverse(least + size));
        }
    }
    load.into_iter().map(|std::cmp::Reverse(l)| l).max().unwrap_or(0)
}

impl PgSnapshot {
    /// Large objects in oid order, cut into chunks of about `chunk_bytes` framed bytes (an
    /// object bigger than that gets a chunk of its own). A chunk is an oid range plus the count
    /// it must hold; the worker lists the range again inside the same snapshot.
    async fn plan_large_objects(&self, plan: &mut DumpPlan) -> Result<()> {
        let all = large_object::list(&self.leader, None, self.keep_owners).await?;
        let bytes: u64 = all.iter().map(|m| m.size).sum();
        self.large_objects.plan(all.len() as u64, bytes);
        let mut start = 0;
        let mut chunk = 0u32;
        while start < all.len() {
            let mut end = start;
            let mut framed = 0u64;
            while end < all.len() {
                let len = lo_frame::framed_len(&all[end]);
                if end > start && framed + len > self.chunk_bytes {
                    break;
                }
                framed += len;
                end += 1;
            }
            plan.chunks.push(ChunkPlan {
                table: None,
                group: Some(layout::LARGE_OBJECTS_GROUP),
                chunk,
                kind: ObjectKind::Data,
                format: large_object::FORMAT.into(),
                ext: large_object::EXT.into(),
                size_hint: Some(framed),
                offset: None,
                spec: ChunkSpec::LargeObjects {
                    first_oid: all[start].oid,
                    last_oid: all[end - 1].oid,
                    count: (end - start) as u64,
                },
            });
            chunk += 1;
            start = end;
        }
        Ok(())
    }

    async fn dump_large_objects(&self, chunk: &ChunkPlan) -> Result<DumpStream> {
        let ChunkSpec::LargeObjects { first_oid: first, last_oid: last, count } = chunk.spec else {
            return Err(Error::InvalidInput(format!(
                "large-object chunk {} without its OID range",
                chunk.chunk
            )));
        };
        let guard = self.pool.get().await?;
        let metas = large_object::list(&guard, Some((first, last)), self.keep_owners).await?;
        if metas.len() as u64 != count {
            // Same snapshot as the plan: a difference means the snapshot was not shared.
            return Err(Error::source(
                format!("dump large objects {first}..={last}"),
                format!("{} objects where the plan saw {count}", metas.len()),
            ));
        }
        let rows = Arc::new(AtomicU64::new(0));
        let bytes = lo_frame::dump_stream(guard, metas, self.large_objects.clone(), rows.clone());
        Ok(DumpStream { bytes, rows })
    }

    async fn pg_dump_section(&self, section: &str) -> Result<String> {
        let mut args: Vec<String> = vec![
            "--schema-only".into(),
            format!("--section={section}"),
            format!("--snapshot={}", self.snapshot_id),
            "--no-password".into(),
            // Large objects are dbbackup's own data objects; whatever a pg_dump version would put
            // in a schema-only dump about them (PostgreSQL 17+ puts their metadata there) must
            // stay out.
            "--no-blobs".into(),
            // The scripts in UTF-8 whatever the database's encoding: dbbackup reads them as
            // UTF-8 text, and a LATIN1 database's `café` in LATIN1 bytes is not.
            "--encoding=UTF8".into(),
        ];
        if !self.keep_owners {
            args.push("--no-owner".into());
        }
        conn::run_pg_tool(&self.url, &self.limits, "pg_dump", &args, self.temp_dir.as_deref()).await
    }

    /// `SELECT setval(...)` for every sequence, so restored sequences continue where they were
    /// (pg_dump puts these in its data section, which `--schema-only` leaves out).
    async fn sequence_values(&self) -> Result<String> {
        let rows = self
            .leader
            .query(
                "SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
                 WHERE c.relkind = 'S' AND n.nspname NOT IN ('pg_catalog', 'information_schema') \
                 AND n.nspname NOT LIKE 'pg_toast%' AND n.nspname NOT LIKE 'pg_temp%' \
                 AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass \
                   AND d.objid = c.oid AND d.deptype = 'e') ORDER BY 1, 2",
                &[],
            )
            .await
            .map_err(pg_err("list sequences"))?;
        let mut out = String::new();
        for r in rows {
            let (s, n): (String, String) = (r.get(0), r.get(1));
            let q = format!("{}.{}", quote_ident(&s), quote_ident(&n));
            let v = self
                .leader
                .query_one(&format!("SELECT last_value::text, is_called FROM {q}"), &[])
                .await
                .map_err(pg_err(format!("read sequence {q}")))?;
            let (last, called): (String, bool) = (v.get(0), v.get(1));
            out.push_str(&format!("SELECT pg_catalog.setval({}, {last}, {called});\n", quote_literal(&q)));
        }
        Ok(out)
    }
}

#[async_trait]
impl Snapshot for PgSnapshot {
    fn info(&self) -> SnapshotInfo {
        let mut info = self.info.clone();
        info.notes.extend(
            self.schema_notes.lock().unwrap_or_else(std::sync::PoisonError::into_inner).iter().cloned(),
        );
        if let Some(p) = self.large_objects.property() {
            info.properties.insert(large_object::PROPERTY.into(), p);
        }
        info
    }

    fn schema_beside_data(&self) -> bool {
        // The schema is pg_dump's (its own connections) and catalog reads on the leader: no
        // worker of the pool waits for it.
        true
    }

    async fn schema(&self) -> Result<SchemaScripts> {
        crate::failpoint::delay("pg-schema").await;
        // Materialized view contents are pg_dump's data section: refresh them after the data,
        // in creation order (dependencies between matviews follow it in practice).
        let matviews = async {
            self.leader
                .query(
                    "SELECT format('%I.%I', schemaname, matviewname) FROM pg_matviews m \
                     JOIN pg_class c ON c.relname = m.matviewname \
                     JOIN pg_namespace n ON n.oid = c.relnamespace AND n.nspname = m.schemaname \
                     WHERE m.ispopulated ORDER BY c.oid",
                    &[],
                )
                .await
                .map_err(pg_err("list materialized views"))
        };
        // The two pg_dump runs and the leader's catalog reads side by side.
        let (pre_data, mut post_data, reordered, seq, mv) = futures::future::try_join5(
            self.pg_dump_section("pre-data"),
            self.pg_dump_section("post-data"),
            column_order::find(&self.leader),
            self.sequence_values(),
            matviews,
        )
        .await?;
        let (pre_data, left) = column_order::rewrite(&pre_data, &reordered);
        if !left.is_empty() {
            self.schema_notes.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(format!(
                "inheritance children whose column order a restore does not keep (columns inherited only, added \
                 to a parent after the child was attached): {}",
                left.join(", ")
            ));
        }
        let mut extra = String::new();
        if !mv.is_empty() {
            extra.push_str("\n-- dbbackup: materialized view contents\n");
            extra.push_str("SELECT pg_catalog.set_config('search_path', '', false);\n");
            for r in mv {
                extra.push_str(&format!("REFRESH MATERIALIZED VIEW {};\n", r.get::<_, String>(0)));
            }
        }
        if !seq.is_empty() {
            extra.push_str("\n-- dbbackup: sequence values as of the snapshot\n");
            extra.push_str("SELECT pg_catalog.set_config('search_path', '', false);\n");
            extra.push_str(&seq);
        }
        // Before the event triggers, which pg_dump writes last so that none fires while the
        // database is rebuilt (an event trigger on REFRESH MATERIALIZED VIEW would otherwise
        // run during the restore, e.g. write to a table whose contents were already checked).
        let at = post_data.find("\nCREATE EVENT TRIGGER ").map_or(post_data.len(), |i| i + 1);
        post_data.insert_str(at, &extra);
        Ok(SchemaScripts { pre_data, post_data })
    }

    async fn plan(&self) -> Result<DumpPlan> {
        let rows = self
            .leader
            .query(
                "SELECT c.oid::bigint, n.nspname, c.relname, \
                 (pg_relation_size(c.oid) / current_setting('block_size')::bigint)::bigint, \
                 pg_table_size(c.oid)::bigint, \
                 ARRAY(SELECT a.attname::text FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attnum > 0 \
                       AND NOT a.attisdropped AND a.attgenerated = '' ORDER BY a.attnum) \
                 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
                 WHERE c.relkind = 'r' AND n.nspname NOT IN ('pg_catalog', 'information_schema') \
                 AND n.nspname NOT LIKE 'pg_toast%' AND n.nspname NOT LIKE 'pg_temp%' \
                 AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass \
                   AND d.objid = c.oid AND d.deptype = 'e') \
                 ORDER BY n.nspname, c.relname",
                &[],
            )
            .await
            .map_err(pg_err("list tables"))?;
        // Like pg_dump: ACCESS SHARE locks on every dumped table, held by the leader's snapshot
        // transaction until the end, so a concurrent DROP or ALTER TABLE waits for the backup
        // instead of breaking it (ordinary reads and writes are not blocked).
        let names: Vec<String> = rows
            .iter()
            .map(|r| {
                format!("{}.{}", quote_ident(&r.get::<_, String>(1)), quote_ident(&r.get::<_, String>(2)))
            })
            .collect();
        for batch in names.chunks(500) {
            self.leader
                .batch_execute(&format!("LOCK TABLE {} IN ACCESS SHARE MODE", batch.join(", ")))
                .await
                .map_err(pg_err("lock the tables to dump (ACCESS SHARE)"))?;
        }
        let mut plan = DumpPlan::default();
        self.plan_large_objects(&mut plan).await?;
        let large_objects = std::mem::take(&mut plan.chunks);
        let sizes: Vec<(u64, u64)> = rows
            .iter()
            .map(|r| {
                let pages = u64::try_from(r.get::<_, i64>(3)).unwrap_or(0);
                (u64::try_from(r.get::<_, i64>(4)).unwrap_or(0), pages)
            })
            .collect();
        let others: Vec<u64> = large_objects.iter().filter_map(|c| c.size_hint).collect();
        let counts = chunk_counts(&sizes, &others, self.chunk_bytes, self.jobs);
        for (i, r) in rows.iter().enumerate() {
            let schema: String = r.get(1);
            let name: String = r.get(2);
            let (size, pages) = sizes[i];
            let columns: Vec<String> = r.get(5);
            let mut properties = BTreeMap::new();
            properties.insert("columns".into(), serde_json::json!(columns));
            plan.tables.push(TableEntry {
                key: layout::table_key(i, Some(&schema), &name),
                schema: Some(schema),
                name,
                rows: 0,
                checksum: None,
                checksum_algo: None,
                properties,
            });
            let n = counts[i];
            let per = pages.div_ceil(n).max(1);
            for k in 0..n {
                let from = k * per;
                let to = if k + 1 == n { None } else { Some((k + 1) * per) };
                plan.chunks.push(ChunkPlan {
                    table: Some(i),
                    group: None,
                    chunk: u32::try_from(k).unwrap_or(u32::MAX),
                    kind: ObjectKind::Data,
                    format: FORMAT.into(),
                    ext: "copy".into(),
                    size_hint: Some(size / n),
                    offset: None,
                    spec: if n == 1 { ChunkSpec::Whole } else { ChunkSpec::Pages { from, to } },
                });
            }
        }
        plan.chunks.extend(large_objects);
        self.start_counts(&plan.tables);
        plan.chunks.sort_by_key(|c| std::cmp::Reverse(c.size_hint.unwrap_or(0)));
        self.sums.expect(
            plan.chunks
                .iter()
                .filter_map(|c| c.table.and_then(|i| plan.tables.get(i)).map(|t| t.key.as_str())),
        );
        Ok(plan)
    }

    async fn dump(&self, plan: &DumpPlan, chunk: &ChunkPlan) -> Result<DumpStream> {
        if chunk.format == large_object::FORMAT {
            return self.dump_large_objects(chunk).await;
        }
        let t = chunk
            .table
            .and_then(|i| plan.tables.get(i))
            .ok_or_else(|| Error::InvalidInput("postgres chunk without a table".into()))?;
        let cols = column_list(t).unwrap_or_default();
        let (from, to) = match chunk.spec {
            ChunkSpec::Pages { from, to } => (Some(from), to),
            _ => (None, None),
        };
        let sql = match from {
            None if cols.is_empty() => format!("COPY {} TO STDOUT", qualified(t)),
            None => format!("COPY {} ({cols}) TO STDOUT", qualified(t)),
            Some(f) => {
                let mut cond = format!("ctid >= '({f},0)'::tid");
                if let Some(to) = to {
                    cond.push_str(&format!(" AND ctid < '({to},0)'::tid"));
                }
                format!("COPY (SELECT {cols} FROM ONLY {} WHERE {cond}) TO STDOUT", qualified(t))
            }
        };
        let what = format!("dump {} chunk {}", t.display_name(), chunk.chunk);
        crate::failpoint::delay("pg-chunk").await;
        let guard = self.pool.get().await?;
        let out = guard.copy_out(sql.as_str()).await.map_err(pg_err(what.clone()))?;
        let rows = Arc::new(AtomicU64::new(0));
        let counter = rows.clone();
        let sums = self.sums.clone();
        let key = t.key.clone();
        // COPY sends one message per row: rows are hashed as they pass and gathered into
        // batches of about BATCH bytes, so the codec, digests and channels downstream see few
        // large buffers instead of millions of small ones. A chunk's sum counts once its stream
        // ended cleanly. The worker goes back to the pool when the stream ends or is dropped.
        // The batches' buffers are kept by the stream (`codec::buffers`), each with room for the
        // row that crosses BATCH, and come back as the codec drops the batches.
        const BATCH: usize = 256 << 10;
        let kept = Buffers::new(BATCH + (64 << 10), CHANNEL_DEPTH * 2);
        let state = (Box::pin(out), LineSum::new(RowHash::Xxh3), Some(guard), kept.take());
        let bytes = futures::stream::unfold(state, move |(mut out, mut sum, guard, mut buf)| {
            let (what, counter, sums, key) = (what.clone(), counter.clone(), sums.clone(), key.clone());
            let kept = kept.clone();
            async move {
                let guard = guard?;
                loop {
                    match out.next().await {
                        Some(Ok(b)) => {
                            sum.feed(&b);
                            buf.extend_from_slice(&b);
                            if buf.len() >= BATCH {
                                counter.store(sum.rows(), Ordering::Relaxed);
                                let batch = kept.send(std::mem::replace(&mut buf, kept.take()));
                                return Some((Ok(batch), (out, sum, Some(guard), buf)));
                            }
                        }
                        Some(Err(e)) => return Some((Err(pg_err(what)(e)), (out, sum, None, buf))),
                        None => {
                            counter.store(sum.rows(), Ordering::Relaxed);
                            let rest = kept.send(std::mem::take(&mut buf));
                            return match std::mem::take(&mut sum).finish() {
                                Ok(s) => {
                                    sums.chunk_done(&key, s);
                                    drop(guard);
                                    (!rest.is_empty()).then_some((Ok(rest), (out, sum, None, buf)))
                                }
                                Err(e) => Some((Err(e.context(what)), (out, sum, None, buf))),
                            };
                        }
                    }
                }
            }
        })
        .boxed();
        Ok(DumpStream { bytes, rows })
    }

    /// The checksum comes from the lines as they were dumped (no second scan), the row count
    /// from the snapshot, so a chunking mistake shows as a mismatch.
    async fn table_stats(&self, table: &TableEntry) -> Result<TableStats> {
        let sum = self.sums.wait(&table.key).await?;
        Ok(TableStats {
            rows: self.rows_counted(table).await?,
            checksum: Some(sum.checksum()),
            checksum_algo: Some(CHECKSUM_ALGO.into()),
            ..Default::default()
        })
    }

    async fn close(self: Box<Self>) -> Result<()> {
        self.stop_counts();
        let _ = self.leader.batch_execute("COMMIT").await;
        Ok(())
    }
}

impl PgSnapshot {
    /// Starts counting the rows of every table of the plan on the counting connection (once:
    /// a second plan counts on the workers, see [`Self::rows_counted`]).
    fn start_counts(&self, tables: &[TableEntry]) {
        let Ok(mut slot) = self.counting.lock() else { return };
        if slot.is_some() {
            return;
        }
        let tables = tables.iter().map(|t| (t.key.clone(), t.display_name(), qualified(t))).collect();
        let (counter, counts) = (self.counter.clone(), self.counts.clone());
        *slot = Some(tokio::spawn(async move { count_rows(&counter, tables, &counts).await }).abort_handle());
    }

    /// Stops the counting (a failed dump never asks for the counts).
    fn stop_counts(&self) {
        if let Some(task) = self.counting.lock().ok().and_then(|mut t| t.take()) {
            task.abort();
        }
    }

    /// The row count of `table` in the snapshot: from the counting connection, or counted now
    /// on a worker when the counting did not cover it.
    async fn rows_counted(&self, table: &TableEntry) -> Result<u64> {
        let mut seen = self.counts.subscribe();
        loop {
            {
                let c = seen.borrow_and_update();
                if let Some(&n) = c.rows.get(&table.key) {
                    return Ok(n);
                }
                if c.ended || (c.failed.is_none() && self.counting.lock().map_or(true, |t| t.is_none())) {
                    break;
                }
            }
            if seen.changed().await.is_err() {
                break;
            }
        }
        let mut failed = None;
        self.counts.send_if_modified(|c| {
            failed = c.failed.take();
            failed.is_some()
        });
        if let Some(e) = failed {
            return Err(e);
        }
        let guard = self.pool.get().await?;
        let row = guard
            .query_one(&format!("SELECT count(*) FROM ONLY {}", qualified(table)), &[])
            .await
            .map_err(pg_err(format!("count rows of {}", table.display_name())))?;
        Ok(u64::try_from(row.get::<_, i64>(0)).unwrap_or(0))
    }
}

impl Drop for PgSnapshot {
    fn drop(&mut self) {
        self.stop_counts();
    }
}

#[cfg(test)]
mod tests {
    use super::chunk_counts;

    const MIB: u64 = 1 << 20;

    /// (bytes, pages) of a table of `mib` MiB.
    fn table(mib: u64) -> (u64, u64) {
        (mib * MIB, mib * 128)
    }

    #[test]
    fn tables_two_workers_share_out_whole_are_not_split() {
        // The bench database's tables (pg_table_size): one worker gets webhook_logs and
        // failed_jobs (476 MiB), the other the rest (538 MiB), within 10% of 507 MiB.
        let tables = [table(9), table(109), table(309), table(120), table(467)];
        assert_eq!(chunk_counts(&tables, &[], 64 * MIB, 2), [1, 1, 1, 1, 1]);
        // One worker: nothing to share out.
        assert_eq!(chunk_counts(&tables, &[], 64 * MIB, 1), [1, 1, 1, 1, 1]);
    }

    #[test]
    fn a_table_bigger_than_a_workers_share_is_split() {
        // 600 of 730 MiB in one table: whole, one worker would get 600 MiB of a 365 MiB share.
        let tables = [table(600), table(100), table(30)];
        assert_eq!(chunk_counts(&tables, &[], 64 * MIB, 2), [10, 1, 1]);
        // Four workers and two big tables: splitting the biggest is not enough.
        let tables = [table(300), table(280), table(20)];
        assert_eq!(chunk_counts(&tables, &[], 64 * MIB, 4), [5, 5, 1]);
        // Tables no bigger than a chunk are never split, even when that leaves a worker idle.
        let tables = [table(60), table(10)];
        assert_eq!(chunk_counts(&tables, &[], 64 * MIB, 2), [1, 1]);
    }

    #[test]
    fn equal_tables_fewer_than_twice_the_workers_are_split() {
        // Ten tables of 100 MiB on eight workers: whole, two workers take a second table (200
        // MiB against a 125 MiB share); splitting the biggest ones one by one evens it out.
        let tables = vec![table(100); 10];
        let counts = chunk_counts(&tables, &[], 64 * MIB, 8);
        assert!(counts.iter().filter(|&&n| n > 1).count() >= 2, "{counts:?}");
        // Large-object chunks count in the shares: 2 x 350 MiB of them beside a 500 MiB table (one
        // worker would get 700 MiB of a 600 MiB share); 2 x 250 MiB leave it whole.
        assert_eq!(chunk_counts(&[table(500)], &[350 * MIB, 350 * MIB], 64 * MIB, 2), [8]);
        assert_eq!(chunk_counts(&[table(500)], &[250 * MIB, 250 * MIB], 64 * MIB, 2), [1]);
    }
}
