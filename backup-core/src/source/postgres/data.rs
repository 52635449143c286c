//! Chunk loading shared by the restore sessions: `COPY ... FROM STDIN` of a table's chunk, the
//! large-object check, and which manifest entry an object belongs to.

use std::collections::BTreeMap;

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use tokio_postgres::{Client, CopyInSink};

use super::conn::{column_list, pg_err, qualified};
use super::large_object::{self, Expected};
use crate::codec::ByteStream;
use crate::error::{Error, Result};
use crate::format::manifest::{ObjectEntry, TableEntry};
use crate::source::pg_binary::{self, RowEncoder};

/// Loads one chunk of a table's text COPY lines: as binary COPY when every column's type has an
/// exact encoder ([`pg_binary`]; the server then skips its text parsing), otherwise as the text
/// it is. A line the encoder refuses (or one longer than [`BINARY_LINE_LIMIT`]) ends the binary
/// COPY with the rows before it and sends the rest of the chunk as text COPY: the server parses
/// those lines itself. Rows are counted from both. `freeze`: the COPYs write their rows already
/// frozen (`FREEZE`), legal only in the transaction that created or truncated `t` (see
/// [`begin_table_load`]).
pub(super) async fn copy_into(c: &Client, t: &TableEntry, data: ByteStream, freeze: bool) -> Result<u64> {
    match binary_encoder(c, t).await? {
        Some(enc) => copy_binary(c, t, enc, data, freeze).await,
        None => copy_text(c, t, Vec::new(), data, freeze).await,
    }
}

/// Opens the load transaction of `t` on `c` (`BEGIN`; the caller commits it after the table's
/// last chunk) and says whether its COPYs may write their rows frozen: when `t` is an ordinary
/// table (not partitioned: COPY FREEZE refuses those) that is still empty, it is emptied again
/// with `TRUNCATE ONLY` inside the transaction (a new, empty file; no trigger or foreign key
/// exists yet in a shadow before post-data), which is what makes `COPY ... FREEZE` legal. A table
/// the pre-data left with rows, or whose TRUNCATE is refused, loads as before, unfrozen.
pub(super) async fn begin_table_load(c: &Client, t: &TableEntry) -> Result<bool> {
    let q = qualified(t);
    let what = format!("begin the load of {}", t.display_name());
    // Asked before the transaction: COPY FREEZE refuses a transaction with earlier snapshots.
    let empty_table: bool = c
        .query_one(
            &format!(
                "SELECT c.relkind = 'r' AND NOT EXISTS (SELECT 1 FROM ONLY {q}) FROM pg_catalog.pg_class c \
                 WHERE c.oid = $1::text::regclass"
            ),
            &[&q],
        )
        .await
        .map_err(pg_err(what.clone()))?
        .get(0);
    c.batch_execute("BEGIN").await.map_err(pg_err(what.clone()))?;
    if !empty_table {
        return Ok(false);
    }
    match c.batch_execute(&format!("TRUNCATE ONLY {q}")).await {
        Ok(()) => Ok(true),
        Err(e) => {
            tracing::debug!("{}: loaded without FREEZE, TRUNCATE refused: {e}", t.display_name());
            c.batch_execute("ROLLBACK; BEGIN").await.map_err(pg_err(what))?;
            Ok(false)
        }
    }
}

/// A text COPY line longer than this is sent as text with the rest of its chunk (the binary
/// path holds one line in memory; the text path holds none).
const BINARY_LINE_LIMIT: usize = 8 << 20;

/// Binary rows are sent in pieces of about this size.
const BINARY_SEND: usize = 256 << 10;

/// The encoder for `t`'s COPY columns (the manifest's column list, typed as the restored table
/// has them), or `None` when a column's type has no encoder or the table has no column list.
async fn binary_encoder(c: &Client, t: &TableEntry) -> Result<Option<RowEncoder>> {
    let Some(names) = t.properties.get("columns").and_then(|v| v.as_array()) else { return Ok(None) };
    let names: Vec<&str> = names.iter().filter_map(|c| c.as_str()).collect();
    if names.is_empty() {
        return Ok(None);
    }
    let rows = c
        .query(
            "SELECT a.attname::text, a.atttypid FROM pg_catalog.pg_attribute a \
             WHERE a.attrelid = $1::text::regclass AND a.attnum > 0 AND NOT a.attisdropped",
            &[&qualified(t)],
        )
        .await
        .map_err(pg_err(format!("read the column types of {}", t.display_name())))?;
    let types: BTreeMap<String, u32> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    let Some(oids) = names.iter().map(|n| types.get(*n).copied()).collect::<Option<Vec<u32>>>() else {
        return Ok(None);
    };
    Ok(RowEncoder::for_oids(&oids))
}

fn copy_sql(t: &TableEntry, binary: bool, freeze: bool) -> String {
    let cols = column_list(t).unwrap_or_default();
    let opts = match (binary, freeze) {
        (true, true) => " (FORMAT binary, FREEZE)",
        (true, false) => " (FORMAT binary)",
        (false, true) => " (FREEZE)",
        (false, false) => "",
    };
    if cols.is_empty() {
        format!("COPY {} FROM STDIN{opts}", qualified(t))
    } else {
        format!("COPY {} ({cols}) FROM STDIN{opts}", qualified(t))
    }
}

