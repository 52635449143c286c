//! Dump side: consistent snapshot across worker connections, schema via `SHOW CREATE`,
//! primary-key range chunks, the `LOAD DATA` row encoder and the content checksum.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use bytes::{BufMut, Bytes, BytesMut};
use futures::StreamExt;
use mysql_async::Conn;
use mysql_async::prelude::Queryable;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use super::{
    CHECKSUM_ALGO, CHECKSUM_ALGO_V1, Server, exec, is_server_error, qi, qs, query_text, short, swap,
};
use crate::codec::compress::ChannelStream;
use crate::error::{Error, Result};
use crate::format::layout;
use crate::format::manifest::{ObjectKind, TableEntry};
use crate::model::{DatabaseUrl, Engine};
use crate::progress::Context;
use crate::source::pool::{Pool, PoolGuard};
use crate::source::rowsum::{ChunkSums, Md5Sum};
use crate::source::{
    ChunkPlan, ChunkSpec, DumpOptions, DumpPlan, DumpStream, SchemaScripts, Snapshot, SnapshotInfo, Source,
    TableStats,
};

const FLUSH_AT: usize = 1 << 20;
/// The line that separates index/constraint statements from views, routines, triggers and
/// events in the post-data script.
pub(crate) const LIVE_OBJECTS_MARKER: &str = "-- dbbackup:live-objects";

/// How a column travels through the TSV.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum ColKind {
    /// As the server prints it (text protocol, no conversion).
    Plain,
    /// BIT: as an unsigned integer, loaded through a variable.
    Bit,
    /// FLOAT: widened to DOUBLE so every digit survives.
    Float,
    /// A system-versioning period column (`ROW START` / `ROW END`).
    Period,
    /// A type whose internal (binary) form differs from its text (MariaDB's INET4, INET6, UUID):
    /// travels as its text and is loaded through a variable converted to a character string,
    /// since `LOAD DATA ... CHARACTER SET binary` would hand the server a binary string, which it
    /// takes for the internal form (and refuses, e.g. `'0.0.0.0'` or the all-zero UUID).
    TextForm,
    /// ENUM: its value, but the error value (index 0, which a non-strict server stores for an
    /// invalid value and prints as `''`) as the column's [`Col::zero`] text, which is not a
    /// member. The load stores that text as index 0 with one warning per row, and counts them.
    Enum,
}

/// Data types loaded as [`ColKind::TextForm`].
const TEXT_FORM_TYPES: [&str; 3] = ["inet4", "inet6", "uuid"];

/// One dumped column (stored in the manifest's table properties).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Col {
    pub(crate) name: String,
    pub(crate) kind: ColKind,
    /// [`ColKind::Enum`]: the text standing for the error value (`""`, or when `''` is a member
    /// the first of `0`, `00`, ... that is not).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) zero: Option<String>,
}

impl Col {
    fn new(name: String, kind: ColKind) -> Self {
        Col { name, kind, zero: None }
    }

    /// The value as dumped and checksummed, for [`ColKind::Enum`].
    fn enum_expr(&self) -> String {
        let zero = self.zero.as_deref().unwrap_or("");
        format!("IF({c}+0 = 0, _binary{}, CAST({c} AS BINARY))", qs(zero), c = qi(&self.name))
    }
}

/// The text an ENUM column of type `column_type` (`enum('a','b')`) dumps for its error value:
/// `""` unless that is a member, then the first string of zeros that is not (the server reads a
/// non-member of digits as an index, here 0). `None` when all are members.
fn enum_zero(column_type: &str) -> Option<String> {
    ["", "0", "00", "000", "0000", "00000"]
        .into_iter()
        .find(|z| !column_type.contains(&format!("'{z}'")))
        .map(str::to_string)
}

/// What the loader needs to know about a table (the manifest's `properties`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct TableProps {
    pub(crate) columns: Vec<Col>,
    #[serde(default)]
    pub(crate) versioned: bool,
}

impl TableProps {
    pub(crate) fn from_entry(t: &TableEntry) -> Result<Self> {
        let v = serde_json::Value::Object(t.properties.clone().into_iter().collect());
        serde_json::from_value(v).map_err(|e| {
            Error::InvalidInput(format!("table {} has no usable MySQL column list: {e}", t.display_name()))
        })
    }

    fn into_properties(self) -> std::collections::BTreeMap<String, serde_json::Value> {
        match serde_json::to_value(self) {
            Ok(serde_json::Value::Object(m)) => m.into_iter().collect(),
            _ => Default::default(),
        }
    }
}

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

