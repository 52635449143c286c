//! Content checksums computed on the client while rows stream out (no second scan of the table),
//! and the per-table bookkeeping that lets `table_stats` wait until every chunk of a table has
//! been dumped.

use std::collections::HashMap;
use std::sync::Mutex;

use md5::Digest;
use tokio::sync::watch;

use crate::error::{Error, Result};

/// Order-independent sum over rows of a row's MD5, split into two big-endian 64-bit halves and
/// added as integers (`hi:lo` in decimal). Duplicate rows count; the order of rows does not.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Md5Sum {
    pub(crate) rows: u64,
    hi: u128,
    lo: u128,
}

impl Md5Sum {
    /// Adds one row given its MD5.
    pub(crate) fn add_digest(&mut self, d: &[u8]) {
        let half = |b: &[u8]| {
            let mut a = [0u8; 8];
            a.copy_from_slice(b);
            u128::from(u64::from_be_bytes(a))
        };
        self.hi += half(&d[..8]);
        self.lo += half(&d[8..16]);
        self.rows += 1;
    }

    pub(crate) fn merge(&mut self, o: Md5Sum) {
        self.rows += o.rows;
        self.hi += o.hi;
        self.lo += o.lo;
    }

    /// The manifest form: `hi:lo`, as a server's `SUM` prints the same formula.
    pub(crate) fn checksum(&self) -> String {
        format!("{}:{}", self.hi, self.lo)
    }
}

/// [`Md5Sum`] of the lines of a byte stream given in any pieces: one row per `\n`-terminated line,
/// hashed without its `\n` (PostgreSQL COPY text escapes newlines inside values).
#[derive(Default)]
pub(crate) struct LineSum {
    sum: Md5Sum,
    h: md5::Md5,
    open: bool,
}

impl LineSum {
    pub(crate) fn feed(&mut self, mut b: &[u8]) {
        while let Some(nl) = b.iter().position(|&c| c == b'\n') {
            self.h.update(&b[..nl]);
            let d = std::mem::take(&mut self.h).finalize();
            self.sum.add_digest(&d);
            self.open = false;
            b = &b[nl + 1..];
        }
        if !b.is_empty() {
            self.h.update(b);
            self.open = true;
        }
    }

    /// Complete lines so far.
    pub(crate) fn rows(&self) -> u64 {
        self.sum.rows
    }

    /// The sum; an error if the stream stopped inside a line.
    pub(crate) fn finish(self) -> Result<Md5Sum> {
        if self.open {
            return Err(Error::InvalidInput("row stream ended inside a row (no final newline)".into()));
        }
        Ok(self.sum)
    }
}

/// Per table: the sums of the chunks dumped so far and how many chunks are still to come.
#[derive(Default)]
pub(crate) struct ChunkSums {
    tables: Mutex<HashMap<String, (Md5Sum, usize)>>,
    done: watch::Sender<u64>,
}

impl ChunkSums {
    /// Starts over with `chunks` chunks expected for each table key listed.
    pub(crate) fn expect<'a>(&self, chunk_tables: impl Iterator<Item = &'a str>) {
        if let Ok(mut t) = self.tables.lock() {
            t.clear();
            for k in chunk_tables {
                t.entry(k.to_string()).or_default().1 += 1;
            }
        }
    }

    /// One chunk of `table` was dumped completely, with this sum.
    pub(crate) fn chunk_done(&self, table: &str, sum: Md5Sum) {
        if let Ok(mut t) = self.tables.lock() {
            let e = t.entry(table.to_string()).or_default();
            e.0.merge(sum);
            e.1 = e.1.saturating_sub(1);
        }
        self.done.send_modify(|n| *n += 1);
    }

    /// Waits until every chunk of `table` is done; the table's sum (empty for a table without
    /// chunks). A failing chunk fails the whole dump, which drops this wait with it.
    pub(crate) async fn wait(&self, table: &str) -> Result<Md5Sum> {
        let mut seen = self.done.subscribe();
        loop {
            let ready = self.tables.lock().ok().and_then(|t| t.get(table).map(|e| (e.1 == 0).then_some(e.0)));
            match ready {
                None => return Ok(Md5Sum::default()),
                Some(Some(sum)) => return Ok(sum),
                Some(None) => seen.changed().await.map_err(|e| Error::source("dump progress", e))?,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_sum_ignores_chunking_and_row_order() {
        let data = b"1\ta\n2\t\\N\n3\t\\\\n\n";
        let mut whole = LineSum::default();
        whole.feed(data);
        let whole = whole.finish().unwrap();
        assert_eq!(whole.rows, 3);
        for n in 1..data.len() {
            let mut s = LineSum::default();
            for c in data.chunks(n) {
                s.feed(c);
            }
            assert_eq!(s.finish().unwrap(), whole, "pieces of {n}");
        }
        let mut swapped = LineSum::default();
        swapped.feed(b"3\t\\\\n\n1\ta\n2\t\\N\n");
        assert_eq!(swapped.finish().unwrap(), whole);
        let mut other = LineSum::default();
        other.feed(b"1\ta\n2\t\\N\n3\t\\\\N\n");
        assert_ne!(other.finish().unwrap().checksum(), whole.checksum());
        let mut dup = LineSum::default();
        dup.feed(b"1\ta\n1\ta\n");
        assert_ne!(dup.finish().unwrap().checksum(), Md5Sum::default().checksum());
    }

    #[test]
    fn a_stream_ending_inside_a_row_is_an_error() {
        let mut s = LineSum::default();
        s.feed(b"1\ta\n2\tb");
        assert!(s.finish().is_err());
    }

    #[test]
    fn digest_halves_add_as_integers() {
        let mut s = Md5Sum::default();
        s.add_digest(&[0xff; 16]);
        s.add_digest(&[0xff; 16]);
        let max = u128::from(u64::MAX);
        assert_eq!(s.checksum(), format!("{}:{}", 2 * max, 2 * max));
        assert_eq!(s.rows, 2);
    }

    #[tokio::test]
    async fn wait_returns_once_every_chunk_is_done() {
        let sums = std::sync::Arc::new(ChunkSums::default());
        sums.expect(["a", "a", "b"].into_iter());
        let waiter = tokio::spawn({
            let sums = sums.clone();
            async move { sums.wait("a").await.unwrap().rows }
        });
        let mut one = Md5Sum::default();
        one.add_digest(&[1; 16]);
        sums.chunk_done("a", one);
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        sums.chunk_done("a", one);
        assert_eq!(waiter.await.unwrap(), 2);
        assert_eq!(sums.wait("unknown").await.unwrap(), Md5Sum::default());
    }
}
