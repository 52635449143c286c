//! A restore session, in two modes with one shape: [`Session<M>`] is the part both share (the
//! target's lock and the recovery of killed runs, the loader connections, the tables' loads,
//! the schema scripts, the read-back), and the [`Mode`] is what differs: where the tables are
//! loaded (one transaction per table or chunk by chunk), how the load is made live and how it
//! is discarded — [`super::shadow::Shadow`] (a shadow database swapped in) or
//! [`super::in_place::InPlace`] (the live tables moved aside inside the live database).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Mutex;

use async_trait::async_trait;
use futures::StreamExt;
use mysql_async::Conn;
use mysql_async::prelude::Queryable;

use super::conn::{Server, exec, qi, query_value, short};
use super::object::Object;
use super::runner::{ScriptRun, key_statements, run_script, selected_triggers};
use super::schema::LIVE_OBJECTS_MARKER;
use super::table::TableProps;
use super::{checksum, infile, swap};
use crate::codec::ByteStream;
use crate::error::{Error, Result};
use crate::format::manifest::{ObjectEntry, TableEntry};
use crate::progress::{CancellationToken, Context};
use crate::source::pool::{Pool, PoolGuard};
use crate::source::table_filter::selects_name;
use crate::source::{CommitReport, LoadOptions, LoadSession, ScriptReport, TableStats, read_text};

const MAX_SCHEMA: usize = 256 << 20;

/// What differs between a shadow restore and an in-place one.
#[async_trait]
pub(crate) trait Mode: Send + Sync + Sized + 'static {
    /// Whether each table loads in one transaction (its chunks invisible until the last is in)
    /// rather than each chunk committing on its own. The shadow is private to the run, so its
    /// chunks commit one by one: measured (docs/benchmarks.md, MariaDB 10.11) the server spends
    /// about a third less CPU on `LOAD DATA` than with one transaction per table, and each table
    /// can be read back as soon as it is loaded, while other tables still load. In place, the
    /// tables carry the live names, so a table stays empty until its last chunk is in.
    const TRANSACTION_PER_TABLE: bool;
    /// The database the tables are loaded into, for run `run` into `live`.
    fn target(live: &str, run: &str) -> String;
    /// Prepares the target (the session holds the target's lock); a failure leaves the live
    /// database as it was.
    async fn prepare(core: &Core) -> Result<Self>;
    /// Makes the load live; on failure puts the previous state back.
    async fn commit(&self, core: &Core, c: &mut Conn) -> Result<CommitReport>;
    /// Discards the load (the loader connections are already gone).
    async fn abort(&self, core: &Core, c: &mut Conn) -> Result<()>;
}

/// The state both modes share.
pub(crate) struct Core {
    pub(crate) live: String,
    /// Where tables are loaded: a shadow database, or the live one in place.
    pub(crate) target: String,
    pub(crate) tables: Vec<TableEntry>,
    /// The tables selected with `--tables` (`None`: the whole database).
    pub(crate) selected: Option<Vec<String>>,
    pub(crate) db_props: BTreeMap<String, serde_json::Value>,
    pub(crate) no_definer: bool,
    strip_super: bool,
    /// [`Mode::TRANSACTION_PER_TABLE`] of the session's mode.
    transaction_per_table: bool,
    /// Always recompute the content checksum (engine option `full_checksum`).
    full_checksum: bool,
    /// `SELECT VERSION()` of the target server.
    server_version: String,
    /// Holds the target's restore lock ([`swap::lock`]) for the session's life, and its swap
    /// lock ([`swap::lock_swap`]) while the mode changes the live database.
    pub(crate) control: tokio::sync::Mutex<Conn>,
    /// How long to wait for the swap lock (the run's lock timeout).
    pub(crate) lock_wait: Option<std::time::Duration>,
    /// This run's id (in its shadow and previous database names).
    pub(crate) run: String,
    /// What the start of this run cleaned up after killed ones.
    pub(crate) notes: Vec<String>,
    pool: Pool<Conn>,
    /// Server thread ids of the pool's connections (killed on abort so that no half-done load
    /// holds a lock the shadow's DROP would wait on).
    pool_ids: Vec<u32>,
    /// Tables whose load transaction is open, with the connection it runs on.
    open_tables: Mutex<HashMap<String, PoolGuard<Conn>>>,
    /// Events held back by the scripts until the commit.
    deferred: Mutex<Vec<Object>>,
    /// Per table, the post-data statements adding its secondary keys, not yet run (see
    /// [`LoadSession::keys_per_table`]).
    table_keys: Mutex<HashMap<String, Vec<Vec<u8>>>>,
    /// Post-data statements already run (each table's keys): post-data leaves them out.
    keys_run: Mutex<HashSet<Vec<u8>>>,
}

