//! The SQLite restore side: chunks written at their offsets into a temp file beside the target
//! (or a `.dump` script run into it), checked, then swapped in by [`swap`] (see the
//! [module docs](super)).

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use async_trait::async_trait;
use futures::StreamExt;

use super::checksum::{integrity_check, table_stats_blocking};
use super::conn::{blocking, open_read_only};
use super::image::{self, ImageChunk};
use super::script;
use super::swap::{self, Paths};
use crate::codec::ByteStream;
use crate::error::{Error, Result};
use crate::format::manifest::{Manifest, ObjectEntry, ObjectKind, TableEntry};
use crate::model::{DatabaseUrl, Engine};
use crate::progress::Context;
use crate::source::{
    CommitReport, LoadOptions, LoadSession, Loader, RollbackPoint, ScriptReport, TableStats,
};

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

    async fn rollback_point(&self) -> Result<std::result::Result<Box<dyn RollbackPoint>, String>> {
        let path = self.path.clone();
        blocking(move || super::clone::take(&path)).await
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
            return Err(Error::MissingDatabase(format!(
                "directory {} for the restored database",
                dir.display()
            )));
        }
        crate::source::check_free_space(&dir, total)?;
        // A chunk list that does not make up the recorded page image is refused here, before
        // the target is touched.
        let image = image::proven_chunks(manifest)?;
        open_session(paths, image).await
    }

    async fn begin_script(&self, opts: &LoadOptions, _ctx: &Context) -> Result<Box<dyn LoadSession>> {
        if opts.tables.is_some() {
            return Err(Error::Unsupported(
                "--tables with a SQLite dump script: restore the whole script into a new file and copy the tables you need".into(),
            ));
        }
        let paths = Paths::new(&self.path);
        if !paths.dir().is_dir() {
            return Err(Error::MissingDatabase(format!(
                "directory {} for the restored database",
                paths.dir().display()
            )));
        }
        open_session(paths, None).await
    }
}

/// Takes the target's lock, finishes or undoes what a killed run left, and creates the temp file
/// the restore writes (see the module docs). `image`: the chunks of a backup whose page image
/// digest matched (see [`image`]).
async fn open_session(paths: Paths, image: Option<Vec<ImageChunk>>) -> Result<Box<dyn LoadSession>> {
    let dir = paths.dir().to_path_buf();
    blocking(move || {
        // One restore per target at a time; then whatever a killed run left is finished or undone.
        let lock = swap::lock(&paths)?;
        let notes = swap::recover(&paths)?;
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
            image: image.map(Arc::new),
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

/// With the `sqlite-restore-garbled-write` failpoint (`testing` builds), a write path that puts
/// other bytes on file than those the stream's digest checked: the first `garble-me` in a piece
/// is written as `GARBLE-ME`, a same-length change inside a row that `integrity_check` cannot
/// see. Only the read-back of the file against the page image can.
fn garbled_by_failpoint(b: bytes::Bytes) -> bytes::Bytes {
    if !crate::failpoint::armed("sqlite-restore-garbled-write") {
        return b;
    }
    let Some(at) = memchr::memmem::find(&b, b"garble-me") else { return b };
    let mut v = b.to_vec();
    v[at..at + 9].copy_from_slice(b"GARBLE-ME");
    v.into()
}

struct SqliteSession {
    paths: Paths,
    /// Held until the session ends (commit, abort or drop).
    _lock: swap::TargetLock,
    /// What recovering a killed run's leftovers did (reported by `commit`).
    notes: Vec<String>,
    temp: tempfile::TempPath,
    file: Arc<File>,
    /// The backup's chunks when its page image digest matched: `check_database` then reads the
    /// file back against them and the tables are not read back (see [`image`]).
    image: Option<Arc<Vec<ImageChunk>>>,
    /// `PRAGMA integrity_check` passed on the loaded file (in `check_database`, alongside the
    /// table checksums); `commit` runs it itself otherwise.
    integrity_checked: AtomicBool,
}

#[async_trait]
impl LoadSession for SqliteSession {
    async fn pre_data(&self, sql: ByteStream) -> Result<()> {
        // The schema travels inside the pages; the script is for humans and `export`.
        crate::source::drain(sql).await.map(|_| ())
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
            let b = garbled_by_failpoint(b?);
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
        crate::source::drain(sql).await.map(|_| ())
    }

    async fn table_stats(&self, table: &TableEntry) -> Result<TableStats> {
        // No flush first: the read-back sees the written pages through the page cache like any
        // reader would, and the file goes to disk alongside the checks (`check_database`), so
        // no scan waits for the disk. `commit` syncs it before the rename all the same.
        let path = self.temp.to_path_buf();
        let name = table.name.clone();
        blocking(move || table_stats_blocking(&open_read_only(&path)?, &name)).await
    }

    fn database_check_takes_a_job(&self) -> bool {
        true
    }

    fn tables_proven_by_database_check(&self) -> bool {
        self.image.is_some()
    }

    fn checks_raw_digests_on_file(&self) -> bool {
        self.image.is_some()
    }

    async fn check_database(&self) -> Result<Vec<String>> {
        // Disk work beside CPU work: the flush of the loaded file runs while `integrity_check`
        // (and, from the pipeline, the table scans, or with a page image the read-back of the
        // file against it) read it; by the rename nothing is left to write.
        let f = self.file.clone();
        let flush = blocking(move || f.sync_data().map_err(|e| Error::io("flush restored file", e)));
        let path = self.temp.to_path_buf();
        let (f, image) = (self.file.clone(), self.image.clone());
        let read_back = async move {
            match image {
                Some(chunks) => blocking(move || image::read_back(&f, &chunks)).await,
                None => Ok(()),
            }
        };
        let (flushed, checked, read) =
            futures::join!(flush, blocking(move || integrity_check(&path)), read_back);
        read?;
        checked?;
        flushed?;
        self.integrity_checked.store(true, Ordering::Release);
        Ok(Vec::new())
    }

    async fn commit(self: Box<Self>, _ctx: &Context) -> Result<CommitReport> {
        let SqliteSession { paths, _lock, mut notes, temp, file, image, integrity_checked } = *self;
        blocking(move || {
            let owner_note = swap::match_owner_and_mode(&file, &paths.target)?;
            file.sync_all().map_err(|e| Error::io("flush restored file", e))?;
            if !integrity_checked.load(Ordering::Acquire) {
                if let Some(chunks) = &image {
                    image::read_back(&file, chunks)?;
                }
                integrity_check(&temp)?;
            }
            drop(file);
            swap::swap_into_place(&paths, temp)?;
            drop(_lock);
            notes.extend(owner_note);
            Ok(CommitReport { previous_kept_at: None, notes, live_at: None })
        })
        .await
    }

    /// Runs a SQL script (sqlite3's `.dump` output) into the empty temp file, statement by
    /// statement as cut by [`script::ScriptSplitter`]; `commit` then checks and swaps it in
    /// like a backup. A script that ends inside a statement or inside its own transaction is
    /// refused (cut short), and so are statements that reach other files (`ATTACH`, `VACUUM`).
    async fn script(&self, sql: ByteStream, ctx: &Context) -> Result<ScriptReport> {
        script::run_script(self.temp.to_path_buf(), sql, ctx).await
    }

    async fn abort(self: Box<Self>) -> Result<()> {
        let temp = self.temp;
        blocking(move || {
            swap::remove_temp_sidecars(&temp)?;
            temp.close().map_err(|e| Error::io("remove restore temp file", e))
        })
        .await
    }
}
