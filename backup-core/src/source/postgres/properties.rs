//! The database's own properties, which pg_dump without `--create` leaves out: encoding and
//! locale, comment, settings, per-role settings (`ALTER ROLE ... IN DATABASE ... SET`),
//! privileges and connection limit. Read at dump time into the manifest ([`database_properties`]),
//! set on the restored database ([`property_statements`]) and on `guard`'s copy.

use std::collections::BTreeMap;

use tokio_postgres::Client;

use super::conn::{exec, pg_err, quote_ident, quote_literal};
use super::{PROP_ACL, PROP_CONNECTION_LIMIT, PROP_ROLE_SETTINGS};
use crate::error::{Error, Result};

/// The database's own properties that pg_dump without `--create` loses.
pub(super) async fn database_properties(c: &Client) -> Result<BTreeMap<String, serde_json::Value>> {
    let row = c
        .query_one(
            "SELECT pg_encoding_to_char(d.encoding), d.datcollate, d.datctype, \
             shobj_description(d.oid, 'pg_database'), \
             coalesce((SELECT s.setconfig FROM pg_db_role_setting s WHERE s.setdatabase = d.oid AND s.setrole = 0), '{}') \
             FROM pg_database d WHERE d.datname = current_database()",
            &[],
        )
        .await
        .map_err(pg_err("read database properties"))?;
    let mut p = BTreeMap::new();
    p.insert("pg.encoding".into(), serde_json::Value::String(row.get(0)));
    p.insert("pg.collate".into(), serde_json::Value::String(row.get(1)));
    p.insert("pg.ctype".into(), serde_json::Value::String(row.get(2)));
    if let Some(comment) = row.get::<_, Option<String>>(3) {
        p.insert("pg.comment".into(), serde_json::Value::String(comment));
    }
    let settings: Vec<String> = row.get(4);
    if !settings.is_empty() {
        p.insert("pg.settings".into(), serde_json::json!(settings));
    }
    // `ALTER ROLE r IN DATABASE d SET ...`: belongs to this database (dropped with it), which
    // pg_dump without `--create` leaves out. The roles themselves are cluster-level.
    let roles = c
        .query(
            "SELECT r.rolname::text, s.setconfig FROM pg_db_role_setting s \
             JOIN pg_roles r ON r.oid = s.setrole \
             WHERE s.setdatabase = (SELECT oid FROM pg_database WHERE datname = current_database()) \
             ORDER BY 1",
            &[],
        )
        .await
        .map_err(pg_err("read per-role settings of the database"))?;
    if !roles.is_empty() {
        let map: serde_json::Map<String, serde_json::Value> = roles
            .iter()
            .map(|r| (r.get::<_, String>(0), serde_json::json!(r.get::<_, Vec<String>>(1))))
            .collect();
        p.insert(PROP_ROLE_SETTINGS.into(), serde_json::Value::Object(map));
    }
    // The database's own privileges (`GRANT/REVOKE ... ON DATABASE`) and connection limit, which
    // pg_dump writes only with `--create`. The owner's own entry is left out: the restoring role
    // owns the restored database. NULL (never changed) is recorded as null.
    let row = c
        .query_one(
            "SELECT d.datconnlimit, d.datacl IS NULL, \
             coalesce((SELECT json_agg(json_build_object('role', r.rolname, 'privilege', x.privilege_type, \
                 'grantable', x.is_grantable) ORDER BY r.rolname NULLS FIRST, x.privilege_type)::text \
               FROM aclexplode(d.datacl) x LEFT JOIN pg_roles r ON r.oid = x.grantee \
               WHERE x.grantee <> d.datdba), '[]') \
             FROM pg_database d WHERE d.datname = current_database()",
            &[],
        )
        .await
        .map_err(pg_err("read the database's privileges"))?;
    p.insert(PROP_CONNECTION_LIMIT.into(), serde_json::json!(row.get::<_, i32>(0)));
    let acl = if row.get::<_, bool>(1) {
        serde_json::Value::Null
    } else {
        serde_json::from_str(row.get::<_, &str>(2))
            .map_err(|e| Error::source("read the database's privileges", e.to_string()))?
    };
    p.insert(PROP_ACL.into(), acl);
    Ok(p)
}

