//! The schema scripts of a snapshot: pre-data (sequences first, then the tables without their
//! secondary indexes and foreign keys) and post-data (those indexes, then the foreign keys,
//! then after [`LIVE_OBJECTS_MARKER`] the routines, views, triggers and events, each with the
//! session settings it was created under), read with `SHOW CREATE` in the snapshot.

use mysql_async::Conn;

use super::conn::{LOAD_SQL_MODE, exec, qi, qs, query_text, view_relative_to};
use super::object::ROUTINE_TYPES;
use super::table::{TableInfo, TableKind};
use crate::error::{Error, Result};
use crate::source::SchemaScripts;
use crate::source::mysql_script as script;

/// The line that separates index/constraint statements from views, routines, triggers and
/// events in the post-data script.
pub(crate) const LIVE_OBJECTS_MARKER: &str = "-- dbbackup:live-objects";

/// Both schema scripts of database `db` (the current database of `c`'s snapshot session is
/// set to it), its `tables` as listed by the snapshot.
pub(crate) async fn scripts(
    c: &mut Conn,
    db: &str,
    tables: &[TableInfo],
    no_definer: bool,
) -> Result<SchemaScripts> {
    exec(c, "SET SESSION character_set_results = utf8mb4").await?;
    exec(c, &format!("USE {}", qi(db))).await?;
    let mut pre = format!(
        "-- dbbackup MySQL schema (pre-data) of {}\nSET NAMES utf8mb4;\nSET SESSION time_zone = '+00:00';\n\
         SET SESSION sql_mode = {};\nSET SESSION foreign_key_checks = 0;\n",
        qi(db),
        qs(LOAD_SQL_MODE)
    );
    let mut post = String::from(
        "-- dbbackup MySQL schema (post-data)\nSET NAMES utf8mb4;\nSET SESSION foreign_key_checks = 0;\n",
    );
    tables_ddl(c, db, tables, &mut pre, &mut post).await?;
    post.push_str(LIVE_OBJECTS_MARKER);
    post.push('\n');
    let strip = |s: &str| maybe_strip(no_definer, s);
    routines_ddl(c, db, &mut post, &strip).await?;
    views_ddl(c, db, &mut post, &strip).await?;
    triggers_ddl(c, db, &mut post, &strip).await?;
    events_ddl(c, db, &mut post, &strip).await?;
    Ok(SchemaScripts { pre_data: pre, post_data: post })
}

/// Sequences (with their state) and tables into `pre`; secondary indexes, then foreign keys
/// into `post`.
async fn tables_ddl(
    c: &mut Conn,
    db: &str,
    tables: &[TableInfo],
    pre: &mut String,
    post: &mut String,
) -> Result<()> {
    let mut post_fks = String::new();
    let auto_cols = query_text(
        c,
        &format!(
            "SELECT TABLE_NAME, COLUMN_NAME, COLUMN_KEY FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = {} \
             AND EXTRA LIKE '%auto_increment%'",
            qs(db)
        ),
    )
    .await?;
    // Sequences first: a table's default may call nextval() on one, which must exist when
    // the table is created.
    let sequences_first = tables
        .iter()
        .filter(|t| t.kind == TableKind::Sequence)
        .chain(tables.iter().filter(|t| t.kind != TableKind::Sequence));
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
            sequence_state(c, &t.name, pre).await?;
            continue;
        }
        let auto_needs_key = auto_cols
            .iter()
            .any(|r| col(r, 0) == t.name && t.pk.first().map(|p| p.0.as_str()) != Some(col(r, 1).as_str()));
        // Relative to its database: a default `nextval(`db`.`seq`)` names the restored
        // database's sequence wherever it is restored (the restore's swap re-points it from
        // the shadow to the live database).
        let create = view_relative_to(&create, db);
        let split = split_create_table(&t.name, &create, auto_needs_key);
        pre.push_str(&split.table);
        pre.push_str(";\n");
        for (out, alter) in [(&mut *post, split.keys), (&mut post_fks, split.foreign_keys)] {
            if let Some(a) = alter {
                out.push_str(&a);
                out.push_str(";\n");
            }
        }
    }
    post.push_str(&post_fks);
    Ok(())
}

