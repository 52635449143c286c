//! Running pg_dump's schema scripts into a restore: split into statements, ownership changes
//! dropped unless owners are kept, executed in batches; index and key builds told apart so the
//! shadow restore runs them in parallel.

use tokio_postgres::Client;

use super::conn::{exec, pg_err, shorten};
use super::session_state::{Saved, ends_message, params_set_by};
use crate::codec::ByteStream;
use crate::error::{Error, Result};
use crate::source::pg_script::{Piece, ScriptReader};
use crate::source::read_text;

/// Largest schema script accepted.
const MAX_SCHEMA: usize = 512 << 20;

/// Whether a schema/script statement is an ownership change (skipped unless owners are kept).
pub(super) fn is_owner_change(stmt: &str) -> bool {
    let l = stmt.trim_start().to_ascii_lowercase();
    l.starts_with("alter ") && l.contains(" owner to ")
}

/// Index and key builds: independent of each other, so they run in parallel.
pub(super) fn is_parallel_build(stmt: &str) -> bool {
    let l = stmt.trim_start().to_ascii_lowercase();
    if l.starts_with("create index ") || l.starts_with("create unique index ") {
        return true;
    }
    l.starts_with("alter table only ")
        && l.contains(" add constraint ")
        && (l.contains(" primary key ") || l.contains(" unique "))
        && !l.contains(" foreign key ")
}

/// Session-level preamble statements pg_dump scripts begin with.
pub(super) fn is_preamble(stmt: &str) -> bool {
    let l = stmt.trim_start().to_ascii_lowercase();
    l.starts_with("set ") || l.starts_with("select pg_catalog.set_config(")
}

/// Splits a whole (bounded) schema script into statements, dropping psql meta-commands.
fn statements(text: &str) -> Result<Vec<String>> {
    let mut r = ScriptReader::new();
    r.push(text.as_bytes());
    r.finish();
    let mut out = Vec::new();
    while let Some(p) = r.next_piece().map_err(|e| Error::integrity("schema script", "valid SQL", e.0))? {
        match p {
            Piece::Statement(s) => out.push(s),
            Piece::Meta(_) => {}
            Piece::CopyStart(_) | Piece::CopyData(_) | Piece::CopyEnd => {
                return Err(Error::integrity("schema script", "no COPY data", "a COPY block"));
            }
        }
    }
    Ok(out)
}

/// Statements sent per round trip by [`exec_all`].
pub(super) const BATCH: usize = 64;

/// Executes statements in order, up to [`BATCH`] per round trip (one implicit transaction each);
/// when a batch fails, its statements are retried one by one (the failed batch rolled back as a
/// whole) so the error names the statement at fault.
/// Inside an explicit transaction (`in_txn`) a failed batch has already doomed it, so the
/// batch's own error is returned.
/// A batch ends after a statement that may change `client_encoding` ([`ends_message`]): the
/// server reads a whole message in the encoding in force when it arrives, so the statements
/// after pg_dump's `SET client_encoding = 'LATIN1'` must come in a later message to be read as
/// the LATIN1 text they are.
pub(super) async fn exec_all(c: &Client, stmts: &[String], in_txn: bool) -> Result<()> {
    for group in batches(stmts) {
        let joined: String = group.iter().map(|s| format!("{s}\n")).collect();
        match c.batch_execute(&joined).await {
            Ok(()) => continue,
            Err(e) if in_txn => {
                return Err(pg_err(format!(
                    "execute {} statement(s) from {}",
                    group.len(),
                    shorten(&group[0])
                ))(e));
            }
            Err(_) => {}
        }
        for s in group {
            exec(c, s).await?;
        }
    }
    Ok(())
}

/// [`exec_all`]'s batches: up to [`BATCH`] statements, ending after any that may change
/// `client_encoding`.
fn batches(stmts: &[String]) -> Vec<&[String]> {
    let mut groups: Vec<&[String]> = Vec::new();
    let mut start = 0;
    for (i, s) in stmts.iter().enumerate() {
        if i + 1 - start == BATCH || ends_message(s) {
            groups.push(&stmts[start..=i]);
            start = i + 1;
        }
    }
    if start < stmts.len() {
        groups.push(&stmts[start..]);
    }
    groups
}

/// Runs a schema script's statements in order on `c` ([`exec_all`]; each statement with the
/// script's settings as they come), then puts back the values `c` had for every parameter the
/// script set, so its settings (`client_encoding`, `search_path`, the time limits...) do not
/// reach what the session runs on `c` afterwards (COPY, the read-back).
pub(super) async fn exec_script(c: &Client, stmts: &[String], in_txn: bool) -> Result<()> {
    let saved = Saved::read(c, &params_set_by(stmts)).await?;
    exec_all(c, stmts, in_txn).await?;
    saved.put_back(c).await
}

pub(super) async fn run_schema(sql: ByteStream, what: &str, keep_owners: bool) -> Result<Vec<String>> {
    let text = read_text(sql, MAX_SCHEMA, what).await?;
    let stmts = statements(&text)?;
    let mut rest = Vec::new();
    for s in stmts {
        if !keep_owners && is_owner_change(&s) {
            continue;
        }
        rest.push(s);
    }
    Ok(rest)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A script in LATIN1 (backups before pg_dump ran with `--encoding=UTF8`): the statements
    /// after its `SET client_encoding` go in a later message than the `SET`.
    #[test]
    fn a_batch_ends_after_a_client_encoding_change() {
        let stmt = |s: &str| s.to_string();
        let mut script = vec![stmt("SET statement_timeout = 0;"), stmt("SET client_encoding = 'LATIN1';")];
        script.extend((0..70).map(|i| format!("CREATE TABLE t{i} (a text DEFAULT 'Ã©');")));
        let b = batches(&script);
        let lens: Vec<usize> = b.iter().map(|g| g.len()).collect();
        assert_eq!(lens, [2, BATCH, 70 - BATCH]);
        assert_eq!(b[0][1], script[1]);
        assert_eq!(batches(&[]).len(), 0);
    }
}
