//! The content checksum of a table (the proof of restore): the dump computes it on the rows it
//! streams ([`RowDigests`]), a restore recomputes it on the server ([`checksum_sql`]) unless the
//! backup's `CHECKSUM TABLE` from the same server version already confirms the content.

use mysql_async::Conn;

use super::conn::{exec, qi, query_text, query_value};
use super::table::{ColKind, TableProps};
use crate::codec::md5_lanes;
use crate::error::{Error, Result};
use crate::format::manifest::TableEntry;
use crate::source::TableStats;
use crate::source::rowsum::Md5Sum;

/// Content checksum algorithm: per row the MD5 of every dumped column as `len:bytes` (or `N` for
/// NULL), the bytes being the column exactly as dumped (the server's text for numbers and
/// temporals, the column's own charset for strings, FLOAT widened to DOUBLE, BIT as its unsigned
/// value), summed over rows as two unsigned 64-bit halves. Order independent, duplicate rows
/// count twice. The dump computes it on the rows it streams (no second scan); a restore
/// recomputes it on the server with [`checksum_sql`].
pub const CHECKSUM_ALGO: &str = "mysql-md5-sum-v2";
/// The first version (backups before 2026-11-24): BIT hashed as its raw bytes; a second scan on
/// the server at dump time. Still verified on restore.
pub const CHECKSUM_ALGO_V1: &str = "mysql-md5-sum-v1";

/// `SELECT COUNT(*), sum-hi, sum-lo` over `db.table` (see [`CHECKSUM_ALGO`]; `v1` for
/// [`CHECKSUM_ALGO_V1`]).
pub(crate) fn checksum_sql(db: &str, table: &str, props: &TableProps, v1: bool) -> String {
    let parts: Vec<String> = props
        .columns
        .iter()
        .map(|c| {
            let v = match (c.kind, v1) {
                (ColKind::Float, _) => format!("CAST(CAST({} AS DOUBLE) AS BINARY)", qi(&c.name)),
                (ColKind::Bit, false) => format!("CAST({}+0 AS BINARY)", qi(&c.name)),
                (ColKind::Enum, false) => c.enum_expr(),
                (ColKind::TextForm, _) => {
                    format!("CAST(CAST({} AS CHAR CHARACTER SET utf8mb4) AS BINARY)", qi(&c.name))
                }
                _ => format!("CAST({} AS BINARY)", qi(&c.name)),
            };
            format!("IFNULL(CONCAT(LENGTH({v}), ':', {v}), 'N')")
        })
        .collect();
    let history = if props.versioned { " FOR SYSTEM_TIME ALL" } else { "" };
    format!(
        "SELECT COUNT(*), IFNULL(SUM(CAST(CONV(SUBSTRING(h, 1, 16), 16, 10) AS UNSIGNED)), 0), \
         IFNULL(SUM(CAST(CONV(SUBSTRING(h, 17, 16), 16, 10) AS UNSIGNED)), 0) \
         FROM (SELECT MD5(CONCAT({})) AS h FROM {}.{}{history}) AS dbb_rows",
        parts.join(", "),
        qi(db),
        qi(table)
    )
}

/// Runs [`checksum_sql`] on the server (restore side) and shapes the result.
pub(crate) async fn stats(
    conn: &mut Conn,
    db: &str,
    table: &str,
    props: &TableProps,
    v1: bool,
) -> Result<TableStats> {
    exec(conn, "SET SESSION character_set_results = utf8mb4").await?;
    let rows = query_text(conn, &checksum_sql(db, table, props, v1)).await?;
    let row = rows.into_iter().next().unwrap_or_default();
    let get = |i: usize| row.get(i).cloned().flatten().unwrap_or_default();
    let n: u64 =
        get(0).parse().map_err(|_| Error::source("MySQL checksum", format!("bad count {:?}", get(0))))?;
    Ok(TableStats {
        rows: n,
        checksum: Some(format!("{}:{}", get(1), get(2))),
        checksum_algo: Some(if v1 { CHECKSUM_ALGO_V1 } else { CHECKSUM_ALGO }.into()),
        ..Default::default()
    })
}