/// A restore session in mode `M`.
pub(crate) struct Session<M> {
    core: Core,
    mode: M,
}

/// Opens a session in mode `M`: takes the target's lock, finishes or undoes killed restores,
/// connects `opts.jobs` loaders and prepares the target.
pub(crate) async fn open<M: Mode>(
    server: &Server,
    opts: &LoadOptions,
    tables: Vec<TableEntry>,
    db_props: BTreeMap<String, serde_json::Value>,
) -> Result<Box<dyn LoadSession>> {
    let core = Core::open::<M>(server, opts, tables, db_props).await?;
    for t in &core.tables {
        TableProps::from_entry(t)?;
    }
    let mode = M::prepare(&core).await?;
    Ok(Box::new(Session { core, mode }))
}

impl Core {
    async fn open<M: Mode>(
        server: &Server,
        opts: &LoadOptions,
        tables: Vec<TableEntry>,
        db_props: BTreeMap<String, serde_json::Value>,
    ) -> Result<Self> {
        let server = &server.with_limits(&opts.engine_options)?;
        let live = server.database();
        let load_init =
            ["SET SESSION foreign_key_checks = 0".to_string(), "SET SESSION unique_checks = 0".to_string()];
        let mut control = server.connect(&load_init).await?;
        // One restore per target; with the lock held, finish or undo what killed ones left
        // (under the swap lock: no backup reads the database while that changes it).
        swap::lock(&mut control, &live).await?;
        let lock_wait = server.limits().lock;
        let recovered =
            match swap::lock_swap(&mut control, &live, lock_wait, "restore: nothing changed").await {
                Ok(()) => {
                    let r = swap::recover(&mut control, &live).await;
                    swap::unlock_swap(&mut control, &live).await;
                    r
                }
                Err(e) => Err(e),
            };
        let notes = match recovered {
            Ok(n) => n,
            Err(e) => {
                swap::unlock(&mut control, &live).await;
                return Err(e.context(format!("clean up after an interrupted restore into {live}")));
            }
        };
        let server_version = query_value(&mut control, "SELECT VERSION()").await?.unwrap_or_default();
        let jobs = opts.jobs.max(1);
        let conns = futures::future::join_all((0..jobs).map(|_| server.connect(&load_init))).await;
        let conns = conns.into_iter().collect::<Result<Vec<_>>>()?;
        let pool_ids = conns.iter().map(|c| c.id()).collect();
        let run = swap::new_run();
        let mysql = &opts.engine_options.mysql;
        Ok(Core {
            target: M::target(&live, &run),
            live,
            tables,
            selected: opts.tables.clone(),
            db_props,
            no_definer: mysql.no_definer,
            transaction_per_table: M::TRANSACTION_PER_TABLE,
            strip_super: mysql.strip_super || mysql.no_definer,
            full_checksum: mysql.full_checksum,
            server_version,
            control: tokio::sync::Mutex::new(control),
            lock_wait,
            run,
            notes,
            pool: Pool::new(conns),
            pool_ids,
            open_tables: Mutex::new(Default::default()),
            deferred: Mutex::new(Vec::new()),
            table_keys: Mutex::new(HashMap::new()),
            keys_run: Mutex::new(HashSet::new()),
        })
    }

    pub(crate) fn is_selected(&self, name: &str) -> bool {
        selects_name(self.selected.as_deref(), name)
    }

    /// A text property of the backed-up database (`charset`, `collation`, `comment`).
    pub(crate) fn db_prop(&self, key: &str) -> Option<&str> {
        self.db_props.get(key).and_then(|v| v.as_str())
    }

