//! A database's live objects as the restore moves them: views, routines, triggers and events
//! with the session settings they need ([`Object`]), read from the server ([`harvest`]),
//! dropped and created again ([`recreate`]); the base tables and foreign keys beside them.
//! Shared by the swap, its recovery and both session modes (it sits below all of them).

use mysql_async::Conn;
use mysql_async::prelude::Queryable;

use super::conn::{LOAD_SQL_MODE, exec, qi, qs, query_text, short, view_relative_to};
use crate::error::{Error, Result};
use crate::source::mysql_script as script;

/// The journal table of a restore (in the shadow before the swap, in the previous database
/// after it; in the live database during an in-place restore): never one of the database's
/// tables.
pub(crate) const JOURNAL: &str = "dbbackup:journal";

/// The routine kinds of `information_schema.ROUTINES` that are backed up (`SHOW CREATE <kind>`);
/// any other kind fails the backup rather than being left out.
pub(crate) const ROUTINE_TYPES: [&str; 4] = ["FUNCTION", "PROCEDURE", "PACKAGE", "PACKAGE BODY"];

/// A view, routine, trigger or event definition with the session settings it needs.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub(crate) struct Object {
    pub(crate) kind: String,
    pub(crate) name: String,
    pub(crate) sql_mode: String,
    pub(crate) time_zone: Option<String>,
    pub(crate) create: String,
}

impl Object {
    /// The same object without its `DEFINER` clause when `no_definer` is set.
    pub(crate) fn without_definer(mut self, no_definer: bool) -> Self {
        if no_definer {
            self.create =
                String::from_utf8_lossy(&script::strip_definer(self.create.as_bytes())).into_owned();
        }
        self
    }
}

