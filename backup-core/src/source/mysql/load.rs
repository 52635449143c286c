//! Restore side: a shadow database on the same server, `LOAD DATA LOCAL INFILE` fed from the
//! verified stream, indexes after data, then one atomic multi-table `RENAME TABLE` and the
//! views, routines, triggers and events recreated in the live database. Failure after the
//! rename renames back and recreates the previous objects. Every session holds the target's
//! lock and starts by finishing or undoing killed restores; the swap is journaled ([`swap`]).
//!
//! In-place restores (`in_place`, for accounts without CREATE DATABASE) move the live tables
//! aside inside the live database (one atomic `RENAME TABLE`, after dropping their triggers and
//! foreign keys, which the server names per database), load straight into the live names, and
//! drop the aside copies only once everything else succeeded; abort or failure drops what was
//! loaded, renames the originals back and restores their foreign keys, triggers, views,
//! routines and events — from a journal in the live database ([`swap::InPlacePlan`]), so the
//! next run can do the same after a kill.

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use futures::StreamExt;
use mysql_async::Conn;
use mysql_async::prelude::Queryable;

use super::dump::{
    CHECKSUM_TABLE_KEY, ColKind, ConnPool, LIVE_OBJECTS_MARKER, Lease, ROUTINE_TYPES, TableProps,
    checksum_table, stats,
};
use super::script::{self, ScriptSplitter, StatementKind};
use super::{CHECKSUM_ALGO_V1, Server, exec, is_server_error, qi, qs, query_text, short, swap};
use crate::codec::ByteStream;
use crate::error::{Error, Result};
use crate::format::manifest::{Manifest, ObjectEntry, TableEntry};
use crate::model::{DatabaseUrl, Engine};
use crate::progress::{CancellationToken, Context};
use crate::source::{CommitReport, LoadOptions, LoadSession, Loader, ScriptReport, TableStats, read_text};

const MAX_SCHEMA: usize = 256 << 20;

/// The restore side.
pub(crate) struct MysqlLoader {
    server: Server,
}

impl MysqlLoader {
    pub(crate) fn new(url: &DatabaseUrl) -> Result<Self> {
        Ok(MysqlLoader { server: Server::new(url)? })
    }
}

/// A view, routine, trigger or event definition with the session settings it needs.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub(super) struct Object {
    pub(super) kind: String,
    pub(super) name: String,
    pub(super) sql_mode: String,
    pub(super) time_zone: Option<String>,
    pub(super) create: String,
}

/// The manifest's `charset` and `collation` are pasted into `CREATE`/`ALTER DATABASE` as bare
/// names (they cannot be quoted there): a manifest is input from a repository, so anything but
/// a plain name is refused before the restore touches the server.
fn check_name_props(props: &std::collections::BTreeMap<String, serde_json::Value>) -> Result<()> {
    for key in ["charset", "collation"] {
        let Some(v) = props.get(key) else { continue };
        let ok = v.as_str().is_some_and(|n| {
            !n.is_empty() && n.len() <= 64 && n.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        });
        if !ok {
            return Err(Error::UnsupportedFormat {
                what: "manifest".into(),
                reason: format!(
                    "database {key} {v} is not a character set or collation name; refusing to restore"
                ),
            });
        }
    }
    Ok(())
}

fn rand_suffix() -> String {
    let r: u32 = rand::random();
    format!("{r:08x}")
}

#[async_trait]
impl Loader for MysqlLoader {
    fn engine(&self) -> Engine {
        Engine::Mysql
    }

    async fn begin(
        &self,
        manifest: &Manifest,
        opts: &LoadOptions,
        _ctx: &Context,
    ) -> Result<Box<dyn LoadSession>> {
        let mut s =
            MysqlSession::open(&self.server, opts, manifest.tables.clone(), manifest.properties.clone())
                .await?;
        s.check_tables()?;
        s.prepare().await?;
        Ok(Box::new(s))
    }

    async fn begin_script(&self, opts: &LoadOptions, _ctx: &Context) -> Result<Box<dyn LoadSession>> {
        if opts.tables.is_some() {
            return Err(Error::Unsupported(
                "--tables with a plain dump script: restore it whole into a scratch database, then copy the tables".into(),
            ));
        }
        let mut s = MysqlSession::open(&self.server, opts, Vec::new(), Default::default()).await?;
        s.prepare().await?;
        Ok(Box::new(s))
    }
}

struct MysqlSession {
    live: String,
    /// Where tables are loaded: a shadow database, or the live one in place.
    target: String,
    in_place: bool,
    tables: Vec<TableEntry>,
    selected: Option<Vec<String>>,
    db_props: std::collections::BTreeMap<String, serde_json::Value>,
    no_definer: bool,
    strip_super: bool,
    /// Always recompute the content checksum (engine option `full_checksum`).
    full_checksum: bool,
    /// `SELECT VERSION()` of the target server.
    server_version: String,
    /// Holds the target's restore lock ([`swap::lock`]) for the session's life.
    control: tokio::sync::Mutex<Conn>,
    /// This run's id (in its shadow and previous database names).
    run: String,
    /// What the start of this run cleaned up after killed ones.
    notes: Vec<String>,
    pool: ConnPool,
    /// Server thread ids of the pool's connections (killed on abort so that no half-done load
    /// holds a lock the shadow's DROP would wait on).
    pool_ids: Vec<u32>,
    /// Tables whose load transaction is open, with the connection it runs on.
    open_tables: Mutex<std::collections::HashMap<String, Lease>>,
    deferred: Mutex<Vec<Object>>,
    /// In place: what was moved aside and removed to make room (also in the live database's
    /// journal).
    in_place_plan: Option<swap::InPlacePlan>,
}

