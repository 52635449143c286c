//! Streaming splitter for SQLite SQL scripts (the sqlite3 shell's `.dump` output, optionally
//! compressed), cutting exactly where SQLite's own `sqlite3_complete()` says a statement ends.
//!
//! It runs the same token state machine as `sqlite3_complete()` (SQLite's `complete.c`): `;`
//! ends a statement except inside the `BEGIN ... END` body of `CREATE [TEMP] TRIGGER`, whose
//! body statements each end with `;` and whose end is an `END` right after one. Tokens:
//! `'...'` strings, `"..."`, `` `...` `` and `[...]` identifiers, `--` and `/* */` comments
//! (whitespace), words (keywords `CREATE`, `TEMP`, `TEMPORARY`, `TRIGGER`, `END`, `EXPLAIN`
//! matter), anything else.
//!
//! Memory: one statement at most (bounded by `max_statement`). Time: linear; each byte is scanned
//! once except a word cut by a chunk boundary, which is scanned again from its start.
//!
//! Public so the fuzz target can reach it; not part of the stable API.

use std::fmt;
use std::path::PathBuf;

use async_trait::async_trait;
use rusqlite::Connection;

use super::conn::{blocking, list_tables, quote_ident, sql_err};
use crate::codec::ByteStream;
use crate::error::{Error, Result};
use crate::progress::Context;
use crate::source::ScriptReport;
use crate::source::script::{self as runner, Hook};

/// Why a script could not be split.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScriptError {
    /// One statement is longer than the configured maximum.
    StatementTooLong(usize),
    /// The script ended in the middle of a statement (`what` says where: a string, a trigger
    /// body, ...). The statement's first words are in `head`.
    Incomplete {
        /// Where the script stopped.
        what: &'static str,
        /// The first words of the cut statement.
        head: String,
    },
}

impl fmt::Display for ScriptError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ScriptError::StatementTooLong(n) => write!(f, "statement longer than {n} bytes"),
            ScriptError::Incomplete { what, head } => {
                write!(f, "the script ends inside {what} (statement {head:?} has no end)")
            }
        }
    }
}

impl std::error::Error for ScriptError {}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lex {
    Normal,
    /// Inside a quoted token closed by this byte (`'`, `"`, `` ` ``, `]`).
    Quoted(u8),
    LineComment,
    BlockComment,
}

/// Tokens of `sqlite3_complete()`, in the column order of [`TRANS`].
#[derive(Debug, Clone, Copy)]
enum Tok {
    Semi = 0,
    Ws = 1,
    Other = 2,
    Explain = 3,
    Create = 4,
    Temp = 5,
    Trigger = 6,
    End = 7,
}

/// `complete.c`'s transition table: rows are the states INVALID, START, NORMAL, EXPLAIN,
/// CREATE, TRIGGER, SEMI, END; a statement is complete when a `;` leads to START (1).
const TRANS: [[u8; 8]; 8] = [
    [1, 0, 2, 3, 4, 2, 2, 2],
    [1, 1, 2, 3, 4, 2, 2, 2],
    [1, 2, 2, 2, 2, 2, 2, 2],
    [1, 3, 3, 2, 4, 2, 2, 2],
    [1, 4, 2, 2, 2, 4, 5, 2],
    [6, 5, 5, 5, 5, 5, 5, 5],
    [6, 6, 5, 5, 5, 5, 5, 7],
    [1, 7, 5, 5, 5, 5, 5, 5],
];

fn id_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_' || c == b'$' || c >= 0x80
}

/// Cuts a byte stream into statements. Feed with [`ScriptSplitter::push`], end with
/// [`ScriptSplitter::finish`].
#[derive(Debug)]
pub struct ScriptSplitter {
    buf: Vec<u8>,
    /// Where the pending statement's first token begins (bytes before are consumed).
    start: usize,
    pos: usize,
    lex: Lex,
    state: u8,
    /// No token but whitespace and comments in the pending statement yet.
    blank: bool,
    max_statement: usize,
}

impl Default for ScriptSplitter {
    fn default() -> Self {
        Self::new(1 << 30)
    }
}

impl ScriptSplitter {
    /// A splitter refusing statements longer than `max_statement` bytes.
    pub fn new(max_statement: usize) -> Self {
        ScriptSplitter {
            buf: Vec::new(),
            start: 0,
            pos: 0,
            lex: Lex::Normal,
            state: 0,
            blank: true,
            max_statement,
        }
    }

