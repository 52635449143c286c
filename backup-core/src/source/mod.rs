//! Database engines behind one contract: [`Source`] (dump side) and [`Loader`] (restore side).
//!
//! Engines are private children of this module, never import each other or storage, and are
//! chosen in exactly one place ([`open_source`], [`open_loader`]) from a [`DatabaseUrl`].
//!
//! ## Contract
//! - [`Source::snapshot`] returns a [`Snapshot`]: everything read through it (schema, plan, every
//!   chunk, table stats) sees the database as of one instant, whatever writers do meanwhile.
//! - [`Snapshot::dump`] may be called concurrently for different chunks (up to `jobs`). Each
//!   returns a stream in the engine's bulk format; the stream must end with an error, never
//!   silently early, if the database fails midway.
//! - [`Loader::begin`] prepares a place to load into that is **not** the live database (a shadow
//!   database or temp file), except with `in_place`. Nothing becomes visible until
//!   [`LoadSession::commit`], which swaps atomically and puts the original back if the swap
//!   fails. [`LoadSession::abort`] discards the shadow and leaves the live database as it was.
//! - Table stats from a snapshot and from a load session use the same algorithm (named in
//!   `checksum_algo`), so a restore can prove it loaded what was dumped.

#[cfg(any(feature = "mysql", feature = "postgres"))]
pub(crate) mod limits;
#[cfg(feature = "mysql")]
pub(crate) mod mysql;
pub mod mysql_script;
pub mod pg_binary;
pub mod pg_script;
#[cfg(any(feature = "mysql", feature = "postgres"))]
pub(crate) mod pool;
#[cfg(feature = "postgres")]
pub(crate) mod postgres;
#[cfg(any(feature = "mysql", feature = "postgres"))]
pub(crate) mod rowsum;
pub(crate) mod script;
#[cfg(any(feature = "mysql", feature = "postgres"))]
pub(crate) mod shadow_name;
pub(crate) mod sqlite;
pub(crate) mod table_filter;
/// The SQLite script splitter under the path its fuzz target uses.
pub use self::sqlite::script as sqlite_script;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use async_trait::async_trait;

use crate::codec::ByteStream;
use crate::engine_options::EngineOptions;
use crate::error::{Error, Result};
use crate::format::manifest::{Manifest, ObjectEntry, ObjectKind, TableEntry};
use crate::model::{DatabaseUrl, Engine};
use crate::progress::Context;

/// How a source dumps.
#[derive(Debug, Clone)]
pub struct DumpOptions {
    /// Parallel connections / workers.
    pub jobs: usize,
    /// Target uncompressed size of one data chunk; big tables are split to about this size.
    pub chunk_bytes: u64,
    /// Compute per-table content checksums (costs one extra read of the data).
    pub checksums: bool,
    /// Where temporary files go (SQLite snapshot copy); system temp dir if `None`.
    pub temp_dir: Option<PathBuf>,
    /// Engine options (the engine reads its own part and the session time limits).
    pub engine_options: EngineOptions,
}

impl Default for DumpOptions {
    fn default() -> Self {
        DumpOptions {
            jobs: 2,
            chunk_bytes: 64 << 20,
            checksums: true,
            temp_dir: None,
            engine_options: EngineOptions::default(),
        }
    }
}

/// What a snapshot knows about itself, recorded in the manifest.
#[derive(Debug, Clone, Default)]
pub struct SnapshotInfo {
    /// Server or library version.
    pub server_version: String,
    /// Database name.
    pub database: String,
    /// Position (LSN, binlog file/pos, GTID, method).
    pub position: BTreeMap<String, String>,
    /// Fallbacks taken, warnings.
    pub notes: Vec<String>,
    /// Database-level properties to restore (charset, settings).
    pub properties: BTreeMap<String, serde_json::Value>,
}

/// Schema scripts, split so data loads before indexes and constraints.
#[derive(Debug, Clone, Default)]
pub struct SchemaScripts {
    /// Types, tables without secondary indexes.
    pub pre_data: String,
    /// Indexes, constraints, triggers, views, routines.
    pub post_data: String,
}