impl MysqlSession {
    async fn open(
        server: &Server,
        opts: &LoadOptions,
        tables: Vec<TableEntry>,
        db_props: std::collections::BTreeMap<String, serde_json::Value>,
    ) -> Result<Self> {
        check_name_props(&db_props)?;
        let server = &server.with_limits(&opts.engine_options)?;
        let live = server.database();
        let load_init =
            ["SET SESSION foreign_key_checks = 0".to_string(), "SET SESSION unique_checks = 0".to_string()];
        let mut control = server.connect(&load_init).await?;
        // One restore per target; with the lock held, finish or undo what killed ones left.
        swap::lock(&mut control, &live).await?;
        let notes = match swap::recover(&mut control, &live).await {
            Ok(n) => n,
            Err(e) => {
                swap::unlock(&mut control, &live).await;
                return Err(e.context(format!("clean up after an interrupted restore into {live}")));
            }
        };
        let server_version = query_text(&mut control, "SELECT VERSION()")
            .await?
            .into_iter()
            .next()
            .and_then(|r| r.into_iter().next().flatten())
            .unwrap_or_default();
        let jobs = opts.jobs.max(1);
        let conns = futures::future::join_all((0..jobs).map(|_| server.connect(&load_init))).await;
        let conns = conns.into_iter().collect::<Result<Vec<_>>>()?;
        let pool_ids = conns.iter().map(|c| c.id()).collect();
        let run = swap::new_run();
        let target = if opts.in_place { live.clone() } else { swap::aux_name(&live, "shadow", &run) };
        Ok(MysqlSession {
            live,
            target,
            in_place: opts.in_place,
            tables,
            selected: opts.tables.clone(),
            db_props,
            no_definer: opts.engine_options.mysql.no_definer,
            strip_super: opts.engine_options.mysql.strip_super || opts.engine_options.mysql.no_definer,
            full_checksum: opts.engine_options.mysql.full_checksum,
            server_version,
            control: tokio::sync::Mutex::new(control),
            run,
            notes,
            pool: ConnPool::new(conns),
            pool_ids,
            open_tables: Mutex::new(Default::default()),
            deferred: Mutex::new(Vec::new()),
            in_place_plan: None,
        })
    }

    fn check_tables(&self) -> Result<()> {
        for t in &self.tables {
            TableProps::from_entry(t)?;
        }
        Ok(())
    }

    fn is_selected(&self, name: &str) -> bool {
        match &self.selected {
            None => true,
            Some(list) => list.iter().any(|n| n == name),
        }
    }

    async fn prepare(&mut self) -> Result<()> {
        let mut c = self.control.lock().await;
        if self.in_place {
            exec(&mut c, &format!("CREATE DATABASE IF NOT EXISTS {}", qi(&self.live))).await?;
            drop(c);
            return self.move_live_aside().await;
        }
        let mut sql = format!("CREATE DATABASE {}", qi(&self.target));
        if let Some(cs) = self.db_props.get("charset").and_then(|v| v.as_str()) {
            sql.push_str(&format!(" CHARACTER SET {cs}"));
        }
        if let Some(co) = self.db_props.get("collation").and_then(|v| v.as_str()) {
            sql.push_str(&format!(" COLLATE {co}"));
        }
        exec(&mut c, &sql).await?;
        swap::create_journal(&mut c, &self.target, &self.live).await
    }

    /// In place: saves and removes the live objects, triggers and foreign keys, then renames
    /// the live tables aside in one statement.
    async fn move_live_aside(&mut self) -> Result<()> {
        let mut c = self.control.lock().await;
        let live = self.live.clone();
        let mut tables = base_tables(&mut c, &live).await?;
        if self.selected.is_some() {
            tables.retain(|t| self.is_selected(t));
        }
        let mut objects = harvest(&mut c, &live, self.selected.is_none()).await?;
        if let Some(sel) = &self.selected {
            objects.retain(|o| o.kind == "TRIGGER" && sel.iter().any(|s| trigger_table_is(o, s)));
        }
        let mut fks = Vec::new();
        for t in &tables {
            for (name, def) in foreign_keys(&mut c, &live, t).await? {
                fks.push((t.clone(), name, def));
            }
        }
        let aside: Vec<(String, String)> = tables
            .iter()
            .enumerate()
            .map(|(i, t)| (format!("dbbprev_{}_{i}", rand_suffix()), t.clone()))
            .collect();
        let fks = fks
            .into_iter()
            .map(|(t, name, def)| {
                let add = format!("ALTER TABLE {}.{} ADD {def}", qi(&live), qi(&t));
                (t, name, add)
            })
            .collect();
        let mut loaded: Vec<String> = self.tables.iter().map(|t| t.name.clone()).collect();
        loaded.retain(|t| self.is_selected(t));
        let plan = swap::InPlacePlan {
            live: live.clone(),
            whole: self.selected.is_none(),
            aside,
            fks,
            objects,
            loaded,
            committing: None,
        };
        // Journaled first: from here on, a failure here or a kill anywhere until the commit puts
        // back what was removed (this process, or the next run from the journal).
        plan.write(&mut c).await?;
        let result: Result<()> = async {
            exec(&mut c, &format!("USE {}", qi(&live))).await?;
            for o in &plan.objects {
                drop_object(&mut c, o).await?;
            }
            for (t, name, _) in &plan.fks {
                exec(&mut c, &format!("ALTER TABLE {}.{} DROP FOREIGN KEY {}", qi(&live), qi(t), qi(name)))
                    .await?;
            }
            crate::failpoint::hit("mysql-in-place-dropped");
            if !plan.aside.is_empty() {
                let renames: Vec<String> = plan
                    .aside
                    .iter()
                    .map(|(a, t)| format!("{}.{} TO {}.{}", qi(&live), qi(t), qi(&live), qi(a)))
                    .collect();
                exec(&mut c, &format!("RENAME TABLE {}", renames.join(", "))).await?;
            }
            Ok(())
        }
        .await;
        if let Err(e) = result {
            return Err(match plan.undo(&mut c).await {
                Ok(()) => e.context("move the live tables aside for an in-place restore (put back)"),
                Err(u) => e.context(format!(
                    "move the live tables aside for an in-place restore; putting them back ALSO failed ({u}); \
                     the next restore into {live} retries from its journal"
                )),
            });
        }
        self.in_place_plan = Some(plan);
        Ok(())
    }

    /// In place: drops what was loaded and puts the original tables and objects back.
    async fn put_back(&self, c: &mut Conn) -> Result<()> {
        match &self.in_place_plan {
            Some(plan) => plan.undo(c).await,
            None => Ok(()),
        }
    }

