//! SQLite engine: page-exact snapshots with the online backup API, restore through a verified
//! temp file, `PRAGMA integrity_check` and an atomic rename.
//!
//! Dump: the backup API copies the database into a temp file in one step, holding one read
//! transaction, so the copy is a single consistent instant (in WAL mode writers keep writing
//! meanwhile). The copy is then streamed as fixed-size byte ranges ("file chunks"), each its own
//! compressed object, so chunks compress and upload in parallel.
//!
//! Restore: chunks are written at their offsets into a temp file beside the target, the file is
//! checked (`integrity_check`, per-table row counts and content checksums against the manifest),
//! given the owner and mode of the file it replaces, then renamed over the target under a lock
//! file and an intent journal (see `sqlite_swap`): the target name always holds a complete
//! database, and the next restore or backup of it finishes or undoes an interrupted swap.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use rusqlite::{Connection, OpenFlags};
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;

use super::sqlite_swap::{self, Paths};
use super::{
    ChunkPlan, ChunkSpec, CommitReport, DumpOptions, DumpPlan, DumpStream, LoadOptions, LoadSession, Loader,
    SchemaScripts, ScriptReport, Snapshot, SnapshotInfo, Source, TableStats, sqlite_script,
};
use crate::codec::ByteStream;
use crate::error::{Error, Result};
use crate::format::layout;
use crate::format::manifest::{Manifest, ObjectEntry, ObjectKind, TableEntry};
use crate::model::{DatabaseUrl, Engine};
use crate::progress::Context;

/// Name of the content checksum algorithm (see [`table_stats_blocking`]).
pub const CHECKSUM_ALGO: &str = "sqlite-rows-sha256-v1";
const READ_BLOCK: usize = 1 << 20;

fn sql_err(context: impl Into<String>) -> impl FnOnce(rusqlite::Error) -> Error {
    let context = context.into();
    move |e| Error::source(context, e)
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f).await.map_err(|e| Error::source("SQLite worker thread", e))?
}

/// Quotes an identifier for SQLite.
fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// The dump side.
pub(crate) struct SqliteSource {
    path: PathBuf,
}

impl SqliteSource {
    pub(crate) fn new(url: &DatabaseUrl) -> Result<Self> {
        let path =
            url.sqlite_path().ok_or_else(|| Error::InvalidInput("not a SQLite URL".into()))?.to_path_buf();
        Ok(SqliteSource { path })
    }
}

#[async_trait]
impl Source for SqliteSource {
    fn engine(&self) -> Engine {
        Engine::Sqlite
    }

    async fn snapshot(&self, opts: &DumpOptions, ctx: &Context) -> Result<Box<dyn Snapshot>> {
        let path = self.path.clone();
        if !path.is_file() {
            return Err(Error::MissingDatabase(format!("SQLite database {}", path.display())));
        }
        let temp_dir = opts.temp_dir.clone().unwrap_or_else(std::env::temp_dir);
        let chunk_bytes = opts.chunk_bytes.max(1 << 20);
        let cancel = ctx.cancel.clone();
        let snap = blocking(move || {
            // Finish or undo a restore of this file that was killed midway (unless one is running).
            let paths = Paths::new(&path);
            if let Some(_lock) = sqlite_swap::try_lock(&paths)? {
                sqlite_swap::recover(&paths)?;
            }
            let copy = tempfile::Builder::new()
                .prefix("dbbackup-sqlite-")
                .suffix(".snapshot")
                .tempfile_in(&temp_dir)
                .map_err(|e| Error::io(format!("create snapshot file in {}", temp_dir.display()), e))?
                .into_temp_path();
            let src = Connection::open_with_flags(
                &path,
                OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
            )
            .map_err(sql_err(format!("open {}", path.display())))?;
            src.busy_timeout(std::time::Duration::from_secs(30)).map_err(sql_err("set busy timeout"))?;
            let journal = {
                let mut p = copy.as_os_str().to_os_string();
                p.push("-journal");
                PathBuf::from(p)
            };
            let copied = copy_pages(&src, &copy, &path, &cancel);
            if copied.is_err() {
                // A rollback journal of the copy (a full spool stops the copy midway) is not
                // covered by the temp file's own removal.
                let _ = std::fs::remove_file(&journal);
            }
            let dst = copied?;
            let version: String = dst
                .query_row("select sqlite_version()", [], |r| r.get(0))
                .map_err(sql_err("read version"))?;
            let journal: String = src
                .query_row("pragma journal_mode", [], |r| r.get(0))
                .map_err(sql_err("read journal mode"))?;
            let page_size: i64 =
                dst.query_row("pragma page_size", [], |r| r.get(0)).map_err(sql_err("read page size"))?;
            drop(dst);
            drop(src);
            let size = std::fs::metadata(&copy).map_err(|e| Error::io("stat snapshot file", e))?.len();
            let mut info = SnapshotInfo {
                server_version: version,
                database: path.file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_default(),
                ..Default::default()
            };
            info.position.insert("method".into(), "backup-api".into());
            info.position.insert("journal_mode".into(), journal);
            info.position.insert("page_size".into(), page_size.to_string());
            info.position.insert("file_bytes".into(), size.to_string());
            Ok(SqliteSnapshot { copy, size, chunk_bytes, info })
        })
        .await?;
        Ok(Box::new(snap))
    }
}

