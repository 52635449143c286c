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

/// How long [`take`] waits for the other sessions of the database to leave before giving up on
/// the copy (the sessions of the backup that just ended close within tens of milliseconds; an
/// application left connected does not).
const SESSION_WAIT: std::time::Duration = std::time::Duration::from_secs(3);
/// How often [`take`] asks pg_stat_activity who is connected while it waits.
const POLL_INTERVAL: std::time::Duration = std::time::Duration::from_millis(25);

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
        let pid: i32 = c
            .query_one("SELECT pg_backend_pid()", &[])
            .await
            .map_err(pg_err("read the session's pid"))?
            .get(0);
        tracing::debug!("guard copy: properties read over pid {pid}, now closed");
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
    // The sessions of the backup that just ended (and the one above) may still be closing on
    // the server: pg_stat_activity is asked every POLL_INTERVAL until nobody else is connected,
    // for at most SESSION_WAIT, and only then is the copy asked for, since the server itself
    // waits 5 s for other sessions before refusing it (an application left connected cost 26 s
    // before the command that way). Autovacuum workers are not counted: the server stops them.
    let started = std::time::Instant::now();
    let mut attempt = 0u32;
    loop {
        attempt += 1;
        let others = admin
            .query(
                "SELECT pid, coalesce(application_name, ''), coalesce(backend_type, ''), coalesce(state, '') \
                 FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid() \
                 AND backend_type IS DISTINCT FROM 'autovacuum worker'",
                &[&target],
            )
            .await
            .map_err(pg_err("list the sessions connected to the database"))?;
        let waited = started.elapsed();
        if !others.is_empty() {
            let who: Vec<String> = others
                .iter()
                .map(|r| {
                    format!(
                        "pid {} {:?} ({}, {})",
                        r.get::<_, i32>(0),
                        r.get::<_, String>(1),
                        r.get::<_, String>(2),
                        r.get::<_, String>(3)
                    )
                })
                .collect();
            tracing::debug!(
                "guard copy, attempt {attempt} after {} ms: connected to {target}: {}",
                waited.as_millis(),
                who.join(", ")
            );
            if waited >= SESSION_WAIT {
                return Ok(Err(format!(
                    "PostgreSQL cannot copy database {target:?} while other sessions are connected to it \
                     ({} still connected after {:.1} s)",
                    others.len(),
                    waited.as_secs_f64()
                )));
            }
            tokio::time::sleep(POLL_INTERVAL).await;
            continue;
        }
        tracing::debug!(
            "guard copy, attempt {attempt} after {} ms: nobody else connected to {target}",
            waited.as_millis()
        );
        match admin.batch_execute(&sql).await {
            Ok(()) => break,
            // Someone connected between the question and the copy.
            Err(e) if e.as_db_error().is_some_and(|d| d.code().code() == "55006") => {
                if started.elapsed() >= SESSION_WAIT {
                    let msg = e.as_db_error().map(|d| d.message().to_string()).unwrap_or_default();
                    return Ok(Err(format!(
                        "PostgreSQL cannot copy database {target:?} while other sessions are connected to it ({msg})"
                    )));
                }
                tokio::time::sleep(POLL_INTERVAL).await;
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
