//! Streaming splitter for MySQL/MariaDB SQL scripts (mysqldump / mariadb-dump output and the
//! schema scripts dbbackup writes), plus statement classification for managed targets.
//!
//! It understands what the `mysql` client understands when it cuts a script into statements:
//! `DELIMITER` lines, `'...'`/`"..."` strings with backslash escapes and doubled quotes,
//! `` `identifiers` ``, `-- `, `#` and `/* */` comments, and `/*!NNNNN ... */` / `/*M!... */`
//! conditional comments (kept, and executed by the server). Statements are raw bytes: dumps made
//! without `--hex-blob` carry binary data inside string literals.
//!
//! Memory: the splitter holds one statement at most (bounded by `max_statement`, by default
//! 1 GiB, the server's own `max_allowed_packet` ceiling). Time: linear in the input; each byte is
//! scanned once and the consumed statements are dropped from the buffer once per `push`, not
//! once per statement (a one-INSERT-per-row dump would otherwise shift its buffer per row).

use std::fmt;

/// Why a script could not be split.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScriptError {
    /// One statement is longer than the configured maximum.
    StatementTooLong(usize),
    /// The script ended inside a string, identifier or comment.
    Unterminated(&'static str),
    /// A `DELIMITER` line without a delimiter.
    BadDelimiter,
}

impl fmt::Display for ScriptError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ScriptError::StatementTooLong(n) => write!(f, "statement longer than {n} bytes"),
            ScriptError::Unterminated(what) => write!(f, "script ends inside {what}"),
            ScriptError::BadDelimiter => f.write_str("DELIMITER without a delimiter"),
        }
    }
}

impl std::error::Error for ScriptError {}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Normal,
    Single,
    Double,
    Backtick,
    LineComment,
    BlockComment,
}

/// What the lexer does after one step: go on, or wait for the next chunk (a token may go on).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    Go,
    Wait,
}