/// Copies every page of `src` into a new database at `copy` with the online backup API, in one
/// step (one read transaction: a single consistent instant). The copy is a throwaway file, so it
/// keeps no rollback journal (one left behind would outlive the temp file when the copy fails).
pub(super) fn copy_pages(
    src: &Connection,
    copy: &Path,
    path: &Path,
    cancel: &crate::progress::CancellationToken,
) -> Result<Connection> {
    let mut dst = Connection::open(copy).map_err(sql_err("open snapshot file"))?;
    dst.query_row("pragma journal_mode = off", [], |_| Ok(())).map_err(sql_err("configure snapshot file"))?;
    {
        let backup = rusqlite::backup::Backup::new(src, &mut dst)
            .map_err(sql_err(format!("start backup of {}", path.display())))?;
        loop {
            if cancel.is_cancelled() {
                return Err(Error::Cancelled(format!("snapshot of {}", path.display())));
            }
            match backup.step(-1).map_err(sql_err(format!("copy pages of {}", path.display())))? {
                rusqlite::backup::StepResult::Done => break,
                rusqlite::backup::StepResult::Busy | rusqlite::backup::StepResult::Locked => {
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                _ => {}
            }
        }
    }
    Ok(dst)
}

struct SqliteSnapshot {
    copy: tempfile::TempPath,
    size: u64,
    chunk_bytes: u64,
    info: SnapshotInfo,
}

/// User tables of a database file, in creation order.
fn list_tables(conn: &Connection) -> Result<Vec<String>> {
    let mut stmt = conn
        .prepare(
            "select name from sqlite_schema where type = 'table' and name not like 'sqlite\\_%' escape '\\' \
             and sql not like 'create virtual table%' order by rowid",
        )
        .map_err(sql_err("list tables"))?;
    let names = stmt.query_map([], |r| r.get::<_, String>(0)).map_err(sql_err("list tables"))?;
    names.collect::<rusqlite::Result<Vec<_>>>().map_err(sql_err("list tables"))
}

fn open_read_only(path: &Path) -> Result<Connection> {
    Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX)
        .map_err(sql_err(format!("open {}", path.display())))
}

/// Row count and an order-stable SHA-256 over every value of every row (table scanned in key
/// order): per value a type tag, then i64/f64 bits little-endian or a u64 length and the bytes.
fn table_stats_blocking(conn: &Connection, table: &str) -> Result<TableStats> {
    let sql = format!("select * from {} not indexed", quote_ident(table));
    let mut stmt = conn.prepare(&sql).map_err(sql_err(format!("scan table {table}")))?;
    let ncols = stmt.column_count();
    let mut rows = stmt.query([]).map_err(sql_err(format!("scan table {table}")))?;
    let mut h = Sha256::new();
    let mut n = 0u64;
    while let Some(row) = rows.next().map_err(sql_err(format!("scan table {table}")))? {
        n += 1;
        for i in 0..ncols {
            use rusqlite::types::ValueRef;
            match row.get_ref(i).map_err(sql_err(format!("read table {table}")))? {
                ValueRef::Null => h.update([0u8]),
                ValueRef::Integer(v) => {
                    h.update([1u8]);
                    h.update(v.to_le_bytes());
                }
                ValueRef::Real(v) => {
                    h.update([2u8]);
                    h.update(v.to_bits().to_le_bytes());
                }
                ValueRef::Text(t) => {
                    h.update([3u8]);
                    h.update((t.len() as u64).to_le_bytes());
                    h.update(t);
                }
                ValueRef::Blob(b) => {
                    h.update([4u8]);
                    h.update((b.len() as u64).to_le_bytes());
                    h.update(b);
                }
            }
        }
    }
    Ok(TableStats {
        rows: n,
        checksum: Some(hex::encode(h.finalize())),
        checksum_algo: Some(CHECKSUM_ALGO.into()),
        ..Default::default()
    })
}

