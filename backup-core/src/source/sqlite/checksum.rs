//! Table stats of a SQLite database file ([`CHECKSUM_ALGO`]) and `PRAGMA integrity_check`, the
//! proof a restored file is what was backed up.

use std::path::Path;

use rusqlite::Connection;
use sha2::{Digest, Sha256};

use super::conn::{open_read_only, quote_ident, sql_err};
use crate::error::{Error, Result};
use crate::source::TableStats;

/// Name of the content checksum algorithm (see [`table_stats_blocking`]).
pub const CHECKSUM_ALGO: &str = "sqlite-rows-sha256-v1";

/// Row count and an order-stable SHA-256 over every value of every row (table scanned in key
/// order): per value a type tag, then i64/f64 bits little-endian or a u64 length and the bytes.
pub(super) fn table_stats_blocking(conn: &Connection, table: &str) -> Result<TableStats> {
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

/// `PRAGMA integrity_check` on the file at `path`: anything but a single `ok` is an integrity error.
pub(super) fn integrity_check(path: &Path) -> Result<()> {
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