    /// Adds bytes; returns the statements they completed (each with its `;`).
    pub fn push(&mut self, data: &[u8]) -> Result<Vec<Vec<u8>>, ScriptError> {
        self.buf.extend_from_slice(data);
        let mut out = Vec::new();
        self.scan(false, &mut out);
        // Drop the consumed bytes once per push, not once per statement.
        let consumed = if self.blank { self.pos } else { self.start };
        self.buf.drain(..consumed);
        self.pos -= consumed;
        self.start = self.start.saturating_sub(consumed);
        if self.buf.len() > self.max_statement {
            return Err(ScriptError::StatementTooLong(self.max_statement));
        }
        Ok(out)
    }

    /// Ends the script. Whitespace and comments may follow the last statement; anything else is
    /// a statement without its end, and an error (a script cut short).
    pub fn finish(mut self) -> Result<Vec<Vec<u8>>, ScriptError> {
        let mut out = Vec::new();
        self.scan(true, &mut out);
        let what = match self.lex {
            Lex::Quoted(b'\'') => "a string",
            Lex::Quoted(_) => "a quoted identifier",
            Lex::BlockComment => "a comment",
            Lex::Normal | Lex::LineComment if self.blank => return Ok(out),
            _ if matches!(self.state, 5..=7) => "a trigger body",
            _ => "a statement",
        };
        Err(ScriptError::Incomplete { what, head: first_words(&self.buf[self.start..], 6) })
    }

    fn token(&mut self, t: Tok, at: usize, len: usize, out: &mut Vec<Vec<u8>>) {
        if self.blank && !matches!(t, Tok::Ws) {
            self.blank = false;
            self.start = at;
        }
        let before = self.state;
        self.state = TRANS[usize::from(before)][t as usize];
        self.pos = at + len;
        if matches!(t, Tok::Semi) && self.state == 1 {
            if !self.blank && before > 1 {
                out.push(self.buf[self.start..self.pos].to_vec());
            }
            self.blank = true;
            self.start = self.pos;
            self.state = 1;
        }
    }

    /// Lexes the buffer from `pos`; stops early where a token may go on in the next chunk
    /// (unless `last`).
    fn scan(&mut self, last: bool, out: &mut Vec<Vec<u8>>) {
        while self.pos < self.buf.len() {
            let i = self.pos;
            let c = self.buf[i];
            let go_on = match self.lex {
                Lex::Quoted(q) => {
                    // A doubled quote closes and reopens: the same state afterwards.
                    if c == q {
                        self.lex = Lex::Normal;
                    }
                    self.pos += 1;
                    true
                }
                Lex::LineComment => {
                    if c == b'\n' {
                        self.lex = Lex::Normal;
                    }
                    self.pos += 1;
                    true
                }
                Lex::BlockComment => {
                    if c == b'*' {
                        match self.buf.get(i + 1) {
                            Some(b'/') => {
                                self.lex = Lex::Normal;
                                self.pos += 2;
                            }
                            Some(_) => self.pos += 1,
                            None if last => self.pos += 1,
                            None => return,
                        }
                    } else {
                        self.pos += 1;
                    }
                    true
                }
                Lex::Normal => self.normal(i, c, last, out),
            };
            if !go_on {
                return;
            }
        }
    }

    /// One token outside quotes and comments, at `i`; `false` when it may go on in the next
    /// chunk (scanned again then).
    fn normal(&mut self, i: usize, c: u8, last: bool, out: &mut Vec<Vec<u8>>) -> bool {
        match c {
            b';' => self.token(Tok::Semi, i, 1, out),
            b'\'' | b'"' | b'`' | b'[' => {
                self.token(Tok::Other, i, 1, out);
                self.lex = Lex::Quoted(if c == b'[' { b']' } else { c });
            }
            b'-' | b'/' => {
                let Some(&next) = self.buf.get(i + 1) else {
                    if last {
                        self.token(Tok::Other, i, 1, out);
                        return true;
                    }
                    return false;
                };
                if c == b'-' && next == b'-' {
                    self.lex = Lex::LineComment;
                    self.token(Tok::Ws, i, 2, out);
                } else if c == b'/' && next == b'*' {
                    self.lex = Lex::BlockComment;
                    self.token(Tok::Ws, i, 2, out);
                } else {
                    self.token(Tok::Other, i, 1, out);
                }
            }
            c if c.is_ascii_whitespace() => self.token(Tok::Ws, i, 1, out),
            c if id_char(c) => {
                let len = match self.buf[i..].iter().position(|&b| !id_char(b)) {
                    Some(n) => n,
                    // The word may go on in the next chunk: scan it again then.
                    None if !last => return false,
                    None => self.buf.len() - i,
                };
                let t = keyword(&self.buf[i..i + len]);
                self.token(t, i, len, out);
            }
            _ => self.token(Tok::Other, i, 1, out),
        }
        true
    }
}