/// Rows gathered before their digests are computed together (whichever comes first): enough
/// that the lanes of [`md5_lanes`] stay full but for the last few messages of a batch, few
/// enough to stay in the core's cache.
const BATCH_ROWS: usize = 1024;
const BATCH_BYTES: usize = 256 << 10;
/// A row whose message would be longer than this is digested as it streams, not gathered.
const LONG_ROW: usize = BATCH_BYTES;

/// A [`CHECKSUM_ALGO`] sum computed on the client over rows as they stream: each row's message
/// (`len:value` or `N` per column) is gathered, and the MD5s of a batch of rows are computed
/// [`md5_lanes::LANES`] at a time ([`md5_lanes::digest_each`]). The same digests as one MD5 per
/// row, so the same sum.
#[derive(Default)]
pub(crate) struct RowDigests {
    sum: Md5Sum,
    /// The messages of the rows gathered so far, back to back.
    buf: Vec<u8>,
    /// Where each gathered row's message ends in `buf`.
    ends: Vec<usize>,
}

impl RowDigests {
    /// Adds one row: `MD5(len:value | 'N' per column)`. A row whose message would pass
    /// [`LONG_ROW`] bytes is digested on its own as it is read (its start moved out of the
    /// buffer), so the buffer never holds a copy of a long value.
    pub(crate) fn add_row<'a>(&mut self, mut values: impl Iterator<Item = Option<&'a [u8]>>) {
        let start = self.buf.len();
        // Past this, the row's message may be longer than LONG_ROW (a length takes at most 20
        // digits and its ':' one byte more).
        let limit = start + LONG_ROW - 21;
        while let Some(v) = values.next() {
            let Some(b) = v else {
                self.buf.push(b'N');
                continue;
            };
            if self.buf.len() + b.len() > limit {
                self.add_long_row(start, std::iter::once(v).chain(values));
                return;
            }
            self.buf.extend_from_slice(itoa::Buffer::new().format(b.len()).as_bytes());
            self.buf.push(b':');
            self.buf.extend_from_slice(b);
        }
        self.ends.push(self.buf.len());
        if self.ends.len() >= BATCH_ROWS || self.buf.len() >= BATCH_BYTES {
            self.flush();
        }
    }

    /// The rest of a row whose message may pass [`LONG_ROW`]: its part gathered so far (from
    /// `start`) is taken out of the buffer and the row is digested on its own, as it streams.
    #[cold]
    fn add_long_row<'a>(&mut self, start: usize, values: impl Iterator<Item = Option<&'a [u8]>>) {
        use md5::Digest;
        let mut h = md5::Md5::new();
        h.update(&self.buf[start..]);
        self.buf.truncate(start);
        for v in values {
            match v {
                Some(b) => {
                    h.update(itoa::Buffer::new().format(b.len()).as_bytes());
                    h.update(b":");
                    h.update(b);
                }
                None => h.update(b"N"),
            }
        }
        self.sum.add_digest(&h.finalize());
    }

    fn flush(&mut self) {
        let mut start = 0;
        let msgs: Vec<&[u8]> = self
            .ends
            .iter()
            .map(|&end| {
                let m = &self.buf[start..end];
                start = end;
                m
            })
            .collect();
        let sum = &mut self.sum;
        md5_lanes::digest_each(&msgs, |_, d| sum.add_digest(&d));
        self.buf.clear();
        self.ends.clear();
    }

    /// The sum of every row added.
    pub(crate) fn finish(mut self) -> Md5Sum {
        self.flush();
        self.sum
    }
}

/// The manifest table property holding `CHECKSUM TABLE` at dump time and the server version
/// that computed it.
pub(crate) const CHECKSUM_TABLE_KEY: &str = "checksum_table";

