//! A streaming reader for plain PostgreSQL scripts (pg_dump's plain format and the schema
//! scripts of PostgreSQL backups): splits bytes into statements, psql meta-commands and
//! `COPY ... FROM stdin` data blocks without ever holding more than one statement (or one data
//! line) in memory.
//!
//! It understands `'...'` strings (with `''`), `E'...'` strings (backslash escapes),
//! `"..."` identifiers, `--` and nested `/* */` comments, dollar-quoted bodies (`$$`, `$tag$`),
//! psql backslash commands at statement starts (`\connect`, `\restrict`), and `COPY ... FROM
//! stdin;` followed by data lines ending with a `\.` line. Feeding the same bytes in any chunking
//! yields the same pieces (concatenating consecutive [`Piece::CopyData`]).
//!
//! Public so the fuzz target can reach it; not part of the stable API.

use bytes::{Bytes, BytesMut};

/// Largest single statement or meta-command accepted (bytes).
pub const MAX_STATEMENT: usize = 512 << 20;

/// One thing read from a script.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece {
    /// A complete SQL statement including its terminating `;` (leading whitespace and comments
    /// trimmed away).
    Statement(String),
    /// A `COPY ... FROM stdin` statement; [`Piece::CopyData`] follows until [`Piece::CopyEnd`].
    CopyStart(String),
    /// Bytes of COPY text data (whole or partial lines).
    CopyData(Bytes),
    /// The `\.` line ending a COPY block.
    CopyEnd,
    /// A psql backslash command line (without its newline), e.g. `\connect db`.
    Meta(String),
}

/// Why a script cannot be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScriptError(pub String);

impl std::fmt::Display for ScriptError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ScriptError {}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Lex {
    Normal,
    Single { escapes: bool },
    Double,
    Line,
    Block(u32),
    Dollar(Vec<u8>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Sql,
    /// The rest of a `COPY ... FROM stdin;` line, before its data.
    CopyTail,
    /// Inside COPY data; `line_start` says whether the next byte starts a line.
    Copy {
        line_start: bool,
    },
}

/// The incremental splitter: [`ScriptReader::push`] bytes, then call
/// [`ScriptReader::next_piece`] until it returns `Ok(None)` (needs more input); at end of input
/// call [`ScriptReader::finish`] and drain again.
#[derive(Debug)]
pub struct ScriptReader {
    buf: BytesMut,
    /// Scan position within `buf` (statement mode): bytes before it are lexed.
    pos: usize,
    lex: Lex,
    mode: Mode,
    /// Whether anything but whitespace/comments has been seen in the current statement.
    started: bool,
    /// Offset in `buf` where the current statement's significant text starts.
    start: usize,
    eof: bool,
    /// psql's heuristic for SQL-standard bodies (`BEGIN ATOMIC ... END`): see [`Nesting`].
    nest: Nesting,
}

/// What psql's lexer (`psqlscan.l`) tracks so that a `;` inside parentheses or inside the
/// `BEGIN ... END` body of `CREATE [OR REPLACE] {FUNCTION|PROCEDURE}` does not end the
/// statement. The same heuristic as psql, so a script splits where psql splits it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Nesting {
    /// First letters of the statement's first four words when they are one of `create`, `or`,
    /// `replace`, `function`, `procedure` (0 otherwise).
    words: [u8; 4],
    /// Words seen in the statement.
    count: usize,
    parens: u32,
    begins: u32,
}

impl Nesting {
    fn word(&mut self, w: &[u8]) {
        let is = |k: &str| w.eq_ignore_ascii_case(k.as_bytes());
        if self.count < self.words.len()
            && (is("create") || is("function") || is("procedure") || is("or") || is("replace"))
        {
            self.words[self.count] = w[0].to_ascii_lowercase();
        }
        self.count += 1;
        let routine = self.words[0] == b'c'
            && (matches!(self.words[1], b'f' | b'p')
                || (self.words[1] == b'o' && self.words[2] == b'r' && matches!(self.words[3], b'f' | b'p')));
        if !routine || self.parens > 0 {
            return;
        }
        if is("begin") {
            self.begins += 1;
        } else if is("case") {
            // CASE also ends with END; only counted inside a BEGIN, as psql does.
            if self.begins > 0 {
                self.begins += 1;
            }
        } else if is("end") {
            self.begins = self.begins.saturating_sub(1);
        }
    }