    /// Runs a schema script (or a foreign dump) statement by statement in the load target.
    /// Runs a script on the control connection. `cancel` is honoured between statements, and
    /// during one (an index build) by `KILL QUERY` from a pool connection: the statement stops
    /// on the server and the run returns [`Error::Cancelled`].
    async fn run_script(
        &self,
        sql: ByteStream,
        filter_tables: bool,
        foreign: bool,
        cancel: Option<&CancellationToken>,
    ) -> Result<ScriptReport> {
        let mut c = self.control.lock().await;
        exec(&mut c, &format!("USE {}", qi(&self.target))).await?;
        let mut splitter = ScriptSplitter::default();
        let mut report = ScriptReport::default();
        let mut tables = std::collections::BTreeSet::new();
        let mut skipped: std::collections::BTreeMap<&'static str, u64> = Default::default();
        let mut sql = sql;
        let mut ended = false;
        while !ended {
            let stmts = match sql.next().await {
                Some(b) => splitter.push(&b?).map_err(|e| Error::source("split SQL script", e))?,
                None => {
                    ended = true;
                    std::mem::take(&mut splitter)
                        .finish()
                        .map_err(|e| Error::source("split SQL script", e))?
                }
            };
            for stmt in stmts {
                let kind = script::classify(&stmt);
                match kind {
                    StatementKind::Use => {
                        *skipped.entry("USE").or_default() += 1;
                        continue;
                    }
                    StatementKind::Database => {
                        *skipped.entry("CREATE/DROP DATABASE").or_default() += 1;
                        continue;
                    }
                    StatementKind::SuperOnly if self.strip_super || foreign => {
                        *skipped.entry("GTID/binlog/global settings").or_default() += 1;
                        continue;
                    }
                    _ => {}
                }
                // LOCK TABLES in a dump only speeds up the inserts; the restore loads a shadow no
                // one else sees. Kept, a table whose default calls nextval() fails its INSERT
                // (ERROR 1100: the sequence "was not locked with LOCK TABLES").
                if is_lock_tables(&stmt) {
                    *skipped.entry("LOCK/UNLOCK TABLES").or_default() += 1;
                    continue;
                }
                if filter_tables
                    && let Some(name) = statement_table(&stmt)
                    && !self.is_selected(&name)
                {
                    continue;
                }
                let stmt = if self.no_definer { script::strip_definer(&stmt) } else { stmt };
                if kind == StatementKind::CreateEvent {
                    let mode = session_value(&mut c, "@@SESSION.sql_mode").await?;
                    let tz = session_value(&mut c, "@@SESSION.time_zone").await?;
                    if let Ok(mut d) = self.deferred.lock() {
                        d.push(Object {
                            kind: "EVENT".into(),
                            name: String::new(),
                            sql_mode: mode,
                            time_zone: Some(tz),
                            create: String::from_utf8_lossy(&stmt).into_owned(),
                        });
                    }
                    continue;
                }
                let h = script::head(&stmt, 3);
                let failed =
                    |e| Error::source(format!("MySQL: {}", short(&String::from_utf8_lossy(&stmt))), e);
                match cancel {
                    None => c.query_drop(stmt.as_slice()).await.map_err(failed)?,
                    Some(token) => {
                        let stopped = || Error::Cancelled(format!("restore: stopped before {}", short(&h)));
                        if token.is_cancelled() {
                            return Err(stopped());
                        }
                        let id = c.id();
                        let run = c.query_drop(stmt.as_slice());
                        tokio::pin!(run);
                        tokio::select! {
                            r = &mut run => r.map_err(failed)?,
                            () = token.cancelled() => {
                                self.kill_query(id).await;
                                // The statement ends at once now (interrupted, or done just before).
                                let _ = run.await;
                                return Err(Error::Cancelled(format!("restore: stopped during {}", short(&h))));
                            }
                        }
                    }
                }
                report.statements += 1;
                if h.starts_with("INSERT") || h.starts_with("REPLACE") {
                    report.rows += c.affected_rows();
                    if let Some(t) = statement_table(&stmt) {
                        tables.insert(t);
                    }
                }
            }
        }
        // A dump may switch the session's database back and forth: make sure we ended where we
        // started and nothing went elsewhere.
        report.tables = tables.len();
        for (what, n) in skipped {
            report.notes.push(format!("skipped {n} {what} statement(s)"));
        }
        Ok(report)
    }

    /// Stops the statement running on server thread `id` (`KILL QUERY` from a pool connection;
    /// the pool is idle while a script runs on the control connection).
    async fn kill_query(&self, id: u32) {
        match self.pool.get().await {
            Ok(mut lease) => {
                if let Err(e) = lease.query_drop(format!("KILL QUERY {id}")).await {
                    tracing::warn!("stopping the restore's statement (KILL QUERY {id}): {e}");
                }
            }
            Err(e) => tracing::warn!("stopping the restore's statement: {e}"),
        }
    }

    /// `LOAD DATA` of one chunk on `c`, fed from `data`; warnings are errors.
    async fn load_on(
        &self,
        c: &mut Conn,
        t: &TableEntry,
        object: &ObjectEntry,
        data: ByteStream,
    ) -> Result<u64> {
        let props = TableProps::from_entry(t)?;
        let sql = load_sql(&self.target, t, &props);
        if props.versioned {
            exec(c, "SET SESSION system_versioning_insert_history = 1").await.map_err(|e| {
                e.context(format!(
                    "load the history of system-versioned table {} (needs MariaDB 10.11+)",
                    t.name
                ))
            })?;
        }
        let failure: Arc<Mutex<Option<Error>>> = Arc::new(Mutex::new(None));
        let slot = failure.clone();
        let zeros = Arc::new(Mutex::new(EnumZeros::new(&props)));
        let counted = zeros.clone();
        let stream = data
            .map(move |r| match r {
                Ok(b) => {
                    if let Ok(mut z) = counted.lock() {
                        z.feed(&b);
                    }
                    Ok(b)
                }
                Err(e) => {
                    let msg = e.to_string();
                    if let Ok(mut s) = slot.lock() {
                        s.get_or_insert(e);
                    }
                    Err(std::io::Error::other(msg))
                }
            })
            .boxed();
        // The handler future must be Sync; the stream is only Send, so it travels in a mutex.
        let cell = Mutex::new(Some(stream));
        c.set_infile_handler(async move {
            cell.lock()
                .ok()
                .and_then(|mut s| s.take())
                .ok_or_else(|| mysql_async::Error::Other("infile stream already taken".into()))
        });
        let r = c.query_drop(sql.as_str()).await;
        if let Some(e) = failure.lock().ok().and_then(|mut s| s.take()) {
            return Err(e);
        }
        r.map_err(|e| Error::source(format!("load {} into {}", object.key, t.name), e))?;
        let rows = c.affected_rows();
        let expected = zeros.lock().map(|z| z.count).unwrap_or(0);
        let mut warnings = u64::from(c.get_warnings());
        if expected > 0 {
            // The packet's count is 16 bits; the session variable is not.
            warnings = query_text(c, "SELECT @@warning_count")
                .await?
                .into_iter()
                .next()
                .and_then(|r| r.into_iter().next().flatten())
                .and_then(|n| n.parse().ok())
                .unwrap_or(warnings);
        }
        if warnings != expected {
            let w = query_text(c, "SHOW WARNINGS LIMIT 3").await.unwrap_or_default();
            return Err(Error::integrity(
                format!("load of {} into {}", object.key, t.name),
                if expected == 0 {
                    "no warnings".to_string()
                } else {
                    format!("exactly {expected} warning(s), one per ENUM error value")
                },
                format!("{warnings} warning(s): {w:?}"),
            ));
        }
        Ok(rows)
    }

