//! Running a foreign plain dump script (pg_dump's plain format, `psql` input) into a restore
//! session: PostgreSQL's hook of the shared runner ([`crate::source::script`]), the script cut
//! by [`ScriptReader`](crate::source::pg_script::ScriptReader).

use std::pin::Pin;

use async_trait::async_trait;
use bytes::Bytes;
use futures::SinkExt;
use tokio_postgres::{Client, CopyInSink};

use super::conn::{pg_err, shorten};
use super::schema::{is_owner_change, is_preamble};
use crate::codec::ByteStream;
use crate::error::{Error, Result};
use crate::progress::Context;
use crate::source::ScriptReport;
use crate::source::pg_script::{Piece, ScriptReader};
use crate::source::script::{self, Hook};

/// Whether a statement is bare transaction control (`BEGIN;`, `COMMIT;`, ...).
fn is_transaction_control(stmt: &str) -> bool {
    let l = stmt.trim().trim_end_matches(';').trim().to_ascii_lowercase();
    matches!(
        l.as_str(),
        "begin" | "start transaction" | "commit" | "end" | "begin transaction" | "commit transaction"
    )
}

/// Executes a foreign plain dump script on one connection (see the module docs). `in_txn`: the
/// connection is inside the restore's own transaction (in place), so the script's transaction
/// control (pg_dump wraps large-object data in `BEGIN; ... COMMIT;`) is skipped: running it would
/// commit the half-done restore.
pub(super) async fn run_script(
    c: &Client,
    sql: ByteStream,
    keep_owners: bool,
    in_txn: bool,
    ctx: &Context,
) -> Result<ScriptReport> {
    let run = ScriptRun {
        c,
        keep_owners,
        in_txn,
        ctx,
        report: ScriptReport::default(),
        sink: None,
        skipped_owner: 0,
        skipped_txn: 0,
    };
    script::run(sql, ScriptReader::new(), run).await
}

/// The state of one [`run_script`]: its connection, the COPY in progress and what was skipped.
struct ScriptRun<'a> {
    c: &'a Client,
    keep_owners: bool,
    in_txn: bool,
    ctx: &'a Context,
    report: ScriptReport,
    sink: Option<Pin<Box<CopyInSink<Bytes>>>>,
    skipped_owner: u64,
    skipped_txn: u64,
}

/// PostgreSQL's hook of the shared runner: pieces run as they come, cancellation checked
/// before each.
#[async_trait]
impl Hook<ScriptReader> for ScriptRun<'_> {
    type Output = ScriptReport;

    async fn run(&mut self, pieces: Vec<Piece>, _last: bool) -> Result<()> {
        for piece in pieces {
            self.ctx.check("restore")?;
            self.piece(piece).await?;
        }
        Ok(())
    }

    async fn end(self, reader: ScriptReader) -> Result<ScriptReport> {
        if self.sink.is_some() || !reader.is_clean() {
            return Err(Error::integrity(
                "dump script",
                "complete statements and COPY blocks",
                "the script ends in the middle of one (truncated file?)",
            ));
        }
        Ok(self.finish())
    }
}

impl ScriptRun<'_> {
    async fn piece(&mut self, piece: Piece) -> Result<()> {
        match piece {
            Piece::Meta(m) => {
                let cmd = m.split_whitespace().next().unwrap_or_default().to_string();
                if !matches!(cmd.as_str(), "\\restrict" | "\\unrestrict") {
                    self.report.notes.push(format!("skipped psql command {}", shorten(&m)));
                }
            }
            Piece::Statement(s) => self.statement(&s).await?,
            Piece::CopyStart(s) => {
                let what = format!("start {}", shorten(&s));
                self.sink = Some(Box::pin(self.c.copy_in(s.as_str()).await.map_err(pg_err(what))?));
            }
            Piece::CopyData(d) => {
                let Some(k) = self.sink.as_mut() else {
                    return Err(Error::integrity("dump script", "COPY data after COPY", "stray data"));
                };
                k.as_mut().send(d).await.map_err(pg_err("send COPY data"))?;
            }
            Piece::CopyEnd => {
                if let Some(mut k) = self.sink.take() {
                    self.report.rows += k.as_mut().finish().await.map_err(pg_err("finish COPY"))?;
                    self.report.tables += 1;
                    self.report.statements += 1;
                }
            }
        }
        Ok(())
    }

    async fn statement(&mut self, s: &str) -> Result<()> {
        let l = s.trim_start().to_ascii_lowercase();
        if !self.keep_owners && is_owner_change(s) {
            self.skipped_owner += 1;
            return Ok(());
        }
        // A `--create` dump's database and per-role settings name the source
        // database, not the one restored into.
        if l.starts_with("create database ")
            || l.starts_with("alter database ")
            || (l.starts_with("alter role ") && l.contains(" in database "))
        {
            self.report.notes.push(format!("skipped {}", shorten(s)));
            return Ok(());
        }
        if self.in_txn && is_transaction_control(s) {
            self.skipped_txn += 1;
            return Ok(());
        }
        match self.c.batch_execute(s).await {
            Ok(()) => self.report.statements += 1,
            Err(e) if is_preamble(s) && e.as_db_error().is_some_and(|d| d.code().code() == "42704") => {
                // A setting this server does not know (script from a newer pg_dump).
                self.report.notes.push(format!("ignored unknown setting: {}", shorten(s)));
            }
            Err(e) => return Err(pg_err(format!("execute {}", shorten(s)))(e)),
        }
        Ok(())
    }

    fn finish(mut self) -> ScriptReport {
        let (owner, txn) = (self.skipped_owner, self.skipped_txn);
        if owner > 0 {
            self.report.notes.push(format!("skipped {owner} ownership change(s) (no-owner restore)"));
        }
        if txn > 0 {
            self.report.notes.push(format!(
                "skipped {txn} BEGIN/COMMIT statement(s) of the script (it runs inside one transaction)"
            ));
        }
        self.report
    }
}