/// The statements that bring a restored sequence to the snapshot's state.
async fn sequence_state(c: &mut Conn, name: &str, pre: &mut String) -> Result<()> {
    let st = query_text(
        c,
        &format!(
            "SELECT next_not_cached_value, cycle_count, increment, minimum_value, maximum_value FROM {}",
            qi(name)
        ),
    )
    .await?;
    let Some(r) = st.first() else { return Ok(()) };
    let num = |i: usize| col(r, i).parse::<i128>().unwrap_or(0);
    let (next, round, inc, min, max) = (num(0), num(1), num(2), num(3), num(4));
    // RESTART sets the next value but resets the cycle count; SETVAL with a
    // higher round then brings the round back (it marks `next - increment` used).
    pre.push_str(&format!("ALTER SEQUENCE {} RESTART WITH {next};\n", qi(name)));
    if round > 0 {
        let prev = next - inc;
        if prev >= min && prev <= max {
            pre.push_str(&format!("SELECT SETVAL({}, {prev}, 1, {round});\n", qi(name)));
        } else {
            pre.push_str(&format!(
                "-- sequence {} is at the start of cycle round {round}; the round is not restorable by SETVAL\n",
                qi(name)
            ));
        }
    }
    Ok(())
}

async fn routines_ddl(
    c: &mut Conn,
    db: &str,
    post: &mut String,
    strip: &(dyn Fn(&str) -> String + Sync),
) -> Result<()> {
    for r in query_text(
        c,
        &format!(
            "SELECT ROUTINE_TYPE, ROUTINE_NAME FROM information_schema.ROUTINES WHERE ROUTINE_SCHEMA = {} \
             ORDER BY ROUTINE_TYPE, ROUTINE_NAME",
            qs(db)
        ),
    )
    .await?
    {
        // PACKAGE sorts before PACKAGE BODY, which needs it.
        let (ty, name) = (col(&r, 0), col(&r, 1));
        if !ROUTINE_TYPES.contains(&ty.as_str()) {
            return Err(Error::Unsupported(format!(
                "routine {name} of database {db} is a {ty}, which this version cannot back up"
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
        object_block(post, &col(s, 1), None, &strip(&create));
    }
    Ok(())
}

async fn views_ddl(
    c: &mut Conn,
    db: &str,
    post: &mut String,
    strip: &(dyn Fn(&str) -> String + Sync),
) -> Result<()> {
    let mut views = Vec::new();
    for r in query_text(
        c,
        &format!(
            "SELECT TABLE_NAME FROM information_schema.VIEWS WHERE TABLE_SCHEMA = {} ORDER BY TABLE_NAME",
            qs(db)
        ),
    )
    .await?
    {
        let name = col(&r, 0);
        let sv = query_text(c, &format!("SHOW CREATE VIEW {}", qi(&name))).await?;
        if let Some(s) = sv.first() {
            views.push((name, view_relative_to(&col(s, 1), db)));
        }
    }
    for (_, create) in order_views(views) {
        // Views carry their own sql_mode-independent definition; the session mode is the load's.
        object_block(post, LOAD_SQL_MODE, None, &strip(&create));
    }
    Ok(())
}

async fn triggers_ddl(
    c: &mut Conn,
    db: &str,
    post: &mut String,
    strip: &(dyn Fn(&str) -> String + Sync),
) -> Result<()> {
    for r in query_text(
        c,
        &format!(
            "SELECT TRIGGER_NAME FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = {} \
             ORDER BY EVENT_OBJECT_TABLE, ACTION_TIMING, EVENT_MANIPULATION, ACTION_ORDER",
            qs(db)
        ),
    )
    .await?
    {
        let st = query_text(c, &format!("SHOW CREATE TRIGGER {}", qi(&col(&r, 0)))).await?;
        if let Some(s) = st.first() {
            object_block(post, &col(s, 1), None, &strip(&col(s, 2)));
        }
    }
    Ok(())
}

/// Events (none when the server cannot list them).
async fn events_ddl(
    c: &mut Conn,
    db: &str,
    post: &mut String,
    strip: &(dyn Fn(&str) -> String + Sync),
) -> Result<()> {
    let list = format!(
        "SELECT EVENT_NAME FROM information_schema.EVENTS WHERE EVENT_SCHEMA = {} ORDER BY EVENT_NAME",
        qs(db)
    );
    let Ok(events) = query_text(c, &list).await else { return Ok(()) };
    for r in events {
        let se = query_text(c, &format!("SHOW CREATE EVENT {}", qi(&col(&r, 0)))).await?;
        if let Some(s) = se.first() {
            object_block(post, &col(s, 1), Some(&col(s, 2)), &strip(&col(s, 3)));
        }
    }
    Ok(())
}

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
        String::from_utf8_lossy(&script::strip_definer(s.as_bytes())).into_owned()
    } else {
        s.to_string()
    }
}

fn col(r: &[Option<String>], i: usize) -> String {
    r.get(i).cloned().flatten().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

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