    /// The events the scripts held back, `DEFINER` stripped when asked.
    pub(crate) fn deferred_events(&self) -> Vec<Object> {
        let deferred: Vec<Object> = self.deferred.lock().map(|d| d.clone()).unwrap_or_default();
        deferred.into_iter().map(|o| o.without_definer(self.no_definer)).collect()
    }

    /// A commit's report: what the start of the run cleaned up.
    pub(crate) fn report(&self) -> CommitReport {
        CommitReport { notes: self.notes.clone(), ..Default::default() }
    }

    /// Runs a script in the load target on the control connection; `filter_tables` leaves out
    /// the statements about tables not selected, `foreign` marks a dump not made by dbbackup.
    async fn run_script(
        &self,
        sql: ByteStream,
        filter_tables: bool,
        foreign: bool,
        cancel: Option<&CancellationToken>,
        leave_out_run: bool,
    ) -> Result<ScriptReport> {
        let mut c = self.control.lock().await;
        let run = ScriptRun {
            db: &self.target,
            tables: self.selected.as_deref().filter(|_| filter_tables),
            strip_super: self.strip_super || foreign,
            no_definer: self.no_definer,
            cancel,
            killer: &self.pool,
            deferred: &self.deferred,
            already_run: leave_out_run.then_some(&self.keys_run),
        };
        run_script(&mut c, &run, sql).await
    }

    /// Runs `stmt` on a loader connection; a cancel stops it on the server (`KILL QUERY` from
    /// the control connection, idle while the tables load).
    async fn run_cancellable(&self, c: &mut Conn, stmt: &[u8], cancel: &CancellationToken) -> Result<()> {
        let text = String::from_utf8_lossy(stmt).into_owned();
        if cancel.is_cancelled() {
            return Err(Error::Cancelled(format!("restore: stopped before {}", short(&text))));
        }
        let id = c.id();
        let running = c.query_drop(stmt);
        tokio::pin!(running);
        tokio::select! {
            r = &mut running => r.map_err(|e| Error::source(format!("MySQL: {}", short(&text)), e)),
            () = cancel.cancelled() => {
                if let Err(e) = self.control.lock().await.query_drop(format!("KILL QUERY {id}")).await {
                    tracing::warn!("stopping the restore's statement (KILL QUERY {id}): {e}");
                }
                let _ = running.await;
                Err(Error::Cancelled(format!("restore: stopped during {}", short(&text))))
            }
        }
    }

    fn table(&self, object: &ObjectEntry) -> Result<&TableEntry> {
        object
            .table
            .and_then(|i| self.tables.get(i))
            .ok_or_else(|| Error::InvalidInput(format!("object {} names no table", object.key)))
    }
}

#[async_trait]
impl<M: Mode> LoadSession for Session<M> {
    async fn pre_data(&self, sql: ByteStream) -> Result<()> {
        self.core.run_script(sql, true, false, None, false).await.map(|_| ())
    }

    fn one_table_at_a_time(&self) -> bool {
        // Each table loads on one connection at a time: concurrent loads into the same empty
        // table deadlock on InnoDB's bulk-insert table lock (unique and foreign key checks are
        // off); in place, it is also one transaction per table.
        true
    }

    fn stats_after_table_load(&self) -> bool {
        // Every chunk committed: the table's rows are final and visible to the read-back's
        // connection (the secondary keys added by post-data do not change them).
        !self.core.transaction_per_table
    }

    async fn table_loaded(&self, table: &TableEntry) -> Result<()> {
        let lease = self.core.open_tables.lock().ok().and_then(|mut m| m.remove(&table.name));
        if let Some(mut lease) = lease {
            exec(&mut lease, "COMMIT")
                .await
                .map_err(|e| e.context(format!("commit the load of {}", table.name)))?;
        }
        Ok(())
    }

