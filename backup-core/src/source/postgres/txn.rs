//! PostgreSQL restores without a shadow database: `in_place` (no CREATE DATABASE) runs
//! everything in **one transaction** on the live database (drop the user schemas and what pg_dump
//! recreates at database level, pre-data, COPY, post-data, stats); `commit` is `COMMIT`, any
//! failure `ROLLBACK`s. `tables` truncates and reloads the chosen tables in one transaction.

use std::collections::BTreeMap;

use async_trait::async_trait;
use tokio::sync::Mutex;
use tokio_postgres::Client;

use super::PROP_ACL;
use super::checksum::table_stats_on;
use super::conn::{connect, exec, pg_err, qualified, quote_ident};
use super::data::{check_large_objects, copy_into, is_large_objects, table_of};
use super::properties::{check_roles_exist, property_statements, reset_settings};
use super::schema::{BATCH, exec_all, exec_script, run_schema};
use super::script::run_script;
use super::session_state::{Saved, params_set_by};
use super::{large_object, lo_frame};
use crate::codec::ByteStream;
use crate::error::Result;
use crate::format::manifest::{Manifest, ObjectEntry, TableEntry};
use crate::model::DatabaseUrl;
use crate::progress::Context;
use crate::source::limits::SessionLimits;
use crate::source::table_filter::selects;
use crate::source::{CommitReport, LoadOptions, LoadSession, ScriptReport, TableStats};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum TxnMode {
    /// Replace the whole database's contents.
    Replace,
    /// Reload some tables.
    Tables,
}

/// Everything in one transaction on the live database.
pub(super) struct TxnSession {
    client: Mutex<Client>,
    mode: TxnMode,
    props: BTreeMap<String, serde_json::Value>,
    keep_owners: bool,
    tables: Vec<TableEntry>,
    notes: Vec<String>,
    database: String,
}

impl TxnSession {
    /// Connects to the live database and begins the restore's one transaction (for `Tables`,
    /// empties the chosen tables in it).
    pub(super) async fn open(
        url: &DatabaseUrl,
        mode: TxnMode,
        manifest: Option<&Manifest>,
        opts: &LoadOptions,
    ) -> Result<TxnSession> {
        let limits = SessionLimits::of(url, &opts.engine_options.session)?;
        let c = connect(url, "in-place restore", &limits).await?;
        if let (TxnMode::Replace, Some(m)) = (mode, manifest) {
            check_roles_exist(&c, &m.properties).await?;
        }
        c.batch_execute("BEGIN").await.map_err(pg_err("begin the restore transaction"))?;
        let mut notes = Vec::new();
        if let (TxnMode::Tables, Some(m)) = (mode, manifest) {
            let chosen: Vec<String> =
                m.tables.iter().filter(|t| selects(opts.tables.as_deref(), t)).map(qualified).collect();
            if !chosen.is_empty() {
                c.batch_execute(&format!("TRUNCATE {}", chosen.join(", ")))
                    .await
                    .map_err(pg_err("empty the tables to restore"))?;
            }
            notes.push(format!(
                "restored only {} table(s) inside one transaction; schema, sequences, other tables and large objects untouched",
                chosen.len()
            ));
        }
        Ok(TxnSession {
            client: Mutex::new(c),
            mode,
            props: manifest.map(|m| m.properties.clone()).unwrap_or_default(),
            keep_owners: opts.engine_options.postgres.keep_owners,
            tables: manifest.map(|m| m.tables.clone()).unwrap_or_default(),
            notes,
            database: url.database(),
        })
    }