/// One unit of dump work.
#[derive(Debug, Clone)]
pub struct ChunkPlan {
    /// Index into the plan's tables (data chunks), or `None` (file chunks, large objects).
    pub table: Option<usize>,
    /// Key segment of a chunk with no table (`layout::LARGE_OBJECTS_GROUP`); `None` means
    /// `layout::FILE_GROUP`. Ignored for table chunks, which use the table's key.
    pub group: Option<&'static str>,
    /// Chunk number within its table or file.
    pub chunk: u32,
    /// What it holds.
    pub kind: ObjectKind,
    /// Bulk format name (`sqlite-db`, `pg-copy-text`, `mysql-tsv`).
    pub format: String,
    /// Short extension for the key (`db`, `copy`, `tsv`).
    pub ext: String,
    /// Expected raw size, if known.
    pub size_hint: Option<u64>,
    /// File offset (file chunks).
    pub offset: Option<u64>,
    /// What part of the table or file the chunk covers.
    pub spec: ChunkSpec,
}

/// What part of its table or file one chunk of a dump plan covers (the engine that planned it
/// reads it back when it dumps the chunk; never stored).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ChunkSpec {
    /// The whole table.
    #[default]
    Whole,
    /// SQLite: `len` bytes of the database file from `offset`.
    FileBytes {
        /// First byte.
        offset: u64,
        /// Number of bytes.
        len: u64,
    },
    /// PostgreSQL: the heap pages `from..to` of the table, by `ctid` (`to`: `None` to the end).
    Pages {
        /// First page.
        from: u64,
        /// Page after the last, `None` for the rest of the table.
        to: Option<u64>,
    },
    /// PostgreSQL: the large objects with OIDs `first_oid..=last_oid`, `count` of them in the
    /// snapshot the plan was made in.
    LargeObjects {
        /// Lowest OID.
        first_oid: u32,
        /// Highest OID.
        last_oid: u32,
        /// How many there are.
        count: u64,
    },
    /// MySQL/MariaDB: the rows with `lo <= pk < hi` on the one integer primary-key column
    /// (`None`: unbounded on that side).
    KeyRange {
        /// Lowest key, inclusive.
        lo: Option<i128>,
        /// Highest key, exclusive.
        hi: Option<i128>,
    },
}

/// Tables and chunks to dump.
#[derive(Debug, Clone, Default)]
pub struct DumpPlan {
    /// Tables (rows/checksum may be 0/None until stats are taken).
    pub tables: Vec<TableEntry>,
    /// Chunks, in a good order to schedule (largest first helps balance).
    pub chunks: Vec<ChunkPlan>,
}

/// A chunk's bytes plus a row counter the engine advances while streaming.
pub struct DumpStream {
    /// The bytes, in the chunk's bulk format.
    pub bytes: ByteStream,
    /// Rows streamed so far; final once `bytes` ended cleanly.
    pub rows: Arc<AtomicU64>,
}

/// Row count and content checksum of a table.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TableStats {
    /// Rows.
    pub rows: u64,
    /// Engine-defined content checksum.
    pub checksum: Option<String>,
    /// Algorithm name.
    pub checksum_algo: Option<String>,
    /// Engine-specific facts recorded in the table's manifest `properties` (dump side only),
    /// e.g. a faster checksum the same server can recompute on restore.
    pub extra: std::collections::BTreeMap<String, serde_json::Value>,
}

/// Opens consistent snapshots of one database.
#[async_trait]
pub trait Source: Send + Sync {
    /// The engine.
    fn engine(&self) -> Engine;
    /// Opens a consistent snapshot (see the module contract).
    async fn snapshot(&self, opts: &DumpOptions, ctx: &Context) -> Result<Box<dyn Snapshot>>;
}

/// A consistent view of a database being dumped.
#[async_trait]
pub trait Snapshot: Send + Sync {
    /// Version, position, notes, properties. Read again after every chunk has been dumped, so
    /// an engine may add facts it learned while dumping (PostgreSQL large-object totals).
    fn info(&self) -> SnapshotInfo;
    /// Schema scripts (bounded metadata).
    async fn schema(&self) -> Result<SchemaScripts>;
    /// Whether [`Self::schema`] may run while the chunks are dumped (it takes no connection the
    /// chunks need): the backup then plans first and writes the schema beside the data. Else the
    /// schema is written first, then the plan is taken.
    fn schema_beside_data(&self) -> bool {
        false
    }
    /// Tables and chunks.
    async fn plan(&self) -> Result<DumpPlan>;
    /// Streams one chunk.
    async fn dump(&self, plan: &DumpPlan, chunk: &ChunkPlan) -> Result<DumpStream>;
    /// Row count and checksum of one table as of the snapshot.
    async fn table_stats(&self, table: &TableEntry) -> Result<TableStats>;
    /// Entries for the manifest's `snapshot` map about the stored objects themselves, asked once
    /// every object is stored (SQLite: the page image digest over its file chunks).
    fn objects_stored(&self, objects: &[ObjectEntry]) -> Result<BTreeMap<String, String>> {
        let _ = objects;
        Ok(BTreeMap::new())
    }
    /// Releases the snapshot (ends transactions, removes temp files).
    async fn close(self: Box<Self>) -> Result<()>;
}

