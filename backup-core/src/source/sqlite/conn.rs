//! Opening SQLite files and the online backup API's page copy (used by the dump's snapshot and by
//! `guard`'s [`clone`](super::clone)), plus the small helpers every part of the engine uses.

use std::path::Path;

use rusqlite::{Connection, OpenFlags};

use crate::error::{Error, Result};

pub(super) fn sql_err(context: impl Into<String>) -> impl FnOnce(rusqlite::Error) -> Error {
    let context = context.into();
    move |e| Error::source(context, e)
}

pub(super) async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f).await.map_err(|e| Error::source("SQLite worker thread", e))?
}

/// Quotes an identifier for SQLite.
pub(super) fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// User tables of a database file, in creation order.
pub(super) fn list_tables(conn: &Connection) -> Result<Vec<String>> {
    let mut stmt = conn
        .prepare(
            "select name from sqlite_schema where type = 'table' and name not like 'sqlite\\_%' escape '\\' \
             and sql not like 'create virtual table%' order by rowid",
        )
        .map_err(sql_err("list tables"))?;
    let names = stmt.query_map([], |r| r.get::<_, String>(0)).map_err(sql_err("list tables"))?;
    names.collect::<rusqlite::Result<Vec<_>>>().map_err(sql_err("list tables"))
}

/// Opens the dump's own snapshot copy, which nothing writes while it is open, with SQLite's
/// `immutable=1`: no locks and no `-wal`/`-shm` beside it. The copy keeps the source's header, so
/// the copy of a WAL database says WAL, and a plain read-only connection to it creates those two
/// files and, being read-only, cannot remove them (they outlived every backup in `--temp-dir`).
pub(super) fn open_snapshot(path: &Path) -> Result<Connection> {
    Connection::open_with_flags(
        immutable_uri(path),
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX | OpenFlags::SQLITE_OPEN_URI,
    )
    .map_err(sql_err(format!("open {}", path.display())))
}

/// `file:<path>?immutable=1`, every byte of the path outside `[A-Za-z0-9/._~-]` percent-encoded
/// (SQLite decodes `%XX` in a URI's path).
fn immutable_uri(path: &Path) -> String {
    use std::fmt::Write;
    use std::os::unix::ffi::OsStrExt;
    let mut uri = String::from("file:");
    for &b in path.as_os_str().as_bytes() {
        if b.is_ascii_alphanumeric() || b"/._~-".contains(&b) {
            uri.push(char::from(b));
        } else {
            let _ = write!(uri, "%{b:02X}");
        }
    }
    uri.push_str("?immutable=1");
    uri
}

pub(super) fn open_read_only(path: &Path) -> Result<Connection> {
    Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX)
        .map_err(sql_err(format!("open {}", path.display())))
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
    // Nor is it synced by SQLite: the dump's copy is read by this process alone, through the
    // page cache, and removed after the backup (or by the next one after a crash), so SQLite's
    // default (FULL) fsync at the end of the copy was a wait on the disk for pages usually
    // deleted before the kernel would have written them back at all. `guard`'s copy, which must
    // survive a crash, is synced by its caller before the command runs ([`super::clone`]).
    dst.execute_batch("pragma synchronous = off").map_err(sql_err("configure snapshot file"))?;
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A snapshot whose path has bytes a URI gives meaning to (`?`, `#`, `%`, space, non-ASCII)
    /// opens as that file, and opening a WAL copy creates nothing beside it.
    #[test]
    fn snapshots_open_immutable_whatever_their_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a b?c#d%41é.snapshot");
        let c = Connection::open(&path).unwrap();
        c.execute_batch("pragma journal_mode = wal; create table t (x); insert into t values (42);").unwrap();
        drop(c);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
        let c = open_snapshot(&path).unwrap();
        let x: i64 = c.query_row("select x from t", [], |r| r.get(0)).unwrap();
        assert_eq!(x, 42);
        drop(c);
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names.len(), 1, "{names:?}");
        assert!(open_snapshot(&dir.path().join("a b")).is_err(), "no file of that name");
    }
}
