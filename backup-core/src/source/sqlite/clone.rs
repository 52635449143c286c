//! A rollback point for `guard` on SQLite: a copy of the database file beside it
//! (`.<name>.dbbackup-guard-XXXXXX`), taken with the online backup API (one consistent instant,
//! WAL included). Rolling back swaps it in exactly like a restored file
//! ([`swap::swap_into_place`], under the target's lock, after [`swap::recover`]);
//! the recovery time is a rename, whatever the file's size. The copy costs the file's size on
//! the same file system while the command runs.

use std::path::{Path, PathBuf};

use async_trait::async_trait;

use super::conn::copy_pages;
use super::swap::{self, Paths};
use crate::error::{Error, Result};
use crate::source::RollbackPoint;

/// The copy of one database file.
pub(crate) struct SqliteClone {
    paths: Paths,
    copy: tempfile::TempPath,
}

/// File names of guard copies of `target` start with this.
fn prefix(target: &Path) -> String {
    let name = target.file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_default();
    format!(".{name}.dbbackup-guard-")
}

/// Copies `target` beside itself; `Ok(Err(reason))` when there is no file to copy.
pub(crate) fn take(target: &Path) -> Result<std::result::Result<Box<dyn RollbackPoint>, String>> {
    if !target.is_file() {
        return Ok(Err(format!("{} is not a file", target.display())));
    }
    let paths = Paths::new(target);
    let dir = paths.dir().to_path_buf();
    // A killed guard's copy (one guard per database at a time).
    let pre = prefix(target);
    if let Ok(entries) = std::fs::read_dir(&dir) {
        for e in entries.flatten() {
            if e.file_name().to_string_lossy().starts_with(&pre) {
                let _ = std::fs::remove_file(e.path());
                tracing::warn!("removed {}, the rollback copy of an interrupted guard", e.path().display());
            }
        }
    }
    let (file, copy) = tempfile::Builder::new()
        .prefix(&pre)
        .tempfile_in(&dir)
        .map_err(|e| Error::io(format!("create the rollback copy in {}", dir.display()), e))?
        .into_parts();
    let src = rusqlite::Connection::open_with_flags(target, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .map_err(|e| Error::source(format!("open {}", target.display()), e))?;
    let never = crate::progress::CancellationToken::new();
    drop(copy_pages(&src, &copy, target, &never)?);
    swap::match_owner_and_mode(&file, target)?;
    file.sync_all().map_err(|e| Error::io("flush the rollback copy", e))?;
    Ok(Ok(Box::new(SqliteClone { paths, copy })))
}

#[async_trait]
impl RollbackPoint for SqliteClone {
    fn describe(&self) -> String {
        format!("SQLite file copy {}", self.copy.display())
    }

    async fn roll_back(self: Box<Self>) -> Result<Vec<String>> {
        let SqliteClone { paths, copy } = *self;
        tokio::task::spawn_blocking(move || {
            let _lock = swap::lock(&paths)?;
            let mut notes = swap::recover(&paths)?;
            let shown: PathBuf = copy.to_path_buf();
            swap::swap_into_place(&paths, copy)?;
            notes.push(format!("renamed {} over {}", shown.display(), paths.target.display()));
            Ok(notes)
        })
        .await
        .map_err(|e| Error::source("roll back to the file copy", e.to_string()))?
    }

    async fn discard(self: Box<Self>) -> Result<()> {
        let copy = self.copy;
        copy.close().map_err(|e| Error::io("remove the rollback copy", e))
    }
}