/// The token of a word: one of `complete.c`'s keywords, or [`Tok::Other`].
fn keyword(w: &[u8]) -> Tok {
    let is = |k: &str| w.eq_ignore_ascii_case(k.as_bytes());
    if is("create") {
        Tok::Create
    } else if is("temp") || is("temporary") {
        Tok::Temp
    } else if is("trigger") {
        Tok::Trigger
    } else if is("end") {
        Tok::End
    } else if is("explain") {
        Tok::Explain
    } else {
        Tok::Other
    }
}

/// Splits a whole script held in memory (tests).
pub fn split_all(script: &[u8]) -> Result<Vec<Vec<u8>>, ScriptError> {
    let mut s = ScriptSplitter::default();
    let mut out = s.push(script)?;
    out.extend(s.finish()?);
    Ok(out)
}

/// The first `n` words of a statement (upper-cased, whitespace collapsed), for messages and for
/// deciding what a statement is. Statements from the splitter start with their first token.
pub fn first_words(stmt: &[u8], n: usize) -> String {
    let head = &stmt[..stmt.len().min(512)];
    String::from_utf8_lossy(head)
        .split(|c: char| c.is_whitespace() || c == '(' || c == ';')
        .filter(|w| !w.is_empty())
        .take(n)
        .collect::<Vec<_>>()
        .join(" ")
        .to_ascii_uppercase()
}

/// Largest single statement of a SQL script (a row of a huge blob is one INSERT).
const SCRIPT_MAX_STATEMENT: usize = 1 << 30;

/// Runs a SQL script (sqlite3's `.dump` output) into the empty restore temp file at `path`
/// through the shared runner ([`crate::source::script`]), statement by statement, cancellable
/// between chunks; a script that ends inside its own transaction is refused (cut short), and so
/// are statements that reach other files (`ATTACH`, `VACUUM`). Returns what the file then holds.
pub(crate) async fn run_script(path: PathBuf, sql: ByteStream, ctx: &Context) -> Result<ScriptReport> {
    let conn = blocking(move || {
        let c = Connection::open(&path).map_err(sql_err("open the restore temp file"))?;
        // The temp file is not live: it is synced once, before the swap.
        c.execute_batch("pragma synchronous = off").map_err(sql_err("pragma synchronous"))?;
        Ok(c)
    })
    .await?;
    let running = Running { conn: Some(conn), done: 0, ctx };
    runner::run(sql, ScriptSplitter::new(SCRIPT_MAX_STATEMENT), running).await
}

/// SQLite's hook of the shared runner: one run of [`run_script`].
struct Running<'a> {
    /// On a blocking thread while statements run there; `None` only after a failed batch.
    conn: Option<Connection>,
    /// Statements run so far.
    done: u64,
    ctx: &'a Context,
}

impl Running<'_> {
    fn conn(&mut self) -> Result<Connection> {
        self.conn.take().ok_or_else(|| Error::Cancelled("restore: the SQL script failed before".into()))
    }
}

#[async_trait]
impl Hook<ScriptSplitter> for Running<'_> {
    type Output = ScriptReport;

    fn chunk(&mut self, _: &[u8]) -> Result<()> {
        self.ctx.check("restore")
    }

    async fn run(&mut self, stmts: Vec<Vec<u8>>, _last: bool) -> Result<()> {
        if stmts.is_empty() {
            return Ok(());
        }
        let (conn, done) = run_statements(self.conn()?, stmts, self.done).await?;
        (self.conn, self.done) = (Some(conn), done);
        Ok(())
    }

    async fn end(mut self, _: ScriptSplitter) -> Result<ScriptReport> {
        let (conn, done) = (self.conn()?, self.done);
        blocking(move || {
            if !conn.is_autocommit() {
                return Err(Error::integrity(
                    "SQL script",
                    "a complete script",
                    "it ends inside a transaction (BEGIN without COMMIT)",
                ));
            }
            let tables = list_tables(&conn)?;
            let mut rows = 0u64;
            for t in &tables {
                let n: i64 = conn
                    .query_row(&format!("select count(*) from {}", quote_ident(t)), [], |r| r.get(0))
                    .map_err(sql_err(format!("count rows of {t}")))?;
                rows += u64::try_from(n).unwrap_or(0);
            }
            conn.close().map_err(|(_, e)| Error::source("close the restore temp file", e))?;
            Ok(ScriptReport { statements: done, tables: tables.len(), rows, notes: Vec::new() })
        })
        .await
    }
}