/// Cuts a byte stream into statements. Feed with [`ScriptSplitter::push`], end with
/// [`ScriptSplitter::finish`].
#[derive(Debug)]
pub struct ScriptSplitter {
    buf: Vec<u8>,
    /// Where the pending statement begins in `buf` (everything before is consumed).
    start: usize,
    pos: usize,
    state: State,
    escaped: bool,
    in_conditional: bool,
    blank: bool,
    delimiter: Vec<u8>,
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
            state: State::Normal,
            escaped: false,
            in_conditional: false,
            blank: true,
            delimiter: b";".to_vec(),
            max_statement,
        }
    }

    /// Adds bytes; returns the statements they completed (without their delimiter).
    pub fn push(&mut self, data: &[u8]) -> Result<Vec<Vec<u8>>, ScriptError> {
        self.buf.extend_from_slice(data);
        let mut out = Vec::new();
        self.scan(false, &mut out)?;
        self.compact();
        if self.buf.len() > self.max_statement {
            return Err(ScriptError::StatementTooLong(self.max_statement));
        }
        Ok(out)
    }

    /// Ends the script; returns the statements still pending (a last one without delimiter).
    pub fn finish(mut self) -> Result<Vec<Vec<u8>>, ScriptError> {
        let mut out = Vec::new();
        self.scan(true, &mut out)?;
        match self.state {
            State::Single | State::Double => return Err(ScriptError::Unterminated("a string")),
            State::Backtick => return Err(ScriptError::Unterminated("an identifier")),
            State::BlockComment => return Err(ScriptError::Unterminated("a comment")),
            State::Normal | State::LineComment => {}
        }
        if !self.blank {
            out.push(trim_ascii(&self.buf[self.start..]).to_vec());
        }
        Ok(out)
    }

    /// Drops the consumed bytes before the pending statement (once per `push`).
    fn compact(&mut self) {
        self.buf.drain(..self.start);
        self.pos -= self.start;
        self.start = 0;
    }

    fn emit(&mut self, end: usize, skip: usize, out: &mut Vec<Vec<u8>>) {
        if !self.blank {
            out.push(trim_ascii(&self.buf[self.start..end]).to_vec());
        }
        self.start = end + skip;
        self.pos = self.start;
        self.blank = true;
        self.in_conditional = false;
    }

    /// Lexes the buffer from `pos`; stops early where a token may go on in the next chunk
    /// (unless `last`).
    fn scan(&mut self, last: bool, out: &mut Vec<Vec<u8>>) -> Result<(), ScriptError> {
        while self.pos < self.buf.len() {
            let i = self.pos;
            let c = self.buf[i];
            let step = match self.state {
                State::Single | State::Double | State::Backtick => self.quoted(c),
                State::LineComment => {
                    if c == b'\n' {
                        self.state = State::Normal;
                    }
                    self.pos += 1;
                    Step::Go
                }
                State::BlockComment => self.block_comment(i, c, last),
                State::Normal => self.normal(i, c, last, out)?,
            };
            if step == Step::Wait {
                return Ok(());
            }
        }
        Ok(())
    }

    /// One byte inside a string or a backquoted identifier.
    fn quoted(&mut self, c: u8) -> Step {
        let quote = match self.state {
            State::Single => b'\'',
            State::Double => b'"',
            _ => b'`',
        };
        if self.escaped {
            self.escaped = false;
        } else if c == b'\\' && quote != b'`' {
            self.escaped = true;
        } else if c == quote {
            // A doubled quote closes and reopens: the same state afterwards.
            self.state = State::Normal;
        }
        self.pos += 1;
        Step::Go
    }

    /// One byte inside a `/* */` comment.
    fn block_comment(&mut self, i: usize, c: u8, last: bool) -> Step {
        if c == b'*' {
            match self.buf.get(i + 1) {
                Some(b'/') => {
                    self.state = State::Normal;
                    self.pos += 2;
                }
                Some(_) => self.pos += 1,
                None if last => self.pos += 1,
                None => return Step::Wait,
            }
        } else {
            self.pos += 1;
        }
        Step::Go
    }

    /// Outside strings and comments: a `DELIMITER` line, the delimiter, or a token.
    fn normal(&mut self, i: usize, c: u8, last: bool, out: &mut Vec<Vec<u8>>) -> Result<Step, ScriptError> {
        // DELIMITER is a client command, recognised at the start of a statement.
        if self.blank
            && (c == b'd' || c == b'D')
            && self.at_line_start(i)
            && let Some(step) = self.delimiter_command(i, last)?
        {
            return Ok(step);
        }
        let d = self.delimiter.len();
        if !self.in_conditional && c == self.delimiter[0] {
            if self.buf.len() - i < d && !last {
                return Ok(Step::Wait);
            }
            if self.buf[i..].starts_with(&self.delimiter) {
                self.emit(i, d, out);
                return Ok(Step::Go);
            }
        }
        Ok(self.token(i, c, last))
    }

    /// A `DELIMITER x` line at `i`: sets the delimiter and consumes the line (`None`: not one).
    fn delimiter_command(&mut self, i: usize, last: bool) -> Result<Option<Step>, ScriptError> {
        let rest = &self.buf[i..];
        let kw = b"delimiter";
        if rest.len() < kw.len() + 1 && !last {
            return Ok(Some(Step::Wait));
        }
        if !(rest.len() > kw.len()
            && rest[..kw.len()].eq_ignore_ascii_case(kw)
            && (rest[kw.len()] == b' ' || rest[kw.len()] == b'\t'))
        {
            return Ok(None);
        }
        let line_end = match rest.iter().position(|&b| b == b'\n') {
            Some(n) => n,
            None if last => rest.len(),
            None => return Ok(Some(Step::Wait)),
        };
        let arg = trim_ascii(&rest[kw.len()..line_end]);
        let d: Vec<u8> = arg.iter().copied().take_while(|b| !b.is_ascii_whitespace()).collect();
        if d.is_empty() {
            return Err(ScriptError::BadDelimiter);
        }
        let skip = (line_end + 1).min(rest.len());
        self.delimiter = d;
        self.start = i + skip;
        self.pos = self.start;
        self.blank = true;
        Ok(Some(Step::Go))
    }

    /// One token outside strings and comments that is not the delimiter: opens a string, an
    /// identifier or a comment, enters or leaves a conditional comment, or marks the statement
    /// as not blank.
    fn token(&mut self, i: usize, c: u8, last: bool) -> Step {
        let avail = self.buf.len() - i;
        match c {
            b'\'' | b'"' | b'`' => {
                self.state = match c {
                    b'\'' => State::Single,
                    b'"' => State::Double,
                    _ => State::Backtick,
                };
                self.blank = false;
            }
            b'#' => self.state = State::LineComment,
            b'-' => {
                if avail < 3 && !last {
                    return Step::Wait;
                }
                let next = self.buf.get(i + 1).copied();
                let after = self.buf.get(i + 2).copied();
                if next == Some(b'-') && after.is_none_or(|a| a.is_ascii_whitespace()) {
                    self.state = State::LineComment;
                } else {
                    self.blank = false;
                }
            }
            b'/' => {
                // `/*M!` needs four bytes to tell from a plain `/*M` comment.
                if avail < 4 && !last {
                    return Step::Wait;
                }
                if self.buf.get(i + 1) == Some(&b'*') {
                    let third = self.buf.get(i + 2).copied();
                    let fourth = self.buf.get(i + 3).copied();
                    if third == Some(b'!') || (third == Some(b'M') && fourth == Some(b'!')) {
                        self.in_conditional = true;
                        self.blank = false;
                    } else {
                        self.state = State::BlockComment;
                    }
                    self.pos += 2;
                    return Step::Go;
                }
                self.blank = false;
            }
            b'*' if self.in_conditional => {
                if avail < 2 && !last {
                    return Step::Wait;
                }
                if self.buf.get(i + 1) == Some(&b'/') {
                    self.in_conditional = false;
                    self.pos += 2;
                    return Step::Go;
                }
            }
            c if c.is_ascii_whitespace() => {}
            _ => self.blank = false,
        }
        self.pos += 1;
        Step::Go
    }

    fn at_line_start(&self, i: usize) -> bool {
        self.buf[self.start..i].iter().rev().take_while(|&&b| b != b'\n').all(|b| b.is_ascii_whitespace())
    }
}

