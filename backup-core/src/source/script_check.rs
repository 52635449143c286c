//! Checks that a foreign plain dump script is whole before a restore touches anything: the
//! stream (already decompressed, so the codec's own integrity check runs to the end) is read to
//! its last byte by the engine's script reader, which must end between statements; the last
//! statement must carry its terminator; a dump tool's header promises its footer (pg_dump's
//! "dump complete", mysqldump's "Dump completed"); a SQLite script's `BEGIN` needs its `COMMIT`.
//! Nothing is executed.

use futures::StreamExt;

use super::sqlite::script as sqlite_script;
use super::{mysql_script, pg_script};
use crate::codec::ByteStream;
use crate::error::{Error, Result};
use crate::model::Engine;

/// What a script check read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScriptCheck {
    /// Statements read (COPY blocks count as their statement).
    pub statements: u64,
    /// Uncompressed bytes read.
    pub bytes: u64,
}

/// The engine's reader, fed chunk by chunk.
enum Reader {
    Pg(pg_script::ScriptReader),
    Mysql(mysql_script::ScriptSplitter),
    Sqlite(sqlite_script::ScriptSplitter),
}

/// Bytes kept from the start and the end of the script for the header/footer check.
const EDGE: usize = 4096;

/// Reads `sql` to the end with `engine`'s script reader (see the module docs). `what` names the
/// file in errors, which are [`Error::Integrity`] ("a complete dump script").
pub async fn check_script(engine: Engine, mut sql: ByteStream, what: &str) -> Result<ScriptCheck> {
    let incomplete = |why: String| Error::integrity(what, "a complete dump script", why);
    let mut reader = match engine {
        Engine::Postgres => Reader::Pg(pg_script::ScriptReader::new()),
        Engine::Mysql => Reader::Mysql(mysql_script::ScriptSplitter::default()),
        Engine::Sqlite => Reader::Sqlite(sqlite_script::ScriptSplitter::default()),
    };
    let mut report = ScriptCheck::default();
    let mut head: Vec<u8> = Vec::new();
    let mut tail: Vec<u8> = Vec::new();
    // SQLite: whether the script opened a transaction it has not closed yet.
    let mut open_txn = false;
    let mut pg_last_unterminated = false;
    let mut sqlite_stmts = |stmts: Vec<Vec<u8>>, report: &mut ScriptCheck| {
        for s in stmts {
            report.statements += 1;
            let w = sqlite_script::first_words(&s, 2);
            let first = w.split(' ').next().unwrap_or("");
            match first {
                "BEGIN" => open_txn = true,
                "COMMIT" | "END" => open_txn = false,
                "ROLLBACK" if !w.contains(" TO") => open_txn = false,
                _ => {}
            }
        }
    };
    while let Some(chunk) = sql.next().await {
        let chunk = chunk.map_err(|e| e.context(format!("read {what}")))?;
        report.bytes += chunk.len() as u64;
        if head.len() < EDGE {
            head.extend_from_slice(&chunk[..chunk.len().min(EDGE - head.len())]);
        }
        tail.extend_from_slice(&chunk[chunk.len().saturating_sub(EDGE)..]);
        tail.drain(..tail.len().saturating_sub(EDGE));
        match &mut reader {
            Reader::Pg(r) => {
                r.push(&chunk);
                pg_last_unterminated = drain_pg(r, &mut report).map_err(|e| incomplete(e.to_string()))?;
            }
            Reader::Mysql(s) => {
                report.statements += s.push(&chunk).map_err(|e| incomplete(e.to_string()))?.len() as u64;
            }
            Reader::Sqlite(s) => {
                sqlite_stmts(s.push(&chunk).map_err(|e| incomplete(e.to_string()))?, &mut report)
            }
        }
    }
    match reader {
        Reader::Pg(mut r) => {
            r.finish();
            pg_last_unterminated =
                drain_pg(&mut r, &mut report).map_err(|e| incomplete(e.to_string()))? || pg_last_unterminated;
            if !r.is_clean() {
                return Err(incomplete("the script ends inside a statement or a COPY block".into()));
            }
            if pg_last_unterminated {
                return Err(incomplete("the last statement has no terminating ';'".into()));
            }
        }
        Reader::Mysql(s) => {
            let rest = s.finish().map_err(|e| incomplete(e.to_string()))?;
            if let Some(last) = rest.last() {
                return Err(incomplete(format!(
                    "the last statement ({:?}) has no terminating delimiter",
                    mysql_script::head(last, 4)
                )));
            }
        }
        Reader::Sqlite(s) => {
            sqlite_stmts(s.finish().map_err(|e| incomplete(e.to_string()))?, &mut report);
            if open_txn {
                return Err(incomplete("the script ends inside a transaction (BEGIN without COMMIT)".into()));
            }
        }
    }
    let has = |buf: &[u8], needle: &str| buf.windows(needle.len()).any(|w| w == needle.as_bytes());
    for (header, footer) in [
        ("-- PostgreSQL database dump", "-- PostgreSQL database dump complete"),
        ("-- MySQL dump", "-- Dump completed"),
        ("-- MariaDB dump", "-- Dump completed"),
    ] {
        if has(&head, header) && !has(&tail, footer) {
            return Err(incomplete(format!(
                "the script starts with {header:?} but does not end with {footer:?}"
            )));
        }
    }
    Ok(report)
}

