//! The one runner for foreign dump scripts (a `mysqldump`/`mariadb-dump` file, a plain `pg_dump`
//! script, a sqlite3 `.dump`) and for the schema scripts of MySQL backups: [`run`] reads the
//! decompressed stream chunk by chunk, cuts it with the engine's [`Dialect`] (its lexer: where a
//! statement ends) and hands each chunk's statements to the engine's [`Hook`] (how to execute
//! them, what to skip, what the report says). [`check`] is the same loop with a hook that
//! executes nothing: it reads a script whole before a restore touches anything.
//!
//! What is decided here, once for every engine: a script the dialect cannot cut (it ends inside
//! a string, a statement is too long, ...) is an [`Error::Integrity`] (exit 3, "corrupt,
//! incomplete or unreadable"), never a failure of the server; read errors pass through as they
//! are; the script is never held whole (one chunk's statements at a time).

pub(crate) mod check;
mod dialect;

use async_trait::async_trait;
use futures::StreamExt;

use crate::codec::ByteStream;
use crate::error::{Error, Result};

/// An engine's script lexer: cuts bytes into pieces (statements, or for PostgreSQL also psql
/// meta-commands and COPY data). Feeding the same bytes in any chunking yields the same pieces.
pub(crate) trait Dialect: Send {
    /// What the lexer yields.
    type Piece: Send;
    /// How a script this dialect cannot cut is named in the integrity error (`what`, `expected`).
    const UNREADABLE: (&'static str, &'static str) = ("dump script", "valid SQL");
    /// Adds bytes; appends the pieces they completed to `out`, then says why the script cannot
    /// be cut if it cannot (the pieces before the fault are still in `out`, and run).
    fn push(&mut self, data: &[u8], out: &mut Vec<Self::Piece>) -> std::result::Result<(), String>;
    /// Ends the input; appends the pieces still pending, then says why the script is cut short
    /// if it is.
    fn finish(&mut self, out: &mut Vec<Self::Piece>) -> std::result::Result<(), String>;
}

/// A script `D` cannot cut: an integrity error, in every engine (see the module docs).
pub(crate) fn unreadable<D: Dialect>(why: String) -> Error {
    Error::integrity(D::UNREADABLE.0, D::UNREADABLE.1, why)
}

/// An engine's part in running a script through [`run`].
#[async_trait]
pub(crate) trait Hook<D: Dialect>: Send {
    /// What the run returns.
    type Output;
    /// A read error of the stream (passed through by default).
    fn read_error(&self, e: Error) -> Error {
        e
    }
    /// A script the dialect cannot cut ([`unreadable`] by default).
    fn parse_error(&self, why: String) -> Error {
        unreadable::<D>(why)
    }
    /// A chunk was read, before it is cut (a cancellation point, or bytes to look at).
    fn chunk(&mut self, data: &[u8]) -> Result<()> {
        let _ = data;
        Ok(())
    }
    /// Runs the pieces one chunk completed, in order; `last`: those pending at the end of input.
    async fn run(&mut self, pieces: Vec<D::Piece>, last: bool) -> Result<()>;
    /// Everything ran: the final checks (`dialect` says where the input stopped) and the result.
    async fn end(self, dialect: D) -> Result<Self::Output>;
}

/// Reads `sql` to its end through `dialect`, running every piece with `hook`.
pub(crate) async fn run<D: Dialect, H: Hook<D>>(
    mut sql: ByteStream,
    mut dialect: D,
    mut hook: H,
) -> Result<H::Output> {
    while let Some(chunk) = sql.next().await {
        let chunk = chunk.map_err(|e| hook.read_error(e))?;
        hook.chunk(&chunk)?;
        let mut pieces = Vec::new();
        let cut = dialect.push(&chunk, &mut pieces);
        hook.run(pieces, false).await?;
        cut.map_err(|e| hook.parse_error(e))?;
    }
    let mut pieces = Vec::new();
    let cut = dialect.finish(&mut pieces);
    hook.run(pieces, true).await?;
    cut.map_err(|e| hook.parse_error(e))?;
    hook.end(dialect).await
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use futures::StreamExt;

    use super::*;
    use crate::error::ErrorKind;
    use crate::source::{mysql_script, sqlite_script};

    /// A hook that runs nothing.
    struct Discard;

    #[async_trait]
    impl<D: Dialect + 'static> Hook<D> for Discard {
        type Output = ();
        async fn run(&mut self, _: Vec<D::Piece>, _: bool) -> Result<()> {
            Ok(())
        }
        async fn end(self, _: D) -> Result<()> {
            Ok(())
        }
    }

    fn script(text: &'static str) -> ByteStream {
        futures::stream::iter(text.as_bytes().chunks(3).map(|c| Ok(bytes::Bytes::from_static(c)))).boxed()
    }

    /// A script cut inside a string is an integrity error in every engine, each naming it as
    /// before the runner was shared.
    #[tokio::test]
    async fn a_script_that_cannot_be_cut_is_an_integrity_error_in_every_engine() {
        let my = run(script("SELECT 1;\nSELECT 'abc"), mysql_script::ScriptSplitter::default(), Discard)
            .await
            .unwrap_err();
        assert_eq!(my.kind(), ErrorKind::Integrity, "{my}");
        assert!(my.to_string().contains("dump script") && my.to_string().contains("valid SQL"), "{my}");
        let lite = run(script("SELECT 1;\nSELECT 'abc"), sqlite_script::ScriptSplitter::default(), Discard)
            .await
            .unwrap_err();
        assert_eq!(lite.kind(), ErrorKind::Integrity, "{lite}");
        assert!(
            lite.to_string().contains("SQL script") && lite.to_string().contains("a complete script"),
            "{lite}"
        );
    }
}
