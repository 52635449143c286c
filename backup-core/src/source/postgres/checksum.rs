//! Table stats of a restored PostgreSQL table, with the algorithm its manifest entry names
//! (the dump side sums the same COPY lines while streaming, see [`dump`](super::dump)).

use futures::StreamExt;
use tokio_postgres::Client;

use super::conn::{column_list, pg_err, qualified};
use crate::error::Result;
use crate::format::manifest::TableEntry;
use crate::source::TableStats;
use crate::source::rowsum::{LineSum, RowHash};

/// Name of the per-table content checksum: the [`RowSum`](crate::source::rowsum::RowSum) of the
/// XXH3-128 of each of the table's COPY text lines (one per row, explicit column list, fixed text
/// settings [`conn::SESSION_SETTINGS`]), computed by the client while the rows stream (no second
/// scan at backup time).
pub(crate) const CHECKSUM_ALGO: &str = "pg-copy-xxh3-sum-v3";

/// The same sum with MD5 per line (backups before 2026-12-03). Manifests that name it are still
/// verified with it.
pub(crate) const CHECKSUM_ALGO_V2: &str = "pg-copy-md5-sum-v2";

/// The first algorithm, computed by the server: sum over rows of the first 64 bits of
/// md5(row text), as a decimal. Manifests that name it are still verified with it.
pub(crate) const CHECKSUM_ALGO_V1: &str = "pg-md5-row-sum-v1";

/// `SELECT count, checksum` of a table ([`CHECKSUM_ALGO_V1`]), same text on both sides.
fn stats_sql_v1(t: &TableEntry) -> String {
    format!(
        "SELECT count(*), coalesce(sum(('x' || substr(md5(dbbackup_row_::text), 1, 16))::bit(64)::bigint::numeric), 0)::text \
         FROM ONLY {} dbbackup_row_",
        qualified(t)
    )
}

/// A loaded table's stats with the algorithm its manifest entry names: [`CHECKSUM_ALGO`] and
/// [`CHECKSUM_ALGO_V2`] re-read the table with the same COPY as the dump and sum its lines on the
/// client; [`CHECKSUM_ALGO_V1`] asks the server.
pub(crate) async fn table_stats_on(c: &Client, t: &TableEntry) -> Result<TableStats> {
    let what = format!("checksum table {}", t.display_name());
    if t.checksum_algo.as_deref() == Some(CHECKSUM_ALGO_V1) {
        let row = c.query_one(&stats_sql_v1(t), &[]).await.map_err(pg_err(what))?;
        return Ok(TableStats {
            rows: u64::try_from(row.get::<_, i64>(0)).unwrap_or(0),
            checksum: Some(row.get(1)),
            checksum_algo: Some(CHECKSUM_ALGO_V1.into()),
            ..Default::default()
        });
    }
    let sql = match column_list(t) {
        Some(cols) if !cols.is_empty() => {
            format!("COPY (SELECT {cols} FROM ONLY {}) TO STDOUT", qualified(t))
        }
        _ => format!("COPY {} TO STDOUT", qualified(t)),
    };
    let mut out = std::pin::pin!(c.copy_out(sql.as_str()).await.map_err(pg_err(what.clone()))?);
    let (hash, algo) = if t.checksum_algo.as_deref() == Some(CHECKSUM_ALGO_V2) {
        (RowHash::Md5, CHECKSUM_ALGO_V2)
    } else {
        (RowHash::Xxh3, CHECKSUM_ALGO)
    };
    let mut sum = LineSum::new(hash);
    while let Some(b) = out.next().await {
        sum.feed(&b.map_err(pg_err(what.clone()))?);
    }
    let sum = sum.finish()?;
    Ok(TableStats {
        rows: sum.rows,
        checksum: Some(sum.checksum()),
        checksum_algo: Some(algo.into()),
        ..Default::default()
    })
}