/// `CHECKSUM TABLE` (in the current transaction's snapshot), `None` when the server has none.
pub(crate) async fn checksum_table(c: &mut Conn, db: &str, table: &str) -> Result<Option<String>> {
    let r = query_text(c, &format!("CHECKSUM TABLE {}.{}", qi(db), qi(table))).await?;
    Ok(r.into_iter().next().and_then(|row| row.into_iter().nth(1).flatten()))
}

/// `COUNT(*)` of `db.table` in the current transaction's snapshot (over its whole history when
/// system-versioned).
pub(crate) async fn row_count(c: &mut Conn, db: &str, table: &str, versioned: bool) -> Result<u64> {
    let history = if versioned { " FOR SYSTEM_TIME ALL" } else { "" };
    let count = query_value(c, &format!("SELECT COUNT(*) FROM {}.{}{history}", qi(db), qi(table)))
        .await?
        .unwrap_or_default();
    count.parse().map_err(|_| Error::source("MySQL row count", format!("bad count {count:?}")))
}

/// A snapshot table's stats: the checksum of the rows as they were dumped (`sum`, no second
/// scan), the row count from the snapshot (so a chunking mistake shows as a mismatch), and for
/// plain tables `CHECKSUM TABLE`, which the same server version recomputes much faster on
/// restore. The two server-side statements run here one after the other; a backup with a stats
/// worker runs them through [`super::stats`] instead and builds the same stats with
/// [`snapshot_table_stats`].
pub(crate) async fn snapshot_stats(
    c: &mut Conn,
    db: &str,
    table: &TableEntry,
    sum: Md5Sum,
    server_version: &str,
) -> Result<TableStats> {
    let props = TableProps::from_entry(table)?;
    exec(c, "SET SESSION character_set_results = utf8mb4").await?;
    let rows = row_count(c, db, &table.name, props.versioned).await?;
    let value = if props.versioned { None } else { checksum_table(c, db, &table.name).await? };
    Ok(snapshot_table_stats(sum, rows, value, server_version))
}

/// [`snapshot_stats`] from its parts: the dump's `sum`, the snapshot's row count and `CHECKSUM
/// TABLE` value.
pub(crate) fn snapshot_table_stats(
    sum: Md5Sum,
    rows: u64,
    checksum_table: Option<String>,
    server_version: &str,
) -> TableStats {
    let mut extra = std::collections::BTreeMap::new();
    if let Some(v) = checksum_table {
        extra.insert(
            CHECKSUM_TABLE_KEY.to_string(),
            serde_json::json!({ "server": server_version, "value": v }),
        );
    }
    TableStats { rows, checksum: Some(sum.checksum()), checksum_algo: Some(CHECKSUM_ALGO.into()), extra }
}

