//! The PostgreSQL swap: names derived from the target (`<db>_dbbackup_shadow_`, `_prev_`,
//! `_guard_` plus six random hex digits, cut to 63 bytes; built and recognised by
//! [`ShadowName`]), the cleanup of what killed runs left, and the one-transaction rename that
//! puts a restored database (or `guard`'s copy) under the target name. Used by the shadow restore and by the guard copy ([`clone`](super::clone)).

use tokio_postgres::Client;

use super::conn::{exec, pg_err, quote_ident};
use crate::error::Result;
use crate::source::shadow_name::{ShadowName, cut_bytes};

/// PostgreSQL's identifier length limit (bytes).
const NAMEDATALEN: usize = 63;
/// Random hex digits at the end of a derived name.
const TAIL: usize = 6;

/// The names `<base><suffix><6 hex digits>`, `base` cut (at a character boundary) so that they
/// fit PostgreSQL's 63-byte identifiers.
fn names(base: &str, suffix: &str) -> ShadowName {
    let keep = NAMEDATALEN.saturating_sub(suffix.len() + TAIL);
    ShadowName::new(format!("{}{suffix}", cut_bytes(base, keep)), TAIL)
}

/// A new `<base><suffix><6 random hex>`.
pub(super) fn derived_name(base: &str, suffix: &str) -> String {
    names(base, suffix).fresh()
}

/// Whether `name` is `derived_name(base, suffix)` for some random tail.
pub(super) fn is_derived(name: &str, base: &str, suffix: &str) -> bool {
    names(base, suffix).owns(name)
}

/// The names of every database on the server (where the leftovers of killed runs are looked for).
pub(super) async fn database_names(admin: &Client) -> Result<Vec<String>> {
    let rows = admin.query("SELECT datname FROM pg_database", &[]).await.map_err(pg_err("list databases"))?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// What killed restores into `target` left behind, found and cleaned with the target's restore
/// lock held (so none of it belongs to a running restore): shadows are dropped; a database renamed
/// aside is dropped when the target exists (the swap completed), and renamed back when the target
/// is missing (a swap of an older version killed between its two renames).
pub(super) async fn clean_leftovers(admin: &Client, target: &str) -> Result<Vec<String>> {
    let names = database_names(admin).await?;
    let mut notes = Vec::new();
    let mut target_exists = names.iter().any(|n| n == target);
    for name in names.iter().filter(|n| is_derived(n, target, "_dbbackup_prev_")) {
        let q = quote_ident(name);
        if target_exists {
            exec(admin, &format!("DROP DATABASE {q} WITH (FORCE)")).await?;
            notes.push(format!(
                "dropped {name}, the previous database of an interrupted restore's completed swap"
            ));
        } else {
            exec(admin, &format!("ALTER DATABASE {q} WITH ALLOW_CONNECTIONS true")).await?;
            exec(admin, &format!("ALTER DATABASE {q} RENAME TO {}", quote_ident(target))).await?;
            target_exists = true;
            notes.push(format!(
                "put {target} back from {name}: an interrupted swap had left no database under its name"
            ));
        }
    }
    for name in names.iter().filter(|n| is_derived(n, target, "_dbbackup_shadow_")) {
        exec(admin, &format!("DROP DATABASE {} WITH (FORCE)", quote_ident(name))).await?;
        notes.push(format!("dropped {name}, the shadow of an interrupted restore"));
    }
    for n in &notes {
        tracing::warn!("{n}");
    }
    Ok(notes)
}

/// Ends every other session on database `db` (best effort: a rename retried after it).
pub(super) async fn terminate(admin: &Client, db: &str) {
    let _ = admin
        .execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()",
            &[&db],
        )
        .await;
}

/// Renames `target` aside to `prev` and `incoming` to `target`, in **one transaction**
/// (PostgreSQL runs `ALTER DATABASE ... RENAME` in a transaction block): killed at any point, the
/// server rolls both back or keeps both, so a database always exists under the target name.
/// `prev` refuses connections afterwards. Sessions on either database make a rename
/// fail (55006): they are terminated and the whole block retried.
pub(super) async fn swap_atomically(admin: &Client, target: &str, incoming: &str, prev: &str) -> Result<()> {
    let (qt, qs, qp) = (quote_ident(target), quote_ident(incoming), quote_ident(prev));
    let mut last = None;
    for attempt in 0..10u64 {
        terminate(admin, target).await;
        terminate(admin, incoming).await;
        let block = async {
            admin.batch_execute(&format!("BEGIN; ALTER DATABASE {qt} RENAME TO {qp}")).await?;
            crate::failpoint::hit("pg-swap-renamed-aside");
            admin
                .batch_execute(&format!(
                    "ALTER DATABASE {qs} RENAME TO {qt}; ALTER DATABASE {qp} WITH ALLOW_CONNECTIONS false; COMMIT"
                ))
                .await
        };
        match block.await {
            Ok(()) => return Ok(()),
            Err(e) => {
                let _ = admin.batch_execute("ROLLBACK").await;
                if e.as_db_error().is_some_and(|d| d.code().code() == "55006") {
                    last = Some(e);
                    tokio::time::sleep(std::time::Duration::from_millis(50 * (attempt + 1))).await;
                } else {
                    return Err(pg_err("swap in the restored database (nothing changed)")(e));
                }
            }
        }
    }
    match last {
        Some(e) => {
            Err(pg_err("swap in the restored database (sessions kept coming back; nothing changed)")(e))
        }
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The names killed runs left are found by these exact bytes: they never change.
    #[test]
    fn derived_names_are_byte_for_byte_what_older_versions_made() {
        assert_eq!(names("app", "_dbbackup_shadow_"), ShadowName::new("app_dbbackup_shadow_".into(), 6));
        // Cut to 63 - 17 - 6 = 40 bytes at a character boundary.
        let long = format!("a{}", "é".repeat(40));
        let shadows = ShadowName::new(format!("a{}_dbbackup_shadow_", "é".repeat(19)), 6);
        assert_eq!(names(&long, "_dbbackup_shadow_"), shadows);
        let name = derived_name(&long, "_dbbackup_prev_");
        assert!(name.len() <= 63, "{name}");
        let tail = name.strip_prefix(&format!("a{}_dbbackup_prev_", "é".repeat(20))).unwrap();
        assert!(
            tail.len() == 6 && tail.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()),
            "{name}"
        );
        assert!(is_derived(&name, &long, "_dbbackup_prev_"));
        assert!(is_derived("app_dbbackup_guard_0A1b2c", "app", "_dbbackup_guard_"));
        assert!(!is_derived("app_dbbackup_guard_0a1b2", "app", "_dbbackup_guard_"));
        assert!(!is_derived("app_dbbackup_guard_0a1b2cd", "app", "_dbbackup_guard_"));
        assert!(!is_derived("app_dbbackup_shadow_0a1b2c", "app", "_dbbackup_guard_"));
        assert!(!is_derived("apps_dbbackup_guard_0a1b2c", "app", "_dbbackup_guard_"));
    }
}