/// Streams `len` bytes of `file` from `offset` on a blocking thread, in [`READ_BLOCK`] pieces.
fn stream_file_range(path: PathBuf, offset: u64, len: u64) -> ByteStream {
    let (tx, rx) = mpsc::channel::<Result<Bytes>>(4);
    tokio::task::spawn_blocking(move || {
        let run = || -> Result<()> {
            let f = File::open(&path).map_err(|e| Error::io(format!("open {}", path.display()), e))?;
            let mut pos = offset;
            let end = offset + len;
            while pos < end {
                let n = ((end - pos) as usize).min(READ_BLOCK);
                let mut buf = BytesMut::zeroed(n);
                f.read_exact_at(&mut buf, pos)
                    .map_err(|e| Error::io(format!("read {} at {pos}", path.display()), e))?;
                pos += n as u64;
                if tx.blocking_send(Ok(buf.freeze())).is_err() {
                    return Ok(());
                }
            }
            Ok(())
        };
        if let Err(e) = run() {
            let _ = tx.blocking_send(Err(e));
        }
    });
    crate::codec::compress::ChannelStream::new(rx).boxed()
}

#[async_trait]
impl Snapshot for SqliteSnapshot {
    fn info(&self) -> SnapshotInfo {
        self.info.clone()
    }

    async fn schema(&self) -> Result<SchemaScripts> {
        let path = self.copy.to_path_buf();
        blocking(move || {
            let conn = open_read_only(&path)?;
            let mut stmt = conn
                .prepare("select sql from sqlite_schema where sql is not null order by rowid")
                .map_err(sql_err("read schema"))?;
            let stmts = stmt.query_map([], |r| r.get::<_, String>(0)).map_err(sql_err("read schema"))?;
            let mut pre = String::new();
            for s in stmts {
                pre.push_str(&s.map_err(sql_err("read schema"))?);
                pre.push_str(";\n");
            }
            Ok(SchemaScripts { pre_data: pre, post_data: String::new() })
        })
        .await
    }

    async fn plan(&self) -> Result<DumpPlan> {
        let path = self.copy.to_path_buf();
        let names = blocking(move || list_tables(&open_read_only(&path)?)).await?;
        let tables = names
            .iter()
            .enumerate()
            .map(|(i, name)| TableEntry {
                schema: None,
                name: name.clone(),
                key: layout::table_key(i, None, name),
                rows: 0,
                checksum: None,
                checksum_algo: None,
                properties: Default::default(),
            })
            .collect();
        let mut chunks = Vec::new();
        let mut offset = 0u64;
        let mut chunk = 0u32;
        while offset < self.size || (self.size == 0 && chunk == 0) {
            let len = self.chunk_bytes.min(self.size - offset);
            chunks.push(ChunkPlan {
                table: None,
                group: None,
                chunk,
                kind: ObjectKind::File,
                format: "sqlite-db".into(),
                ext: "db".into(),
                size_hint: Some(len),
                offset: Some(offset),
                spec: ChunkSpec::FileBytes { offset, len },
            });
            offset += len;
            chunk += 1;
            if len == 0 {
                break;
            }
        }
        Ok(DumpPlan { tables, chunks })
    }

    async fn dump(&self, _plan: &DumpPlan, chunk: &ChunkPlan) -> Result<DumpStream> {
        let ChunkSpec::FileBytes { offset, len } = chunk.spec else {
            return Err(Error::InvalidInput(format!(
                "SQLite file chunk {} without a byte range",
                chunk.chunk
            )));
        };
        Ok(DumpStream {
            bytes: stream_file_range(self.copy.to_path_buf(), offset, len),
            rows: Arc::new(AtomicU64::new(0)),
        })
    }

