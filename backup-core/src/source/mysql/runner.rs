//! Runs a SQL script statement by statement on the restore's control connection: the schema
//! scripts of a backup and foreign dumps (`mysqldump`/`mariadb-dump` output). Statements that
//! would leave the load target (`USE`, `CREATE/DROP DATABASE`), need SUPER (GTID, binlog,
//! global settings, when asked or for foreign dumps) or only speed up a dump (`LOCK TABLES`)
//! are skipped and counted; events are held back for the commit; cancellation is honoured
//! between statements and during one (`KILL QUERY` from a pool connection). This is MySQL's hook
//! of the shared runner ([`crate::source::script`]); the script is cut by `source::mysql_script`.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::Mutex;

use async_trait::async_trait;
use mysql_async::Conn;
use mysql_async::prelude::Queryable;

use super::conn::{exec, qi, query_value, short};
use super::object::Object;
use super::schema::LIVE_OBJECTS_MARKER;
use crate::codec::ByteStream;
use crate::error::{Error, Result};
use crate::progress::CancellationToken;
use crate::source::ScriptReport;
use crate::source::mysql_script::{self as script, ScriptSplitter, StatementKind};
use crate::source::pool::Pool;
use crate::source::script::{self as runner, Hook};
use crate::source::table_filter::selects_name;

/// How a script is run.
pub(crate) struct ScriptRun<'a> {
    /// The database the statements run in (the shadow, or the live database in place).
    pub(crate) db: &'a str,
    /// Only statements about these tables (`--tables`); `None` runs every table's.
    pub(crate) tables: Option<&'a [String]>,
    /// Skip statements that need SUPER.
    pub(crate) strip_super: bool,
    /// Remove `DEFINER` clauses.
    pub(crate) no_definer: bool,
    /// Stops the run between statements, and during one through `killer`.
    pub(crate) cancel: Option<&'a CancellationToken>,
    /// Where a connection for `KILL QUERY` comes from (idle while a script runs).
    pub(crate) killer: &'a Pool<Conn>,
    /// Events held back until the commit.
    pub(crate) deferred: &'a Mutex<Vec<Object>>,
    /// Statements already run by the session (each table's keys, built right after its load):
    /// each is left out once, when it comes.
    pub(crate) already_run: Option<&'a Mutex<HashSet<Vec<u8>>>>,
}

/// What a run did so far.
#[derive(Default)]
struct Tally {
    report: ScriptReport,
    tables: BTreeSet<String>,
    skipped: BTreeMap<&'static str, u64>,
}

/// Runs `sql` on `c` (see the module's description).
pub(crate) async fn run_script(c: &mut Conn, run: &ScriptRun<'_>, sql: ByteStream) -> Result<ScriptReport> {
    exec(c, &format!("USE {}", qi(run.db))).await?;
    runner::run(sql, ScriptSplitter::default(), Running { c, run, tally: Tally::default() }).await
}

/// MySQL's hook of the shared runner: one run of [`run_script`].
struct Running<'a, 'b> {
    c: &'a mut Conn,
    run: &'a ScriptRun<'b>,
    tally: Tally,
}

#[async_trait]
impl Hook<ScriptSplitter> for Running<'_, '_> {
    type Output = ScriptReport;

    async fn run(&mut self, stmts: Vec<Vec<u8>>, _last: bool) -> Result<()> {
        for stmt in stmts {
            run_statement(self.c, self.run, stmt, &mut self.tally).await?;
        }
        Ok(())
    }

    async fn end(self, _: ScriptSplitter) -> Result<ScriptReport> {
        let mut report = self.tally.report;
        report.tables = self.tally.tables.len();
        for (what, n) in self.tally.skipped {
            report.notes.push(format!("skipped {n} {what} statement(s)"));
        }
        Ok(report)
    }
}

