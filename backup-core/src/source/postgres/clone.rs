//! A rollback point for `guard`: `CREATE DATABASE <db>_dbbackup_guard_<rand> TEMPLATE <db>`, a
//! file-level copy made by the server (no rows through any client). Rolling back renames the
//! copy in with the same one-transaction swap as a restore ([`swap::swap_atomically`](super::swap::swap_atomically)), so the
//! recovery time is a rename and a drop, whatever the database's size.
//!
//! PostgreSQL copies a database only while no other session is connected to it (55006
//! otherwise): then there is no rollback point and the caller falls back to restoring its
//! backup. A copy does not carry the database's own properties (comment, settings, per-role
//! settings, privileges, connection limit): they are read when the copy is made and set on it
//! before it is renamed in, as a restore does. The admin session holds an advisory lock per
//! database for the copy's life; the next rollback point of the same database, holding that
//! lock, drops copies a killed run left.

use std::collections::BTreeMap;

use async_trait::async_trait;
use tokio_postgres::Client;

use super::conn::{connect, exec, pg_err, quote_ident};
use super::properties::{database_properties, property_statements};
use super::swap::{database_names, derived_name, is_derived, swap_atomically};
use crate::error::Result;
use crate::model::DatabaseUrl;
use crate::source::RollbackPoint;
use crate::source::limits::SessionLimits;

const SUFFIX: &str = "_dbbackup_guard_";

/// A copy of the database taken by the server.
pub(crate) struct PgClone {
    /// Connected to the maintenance database; holds the per-database guard lock.
    admin: Client,
    target: String,
    copy: String,
    props: BTreeMap<String, serde_json::Value>,
}

/// Makes the copy, or says why it cannot (another session connected, no privilege).
pub(crate) async fn take(
    url: &DatabaseUrl,
    admin_url: &DatabaseUrl,
) -> Result<std::result::Result<Box<dyn RollbackPoint>, String>> {
    let target = url.database();
    // The database's own properties, which a copy does not carry (read over a session that is
    // closed before the copy: the server refuses to copy a database anyone is connected to).
    let props = {
        let c = connect(url, "guard clone", &SessionLimits::of(url, &Default::default())?).await?;
        database_properties(&c).await?
    };
    let admin =
        connect(admin_url, "guard clone admin", &SessionLimits::of(admin_url, &Default::default())?).await?;
    let locked: bool = admin
        .query_one("SELECT pg_try_advisory_lock(hashtext($1))", &[&format!("dbbackup guard {target}")])
        .await
        .map_err(pg_err("take the guard lock"))?
        .get(0);
    if !locked {
        return Ok(Err(format!("another guard of PostgreSQL database {target:?} is running")));
    }
    for name in database_names(&admin).await?.iter().filter(|n| is_derived(n, &target, SUFFIX)) {
        exec(&admin, &format!("DROP DATABASE {} WITH (FORCE)", quote_ident(name))).await?;
        tracing::warn!("dropped {name}, the rollback copy of an interrupted guard");
    }
    let version: i32 = admin
        .query_one("SELECT current_setting('server_version_num')::int", &[])
        .await
        .map_err(pg_err("read the server version"))?
        .get(0);
    let copy = derived_name(&target, SUFFIX);
    // FILE_COPY (15+) copies the files after a checkpoint; the default WAL_LOG writes every
    // block through the WAL, which is slower for anything but small databases.
    let strategy = if version >= 150_000 { " STRATEGY = FILE_COPY" } else { "" };
    let sql = format!("CREATE DATABASE {} TEMPLATE {}{strategy}", quote_ident(&copy), quote_ident(&target));
    // The sessions of the backup that just ended may still be closing on the server: retried
    // 0.1 + 0.2 + 0.3 + 0.4 s apart. Each attempt first asks pg_stat_activity, since the server
    // itself waits 5 s for other sessions before refusing the copy (an application left
    // connected cost 26 s before the command this way).
    let mut attempt = 0u64;
    loop {
        let others: i64 = admin
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()",
                &[&target],
            )
            .await
            .map_err(pg_err("list the sessions connected to the database"))?
            .get(0);
        if others > 0 {
            attempt += 1;
            if attempt >= 5 {
                return Ok(Err(format!(
                    "PostgreSQL cannot copy database {target:?} while other sessions are connected to it \
                     ({others} connected)"
                )));
            }
            tokio::time::sleep(std::time::Duration::from_millis(100 * attempt)).await;
            continue;
        }
        match admin.batch_execute(&sql).await {
            Ok(()) => break,
            Err(e) if e.as_db_error().is_some_and(|d| d.code().code() == "55006") => {
                attempt += 1;
                if attempt >= 5 {
                    let msg = e.as_db_error().map(|d| d.message().to_string()).unwrap_or_default();
                    return Ok(Err(format!(
                        "PostgreSQL cannot copy database {target:?} while other sessions are connected to it ({msg})"
                    )));
                }
                tokio::time::sleep(std::time::Duration::from_millis(100 * attempt)).await;
            }
            Err(e) => {
                let msg = e.as_db_error().map(|d| d.message().to_string()).unwrap_or_else(|| e.to_string());
                return Ok(Err(format!("could not copy database {target:?}: {msg}")));
            }
        }
    }
    Ok(Ok(Box::new(PgClone { admin, target, copy, props })))
}

#[async_trait]
impl RollbackPoint for PgClone {
    fn describe(&self) -> String {
        format!("PostgreSQL database {} (CREATE DATABASE ... TEMPLATE {})", self.copy, self.target)
    }

    async fn roll_back(self: Box<Self>) -> Result<Vec<String>> {
        for s in property_statements(&self.copy, &self.props) {
            exec(&self.admin, &s).await?;
        }
        let prev = derived_name(&self.target, "_dbbackup_prev_");
        swap_atomically(&self.admin, &self.target, &self.copy, &prev).await?;
        let mut notes = vec![format!("renamed {} in place of {}", self.copy, self.target)];
        match exec(&self.admin, &format!("DROP DATABASE {} WITH (FORCE)", quote_ident(&prev))).await {
            Ok(()) => {}
            Err(e) => notes.push(format!("could not drop the replaced database {prev}: {e}")),
        }
        Ok(notes)
    }

    async fn discard(self: Box<Self>) -> Result<()> {
        exec(&self.admin, &format!("DROP DATABASE {} WITH (FORCE)", quote_ident(&self.copy))).await
    }
}