/// Statements restoring the database's own properties (comment, `ALTER DATABASE ... SET`,
/// `ALTER ROLE ... IN DATABASE ... SET`).
pub(super) fn property_statements(db: &str, props: &BTreeMap<String, serde_json::Value>) -> Vec<String> {
    let q = quote_ident(db);
    let mut out = Vec::new();
    if let Some(c) = props.get("pg.comment").and_then(|v| v.as_str()) {
        out.push(format!("COMMENT ON DATABASE {q} IS {}", quote_literal(c)));
    }
    if let Some(list) = props.get("pg.settings").and_then(|v| v.as_array()) {
        for s in list.iter().filter_map(|v| v.as_str()) {
            if let Some(set) = setting_clause(s) {
                out.push(format!("ALTER DATABASE {q} {set}"));
            }
        }
    }
    for (role, list) in role_settings(props) {
        for s in list {
            if let Some(set) = setting_clause(&s) {
                out.push(format!("ALTER ROLE {} IN DATABASE {q} {set}", quote_ident(&role)));
            }
        }
    }
    if let Some(n) = props.get(PROP_CONNECTION_LIMIT).and_then(serde_json::Value::as_i64) {
        out.push(format!("ALTER DATABASE {q} CONNECTION LIMIT {n}"));
    }
    // Manifests from before `pg.acl` leave the privileges alone.
    if let Some(acl) = props.get(PROP_ACL) {
        out.push(format!("REVOKE ALL ON DATABASE {q} FROM PUBLIC"));
        match acl.as_array() {
            // Never changed: the server's default (PUBLIC may connect and create temp tables).
            None => out.push(format!("GRANT CONNECT, TEMPORARY ON DATABASE {q} TO PUBLIC")),
            Some(items) => {
                for i in items {
                    let Some(privilege) = i.get("privilege").and_then(|v| v.as_str()) else { continue };
                    if !privilege.chars().all(|c| c.is_ascii_uppercase()) {
                        continue;
                    }
                    let to = i.get("role").and_then(|v| v.as_str()).map_or("PUBLIC".to_string(), quote_ident);
                    let with = if i.get("grantable").and_then(serde_json::Value::as_bool) == Some(true) {
                        " WITH GRANT OPTION"
                    } else {
                        ""
                    };
                    out.push(format!("GRANT {privilege} ON DATABASE {q} TO {to}{with}"));
                }
            }
        }
    }
    out
}

/// Roles named by the database's recorded privileges.
fn acl_roles(props: &BTreeMap<String, serde_json::Value>) -> Vec<String> {
    let Some(items) = props.get(PROP_ACL).and_then(|v| v.as_array()) else { return Vec::new() };
    items.iter().filter_map(|i| i.get("role").and_then(|v| v.as_str()).map(String::from)).collect()
}

/// `SET name TO value` for one `name=value` of `setconfig`.
fn setting_clause(s: &str) -> Option<String> {
    let (name, value) = s.split_once('=')?;
    // List-valued settings are stored already quoted per element (`"$user", public`).
    let is_list = matches!(
        name,
        "search_path" | "temp_tablespaces" | "session_preload_libraries" | "local_preload_libraries"
    );
    // They reach SQL unquoted, so a manifest (input from a repository) must hold a plain list
    // there; anything else is passed as one quoted string, which cannot run SQL.
    let v = if is_list && is_plain_list(value) { value.to_string() } else { quote_literal(value) };
    Some(format!("SET {} TO {v}", quote_ident(name)))
}

/// The per-role settings recorded in a manifest's properties: role name, `name=value` list.
fn role_settings(props: &BTreeMap<String, serde_json::Value>) -> Vec<(String, Vec<String>)> {
    let Some(map) = props.get(PROP_ROLE_SETTINGS).and_then(|v| v.as_object()) else {
        return Vec::new();
    };
    map.iter()
        .map(|(role, list)| {
            let list =
                list.as_array().map(|a| a.iter().filter_map(|v| v.as_str().map(String::from)).collect());
            (role.clone(), list.unwrap_or_default())
        })
        .collect()
}

/// Refuses, before anything is touched, a restore whose per-role settings name roles the target
/// server does not have: roles are cluster-level (not in a database backup), and dropping their
/// settings silently would change how those roles' sessions behave.
pub(super) async fn check_roles_exist(c: &Client, props: &BTreeMap<String, serde_json::Value>) -> Result<()> {
    let mut wanted: Vec<String> = role_settings(props).into_iter().map(|(r, _)| r).collect();
    wanted.extend(acl_roles(props));
    wanted.sort();
    wanted.dedup();
    if wanted.is_empty() {
        return Ok(());
    }
    let rows = c
        .query(
            "SELECT w FROM unnest($1::text[]) w WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = w)",
            &[&wanted],
        )
        .await
        .map_err(pg_err("look up the roles of per-role database settings"))?;
    if rows.is_empty() {
        return Ok(());
    }
    let missing: Vec<String> = rows.iter().map(|r| r.get::<_, String>(0)).collect();
    Err(Error::NotFound {
        backup: false,
        what: format!(
            "role(s) {} on the target server (the backup holds their settings inside the database, \
             ALTER ROLE ... IN DATABASE ... SET, or their privileges on it; roles are cluster-level and not \
             part of a database backup: create them first)",
            missing.join(", ")
        ),
        available: Vec::new(),
    })
}