/// Why a statement is not run, if it is not (counted under that name), or `Some("")` for one
/// left out silently (another table's, with `--tables`).
fn skipped(stmt: &[u8], kind: StatementKind, run: &ScriptRun<'_>) -> Option<&'static str> {
    match kind {
        StatementKind::Use => return Some("USE"),
        StatementKind::Database => return Some("CREATE/DROP DATABASE"),
        StatementKind::SuperOnly if run.strip_super => return Some("GTID/binlog/global settings"),
        _ => {}
    }
    // LOCK TABLES in a dump only speeds up the inserts; the restore loads a shadow no
    // one else sees. Kept, a table whose default calls nextval() fails its INSERT
    // (ERROR 1100: the sequence "was not locked with LOCK TABLES").
    if is_lock_tables(stmt) {
        return Some("LOCK/UNLOCK TABLES");
    }
    if run.tables.is_some()
        && let Some(name) = statement_table(stmt)
        && !selects_name(run.tables, &name)
    {
        return Some("");
    }
    None
}

/// Runs one statement (or skips it, or holds an event back).
async fn run_statement(c: &mut Conn, run: &ScriptRun<'_>, stmt: Vec<u8>, tally: &mut Tally) -> Result<()> {
    if let Some(done) = run.already_run
        && done.lock().map(|mut d| d.remove(&stmt)).unwrap_or(false)
    {
        return Ok(());
    }
    let kind = script::classify(&stmt);
    if let Some(why) = skipped(&stmt, kind, run) {
        if !why.is_empty() {
            *tally.skipped.entry(why).or_default() += 1;
        }
        return Ok(());
    }
    let stmt = if run.no_definer { script::strip_definer(&stmt) } else { stmt };
    if kind == StatementKind::CreateEvent {
        let mode = query_value(c, "SELECT @@SESSION.sql_mode").await?.unwrap_or_default();
        let tz = query_value(c, "SELECT @@SESSION.time_zone").await?.unwrap_or_default();
        if let Ok(mut d) = run.deferred.lock() {
            d.push(Object {
                kind: "EVENT".into(),
                name: String::new(),
                sql_mode: mode,
                time_zone: Some(tz),
                create: String::from_utf8_lossy(&stmt).into_owned(),
            });
        }
        return Ok(());
    }
    let h = script::head(&stmt, 3);
    execute(c, run, &stmt, &h).await?;
    tally.report.statements += 1;
    if h.starts_with("INSERT") || h.starts_with("REPLACE") {
        tally.report.rows += c.affected_rows();
        if let Some(t) = statement_table(&stmt) {
            tally.tables.insert(t);
        }
    }
    Ok(())
}

/// Executes one statement; with a cancellation token, a cancel stops it on the server.
async fn execute(c: &mut Conn, run: &ScriptRun<'_>, stmt: &[u8], h: &str) -> Result<()> {
    let failed = |e| Error::source(format!("MySQL: {}", short(&String::from_utf8_lossy(stmt))), e);
    let Some(token) = run.cancel else { return c.query_drop(stmt).await.map_err(failed) };
    if token.is_cancelled() {
        return Err(Error::Cancelled(format!("restore: stopped before {}", short(h))));
    }
    let id = c.id();
    let running = c.query_drop(stmt);
    tokio::pin!(running);
    tokio::select! {
        r = &mut running => r.map_err(failed),
        () = token.cancelled() => {
            kill_query(run.killer, id).await;
            // The statement ends at once now (interrupted, or done just before).
            let _ = running.await;
            Err(Error::Cancelled(format!("restore: stopped during {}", short(h))))
        }
    }
}

/// Stops the statement running on server thread `id` (`KILL QUERY` from a pool connection;
/// the pool is idle while a script runs on the control connection).
async fn kill_query(pool: &Pool<Conn>, id: u32) {
    match pool.get().await {
        Ok(mut lease) => {
            if let Err(e) = lease.query_drop(format!("KILL QUERY {id}")).await {
                tracing::warn!("stopping the restore's statement (KILL QUERY {id}): {e}");
            }
        }
        Err(e) => tracing::warn!("stopping the restore's statement: {e}"),
    }
}

/// The post-data objects of a `--tables` restore: only the triggers of the selected tables,
/// each with the `SET` statements before it.
pub(crate) fn selected_triggers(objects: &str, tables: &[String]) -> Result<String> {
    let stmts = script::split_all(objects.as_bytes())
        .map_err(|e| runner::unreadable::<ScriptSplitter>(e.to_string()))?;
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
        if is_trigger && tables.iter().any(|t| *t == trigger_table(&text)) {
            keep.push_str(&pending_sets);
            keep.push_str("DELIMITER ;;\n");
            keep.push_str(&text);
            keep.push_str(";;\nDELIMITER ;\n");
        }
        pending_sets.clear();
    }
    Ok(keep)
}

/// The table a `CREATE TRIGGER` is on.
fn trigger_table(create: &str) -> String {
    let upper = create.to_ascii_uppercase();
    let Some(p) = upper.find(" ON ") else { return String::new() };
    let rest = create[p + 4..].trim_start();
    statement_table(format!("CREATE TABLE {rest}").as_bytes()).unwrap_or_default()
}