/// Text COPY of `first` and then the rest of `data`.
async fn copy_text(
    c: &Client,
    t: &TableEntry,
    first: Vec<u8>,
    mut data: ByteStream,
    freeze: bool,
) -> Result<u64> {
    let sql = copy_sql(t, false, freeze);
    let what = format!("load {}", t.display_name());
    let sink: CopyInSink<Bytes> = c.copy_in(sql.as_str()).await.map_err(pg_err(what.clone()))?;
    futures::pin_mut!(sink);
    if !first.is_empty() {
        sink.as_mut().send(Bytes::from(first)).await.map_err(pg_err(what.clone()))?;
    }
    while let Some(b) = data.next().await {
        // On error the sink is dropped unfinished, which aborts the COPY.
        let b = b?;
        sink.as_mut().send(b).await.map_err(pg_err(what.clone()))?;
    }
    sink.as_mut().finish().await.map_err(pg_err(what))
}

/// Binary COPY of the chunk's lines, until the encoder refuses one (see [`copy_into`]).
async fn copy_binary(
    c: &Client,
    t: &TableEntry,
    mut enc: RowEncoder,
    mut data: ByteStream,
    freeze: bool,
) -> Result<u64> {
    let what = format!("load {}", t.display_name());
    let sink: CopyInSink<Bytes> =
        c.copy_in(copy_sql(t, true, freeze).as_str()).await.map_err(pg_err(what.clone()))?;
    futures::pin_mut!(sink);
    let mut out: Vec<u8> = Vec::with_capacity(BINARY_SEND + (64 << 10));
    out.extend_from_slice(pg_binary::HEADER);
    // The start of a line whose end is in a later piece.
    let mut pending: Vec<u8> = Vec::new();
    // Set when a line goes as text: that line and everything after it.
    let mut text_rest: Option<(Vec<u8>, String)> = None;
    'stream: while let Some(b) = data.next().await {
        // On error the sink is dropped unfinished, which aborts the COPY.
        let b = b?;
        let mut pos = 0;
        if !pending.is_empty() {
            let Some(nl) = memchr::memchr(b'\n', &b) else {
                pending.extend_from_slice(&b);
                if pending.len() > BINARY_LINE_LIMIT {
                    text_rest = Some((std::mem::take(&mut pending), "a line longer than 8 MiB".into()));
                    break 'stream;
                }
                continue;
            };
            pending.extend_from_slice(&b[..nl]);
            if let Err(r) = enc.encode_line(&pending, &mut out) {
                let mut rest = std::mem::take(&mut pending);
                rest.push(b'\n');
                rest.extend_from_slice(&b[nl + 1..]);
                text_rest = Some((rest, refusal(&r)));
                break 'stream;
            }
            pending.clear();
            pos = nl + 1;
        }
        let base = pos;
        for nl in memchr::memchr_iter(b'\n', &b[base..]).map(|p| p + base) {
            if let Err(r) = enc.encode_line(&b[pos..nl], &mut out) {
                text_rest = Some((b[pos..].to_vec(), refusal(&r)));
                break 'stream;
            }
            pos = nl + 1;
        }
        pending.extend_from_slice(&b[pos..]);
        if pending.len() > BINARY_LINE_LIMIT {
            text_rest = Some((std::mem::take(&mut pending), "a line longer than 8 MiB".into()));
            break 'stream;
        }
        if out.len() >= BINARY_SEND {
            let piece =
                Bytes::from(std::mem::replace(&mut out, Vec::with_capacity(BINARY_SEND + (64 << 10))));
            sink.as_mut().send(piece).await.map_err(pg_err(what.clone()))?;
        }
    }
    // A last line without its newline (text COPY takes it as a line too).
    if text_rest.is_none()
        && !pending.is_empty()
        && let Err(r) = enc.encode_line(&pending, &mut out)
    {
        text_rest = Some((std::mem::take(&mut pending), refusal(&r)));
    }
    out.extend_from_slice(pg_binary::TRAILER);
    sink.as_mut().send(Bytes::from(out)).await.map_err(pg_err(what.clone()))?;
    let rows = sink.as_mut().finish().await.map_err(pg_err(what))?;
    match text_rest {
        None => Ok(rows),
        Some((rest, why)) => {
            tracing::info!("{}: {why}; the rest of this chunk loads as text COPY", t.display_name());
            Ok(rows + copy_text(c, t, rest, data, freeze).await?)
        }
    }
}

fn refusal(r: &pg_binary::Refused) -> String {
    format!("column {}: {}", r.column + 1, r.reason)
}

pub(super) fn is_large_objects(object: &ObjectEntry) -> bool {
    object.table.is_none() && object.format == large_object::FORMAT
}

/// The large-object check of a session, if its manifest recorded any.
pub(super) async fn check_large_objects(
    c: &Client,
    props: &BTreeMap<String, serde_json::Value>,
) -> Result<Vec<String>> {
    let Some(want) = Expected::from_properties(props)? else { return Ok(Vec::new()) };
    let got = large_object::check(c, &want).await?;
    Ok(vec![format!("{} large object(s) ({} bytes) restored and verified", got.count, got.bytes)])
}

pub(super) fn table_of<'a>(tables: &'a [TableEntry], object: &ObjectEntry) -> Result<&'a TableEntry> {
    object
        .table
        .and_then(|i| tables.get(i))
        .ok_or_else(|| Error::InvalidInput(format!("object {} has no table", object.key)))
}
