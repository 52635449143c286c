//! Checks that a foreign plain dump script is whole before a restore touches anything: the
//! stream (already decompressed, so the codec's own integrity check runs to the end) is read to
//! its last byte by the engine's script reader, which must end between statements; the last
//! statement must carry its terminator; a dump tool's header promises its footer (pg_dump's
//! "dump complete", mysqldump's "Dump completed"); a SQLite script's `BEGIN` needs its `COMMIT`.
//! Nothing is executed.

use async_trait::async_trait;

use super::{Dialect, Hook, run};
use crate::codec::ByteStream;
use crate::error::{Error, Result};
use crate::model::Engine;
use crate::source::sqlite::script as sqlite_script;
use crate::source::{mysql_script, pg_script};

/// What a script check read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScriptCheck {
    /// Statements read (COPY blocks count as their statement).
    pub statements: u64,
    /// Uncompressed bytes read.
    pub bytes: u64,
}

/// Bytes kept from the start and the end of the script for the header/footer check.
const EDGE: usize = 4096;

/// Reads `sql` to the end with `engine`'s script reader (see the module docs). `what` names the
/// file in errors, which are [`Error::Integrity`] ("a complete dump script").
pub async fn check_script(engine: Engine, sql: ByteStream, what: &str) -> Result<ScriptCheck> {
    match engine {
        Engine::Postgres => run(sql, pg_script::ScriptReader::new(), Check::<PgTally>::new(what)).await,
        Engine::Mysql => {
            run(sql, mysql_script::ScriptSplitter::default(), Check::<MysqlTally>::new(what)).await
        }
        Engine::Sqlite => {
            run(sql, sqlite_script::ScriptSplitter::default(), Check::<SqliteTally>::new(what)).await
        }
    }
}

/// The engine's part of a check: what it looks at in the pieces.
trait Tally<D: Dialect>: Default + Send {
    /// Counts the statements among the pieces of one chunk (`last`: those pending at the end).
    fn count(&mut self, pieces: Vec<D::Piece>, last: bool) -> u64;
    /// Why the script is not whole, once it is read (`dialect`: where its reader stopped).
    fn verdict(&self, dialect: &D) -> Option<String>;
}

/// The [`Hook`] of a check: executes nothing, counts, keeps the script's first and last bytes.
struct Check<'a, T> {
    what: &'a str,
    tally: T,
    report: ScriptCheck,
    head: Vec<u8>,
    tail: Vec<u8>,
}

impl<'a, T: Default> Check<'a, T> {
    fn new(what: &'a str) -> Self {
        Check {
            what,
            tally: T::default(),
            report: ScriptCheck::default(),
            head: Vec::new(),
            tail: Vec::new(),
        }
    }

    fn incomplete(&self, why: String) -> Error {
        Error::integrity(self.what, "a complete dump script", why)
    }

    /// A dump tool's header promises its footer.
    fn footer_missing(&self) -> Option<String> {
        let has = |buf: &[u8], needle: &str| buf.windows(needle.len()).any(|w| w == needle.as_bytes());
        [
            ("-- PostgreSQL database dump", "-- PostgreSQL database dump complete"),
            ("-- MySQL dump", "-- Dump completed"),
            ("-- MariaDB dump", "-- Dump completed"),
        ]
        .into_iter()
        .find(|(header, footer)| has(&self.head, header) && !has(&self.tail, footer))
        .map(|(header, footer)| format!("the script starts with {header:?} but does not end with {footer:?}"))
    }
}

#[async_trait]
impl<D: Dialect + 'static, T: Tally<D>> Hook<D> for Check<'_, T> {
    type Output = ScriptCheck;

    fn read_error(&self, e: Error) -> Error {
        e.context(format!("read {}", self.what))
    }

    fn parse_error(&self, why: String) -> Error {
        self.incomplete(why)
    }

    fn chunk(&mut self, chunk: &[u8]) -> Result<()> {
        self.report.bytes += chunk.len() as u64;
        if self.head.len() < EDGE {
            self.head.extend_from_slice(&chunk[..chunk.len().min(EDGE - self.head.len())]);
        }
        self.tail.extend_from_slice(&chunk[chunk.len().saturating_sub(EDGE)..]);
        self.tail.drain(..self.tail.len().saturating_sub(EDGE));
        Ok(())
    }

    async fn run(&mut self, pieces: Vec<D::Piece>, last: bool) -> Result<()> {
        self.report.statements += self.tally.count(pieces, last);
        Ok(())
    }

    async fn end(self, dialect: D) -> Result<ScriptCheck> {
        if let Some(why) = self.tally.verdict(&dialect).or_else(|| self.footer_missing()) {
            return Err(self.incomplete(why));
        }
        Ok(self.report)
    }
}

/// PostgreSQL: the reader must stop between pieces, the last statement must end with `;`.
#[derive(Default)]
struct PgTally {
    /// Whether the last statement read lacked its `;`.
    unterminated: bool,
}

impl Tally<pg_script::ScriptReader> for PgTally {
    fn count(&mut self, pieces: Vec<pg_script::Piece>, last: bool) -> u64 {
        let mut statements = 0;
        let mut unterminated = false;
        for p in pieces {
            match p {
                pg_script::Piece::Statement(s) => {
                    statements += 1;
                    unterminated = !s.trim_end().ends_with(';');
                }
                pg_script::Piece::CopyStart(_) | pg_script::Piece::Meta(_) => {
                    statements += 1;
                    unterminated = false;
                }
                pg_script::Piece::CopyData(_) | pg_script::Piece::CopyEnd => unterminated = false,
            }
        }
        self.unterminated = unterminated || (last && self.unterminated);
        statements
    }

    fn verdict(&self, reader: &pg_script::ScriptReader) -> Option<String> {
        if !reader.is_clean() {
            return Some("the script ends inside a statement or a COPY block".into());
        }
        self.unterminated.then(|| "the last statement has no terminating ';'".into())
    }
}

/// MySQL: a statement still pending at the end lacks its delimiter (not counted).
#[derive(Default)]
struct MysqlTally {
    /// The head of that statement.
    unterminated: Option<String>,
}

impl Tally<mysql_script::ScriptSplitter> for MysqlTally {
    fn count(&mut self, pieces: Vec<Vec<u8>>, last: bool) -> u64 {
        if last {
            self.unterminated = pieces.last().map(|s| mysql_script::head(s, 4));
            return 0;
        }
        pieces.len() as u64
    }

    fn verdict(&self, _: &mysql_script::ScriptSplitter) -> Option<String> {
        let head = self.unterminated.as_ref()?;
        Some(format!("the last statement ({head:?}) has no terminating delimiter"))
    }
}

/// SQLite: a `BEGIN` needs its `COMMIT`.
#[derive(Default)]
struct SqliteTally {
    /// Whether the script opened a transaction it has not closed yet.
    open_txn: bool,
}

impl Tally<sqlite_script::ScriptSplitter> for SqliteTally {
    fn count(&mut self, pieces: Vec<Vec<u8>>, _last: bool) -> u64 {
        for s in &pieces {
            let w = sqlite_script::first_words(s, 2);
            match w.split(' ').next().unwrap_or("") {
                "BEGIN" => self.open_txn = true,
                "COMMIT" | "END" => self.open_txn = false,
                "ROLLBACK" if !w.contains(" TO") => self.open_txn = false,
                _ => {}
            }
        }
        pieces.len() as u64
    }

    fn verdict(&self, _: &sqlite_script::ScriptSplitter) -> Option<String> {
        self.open_txn.then(|| "the script ends inside a transaction (BEGIN without COMMIT)".into())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use futures::StreamExt;

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