    fn table(&self, object: &ObjectEntry) -> Result<&TableEntry> {
        object
            .table
            .and_then(|i| self.tables.get(i))
            .ok_or_else(|| Error::InvalidInput(format!("object {} names no table", object.key)))
    }

    /// In place: the held-back events, then the aside tables dropped; a failure puts back.
    async fn commit_in_place(&self, c: &mut Conn) -> Result<CommitReport> {
        let deferred: Vec<Object> = self.deferred.lock().map(|d| d.clone()).unwrap_or_default();
        let Some(plan) = &self.in_place_plan else {
            return Err(Error::InvalidInput("in-place restore committed before it started".into()));
        };
        let events: Vec<Object> = deferred
            .into_iter()
            .map(|mut o| {
                if self.no_definer {
                    o.create =
                        String::from_utf8_lossy(&script::strip_definer(o.create.as_bytes())).into_owned();
                }
                o
            })
            .collect();
        // Recorded first: the next run finishes (never undoes) a commit that had started, since
        // the aside tables may be partly dropped. An error here (events first) still puts back.
        let committing = swap::InPlacePlan { committing: Some(events.clone()), ..plan.clone() };
        let done: Result<()> = async {
            committing.write(c).await?;
            crate::failpoint::hit("mysql-in-place-committing");
            committing.finish(c, &events).await
        }
        .await;
        if let Err(e) = done {
            self.put_back(c).await.map_err(|pe| pe.context(format!("rolling back after {e}")))?;
            return Err(e.context("finish the in-place restore (the previous data was put back)"));
        }
        Ok(CommitReport { notes: self.notes.clone(), ..Default::default() })
    }

    /// The full swap (see [`swap`]): plan and journal it, drop the live tables' triggers, one
    /// `RENAME TABLE`, then the restored objects; a failure before the rename puts the triggers
    /// back, one after it swaps back.
    async fn swap(&self, c: &mut Conn) -> Result<CommitReport> {
        let live = self.live.clone();
        let shadow = self.target.clone();
        let whole = self.selected.is_none();
        exec(c, &format!("CREATE DATABASE IF NOT EXISTS {}", qi(&live))).await?;
        let strip = |mut o: Object| {
            if self.no_definer {
                o.create = String::from_utf8_lossy(&script::strip_definer(o.create.as_bytes())).into_owned();
            }
            o
        };
        let mut new_objects: Vec<Object> = harvest(c, &shadow, true)
            .await?
            .into_iter()
            .filter(|o| whole || o.kind == "TRIGGER")
            .map(strip)
            .collect();
        // Tables with triggers cannot move to another database.
        for o in new_objects.iter().filter(|o| o.kind == "TRIGGER") {
            exec(c, &format!("DROP TRIGGER {}.{}", qi(&shadow), qi(&o.name))).await?;
        }
        if whole {
            let deferred: Vec<Object> = self.deferred.lock().map(|d| d.clone()).unwrap_or_default();
            new_objects.extend(deferred.into_iter().map(strip));
        }
        let shadow_tables = base_tables(c, &shadow).await?;
        let mut live_tables = base_tables(c, &live).await?;
        if !whole {
            live_tables.retain(|t| shadow_tables.contains(t));
        }
        let mut old_objects = harvest(c, &live, whole).await?;
        if !whole {
            old_objects
                .retain(|o| o.kind == "TRIGGER" && shadow_tables.iter().any(|t| trigger_table_is(o, t)));
        }
        let mut alter = Vec::new();
        if let Some(cs) = self.db_props.get("charset").and_then(|v| v.as_str()) {
            alter.push(format!("CHARACTER SET {cs}"));
        }
        if let Some(co) = self.db_props.get("collation").and_then(|v| v.as_str()) {
            alter.push(format!("COLLATE {co}"));
        }
        if let Some(cm) = self.db_props.get("comment").and_then(|v| v.as_str()) {
            alter.push(format!("COMMENT {}", qs(cm)));
        }
        let plan = swap::Plan {
            live: live.clone(),
            shadow: shadow.clone(),
            prev: swap::aux_name(&live, "prev", &self.run),
            whole,
            live_tables,
            shadow_tables,
            old_objects,
            new_objects,
            alter: (whole && !alter.is_empty()).then(|| alter.join(" ")),
            old_alter: if whole { swap::database_options(c, &live).await? } else { None },
        };
        exec(c, &format!("CREATE DATABASE {}", qi(&plan.prev))).await?;
        plan.write(c).await?;
        crate::failpoint::hit("mysql-swap-journaled");
        let renamed: Result<()> = async {
            plan.drop_old_triggers(c).await?;
            crate::failpoint::hit("mysql-swap-triggers-dropped");
            plan.rename_in(c).await
        }
        .await;
        if let Err(e) = renamed {
            let back = plan.restore_old_triggers(c).await;
            let _ = plan.finish(c).await;
            return Err(match back {
                Ok(()) => e.context("swap the restored tables in (nothing changed)"),
                Err(b) => e.context(format!(
                    "swap the restored tables in; putting the live triggers back ALSO failed ({b}); \
                     the next restore into {live} retries"
                )),
            });
        }
        crate::failpoint::hit("mysql-swap-renamed");
        // The data is live. Objects next; on failure swap back.
        if let Err(e) = plan.forward(c).await {
            plan.back(c).await.map_err(|re| {
                re.context(format!(
                    "swapping back after a failure ({e}); the next restore into {live} finishes or undoes it"
                ))
            })?;
            let _ = plan.finish(c).await;
            return Err(
                e.context("recreate views, routines, triggers and events (the previous data was put back)")
            );
        }
        crate::failpoint::hit("mysql-swap-objects-created");
        plan.finish(c).await?;
        Ok(CommitReport { notes: self.notes.clone(), ..Default::default() })
    }
}