/// Executes script statements on a blocking thread; returns the connection and the running count.
async fn run_statements(conn: Connection, stmts: Vec<Vec<u8>>, done: u64) -> Result<(Connection, u64)> {
    blocking(move || {
        let mut done = done;
        for s in stmts {
            done += 1;
            let head = first_words(&s, 4);
            if ["ATTACH", "DETACH", "VACUUM"].contains(&head.split(' ').next().unwrap_or("")) {
                return Err(Error::Unsupported(format!(
                    "statement {done} of the SQL script ({head}): a restore does not reach other files"
                )));
            }
            let text = std::str::from_utf8(&s).map_err(|e| {
                Error::integrity(format!("statement {done} of the SQL script"), "UTF-8 text", e.to_string())
            })?;
            conn.execute_batch(text)
                .map_err(sql_err(format!("statement {done} of the SQL script ({head} ...)")))?;
        }
        Ok((conn, done))
    })
    .await
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn texts(v: Vec<Vec<u8>>) -> Vec<String> {
        v.into_iter().map(|s| String::from_utf8(s).unwrap()).collect()
    }

    const SCRIPT: &str = "PRAGMA foreign_keys=OFF;\nBEGIN TRANSACTION;\n\
        CREATE TABLE t(a, \"b;c\" text default 'x;y', [d;] int);\n\
        INSERT INTO t VALUES(1,'it''s; fine',X'00');\n\
        -- a comment; with a semicolon\n/* block; */\
        CREATE TRIGGER tr AFTER INSERT ON t BEGIN INSERT INTO t VALUES(new.a + 1, 'end;', 2); \
        UPDATE t SET a = CASE WHEN a > 1 THEN 0 END; END;\n\
        CREATE TEMP TRIGGER tr2 BEFORE DELETE ON t BEGIN SELECT 1; END;\n\
        CREATE TABLE `end`(x);\nCOMMIT;\n";

    #[test]
    fn splits_like_sqlite3_complete() {
        let got = texts(split_all(SCRIPT.as_bytes()).unwrap());
        assert_eq!(got.len(), 8, "{got:#?}");
        assert!(got[4].starts_with("CREATE TRIGGER tr ") && got[4].ends_with("END; END;"), "{}", got[4]);
        assert!(got[5].starts_with("CREATE TEMP TRIGGER") && got[5].ends_with("END;"), "{}", got[5]);
        assert_eq!(got[7], "COMMIT;");
        // Every statement is complete by rusqlite's own parser too.
        let c = rusqlite::Connection::open_in_memory().unwrap();
        for s in &got {
            c.execute_batch(s).unwrap();
        }
    }

    #[test]
    fn any_chunking_gives_the_same_statements() {
        let want = split_all(SCRIPT.as_bytes()).unwrap();
        for size in [1, 2, 3, 7, 64] {
            let mut s = ScriptSplitter::default();
            let mut got = Vec::new();
            for chunk in SCRIPT.as_bytes().chunks(size) {
                got.extend(s.push(chunk).unwrap());
            }
            got.extend(s.finish().unwrap());
            assert_eq!(got, want, "chunks of {size}");
        }
    }

    #[test]
    fn a_script_cut_anywhere_inside_a_statement_is_incomplete() {
        let bytes = SCRIPT.as_bytes();
        let ends: Vec<usize> = {
            let mut acc = Vec::new();
            let mut s = ScriptSplitter::default();
            let mut n = 0;
            for (i, b) in bytes.iter().enumerate() {
                n += s.push(&[*b]).unwrap().len();
                if acc.len() < n {
                    acc.push(i + 1);
                }
            }
            acc
        };
        for cut in 0..bytes.len() {
            let r = split_all(&bytes[..cut]);
            let at_boundary = cut == 0
                || ends.iter().any(|&e| e <= cut && bytes[e..cut].iter().all(u8::is_ascii_whitespace));
            if at_boundary {
                assert!(r.is_ok(), "cut at {cut}: {r:?}");
            } else if r.is_ok() {
                // Only a cut inside the line comment or right after the block comment may pass.
                let c0 = SCRIPT.find("-- a comment").unwrap();
                let c1 = SCRIPT.find("/* block").unwrap();
                assert!((c0..=c1).contains(&cut) || cut == c1 + "/* block; */".len(), "cut at {cut}");
            }
        }
        let e = split_all(b"BEGIN;\nINSERT INTO t VALUES(1,'abc").unwrap_err();
        assert!(e.to_string().contains("a string") && e.to_string().contains("INSERT INTO T"), "{e}");
        let e = split_all(b"CREATE TRIGGER x AFTER INSERT ON t BEGIN SELECT 1;").unwrap_err();
        assert!(e.to_string().contains("trigger body"), "{e}");
        assert!(split_all(b"INSERT INTO t VALUES(1)").is_err());
    }

    #[test]
    fn long_statements_are_refused() {
        let mut s = ScriptSplitter::new(10);
        assert_eq!(s.push(b"INSERT INTO t VALUES ('0123456789"), Err(ScriptError::StatementTooLong(10)));
    }
}
