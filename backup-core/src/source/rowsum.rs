//! Content checksums computed on the client while rows stream out (no second scan of the table),
//! and the per-table bookkeeping that lets `table_stats` wait until every chunk of a table has
//! been dumped.

use std::collections::HashMap;
use std::sync::Mutex;

use md5::Digest;
use tokio::sync::watch;
use twox_hash::XxHash3_128;

use crate::error::{Error, Result};

/// Order-independent sum over rows of a row's 128-bit digest, split into two big-endian 64-bit
/// halves and added as integers (`hi:lo` in decimal). Duplicate rows count; the order of rows
/// does not. The digest is MD5 or XXH3-128 ([`RowHash`]); the algorithm name in the manifest says
/// which.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RowSum {
    pub(crate) rows: u64,
    hi: u128,
    lo: u128,
}

/// The sum as MySQL's dump and PostgreSQL's older manifests use it (MD5 digests).
pub(crate) type Md5Sum = RowSum;

impl RowSum {
    /// Adds one row given its 16-byte digest (MD5's bytes, or XXH3-128's canonical big-endian form).
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

    /// Adds one row given its digest as a 128-bit number (high 64 bits first, as
    /// [`add_digest`](Self::add_digest) reads the canonical bytes).
    fn add_u128(&mut self, d: u128) {
        self.hi += d >> 64;
        self.lo += d & u128::from(u64::MAX);
        self.rows += 1;
    }

    pub(crate) fn merge(&mut self, o: RowSum) {
        self.rows += o.rows;
        self.hi += o.hi;
        self.lo += o.lo;
    }

    /// The manifest form: `hi:lo`, as a server's `SUM` prints the same formula.
    pub(crate) fn checksum(&self) -> String {
        format!("{}:{}", self.hi, self.lo)
    }
}

/// The per-row digest of a [`LineSum`].
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RowHash {
    /// MD5 (`pg-copy-md5-sum-v2`, manifests before 2026-12-03).
    Md5,
    /// XXH3-128, default seed and secret (`pg-copy-xxh3-sum-v3`): ~10x MD5's speed.
    #[default]
    Xxh3,
}

/// The hash state of a line that continues in the next piece.
enum Open {
    Md5(Box<md5::Md5>),
    Xxh3(Box<XxHash3_128>),
}

/// [`RowSum`] of the lines of a byte stream given in any pieces: one row per `\n`-terminated line,
/// hashed without its `\n` (PostgreSQL COPY text escapes newlines inside values). A line inside
/// one piece is hashed in one call; only a line cut between pieces keeps a streaming state.
#[derive(Default)]
pub(crate) struct LineSum {
    sum: RowSum,
    hash: RowHash,
    open: Option<Open>,
}

impl LineSum {
    pub(crate) fn new(hash: RowHash) -> Self {
        LineSum { hash, ..Default::default() }
    }

    /// Hashes `part`, the rest of a line (complete when `end`).
    fn line(&mut self, part: &[u8], end: bool) {
        let open = match self.open.take() {
            None if end => {
                match self.hash {
                    RowHash::Xxh3 => self.sum.add_u128(XxHash3_128::oneshot(part)),
                    RowHash::Md5 => self.sum.add_digest(&md5::Md5::digest(part)),
                }
                return;
            }
            None => match self.hash {
                RowHash::Xxh3 => Open::Xxh3(Box::new(XxHash3_128::new())),
                RowHash::Md5 => Open::Md5(Box::default()),
            },
            Some(o) => o,
        };
        match (open, end) {
            (Open::Xxh3(mut h), end) => {
                h.write(part);
                if end {
                    self.sum.add_u128(h.finish_128());
                } else {
                    self.open = Some(Open::Xxh3(h));
                }
            }
            (Open::Md5(mut h), end) => {
                h.update(part);
                if end {
                    self.sum.add_digest(&h.finalize());
                } else {
                    self.open = Some(Open::Md5(h));
                }
            }
        }
    }

    pub(crate) fn feed(&mut self, b: &[u8]) {
        let mut start = 0;
        for nl in memchr::memchr_iter(b'\n', b) {
            self.line(&b[start..nl], true);
            start = nl + 1;
        }
        if start < b.len() {
            self.line(&b[start..], false);
        }
    }

    /// Complete lines so far.
    pub(crate) fn rows(&self) -> u64 {
        self.sum.rows
    }