    /// Drops every user schema (and what is in it) and every large object, then recreates an
    /// empty `public`.
    async fn clear(&self, c: &Client, script_creates_public: bool) -> Result<()> {
        large_object::unlink_all(c).await?;
        clear_database_level(c).await?;
        let rows = c
            .query(
                "SELECT nspname FROM pg_namespace WHERE nspname NOT LIKE 'pg\\_%' AND nspname <> 'information_schema' \
                 AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_namespace'::regclass \
                   AND d.objid = pg_namespace.oid AND d.deptype = 'e')",
                &[],
            )
            .await
            .map_err(pg_err("list schemas to replace"))?;
        for r in rows {
            let n: String = r.get(0);
            exec(c, &format!("DROP SCHEMA {} CASCADE", quote_ident(&n))).await?;
        }
        if !script_creates_public {
            // Recreate `public` exactly as a new database has it (pg_dump writes only the
            // differences from that default).
            let v: i32 = c
                .query_one("SELECT current_setting('server_version_num')::int", &[])
                .await
                .map_err(pg_err("read the server version"))?
                .get(0);
            let sql = if v >= 150_000 {
                "CREATE SCHEMA public AUTHORIZATION pg_database_owner; GRANT USAGE ON SCHEMA public TO PUBLIC; \
                 COMMENT ON SCHEMA public IS 'standard public schema'"
            } else {
                "CREATE SCHEMA public; GRANT ALL ON SCHEMA public TO PUBLIC; \
                 COMMENT ON SCHEMA public IS 'standard public schema'"
            };
            exec(c, sql).await?;
        }
        Ok(())
    }
}

/// Drops what a database holds outside its schemas and what pg_dump recreates: event triggers
/// (first, so none fires on the drops that follow), publications, foreign servers and wrappers,
/// casts between built-in types (a cast involving a user type goes with the type) and
/// procedural languages (extensions' own left to them), and resets the database-wide
/// default privileges (`ALTER DEFAULT PRIVILEGES` without `IN SCHEMA`) to the built-in ones
/// (`acldefault` names sequences `s` where `pg_default_acl` says `S`).
/// Schema-scoped objects go with their schema.
async fn clear_database_level(c: &Client) -> Result<()> {
    let not_ext = |class: &str, oid: &str| {
        format!(
            "NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = '{class}'::regclass AND d.objid = {oid} \
             AND d.deptype = 'e')"
        )
    };
    let sql = format!(
        "SELECT format('DROP EVENT TRIGGER %I', evtname) FROM pg_event_trigger e WHERE {} \
         UNION ALL SELECT format('DROP PUBLICATION %I', pubname) FROM pg_publication \
         UNION ALL SELECT format('DROP SERVER %I CASCADE', srvname) FROM pg_foreign_server s WHERE {} \
         UNION ALL SELECT format('DROP FOREIGN DATA WRAPPER %I CASCADE', fdwname) FROM pg_foreign_data_wrapper w WHERE {} \
         UNION ALL SELECT format('DROP CAST (%s AS %s) CASCADE', castsource::regtype, casttarget::regtype) \
           FROM pg_cast k WHERE k.oid >= 16384 AND k.castsource < 16384 AND k.casttarget < 16384 AND {} \
         UNION ALL SELECT format('DROP LANGUAGE %I CASCADE', lanname) FROM pg_language l WHERE l.oid >= 16384 AND {} \
         UNION ALL SELECT format('ALTER DEFAULT PRIVILEGES FOR ROLE %I REVOKE ALL ON %s FROM %s', \
             a.defaclrole::regrole, k.kind, CASE WHEN x.grantee = 0 THEN 'PUBLIC' ELSE quote_ident(x.grantee::regrole::text) END) \
           FROM pg_default_acl a, aclexplode(a.defaclacl) x, \
           (VALUES ('r', 'TABLES'), ('S', 'SEQUENCES'), ('f', 'FUNCTIONS'), ('T', 'TYPES'), ('n', 'SCHEMAS')) k(t, kind) \
           WHERE a.defaclnamespace = 0 AND k.t = a.defaclobjtype::text \
         UNION ALL SELECT format('ALTER DEFAULT PRIVILEGES FOR ROLE %I GRANT %s ON %s TO %s', a.defaclrole::regrole, \
             x.privilege_type, k.kind, CASE WHEN x.grantee = 0 THEN 'PUBLIC' ELSE quote_ident(x.grantee::regrole::text) END) \
           FROM pg_default_acl a, \
           (VALUES ('r', 'TABLES', 'r'), ('S', 'SEQUENCES', 's'), ('f', 'FUNCTIONS', 'f'), ('T', 'TYPES', 'T'), \
             ('n', 'SCHEMAS', 'n')) k(t, kind, def), \
           aclexplode(acldefault(k.def::\"char\", a.defaclrole)) x \
           WHERE a.defaclnamespace = 0 AND k.t = a.defaclobjtype::text",
        not_ext("pg_event_trigger", "e.oid"),
        not_ext("pg_foreign_server", "s.oid"),
        not_ext("pg_foreign_data_wrapper", "w.oid"),
        not_ext("pg_cast", "k.oid"),
        not_ext("pg_language", "l.oid"),
    );
    let rows = c.query(sql.as_str(), &[]).await.map_err(pg_err("list database-level objects to replace"))?;
    for r in rows {
        exec(c, &r.get::<_, String>(0)).await?;
    }
    Ok(())
}