/// A restored table's stats. The backup's `CHECKSUM TABLE`, when the same server version
/// recorded it, confirms the content in a fraction of the time; anything else (other version,
/// versioned table, a differing value, which can also come from a different physical format,
/// or `full_checksum`) recomputes the content checksum on the server.
pub(crate) async fn restored_stats(
    c: &mut Conn,
    db: &str,
    table: &TableEntry,
    server_version: &str,
    full_checksum: bool,
) -> Result<TableStats> {
    let props = TableProps::from_entry(table)?;
    if !full_checksum
        && !props.versioned
        && table.checksum.is_some()
        && let Some(rec) = table.properties.get(CHECKSUM_TABLE_KEY)
        && rec.get("server").and_then(|v| v.as_str()) == Some(server_version)
        && let Some(want) = rec.get("value").and_then(|v| v.as_str())
    {
        let count = query_value(c, &format!("SELECT COUNT(*) FROM {}.{}", qi(db), qi(&table.name)))
            .await?
            .and_then(|n| n.parse::<u64>().ok());
        let got = checksum_table(c, db, &table.name).await?;
        if count != Some(table.rows) || got.as_deref() != Some(want) {
            tracing::info!(table = %table.name, "CHECKSUM TABLE differs from the backup's; recomputing the content checksum");
        } else {
            return Ok(TableStats {
                rows: table.rows,
                checksum: table.checksum.clone(),
                checksum_algo: table.checksum_algo.clone(),
                ..Default::default()
            });
        }
    }
    let v1 = table.checksum_algo.as_deref() == Some(CHECKSUM_ALGO_V1);
    stats(c, db, &table.name, &props, v1).await
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One scalar MD5 per row, as the format defines it (and as the dump computed it before the
    /// lanes).
    fn scalar_sum(rows: &[Vec<Option<Vec<u8>>>]) -> Md5Sum {
        use md5::Digest;
        let mut sum = Md5Sum::default();
        for row in rows {
            let mut h = md5::Md5::new();
            for v in row {
                match v {
                    Some(b) => {
                        h.update(b.len().to_string().as_bytes());
                        h.update(b":");
                        h.update(b);
                    }
                    None => h.update(b"N"),
                }
            }
            sum.add_digest(&h.finalize());
        }
        sum
    }

    /// Rows of random shapes (NULLs, empty values, values of up to 5000 bytes, rows past the
    /// batch's byte limit, now and then a row longer than [`LONG_ROW`]), any number of rows
    /// around the batch sizes: the same sum as one MD5 per row.
    #[test]
    fn row_digests_equal_one_md5_per_row() {
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut rnd = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for count in
            [0, 1, 2, 3, 7, 8, 9, 100, BATCH_ROWS - 1, BATCH_ROWS, BATCH_ROWS + 1, 2 * BATCH_ROWS + 5, 3000]
        {
            let rows: Vec<Vec<Option<Vec<u8>>>> = (0..count)
                .map(|_| {
                    let cols = 1 + (rnd() % 6) as usize;
                    (0..cols)
                        .map(|_| match rnd() % 10 {
                            // Now and then a value longer than a batch (the row is digested alone).
                            0 if rnd() % 64 == 0 => {
                                Some(vec![rnd() as u8; LONG_ROW + (rnd() % 4096) as usize])
                            }
                            0 => None,
                            1 => Some(Vec::new()),
                            2 => Some((0..(rnd() % 5000)).map(|_| rnd() as u8).collect()),
                            _ => Some((0..(rnd() % 120)).map(|_| rnd() as u8).collect()),
                        })
                        .collect()
                })
                .collect();
            let mut d = RowDigests::default();
            for row in &rows {
                d.add_row(row.iter().map(|v| v.as_deref()));
            }
            let got = d.finish();
            assert_eq!(got, scalar_sum(&rows), "{count} rows");
            assert_eq!(got.rows, count as u64);
        }
    }

    /// A row whose message is longer than a batch (a LONGBLOB of megabytes) is digested as it
    /// streams, not gathered: the gathered messages stay within two batches' bytes whatever the
    /// row's size (the copy of a 30 MiB row was otherwise kept until the chunk's end, per dump
    /// worker, beside the row itself and its escaped TSV), and the sum is one MD5 per row.
    #[test]
    fn a_row_longer_than_a_batch_is_not_gathered() {
        let big = || Some(vec![7u8; 8 << 20]);
        let small = || Some(b"abc".to_vec());
        let rows: Vec<Vec<Option<Vec<u8>>>> = vec![
            vec![small(), None],
            vec![big(), small()],
            // Past the limit after a few values: the row's start is moved out of the buffer.
            vec![small(), None, big(), None, Some(Vec::new())],
            // Past it by values shorter than the limit.
            vec![Some(vec![1u8; LONG_ROW / 2]), Some(vec![2u8; LONG_ROW / 2]), small()],
            // Just under it: gathered.
            vec![Some(vec![3u8; LONG_ROW - 30])],
            vec![Some(Vec::new())],
            vec![None],
        ];
        let mut d = RowDigests::default();
        for (n, row) in rows.iter().enumerate() {
            d.add_row(row.iter().map(|v| v.as_deref()));
            assert!(
                d.buf.capacity() <= 4 * BATCH_BYTES,
                "row {n}: {} bytes held for the gathered messages",
                d.buf.capacity()
            );
        }
        let got = d.finish();
        assert_eq!(got, scalar_sum(&rows));
        assert_eq!(got.rows, rows.len() as u64);
    }
}
