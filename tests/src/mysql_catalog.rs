//! The whole catalog of a MySQL/MariaDB database as comparable text (issue 12): every
//! `information_schema` fact a restore must bring back — database options, tables and their
//! options, columns (defaults, generation, invisibility, collation), indexes, constraints and
//! foreign keys, check constraints, partitions, views, routines and packages (with sql_mode,
//! character sets and collations), routine parameters, triggers, events, and every sequence's
//! definition and state.
//!
//! Facts that legitimately differ between a source and its restore are left out: creation and
//! alteration times, statistics (row counts, sizes), and the database's own name, which is
//! replaced by `<db>` wherever it appears (a restore may go under another name).

use mysql_async::Conn;
use mysql_async::prelude::Queryable;

/// Sorted lines `kind name: facts`, one per catalog row.
pub async fn snapshot(c: &mut Conn, db: &str) -> Vec<String> {
    let lit = format!("'{}'", db.replace('\'', "''"));
    let queries: Vec<(&str, String)> = vec![
        (
            "database",
            format!(
                "SELECT SCHEMA_NAME, DEFAULT_CHARACTER_SET_NAME, DEFAULT_COLLATION_NAME, SCHEMA_COMMENT \
                 FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = {lit}"
            ),
        ),
        (
            "table",
            format!(
                "SELECT TABLE_NAME, TABLE_TYPE, ENGINE, ROW_FORMAT, TABLE_COLLATION, CREATE_OPTIONS, TABLE_COMMENT, \
                 AUTO_INCREMENT, TEMPORARY FROM information_schema.TABLES WHERE TABLE_SCHEMA = {lit}"
            ),
        ),
        (
            "column",
            format!(
                "SELECT TABLE_NAME, COLUMN_NAME, ORDINAL_POSITION, COLUMN_DEFAULT, IS_NULLABLE, COLUMN_TYPE, \
                 CHARACTER_SET_NAME, COLLATION_NAME, COLUMN_KEY, EXTRA, COLUMN_COMMENT, IS_GENERATED, \
                 GENERATION_EXPRESSION FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = {lit}"
            ),
        ),
        (
            "index",
            format!(
                "SELECT TABLE_NAME, INDEX_NAME, SEQ_IN_INDEX, NON_UNIQUE, COLUMN_NAME, COLLATION, SUB_PART, \
                 NULLABLE, INDEX_TYPE, COMMENT, INDEX_COMMENT FROM information_schema.STATISTICS \
                 WHERE TABLE_SCHEMA = {lit}"
            ),
        ),
        (
            "constraint",
            format!(
                "SELECT TABLE_NAME, CONSTRAINT_NAME, CONSTRAINT_TYPE FROM information_schema.TABLE_CONSTRAINTS \
                 WHERE TABLE_SCHEMA = {lit}"
            ),
        ),
        (
            "check",
            format!(
                "SELECT TABLE_NAME, CONSTRAINT_NAME, LEVEL, CHECK_CLAUSE FROM information_schema.CHECK_CONSTRAINTS \
                 WHERE CONSTRAINT_SCHEMA = {lit}"
            ),
        ),
        (
            "key column",
            format!(
                "SELECT TABLE_NAME, CONSTRAINT_NAME, ORDINAL_POSITION, COLUMN_NAME, POSITION_IN_UNIQUE_CONSTRAINT, \
                 REFERENCED_TABLE_SCHEMA, REFERENCED_TABLE_NAME, REFERENCED_COLUMN_NAME \
                 FROM information_schema.KEY_COLUMN_USAGE WHERE TABLE_SCHEMA = {lit}"
            ),
        ),
        (
            "foreign key",
            format!(
                "SELECT TABLE_NAME, CONSTRAINT_NAME, UNIQUE_CONSTRAINT_SCHEMA, UNIQUE_CONSTRAINT_NAME, MATCH_OPTION, \
                 UPDATE_RULE, DELETE_RULE, REFERENCED_TABLE_NAME FROM information_schema.REFERENTIAL_CONSTRAINTS \
                 WHERE CONSTRAINT_SCHEMA = {lit}"
            ),
        ),
        (
            "partition",
            format!(
                "SELECT TABLE_NAME, PARTITION_NAME, SUBPARTITION_NAME, PARTITION_ORDINAL_POSITION, \
                 SUBPARTITION_ORDINAL_POSITION, PARTITION_METHOD, SUBPARTITION_METHOD, PARTITION_EXPRESSION, \
                 SUBPARTITION_EXPRESSION, PARTITION_DESCRIPTION, PARTITION_COMMENT, NODEGROUP, TABLESPACE_NAME \
                 FROM information_schema.PARTITIONS WHERE TABLE_SCHEMA = {lit} AND PARTITION_NAME IS NOT NULL"
            ),
        ),
        (
            "view",
            format!(
                "SELECT TABLE_NAME, VIEW_DEFINITION, CHECK_OPTION, IS_UPDATABLE, DEFINER, SECURITY_TYPE, \
                 CHARACTER_SET_CLIENT, COLLATION_CONNECTION, ALGORITHM FROM information_schema.VIEWS \
                 WHERE TABLE_SCHEMA = {lit}"
            ),
        ),
        (
            "routine",
            format!(
                "SELECT ROUTINE_TYPE, ROUTINE_NAME, DATA_TYPE, DTD_IDENTIFIER, ROUTINE_BODY, ROUTINE_DEFINITION, \
                 IS_DETERMINISTIC, SQL_DATA_ACCESS, SECURITY_TYPE, SQL_MODE, ROUTINE_COMMENT, DEFINER, \
                 CHARACTER_SET_CLIENT, COLLATION_CONNECTION, DATABASE_COLLATION \
                 FROM information_schema.ROUTINES WHERE ROUTINE_SCHEMA = {lit}"
            ),
        ),
        (
            "parameter",
            format!(
                "SELECT ROUTINE_TYPE, SPECIFIC_NAME, ORDINAL_POSITION, PARAMETER_MODE, PARAMETER_NAME, DTD_IDENTIFIER \
                 FROM information_schema.PARAMETERS WHERE SPECIFIC_SCHEMA = {lit}"
            ),
        ),
        (
            "trigger",
            format!(
                "SELECT TRIGGER_NAME, EVENT_OBJECT_TABLE, ACTION_TIMING, EVENT_MANIPULATION, ACTION_ORDER, \
                 ACTION_STATEMENT, SQL_MODE, DEFINER, CHARACTER_SET_CLIENT, COLLATION_CONNECTION, DATABASE_COLLATION \
                 FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = {lit}"
            ),
        ),
        (
            "event",
            format!(
                "SELECT EVENT_NAME, DEFINER, TIME_ZONE, EVENT_BODY, EVENT_DEFINITION, EVENT_TYPE, EXECUTE_AT, \
                 INTERVAL_VALUE, INTERVAL_FIELD, SQL_MODE, STARTS, ENDS, STATUS, ON_COMPLETION, EVENT_COMMENT, \
                 CHARACTER_SET_CLIENT, COLLATION_CONNECTION, DATABASE_COLLATION FROM information_schema.EVENTS \
                 WHERE EVENT_SCHEMA = {lit}"
            ),
        ),
    ];
    let mut out = Vec::new();
    c.query_drop("SET SESSION character_set_results = utf8mb4").await.expect("charset");
    for (kind, sql) in queries {
        let rows: Vec<mysql_async::Row> = c.query(&sql).await.unwrap_or_else(|e| panic!("{e}: {sql}"));
        for r in rows {
            let cols = r.columns_ref().iter().map(|c| c.name_str().into_owned()).collect::<Vec<_>>();
            let vals: Vec<String> = r
                .unwrap_raw()
                .into_iter()
                .map(|v| match v {
                    None | Some(mysql_async::Value::NULL) => "NULL".to_string(),
                    Some(mysql_async::Value::Bytes(b)) => normalise(&String::from_utf8_lossy(&b), db),
                    Some(other) => other.as_sql(true),
                })
                .collect();
            let facts: Vec<String> =
                cols.iter().zip(&vals).skip(1).map(|(c, v)| format!("{c}={v}")).collect();
            out.push(format!(
                "{kind} {}: {}",
                vals.first().map(String::as_str).unwrap_or(""),
                facts.join(", ")
            ));
        }
    }
    let seqs: Vec<String> = c
        .query(format!(
            "SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = {lit} AND TABLE_TYPE = 'SEQUENCE'"
        ))
        .await
        .expect("sequences");
    for s in seqs {
        let q = format!("SELECT * FROM `{}`.`{}`", db.replace('`', "``"), s.replace('`', "``"));
        let row: Option<mysql_async::Row> = c.query_first(&q).await.unwrap_or_else(|e| panic!("{e}: {q}"));
        let row = row.expect("sequence row");
        let cols = row.columns_ref().iter().map(|c| c.name_str().into_owned()).collect::<Vec<_>>();
        let vals: Vec<String> = row
            .unwrap_raw()
            .into_iter()
            .map(|v| match v {
                Some(mysql_async::Value::Bytes(b)) => String::from_utf8_lossy(&b).into_owned(),
                Some(other) => other.as_sql(true),
                None => "NULL".into(),
            })
            .collect();
        let facts: Vec<String> = cols.iter().zip(&vals).map(|(c, v)| format!("{c}={v}")).collect();
        out.push(format!("sequence state {s}: {}", facts.join(", ")));
    }
    out.sort();
    out
}

/// The database's own name as `<db>`: whole values, and `` `db` `` inside definitions.
fn normalise(v: &str, db: &str) -> String {
    if v == db {
        return "<db>".into();
    }
    v.replace(&format!("`{}`", db.replace('`', "``")), "`<db>`")
}

/// Panics with a readable diff (lines only in one side) unless the catalogs are equal.
pub fn assert_same(source: &[String], restored: &[String], what: &str) {
    let only_source: Vec<&String> = source.iter().filter(|l| !restored.contains(l)).collect();
    let only_restored: Vec<&String> = restored.iter().filter(|l| !source.contains(l)).collect();
    if only_source.is_empty() && only_restored.is_empty() {
        return;
    }
    let mut msg = format!("{what}: the catalogs differ\n");
    for l in only_source {
        msg.push_str(&format!("- {l}\n"));
    }
    for l in only_restored {
        msg.push_str(&format!("+ {l}\n"));
    }
    panic!("{msg}");
}
