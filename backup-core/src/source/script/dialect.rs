//! The three engines' lexers as the runner's [`Dialect`]s. The lexers themselves stay free of
//! the runner (public and feature-independent, for the fuzz targets); only this adapts them.

use super::Dialect;
use crate::source::pg_script::{Piece, ScriptReader};
use crate::source::{mysql_script, sqlite_script};

/// MySQL/MariaDB: `source::mysql_script`.
impl Dialect for mysql_script::ScriptSplitter {
    type Piece = Vec<u8>;

    fn push(&mut self, data: &[u8], out: &mut Vec<Vec<u8>>) -> Result<(), String> {
        out.extend(mysql_script::ScriptSplitter::push(self, data).map_err(|e| e.to_string())?);
        Ok(())
    }

    fn finish(&mut self, out: &mut Vec<Vec<u8>>) -> Result<(), String> {
        out.extend(std::mem::take(self).finish().map_err(|e| e.to_string())?);
        Ok(())
    }
}

/// PostgreSQL: `source::pg_script`, drained piece by piece after each chunk.
impl Dialect for ScriptReader {
    type Piece = Piece;

    fn push(&mut self, data: &[u8], out: &mut Vec<Piece>) -> Result<(), String> {
        ScriptReader::push(self, data);
        drain(self, out)
    }

    fn finish(&mut self, out: &mut Vec<Piece>) -> Result<(), String> {
        ScriptReader::finish(self);
        drain(self, out)
    }
}

/// Moves every complete piece of `reader` to `out` (those before a fault too).
fn drain(reader: &mut ScriptReader, out: &mut Vec<Piece>) -> Result<(), String> {
    while let Some(p) = reader.next_piece().map_err(|e| e.0)? {
        out.push(p);
    }
    Ok(())
}

/// SQLite: `source::sqlite_script`; its damaged scripts keep their own wording.
impl Dialect for sqlite_script::ScriptSplitter {
    type Piece = Vec<u8>;
    const UNREADABLE: (&'static str, &'static str) = ("SQL script", "a complete script");

    fn push(&mut self, data: &[u8], out: &mut Vec<Vec<u8>>) -> Result<(), String> {
        out.extend(sqlite_script::ScriptSplitter::push(self, data).map_err(|e| e.to_string())?);
        Ok(())
    }

    fn finish(&mut self, out: &mut Vec<Vec<u8>>) -> Result<(), String> {
        out.extend(std::mem::take(self).finish().map_err(|e| e.to_string())?);
        Ok(())
    }
}