/// Counts, in a `LOAD DATA` TSV stream, the fields of [`ColKind::Enum`] columns that hold the
/// column's error-value text: each loads as index 0 with exactly one "Data truncated" warning,
/// so the load expects exactly that many warnings (and any other warning still fails it).
struct EnumZeros {
    /// Per field position: the error-value text, for ENUM columns.
    tokens: Vec<Option<Vec<u8>>>,
    field: usize,
    /// The current field's bytes, kept up to one more than the token's length.
    cur: Vec<u8>,
    /// The current field had an escape (`\N`, `\t`...): not the token.
    escaped: bool,
    after_backslash: bool,
    count: u64,
}

impl EnumZeros {
    fn new(props: &TableProps) -> Self {
        let tokens = props
            .columns
            .iter()
            .map(|c| (c.kind == ColKind::Enum).then(|| c.zero.clone().unwrap_or_default().into_bytes()))
            .collect();
        EnumZeros { tokens, field: 0, cur: Vec::new(), escaped: false, after_backslash: false, count: 0 }
    }

    fn end_field(&mut self) {
        if let Some(Some(t)) = self.tokens.get(self.field)
            && !self.escaped
            && self.cur == *t
        {
            self.count += 1;
        }
        self.cur.clear();
        self.escaped = false;
    }

    fn feed(&mut self, data: &[u8]) {
        if self.tokens.iter().all(Option::is_none) {
            return;
        }
        for &b in data {
            if self.after_backslash {
                self.after_backslash = false;
                continue;
            }
            match b {
                b'\\' => {
                    self.escaped = true;
                    self.after_backslash = true;
                }
                b'\t' => {
                    self.end_field();
                    self.field += 1;
                }
                b'\n' => {
                    self.end_field();
                    self.field = 0;
                }
                _ => {
                    if let Some(Some(t)) = self.tokens.get(self.field)
                        && self.cur.len() <= t.len()
                    {
                        self.cur.push(b);
                    }
                }
            }
        }
    }
}

/// `LOCK TABLES ...` / `UNLOCK TABLES` (also `LOCK TABLE`, in conditional comments).
fn is_lock_tables(stmt: &[u8]) -> bool {
    let h = script::head(stmt, 2);
    let mut w = h.split(' ');
    matches!((w.next(), w.next()), (Some("LOCK" | "UNLOCK"), Some("TABLES" | "TABLE")))
}

/// Column defaults of `to`'s tables that name database `from` (a `nextval()` default is bound
/// to the database the table was created in: the shadow) re-pointed at `to`.
pub(super) async fn retarget_defaults(c: &mut Conn, from: &str, to: &str) -> Result<()> {
    let rows = query_text(
        c,
        &format!(
            "SELECT TABLE_NAME, COLUMN_NAME, COLUMN_DEFAULT FROM information_schema.COLUMNS \
             WHERE TABLE_SCHEMA = {} AND LOCATE({}, COLUMN_DEFAULT) > 0",
            qs(to),
            qs(&format!("{}.", qi(from)))
        ),
    )
    .await?;
    for r in rows {
        let get = |i: usize| r.get(i).cloned().flatten().unwrap_or_default();
        let (table, column, default) = (get(0), get(1), get(2));
        let new = super::requalify(&default, from, Some(to));
        if new != default {
            exec(
                c,
                &format!(
                    "ALTER TABLE {}.{} ALTER COLUMN {} SET DEFAULT ({new})",
                    qi(to),
                    qi(&table),
                    qi(&column)
                ),
            )
            .await?;
        }
    }
    Ok(())
}

pub(super) fn trigger_table_is(o: &Object, table: &str) -> bool {
    o.time_zone.as_deref() == Some(table)
}

async fn session_value(c: &mut Conn, var: &str) -> Result<String> {
    let r = query_text(c, &format!("SELECT {var}")).await?;
    Ok(r.into_iter().next().and_then(|r| r.into_iter().next().flatten()).unwrap_or_default())
}

/// Base tables and sequences of a database.
pub(super) async fn base_tables(c: &mut Conn, db: &str) -> Result<Vec<String>> {
    let rows = query_text(
        c,
        &format!(
            "SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = {} AND TABLE_TYPE <> 'VIEW' \
             AND TABLE_NAME <> {} ORDER BY TABLE_NAME",
            qs(db),
            qs(swap::JOURNAL)
        ),
    )
    .await?;
    Ok(rows.into_iter().filter_map(|r| r.into_iter().next().flatten()).collect())
}

/// Foreign keys of a table as (name, `CONSTRAINT ... FOREIGN KEY ...` clause).
async fn foreign_keys(c: &mut Conn, db: &str, table: &str) -> Result<Vec<(String, String)>> {
    let rows = query_text(c, &format!("SHOW CREATE TABLE {}.{}", qi(db), qi(table))).await?;
    let create = rows.into_iter().next().and_then(|r| r.into_iter().nth(1).flatten()).unwrap_or_default();
    let mut out = Vec::new();
    for line in create.lines() {
        let t = line.trim().trim_end_matches(',');
        if t.starts_with("CONSTRAINT `") && t.contains(" FOREIGN KEY ") {
            let name = t["CONSTRAINT `".len()..].split('`').next().unwrap_or_default().to_string();
            out.push((name, t.to_string()));
        }
    }
    Ok(out)
}