    async fn table_stats(&self, table: &TableEntry) -> Result<TableStats> {
        let path = self.copy.to_path_buf();
        let name = table.name.clone();
        blocking(move || table_stats_blocking(&open_read_only(&path)?, &name)).await
    }

    async fn close(self: Box<Self>) -> Result<()> {
        let path = self.copy;
        blocking(move || path.close().map_err(|e| Error::io("remove snapshot file", e))).await
    }
}

/// The restore side.
pub(crate) struct SqliteLoader {
    path: PathBuf,
}

impl SqliteLoader {
    pub(crate) fn new(url: &DatabaseUrl) -> Result<Self> {
        let path =
            url.sqlite_path().ok_or_else(|| Error::InvalidInput("not a SQLite URL".into()))?.to_path_buf();
        Ok(SqliteLoader { path })
    }
}

#[async_trait]
impl Loader for SqliteLoader {
    fn engine(&self) -> Engine {
        Engine::Sqlite
    }

    async fn rollback_point(&self) -> Result<std::result::Result<Box<dyn super::RollbackPoint>, String>> {
        let path = self.path.clone();
        blocking(move || super::sqlite_clone::take(&path)).await
    }

    async fn begin(
        &self,
        manifest: &Manifest,
        opts: &LoadOptions,
        _ctx: &Context,
    ) -> Result<Box<dyn LoadSession>> {
        if opts.tables.is_some() {
            return Err(Error::Unsupported(
                "--tables with SQLite: backups are page-exact copies of the whole file; restore into a new file and copy the tables you need".into(),
            ));
        }
        if manifest.objects.iter().any(|o| o.kind == ObjectKind::Data) {
            return Err(Error::Unsupported("SQLite restore of row-format backups".into()));
        }
        let total = check_file_coverage(manifest)?;
        let paths = Paths::new(&self.path);
        let dir = paths.dir().to_path_buf();
        if !dir.is_dir() {
            return Err(Error::not_found(format!("directory {} for the restored database", dir.display())));
        }
        super::check_free_space(&dir, total)?;
        open_session(paths).await
    }

    async fn begin_script(&self, opts: &LoadOptions, _ctx: &Context) -> Result<Box<dyn LoadSession>> {
        if opts.tables.is_some() {
            return Err(Error::Unsupported(
                "--tables with a SQLite dump script: restore the whole script into a new file and copy the tables you need".into(),
            ));
        }
        let paths = Paths::new(&self.path);
        if !paths.dir().is_dir() {
            return Err(Error::not_found(format!(
                "directory {} for the restored database",
                paths.dir().display()
            )));
        }
        open_session(paths).await
    }
}

/// Takes the target's lock, finishes or undoes what a killed run left, and creates the temp file
/// the restore writes (see the module docs).
async fn open_session(paths: Paths) -> Result<Box<dyn LoadSession>> {
    let dir = paths.dir().to_path_buf();
    blocking(move || {
        // One restore per target at a time; then whatever a killed run left is finished or undone.
        let lock = sqlite_swap::lock(&paths)?;
        let notes = sqlite_swap::recover(&paths)?;
        let temp = tempfile::Builder::new()
            .prefix(&paths.temp_prefix())
            .tempfile_in(&dir)
            .map_err(|e| Error::io(format!("create temp file in {}", dir.display()), e))?;
        let (file, temp) = temp.into_parts();
        Ok(Box::new(SqliteSession {
            paths,
            _lock: lock,
            notes,
            temp,
            file: Arc::new(file),
            integrity_checked: AtomicBool::new(false),
        }) as Box<dyn LoadSession>)
    })
    .await
}