/// Column defaults of `to`'s tables that name database `from` (a `nextval()` default is bound
/// to the database the table was created in: the shadow) re-pointed at `to`.
pub(crate) async fn retarget_defaults(c: &mut Conn, from: &str, to: &str) -> Result<()> {
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
        let new = super::conn::requalify(&default, from, Some(to));
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

pub(crate) fn trigger_table_is(o: &Object, table: &str) -> bool {
    o.time_zone.as_deref() == Some(table)
}

/// Base tables and sequences of a database (never the journal).
pub(crate) async fn base_tables(c: &mut Conn, db: &str) -> Result<Vec<String>> {
    let rows = query_text(
        c,
        &format!(
            "SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = {} AND TABLE_TYPE <> 'VIEW' \
             AND TABLE_NAME <> {} ORDER BY TABLE_NAME",
            qs(db),
            qs(JOURNAL)
        ),
    )
    .await?;
    Ok(rows.into_iter().filter_map(|r| r.into_iter().next().flatten()).collect())
}

/// Foreign keys of a table as (name, `CONSTRAINT ... FOREIGN KEY ...` clause).
pub(crate) async fn foreign_keys(c: &mut Conn, db: &str, table: &str) -> Result<Vec<(String, String)>> {
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
pub(crate) async fn harvest(c: &mut Conn, db: &str, all: bool) -> Result<Vec<Object>> {
    exec(c, "SET SESSION character_set_results = utf8mb4").await?;
    exec(c, &format!("USE {}", qi(db))).await?;
    let mut out = Vec::new();
    if all {
        out.extend(routines(c, db).await?);
        out.extend(views(c, db).await?);
        out.extend(events(c, db).await?);
    }
    out.extend(triggers(c, db).await?);
    Ok(out)
}

/// The views of a database (as [`harvest`] reads them).
pub(crate) async fn views_of(c: &mut Conn, db: &str) -> Result<Vec<Object>> {
    exec(c, "SET SESSION character_set_results = utf8mb4").await?;
    exec(c, &format!("USE {}", qi(db))).await?;
    views(c, db).await
}

fn col(r: &[Option<String>], i: usize) -> String {
    r.get(i).cloned().flatten().unwrap_or_default()
}

/// `SHOW CREATE <what> <name>` in the current database: its first row, if any.
async fn show_create(c: &mut Conn, what: &str, name: &str) -> Result<Option<Vec<Option<String>>>> {
    Ok(query_text(c, &format!("SHOW CREATE {what} {}", qi(name))).await?.into_iter().next())
}

async fn routines(c: &mut Conn, db: &str) -> Result<Vec<Object>> {
    let mut out = Vec::new();
    let list = format!(
        "SELECT ROUTINE_TYPE, ROUTINE_NAME FROM information_schema.ROUTINES WHERE ROUTINE_SCHEMA = {} \
         ORDER BY ROUTINE_TYPE, ROUTINE_NAME",
        qs(db)
    );
    for r in query_text(c, &list).await? {
        let (ty, name) = (col(&r, 0), col(&r, 1));
        // A kind this version does not know could not be moved or put back: refuse.
        let Some(kind) = ROUTINE_TYPES.iter().copied().find(|k| *k == ty) else {
            return Err(Error::Unsupported(format!(
                "routine {name} in database {db} is a {ty}, which this version cannot restore"
            )));
        };
        if let Some(s) = show_create(c, &ty, &name).await? {
            out.push(Object {
                kind: kind.into(),
                name,
                sql_mode: col(&s, 1),
                time_zone: None,
                create: col(&s, 2),
            });
        }
    }
    Ok(out)
}

async fn views(c: &mut Conn, db: &str) -> Result<Vec<Object>> {
    let mut out = Vec::new();
    let list = format!("SELECT TABLE_NAME FROM information_schema.VIEWS WHERE TABLE_SCHEMA = {}", qs(db));
    for r in query_text(c, &list).await? {
        let name = col(&r, 0);
        if let Some(s) = show_create(c, "VIEW", &name).await? {
            out.push(Object {
                kind: "VIEW".into(),
                name,
                sql_mode: LOAD_SQL_MODE.into(),
                time_zone: None,
                create: view_relative_to(&col(&s, 1), db),
            });
        }
    }
    Ok(out)
}

/// Events (none when the server cannot list them).
async fn events(c: &mut Conn, db: &str) -> Result<Vec<Object>> {
    let mut out = Vec::new();
    let list = format!("SELECT EVENT_NAME FROM information_schema.EVENTS WHERE EVENT_SCHEMA = {}", qs(db));
    let Ok(events) = query_text(c, &list).await else { return Ok(out) };
    for r in events {
        let name = col(&r, 0);
        if let Some(s) = show_create(c, "EVENT", &name).await? {
            out.push(Object {
                kind: "EVENT".into(),
                name,
                sql_mode: col(&s, 1),
                time_zone: s.get(2).cloned().flatten(),
                create: col(&s, 3),
            });
        }
    }
    Ok(out)
}

async fn triggers(c: &mut Conn, db: &str) -> Result<Vec<Object>> {
    let mut out = Vec::new();
    let list = format!(
        "SELECT TRIGGER_NAME, EVENT_OBJECT_TABLE FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = {} \
         ORDER BY EVENT_OBJECT_TABLE, ACTION_TIMING, EVENT_MANIPULATION, ACTION_ORDER",
        qs(db)
    );
    for r in query_text(c, &list).await? {
        let name = col(&r, 0);
        let table = r.get(1).cloned().flatten();
        if let Some(s) = show_create(c, "TRIGGER", &name).await? {
            out.push(Object {
                kind: "TRIGGER".into(),
                name,
                sql_mode: col(&s, 1),
                time_zone: table,
                create: col(&s, 2),
            });
        }
    }
    Ok(out)
}

/// Drops an object; packages only parse in Oracle mode.
pub(crate) async fn drop_object(c: &mut Conn, o: &Object) -> Result<()> {
    if !o.kind.starts_with("PACKAGE") {
        return exec(c, &drop_sql(o)).await;
    }
    exec(c, "SET SESSION sql_mode = 'ORACLE'").await?;
    let r = exec(c, &drop_sql(o)).await;
    exec(c, &format!("SET SESSION sql_mode = {}", qs(LOAD_SQL_MODE))).await?;
    r
}

fn drop_sql(o: &Object) -> String {
    format!("DROP {} IF EXISTS {}", o.kind, qi(&o.name))
}

/// Creates objects in `db`: routines, then views (retrying in rounds, so views on views find
/// each other whatever the order), then triggers and events.
pub(crate) async fn recreate(c: &mut Conn, db: &str, objects: &[Object], no_definer: bool) -> Result<()> {
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
                exec(c, &format!("SET SESSION sql_mode = {}", qs(LOAD_SQL_MODE))).await?;
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