fn trim_ascii(b: &[u8]) -> &[u8] {
    let start = b.iter().position(|c| !c.is_ascii_whitespace()).unwrap_or(b.len());
    let end = b.iter().rposition(|c| !c.is_ascii_whitespace()).map_or(start, |e| e + 1);
    &b[start..end]
}

/// Splits a whole script held in memory (schema scripts, tests).
pub fn split_all(script: &[u8]) -> Result<Vec<Vec<u8>>, ScriptError> {
    let mut s = ScriptSplitter::default();
    let mut out = s.push(script)?;
    out.extend(s.finish()?);
    Ok(out)
}

/// The first words of a statement, upper-cased, with comments removed and conditional-comment
/// markers (`/*!50003`, `*/`) dropped, so `/*!50003 CREATE*/ /*!50017 DEFINER=...*/ /*!50003
/// TRIGGER` reads `CREATE DEFINER=... TRIGGER`. At most `max_words` words.
pub fn head(stmt: &[u8], max_words: usize) -> String {
    let mut out = String::new();
    let mut words = 0;
    let mut i = 0;
    let mut in_word = false;
    while i < stmt.len() && words < max_words {
        let c = stmt[i];
        if c == b'/' && stmt.get(i + 1) == Some(&b'*') {
            let third = stmt.get(i + 2).copied();
            if third == Some(b'!') || (third == Some(b'M') && stmt.get(i + 3) == Some(&b'!')) {
                i += if third == Some(b'!') { 3 } else { 4 };
                while i < stmt.len() && (stmt[i].is_ascii_digit() || stmt[i] == b'\\' || stmt[i] == b'-') {
                    i += 1;
                }
            } else {
                match stmt[i + 2..].windows(2).position(|w| w == b"*/") {
                    Some(p) => i += p + 4,
                    None => break,
                }
            }
            if in_word {
                words += 1;
                in_word = false;
                out.push(' ');
            }
            continue;
        }
        if c == b'*' && stmt.get(i + 1) == Some(&b'/') {
            i += 2;
            continue;
        }
        if (c == b'-' && stmt.get(i + 1) == Some(&b'-')) || c == b'#' {
            match stmt[i..].iter().position(|&b| b == b'\n') {
                Some(p) => i += p + 1,
                None => break,
            }
            continue;
        }
        if c.is_ascii_whitespace() || c == b'(' {
            if in_word {
                words += 1;
                in_word = false;
                out.push(' ');
            }
        } else {
            in_word = true;
            out.push((c as char).to_ascii_uppercase());
        }
        i += 1;
    }
    let mut s = out.split_whitespace().collect::<Vec<_>>().join(" ");
    // Bytes >= 0x80 became two-byte chars: cut on a char boundary.
    s.truncate(s.floor_char_boundary(4096));
    s
}