/// The file chunks of a SQLite backup must cover the file exactly: offsets from 0, each chunk
/// starting where the previous one ends, up to the recorded file size. A manifest is input from
/// a repository; overlapping chunks or gaps would write a file that was never backed up.
/// Returns the file size.
fn check_file_coverage(manifest: &Manifest) -> Result<u64> {
    let mut chunks: Vec<&ObjectEntry> =
        manifest.objects.iter().filter(|o| o.kind == ObjectKind::File).collect();
    chunks.sort_by_key(|o| o.offset);
    let mut end = 0u64;
    for o in &chunks {
        let offset = o.offset.ok_or_else(|| Error::integrity(&o.key, "an offset", "none"))?;
        if offset != end {
            let found = if offset < end { "overlaps the previous chunk" } else { "leaves a gap" };
            return Err(Error::integrity(
                &o.key,
                format!("file chunk at offset {end}"),
                format!("offset {offset} ({found})"),
            ));
        }
        end = offset.checked_add(o.raw_bytes).ok_or_else(|| {
            Error::integrity(&o.key, "a chunk size within the file", format!("{} bytes", o.raw_bytes))
        })?;
    }
    if let Some(size) = manifest.snapshot.get("file_bytes").and_then(|v| v.parse::<u64>().ok())
        && size != end
    {
        return Err(Error::integrity(
            "manifest",
            format!("file chunks covering {size} bytes (the recorded file size)"),
            format!("{end} bytes"),
        ));
    }
    Ok(end)
}

struct SqliteSession {
    paths: Paths,
    /// Held until the session ends (commit, abort or drop).
    _lock: sqlite_swap::TargetLock,
    /// What recovering a killed run's leftovers did (reported by `commit`).
    notes: Vec<String>,
    temp: tempfile::TempPath,
    file: Arc<File>,
    /// `PRAGMA integrity_check` passed on the loaded file (in `check_database`, alongside the
    /// table checksums); `commit` runs it itself otherwise.
    integrity_checked: AtomicBool,
}

#[async_trait]
impl LoadSession for SqliteSession {
    async fn pre_data(&self, sql: ByteStream) -> Result<()> {
        // The schema travels inside the pages; the script is for humans and `export`.
        super::drain(sql).await.map(|_| ())
    }

    async fn load(&self, object: &ObjectEntry, mut data: ByteStream) -> Result<u64> {
        if object.kind != ObjectKind::File {
            return Err(Error::Unsupported(format!(
                "object {} of kind {:?} in a SQLite backup",
                object.key, object.kind
            )));
        }
        let mut pos = object.offset.ok_or_else(|| Error::integrity(&object.key, "an offset", "none"))?;
        while let Some(b) = data.next().await {
            let b = b?;
            let f = self.file.clone();
            let at = pos;
            pos += b.len() as u64;
            blocking(move || {
                f.write_all_at(&b, at).map_err(|e| Error::io(format!("write restored pages at {at}"), e))
            })
            .await?;
        }
        Ok(0)
    }

    async fn post_data(&self, sql: ByteStream, _ctx: &Context) -> Result<()> {
        // Indexes travel inside the pages too: nothing to build.
        super::drain(sql).await.map(|_| ())
    }

    async fn table_stats(&self, table: &TableEntry) -> Result<TableStats> {
        let f = self.file.clone();
        blocking(move || f.sync_data().map_err(|e| Error::io("flush restored file", e))).await?;
        let path = self.temp.to_path_buf();
        let name = table.name.clone();
        blocking(move || table_stats_blocking(&open_read_only(&path)?, &name)).await
    }

    async fn check_database(&self) -> Result<Vec<String>> {
        let path = self.temp.to_path_buf();
        blocking(move || integrity_check(&path)).await?;
        self.integrity_checked.store(true, Ordering::Release);
        Ok(Vec::new())
    }

    async fn commit(self: Box<Self>, _ctx: &Context) -> Result<CommitReport> {
        let SqliteSession { paths, _lock, mut notes, temp, file, integrity_checked } = *self;
        blocking(move || {
            let owner_note = sqlite_swap::match_owner_and_mode(&file, &paths.target)?;
            file.sync_all().map_err(|e| Error::io("flush restored file", e))?;
            drop(file);
            if !integrity_checked.load(Ordering::Acquire) {
                integrity_check(&temp)?;
            }
            sqlite_swap::swap_into_place(&paths, temp)?;
            drop(_lock);
            notes.extend(owner_note);
            Ok(CommitReport { previous_kept_at: None, notes })
        })
        .await
    }