/// Adds one row to a [`CHECKSUM_ALGO`] sum: `MD5(len:value | 'N' per column)`, computed on the
/// client over rows as they stream.
fn add_row<'a>(sum: &mut Md5Sum, values: impl Iterator<Item = Option<&'a [u8]>>) {
    use md5::Digest;
    let mut h = md5::Md5::new();
    for v in values {
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

/// Appends one value escaped for `LOAD DATA ... FIELDS TERMINATED BY '\t' ESCAPED BY '\\'`.
pub(crate) fn escape_into(out: &mut BytesMut, v: &[u8]) {
    let mut start = 0;
    for (i, &b) in v.iter().enumerate() {
        let esc: &[u8] = match b {
            b'\\' => b"\\\\",
            b'\t' => b"\\t",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            0 => b"\\0",
            _ => continue,
        };
        out.put_slice(&v[start..i]);
        out.put_slice(esc);
        start = i + 1;
    }
    out.put_slice(&v[start..]);
}

/// The snapshot's workers (the engines' shared pool).
pub(crate) type ConnPool = Pool<Conn>;
/// A worker borrowed from a [`ConnPool`].
pub(crate) type Lease = PoolGuard<Conn>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TableKind {
    Base,
    Versioned,
    Sequence,
}

#[derive(Debug, Clone)]
struct TableInfo {
    name: String,
    kind: TableKind,
    cols: Vec<Col>,
    pk: Vec<(String, String)>,
    data_length: u64,
}

/// The dump side.
pub(crate) struct MysqlSource {
    server: Server,
}

impl MysqlSource {
    pub(crate) fn new(url: &DatabaseUrl) -> Result<Self> {
        Ok(MysqlSource { server: Server::new(url)? })
    }
}

struct MysqlSnapshot {
    db: String,
    pool: ConnPool,
    info: SnapshotInfo,
    tables: Vec<TableInfo>,
    chunk_bytes: u64,
    no_definer: bool,
    /// Client-side checksums of the chunks dumped so far, per table name.
    sums: Arc<ChunkSums>,
}

#[async_trait]
impl Source for MysqlSource {
    fn engine(&self) -> Engine {
        Engine::Mysql
    }

    async fn snapshot(&self, opts: &DumpOptions, ctx: &Context) -> Result<Box<dyn Snapshot>> {
        let db = self.server.database();
        let jobs = opts.jobs.max(1);
        let server = self.server.with_limits(&opts.engine_options)?;
        let mut control = server.connect(&[]).await?;
        let version = query_text(&mut control, "SELECT VERSION()")
            .await?
            .into_iter()
            .next()
            .and_then(|r| r.into_iter().next().flatten())
            .unwrap_or_default();
        let mariadb = version.to_ascii_lowercase().contains("mariadb");
        // Finish or undo a restore into this database that was killed midway (unless one is
        // running): a backup must not read a half-swapped database.
        // What it did goes into the backup's notes (a restore's undo copy reports them).
        let mut recovered = Vec::new();
        if swap::try_lock(&mut control, &db).await? {
            let r = swap::recover(&mut control, &db).await;
            swap::unlock(&mut control, &db).await;
            recovered = r.map_err(|e| {
                e.context(format!("finish an interrupted restore into {db} before backing it up"))
            })?;
        }
        let exists = query_text(
            &mut control,
            &format!("SELECT SCHEMA_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = {}", qs(&db)),
        )
        .await?;
        if exists.is_empty() {
            return Err(Error::MissingDatabase(format!("MySQL database {db:?}")));
        }
        let mut info = SnapshotInfo {
            server_version: version.clone(),
            database: db.clone(),
            notes: recovered,
            ..Default::default()
        };
        let locked = if jobs > 1 {
            // The control session's lock_wait_timeout bounds this: while FTWRL waits for a long
            // query to finish, every write on the server waits behind it.
            match control.query_drop("FLUSH TABLES WITH READ LOCK").await {
                Ok(()) => true,
                Err(e) if is_server_error(&e, &[1205]) => {
                    let waited = server.limits().lock.map(crate::source::limits::show).unwrap_or_default();
                    info.notes.push(format!(
                        "the global read lock (FLUSH TABLES WITH READ LOCK) was not granted within the lock \
                         timeout of {waited} (a long query or transaction was running; writers were held no \
                         longer): dumped through one consistent connection instead of {jobs}"
                    ));
                    false
                }
                Err(e) => {
                    info.notes.push(format!(
                        "no global read lock ({e}): dumped through one consistent connection instead of {jobs}"
                    ));
                    false
                }
            }
        } else {
            false
        };
        ctx.check("MySQL snapshot")?;
        let n = if locked { jobs } else { 1 };
        let start = [
            "SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ".to_string(),
            "START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY".to_string(),
        ];
        let workers = futures::future::join_all((0..n).map(|_| server.connect(&start))).await;
        let mut conns = Vec::with_capacity(n);
        let mut failed = None;
        for w in workers {
            match w {
                Ok(c) => conns.push(c),
                Err(e) => failed = Some(e),
            }
        }
        if locked {
            if let Ok(rows) = query_text(&mut control, "SHOW MASTER STATUS").await
                && let Some(r) = rows.into_iter().next()
            {
                if let Some(Some(f)) = r.first() {
                    info.position.insert("binlog_file".into(), f.clone());
                }
                if let Some(Some(p)) = r.get(1) {
                    info.position.insert("binlog_pos".into(), p.clone());
                }
            }
            let gtid_sql =
                if mariadb { "SELECT @@GLOBAL.gtid_binlog_pos" } else { "SELECT @@GLOBAL.gtid_executed" };
            if let Ok(rows) = query_text(&mut control, gtid_sql).await
                && let Some(Some(g)) = rows.into_iter().next().and_then(|r| r.into_iter().next())
            {
                info.position.insert("gtid".into(), g);
            }
            exec(&mut control, "UNLOCK TABLES").await?;
            info.position.insert("method".into(), "ftwrl+consistent-snapshot".into());
        } else {
            info.position.insert("method".into(), "single-consistent-snapshot".into());
        }
        let _ = control.disconnect().await;
        if let Some(e) = failed {
            return Err(e.context("start snapshot transactions"));
        }
        if !locked
            && mariadb
            && let Some(c) = conns.first_mut()
            && let Ok(rows) = query_text(c, "SHOW STATUS LIKE 'binlog_snapshot_%'").await
        {
            for r in rows {
                if let (Some(Some(k)), Some(Some(v))) = (r.first(), r.get(1)) {
                    let key = if k.ends_with("file") { "binlog_file" } else { "binlog_pos" };
                    if !v.is_empty() {
                        info.position.insert(key.into(), v.clone());
                    }
                }
            }
        }
        info.position.insert("workers".into(), conns.len().to_string());
        let pool = ConnPool::new(conns);
        let mut lease = pool.get().await?;
        let c = &mut *lease;
        let props = query_text(
            c,
            &format!(
                "SELECT DEFAULT_CHARACTER_SET_NAME, DEFAULT_COLLATION_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = {}",
                qs(&db)
            ),
        )
        .await?;
        if let Some(r) = props.into_iter().next() {
            if let Some(Some(cs)) = r.first() {
                info.properties.insert("charset".into(), cs.clone().into());
            }
            if let Some(Some(co)) = r.get(1) {
                info.properties.insert("collation".into(), co.clone().into());
            }
        }
        if mariadb
            && let Ok(rows) = query_text(
                c,
                &format!(
                    "SELECT SCHEMA_COMMENT FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = {}",
                    qs(&db)
                ),
            )
            .await
            && let Some(Some(comment)) = rows.into_iter().next().and_then(|r| r.into_iter().next())
            && !comment.is_empty()
        {
            info.properties.insert("comment".into(), comment.into());
        }
        let tables = list_tables(c, &db).await?;
        drop(lease);
        Ok(Box::new(MysqlSnapshot {
            db,
            pool,
            info,
            tables,
            chunk_bytes: opts.chunk_bytes.max(1 << 20),
            no_definer: opts.engine_options.mysql.no_definer,
            sums: Default::default(),
        }))
    }
}

async fn list_tables(c: &mut Conn, db: &str) -> Result<Vec<TableInfo>> {
    let rows = query_text(
        c,
        &format!(
            "SELECT TABLE_NAME, TABLE_TYPE, IFNULL(DATA_LENGTH, 0) FROM information_schema.TABLES \
             WHERE TABLE_SCHEMA = {} AND TABLE_TYPE <> 'VIEW' ORDER BY TABLE_NAME",
            qs(db)
        ),
    )
    .await?;
    let cols = query_text(
        c,
        &format!(
            "SELECT TABLE_NAME, COLUMN_NAME, DATA_TYPE, EXTRA, IFNULL(GENERATION_EXPRESSION, ''), COLUMN_KEY, COLUMN_TYPE \
             FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = {} ORDER BY TABLE_NAME, ORDINAL_POSITION",
            qs(db)
        ),
    )
    .await?;
    let pks = query_text(
        c,
        &format!(
            "SELECT s.TABLE_NAME, s.COLUMN_NAME, c.DATA_TYPE FROM information_schema.STATISTICS s \
             JOIN information_schema.COLUMNS c ON c.TABLE_SCHEMA = s.TABLE_SCHEMA AND c.TABLE_NAME = s.TABLE_NAME \
             AND c.COLUMN_NAME = s.COLUMN_NAME WHERE s.TABLE_SCHEMA = {} AND s.INDEX_NAME = 'PRIMARY' \
             ORDER BY s.TABLE_NAME, s.SEQ_IN_INDEX",
            qs(db)
        ),
    )
    .await?;
    let mut out = Vec::new();
    for r in rows {
        let name = r.first().cloned().flatten().unwrap_or_default();
        let ty = r.get(1).cloned().flatten().unwrap_or_default();
        let kind = match ty.as_str() {
            "SEQUENCE" => TableKind::Sequence,
            "SYSTEM VERSIONED" => TableKind::Versioned,
            _ => TableKind::Base,
        };
        let data_length = r.get(2).cloned().flatten().and_then(|s| s.parse().ok()).unwrap_or(0);
        let mut tcols = Vec::new();
        for c in cols.iter().filter(|c| c.first().cloned().flatten().as_deref() == Some(name.as_str())) {
            let cname = c.get(1).cloned().flatten().unwrap_or_default();
            let dtype = c.get(2).cloned().flatten().unwrap_or_default().to_ascii_lowercase();
            let extra = c.get(3).cloned().flatten().unwrap_or_default().to_ascii_uppercase();
            let gen_expr = c.get(4).cloned().flatten().unwrap_or_default();
            let column_type = c.get(6).cloned().flatten().unwrap_or_default();
            // Explicitly named period columns show `ROW START`/`ROW END` as their generation
            // expression (EXTRA says only `STORED GENERATED`).
            let period = |s: &str| s.contains("ROW START") || s.contains("ROW END");
            let ck = if period(&extra) || period(&gen_expr.to_ascii_uppercase()) {
                ColKind::Period
            } else if extra.contains("GENERATED") || extra.contains("PERSISTENT") || !gen_expr.is_empty() {
                continue;
            } else if dtype == "bit" {
                ColKind::Bit
            } else if dtype == "float" {
                ColKind::Float
            } else if TEXT_FORM_TYPES.contains(&dtype.as_str()) {
                ColKind::TextForm
            } else if dtype == "enum" {
                let Some(zero) = enum_zero(&column_type) else {
                    return Err(Error::Unsupported(format!(
                        "column {cname} of table {name}: an ENUM whose members include '', '0', ... '00000' \
                         has no text left for its error value"
                    )));
                };
                tcols.push(Col { name: cname, kind: ColKind::Enum, zero: Some(zero) });
                continue;
            } else {
                ColKind::Plain
            };
            tcols.push(Col::new(cname, ck));
        }
        if kind == TableKind::Versioned && !tcols.iter().any(|c| c.kind == ColKind::Period) {
            // Implicit period columns are hidden from information_schema but selectable by name.
            tcols.push(Col::new("ROW_START".into(), ColKind::Period));
            tcols.push(Col::new("ROW_END".into(), ColKind::Period));
        }
        let pk = pks
            .iter()
            .filter(|p| p.first().cloned().flatten().as_deref() == Some(name.as_str()))
            .map(|p| {
                (
                    p.get(1).cloned().flatten().unwrap_or_default(),
                    p.get(2).cloned().flatten().unwrap_or_default(),
                )
            })
            .collect();
        out.push(TableInfo { name, kind, cols: tcols, pk, data_length });
    }
    Ok(out)
}

/// The routine kinds of `information_schema.ROUTINES` that are backed up (`SHOW CREATE <kind>`);
/// any other kind fails the backup rather than being left out.
pub(crate) const ROUTINE_TYPES: [&str; 4] = ["FUNCTION", "PROCEDURE", "PACKAGE", "PACKAGE BODY"];

const INT_TYPES: [&str; 5] = ["tinyint", "smallint", "mediumint", "int", "bigint"];

/// A `CREATE TABLE` split by [`split_create_table`].
struct SplitTable {
    table: String,
    /// `ALTER TABLE ... ADD KEY ...` for the secondary indexes.
    keys: Option<String>,
    /// `ALTER TABLE ... ADD CONSTRAINT ... FOREIGN KEY ...`: run after every table's keys, since
    /// a foreign key needs an index on the referenced columns, which may be another table's
    /// secondary key.
    foreign_keys: Option<String>,
}

/// Splits `SHOW CREATE TABLE` into the table without secondary indexes and foreign keys, and the
/// `ALTER TABLE`s adding them. Tables whose AUTO_INCREMENT column is only covered by a secondary
/// index keep their indexes inline (the server requires the key at creation).
fn split_create_table(name: &str, create: &str, auto_inc_needs_key: bool) -> SplitTable {
    if auto_inc_needs_key {
        return SplitTable { table: create.to_string(), keys: None, foreign_keys: None };
    }
    let lines: Vec<&str> = create.lines().collect();
    let mut keep: Vec<String> = Vec::new();
    let mut keys: Vec<String> = Vec::new();
    let mut fks: Vec<String> = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let t = line.trim_start();
        let inside = i > 0 && line.starts_with("  ");
        let key = inside
            && (t.starts_with("KEY ")
                || t.starts_with("UNIQUE KEY ")
                || t.starts_with("FULLTEXT KEY ")
                || t.starts_with("SPATIAL KEY "));
        let fk = inside && t.starts_with("CONSTRAINT ") && t.contains(" FOREIGN KEY ");
        if key {
            keys.push(t.trim_end_matches(',').to_string());
        } else if fk {
            fks.push(t.trim_end_matches(',').to_string());
        } else {
            keep.push((*line).to_string());
        }
    }
    if keys.is_empty() && fks.is_empty() {
        return SplitTable { table: create.to_string(), keys: None, foreign_keys: None };
    }
    // The last column/key line before the closing parenthesis must not end with a comma.
    if let Some(close) = keep.iter().position(|l| l.starts_with(')'))
        && close > 0
    {
        let prev = &mut keep[close - 1];
        if prev.ends_with(',') {
            prev.pop();
        }
    }
    let alter = |moved: &[String]| {
        (!moved.is_empty()).then(|| {
            let adds: Vec<String> = moved.iter().map(|m| format!("ADD {m}")).collect();
            format!("ALTER TABLE {} {}", qi(name), adds.join(",\n  "))
        })
    };
    SplitTable { table: keep.join("\n"), keys: alter(&keys), foreign_keys: alter(&fks) }
}

/// Orders views so each comes after the views its definition names.
fn order_views(views: Vec<(String, String)>) -> Vec<(String, String)> {
    let names: Vec<String> = views.iter().map(|(n, _)| n.clone()).collect();
    let mut done: Vec<bool> = vec![false; views.len()];
    let mut out = Vec::with_capacity(views.len());
    for _ in 0..views.len() {
        let mut progressed = false;
        for i in 0..views.len() {
            if done[i] {
                continue;
            }
            let body = &views[i].1;
            let blocked = names.iter().enumerate().any(|(j, n)| j != i && !done[j] && body.contains(&qi(n)));
            if !blocked {
                done[i] = true;
                out.push(views[i].clone());
                progressed = true;
            }
        }
        if !progressed {
            break;
        }
    }
    for (i, v) in views.into_iter().enumerate() {
        if !done[i] {
            out.push(v);
        }
    }
    out
}

fn object_block(out: &mut String, sql_mode: &str, time_zone: Option<&str>, create: &str) {
    out.push_str(&format!("SET SESSION sql_mode = {};\n", qs(sql_mode)));
    if let Some(tz) = time_zone {
        out.push_str(&format!("SET SESSION time_zone = {};\n", qs(tz)));
    }
    out.push_str("DELIMITER ;;\n");
    out.push_str(create);
    out.push_str(";;\nDELIMITER ;\n");
}

fn maybe_strip(no_definer: bool, s: &str) -> String {
    if no_definer {
        String::from_utf8_lossy(&super::script::strip_definer(s.as_bytes())).into_owned()
    } else {
        s.to_string()
    }
}

fn col(r: &[Option<String>], i: usize) -> String {
    r.get(i).cloned().flatten().unwrap_or_default()
}

#[async_trait]
impl Snapshot for MysqlSnapshot {
    fn info(&self) -> SnapshotInfo {
        self.info.clone()
    }

    async fn schema(&self) -> Result<SchemaScripts> {
        let mut lease = self.pool.get().await?;
        let c = &mut *lease;
        exec(c, "SET SESSION character_set_results = utf8mb4").await?;
        exec(c, &format!("USE {}", qi(&self.db))).await?;
        let mut pre = format!(
            "-- dbbackup MySQL schema (pre-data) of {}\nSET NAMES utf8mb4;\nSET SESSION time_zone = '+00:00';\n\
             SET SESSION sql_mode = {};\nSET SESSION foreign_key_checks = 0;\n",
            qi(&self.db),
            qs(super::LOAD_SQL_MODE)
        );
        let mut post = String::from(
            "-- dbbackup MySQL schema (post-data)\nSET NAMES utf8mb4;\nSET SESSION foreign_key_checks = 0;\n",
        );
        let mut post_fks = String::new();
        let auto_cols = query_text(
            c,
            &format!(
                "SELECT TABLE_NAME, COLUMN_NAME, COLUMN_KEY FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = {} \
                 AND EXTRA LIKE '%auto_increment%'",
                qs(&self.db)
            ),
        )
        .await?;
        // Sequences first: a table's default may call nextval() on one, which must exist when
        // the table is created.
        let sequences_first = self
            .tables
            .iter()
            .filter(|t| t.kind == TableKind::Sequence)
            .chain(self.tables.iter().filter(|t| t.kind != TableKind::Sequence));
        for t in sequences_first {
            let what = if t.kind == TableKind::Sequence { "SEQUENCE" } else { "TABLE" };
            let rows = query_text(c, &format!("SHOW CREATE {what} {}", qi(&t.name))).await?;
            let create = rows.first().map(|r| col(r, 1)).unwrap_or_default();
            if create.is_empty() {
                return Err(Error::source(format!("SHOW CREATE TABLE {}", t.name), "no definition returned"));
            }
            if t.kind == TableKind::Sequence {
                pre.push_str(&create);
                pre.push_str(";\n");
                let st = query_text(
                    c,
                    &format!(
                        "SELECT next_not_cached_value, cycle_count, increment, minimum_value, maximum_value FROM {}",
                        qi(&t.name)
                    ),
                )
                .await?;
                if let Some(r) = st.first() {
                    let num = |i: usize| col(r, i).parse::<i128>().unwrap_or(0);
                    let (next, round, inc, min, max) = (num(0), num(1), num(2), num(3), num(4));
                    // RESTART sets the next value but resets the cycle count; SETVAL with a
                    // higher round then brings the round back (it marks `next - increment` used).
                    pre.push_str(&format!("ALTER SEQUENCE {} RESTART WITH {next};\n", qi(&t.name)));
                    if round > 0 {
                        let prev = next - inc;
                        if prev >= min && prev <= max {
                            pre.push_str(&format!("SELECT SETVAL({}, {prev}, 1, {round});\n", qi(&t.name)));
                        } else {
                            pre.push_str(&format!(
                                "-- sequence {} is at the start of cycle round {round}; the round is not restorable by SETVAL\n",
                                qi(&t.name)
                            ));
                        }
                    }
                }
                continue;
            }
            let auto_needs_key = auto_cols.iter().any(|r| {
                col(r, 0) == t.name && t.pk.first().map(|p| p.0.as_str()) != Some(col(r, 1).as_str())
            });
            // Relative to its database: a default `nextval(`db`.`seq`)` names the restored
            // database's sequence wherever it is restored (the restore's swap re-points it from
            // the shadow to the live database).
            let create = super::view_relative_to(&create, &self.db);
            let split = split_create_table(&t.name, &create, auto_needs_key);
            pre.push_str(&split.table);
            pre.push_str(";\n");
            for (out, alter) in [(&mut post, split.keys), (&mut post_fks, split.foreign_keys)] {
                if let Some(a) = alter {
                    out.push_str(&a);
                    out.push_str(";\n");
                }
            }
        }
        post.push_str(&post_fks);
        post.push_str(LIVE_OBJECTS_MARKER);
        post.push('\n');
        let db = qs(&self.db);
        for r in query_text(
            c,
            &format!(
                "SELECT ROUTINE_TYPE, ROUTINE_NAME FROM information_schema.ROUTINES WHERE ROUTINE_SCHEMA = {db} \
                 ORDER BY ROUTINE_TYPE, ROUTINE_NAME"
            ),
        )
        .await?
        {
            // PACKAGE sorts before PACKAGE BODY, which needs it.
            let (ty, name) = (col(&r, 0), col(&r, 1));
            if !ROUTINE_TYPES.contains(&ty.as_str()) {
                return Err(Error::Unsupported(format!(
                    "routine {name} of database {} is a {ty}, which this version cannot back up",
                    self.db
                )));
            }
            let sc = query_text(c, &format!("SHOW CREATE {ty} {}", qi(&name))).await?;
            let Some(s) = sc.first() else { continue };
            let create = col(s, 2);
            if create.is_empty() {
                return Err(Error::source(
                    format!("SHOW CREATE {ty} {name}"),
                    "no definition returned (missing privilege on mysql.proc / SHOW_ROUTINE?)",
                ));
            }
            object_block(&mut post, &col(s, 1), None, &maybe_strip(self.no_definer, &create));
        }
        let mut views = Vec::new();
        for r in query_text(
            c,
            &format!("SELECT TABLE_NAME FROM information_schema.VIEWS WHERE TABLE_SCHEMA = {db} ORDER BY TABLE_NAME"),
        )
        .await?
        {
            let name = col(&r, 0);
            let sv = query_text(c, &format!("SHOW CREATE VIEW {}", qi(&name))).await?;
            if let Some(s) = sv.first() {
                views.push((name, super::view_relative_to(&col(s, 1), &self.db)));
            }
        }
        for (_, create) in order_views(views) {
            // Views carry their own sql_mode-independent definition; the session mode is the load's.
            object_block(&mut post, super::LOAD_SQL_MODE, None, &maybe_strip(self.no_definer, &create));
        }
        for r in query_text(
            c,
            &format!(
                "SELECT TRIGGER_NAME FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = {db} \
                 ORDER BY EVENT_OBJECT_TABLE, ACTION_TIMING, EVENT_MANIPULATION, ACTION_ORDER"
            ),
        )
        .await?
        {
            let st = query_text(c, &format!("SHOW CREATE TRIGGER {}", qi(&col(&r, 0)))).await?;
            if let Some(s) = st.first() {
                object_block(&mut post, &col(s, 1), None, &maybe_strip(self.no_definer, &col(s, 2)));
            }
        }
        if let Ok(events) = query_text(
            c,
            &format!("SELECT EVENT_NAME FROM information_schema.EVENTS WHERE EVENT_SCHEMA = {db} ORDER BY EVENT_NAME"),
        )
        .await
        {
            for r in events {
                let se = query_text(c, &format!("SHOW CREATE EVENT {}", qi(&col(&r, 0)))).await?;
                if let Some(s) = se.first() {
                    object_block(&mut post, &col(s, 1), Some(&col(s, 2)), &maybe_strip(self.no_definer, &col(s, 3)));
                }
            }
        }
        Ok(SchemaScripts { pre_data: pre, post_data: post })
    }

    async fn plan(&self) -> Result<DumpPlan> {
        let mut tables = Vec::new();
        let mut chunks = Vec::new();
        let mut lease = self.pool.get().await?;
        for t in self.tables.iter().filter(|t| t.kind != TableKind::Sequence) {
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
            let mut ranges: Vec<ChunkSpec> = vec![ChunkSpec::Whole];
            if t.data_length > self.chunk_bytes
                && t.pk.len() == 1
                && INT_TYPES.contains(&t.pk[0].1.to_ascii_lowercase().as_str())
            {
                let pk = qi(&t.pk[0].0);
                let history = if t.kind == TableKind::Versioned { " FOR SYSTEM_TIME ALL" } else { "" };
                let c = &mut *lease;
                exec(c, "SET SESSION character_set_results = utf8mb4").await?;
                let mm = query_text(
                    c,
                    &format!("SELECT MIN({pk}), MAX({pk}) FROM {}.{}{history}", qi(&self.db), qi(&t.name)),
                )
                .await?;
                let r = mm.into_iter().next().unwrap_or_default();
                if let (Some(lo), Some(hi)) = (
                    r.first().cloned().flatten().and_then(|s| s.parse::<i128>().ok()),
                    r.get(1).cloned().flatten().and_then(|s| s.parse::<i128>().ok()),
                ) {
                    let n = t.data_length.div_ceil(self.chunk_bytes).clamp(1, 10_000) as i128;
                    let step = ((hi - lo + 1) / n).max(1);
                    ranges.clear();
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
                }
            }
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
        self.sums.expect(
            chunks.iter().filter_map(|c| c.table.and_then(|i| tables.get(i)).map(|t| t.name.as_str())),
        );
        Ok(DumpPlan { tables, chunks })
    }

    async fn dump(&self, plan: &DumpPlan, chunk: &ChunkPlan) -> Result<DumpStream> {
        let t = chunk
            .table
            .and_then(|i| plan.tables.get(i))
            .ok_or_else(|| Error::InvalidInput("MySQL dump of a chunk without a table".into()))?;
        let props = TableProps::from_entry(t)?;
        let info = self.tables.iter().find(|x| x.name == t.name);
        let mut sql = format!(
            "SELECT {} FROM {}.{}{}",
            select_list(&props.columns),
            qi(&self.db),
            qi(&t.name),
            if props.versioned { " FOR SYSTEM_TIME ALL" } else { "" }
        );
        if let (Some(info), ChunkSpec::KeyRange { lo, hi }) = (info, chunk.spec)
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
        let lease = self.pool.get().await?;
        let rows = Arc::new(AtomicU64::new(0));
        let counter = rows.clone();
        let (tx, rx) = mpsc::channel::<Result<Bytes>>(4);
        let what = format!("dump {}", t.name);
        let table = t.name.clone();
        let sums = self.sums.clone();
        tokio::spawn(async move {
            let mut lease = lease;
            match stream_rows(&mut lease, &sql, &tx, &counter).await {
                Ok(Some(sum)) => sums.chunk_done(&table, sum),
                Ok(None) => {}
                Err(e) => {
                    let _ = tx.send(Err(e.context(what))).await;
                }
            }
        });
        Ok(DumpStream { bytes: ChannelStream::new(rx).boxed(), rows })
    }

    /// The checksum comes from the rows as they were dumped (no second scan); the row count
    /// from the snapshot, so a chunking mistake shows as a mismatch. Plain tables also record
    /// `CHECKSUM TABLE`, which the same server version recomputes much faster on restore.
    async fn table_stats(&self, table: &TableEntry) -> Result<TableStats> {
        let props = TableProps::from_entry(table)?;
        let sum = self.sums.wait(&table.name).await?;
        let mut lease = self.pool.get().await?;
        let c = &mut *lease;
        exec(c, "SET SESSION character_set_results = utf8mb4").await?;
        let history = if props.versioned { " FOR SYSTEM_TIME ALL" } else { "" };
        let count =
            query_text(c, &format!("SELECT COUNT(*) FROM {}.{}{history}", qi(&self.db), qi(&table.name)))
                .await?
                .into_iter()
                .next()
                .and_then(|r| r.into_iter().next().flatten())
                .unwrap_or_default();
        let rows: u64 =
            count.parse().map_err(|_| Error::source("MySQL row count", format!("bad count {count:?}")))?;
        let mut extra = std::collections::BTreeMap::new();
        if !props.versioned
            && let Some(v) = checksum_table(c, &self.db, &table.name).await?
        {
            extra.insert(
                CHECKSUM_TABLE_KEY.to_string(),
                serde_json::json!({ "server": self.info.server_version, "value": v }),
            );
        }
        Ok(TableStats {
            rows,
            checksum: Some(sum.checksum()),
            checksum_algo: Some(CHECKSUM_ALGO.into()),
            extra,
        })
    }

    async fn close(self: Box<Self>) -> Result<()> {
        for mut c in self.pool.take_all() {
            let _ = c.query_drop("COMMIT").await;
            let _ = c.disconnect().await;
        }
        Ok(())
    }
}

async fn stream_rows(
    conn: &mut Conn,
    sql: &str,
    tx: &mpsc::Sender<Result<Bytes>>,
    counter: &AtomicU64,
) -> Result<Option<Md5Sum>> {
    exec(conn, "SET SESSION character_set_results = NULL").await?;
    let mut sum = Md5Sum::default();
    let mut result =
        conn.query_iter(sql).await.map_err(|e| Error::source(format!("MySQL: {}", short(sql)), e))?;
    let mut buf = BytesMut::with_capacity(FLUSH_AT + (64 << 10));
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
        add_row(&mut sum, (0..values.len()).map(bytes));
        buf.put_u8(b'\n');
        n += 1;
        if buf.len() >= FLUSH_AT {
            counter.store(n, Ordering::Relaxed);
            if tx.send(Ok(buf.split().freeze())).await.is_err() {
                return Ok(None);
            }
            buf.reserve(FLUSH_AT);
        }
    }
    counter.store(n, Ordering::Relaxed);
    if !buf.is_empty() && tx.send(Ok(buf.freeze())).await.is_err() {
        return Ok(None);
    }
    Ok(Some(sum))
}

/// The manifest table property holding `CHECKSUM TABLE` at dump time and the server version
/// that computed it.
pub(crate) const CHECKSUM_TABLE_KEY: &str = "checksum_table";

/// `CHECKSUM TABLE` (in the current transaction's snapshot), `None` when the server has none.
pub(crate) async fn checksum_table(c: &mut Conn, db: &str, table: &str) -> Result<Option<String>> {
    let r = query_text(c, &format!("CHECKSUM TABLE {}.{}", qi(db), qi(table))).await?;
    Ok(r.into_iter().next().and_then(|row| row.into_iter().nth(1).flatten()))
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

    #[test]
    fn enum_error_value_text_is_not_a_member() {
        assert_eq!(enum_zero("enum('x','y')").as_deref(), Some(""));
        assert_eq!(enum_zero("enum('','0','z')").as_deref(), Some("00"));
        assert_eq!(enum_zero("enum('','0','00','000','0000','00000')"), None);
    }

    #[test]
    fn moves_secondary_keys_out() {
        let create = "CREATE TABLE `t` (\n  `id` int(11) NOT NULL,\n  `a` int(11) DEFAULT NULL,\n  PRIMARY KEY (`id`),\n  KEY `a` (`a`),\n  CONSTRAINT `f` FOREIGN KEY (`a`) REFERENCES `t` (`id`)\n) ENGINE=InnoDB";
        let s = split_create_table("t", create, false);
        assert_eq!(
            s.table,
            "CREATE TABLE `t` (\n  `id` int(11) NOT NULL,\n  `a` int(11) DEFAULT NULL,\n  PRIMARY KEY (`id`)\n) ENGINE=InnoDB"
        );
        assert_eq!(s.keys.unwrap(), "ALTER TABLE `t` ADD KEY `a` (`a`)");
        assert_eq!(
            s.foreign_keys.unwrap(),
            "ALTER TABLE `t` ADD CONSTRAINT `f` FOREIGN KEY (`a`) REFERENCES `t` (`id`)"
        );
    }
}
