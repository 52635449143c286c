//! Dump of the data: a snapshot's tables cut into primary-key range chunks ([`plan`]), each
//! chunk read with one `SELECT` on a snapshot worker and streamed as the TSV that
//! `LOAD DATA LOCAL INFILE` reads back ([`escape_into`]), its rows summed for the content
//! checksum on the way.

use std::sync::atomic::{AtomicU64, Ordering};

use bytes::{BufMut, Bytes, BytesMut};
use mysql_async::Conn;
use mysql_async::prelude::Queryable;
use tokio::sync::mpsc;

use super::checksum::RowDigests;
use super::conn::{exec, qi, query_text, short};
use super::table::{Col, ColKind, TableInfo, TableKind, TableProps};
use crate::error::{Error, Result};
use crate::format::layout;
use crate::format::manifest::{ObjectKind, TableEntry};
use crate::source::rowsum::Md5Sum;
use crate::source::{ChunkPlan, ChunkSpec, DumpPlan};

const FLUSH_AT: usize = 1 << 20;
/// Room kept in the TSV buffer past [`FLUSH_AT`]: the row that crosses it is written into the
/// same allocation (a buffer that had to grow was copied whole by the reallocation, about every
/// byte of the dump once more); only a row longer than this grows it.
const ROW_ROOM: usize = 64 << 10;

const INT_TYPES: [&str; 5] = ["tinyint", "smallint", "mediumint", "int", "bigint"];