    /// Whether a `;` here ends the statement.
    fn at_top(&self) -> bool {
        self.parens == 0 && self.begins == 0
    }
}

impl Default for ScriptReader {
    fn default() -> Self {
        Self::new()
    }
}

fn ident_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_' || c == b'$' || c >= 0x80
}

/// Is this statement a `COPY ... FROM stdin` whose data follows inline?
pub fn is_copy_from_stdin(stmt: &str) -> bool {
    let lower = stmt.to_ascii_lowercase();
    let t = lower.trim_start();
    if !t.starts_with("copy") || !t[4..].starts_with(|c: char| c.is_whitespace()) {
        return false;
    }
    // Tokenize loosely outside quotes to find `from stdin`.
    let words: Vec<&str> = t.split(|c: char| c.is_whitespace() || c == ';' || c == '(' || c == ')').collect();
    words.windows(2).any(|w| w[0] == "from" && w[1] == "stdin")
}

impl ScriptReader {
    /// A reader at the start of a script.
    pub fn new() -> Self {
        ScriptReader {
            buf: BytesMut::new(),
            pos: 0,
            lex: Lex::Normal,
            mode: Mode::Sql,
            started: false,
            start: 0,
            eof: false,
            nest: Nesting::default(),
        }
    }

    /// Appends input bytes.
    pub fn push(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// Marks the end of input; pieces still buffered can then be drained.
    pub fn finish(&mut self) {
        self.eof = true;
    }

    /// Whether everything pushed has been returned (call after [`ScriptReader::finish`] and a
    /// drain to detect a truncated script: unterminated string, COPY without `\.`).
    pub fn is_clean(&self) -> bool {
        matches!(self.mode, Mode::Sql) && !self.started && self.buf.iter().all(u8::is_ascii_whitespace)
    }

    /// The next complete piece, `Ok(None)` when more input is needed (or, after `finish`, when
    /// the input is exhausted).
    pub fn next_piece(&mut self) -> Result<Option<Piece>, ScriptError> {
        if self.mode == Mode::CopyTail {
            match memchr_nl(&self.buf) {
                Some(p) => {
                    let _ = self.buf.split_to(p + 1);
                    self.mode = Mode::Copy { line_start: true };
                }
                None => {
                    self.buf.clear();
                    if !self.eof {
                        return Ok(None);
                    }
                    self.mode = Mode::Copy { line_start: true };
                }
            }
        }
        match self.mode {
            Mode::Copy { line_start } => Ok(self.next_copy(line_start)),
            _ => self.next_sql(),
        }
    }

    fn next_copy(&mut self, mut line_start: bool) -> Option<Piece> {
        let mut i = 0;
        let n = self.buf.len();
        while i < n {
            if line_start {
                // Decide whether this line is the `\.` terminator; may need 2-3 bytes.
                let rest = &self.buf[i..];
                if rest[0] == b'\\' {
                    if rest.len() < 2 {
                        if !self.eof {
                            break;
                        }
                    } else if rest[1] == b'.' {
                        let after = &rest[2..];
                        let end_len = match after.first() {
                            Some(b'\n') => Some(3),
                            Some(b'\r') if after.get(1) == Some(&b'\n') => Some(4),
                            Some(b'\r') if after.len() < 2 && !self.eof => None,
                            None if !self.eof => None,
                            None => Some(2),
                            // `\.` followed by anything else is not the end marker: it stays
                            // data, and the server rejects it ("end-of-copy marker corrupt").
                            _ => Some(0),
                        };
                        let Some(end_len) = end_len else { break };
                        if end_len == 0 {
                            line_start = false;
                            continue;
                        }
                        if i > 0 {
                            let data = self.buf.split_to(i).freeze();
                            self.mode = Mode::Copy { line_start: true };
                            return Some(Piece::CopyData(data));
                        }
                        let _ = self.buf.split_to(end_len.min(self.buf.len()));
                        self.mode = Mode::Sql;
                        self.pos = 0;
                        self.start = 0;
                        return Some(Piece::CopyEnd);
                    }
                }
                line_start = false;
            }
            match memchr_nl(&self.buf[i..]) {
                Some(p) => {
                    i += p + 1;
                    line_start = true;
                }
                None => {
                    i = n;
                }
            }
        }
        self.mode = Mode::Copy { line_start };
        if i == 0 {
            return None;
        }
        let data = self.buf.split_to(i).freeze();
        Some(Piece::CopyData(data))
    }

    fn next_sql(&mut self) -> Result<Option<Piece>, ScriptError> {
        loop {
            let n = self.buf.len();
            if self.pos >= n {
                if self.eof && self.started {
                    if self.lex != Lex::Normal && self.lex != Lex::Line {
                        return Ok(None);
                    }
                    // A last statement without `;`.
                    let text = self.take_statement(n);
                    return Ok(Some(Piece::Statement(text)));
                }
                if !self.started {
                    // Only whitespace/comments so far: drop them.
                    if self.lex == Lex::Normal || self.lex == Lex::Line {
                        let _ = self.buf.split_to(self.pos);
                        self.pos = 0;
                        self.start = 0;
                    }
                }
                if self.buf.len() > MAX_STATEMENT {
                    return Err(ScriptError(format!("a statement is longer than {MAX_STATEMENT} bytes")));
                }
                return Ok(None);
            }
            let i = self.pos;
            let c = self.buf[i];
            let next = self.buf.get(i + 1).copied();
            let need_more = next.is_none() && !self.eof;
            match self.lex.clone() {
                Lex::Line => {
                    if c == b'\n' {
                        self.lex = Lex::Normal;
                    }
                    self.pos += 1;
                }
                Lex::Block(depth) => {
                    if c == b'*' && next == Some(b'/') {
                        self.lex = if depth <= 1 { Lex::Normal } else { Lex::Block(depth - 1) };
                        self.pos += 2;
                    } else if c == b'/' && next == Some(b'*') {
                        self.lex = Lex::Block(depth + 1);
                        self.pos += 2;
                    } else if (c == b'*' || c == b'/') && need_more {
                        return Ok(None);
                    } else {
                        self.pos += 1;
                    }
                }
                Lex::Double => {
                    if c == b'"' {
                        self.lex = Lex::Normal;
                    }
                    self.pos += 1;
                }
                Lex::Single { escapes } => {
                    if escapes && c == b'\\' {
                        if need_more {
                            return Ok(None);
                        }
                        self.pos += 2;
                    } else if c == b'\'' {
                        if next == Some(b'\'') {
                            self.pos += 2;
                        } else if need_more {
                            return Ok(None);
                        } else {
                            self.lex = Lex::Normal;
                            self.pos += 1;
                        }
                    } else {
                        self.pos += 1;
                    }
                }
                Lex::Dollar(tag) => {
                    if c == b'$' {
                        let end = i + tag.len();
                        if end > n {
                            if !self.eof {
                                return Ok(None);
                            }
                            self.pos += 1;
                        } else if self.buf[i..end] == tag[..] {
                            self.lex = Lex::Normal;
                            self.pos = end;
                        } else {
                            self.pos += 1;
                        }
                    } else {
                        match memchr_byte(b'$', &self.buf[i..]) {
                            Some(p) => self.pos += p,
                            None => self.pos = n,
                        }
                    }
                }
                Lex::Normal => {
                    if !self.started {
                        if c.is_ascii_whitespace() {
                            self.pos += 1;
                            continue;
                        }
                        if c == b'\\' {
                            // psql meta-command: the rest of the line.
                            match memchr_nl(&self.buf[i..]) {
                                Some(p) => {
                                    let line = self.buf.split_to(i + p + 1);
                                    self.pos = 0;
                                    self.start = 0;
                                    let text = String::from_utf8_lossy(&line[i..i + p]);
                                    return Ok(Some(Piece::Meta(text.trim_end_matches('\r').to_string())));
                                }
                                None if self.eof => {
                                    let line = self.buf.split_to(n);
                                    self.pos = 0;
                                    self.start = 0;
                                    let text = String::from_utf8_lossy(&line[i..]);
                                    return Ok(Some(Piece::Meta(text.trim_end_matches('\r').to_string())));
                                }
                                None => {
                                    if n - i > MAX_STATEMENT {
                                        return Err(ScriptError("a meta-command line is too long".into()));
                                    }
                                    return Ok(None);
                                }
                            }
                        }
                    }
                    let prev = if i > 0 { Some(self.buf[i - 1]) } else { None };
                    match c {
                        b'-' if next == Some(b'-') => {
                            self.lex = Lex::Line;
                            self.pos += 2;
                        }
                        b'/' if next == Some(b'*') => {
                            self.lex = Lex::Block(1);
                            self.pos += 2;
                        }
                        b'-' | b'/' if need_more => return Ok(None),
                        b'\'' => {
                            self.mark_started(i);
                            let escapes = matches!(prev, Some(b'e' | b'E'))
                                && (i < 2 || !ident_char(self.buf[i - 2]))
                                && i > self.start;
                            self.lex = Lex::Single { escapes };
                            self.pos += 1;
                        }
                        b'"' => {
                            self.mark_started(i);
                            self.lex = Lex::Double;
                            self.pos += 1;
                        }
                        b'$' if !prev.is_some_and(ident_char) || i == self.start => {
                            self.mark_started(i);
                            // A dollar-quote tag: $ [A-Za-z_\x80-][A-Za-z0-9_\x80-]* $ or $$.
                            let mut j = i + 1;
                            let mut ok = None;
                            while j < n {
                                let d = self.buf[j];
                                if d == b'$' {
                                    ok = Some(true);
                                    break;
                                }
                                let valid = if j == i + 1 {
                                    d.is_ascii_alphabetic() || d == b'_' || d >= 0x80
                                } else {
                                    d.is_ascii_alphanumeric() || d == b'_' || d >= 0x80
                                };
                                if !valid {
                                    ok = Some(false);
                                    break;
                                }
                                j += 1;
                            }
                            match ok {
                                Some(true) => {
                                    self.lex = Lex::Dollar(self.buf[i..=j].to_vec());
                                    self.pos = j + 1;
                                }
                                Some(false) => self.pos += 1,
                                None if self.eof => self.pos += 1,
                                None => {
                                    if n - i > MAX_STATEMENT {
                                        return Err(ScriptError("a dollar-quote tag is too long".into()));
                                    }
                                    return Ok(None);
                                }
                            }
                        }
                        b'(' => {
                            self.mark_started(i);
                            self.nest.parens += 1;
                            self.pos += 1;
                        }
                        b')' => {
                            self.mark_started(i);
                            self.nest.parens = self.nest.parens.saturating_sub(1);
                            self.pos += 1;
                        }
                        c if (c.is_ascii_alphabetic() || c == b'_' || c >= 0x80)
                            && !prev.is_some_and(|p| ident_char(p) && i > 0) =>
                        {
                            // A whole word (identifier or keyword): psql's `{identifier}`.
                            self.mark_started(i);
                            let mut j = i + 1;
                            while j < n && ident_char(self.buf[j]) {
                                j += 1;
                            }
                            if j == n && !self.eof {
                                if n - i > MAX_STATEMENT {
                                    return Err(ScriptError("a word is too long".into()));
                                }
                                return Ok(None);
                            }
                            let word = self.buf[i..j].to_vec();
                            self.nest.word(&word);
                            self.pos = j;
                        }
                        b';' if !self.nest.at_top() => {
                            self.mark_started(i);
                            self.pos += 1;
                        }
                        b';' => {
                            self.mark_started(i);
                            let text = self.take_statement(i + 1);
                            if is_copy_from_stdin(&text) {
                                // psql reads the data from the line after the COPY.
                                self.mode = Mode::CopyTail;
                                return Ok(Some(Piece::CopyStart(text)));
                            }
                            return Ok(Some(Piece::Statement(text)));
                        }
                        _ => {
                            self.mark_started(i);
                            self.pos += 1;
                        }
                    }
                }
            }
        }
    }

    fn mark_started(&mut self, i: usize) {
        if !self.started {
            self.started = true;
            self.start = i;
        }
    }

    /// Removes the statement ending at `end` (exclusive) from the buffer and returns its text.
    fn take_statement(&mut self, end: usize) -> String {
        let chunk = self.buf.split_to(end);
        let text = String::from_utf8_lossy(&chunk[self.start.min(end)..]).into_owned();
        self.pos = 0;
        self.start = 0;
        self.started = false;
        self.lex = Lex::Normal;
        self.nest = Nesting::default();
        text
    }
}

fn memchr_nl(s: &[u8]) -> Option<usize> {
    memchr_byte(b'\n', s)
}

fn memchr_byte(b: u8, s: &[u8]) -> Option<usize> {
    s.iter().position(|&c| c == b)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reads a script fed in pieces of `step` bytes; consecutive COPY data is merged.
    fn read(script: &[u8], step: usize) -> Vec<Piece> {
        let mut r = ScriptReader::new();
        let mut out: Vec<Piece> = Vec::new();
        let drain = |r: &mut ScriptReader, out: &mut Vec<Piece>| {
            while let Some(p) = r.next_piece().unwrap() {
                match (out.last_mut(), p) {
                    (Some(Piece::CopyData(a)), Piece::CopyData(b)) => {
                        let mut v = a.to_vec();
                        v.extend_from_slice(&b);
                        *a = Bytes::from(v);
                    }
                    (_, p) => out.push(p),
                }
            }
        };
        for c in script.chunks(step.max(1)) {
            r.push(c);
            drain(&mut r, &mut out);
        }
        r.finish();
        drain(&mut r, &mut out);
        assert!(r.is_clean(), "not clean at end");
        out
    }

    const SCRIPT: &str = "--\n-- PostgreSQL database dump\n--\n\\restrict abc\nSET statement_timeout = 0;\n\
        SELECT pg_catalog.set_config('search_path', '', false);\n\
        CREATE FUNCTION f() RETURNS text LANGUAGE plpgsql AS $_$ BEGIN RETURN 'a;b' || $x$;$x$; END $_$;\n\
        /* block /* nested ; */ still */ CREATE TABLE \"we;ird\"\"\" (a text DEFAULT E'it\\'s;', b text DEFAULT 'x'';y');\n\
        COPY public.t (a, b) FROM stdin;\n1\t\\\\.\n\\N\tx;y\n2\t$$\n\\.\n\
        INSERT INTO a$b VALUES ($1);\n-- trailing comment ; here\nSELECT 1\n";

    #[test]
    fn splits_a_pg_dump_script_identically_in_any_chunking() {
        let whole = read(SCRIPT.as_bytes(), usize::MAX);
        assert_eq!(
            whole,
            vec![
                Piece::Meta("\\restrict abc".into()),
                Piece::Statement("SET statement_timeout = 0;".into()),
                Piece::Statement("SELECT pg_catalog.set_config('search_path', '', false);".into()),
                Piece::Statement(
                    "CREATE FUNCTION f() RETURNS text LANGUAGE plpgsql AS $_$ BEGIN RETURN 'a;b' || $x$;$x$; END $_$;"
                        .into()
                ),
                Piece::Statement(
                    "CREATE TABLE \"we;ird\"\"\" (a text DEFAULT E'it\\'s;', b text DEFAULT 'x'';y');".into()
                ),
                Piece::CopyStart("COPY public.t (a, b) FROM stdin;".into()),
                Piece::CopyData(Bytes::from_static(b"1\t\\\\.\n\\N\tx;y\n2\t$$\n")),
                Piece::CopyEnd,
                Piece::Statement("INSERT INTO a$b VALUES ($1);".into()),
                Piece::Statement("SELECT 1\n".into()),
            ]
        );
        for step in 1..40 {
            assert_eq!(read(SCRIPT.as_bytes(), step), whole, "step {step}");
        }
    }

    /// Found by the `pg_script` fuzz target: `\.` followed by other bytes used to end the COPY
    /// at a point that depended on the chunking.
    #[test]
    fn end_marker_with_trailing_bytes_stays_data_in_any_chunking() {
        let script = b"SET a = 1;\nCOPY t (a) FROM stdin;\n2\n\\.\x01\x00\x00fEAT FUNCTI;\n2\n\\.\n";
        let whole = read(script, usize::MAX);
        assert_eq!(
            whole,
            vec![
                Piece::Statement("SET a = 1;".into()),
                Piece::CopyStart("COPY t (a) FROM stdin;".into()),
                Piece::CopyData(Bytes::from_static(b"2\n\\.\x01\x00\x00fEAT FUNCTI;\n2\n")),
                Piece::CopyEnd,
            ]
        );
        for step in 1..20 {
            assert_eq!(read(script, step), whole, "step {step}");
        }
    }

    /// SQL-standard bodies (PostgreSQL 14+) as pg_dump writes them: the `;` inside `BEGIN
    /// ATOMIC ... END` (and inside a CASE there) does not end the statement, as in psql.
    #[test]
    fn begin_atomic_bodies_are_one_statement_in_any_chunking() {
        let f = "CREATE FUNCTION public.add1(a integer) RETURNS integer\n    LANGUAGE sql IMMUTABLE\n    BEGIN ATOMIC\n                  SELECT CASE WHEN (a > 0) THEN (a + 1) ELSE 0 END AS \"case\";\n END;";
        let p = "CREATE OR REPLACE PROCEDURE public.ins(IN x integer)\n    LANGUAGE sql\n    BEGIN ATOMIC\n                  INSERT INTO public.t (a) VALUES (ins.x);\n INSERT INTO public.t (a) VALUES ((ins.x + 1));\nEND;";
        let script = format!(
            "{f}\nBEGIN;\n{p}\nCREATE TABLE begin_end (\"end\" int, b text DEFAULT 'begin');\nCOMMIT;\n\
             CREATE FUNCTION g() RETURNS int LANGUAGE sql RETURN 1;\nSELECT (1; 2);\nEND;\n"
        );
        let whole = read(script.as_bytes(), usize::MAX);
        assert_eq!(
            whole,
            vec![
                Piece::Statement(f.into()),
                Piece::Statement("BEGIN;".into()),
                Piece::Statement(p.into()),
                Piece::Statement("CREATE TABLE begin_end (\"end\" int, b text DEFAULT 'begin');".into()),
                Piece::Statement("COMMIT;".into()),
                Piece::Statement("CREATE FUNCTION g() RETURNS int LANGUAGE sql RETURN 1;".into()),
                Piece::Statement("SELECT (1; 2);".into()),
                Piece::Statement("END;".into()),
            ]
        );
        for step in 1..60 {
            assert_eq!(read(script.as_bytes(), step), whole, "step {step}");
        }
    }

    #[test]
    fn truncated_scripts_are_not_clean() {
        for cut in ["COPY t FROM stdin;\n1\n", "SELECT 'abc", "SELECT $$ body", "/* open"] {
            let mut r = ScriptReader::new();
            r.push(cut.as_bytes());
            r.finish();
            while r.next_piece().unwrap().is_some() {}
            assert!(!r.is_clean(), "{cut:?} should be unclean");
        }
    }
}