/// How a restore loads.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// Parallel loaders.
    pub jobs: usize,
    /// Drop and load into the live database (hosts without the privileges for a shadow).
    pub in_place: bool,
    /// Restore only these tables (names as in the manifest, `schema.name` or `name`).
    pub tables: Option<Vec<String>>,
    /// Engine options (the engine reads its own part and the session time limits).
    pub engine_options: EngineOptions,
}

/// What a commit did.
#[derive(Debug, Clone, Default)]
pub struct CommitReport {
    /// Where the previous data went, if kept.
    pub previous_kept_at: Option<String>,
    /// Notes for the operator.
    pub notes: Vec<String>,
    /// When the restored data became live, where the commit goes on after that with cleanup
    /// that a killed run's successor finishes (MySQL: dropping the replaced tables after the
    /// swap). `None`: live when the commit returns.
    pub live_at: Option<std::time::Instant>,
}

/// Restores backups into one database.
#[async_trait]
pub trait Loader: Send + Sync {
    /// The engine.
    fn engine(&self) -> Engine;
    /// Prepares a shadow to load `manifest` into (see the module contract).
    async fn begin(
        &self,
        manifest: &Manifest,
        opts: &LoadOptions,
        ctx: &Context,
    ) -> Result<Box<dyn LoadSession>>;

    /// Prepares a shadow to load a foreign plain dump script into (pg_dump / mysqldump output;
    /// see `LoadSession::script`). Same shadow + swap contract as [`Loader::begin`]; engines
    /// that cannot read their tool's scripts keep this default.
    async fn begin_script(&self, opts: &LoadOptions, ctx: &Context) -> Result<Box<dyn LoadSession>> {
        let _ = (opts, ctx);
        Err(Error::Unsupported(format!("{} cannot restore plain dump scripts", self.engine())))
    }

    /// Takes a cheap server-side copy of the database as it is now, to roll back to by a rename
    /// (`guard`; see `RollbackPoint`). `Ok(Err(reason))` when the engine or the moment does
    /// not allow one (another session connected, no such facility): the caller falls back to
    /// restoring its backup. Engines without a cheap clone keep this default.
    async fn rollback_point(&self) -> Result<std::result::Result<Box<dyn RollbackPoint>, String>> {
        Ok(Err(format!("{} has no cheap server-side clone", self.engine())))
    }
}

/// A server-side copy of a database kept as a rollback point ([`Loader::rollback_point`]).
/// Dropping it without [`RollbackPoint::discard`] leaves the copy behind, which the next
/// rollback point of the same database removes.
#[async_trait]
pub trait RollbackPoint: Send + Sync {
    /// What the copy is, for the operator (e.g. `PostgreSQL database x_dbbackup_guard_1a2b3c`).
    fn describe(&self) -> String;
    /// Puts the copy in place of the database, atomically (the live database is the copy, or
    /// unchanged on error), and removes what it replaced. Returns notes for the operator.
    async fn roll_back(self: Box<Self>) -> Result<Vec<String>>;
    /// Removes the copy (the guarded command succeeded).
    async fn discard(self: Box<Self>) -> Result<()>;
}

/// What loading a foreign plain dump script did.
#[derive(Debug, Clone, Default)]
pub struct ScriptReport {
    /// Statements executed.
    pub statements: u64,
    /// Tables that received rows (COPY blocks, INSERT targets).
    pub tables: usize,
    /// Rows loaded (COPY rows, inserted rows).
    pub rows: u64,
    /// Statements skipped on purpose (e.g. `\connect`, ownership), for the operator.
    pub notes: Vec<String>,
}