/// The SELECT list of a dump.
fn select_list(cols: &[Col]) -> String {
    cols.iter()
        .map(|c| match c.kind {
            ColKind::Bit => format!("{}+0", qi(&c.name)),
            ColKind::Float => format!("CAST({} AS DOUBLE)", qi(&c.name)),
            ColKind::Plain | ColKind::Period | ColKind::TextForm => qi(&c.name),
            ColKind::Enum => c.enum_expr(),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Appends one value escaped for `LOAD DATA ... FIELDS TERMINATED BY '\t' ESCAPED BY '\\'`.
/// The special bytes are found with `memchr` (two vectorised scans, each resumed only once it
/// has been passed), so the runs between them are copied whole: most values have none.
pub(crate) fn escape_into(out: &mut BytesMut, v: &[u8]) {
    let find_a = |from: usize| memchr::memchr3(b'\\', b'\t', b'\n', &v[from..]).map(|p| p + from);
    let find_b = |from: usize| memchr::memchr2(b'\r', 0, &v[from..]).map(|p| p + from);
    let (mut a, mut b) = (find_a(0), find_b(0));
    let mut start = 0;
    loop {
        let i = match (a, b) {
            (None, None) => break,
            (Some(x), None) | (None, Some(x)) => x,
            (Some(x), Some(y)) => x.min(y),
        };
        let esc: &[u8] = match v[i] {
            b'\\' => b"\\\\",
            b'\t' => b"\\t",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            _ => b"\\0",
        };
        out.put_slice(&v[start..i]);
        out.put_slice(esc);
        start = i + 1;
        if a == Some(i) {
            a = find_a(start);
        }
        if b == Some(i) {
            b = find_b(start);
        }
    }
    out.put_slice(&v[start..]);
}

/// The tables of the manifest and their chunks, largest first: a table over `chunk_bytes` with
/// a one-column integer primary key is cut into key ranges, any other is one chunk.
pub(crate) async fn plan(c: &mut Conn, db: &str, infos: &[TableInfo], chunk_bytes: u64) -> Result<DumpPlan> {
    let mut tables = Vec::new();
    let mut chunks = Vec::new();
    for t in infos.iter().filter(|t| t.kind != TableKind::Sequence) {
        let idx = tables.len();
        let props = TableProps { columns: t.cols.clone(), versioned: t.kind == TableKind::Versioned };
        tables.push(TableEntry {
            schema: None,
            name: t.name.clone(),
            key: layout::table_key(idx, None, &t.name),
            rows: 0,
            checksum: None,
            checksum_algo: None,
            properties: props.into_properties(),
        });
        let ranges = key_ranges(c, db, t, chunk_bytes).await?;
        let size = t.data_length / ranges.len() as u64;
        for (i, spec) in ranges.into_iter().enumerate() {
            chunks.push(ChunkPlan {
                table: Some(idx),
                group: None,
                chunk: i as u32,
                kind: ObjectKind::Data,
                format: "mysql-tsv".into(),
                ext: "tsv".into(),
                size_hint: Some(size),
                offset: None,
                spec,
            });
        }
    }
    chunks.sort_by_key(|c| std::cmp::Reverse(c.size_hint.unwrap_or(0)));
    Ok(DumpPlan { tables, chunks })
}

/// The chunks of one table: key ranges of about `chunk_bytes` each, or the whole table.
async fn key_ranges(c: &mut Conn, db: &str, t: &TableInfo, chunk_bytes: u64) -> Result<Vec<ChunkSpec>> {
    let whole = vec![ChunkSpec::Whole];
    if t.data_length <= chunk_bytes
        || t.pk.len() != 1
        || !INT_TYPES.contains(&t.pk[0].1.to_ascii_lowercase().as_str())
    {
        return Ok(whole);
    }
    let pk = qi(&t.pk[0].0);
    let history = if t.kind == TableKind::Versioned { " FOR SYSTEM_TIME ALL" } else { "" };
    exec(c, "SET SESSION character_set_results = utf8mb4").await?;
    let mm = query_text(c, &format!("SELECT MIN({pk}), MAX({pk}) FROM {}.{}{history}", qi(db), qi(&t.name)))
        .await?;
    let r = mm.into_iter().next().unwrap_or_default();
    let (Some(lo), Some(hi)) = (
        r.first().cloned().flatten().and_then(|s| s.parse::<i128>().ok()),
        r.get(1).cloned().flatten().and_then(|s| s.parse::<i128>().ok()),
    ) else {
        return Ok(whole);
    };
    let n = t.data_length.div_ceil(chunk_bytes).clamp(1, 10_000) as i128;
    let step = ((hi - lo + 1) / n).max(1);
    let mut ranges = Vec::new();
    let mut start = lo;
    let mut first = true;
    while start <= hi {
        let end = start + step;
        let last = end > hi;
        ranges.push(ChunkSpec::KeyRange {
            lo: if first { None } else { Some(start) },
            hi: if last { None } else { Some(end) },
        });
        first = false;
        start = end;
    }
    Ok(ranges)
}

/// The `SELECT` of one chunk of table `t` (`info`: the snapshot's listing of it).
pub(crate) fn chunk_sql(
    db: &str,
    t: &TableEntry,
    props: &TableProps,
    info: Option<&TableInfo>,
    spec: ChunkSpec,
) -> String {
    let mut sql = format!(
        "SELECT {} FROM {}.{}{}",
        select_list(&props.columns),
        qi(db),
        qi(&t.name),
        if props.versioned { " FOR SYSTEM_TIME ALL" } else { "" }
    );
    if let (Some(info), ChunkSpec::KeyRange { lo, hi }) = (info, spec)
        && let Some((pk, _)) = info.pk.first()
    {
        let mut conds = Vec::new();
        if let Some(lo) = lo {
            conds.push(format!("{} >= {lo}", qi(pk)));
        }
        if let Some(hi) = hi {
            conds.push(format!("{} < {hi}", qi(pk)));
        }
        if !conds.is_empty() {
            sql.push_str(" WHERE ");
            sql.push_str(&conds.join(" AND "));
        }
    }
    sql
}

/// Runs `sql` on `conn` and sends its rows as TSV to `tx`, about [`FLUSH_AT`] bytes at a time,
/// counting them; returns their checksum (`None` when the receiver went away).
pub(crate) async fn stream_rows(
    conn: &mut Conn,
    sql: &str,
    tx: &mpsc::Sender<Result<Bytes>>,
    counter: &AtomicU64,
) -> Result<Option<Md5Sum>> {
    exec(conn, "SET SESSION character_set_results = NULL").await?;
    let mut sum = RowDigests::default();
    let mut result =
        conn.query_iter(sql).await.map_err(|e| Error::source(format!("MySQL: {}", short(sql)), e))?;
    let mut buf = BytesMut::with_capacity(FLUSH_AT + ROW_ROOM);
    let mut n = 0u64;
    let mut other_text: Vec<Option<Vec<u8>>> = Vec::new();
    while let Some(row) = result.next().await.map_err(|e| Error::source("read rows", e))? {
        let values = row.unwrap_raw();
        // The text protocol gives bytes; anything else is printed as the server would.
        other_text.clear();
        other_text.extend(values.iter().map(|v| match v {
            Some(mysql_async::Value::Bytes(_)) | Some(mysql_async::Value::NULL) | None => None,
            Some(other) => Some(other.as_sql(true).trim_matches('\'').as_bytes().to_vec()),
        }));
        let bytes = |i: usize| -> Option<&[u8]> {
            match (&values[i], &other_text[i]) {
                (_, Some(t)) => Some(t.as_slice()),
                (Some(mysql_async::Value::Bytes(b)), None) => Some(b.as_slice()),
                _ => None,
            }
        };
        for i in 0..values.len() {
            if i > 0 {
                buf.put_u8(b'\t');
            }
            match bytes(i) {
                Some(b) => escape_into(&mut buf, b),
                None => buf.put_slice(b"\\N"),
            }
        }
        sum.add_row((0..values.len()).map(bytes));
        buf.put_u8(b'\n');
        n += 1;
        if buf.len() >= FLUSH_AT {
            counter.store(n, Ordering::Relaxed);
            if tx.send(Ok(buf.split().freeze())).await.is_err() {
                return Ok(None);
            }
            buf.reserve(FLUSH_AT + ROW_ROOM);
        }
    }
    counter.store(n, Ordering::Relaxed);
    if !buf.is_empty() && tx.send(Ok(buf.freeze())).await.is_err() {
        return Ok(None);
    }
    Ok(Some(sum.finish()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_every_special_byte() {
        let mut b = BytesMut::new();
        escape_into(&mut b, b"a\\b\tc\nd\re\0f\\N");
        assert_eq!(&b[..], b"a\\\\b\\tc\\nd\\re\\0f\\\\N");
    }

    /// The scanning escape gives what a byte-by-byte escape gives, specials at any position,
    /// adjacent, at the ends, or none.
    #[test]
    fn escape_matches_byte_by_byte() {
        fn naive(v: &[u8]) -> Vec<u8> {
            let mut out = Vec::new();
            for &b in v {
                match b {
                    b'\\' => out.extend_from_slice(b"\\\\"),
                    b'\t' => out.extend_from_slice(b"\\t"),
                    b'\n' => out.extend_from_slice(b"\\n"),
                    b'\r' => out.extend_from_slice(b"\\r"),
                    0 => out.extend_from_slice(b"\\0"),
                    _ => out.push(b),
                }
            }
            out
        }
        let alphabet = b"ab\\\t\n\r\0x";
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        for len in 0..200usize {
            let v: Vec<u8> = (0..len)
                .map(|_| {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    alphabet[(seed % alphabet.len() as u64) as usize]
                })
                .collect();
            let mut b = BytesMut::new();
            escape_into(&mut b, &v);
            assert_eq!(&b[..], &naive(&v)[..], "{v:?}");
        }
    }
}
