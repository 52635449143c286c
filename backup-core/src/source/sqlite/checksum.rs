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
    // The error contexts are built only on an error: `sql_err(format!(..))` per value was an
    // allocation and a format for every column of every row (~0.4 s of CPU per GiB scanned).
    let scan_err = |e| sql_err(format!("scan table {table}"))(e);
    let mut stmt = conn.prepare(&sql).map_err(scan_err)?;
    let ncols = stmt.column_count();
    let mut rows = stmt.query([]).map_err(scan_err)?;
    let mut h = RowHasher::default();
    let mut n = 0u64;
    while let Some(row) = rows.next().map_err(scan_err)? {
        n += 1;
        for i in 0..ncols {
            use rusqlite::types::ValueRef;
            match row.get_ref(i).map_err(|e| sql_err(format!("read table {table}"))(e))? {
                ValueRef::Null => h.put(&[0u8]),
                ValueRef::Integer(v) => {
                    h.put(&[1u8]);
                    h.put(&v.to_le_bytes());
                }
                ValueRef::Real(v) => {
                    h.put(&[2u8]);
                    h.put(&v.to_bits().to_le_bytes());
                }
                ValueRef::Text(t) => {
                    h.put(&[3u8]);
                    h.put(&(t.len() as u64).to_le_bytes());
                    h.put(t);
                }
                ValueRef::Blob(b) => {
                    h.put(&[4u8]);
                    h.put(&(b.len() as u64).to_le_bytes());
                    h.put(b);
                }
            }
        }
    }
    let h = h.finish();
    Ok(TableStats {
        rows: n,
        checksum: Some(hex::encode(h)),
        checksum_algo: Some(CHECKSUM_ALGO.into()),
        ..Default::default()
    })
}

/// A backup's table stats: the row count only (`count(*)` over the table's own b-tree, no value
/// read). Its page image digest ([`super::image`]) proves the whole file byte for byte on restore,
/// and with it every table's content, so a content checksum would prove nothing more (docs/FORMAT.md).
pub(super) fn table_rows_blocking(conn: &Connection, table: &str) -> Result<TableStats> {
    let sql = format!("select count(*) from {} not indexed", quote_ident(table));
    let n: i64 =
        conn.query_row(&sql, [], |r| r.get(0)).map_err(sql_err(format!("count the rows of {table}")))?;
    Ok(TableStats { rows: n as u64, ..Default::default() })
}

/// SHA-256 fed through a buffer: the values of a row are mostly a few bytes each (a tag, a length,
/// an integer), and one `update` per 64 KiB costs less than one per value. The digest is the
/// same (SHA-256 of the concatenation).
struct RowHasher {
    h: Sha256,
    buf: Vec<u8>,
}

const ROW_HASHER_BUF: usize = 64 << 10;

impl Default for RowHasher {
    fn default() -> Self {
        RowHasher { h: Sha256::new(), buf: Vec::with_capacity(ROW_HASHER_BUF) }
    }
}

impl RowHasher {
    fn put(&mut self, b: &[u8]) {
        if self.buf.len() + b.len() > ROW_HASHER_BUF {
            self.h.update(&self.buf);
            self.buf.clear();
            if b.len() >= ROW_HASHER_BUF {
                self.h.update(b);
                return;
            }
        }
        self.buf.extend_from_slice(b);
    }

    fn finish(mut self) -> [u8; 32] {
        self.h.update(&self.buf);
        self.h.finalize().into()
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    /// `sqlite-rows-sha256-v1` as docs/FORMAT.md defines it, one `update` per piece: the
    /// buffered hasher must give the same digest (older backups' restores compare with it),
    /// whatever the sizes of the values around its buffer's size.
    #[test]
    fn buffered_row_digest_is_the_documented_one() {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch("create table t (id integer primary key, a, b, c)").unwrap();
        let sizes =
            [0usize, 1, 7, 100, ROW_HASHER_BUF - 20, ROW_HASHER_BUF, ROW_HASHER_BUF + 3, 3 * ROW_HASHER_BUF];
        let mut want = Sha256::new();
        let mut put = |tag: u8, body: &[u8], len: bool| {
            want.update([tag]);
            if len {
                want.update((body.len() as u64).to_le_bytes());
            }
            want.update(body);
        };
        for (i, n) in sizes.iter().enumerate() {
            let text = "x".repeat(*n);
            let blob = vec![i as u8; n / 2 + 1];
            let real = i as f64 / 3.0;
            conn.execute(
                "insert into t values (?1, ?2, ?3, ?4)",
                rusqlite::params![i as i64, text, blob, real],
            )
            .unwrap();
            put(1, &(i as i64).to_le_bytes(), false);
            put(3, text.as_bytes(), true);
            put(4, &blob, true);
            put(2, &real.to_bits().to_le_bytes(), false);
        }
        conn.execute("insert into t values (100, null, -5, '')", []).unwrap();
        put(1, &100i64.to_le_bytes(), false);
        put(0, &[], false);
        put(1, &(-5i64).to_le_bytes(), false);
        put(3, b"", true);
        let stats = table_stats_blocking(&conn, "t").unwrap();
        assert_eq!(stats.rows, sizes.len() as u64 + 1);
        assert_eq!(stats.checksum.unwrap(), hex::encode(want.finalize()));
    }
}
