//! The default PostgreSQL restore: into a **shadow database** `<target>_dbbackup_shadow_<rand>`
//! on the same server, then renamed in by [`swap_atomically`] (see the [`load`](super::load)
//! module docs). The session holds the target's restore lock (an advisory lock on its admin
//! connection) from start to end, and starts by cleaning what killed restores into the same
//! target left ([`clean_leftovers`]).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use async_trait::async_trait;
use futures::StreamExt;
use tokio::sync::Mutex;
use tokio_postgres::Client;

use super::checksum::table_stats_on;
use super::conn::{admin_url, connect, exec, pg_err, qualified, quote_ident, quote_literal};
use super::data::{begin_table_load, check_large_objects, copy_into, is_large_objects, table_of};
use super::lo_frame;
use super::properties::{check_roles_exist, property_statements};
use super::schema::{exec_script, is_parallel_build, run_schema};
use super::script::run_script;
use super::session_state::{ScriptState, exec_in_state};
use super::swap::{clean_leftovers, derived_name, swap_atomically, terminate};
use crate::codec::ByteStream;
use crate::error::{Error, Result};
use crate::format::manifest::{ObjectEntry, TableEntry};
use crate::model::DatabaseUrl;
use crate::progress::Context;
use crate::source::limits::SessionLimits;
use crate::source::pool::{Pool, PoolGuard};
use crate::source::{CommitReport, LoadOptions, LoadSession, ScriptReport, TableStats};

/// Large values the shadow's sessions write are TOAST-compressed with lz4 where the server has it
/// (PostgreSQL 14+ built with lz4): it costs the server, the saturated side of a restore, less
/// CPU than the default pglz. The values read back are the same; only their on-disk compression
/// differs from what `pg_restore` (the server's `default_toast_compression`) would give. Columns
/// with their own `SET COMPRESSION` keep it. Elsewhere the setting is left as it is: the statement
/// sets nothing when the server does not list lz4, and a failure is ignored.
const PREFER_LZ4: &str = "SELECT set_config('default_toast_compression', 'lz4', false) FROM pg_settings \
     WHERE name = 'default_toast_compression' AND 'lz4' = ANY (enumvals)";

async fn prefer_lz4(c: &Client) {
    if let Err(e) = c.batch_execute(PREFER_LZ4).await {
        tracing::debug!("default_toast_compression left as the server has it: {e}");
    }
}

/// Restore into a shadow database, then rename it in.
pub(super) struct ShadowSession {
    /// Holds the target's restore lock for the session's life.
    admin: Client,
    target: String,
    shadow: String,
    /// What the start of this run cleaned up after a killed one.
    notes: Vec<String>,
    /// Connection for schema and scripts; `None` once closed.
    main: Mutex<Option<Client>>,
    pool: Pool<Client>,
    /// Tables being loaded (by qualified name): the connection holding the table's open load
    /// transaction, and whether its COPYs write frozen rows ([`begin_table_load`]).
    open_tables: std::sync::Mutex<HashMap<String, (PoolGuard<Client>, bool)>>,
    props: BTreeMap<String, serde_json::Value>,
    keep_owners: bool,
    tables: Vec<TableEntry>,
}

impl ShadowSession {
    /// Takes the target's restore lock, cleans what killed restores left, creates the shadow
    /// database and opens the session's connections to it.
    pub(super) async fn open(
        url: &DatabaseUrl,
        props: BTreeMap<String, serde_json::Value>,
        tables: Vec<TableEntry>,
        opts: &LoadOptions,
    ) -> Result<ShadowSession> {
        let target = url.database();
        let limits = SessionLimits::of(url, &opts.engine_options.session)?;
        let admin = connect(&admin_url(url), "restore admin", &limits).await?;
        // One restore per target at a time: a session-level advisory lock on the admin connection,
        // released by the server when this process ends, however it ends.
        let locked: bool = admin
            .query_one("SELECT pg_try_advisory_lock(hashtext($1))", &[&format!("dbbackup restore {target}")])
            .await
            .map_err(pg_err("take the restore lock"))?
            .get(0);
        if !locked {
            return Err(Error::Locked(format!(
                "another restore into PostgreSQL database {target:?} is running (advisory lock held)"
            )));
        }
        let notes = clean_leftovers(&admin, &target).await?;
        check_roles_exist(&admin, &props).await?;
        let shadow = derived_name(&target, "_dbbackup_shadow_");
        let q = quote_ident(&shadow);
        let s = |k: &str| props.get(k).and_then(|v| v.as_str()).map(str::to_string);
        let mut created = false;
        if let (Some(enc), Some(coll), Some(ctype)) = (s("pg.encoding"), s("pg.collate"), s("pg.ctype")) {
            let sql = format!(
                "CREATE DATABASE {q} TEMPLATE template0 ENCODING {} LC_COLLATE {} LC_CTYPE {}",
                quote_literal(&enc),
                quote_literal(&coll),
                quote_literal(&ctype)
            );
            created = admin.batch_execute(&sql).await.is_ok();
        }
        if !created {
            admin
                .batch_execute(&format!("CREATE DATABASE {q} TEMPLATE template0"))
                .await
                .map_err(pg_err(format!("create shadow database {shadow}")))?;
        }
        let shadow_url = url.with_database(&shadow);
        let opened = async {
            let main = connect(&shadow_url, "restore", &limits).await?;
            // Durability comes from the final rename's commit, which flushes all earlier WAL.
            main.batch_execute("SET synchronous_commit = off").await.map_err(pg_err("tune the loader"))?;
            prefer_lz4(&main).await;
            let mut workers = Vec::new();
            for i in 0..opts.jobs.max(1) {
                let c = connect(&shadow_url, &format!("restore worker {i}"), &limits).await?;
                c.batch_execute("SET synchronous_commit = off").await.map_err(pg_err("tune a loader"))?;
                prefer_lz4(&c).await;
                workers.push(c);
            }
            Ok::<_, Error>((main, workers))
        }
        .await;
        let (main, workers) = match opened {
            Ok(x) => x,
            Err(e) => {
                let _ = admin.batch_execute(&format!("DROP DATABASE IF EXISTS {q} WITH (FORCE)")).await;
                return Err(e);
            }
        };
        Ok(ShadowSession {
            admin,
            target,
            shadow,
            notes,
            main: Mutex::new(Some(main)),
            pool: Pool::new(workers),
            open_tables: Default::default(),
            props,
            keep_owners: opts.engine_options.postgres.keep_owners,
            tables,
        })
    }