/// Views, routines, triggers and (with `all`) events of a database, with their session
/// settings. For triggers `time_zone` holds the table name (they need none).
pub(super) async fn harvest(c: &mut Conn, db: &str, all: bool) -> Result<Vec<Object>> {
    exec(c, "SET SESSION character_set_results = utf8mb4").await?;
    exec(c, &format!("USE {}", qi(db))).await?;
    let d = qs(db);
    let mut out = Vec::new();
    if all {
        for r in query_text(
            c,
            &format!("SELECT ROUTINE_TYPE, ROUTINE_NAME FROM information_schema.ROUTINES WHERE ROUTINE_SCHEMA = {d} ORDER BY ROUTINE_TYPE, ROUTINE_NAME"),
        )
        .await?
        {
            let ty = r.first().cloned().flatten().unwrap_or_default();
            let name = r.get(1).cloned().flatten().unwrap_or_default();
            // A kind this version does not know could not be moved or put back: refuse.
            let Some(kind) = ROUTINE_TYPES.iter().copied().find(|k| *k == ty) else {
                return Err(Error::Unsupported(format!(
                    "routine {name} in database {db} is a {ty}, which this version cannot restore"
                )));
            };
            let s = query_text(c, &format!("SHOW CREATE {ty} {}", qi(&name))).await?;
            if let Some(s) = s.into_iter().next() {
                out.push(Object {
                    kind: kind.into(),
                    name,
                    sql_mode: s.get(1).cloned().flatten().unwrap_or_default(),
                    time_zone: None,
                    create: s.get(2).cloned().flatten().unwrap_or_default(),
                });
            }
        }
        let mut views = Vec::new();
        for r in query_text(
            c,
            &format!("SELECT TABLE_NAME FROM information_schema.VIEWS WHERE TABLE_SCHEMA = {d}"),
        )
        .await?
        {
            let name = r.into_iter().next().flatten().unwrap_or_default();
            let s = query_text(c, &format!("SHOW CREATE VIEW {}", qi(&name))).await?;
            if let Some(s) = s.into_iter().next() {
                views.push(Object {
                    kind: "VIEW".into(),
                    name,
                    sql_mode: super::LOAD_SQL_MODE.into(),
                    time_zone: None,
                    create: super::view_relative_to(&s.get(1).cloned().flatten().unwrap_or_default(), db),
                });
            }
        }
        out.extend(views);
        if let Ok(events) = query_text(
            c,
            &format!("SELECT EVENT_NAME FROM information_schema.EVENTS WHERE EVENT_SCHEMA = {d}"),
        )
        .await
        {
            for r in events {
                let name = r.into_iter().next().flatten().unwrap_or_default();
                let s = query_text(c, &format!("SHOW CREATE EVENT {}", qi(&name))).await?;
                if let Some(s) = s.into_iter().next() {
                    out.push(Object {
                        kind: "EVENT".into(),
                        name,
                        sql_mode: s.get(1).cloned().flatten().unwrap_or_default(),
                        time_zone: s.get(2).cloned().flatten(),
                        create: s.get(3).cloned().flatten().unwrap_or_default(),
                    });
                }
            }
        }
    }
    for r in query_text(
        c,
        &format!(
            "SELECT TRIGGER_NAME, EVENT_OBJECT_TABLE FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = {d} \
             ORDER BY EVENT_OBJECT_TABLE, ACTION_TIMING, EVENT_MANIPULATION, ACTION_ORDER"
        ),
    )
    .await?
    {
        let name = r.first().cloned().flatten().unwrap_or_default();
        let table = r.get(1).cloned().flatten();
        let s = query_text(c, &format!("SHOW CREATE TRIGGER {}", qi(&name))).await?;
        if let Some(s) = s.into_iter().next() {
            out.push(Object {
                kind: "TRIGGER".into(),
                name,
                sql_mode: s.get(1).cloned().flatten().unwrap_or_default(),
                time_zone: table,
                create: s.get(2).cloned().flatten().unwrap_or_default(),
            });
        }
    }
    Ok(out)
}

/// Drops an object; packages only parse in Oracle mode.
pub(super) async fn drop_object(c: &mut Conn, o: &Object) -> Result<()> {
    if !o.kind.starts_with("PACKAGE") {
        return exec(c, &drop_sql(o)).await;
    }
    exec(c, "SET SESSION sql_mode = 'ORACLE'").await?;
    let r = exec(c, &drop_sql(o)).await;
    exec(c, &format!("SET SESSION sql_mode = {}", qs(super::LOAD_SQL_MODE))).await?;
    r
}

fn drop_sql(o: &Object) -> String {
    format!("DROP {} IF EXISTS {}", o.kind, qi(&o.name))
}

/// Creates objects in `db`: routines, then views (retrying in rounds, so views on views find
/// each other whatever the order), then triggers and events.
pub(super) async fn recreate(c: &mut Conn, db: &str, objects: &[Object], no_definer: bool) -> Result<()> {
    exec(c, &format!("USE {}", qi(db))).await?;
    let rank = |k: &str| match k {
        "FUNCTION" | "PROCEDURE" | "PACKAGE" => 0,
        "PACKAGE BODY" => 1,
        "VIEW" => 2,
        "TRIGGER" => 3,
        _ => 4,
    };
    let mut pending: Vec<&Object> = objects.iter().collect();
    pending.sort_by_key(|o| rank(&o.kind));
    let mut last_err = None;
    for _round in 0..(objects.len() + 1) {
        if pending.is_empty() {
            break;
        }
        let mut next = Vec::new();
        for o in pending {
            let create = if no_definer {
                String::from_utf8_lossy(&script::strip_definer(o.create.as_bytes())).into_owned()
            } else {
                o.create.clone()
            };
            let run = async {
                exec(c, &format!("SET SESSION sql_mode = {}", qs(&o.sql_mode))).await?;
                if o.kind == "EVENT"
                    && let Some(tz) = &o.time_zone
                {
                    exec(c, &format!("SET SESSION time_zone = {}", qs(tz))).await?;
                }
                let r = c.query_drop(create.as_str()).await;
                exec(c, &format!("SET SESSION sql_mode = {}", qs(super::LOAD_SQL_MODE))).await?;
                exec(c, "SET SESSION time_zone = '+00:00'").await?;
                r.map_err(|e| Error::source(format!("MySQL: {}", short(&create)), e))
            };
            match run.await {
                Ok(()) => {}
                Err(e) if o.kind == "VIEW" => {
                    last_err = Some(e);
                    next.push(o);
                }
                Err(e) => return Err(e),
            }
        }
        pending = next;
    }
    match (pending.is_empty(), last_err) {
        (false, Some(e)) => Err(e),
        _ => Ok(()),
    }
}