/// For an in-place restore of a backup: the live database's own settings and its per-role
/// settings are cleared (inside the restore's transaction) so that only the backup's remain;
/// with `acl` (the manifest records the privileges) so are its privileges other than the owner's.
pub(super) async fn reset_settings(c: &Client, db: &str, acl: bool) -> Result<()> {
    let q = quote_ident(db);
    if acl {
        let rows = c
            .query(
                "SELECT DISTINCT r.rolname::text FROM pg_database d, aclexplode(d.datacl) x \
                 JOIN pg_roles r ON r.oid = x.grantee WHERE d.datname = current_database() AND x.grantee <> d.datdba",
                &[],
            )
            .await
            .map_err(pg_err("list the privileges on the database"))?;
        for r in rows {
            exec(c, &format!("REVOKE ALL ON DATABASE {q} FROM {}", quote_ident(&r.get::<_, String>(0))))
                .await?;
        }
    }
    let rows = c
        .query(
            "SELECT r.rolname::text FROM pg_db_role_setting s JOIN pg_roles r ON r.oid = s.setrole \
             WHERE s.setdatabase = (SELECT oid FROM pg_database WHERE datname = current_database())",
            &[],
        )
        .await
        .map_err(pg_err("list per-role settings of the database"))?;
    exec(c, &format!("ALTER DATABASE {q} RESET ALL")).await?;
    for r in rows {
        exec(c, &format!("ALTER ROLE {} IN DATABASE {q} RESET ALL", quote_ident(&r.get::<_, String>(0))))
            .await?;
    }
    Ok(())
}

/// Whether `value` is a comma-separated list of plain names (letters, digits, `_`, `$`, `.`)
/// or double-quoted identifiers (`""` inside), as `pg_db_role_setting` stores list settings.
fn is_plain_list(value: &str) -> bool {
    let mut rest = value.trim();
    if rest.is_empty() {
        return false;
    }
    loop {
        if let Some(q) = rest.strip_prefix('"') {
            // A quoted identifier: runs to the first '"' not followed by another '"'.
            let b = q.as_bytes();
            let mut i = 0;
            loop {
                match b.get(i) {
                    None => return false,
                    Some(b'"') if b.get(i + 1) == Some(&b'"') => i += 2,
                    Some(b'"') => break,
                    Some(_) => i += 1,
                }
            }
            rest = q[i + 1..].trim_start();
        } else {
            let end = rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '$' || c == '.'))
                .unwrap_or(rest.len());
            if end == 0 {
                return false;
            }
            rest = rest[end..].trim_start();
        }
        match rest.strip_prefix(',') {
            None => return rest.is_empty(),
            Some(r) => rest = r.trim_start(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// List-valued settings from a manifest reach `ALTER DATABASE ... SET` unquoted only when
    /// they are a plain list; SQL hidden in one becomes a harmless quoted string.
    #[test]
    fn hostile_list_settings_are_quoted() {
        let mut props = BTreeMap::new();
        props.insert(
            "pg.settings".to_string(),
            serde_json::json!([
                "search_path=\"$user\", public, \"we\"\"ird\"",
                "search_path=public; DROP TABLE t; --",
                "temp_tablespaces=a, b",
                "search_path=\"x\"; DROP TABLE t",
            ]),
        );
        let s = property_statements("db", &props);
        assert_eq!(s[0], "ALTER DATABASE \"db\" SET \"search_path\" TO \"$user\", public, \"we\"\"ird\"");
        assert_eq!(s[1], "ALTER DATABASE \"db\" SET \"search_path\" TO 'public; DROP TABLE t; --'");
        assert_eq!(s[2], "ALTER DATABASE \"db\" SET \"temp_tablespaces\" TO a, b");
        assert_eq!(s[3], "ALTER DATABASE \"db\" SET \"search_path\" TO '\"x\"; DROP TABLE t'");
        for ok in ["a", "a,b", "\"a,b\"", "pg_catalog.x"] {
            assert!(is_plain_list(ok), "{ok}");
        }
        for bad in ["", "a;b", "a b", "\"a", "a,", "a -- x", "a/*"] {
            assert!(!is_plain_list(bad), "{bad}");
        }
    }
}
