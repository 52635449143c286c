//! The dump side's snapshot: every worker connection starts `START TRANSACTION WITH CONSISTENT
//! SNAPSHOT` while `FLUSH TABLES WITH READ LOCK` holds writers for an instant (or one worker
//! without the lock), so all of them read one instant; the binlog position of that instant; the
//! tables listed once and pinned in every snapshot transaction, under the database's swap lock
//! until the schema is read (no restore changes the database meanwhile: [`open_control`],
//! [`pin_tables`]). [`MysqlSnapshot`] hands out the schema ([`super::schema`]), the chunk
//! plan and chunk streams ([`super::dump`]) and the table stats ([`super::checksum`]). With
//! content checksums on, one more worker joins the snapshot for the stats: the tables'
//! `COUNT(*)` and `CHECKSUM TABLE` (server-side scans, [`super::stats`]) run on it from the
//! moment the plan is made, in the order the dump reaches the tables, beside the dump rather
//! than each after its table's last chunk, and the dump workers take the ones left once every
//! chunk has its worker.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use mysql_async::Conn;
use mysql_async::prelude::Queryable;
use tokio::sync::{mpsc, watch};

use super::conn::{Server, exec, is_server_error, qi, qs, query_text, query_value};
use super::stats::{StatsRun, StatsTable};
use super::table::{TableInfo, TableProps, list_tables};
use super::{checksum, dump, schema, swap};
use crate::codec::compress::ChannelStream;
use crate::error::{Error, Result};
use crate::failpoint;
use crate::format::manifest::TableEntry;
use crate::model::{DatabaseUrl, Engine};
use crate::progress::Context;
use crate::source::pool::Pool;
use crate::source::rowsum::ChunkSums;
use crate::source::{
    ChunkPlan, DumpOptions, DumpPlan, DumpStream, SchemaScripts, Snapshot, SnapshotInfo, Source, TableStats,
};

/// The dump side.
pub(crate) struct MysqlSource {
    server: Server,
}

impl MysqlSource {
    pub(crate) fn new(url: &DatabaseUrl) -> Result<Self> {
        Ok(MysqlSource { server: Server::new(url)? })
    }
}

struct MysqlSnapshot {
    db: String,
    /// The control connection, holding the database's swap lock until the schema is read
    /// ([`Snapshot::schema`]; see [`open_control`]).
    swap_locked: tokio::sync::Mutex<Option<Conn>>,
    pool: Pool<Conn>,
    /// The snapshot's worker of its own for the table stats, if it has one.
    stats_pool: Option<Pool<Conn>>,
    /// Start the table stats with the plan (content checksums are on).
    eager_stats: bool,
    /// The stats started by [`Snapshot::plan`]; stopped when the snapshot goes.
    stats: Mutex<Option<Arc<StatsRun>>>,
    /// Chunks in the plan, and how many have had a dump worker so far; `all_handed` opens when
    /// they are equal (the dump workers may then take table stats).
    chunks: AtomicUsize,
    handed: AtomicUsize,
    all_handed: watch::Sender<bool>,
    info: SnapshotInfo,
    tables: Vec<TableInfo>,
    chunk_bytes: u64,
    no_definer: bool,
    /// Client-side checksums of the chunks dumped so far, per table name.
    sums: Arc<ChunkSums>,
}

#[async_trait]
impl Source for MysqlSource {
    fn engine(&self) -> Engine {
        Engine::Mysql
    }