/// The statements of a post-data script (its part before [`LIVE_OBJECTS_MARKER`]) that only
/// add secondary keys to one table (`ALTER TABLE t ADD KEY ...`, as `schema::tables_ddl` writes
/// them), with their table: these can run as soon as that table is loaded. Anything naming a
/// foreign key or a constraint is left for the end (a foreign key needs the other tables' keys).
pub(crate) fn key_statements(post_data: &str) -> Result<Vec<(String, Vec<u8>)>> {
    let structure = match post_data.find(LIVE_OBJECTS_MARKER) {
        Some(p) => &post_data[..p],
        None => post_data,
    };
    let stmts = script::split_all(structure.as_bytes())
        .map_err(|e| runner::unreadable::<ScriptSplitter>(e.to_string()))?;
    let mut out = Vec::new();
    for s in stmts {
        if script::head(&s, 2) != "ALTER TABLE" {
            continue;
        }
        let upper = String::from_utf8_lossy(&s).to_ascii_uppercase();
        let adds_only_keys = upper.contains(" ADD ")
            && !upper.contains("FOREIGN")
            && !upper.contains("CONSTRAINT")
            && !upper.contains(" DROP ")
            && !upper.contains(" RENAME ");
        if !adds_only_keys {
            continue;
        }
        if let Some(t) = statement_table(&s) {
            out.push((t, s));
        }
    }
    Ok(out)
}

/// `LOCK TABLES ...` / `UNLOCK TABLES` (also `LOCK TABLE`, in conditional comments).
fn is_lock_tables(stmt: &[u8]) -> bool {
    let h = script::head(stmt, 2);
    let mut w = h.split(' ');
    matches!((w.next(), w.next()), (Some("LOCK" | "UNLOCK"), Some("TABLES" | "TABLE")))
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A hook that keeps the statements it is given.
    struct Keep<'a>(&'a mut Vec<Vec<u8>>);

    #[async_trait]
    impl Hook<ScriptSplitter> for Keep<'_> {
        type Output = ();
        async fn run(&mut self, stmts: Vec<Vec<u8>>, _last: bool) -> Result<()> {
            self.0.extend(stmts);
            Ok(())
        }
        async fn end(self, _: ScriptSplitter) -> Result<()> {
            Ok(())
        }
    }

    /// A script that cannot be read is an integrity error (exit 3), as in the PostgreSQL
    /// engine and the shared script check, not a failure of the server (exit 1).
    #[tokio::test]
    async fn an_unreadable_script_is_an_integrity_error_as_in_postgres() {
        use futures::StreamExt;
        let script = |text: &'static str| futures::stream::iter([Ok(bytes::Bytes::from(text))]).boxed();
        let mut seen = Vec::new();
        let e = runner::run(script("SELECT 1;\nSELECT 'abc"), ScriptSplitter::default(), Keep(&mut seen))
            .await
            .unwrap_err();
        assert_eq!(seen, vec![b"SELECT 1".to_vec()]);
        assert_eq!(e.kind(), crate::error::ErrorKind::Integrity, "{e}");
        let pg = crate::source::script::check::check_script(
            crate::model::Engine::Postgres,
            script("SELECT 'abc"),
            "x",
        )
        .await
        .unwrap_err();
        assert_eq!(e.kind(), pg.kind(), "{e} / {pg}");
        let e = selected_triggers(
            "CREATE TRIGGER t BEFORE INSERT ON `a` FOR EACH ROW SET @x = 'y",
            &["a".into()],
        )
        .unwrap_err();
        assert_eq!(e.kind(), crate::error::ErrorKind::Integrity, "{e}");
    }

    /// Only the statements adding secondary keys to one table run early; foreign keys, other
    /// ALTERs and everything after the live-objects marker stay in post-data.
    #[test]
    fn key_statements_are_the_secondary_keys_only() {
        let post = format!(
            "SET NAMES utf8mb4;\nSET SESSION foreign_key_checks = 0;\n\
             ALTER TABLE `users` ADD UNIQUE KEY `email` (`email`);\n\
             ALTER TABLE `tx` ADD KEY `a` (`a`),\n  ADD KEY `b` (`b`);\n\
             ALTER TABLE `tx` ADD CONSTRAINT `f` FOREIGN KEY (`a`) REFERENCES `users` (`id`);\n\
             ALTER TABLE `tx` DROP KEY `a`;\n{LIVE_OBJECTS_MARKER}\n\
             ALTER TABLE `late` ADD KEY `z` (`z`);\n"
        );
        let found = key_statements(&post).unwrap();
        let found: Vec<(&str, String)> =
            found.iter().map(|(t, s)| (t.as_str(), String::from_utf8_lossy(s).into_owned())).collect();
        assert_eq!(
            found,
            vec![
                ("users", "ALTER TABLE `users` ADD UNIQUE KEY `email` (`email`)".to_string()),
                ("tx", "ALTER TABLE `tx` ADD KEY `a` (`a`),\n  ADD KEY `b` (`b`)".to_string()),
            ]
        );
    }

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
}