/// One restore in progress.
#[async_trait]
pub trait LoadSession: Send + Sync {
    /// Applies the pre-data script (verified, decompressed). Must consume the stream.
    async fn pre_data(&self, sql: ByteStream) -> Result<()>;
    /// Loads one data or file object (verified, decompressed); may run concurrently. Returns rows.
    async fn load(&self, object: &ObjectEntry, data: ByteStream) -> Result<u64>;
    /// Whether the chunks of one table must be loaded one after another, in manifest order,
    /// each table closed by [`LoadSession::table_loaded`] (tables still load concurrently,
    /// the biggest first). MySQL says yes (bulk-insert locks, one transaction per table in
    /// place), so does PostgreSQL's shadow (one transaction per table for `COPY ... FREEZE`).
    fn one_table_at_a_time(&self) -> bool {
        false
    }
    /// Every selected chunk of `table` has been loaded (called only when
    /// [`LoadSession::one_table_at_a_time`] says so, and only after a successful last chunk).
    async fn table_loaded(&self, table: &TableEntry) -> Result<()> {
        let _ = table;
        Ok(())
    }
    /// Whether a table can be read back ([`LoadSession::table_stats`]) as soon as its last chunk
    /// is loaded and [`LoadSession::table_loaded`] returned, while other tables still load and
    /// before post-data: its rows are final then and another connection sees them (MySQL's
    /// shadow: every chunk commits on its own; PostgreSQL's shadow: `table_loaded` commits the
    /// table's transaction). Only asked of sessions that load one table at a time.
    fn stats_after_table_load(&self) -> bool {
        false
    }
    /// Whether the session builds each table's secondary keys as soon as the table is loaded,
    /// on the connection that loaded it, while other tables still load (MySQL's shadow): the
    /// use-case then reads the post-data script (verified) before the data, hands it to
    /// [`LoadSession::plan_keys`], calls [`LoadSession::table_keys`] after each table's last
    /// chunk, and gives [`LoadSession::post_data`] the same text, whose statements already run
    /// the session leaves out.
    fn keys_per_table(&self) -> bool {
        false
    }
    /// The post-data script (verified, whole), before any data loads; see
    /// [`LoadSession::keys_per_table`].
    async fn plan_keys(&self, post_data: &str) -> Result<()> {
        let _ = post_data;
        Ok(())
    }
    /// Builds the secondary keys of `table`, whose every chunk is loaded (called only when
    /// [`LoadSession::keys_per_table`] says so, after [`LoadSession::table_loaded`]). Honours
    /// `ctx`'s cancellation during the build as [`LoadSession::post_data`] does.
    async fn table_keys(&self, table: &TableEntry, ctx: &Context) -> Result<()> {
        let _ = (table, ctx);
        Ok(())
    }
    /// Applies the post-data script (indexes, constraints, objects). Must consume the stream.
    /// Honours `ctx`'s cancellation between statements, and during a long one (an index build)
    /// by stopping it on the server: cancelled, it returns [`Error::Cancelled`] promptly and the
    /// use-case discards the load with [`LoadSession::abort`].
    async fn post_data(&self, sql: ByteStream, ctx: &Context) -> Result<()>;
    /// Row count and checksum of a table as loaded into the shadow.
    async fn table_stats(&self, table: &TableEntry) -> Result<TableStats>;
    /// Database-level content checks against the manifest the session began with (SQLite:
    /// `integrity_check`; PostgreSQL: large objects' count, size and checksum). Read-only: the
    /// use-case runs it alongside the [`LoadSession::table_stats`] calls and weighs its result
    /// after theirs. Returns notes for the operator; an error makes the use-case discard the load.
    async fn check_database(&self) -> Result<Vec<String>> {
        Ok(Vec::new())
    }
    /// Whether [`LoadSession::check_database`] keeps a thread busy for as long as the table
    /// read-backs take (SQLite's `integrity_check`, one thread's CPU from start to end): the
    /// read-backs then run at `jobs - 1` (at least one) beside it, so the check gets a core of
    /// its own instead of sharing the cores with every scan and ending last.
    fn database_check_takes_a_job(&self) -> bool {
        false
    }
    /// Whether [`LoadSession::check_database`] proves the loaded database byte for byte the one
    /// the manifest's table stats were read from (SQLite with a page image digest, see
    /// docs/FORMAT.md): the tables then hold the manifest's rows and checksums, and the use-case
    /// reads none back; it relies on that check's success instead.
    fn tables_proven_by_database_check(&self) -> bool {
        false
    }
    /// Whether the session checks every loaded object's raw SHA-256 itself, on the bytes as
    /// written, before [`LoadSession::check_database`] succeeds (SQLite with a page image: the
    /// read-back of the file): the use-case then checks the raw bytes' length as they stream
    /// (the stored bytes' SHA-256 as always), and the raw digest once, on file.
    fn checks_raw_digests_on_file(&self) -> bool {
        false
    }
    /// Makes the load live; on failure restores the previous state.
    async fn commit(self: Box<Self>, ctx: &Context) -> Result<CommitReport>;
    /// Discards the load; the live database is as it was.
    async fn abort(self: Box<Self>) -> Result<()>;
    /// Executes a whole plain dump script (decompressed; only for sessions from
    /// [`Loader::begin_script`]). Must consume the stream; errors leave the session to `abort`.
    async fn script(&self, sql: ByteStream, ctx: &Context) -> Result<ScriptReport> {
        let _ = (sql, ctx);
        Err(Error::Unsupported("this load session cannot run plain dump scripts".into()))
    }
}