    async fn snapshot(&self, opts: &DumpOptions, ctx: &Context) -> Result<Box<dyn Snapshot>> {
        let db = self.server.database();
        let jobs = opts.jobs.max(1);
        let server = self.server.with_limits(&opts.engine_options)?;
        let (mut control, mut info) = open_control(&server, &db).await?;
        let mariadb = info.server_version.to_ascii_lowercase().contains("mariadb");
        let locked = jobs > 1 && global_read_lock(&mut control, &server, jobs, &mut info).await;
        ctx.check("MySQL snapshot")?;
        // Under the lock, one more worker for the table stats (see the module docs).
        let stats_worker = locked && opts.checksums;
        let n = if locked { jobs + usize::from(stats_worker) } else { 1 };
        let start = [
            "SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ".to_string(),
            "START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY".to_string(),
        ];
        let workers = futures::future::join_all((0..n).map(|_| server.connect(&start))).await;
        let mut conns = Vec::with_capacity(n);
        let mut failed = None;
        for w in workers {
            match w {
                Ok(c) => conns.push(c),
                Err(e) => failed = Some(e),
            }
        }
        if locked {
            locked_position(&mut control, mariadb, &mut info).await?;
        } else {
            info.position.insert("method".into(), "single-consistent-snapshot".into());
        }
        if let Some(e) = failed {
            return Err(e.context("start snapshot transactions"));
        }
        if !locked
            && mariadb
            && let Some(c) = conns.first_mut()
        {
            snapshot_binlog_position(c, &mut info).await;
        }
        // Still under the swap lock: the table list, then every table pinned by a metadata
        // lock in every snapshot transaction (see `pin_tables`).
        let first = conns.first_mut().ok_or_else(|| Error::Cancelled("MySQL snapshot: no worker".into()))?;
        database_properties(first, &db, mariadb, &mut info).await?;
        let tables = list_tables(first, &db).await?;
        let pinned = futures::future::join_all(conns.iter_mut().map(|c| pin_tables(c, &db, &tables))).await;
        pinned.into_iter().collect::<Result<Vec<()>>>()?;
        let stats_conn = if stats_worker && conns.len() > 1 { conns.pop() } else { None };
        info.position.insert("workers".into(), conns.len().to_string());
        let pool = Pool::new(conns);
        let stats_pool = stats_conn.map(|c| Pool::new(vec![c]));
        Ok(Box::new(MysqlSnapshot {
            swap_locked: tokio::sync::Mutex::new(Some(control)),
            db,
            pool,
            stats_pool,
            eager_stats: opts.checksums,
            stats: Mutex::default(),
            chunks: AtomicUsize::new(0),
            handed: AtomicUsize::new(0),
            all_handed: watch::Sender::new(false),
            info,
            tables,
            chunk_bytes: opts.chunk_bytes.max(1 << 20),
            no_definer: opts.engine_options.mysql.no_definer,
            sums: Default::default(),
        }))
    }
}

/// The control connection, holding the database's swap lock ([`swap::lock_swap`], waited for at
/// most the lock timeout), after finishing or undoing a restore into `db` that was killed
/// midway, so that a backup never reads what a killed run left half-swapped (what it did goes
/// into the backup's notes, which a restore's undo copy reports), and the database found. A
/// restore still running (its restore lock taken) is left alone: while the backup holds the
/// swap lock, that restore cannot be changing the live database (it takes the swap lock for
/// that), and the lock is held until every table is pinned in the snapshot's transactions and
/// the schema and objects are read (docs/mysql.md, "Backups and restores of one database").
/// The restore lock held while killed runs' leftovers show the live database mid-swap is a
/// restore dying (or failing): the backup waits for it, then recovers.
async fn open_control(server: &Server, db: &str) -> Result<(Conn, SnapshotInfo)> {
    let mut control = server.connect(&[]).await?;
    let version = query_value(&mut control, "SELECT VERSION()").await?.unwrap_or_default();
    let (wait, waiting) = (server.limits().lock, "backup (or a restore's undo copy): not started");
    swap::lock_swap(&mut control, db, wait, waiting).await?;
    let mut locked = swap::try_lock(&mut control, db).await?;
    if !locked && swap::left_mid_swap(&mut control, db).await? {
        // The server frees a killed restore's locks one after the other, so its restore lock can
        // still look held here. Waited for holding no lock of the target, then both taken in the
        // restore's order (restore lock, swap lock): a restore holding its restore lock may be
        // waiting for the swap lock (to recover at its start), and holding the swap lock while
        // waiting for it would deadlock with that restore (MariaDB fails the later waiter).
        swap::unlock_swap(&mut control, db).await;
        swap::wait_lock(&mut control, db, wait, waiting).await?;
        if let Err(e) = swap::lock_swap(&mut control, db, wait, waiting).await {
            swap::unlock(&mut control, db).await;
            return Err(e);
        }
        locked = true;
    }
    let mut recovered = Vec::new();
    if locked {
        let r = swap::recover(&mut control, db).await;
        swap::unlock(&mut control, db).await;
        recovered = r.map_err(|e| {
            e.context(format!("finish an interrupted restore into {db} before backing it up"))
        })?;
    }
    let exists = query_text(
        &mut control,
        &format!("SELECT SCHEMA_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = {}", qs(db)),
    )
    .await?;
    if exists.is_empty() {
        return Err(Error::MissingDatabase(format!("MySQL database {db:?}")));
    }
    let info = SnapshotInfo {
        server_version: version,
        database: db.to_string(),
        notes: recovered,
        ..Default::default()
    };
    Ok((control, info))
}