    /// The sum; an error if the stream stopped inside a line.
    pub(crate) fn finish(self) -> Result<RowSum> {
        if self.open.is_some() {
            return Err(Error::InvalidInput("row stream ended inside a row (no final newline)".into()));
        }
        Ok(self.sum)
    }
}

/// Per table: the sums of the chunks dumped so far and how many chunks are still to come.
#[derive(Default)]
pub(crate) struct ChunkSums {
    tables: Mutex<HashMap<String, (RowSum, usize)>>,
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
    pub(crate) fn chunk_done(&self, table: &str, sum: RowSum) {
        if let Ok(mut t) = self.tables.lock() {
            let e = t.entry(table.to_string()).or_default();
            e.0.merge(sum);
            e.1 = e.1.saturating_sub(1);
        }
        self.done.send_modify(|n| *n += 1);
    }

    /// Waits until every chunk of `table` is done; the table's sum (empty for a table without
    /// chunks). A failing chunk fails the whole dump, which drops this wait with it.
    pub(crate) async fn wait(&self, table: &str) -> Result<RowSum> {
        let mut seen = self.done.subscribe();
        loop {
            let ready = self.tables.lock().ok().and_then(|t| t.get(table).map(|e| (e.1 == 0).then_some(e.0)));
            match ready {
                None => return Ok(RowSum::default()),
                Some(Some(sum)) => return Ok(sum),
                Some(None) => seen.changed().await.map_err(|e| Error::source("dump progress", e))?,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sum_of(hash: RowHash, data: &[u8]) -> RowSum {
        let mut s = LineSum::new(hash);
        s.feed(data);
        s.finish().unwrap()
    }

    #[test]
    fn line_sum_ignores_chunking_and_row_order() {
        let data = b"1\ta\n2\t\\N\n3\t\\\\n\n";
        let long = [b'x'; 1000].repeat(5);
        let data = [&data[..], &long, b"\n"].concat();
        for hash in [RowHash::Md5, RowHash::Xxh3] {
            let whole = sum_of(hash, &data);
            assert_eq!(whole.rows, 4);
            for n in [1, 2, 3, 5, 7, 64, 255, 1000, 4096] {
                let mut s = LineSum::new(hash);
                for c in data.chunks(n) {
                    s.feed(c);
                }
                assert_eq!(s.finish().unwrap(), whole, "{hash:?}, pieces of {n}");
            }
            let swapped = [&long, &b"\n3\t\\\\n\n1\ta\n2\t\\N\n"[..]].concat();
            assert_eq!(sum_of(hash, &swapped), whole, "{hash:?}");
            let other = [&b"1\ta\n2\t\\N\n3\t\\\\N\n"[..], &long, b"\n"].concat();
            assert_ne!(sum_of(hash, &other).checksum(), whole.checksum(), "{hash:?}");
            assert_ne!(sum_of(hash, b"1\ta\n1\ta\n").checksum(), RowSum::default().checksum());
        }
        assert_ne!(sum_of(RowHash::Md5, &data), sum_of(RowHash::Xxh3, &data));
    }

    /// Pins both algorithms to their reference values, halves in the documented order: MD5 as
    /// Python's hashlib computes it, XXH3-128 of the empty string as the reference implementation
    /// prints it (`xxhsum -H2`: 99aa06d3014798d86001c324468d497f).
    #[test]
    fn row_digests_match_the_reference_values() {
        assert_eq!(sum_of(RowHash::Md5, b"1\ta\n\n").checksum(), "17347079907532947680:29412385859837700203");
        assert_eq!(
            sum_of(RowHash::Xxh3, b"\n").checksum(),
            format!("{}:{}", 0x99aa06d3014798d8u64, 0x6001c324468d497fu64)
        );
    }

    #[test]
    fn a_stream_ending_inside_a_row_is_an_error() {
        for hash in [RowHash::Md5, RowHash::Xxh3] {
            let mut s = LineSum::new(hash);
            s.feed(b"1\ta\n2\tb");
            assert!(s.finish().is_err());
        }
    }

    #[test]
    fn digest_halves_add_as_integers() {
        let mut s = RowSum::default();
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
        let mut one = RowSum::default();
        one.add_digest(&[1; 16]);
        sums.chunk_done("a", one);
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        sums.chunk_done("a", one);
        assert_eq!(waiter.await.unwrap(), 2);
        assert_eq!(sums.wait("unknown").await.unwrap(), RowSum::default());
    }
}