    async fn close_connections(&self) {
        // A table's load left open by a failed or cancelled restore: its connection goes back
        // to the pool (and is closed with it; the shadow it wrote into is dropped).
        drop(self.open_tables.lock().map(|mut m| std::mem::take(&mut *m)));
        self.main.lock().await.take();
        self.pool.close().await;
    }

    async fn terminate(&self, db: &str) {
        terminate(&self.admin, db).await;
    }

    async fn rename(&self, from: &str, to: &str) -> Result<()> {
        let sql = format!("ALTER DATABASE {} RENAME TO {}", quote_ident(from), quote_ident(to));
        let mut last = None;
        for attempt in 0..10u64 {
            self.terminate(from).await;
            match self.admin.batch_execute(&sql).await {
                Ok(()) => return Ok(()),
                // 55006: object in use (a session came back or is still closing).
                Err(e) if e.as_db_error().is_some_and(|d| d.code().code() == "55006") => {
                    last = Some(e);
                    tokio::time::sleep(std::time::Duration::from_millis(50 * (attempt + 1))).await;
                }
                Err(e) => return Err(pg_err(format!("rename database {from} to {to}"))(e)),
            }
        }
        match last {
            Some(e) => Err(pg_err(format!("rename database {from} to {to}"))(e)),
            None => Ok(()),
        }
    }

    async fn drop_shadow(&self) -> Result<()> {
        self.admin
            .batch_execute(&format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", quote_ident(&self.shadow)))
            .await
            .map_err(pg_err(format!("drop shadow database {}", self.shadow)))
    }

    async fn swap(&self) -> Result<CommitReport> {
        for s in property_statements(&self.shadow, &self.props) {
            exec(&self.admin, &s).await?;
        }
        self.close_connections().await;
        let exists = self
            .admin
            .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&self.target])
            .await
            .map_err(pg_err("look up the target database"))?
            .is_some();
        let mut report = CommitReport { notes: self.notes.clone(), ..Default::default() };
        if !exists {
            self.rename(&self.shadow, &self.target).await?;
            report.notes.push(format!("created database {}", self.target));
            return Ok(report);
        }
        let prev = derived_name(&self.target, "_dbbackup_prev_");
        swap_atomically(&self.admin, &self.target, &self.shadow, &prev).await?;
        match self.admin.batch_execute(&format!("DROP DATABASE {} WITH (FORCE)", quote_ident(&prev))).await {
            Ok(()) => {}
            Err(e) => {
                report.notes.push(format!("could not drop the previous database: {e}"));
                report.previous_kept_at = Some(prev);
            }
        }
        Ok(report)
    }
}

#[async_trait]
impl LoadSession for ShadowSession {
    async fn pre_data(&self, sql: ByteStream) -> Result<()> {
        let guard = self.main.lock().await;
        let c = guard.as_ref().ok_or_else(|| Error::Cancelled("restore session closed".into()))?;
        let stmts = run_schema(sql, "pre-data schema", self.keep_owners).await?;
        exec_script(c, &stmts, false).await
    }