/// Pins every listed table in `c`'s snapshot transaction: a `SELECT .. LIMIT 0` reading none of
/// its rows still takes the table's shared metadata lock, held until the transaction ends. A
/// `RENAME TABLE`, `DROP` or `ALTER` of a pinned table (a restore's swap) then waits for the
/// backup to end instead of changing, under the snapshot, which table a name reads (the
/// snapshot's MVCC does not cover that: docs/mysql.md). Every connection that reads tables pins
/// them itself: one waiting for a table's lock behind a pending `RENAME` would wait for its own
/// snapshot to end. In statements of up to 64 tables.
async fn pin_tables(c: &mut Conn, db: &str, tables: &[TableInfo]) -> Result<()> {
    for part in tables.chunks(64) {
        let sql: Vec<String> =
            part.iter().map(|t| format!("(SELECT 1 FROM {}.{} LIMIT 0)", qi(db), qi(&t.name))).collect();
        exec(c, &sql.join(" UNION ALL "))
            .await
            .map_err(|e| e.context("pin the tables in the snapshot (metadata locks)"))?;
    }
    Ok(())
}

/// Releases the swap lock (the schema is read, the tables are pinned).
async fn release_swap_lock(db: &str, held: &tokio::sync::Mutex<Option<Conn>>) {
    if let Some(mut c) = held.lock().await.take() {
        swap::unlock_swap(&mut c, db).await;
        let _ = c.disconnect().await;
    }
}

/// `FLUSH TABLES WITH READ LOCK` on the control connection; not granted, the dump goes through
/// one consistent connection (said in the notes).
async fn global_read_lock(control: &mut Conn, server: &Server, jobs: usize, info: &mut SnapshotInfo) -> bool {
    // The control session's lock_wait_timeout bounds this: while FTWRL waits for a long
    // query to finish, every write on the server waits behind it.
    match control.query_drop("FLUSH TABLES WITH READ LOCK").await {
        Ok(()) => true,
        Err(e) if is_server_error(&e, &[1205]) => {
            let waited = server.limits().lock.map(crate::source::limits::show).unwrap_or_default();
            info.notes.push(format!(
                "the global read lock (FLUSH TABLES WITH READ LOCK) was not granted within the lock \
                 timeout of {waited} (a long query or transaction was running; writers were held no \
                 longer): dumped through one consistent connection instead of {jobs}"
            ));
            false
        }
        Err(e) => {
            info.notes.push(format!(
                "no global read lock ({e}): dumped through one consistent connection instead of {jobs}"
            ));
            false
        }
    }
}