/// What a statement of a foreign dump is, for filtering.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatementKind {
    /// `USE db`: ignored, the restore decides the database.
    Use,
    /// `CREATE DATABASE` / `DROP DATABASE`: ignored for the same reason.
    Database,
    /// GTID, binlog and other SUPER-only settings (`SET @@GLOBAL.GTID_PURGED`, `SQL_LOG_BIN`,
    /// `CHANGE MASTER`, `SET GLOBAL`): stripped on request (`strip_super`).
    SuperOnly,
    /// `CREATE EVENT`: run only once the data is live, so the event cannot fire in the shadow.
    CreateEvent,
    /// Everything else.
    Other,
}

/// Classifies a statement (see [`StatementKind`]).
pub fn classify(stmt: &[u8]) -> StatementKind {
    let h = head(stmt, 8);
    let words: Vec<&str> = h.split(' ').collect();
    let first = words.first().copied().unwrap_or("");
    match first {
        "USE" => return StatementKind::Use,
        "CHANGE" | "RESET" | "START"
            if words.get(1).is_some_and(|w| *w == "MASTER" || *w == "SLAVE" || *w == "REPLICA") =>
        {
            return StatementKind::SuperOnly;
        }
        _ => {}
    }
    if (first == "CREATE" || first == "DROP")
        && words.get(1).is_some_and(|w| *w == "DATABASE" || *w == "SCHEMA")
    {
        return StatementKind::Database;
    }
    if first == "SET" {
        let rest = h.to_ascii_uppercase();
        if rest.contains("GTID_PURGED")
            || rest.contains("SQL_LOG_BIN")
            || rest.starts_with("SET GLOBAL")
            || rest.starts_with("SET @@GLOBAL")
            || rest.contains("GTID_SLAVE_POS")
            || rest.contains("GTID_DOMAIN_ID")
            || rest.contains("GTID_SEQ_NO")
        {
            return StatementKind::SuperOnly;
        }
    }
    if first == "CREATE" && words.iter().take(6).any(|w| *w == "EVENT") {
        return StatementKind::CreateEvent;
    }
    StatementKind::Other
}

/// Removes a `DEFINER=user@host` clause from the head of a `CREATE` statement (inside or outside
/// a conditional comment), leaving the rest byte for byte.
pub fn strip_definer(stmt: &[u8]) -> Vec<u8> {
    let limit = stmt.len().min(1024);
    let upper: Vec<u8> = stmt[..limit].iter().map(u8::to_ascii_uppercase).collect();
    let Some(start) = upper.windows(7).position(|w| w == b"DEFINER") else {
        return stmt.to_vec();
    };
    let mut i = start + 7;
    let skip_ws = |i: &mut usize| {
        while *i < stmt.len() && stmt[*i].is_ascii_whitespace() {
            *i += 1;
        }
    };
    skip_ws(&mut i);
    if stmt.get(i) != Some(&b'=') {
        return stmt.to_vec();
    }
    i += 1;
    skip_ws(&mut i);
    let part = |i: &mut usize| -> bool {
        match stmt.get(*i) {
            Some(&q @ (b'`' | b'\'' | b'"')) => {
                *i += 1;
                while *i < stmt.len() {
                    if stmt[*i] == q {
                        if stmt.get(*i + 1) == Some(&q) {
                            *i += 2;
                            continue;
                        }
                        *i += 1;
                        return true;
                    }
                    *i += 1;
                }
                false
            }
            Some(_) => {
                let s = *i;
                while *i < stmt.len() && (stmt[*i].is_ascii_alphanumeric() || b"_.%$()-".contains(&stmt[*i]))
                {
                    *i += 1;
                }
                *i > s
            }
            None => false,
        }
    };
    if !part(&mut i) {
        return stmt.to_vec();
    }
    if stmt.get(i) == Some(&b'@') {
        i += 1;
        if !part(&mut i) {
            return stmt.to_vec();
        }
    }
    let mut out = Vec::with_capacity(stmt.len());
    out.extend_from_slice(&stmt[..start]);
    out.extend_from_slice(&stmt[i..]);
    out
}

#[cfg(test)]
mod tests;