/// Opens the source engine for a database URL.
pub fn open_source(url: &DatabaseUrl) -> Result<Box<dyn Source>> {
    match url.engine() {
        Engine::Sqlite => Ok(Box::new(sqlite::SqliteSource::new(url)?)),
        #[cfg(feature = "postgres")]
        Engine::Postgres => Ok(Box::new(postgres::PgSource::new(url)?)),
        #[cfg(feature = "mysql")]
        Engine::Mysql => Ok(Box::new(mysql::MysqlSource::new(url)?)),
        #[allow(unreachable_patterns)]
        other => Err(Error::Unsupported(format!("{other} sources are not available in this build"))),
    }
}

/// Opens the loader engine for a database URL.
pub fn open_loader(url: &DatabaseUrl) -> Result<Box<dyn Loader>> {
    match url.engine() {
        Engine::Sqlite => Ok(Box::new(sqlite::SqliteLoader::new(url)?)),
        #[cfg(feature = "postgres")]
        Engine::Postgres => Ok(Box::new(postgres::PgLoader::new(url)?)),
        #[cfg(feature = "mysql")]
        Engine::Mysql => Ok(Box::new(mysql::MysqlLoader::new(url)?)),
        #[allow(unreachable_patterns)]
        other => Err(Error::Unsupported(format!("{other} restores are not available in this build"))),
    }
}

/// Drains a stream, surfacing its first error (so integrity checks wrapped around it run).
pub async fn drain(mut s: ByteStream) -> Result<u64> {
    use futures::StreamExt;
    let mut n = 0;
    while let Some(b) = s.next().await {
        n += b?.len() as u64;
    }
    Ok(n)
}

/// Reads a whole small stream (schema scripts) into a string, refusing more than `max` bytes.
pub async fn read_text(mut s: ByteStream, max: usize, what: &str) -> Result<String> {
    use futures::StreamExt;
    let mut buf = Vec::new();
    while let Some(b) = s.next().await {
        let b = b?;
        if buf.len() + b.len() > max {
            return Err(Error::Unsupported(format!("{what} is larger than {max} bytes")));
        }
        buf.extend_from_slice(&b);
    }
    String::from_utf8(buf).map_err(|e| Error::integrity(what, "UTF-8 text", e.to_string()))
}

/// Free space an engine writing files must leave on the filesystem after a restore (a full
/// disk takes the other files on it down with it).
const FREE_SPACE_MARGIN: u64 = 64 << 20;

/// Fails before anything is written when the filesystem of `dir` has less room than `bytes`
/// (what the manifest says the restore writes) plus a margin. A manifest is input from a
/// repository: a small object declared as 1 TB must be refused, not allowed to fill the disk.
pub(crate) fn check_free_space(dir: &std::path::Path, bytes: u64) -> Result<()> {
    let st = nix::sys::statvfs::statvfs(dir)
        .map_err(|e| Error::io(format!("free space of {}", dir.display()), std::io::Error::from(e)))?;
    // The field types differ between platforms (u32 on some).
    #[allow(clippy::useless_conversion)]
    let free = u64::from(st.blocks_available()).saturating_mul(u64::from(st.fragment_size()));
    if bytes.saturating_add(FREE_SPACE_MARGIN) > free {
        return Err(Error::Io {
            context: format!(
                "restore into {}: the backup needs {bytes} bytes and the filesystem has {free} free",
                dir.display()
            ),
            source: std::io::Error::from(std::io::ErrorKind::StorageFull),
        });
    }
    Ok(())
}

/// The rustls error somewhere in a driver error's chain (tokio-rustls wraps it in an
/// `io::Error`, whose `source()` skips it, so look inside those explicitly). Shared by the MySQL
/// and PostgreSQL TLS set-ups to tell a certificate problem from other handshake failures.
#[cfg(any(feature = "mysql", feature = "postgres"))]
pub(crate) fn rustls_error<'a>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a rustls::Error> {
    let mut cur = Some(e);
    while let Some(err) = cur {
        if let Some(r) = err.downcast_ref::<rustls::Error>() {
            return Some(r);
        }
        if let Some(inner) = err.downcast_ref::<std::io::Error>().and_then(|io| io.get_ref())
            && let Some(r) = inner.downcast_ref::<rustls::Error>()
        {
            return Some(r);
        }
        cur = err.source();
    }
    None
}