/// Under the global read lock (every worker has started its snapshot): the binlog file,
/// position and GTID of the instant; then the lock is released.
async fn locked_position(control: &mut Conn, mariadb: bool, info: &mut SnapshotInfo) -> Result<()> {
    if let Ok(rows) = query_text(control, "SHOW MASTER STATUS").await
        && let Some(r) = rows.into_iter().next()
    {
        if let Some(Some(f)) = r.first() {
            info.position.insert("binlog_file".into(), f.clone());
        }
        if let Some(Some(p)) = r.get(1) {
            info.position.insert("binlog_pos".into(), p.clone());
        }
    }
    let gtid_sql = if mariadb { "SELECT @@GLOBAL.gtid_binlog_pos" } else { "SELECT @@GLOBAL.gtid_executed" };
    if let Ok(Some(g)) = query_value(control, gtid_sql).await {
        info.position.insert("gtid".into(), g);
    }
    exec(control, "UNLOCK TABLES").await?;
    info.position.insert("method".into(), "ftwrl+consistent-snapshot".into());
    Ok(())
}

/// MariaDB without the global lock: the binlog position of the one worker's snapshot.
async fn snapshot_binlog_position(c: &mut Conn, info: &mut SnapshotInfo) {
    let Ok(rows) = query_text(c, "SHOW STATUS LIKE 'binlog_snapshot_%'").await else { return };
    for r in rows {
        if let (Some(Some(k)), Some(Some(v))) = (r.first(), r.get(1)) {
            let key = if k.ends_with("file") { "binlog_file" } else { "binlog_pos" };
            if !v.is_empty() {
                info.position.insert(key.into(), v.clone());
            }
        }
    }
}

/// The database's character set, collation and (MariaDB) comment, as manifest properties.
async fn database_properties(c: &mut Conn, db: &str, mariadb: bool, info: &mut SnapshotInfo) -> Result<()> {
    let props = query_text(
        c,
        &format!(
            "SELECT DEFAULT_CHARACTER_SET_NAME, DEFAULT_COLLATION_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = {}",
            qs(db)
        ),
    )
    .await?;
    if let Some(r) = props.into_iter().next() {
        if let Some(Some(cs)) = r.first() {
            info.properties.insert("charset".into(), cs.clone().into());
        }
        if let Some(Some(co)) = r.get(1) {
            info.properties.insert("collation".into(), co.clone().into());
        }
    }
    if mariadb
        && let Ok(Some(comment)) = query_value(
            c,
            &format!("SELECT SCHEMA_COMMENT FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = {}", qs(db)),
        )
        .await
        && !comment.is_empty()
    {
        info.properties.insert("comment".into(), comment.into());
    }
    Ok(())
}

#[async_trait]
impl Snapshot for MysqlSnapshot {
    fn info(&self) -> SnapshotInfo {
        self.info.clone()
    }

    /// The schema and objects, read under the swap lock, which is released then.
    async fn schema(&self) -> Result<SchemaScripts> {
        let mut lease = self.pool.get().await?;
        let scripts = schema::scripts(&mut lease, &self.db, &self.tables, self.no_definer).await?;
        failpoint::hit("mysql-snapshot-schema-read");
        release_swap_lock(&self.db, &self.swap_locked).await;
        Ok(scripts)
    }

    async fn plan(&self) -> Result<DumpPlan> {
        let mut lease = self.pool.get().await?;
        let plan = dump::plan(&mut lease, &self.db, &self.tables, self.chunk_bytes).await?;
        self.sums.expect(
            plan.chunks
                .iter()
                .filter_map(|c| c.table.and_then(|i| plan.tables.get(i)).map(|t| t.name.as_str())),
        );
        self.chunks.store(plan.chunks.len(), Ordering::SeqCst);
        self.handed.store(0, Ordering::SeqCst);
        self.all_handed.send_replace(plan.chunks.is_empty());
        if self.eager_stats {
            self.start_stats(&plan);
        }
        Ok(plan)
    }

