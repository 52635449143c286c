//! `LOAD DATA LOCAL INFILE` of one chunk: the verified stream is handed to the driver as the
//! "file", a stream error ends the statement and is reported as itself, and warnings are
//! errors, except exactly one per ENUM error value in the data ([`EnumZeros`]).

use std::sync::{Arc, Mutex};

use futures::StreamExt;
use mysql_async::Conn;
use mysql_async::prelude::Queryable;

use super::conn::{exec, qi, query_text, query_value};
use super::table::{ColKind, TableProps};
use crate::codec::ByteStream;
use crate::error::{Error, Result};
use crate::format::manifest::{ObjectEntry, TableEntry};

/// `LOAD DATA` of one chunk of table `t` into database `db` on `c`, fed from `data`; returns
/// the rows loaded. Warnings are errors.
pub(crate) async fn load_chunk(
    c: &mut Conn,
    db: &str,
    t: &TableEntry,
    object: &ObjectEntry,
    data: ByteStream,
) -> Result<u64> {
    let props = TableProps::from_entry(t)?;
    let sql = load_sql(db, t, &props);
    if props.versioned {
        exec(c, "SET SESSION system_versioning_insert_history = 1").await.map_err(|e| {
            e.context(format!("load the history of system-versioned table {} (needs MariaDB 10.11+)", t.name))
        })?;
    }
    let failure: Arc<Mutex<Option<Error>>> = Arc::new(Mutex::new(None));
    let slot = failure.clone();
    let zeros = Arc::new(Mutex::new(EnumZeros::new(&props)));
    let counted = zeros.clone();
    let stream = data
        .map(move |r| match r {
            Ok(b) => {
                if let Ok(mut z) = counted.lock() {
                    z.feed(&b);
                }
                Ok(b)
            }
            Err(e) => {
                let msg = e.to_string();
                if let Ok(mut s) = slot.lock() {
                    s.get_or_insert(e);
                }
                Err(std::io::Error::other(msg))
            }
        })
        .boxed();
    // The handler future must be Sync; the stream is only Send, so it travels in a mutex.
    let cell = Mutex::new(Some(stream));
    c.set_infile_handler(async move {
        cell.lock()
            .ok()
            .and_then(|mut s| s.take())
            .ok_or_else(|| mysql_async::Error::Other("infile stream already taken".into()))
    });
    let r = c.query_drop(sql.as_str()).await;
    if let Some(e) = failure.lock().ok().and_then(|mut s| s.take()) {
        return Err(e);
    }
    r.map_err(|e| Error::source(format!("load {} into {}", object.key, t.name), e))?;
    let rows = c.affected_rows();
    let expected = zeros.lock().map(|z| z.count).unwrap_or(0);
    check_warnings(c, t, object, expected).await?;
    Ok(rows)
}

/// After a load: exactly `expected` warnings (one per ENUM error value), else an integrity
/// error naming the first ones.
async fn check_warnings(c: &mut Conn, t: &TableEntry, object: &ObjectEntry, expected: u64) -> Result<()> {
    let mut warnings = u64::from(c.get_warnings());
    if expected > 0 {
        // The packet's count is 16 bits; the session variable is not.
        warnings =
            query_value(c, "SELECT @@warning_count").await?.and_then(|n| n.parse().ok()).unwrap_or(warnings);
    }
    if warnings != expected {
        let w = query_text(c, "SHOW WARNINGS LIMIT 3").await.unwrap_or_default();
        return Err(Error::integrity(
            format!("load of {} into {}", object.key, t.name),
            if expected == 0 {
                "no warnings".to_string()
            } else {
                format!("exactly {expected} warning(s), one per ENUM error value")
            },
            format!("{warnings} warning(s): {w:?}"),
        ));
    }
    Ok(())
}

/// Counts, in a `LOAD DATA` TSV stream, the fields of [`ColKind::Enum`] columns that hold the
/// column's error-value text: each loads as index 0 with exactly one "Data truncated" warning,
/// so the load expects exactly that many warnings (and any other warning still fails it).
struct EnumZeros {
    /// Per field position: the error-value text, for ENUM columns.
    tokens: Vec<Option<Vec<u8>>>,
    field: usize,
    /// The current field's bytes, kept up to one more than the token's length.
    cur: Vec<u8>,
    /// The current field had an escape (`\N`, `\t`...): not the token.
    escaped: bool,
    after_backslash: bool,
    count: u64,
}

impl EnumZeros {
    fn new(props: &TableProps) -> Self {
        let tokens = props
            .columns
            .iter()
            .map(|c| (c.kind == ColKind::Enum).then(|| c.zero.clone().unwrap_or_default().into_bytes()))
            .collect();
        EnumZeros { tokens, field: 0, cur: Vec::new(), escaped: false, after_backslash: false, count: 0 }
    }

    fn end_field(&mut self) {
        if let Some(Some(t)) = self.tokens.get(self.field)
            && !self.escaped
            && self.cur == *t
        {
            self.count += 1;
        }
        self.cur.clear();
        self.escaped = false;
    }

    fn feed(&mut self, data: &[u8]) {
        if self.tokens.iter().all(Option::is_none) {
            return;
        }
        for &b in data {
            if self.after_backslash {
                self.after_backslash = false;
                continue;
            }
            match b {
                b'\\' => {
                    self.escaped = true;
                    self.after_backslash = true;
                }
                b'\t' => {
                    self.end_field();
                    self.field += 1;
                }
                b'\n' => {
                    self.end_field();
                    self.field = 0;
                }
                _ => {
                    if let Some(Some(t)) = self.tokens.get(self.field)
                        && self.cur.len() <= t.len()
                    {
                        self.cur.push(b);
                    }
                }
            }
        }
    }
}

/// `LOAD DATA` for one table of the manifest.
fn load_sql(db: &str, t: &TableEntry, props: &TableProps) -> String {
    let mut targets = Vec::new();
    let mut sets = Vec::new();
    for (i, c) in props.columns.iter().enumerate() {
        if c.kind == ColKind::Bit {
            targets.push(format!("@v{i}"));
            sets.push(format!("{} = CAST(@v{i} AS UNSIGNED)", qi(&c.name)));
        } else if c.kind == ColKind::TextForm {
            targets.push(format!("@v{i}"));
            sets.push(format!("{} = CONVERT(@v{i} USING utf8mb4)", qi(&c.name)));
        } else {
            targets.push(qi(&c.name));
        }
    }
    let mut sql = format!(
        "LOAD DATA LOCAL INFILE 'dbbackup' INTO TABLE {}.{} CHARACTER SET binary \
         FIELDS TERMINATED BY '\\t' ESCAPED BY '\\\\' LINES TERMINATED BY '\\n' ({})",
        qi(db),
        qi(&t.name),
        targets.join(", ")
    );
    if !sets.is_empty() {
        sql.push_str(" SET ");
        sql.push_str(&sets.join(", "));
    }
    sql
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_enum_error_values_in_the_stream() {
        let props: TableProps = serde_json::from_value(serde_json::json!({"columns": [
            {"name": "id", "kind": "plain"},
            {"name": "e", "kind": "enum", "zero": ""},
            {"name": "m", "kind": "enum", "zero": "0"},
        ]}))
        .unwrap();
        let mut z = EnumZeros::new(&props);
        // Row 1: both error values; row 2: NULL and a member; row 3: escaped text, "00", "0".
        let tsv = b"1\t\t0\n2\t\\N\tz\n3\t\\t\t00\n4\tx\t0\n";
        for chunk in tsv.chunks(3) {
            z.feed(chunk);
        }
        assert_eq!(z.count, 3);
    }
}