/// The table a CREATE TABLE / CREATE SEQUENCE / SETVAL / INSERT / LOCK statement is about.
fn statement_table(stmt: &[u8]) -> Option<String> {
    let h = script::head(stmt, 4);
    let text = String::from_utf8_lossy(stmt);
    let after = if h.starts_with("CREATE TABLE")
        || h.starts_with("CREATE SEQUENCE")
        || h.starts_with("ALTER TABLE")
        || h.starts_with("ALTER SEQUENCE")
    {
        let upper = text.to_ascii_uppercase();
        let kw = if h.contains(" SEQUENCE") { "SEQUENCE" } else { "TABLE" };
        upper.find(kw).map(|p| p + kw.len())
    } else if h.starts_with("SELECT SETVAL") {
        text.find("SETVAL(").map(|p| p + 7)
    } else if h.starts_with("INSERT INTO") || h.starts_with("REPLACE INTO") {
        text.to_ascii_uppercase().find("INTO").map(|p| p + 4)
    } else {
        None
    }?;
    let rest = text[after..].trim_start();
    let rest = rest.strip_prefix("IF NOT EXISTS").map(str::trim_start).unwrap_or(rest);
    if let Some(q) = rest.strip_prefix('`') {
        let mut name = String::new();
        let mut chars = q.chars().peekable();
        while let Some(ch) = chars.next() {
            if ch == '`' {
                if chars.peek() == Some(&'`') {
                    chars.next();
                    name.push('`');
                    continue;
                }
                return Some(name);
            }
            name.push(ch);
        }
        None
    } else {
        Some(rest.split(|c: char| c.is_whitespace() || c == '(' || c == ',').next()?.to_string())
    }
}

/// `LOAD DATA` for one table of the manifest.
fn load_sql(db: &str, t: &TableEntry, props: &TableProps) -> String {
    let mut targets = Vec::new();
    let mut sets = Vec::new();
    for (i, c) in props.columns.iter().enumerate() {
        if c.kind == ColKind::Bit {
            targets.push(format!("@v{i}"));
            sets.push(format!("{} = CAST(@v{i} AS UNSIGNED)", qi(&c.name)));
        } else if c.kind == ColKind::TextForm {
            targets.push(format!("@v{i}"));
            sets.push(format!("{} = CONVERT(@v{i} USING utf8mb4)", qi(&c.name)));
        } else {
            targets.push(qi(&c.name));
        }
    }
    let mut sql = format!(
        "LOAD DATA LOCAL INFILE 'dbbackup' INTO TABLE {}.{} CHARACTER SET binary \
         FIELDS TERMINATED BY '\\t' ESCAPED BY '\\\\' LINES TERMINATED BY '\\n' ({})",
        qi(db),
        qi(&t.name),
        targets.join(", ")
    );
    if !sets.is_empty() {
        sql.push_str(" SET ");
        sql.push_str(&sets.join(", "));
    }
    sql
}

#[async_trait]
impl LoadSession for MysqlSession {
    async fn pre_data(&self, sql: ByteStream) -> Result<()> {
        self.run_script(sql, true, false, None).await.map(|_| ())
    }

    fn one_table_at_a_time(&self) -> bool {
        // Each table loads in one transaction on one connection: concurrent loads into the same
        // empty table deadlock on InnoDB's bulk-insert table lock (unique and foreign key checks
        // are off), and one transaction per table lets InnoDB take its bulk path for all of it.
        true
    }

    async fn table_loaded(&self, table: &TableEntry) -> Result<()> {
        let lease = self.open_tables.lock().ok().and_then(|mut m| m.remove(&table.name));
        if let Some(mut lease) = lease {
            exec(&mut lease, "COMMIT")
                .await
                .map_err(|e| e.context(format!("commit the load of {}", table.name)))?;
        }
        Ok(())
    }

    async fn load(&self, object: &ObjectEntry, data: ByteStream) -> Result<u64> {
        let t = self.table(object)?;
        let open = self.open_tables.lock().ok().and_then(|mut m| m.remove(&t.name));
        let mut lease = match open {
            Some(l) => l,
            None => {
                let mut l = self.pool.get().await?;
                exec(&mut l, "START TRANSACTION").await?;
                l
            }
        };
        match self.load_on(&mut lease, t, object, data).await {
            Ok(rows) => {
                if let Ok(mut m) = self.open_tables.lock() {
                    m.insert(t.name.clone(), lease);
                }
                Ok(rows)
            }
            Err(e) => {
                let _ = exec(&mut lease, "ROLLBACK").await;
                Err(e)
            }
        }
    }

    async fn post_data(&self, sql: ByteStream, ctx: &Context) -> Result<()> {
        let cancel = Some(&ctx.cancel);
        let text = read_text(sql, MAX_SCHEMA, "post-data schema").await?;
        let (structure, objects) = match text.find(LIVE_OBJECTS_MARKER) {
            Some(p) => (text[..p].to_string(), text[p..].to_string()),
            None => (text, String::new()),
        };
        let one = |s: String| futures::stream::once(async move { Ok(bytes::Bytes::from(s)) }).boxed();
        self.run_script(one(structure), true, false, cancel).await?;
        if self.selected.is_some() {
            // Only the selected tables' triggers come along with --tables.
            let stmts =
                script::split_all(objects.as_bytes()).map_err(|e| Error::source("split post-data", e))?;
            let mut keep = String::new();
            let mut pending_sets = String::new();
            for s in stmts {
                // `CREATE [OR REPLACE] [DEFINER=...] TRIGGER`: the word can come fourth.
                let h = script::head(&s, 6);
                let text = String::from_utf8_lossy(&s).into_owned();
                if h.starts_with("SET") {
                    pending_sets.push_str(&text);
                    pending_sets.push_str(";\n");
                    continue;
                }
                let is_trigger = h.starts_with("CREATE ") && h.split_whitespace().any(|w| w == "TRIGGER");
                if is_trigger && trigger_on_selected(&text, self) {
                    keep.push_str(&pending_sets);
                    keep.push_str("DELIMITER ;;\n");
                    keep.push_str(&text);
                    keep.push_str(";;\nDELIMITER ;\n");
                }
                pending_sets.clear();
            }
            self.run_script(one(keep), false, false, cancel).await?;
        } else {
            self.run_script(one(objects), false, false, cancel).await?;
        }
        Ok(())
    }