    async fn load(&self, object: &ObjectEntry, data: ByteStream) -> Result<u64> {
        let core = &self.core;
        let t = core.table(object)?;
        if !core.transaction_per_table {
            // Autocommit: the chunk's `LOAD DATA` is its own transaction (a failed one leaves
            // nothing, and the shadow is dropped on abort).
            let mut lease = core.pool.get().await?;
            return infile::load_chunk(&mut lease, &core.target, t, object, data).await;
        }
        let open = core.open_tables.lock().ok().and_then(|mut m| m.remove(&t.name));
        let mut lease = match open {
            Some(l) => l,
            None => {
                let mut l = core.pool.get().await?;
                exec(&mut l, "START TRANSACTION").await?;
                l
            }
        };
        match infile::load_chunk(&mut lease, &core.target, t, object, data).await {
            Ok(rows) => {
                if let Ok(mut m) = core.open_tables.lock() {
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

    fn keys_per_table(&self) -> bool {
        // In the shadow every chunk commits on its own, so a loaded table is complete and its
        // keys can be built while other tables still load; in place (one transaction per table)
        // the ALTER's implicit commit would end the table's transaction.
        !self.core.transaction_per_table
    }

    async fn plan_keys(&self, post_data: &str) -> Result<()> {
        let core = &self.core;
        let mut keys = core.table_keys.lock().map_err(|_| Error::Cancelled("keys plan poisoned".into()))?;
        for (table, stmt) in key_statements(post_data)? {
            if core.tables.iter().any(|t| t.name == table) && core.is_selected(&table) {
                keys.entry(table).or_default().push(stmt);
            }
        }
        Ok(())
    }

    async fn table_keys(&self, table: &TableEntry, ctx: &Context) -> Result<()> {
        let core = &self.core;
        let stmts = core.table_keys.lock().ok().and_then(|mut m| m.remove(&table.name)).unwrap_or_default();
        if stmts.is_empty() {
            return Ok(());
        }
        let mut lease = core.pool.get().await?;
        exec(&mut lease, &format!("USE {}", qi(&core.target))).await?;
        for stmt in stmts {
            core.run_cancellable(&mut lease, &stmt, &ctx.cancel).await?;
            if let Ok(mut done) = core.keys_run.lock() {
                done.insert(stmt);
            }
        }
        Ok(())
    }

    async fn post_data(&self, sql: ByteStream, ctx: &Context) -> Result<()> {
        let cancel = Some(&ctx.cancel);
        let text = read_text(sql, MAX_SCHEMA, "post-data schema").await?;
        let (structure, objects) = match text.find(LIVE_OBJECTS_MARKER) {
            Some(p) => (text[..p].to_string(), text[p..].to_string()),
            None => (text, String::new()),
        };
        let one = |s: String| futures::stream::once(async move { Ok(bytes::Bytes::from(s)) }).boxed();
        self.core.run_script(one(structure), true, false, cancel, true).await?;
        // Only the selected tables' triggers come along with --tables.
        let objects = match &self.core.selected {
            Some(tables) => selected_triggers(&objects, tables)?,
            None => objects,
        };
        self.core.run_script(one(objects), false, false, cancel, false).await?;
        Ok(())
    }

    /// See [`checksum::restored_stats`].
    async fn table_stats(&self, table: &TableEntry) -> Result<TableStats> {
        TableProps::from_entry(table)?;
        let mut lease = self.core.pool.get().await?;
        let core = &self.core;
        checksum::restored_stats(&mut lease, &core.target, table, &core.server_version, core.full_checksum)
            .await
    }

    async fn commit(self: Box<Self>, _ctx: &Context) -> Result<CommitReport> {
        let mut c = self.core.control.lock().await;
        let r = self.mode.commit(&self.core, &mut c).await;
        swap::unlock_swap(&mut c, &self.core.live).await;
        swap::unlock(&mut c, &self.core.live).await;
        r
    }

    async fn abort(self: Box<Self>) -> Result<()> {
        let mut c = self.core.control.lock().await;
        // A load cut short (another chunk failed) may still hold locks on the server.
        if let Ok(mut m) = self.core.open_tables.lock() {
            m.clear();
        }
        for id in &self.core.pool_ids {
            let _ = c.query_drop(format!("KILL CONNECTION {id}")).await;
        }
        let r = self.mode.abort(&self.core, &mut c).await;
        swap::unlock_swap(&mut c, &self.core.live).await;
        swap::unlock(&mut c, &self.core.live).await;
        r
    }

    async fn script(&self, sql: ByteStream, ctx: &Context) -> Result<ScriptReport> {
        self.core.run_script(sql, false, true, Some(&ctx.cancel), false).await
    }
}
