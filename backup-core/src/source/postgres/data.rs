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

pub(super) async fn copy_into(c: &Client, t: &TableEntry, mut data: ByteStream) -> Result<u64> {
    let cols = column_list(t).unwrap_or_default();
    let sql = if cols.is_empty() {
        format!("COPY {} FROM STDIN", qualified(t))
    } else {
        format!("COPY {} ({cols}) FROM STDIN", qualified(t))
    };
    let what = format!("load {}", t.display_name());
    let sink: CopyInSink<Bytes> = c.copy_in(sql.as_str()).await.map_err(pg_err(what.clone()))?;
    futures::pin_mut!(sink);
    while let Some(b) = data.next().await {
        // On error the sink is dropped unfinished, which aborts the COPY.
        let b = b?;
        sink.as_mut().send(b).await.map_err(pg_err(what.clone()))?;
    }
    sink.as_mut().finish().await.map_err(pg_err(what))
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