/// Drains the pieces the PostgreSQL reader has; returns whether the last statement lacked `;`.
fn drain_pg(
    r: &mut pg_script::ScriptReader,
    report: &mut ScriptCheck,
) -> std::result::Result<bool, pg_script::ScriptError> {
    let mut unterminated = false;
    while let Some(p) = r.next_piece()? {
        match p {
            pg_script::Piece::Statement(s) => {
                report.statements += 1;
                unterminated = !s.trim_end().ends_with(';');
            }
            pg_script::Piece::CopyStart(_) | pg_script::Piece::Meta(_) => {
                report.statements += 1;
                unterminated = false;
            }
            pg_script::Piece::CopyData(_) | pg_script::Piece::CopyEnd => unterminated = false,
        }
    }
    Ok(unterminated)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    async fn check(engine: Engine, text: &str) -> Result<ScriptCheck> {
        let chunks: Vec<Result<bytes::Bytes>> =
            text.as_bytes().chunks(5).map(|c| Ok(bytes::Bytes::copy_from_slice(c))).collect();
        check_script(engine, futures::stream::iter(chunks).boxed(), "dump.sql").await
    }

    #[tokio::test]
    async fn whole_scripts_pass_and_cut_ones_fail() {
        let pg = "--\n-- PostgreSQL database dump\n--\nCREATE TABLE t (a int);\nCOPY t (a) FROM stdin;\n1\n2\n\\.\n\n--\n-- PostgreSQL database dump complete\n--\n";
        assert_eq!(check(Engine::Postgres, pg).await.unwrap().statements, 2);
        for cut in
            [pg.find("CREATE").unwrap() + 10, pg.find("2\n").unwrap(), pg.find("\n\n--\n-- Postgre").unwrap()]
        {
            let e = check(Engine::Postgres, &pg[..cut]).await.unwrap_err();
            assert!(matches!(e, Error::Integrity { .. }), "cut at {cut}: {e}");
        }
        let my = "-- MariaDB dump 10.19\nCREATE TABLE t (a int);\nINSERT INTO t VALUES (1),(2);\n-- Dump completed on 2026-12-01\n";
        assert_eq!(check(Engine::Mysql, my).await.unwrap().statements, 2);
        for cut in [my.find("(2)").unwrap(), my.find("-- Dump").unwrap()] {
            assert!(check(Engine::Mysql, &my[..cut]).await.is_err(), "cut at {cut}");
        }
        let lite = "PRAGMA foreign_keys=OFF;\nBEGIN TRANSACTION;\nCREATE TABLE t(a);\nINSERT INTO t VALUES(1);\nCOMMIT;\n";
        assert_eq!(check(Engine::Sqlite, lite).await.unwrap().statements, 5);
        for cut in [lite.find("(1)").unwrap(), lite.find("COMMIT").unwrap()] {
            let e = check(Engine::Sqlite, &lite[..cut]).await.unwrap_err();
            assert!(e.to_string().contains("complete dump script"), "{e}");
        }
    }
}
