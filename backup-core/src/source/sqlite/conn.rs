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