#[async_trait]
impl LoadSession for TxnSession {
    async fn pre_data(&self, sql: ByteStream) -> Result<()> {
        let c = self.client.lock().await;
        if self.mode == TxnMode::Tables {
            crate::source::drain(sql).await?;
            return Ok(());
        }
        let stmts = run_schema(sql, "pre-data schema", self.keep_owners).await?;
        let creates_public = stmts.iter().any(|s| s.trim().eq_ignore_ascii_case("create schema public;"));
        self.clear(&c, creates_public).await?;
        reset_settings(&c, &self.database, self.props.contains_key(PROP_ACL)).await?;
        // The script's settings end with it: the COPY that follows sends UTF-8 whatever
        // `client_encoding` the script ran with.
        exec_script(&c, &stmts, true).await
    }

    async fn load(&self, object: &ObjectEntry, data: ByteStream) -> Result<u64> {
        if is_large_objects(object) {
            if self.mode == TxnMode::Tables {
                // Large objects are not tables: left alone (the stream is still verified).
                crate::source::drain(data).await?;
                return Ok(0);
            }
            let c = self.client.lock().await;
            return lo_frame::load(&c, data, self.keep_owners, &object.key).await;
        }
        let t = table_of(&self.tables, object)?;
        let c = self.client.lock().await;
        copy_into(&c, t, data, false).await
    }

    async fn post_data(&self, sql: ByteStream, ctx: &Context) -> Result<()> {
        let c = self.client.lock().await;
        if self.mode == TxnMode::Tables {
            crate::source::drain(sql).await?;
            return Ok(());
        }
        let stmts = run_schema(sql, "post-data schema", self.keep_owners).await?;
        // One transaction on the live database: stopped anywhere, it rolls back (`abort`, or the
        // server when the connection goes); checked between batches of statements. The
        // script's settings end with it, before the read-back on the same connection.
        let saved = Saved::read(&c, &params_set_by(&stmts)).await?;
        for group in stmts.chunks(BATCH) {
            ctx.check("restore: stopped during post-data (indexes, constraints)")?;
            exec_all(&c, group, true).await?;
        }
        saved.put_back(&c).await
    }

    async fn table_stats(&self, table: &TableEntry) -> Result<TableStats> {
        let c = self.client.lock().await;
        table_stats_on(&c, table).await
    }

    async fn check_database(&self) -> Result<Vec<String>> {
        if self.mode == TxnMode::Tables {
            return Ok(Vec::new());
        }
        let c = self.client.lock().await;
        check_large_objects(&c, &self.props).await
    }

    async fn commit(self: Box<Self>, _ctx: &Context) -> Result<CommitReport> {
        let c = self.client.lock().await;
        if self.mode == TxnMode::Replace {
            for s in property_statements(&self.database, &self.props) {
                exec(&c, &s).await?;
            }
        }
        c.batch_execute("COMMIT").await.map_err(pg_err("commit the restore transaction"))?;
        let mut notes = self.notes.clone();
        if self.mode == TxnMode::Replace {
            notes.push("restored in place inside one transaction (all or nothing)".into());
        }
        Ok(CommitReport { previous_kept_at: None, notes, live_at: None })
    }

    async fn abort(self: Box<Self>) -> Result<()> {
        let c = self.client.lock().await;
        c.batch_execute("ROLLBACK").await.map_err(pg_err("roll back the restore transaction"))
    }

    async fn script(&self, sql: ByteStream, ctx: &Context) -> Result<ScriptReport> {
        let c = self.client.lock().await;
        self.clear(&c, false).await?;
        run_script(&c, sql, self.keep_owners, true, ctx).await
    }
}