    async fn dump(&self, plan: &DumpPlan, chunk: &ChunkPlan) -> Result<DumpStream> {
        let t = chunk
            .table
            .and_then(|i| plan.tables.get(i))
            .ok_or_else(|| Error::InvalidInput("MySQL dump of a chunk without a table".into()))?;
        let props = TableProps::from_entry(t)?;
        let info = self.tables.iter().find(|x| x.name == t.name);
        let sql = dump::chunk_sql(&self.db, t, &props, info, chunk.spec);
        let lease = self.pool.get().await?;
        if self.handed.fetch_add(1, Ordering::SeqCst) + 1 >= self.chunks.load(Ordering::SeqCst) {
            self.all_handed.send_replace(true);
        }
        let rows = Arc::new(AtomicU64::new(0));
        let counter = rows.clone();
        let (tx, rx) = mpsc::channel::<Result<Bytes>>(4);
        let what = format!("dump {}", t.name);
        let table = t.name.clone();
        let sums = self.sums.clone();
        tokio::spawn(async move {
            let mut lease = lease;
            match dump::stream_rows(&mut lease, &sql, &tx, &counter).await {
                Ok(Some(sum)) => sums.chunk_done(&table, sum),
                Ok(None) => {}
                Err(e) => {
                    let _ = tx.send(Err(e.context(what))).await;
                }
            }
        });
        Ok(DumpStream { bytes: ChannelStream::new(rx).boxed(), rows })
    }

    /// See [`checksum::snapshot_stats`]: the stats [`Snapshot::plan`] started, else computed now
    /// (once the table is dumped).
    async fn table_stats(&self, table: &TableEntry) -> Result<TableStats> {
        TableProps::from_entry(table)?;
        let started = self.stats.lock().ok().and_then(|r| r.clone());
        if let Some(run) = started
            && let Some(i) = run.index_of(&table.name)
        {
            let (rows, value) = run.wait(i).await?;
            let sum = self.sums.wait(&table.name).await?;
            return Ok(checksum::snapshot_table_stats(sum, rows, value, &self.info.server_version));
        }
        let sum = self.sums.wait(&table.name).await?;
        let mut lease = match &self.stats_pool {
            Some(p) => p.get().await?,
            None => self.pool.get().await?,
        };
        checksum::snapshot_stats(&mut lease, &self.db, table, sum, &self.info.server_version).await
    }

    async fn close(self: Box<Self>) -> Result<()> {
        // The pools are closed before the stats are stopped: a stats statement stopped midway
        // then drops its connection instead of handing it back to be committed here. Its answer
        // is still to come on that connection: the COMMIT would wait for it (a whole table's
        // scan, or a lock wait), read it as its own, and only then let a failed backup report
        // its error.
        let mut conns = self.pool.take_all();
        conns.extend(self.stats_pool.iter().flat_map(Pool::take_all));
        failpoint::delay("mysql-snapshot-close").await;
        self.abort_stats();
        release_swap_lock(&self.db, &self.swap_locked).await;
        for mut c in conns {
            let _ = c.query_drop("COMMIT").await;
            let _ = c.disconnect().await;
        }
        Ok(())
    }
}

impl MysqlSnapshot {
    /// Starts the stats of the plan's tables ([`StatsRun`]), in the order the dump reaches them:
    /// on the stats worker at once, on the dump workers once every chunk has had one.
    fn start_stats(&self, plan: &DumpPlan) {
        self.abort_stats();
        let queued = plan
            .tables
            .iter()
            .enumerate()
            .map(|(i, t)| StatsTable {
                name: t.name.clone(),
                first_chunk: plan.chunks.iter().position(|c| c.table == Some(i)).unwrap_or(plan.chunks.len()),
                versioned: TableProps::from_entry(t).is_ok_and(|p| p.versioned),
            })
            .collect();
        let run = StatsRun::start(
            &self.db,
            queued,
            self.stats_pool.clone(),
            self.pool.clone(),
            self.all_handed.subscribe(),
        );
        if let Ok(mut s) = self.stats.lock() {
            *s = Some(run);
        }
    }

    /// Stops the stats still running or queued (a failed dump never finishes their tables).
    fn abort_stats(&self) {
        if let Ok(mut s) = self.stats.lock()
            && let Some(run) = s.take()
        {
            run.abort();
        }
    }
}

impl Drop for MysqlSnapshot {
    fn drop(&mut self) {
        self.abort_stats();
    }
}
