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

use std::ops::ControlFlow::{self, Break, Continue};

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

/// What the statement lexer ([`ScriptReader::step`]) decided: go on, or return this.
type Flow = ControlFlow<Result<Option<Piece>, ScriptError>>;

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

    /// Lexes statement text until a piece is complete or more input is needed; one byte (or
    /// token) per [`ScriptReader::step`].
    fn next_sql(&mut self) -> Result<Option<Piece>, ScriptError> {
        loop {
            let flow = if self.pos >= self.buf.len() { Break(self.at_buffer_end()) } else { self.step() };
            if let Break(out) = flow {
                return out;
            }
        }
    }

    /// Everything buffered is lexed: the last statement at the end of input, or a wait for more.
    fn at_buffer_end(&mut self) -> Result<Option<Piece>, ScriptError> {
        let n = self.buf.len();
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
        Ok(None)
    }

    /// One step of the lexer at `pos` (< the buffer's length).
    fn step(&mut self) -> Flow {
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
                    return Break(Ok(None));
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
            Lex::Single { escapes } => return self.in_single(escapes, c, next, need_more),
            Lex::Dollar(tag) => return self.in_dollar(&tag, i, c),
            Lex::Normal => return self.in_normal(i, c, next, need_more),
        }
        Continue(())
    }

    /// Inside `'...'` (`escapes`: an `E'...'` string).
    fn in_single(&mut self, escapes: bool, c: u8, next: Option<u8>, need_more: bool) -> Flow {
        if escapes && c == b'\\' {
            if need_more {
                return Break(Ok(None));
            }
            self.pos += 2;
        } else if c == b'\'' {
            if next == Some(b'\'') {
                self.pos += 2;
            } else if need_more {
                return Break(Ok(None));
            } else {
                self.lex = Lex::Normal;
                self.pos += 1;
            }
        } else {
            self.pos += 1;
        }
        Continue(())
    }

    /// Inside a dollar-quoted body opened by `tag`.
    fn in_dollar(&mut self, tag: &[u8], i: usize, c: u8) -> Flow {
        let n = self.buf.len();
        if c == b'$' {
            let end = i + tag.len();
            if end > n {
                if !self.eof {
                    return Break(Ok(None));
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
        Continue(())
    }

    /// Outside quotes and comments.
    fn in_normal(&mut self, i: usize, c: u8, next: Option<u8>, need_more: bool) -> Flow {
        if !self.started {
            if c.is_ascii_whitespace() {
                self.pos += 1;
                return Continue(());
            }
            if c == b'\\' {
                return Break(self.meta_command(i));
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
            b'-' | b'/' if need_more => return Break(Ok(None)),
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
                return self.dollar_tag(i);
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
                self.mark_started(i);
                return self.word(i);
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
                    return Break(Ok(Some(Piece::CopyStart(text))));
                }
                return Break(Ok(Some(Piece::Statement(text))));
            }
            _ => {
                self.mark_started(i);
                self.pos += 1;
            }
        }
        Continue(())
    }

    /// A psql meta-command at a statement start: the rest of the line.
    fn meta_command(&mut self, i: usize) -> Result<Option<Piece>, ScriptError> {
        let n = self.buf.len();
        match memchr_nl(&self.buf[i..]) {
            Some(p) => {
                let line = self.buf.split_to(i + p + 1);
                self.pos = 0;
                self.start = 0;
                let text = String::from_utf8_lossy(&line[i..i + p]);
                Ok(Some(Piece::Meta(text.trim_end_matches('\r').to_string())))
            }
            None if self.eof => {
                let line = self.buf.split_to(n);
                self.pos = 0;
                self.start = 0;
                let text = String::from_utf8_lossy(&line[i..]);
                Ok(Some(Piece::Meta(text.trim_end_matches('\r').to_string())))
            }
            None => {
                if n - i > MAX_STATEMENT {
                    return Err(ScriptError("a meta-command line is too long".into()));
                }
                Ok(None)
            }
        }
    }

    /// A `$` that may open a dollar-quote tag: `$ [A-Za-z_\x80-][A-Za-z0-9_\x80-]* $` or `$$`.
    fn dollar_tag(&mut self, i: usize) -> Flow {
        let n = self.buf.len();
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
                    return Break(Err(ScriptError("a dollar-quote tag is too long".into())));
                }
                return Break(Ok(None));
            }
        }
        Continue(())
    }

    /// A whole word (identifier or keyword): psql's `{identifier}`, fed to [`Nesting`].
    fn word(&mut self, i: usize) -> Flow {
        let n = self.buf.len();
        let mut j = i + 1;
        while j < n && ident_char(self.buf[j]) {
            j += 1;
        }
        if j == n && !self.eof {
            if n - i > MAX_STATEMENT {
                return Break(Err(ScriptError("a word is too long".into())));
            }
            return Break(Ok(None));
        }
        let word = self.buf[i..j].to_vec();
        self.nest.word(&word);
        self.pos = j;
        Continue(())
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
mod tests;