    /// A table's chunks load one after another on one connection, in one transaction that
    /// begins by emptying the table again (`TRUNCATE ONLY`, see [`begin_table_load`]) so that
    /// every COPY writes its rows already frozen (`COPY ... FREEZE`): the read-back, the index
    /// builds and later vacuums then find no hint bits to set and no page to dirty again.
    /// [`LoadSession::table_loaded`] commits it. A failed chunk rolls the table's transaction
    /// back, and the restore drops the shadow as before.
    async fn load(&self, object: &ObjectEntry, data: ByteStream) -> Result<u64> {
        if is_large_objects(object) {
            let g = self.pool.get().await?;
            return lo_frame::load(&g, data, self.keep_owners, &object.key).await;
        }
        let t = table_of(&self.tables, object)?;
        let key = qualified(t);
        let open = self.open_tables.lock().ok().and_then(|mut m| m.remove(&key));
        let (g, freeze) = match open {
            Some(x) => x,
            None => {
                let g = self.pool.get().await?;
                let freeze = begin_table_load(&g, t).await?;
                (g, freeze)
            }
        };
        match copy_into(&g, t, data, freeze).await {
            Ok(rows) => {
                if let Ok(mut m) = self.open_tables.lock() {
                    m.insert(key, (g, freeze));
                }
                Ok(rows)
            }
            Err(e) => {
                let _ = g.batch_execute("ROLLBACK").await;
                Err(e)
            }
        }
    }

    /// Each table loads on one connection, in one transaction ([`LoadSession::load`]).
    fn one_table_at_a_time(&self) -> bool {
        true
    }

    /// Commits the table's load transaction: its rows are final (post-data adds no rows) and
    /// any connection sees them.
    async fn table_loaded(&self, table: &TableEntry) -> Result<()> {
        let open = self.open_tables.lock().ok().and_then(|mut m| m.remove(&qualified(table)));
        if let Some((g, _)) = open {
            g.batch_execute("COMMIT")
                .await
                .map_err(pg_err(format!("commit the load of {}", table.display_name())))?;
        }
        Ok(())
    }

    /// Once a table's load committed ([`LoadSession::table_loaded`]), it is read back on the
    /// connection that loaded it while the others go on loading.
    fn stats_after_table_load(&self) -> bool {
        true
    }

    async fn post_data(&self, sql: ByteStream, ctx: &Context) -> Result<()> {
        // Cancelled, the index builds and the rest stop where they are: the shadow they run in
        // is dropped by `abort` (WITH (FORCE), which ends its sessions on the server).
        tokio::select! {
            r = self.post_data_uncancelled(sql) => r,
            () = ctx.cancel.cancelled() => Err(Error::Cancelled("restore: stopped during post-data (indexes, constraints)".into())),
        }
    }

    async fn table_stats(&self, table: &TableEntry) -> Result<TableStats> {
        let g = self.pool.get().await?;
        table_stats_on(&g, table).await
    }

    async fn check_database(&self) -> Result<Vec<String>> {
        let g = self.pool.get().await?;
        check_large_objects(&g, &self.props).await
    }

    async fn commit(self: Box<Self>, _ctx: &Context) -> Result<CommitReport> {
        match self.swap().await {
            Ok(r) => Ok(r),
            Err(e) => {
                self.close_connections().await;
                if let Err(d) = self.drop_shadow().await {
                    tracing::warn!("dropping the shadow after a failed swap: {d}");
                }
                Err(e)
            }
        }
    }

    async fn abort(self: Box<Self>) -> Result<()> {
        self.close_connections().await;
        self.drop_shadow().await
    }

    async fn script(&self, sql: ByteStream, ctx: &Context) -> Result<ScriptReport> {
        let guard = self.main.lock().await;
        let c = guard.as_ref().ok_or_else(|| Error::Cancelled("restore session closed".into()))?;
        run_script(c, sql, self.keep_owners, false, ctx).await
    }
}

impl ShadowSession {
    /// Post-data: index and key builds in parallel on the pool, then the rest on the main
    /// connection in script order. pg_dump places each index with the `SET default_tablespace`
    /// before it (and the script's other settings before that): each build carries the script's
    /// settings at its own statement ([`ScriptState`]) to the pool connection that runs it, which
    /// then gets its own values back. A script that changes the session in a way that is not
    /// followed (`SET ROLE`, ...; pg_dump writes none) runs in order on the main connection.
    async fn post_data_uncancelled(&self, sql: ByteStream) -> Result<()> {
        let guard = self.main.lock().await;
        let c = guard.as_ref().ok_or_else(|| Error::Cancelled("restore session closed".into()))?;
        let stmts = run_schema(sql, "post-data schema", self.keep_owners).await?;
        let mut state = Arc::new(ScriptState::default());
        let mut followed = true;
        let mut builds: Vec<(Arc<ScriptState>, String)> = Vec::new();
        for s in &stmts {
            followed &= state.follow(s);
            if is_parallel_build(s) {
                builds.push((state.clone(), s.clone()));
            }
        }
        if !followed {
            return exec_script(c, &stmts, false).await;
        }
        let jobs = self.pool_size();
        let results: Vec<Result<()>> = futures::stream::iter(builds)
            .map(|(state, s): (Arc<ScriptState>, String)| {
                let pool = self.pool.clone();
                async move {
                    let g = pool.get().await?;
                    exec_in_state(&g, &state, &s).await
                }
            })
            .buffer_unordered(jobs)
            .collect()
            .await;
        for r in results {
            r?;
        }
        let rest: Vec<String> = stmts.into_iter().filter(|s| !is_parallel_build(s)).collect();
        exec_script(c, &rest, false).await
    }

    fn pool_size(&self) -> usize {
        self.pool.size()
    }
}