    /// Runs a SQL script (sqlite3's `.dump` output) into the empty temp file, statement by
    /// statement as cut by [`sqlite_script::ScriptSplitter`]; `commit` then checks and swaps it in
    /// like a backup. A script that ends inside a statement or inside its own transaction is
    /// refused (cut short), and so are statements that reach other files (`ATTACH`, `VACUUM`).
    async fn script(&self, mut sql: ByteStream, ctx: &Context) -> Result<ScriptReport> {
        let path = self.temp.to_path_buf();
        let mut conn = blocking(move || {
            let c = Connection::open(&path).map_err(sql_err("open the restore temp file"))?;
            // The temp file is not live: it is synced once, before the swap.
            c.execute_batch("pragma synchronous = off").map_err(sql_err("pragma synchronous"))?;
            Ok(c)
        })
        .await?;
        let mut splitter = sqlite_script::ScriptSplitter::new(SCRIPT_MAX_STATEMENT);
        let mut done = 0u64;
        let cut = |e: sqlite_script::ScriptError| {
            Error::integrity("SQL script", "a complete script", e.to_string())
        };
        while let Some(b) = sql.next().await {
            let b = b?;
            ctx.check("restore")?;
            let stmts = splitter.push(&b).map_err(cut)?;
            (conn, done) = run_statements(conn, stmts, done).await?;
        }
        (conn, done) = run_statements(conn, splitter.finish().map_err(cut)?, done).await?;
        blocking(move || {
            if !conn.is_autocommit() {
                return Err(Error::integrity(
                    "SQL script",
                    "a complete script",
                    "it ends inside a transaction (BEGIN without COMMIT)",
                ));
            }
            let tables = list_tables(&conn)?;
            let mut rows = 0u64;
            for t in &tables {
                let n: i64 = conn
                    .query_row(&format!("select count(*) from {}", quote_ident(t)), [], |r| r.get(0))
                    .map_err(sql_err(format!("count rows of {t}")))?;
                rows += u64::try_from(n).unwrap_or(0);
            }
            conn.close().map_err(|(_, e)| Error::source("close the restore temp file", e))?;
            Ok(ScriptReport { statements: done, tables: tables.len(), rows, notes: Vec::new() })
        })
        .await
    }

    async fn abort(self: Box<Self>) -> Result<()> {
        let temp = self.temp;
        blocking(move || {
            sqlite_swap::remove_temp_sidecars(&temp)?;
            temp.close().map_err(|e| Error::io("remove restore temp file", e))
        })
        .await
    }
}

/// Largest single statement of a SQL script (a row of a huge blob is one INSERT).
const SCRIPT_MAX_STATEMENT: usize = 1 << 30;

/// Executes script statements on a blocking thread; returns the connection and the running count.
async fn run_statements(conn: Connection, stmts: Vec<Vec<u8>>, done: u64) -> Result<(Connection, u64)> {
    if stmts.is_empty() {
        return Ok((conn, done));
    }
    blocking(move || {
        let mut done = done;
        for s in stmts {
            done += 1;
            let head = sqlite_script::first_words(&s, 4);
            if ["ATTACH", "DETACH", "VACUUM"].contains(&head.split(' ').next().unwrap_or("")) {
                return Err(Error::Unsupported(format!(
                    "statement {done} of the SQL script ({head}): a restore does not reach other files"
                )));
            }
            let text = std::str::from_utf8(&s).map_err(|e| {
                Error::integrity(format!("statement {done} of the SQL script"), "UTF-8 text", e.to_string())
            })?;
            conn.execute_batch(text)
                .map_err(sql_err(format!("statement {done} of the SQL script ({head} ...)")))?;
        }
        Ok((conn, done))
    })
    .await
}

/// `PRAGMA integrity_check` on the file at `path`: anything but a single `ok` is an integrity error.
fn integrity_check(path: &Path) -> Result<()> {
    let conn = open_read_only(path)?;
    let mut stmt = conn.prepare("pragma integrity_check").map_err(sql_err("integrity_check"))?;
    let msgs: Vec<String> = stmt
        .query_map([], |r| r.get::<_, String>(0))
        .map_err(sql_err("integrity_check"))?
        .collect::<rusqlite::Result<_>>()
        .map_err(sql_err("integrity_check"))?;
    if msgs != ["ok"] {
        return Err(Error::integrity("restored database", "integrity_check ok", msgs.join("; ")));
    }
    Ok(())
}