    /// The backup's `CHECKSUM TABLE`, when the same server version recorded it, confirms the
    /// content in a fraction of the time; anything else (other version, versioned table, a
    /// differing value, which can also come from a different physical format, or the
    /// `full_checksum` engine option) recomputes the content checksum on the server.
    async fn table_stats(&self, table: &TableEntry) -> Result<TableStats> {
        let props = TableProps::from_entry(table)?;
        let mut lease = self.pool.get().await?;
        let c = &mut *lease;
        if !self.full_checksum
            && !props.versioned
            && table.checksum.is_some()
            && let Some(rec) = table.properties.get(CHECKSUM_TABLE_KEY)
            && rec.get("server").and_then(|v| v.as_str()) == Some(self.server_version.as_str())
            && let Some(want) = rec.get("value").and_then(|v| v.as_str())
        {
            let count =
                query_text(c, &format!("SELECT COUNT(*) FROM {}.{}", qi(&self.target), qi(&table.name)))
                    .await?
                    .into_iter()
                    .next()
                    .and_then(|r| r.into_iter().next().flatten())
                    .and_then(|n| n.parse::<u64>().ok());
            let got = checksum_table(c, &self.target, &table.name).await?;
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
        stats(c, &self.target, &table.name, &props, v1).await
    }

    async fn commit(self: Box<Self>, _ctx: &Context) -> Result<CommitReport> {
        let mut c = self.control.lock().await;
        let r = if self.in_place { self.commit_in_place(&mut c).await } else { self.swap(&mut c).await };
        swap::unlock(&mut c, &self.live).await;
        r
    }

    async fn abort(self: Box<Self>) -> Result<()> {
        let mut c = self.control.lock().await;
        // A load cut short (another chunk failed) may still hold locks on the server.
        if let Ok(mut m) = self.open_tables.lock() {
            m.clear();
        }
        for id in &self.pool_ids {
            let _ = c.query_drop(format!("KILL CONNECTION {id}")).await;
        }
        let r = if self.in_place {
            self.put_back(&mut c).await
        } else {
            match c.query_drop(format!("DROP DATABASE IF EXISTS {}", qi(&self.target))).await {
                Ok(()) => Ok(()),
                Err(e) if is_server_error(&e, &[1008]) => Ok(()),
                Err(e) => Err(Error::source(format!("drop shadow database {}", self.target), e)),
            }
        };
        swap::unlock(&mut c, &self.live).await;
        r
    }

    async fn script(&self, sql: ByteStream, ctx: &Context) -> Result<ScriptReport> {
        self.run_script(sql, false, true, Some(&ctx.cancel)).await
    }
}

fn trigger_on_selected(create: &str, s: &MysqlSession) -> bool {
    let upper = create.to_ascii_uppercase();
    let Some(p) = upper.find(" ON ") else { return false };
    let rest = create[p + 4..].trim_start();
    let name = statement_table(format!("CREATE TABLE {rest}").as_bytes()).unwrap_or_default();
    s.is_selected(&name)
}

#[cfg(test)]
mod tests {
    #[test]
    fn manifest_charset_and_collation_must_be_plain_names() {
        let props = |cs: &str| {
            let mut m = std::collections::BTreeMap::new();
            m.insert("charset".to_string(), serde_json::json!(cs));
            m.insert("collation".to_string(), serde_json::json!("utf8mb4_unicode_ci"));
            m
        };
        assert!(super::check_name_props(&props("utf8mb4")).is_ok());
        for bad in ["utf8mb4; DROP DATABASE mysql", "utf8mb4 COLLATE x", "", "a'b", "x`"] {
            let e = super::check_name_props(&props(bad)).unwrap_err();
            assert_eq!(e.kind(), crate::error::ErrorKind::Integrity, "{bad}: {e}");
        }
        let mut m = props("utf8mb4");
        m.insert("collation".into(), serde_json::json!(42));
        assert!(super::check_name_props(&m).is_err());
    }

    use super::*;

    #[test]
    fn finds_statement_tables() {
        assert_eq!(statement_table(b"CREATE TABLE `a``b` (x int)").as_deref(), Some("a`b"));
        assert_eq!(statement_table(b"/* c */ INSERT INTO `t` VALUES (1)").as_deref(), Some("t"));
        assert_eq!(statement_table(b"SELECT SETVAL(`s`, 1, 0, 0)").as_deref(), Some("s"));
        assert_eq!(statement_table(b"ALTER TABLE `t` ADD KEY `k` (`a`)").as_deref(), Some("t"));
        assert!(is_lock_tables(b"LOCK TABLES `t` WRITE"));
        assert!(is_lock_tables(b"/*!40000 UNLOCK TABLES */"));
        assert!(!is_lock_tables(b"SELECT 'LOCK TABLES'"));
    }

    #[test]
    fn counts_enum_error_values_in_the_stream() {
        let props: TableProps = serde_json::from_value(serde_json::json!({"columns": [
            {"name": "id", "kind": "plain"},
            {"name": "e", "kind": "enum", "zero": ""},
            {"name": "m", "kind": "enum", "zero": "0"},
        ]}))
        .unwrap();
        let mut z = EnumZeros::new(&props);
        // Row 1: both error values; row 2: NULL and a member; row 3: escaped text, "00", "0".
        let tsv = b"1\t\t0\n2\t\\N\tz\n3\t\\t\t00\n4\tx\t0\n";
        for chunk in tsv.chunks(3) {
            z.feed(chunk);
        }
        assert_eq!(z.count, 3);
    }
}
