//! The SQLite dump side: a page-exact snapshot file streamed as byte-range chunks (see the
//! [module docs](super)).

use std::collections::BTreeMap;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use rusqlite::{Connection, OpenFlags};
use tokio::sync::mpsc;

use super::checksum::table_rows_blocking;
use super::conn::{blocking, copy_pages, list_tables, open_snapshot, sql_err};
use super::swap::{self, Paths};
use crate::codec::ByteStream;
use crate::error::{Error, Result};
use crate::format::layout;
use crate::format::manifest::{ObjectEntry, ObjectKind, TableEntry};
use crate::model::{DatabaseUrl, Engine};
use crate::progress::Context;
use crate::source::{
    ChunkPlan, ChunkSpec, DumpOptions, DumpPlan, DumpStream, SchemaScripts, Snapshot, SnapshotInfo, Source,
    TableStats,
};

const READ_BLOCK: usize = 1 << 20;
const SNAPSHOT_PREFIX: &str = "dbbackup-sqlite-";
const SNAPSHOT_SUFFIX: &str = ".snapshot";
/// A snapshot file nobody holds is only removed once it is this old: the moment between its
/// creation and its lock must not look like a killed run.
const STALE_AFTER: std::time::Duration = std::time::Duration::from_secs(60);

/// Removes from `dir` the snapshot copies (and their `-journal`/`-wal`/`-shm` files) that a
/// killed backup left: a live backup holds an exclusive `flock` on its copy for as long as it
/// runs, so a copy whose lock can be taken and that is older than [`STALE_AFTER`] belongs to no
/// running backup. A side file whose copy is gone is a leftover too. Best effort: a failure only
/// leaves the file for the next run.
fn remove_stale_snapshots(dir: &std::path::Path) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    let now = std::time::SystemTime::now();
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(rest) = name.strip_prefix(SNAPSHOT_PREFIX) else { continue };
        let path = e.path();
        let side = ["-journal", "-wal", "-shm"]
            .iter()
            .find_map(|s| rest.strip_suffix(&format!("{SNAPSHOT_SUFFIX}{s}")));
        if side.is_some() {
            let main = dir.join(&name[..name.rfind('-').unwrap_or(name.len())]);
            if !main.exists() && std::fs::remove_file(&path).is_ok() {
                tracing::warn!("removed {}, left by an interrupted SQLite backup", path.display());
            }
            continue;
        }
        if !rest.ends_with(SNAPSHOT_SUFFIX) {
            continue;
        }
        let Ok(file) = File::open(&path) else { continue };
        let old = file
            .metadata()
            .and_then(|m| m.modified())
            .is_ok_and(|t| now.duration_since(t).is_ok_and(|age| age >= STALE_AFTER));
        if !old || file.try_lock().is_err() {
            continue;
        }
        for s in ["-journal", "-wal", "-shm"] {
            let mut p = path.clone().into_os_string();
            p.push(s);
            let _ = std::fs::remove_file(PathBuf::from(p));
        }
        if std::fs::remove_file(&path).is_ok() {
            tracing::warn!("removed {}, the snapshot copy of an interrupted SQLite backup", path.display());
        }
    }
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
            if let Some(_lock) = swap::try_lock(&paths)? {
                swap::recover(&paths)?;
            }
            remove_stale_snapshots(&temp_dir);
            let (lock, copy) = tempfile::Builder::new()
                .prefix(SNAPSHOT_PREFIX)
                .suffix(SNAPSHOT_SUFFIX)
                .tempfile_in(&temp_dir)
                .map_err(|e| Error::io(format!("create snapshot file in {}", temp_dir.display()), e))?
                .into_parts();
            // Held for the snapshot's life: tells a concurrent backup's sweep this copy is in use.
            lock.try_lock()
                .map_err(|e| Error::io(format!("lock snapshot file {}", copy.display()), e.into()))?;
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
            crate::failpoint::hit("sqlite-snapshot-copied");
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
            Ok(SqliteSnapshot { copy, _lock: lock, size, chunk_bytes, info })
        })
        .await?;
        Ok(Box::new(snap))
    }
}

struct SqliteSnapshot {
    copy: tempfile::TempPath,
    /// The open, `flock`ed snapshot file (see [`remove_stale_snapshots`]).
    _lock: File,
    size: u64,
    chunk_bytes: u64,
    info: SnapshotInfo,
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
            let conn = open_snapshot(&path)?;
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
        let names = blocking(move || list_tables(&open_snapshot(&path)?)).await?;
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
        blocking(move || table_rows_blocking(&open_snapshot(&path)?, &name)).await
    }

    /// The page image digest over the chunks (see [`super::image`]): the tables' stats were read
    /// from this same snapshot file.
    fn objects_stored(&self, objects: &[ObjectEntry]) -> Result<BTreeMap<String, String>> {
        super::image::record(objects)
    }

    async fn close(self: Box<Self>) -> Result<()> {
        let path = self.copy;
        blocking(move || path.close().map_err(|e| Error::io("remove snapshot file", e))).await
    }
}
