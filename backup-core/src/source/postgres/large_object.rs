//! Large objects (`pg_largeobject`): listing them inside the snapshot, reading their bytes in
//! bounded pieces (`lo_get(oid, offset, len)`), the `pg-large-objects-v1` framing of a data
//! object (normative in docs/FORMAT.md), loading them back under the same oids, and the
//! `pg-lo-sha256-sum-v1` checksum, computed by the same [`Reader`] on the dump side (while
//! streaming) and on the restored database (one extra read), so a restore proves it loaded what
//! was dumped.
//!
//! Memory: at most one [`PIECE`] of large-object bytes (plus the metadata list: oid, size,
//! comment, owner per object) per stream, whatever the objects' sizes.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::{Buf, Bytes, BytesMut};
use futures::StreamExt;
use sha2::{Digest, Sha256};
use tokio_postgres::Client;

use super::conn::PoolGuard;
use super::conn::{pg_err, quote_ident, quote_literal};
use crate::codec::ByteStream;
use crate::error::{Error, Result};

/// Bulk format of large-object data objects.
pub(crate) const FORMAT: &str = "pg-large-objects-v1";
/// Key extension of large-object data objects.
pub(crate) const EXT: &str = "lo";
/// Name of the large-object checksum (see [`ObjectDigest`]).
pub(crate) const CHECKSUM_ALGO: &str = "pg-lo-sha256-sum-v1";
/// Manifest property holding the totals ([`Totals`]).
pub(crate) const PROPERTY: &str = "pg.large_objects";
/// Bytes read (`lo_get`) or written (`lo_from_bytea`/`lo_put`) per round trip; also the most
/// large-object bytes a stream holds at once.
pub(crate) const PIECE: usize = 1 << 20;
/// Objects read together in one batch of small ones.
const BATCH_OBJECTS: usize = 1000;
/// Longest comment or owner name accepted from a backup (a hostile length is refused before
/// anything is allocated).
const MAX_TEXT: u64 = 64 << 20;
/// Longest header line accepted (the longest valid one has 10 + 3 x 20 digits and 3 spaces).
const MAX_HEADER: usize = 80;

/// One large object as listed inside a snapshot or a restored database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LoMeta {
    pub(crate) oid: u32,
    pub(crate) size: u64,
    pub(crate) comment: Option<String>,
    pub(crate) owner: Option<String>,
}

/// Oid, size (`lo_lseek64` to the end of a descriptor opened for reading), comment and owner of
/// every large object with an oid in `[$1, $2]`, by oid. The inner subquery (kept by `OFFSET 0`)
/// computes the size before the outer one closes the descriptor, so no descriptor stays open
/// until the end of a long snapshot transaction.
const LIST_SQL: &str = "SELECT s.oid, s.size, pg_catalog.obj_description(s.oid, 'pg_largeobject'), \
     pg_catalog.pg_get_userbyid(s.owner)::text, pg_catalog.lo_close(s.fd) \
     FROM (SELECT m.oid, m.lomowner AS owner, o.fd, pg_catalog.lo_lseek64(o.fd, 0, 2) AS size \
           FROM pg_catalog.pg_largeobject_metadata m, \
           LATERAL (SELECT pg_catalog.lo_open(m.oid, 262144) AS fd OFFSET 0) o \
           WHERE m.oid BETWEEN $1 AND $2 OFFSET 0) s \
     ORDER BY s.oid";

/// Lists the large objects with oids in `range` (all when `None`), ascending; owners only
/// `with_owners` (a no-owner backup does not record them).
pub(crate) async fn list(c: &Client, range: Option<(u32, u32)>, with_owners: bool) -> Result<Vec<LoMeta>> {
    let (lo, hi) = range.unwrap_or((0, u32::MAX));
    let rows = c.query(LIST_SQL, &[&lo, &hi]).await.map_err(pg_err("list large objects"))?;
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        let size: i64 = r.get(1);
        out.push(LoMeta {
            oid: r.get(0),
            size: u64::try_from(size)
                .map_err(|_| Error::source("list large objects", format!("negative size {size}")))?,
            comment: r.get(2),
            owner: if with_owners { r.get(3) } else { None },
        });
    }
    Ok(out)
}

/// Length of `m` once framed (header, comment, owner, data).
pub(crate) fn framed_len(m: &LoMeta) -> u64 {
    header(m).len() as u64 + m.size
}

/// The framing of one object before its data: the header line, the comment, the owner.
fn header(m: &LoMeta) -> Bytes {
    let len = |s: &Option<String>| s.as_ref().map_or_else(|| "-".to_string(), |s| s.len().to_string());
    let mut out = format!("{} {} {} {}\n", m.oid, m.size, len(&m.comment), len(&m.owner)).into_bytes();
    out.extend_from_slice(m.comment.as_deref().unwrap_or_default().as_bytes());
    out.extend_from_slice(m.owner.as_deref().unwrap_or_default().as_bytes());
    Bytes::from(out)
}

/// `pg-lo-sha256-sum-v1` of one object: the first 8 bytes (big-endian) of SHA-256 over the oid
/// (4 bytes big-endian), the size (8 bytes big-endian), the comment (one byte 0 when there is
/// none, else 1, its length as 8 bytes big-endian and its UTF-8 bytes), then the data. The
/// owner is left out: it is restored only on request.
pub(crate) struct ObjectDigest(Sha256);

impl ObjectDigest {
    pub(crate) fn new(m: &LoMeta) -> Self {
        let mut h = Sha256::new();
        h.update(m.oid.to_be_bytes());
        h.update(m.size.to_be_bytes());
        match &m.comment {
            None => h.update([0u8]),
            Some(c) => {
                h.update([1u8]);
                h.update((c.len() as u64).to_be_bytes());
                h.update(c.as_bytes());
            }
        }
        ObjectDigest(h)
    }

    pub(crate) fn update(&mut self, data: &[u8]) {
        self.0.update(data);
    }

    pub(crate) fn finish(self) -> u64 {
        let d = self.0.finalize();
        let mut first = [0u8; 8];
        first.copy_from_slice(&d[..8]);
        u64::from_be_bytes(first)
    }
}

/// Count, data bytes and checksum (sum of the objects' [`ObjectDigest`]s modulo 2^64) of a set
/// of large objects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Totals {
    pub(crate) count: u64,
    pub(crate) bytes: u64,
    pub(crate) checksum: u64,
}

impl Totals {
    fn add(&mut self, size: u64, digest: u64) {
        self.count += 1;
        self.bytes += size;
        self.checksum = self.checksum.wrapping_add(digest);
    }

    /// The manifest property; `checksum` only when every object was summed.
    pub(crate) fn to_property(self, with_checksum: bool) -> serde_json::Value {
        let mut v = serde_json::json!({ "count": self.count, "bytes": self.bytes });
        if with_checksum {
            v["checksum"] = serde_json::Value::String(self.checksum.to_string());
            v["checksum_algo"] = serde_json::Value::String(CHECKSUM_ALGO.into());
        }
        v
    }
}

/// What a manifest says about its large objects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Expected {
    pub(crate) count: u64,
    pub(crate) bytes: u64,
    /// `None` when absent or computed by another algorithm.
    pub(crate) checksum: Option<u64>,
}

impl Expected {
    /// Reads [`PROPERTY`]; `None` when the backup has no large objects (or predates them).
    pub(crate) fn from_properties(
        props: &std::collections::BTreeMap<String, serde_json::Value>,
    ) -> Result<Option<Self>> {
        let Some(v) = props.get(PROPERTY) else { return Ok(None) };
        let bad = |why: &str| {
            Error::integrity(format!("manifest property {PROPERTY}"), "count, bytes, checksum", why)
        };
        let count = v.get("count").and_then(serde_json::Value::as_u64).ok_or_else(|| bad("no count"))?;
        let bytes = v.get("bytes").and_then(serde_json::Value::as_u64).ok_or_else(|| bad("no bytes"))?;
        let checksum = match (v.get("checksum_algo").and_then(|a| a.as_str()), v.get("checksum")) {
            (Some(CHECKSUM_ALGO), Some(c)) => {
                Some(c.as_str().and_then(|s| s.parse().ok()).ok_or_else(|| bad("malformed checksum"))?)
            }
            _ => None,
        };
        Ok(Some(Expected { count, bytes, checksum }))
    }

    fn describe(&self) -> String {
        let mut s = format!("{} large object(s), {} bytes", self.count, self.bytes);
        if let Some(c) = self.checksum {
            s.push_str(&format!(", checksum {c}"));
        }
        s
    }
}

/// Totals shared by the chunks of one dump.
#[derive(Debug, Default)]
pub(crate) struct Tally {
    planned_count: AtomicU64,
    planned_bytes: AtomicU64,
    count: AtomicU64,
    checksum: AtomicU64,
}

impl Tally {
    pub(crate) fn plan(&self, count: u64, bytes: u64) {
        self.planned_count.store(count, Ordering::SeqCst);
        self.planned_bytes.store(bytes, Ordering::SeqCst);
    }

    fn add(&self, t: &Totals) {
        self.count.fetch_add(t.count, Ordering::SeqCst);
        // Wrapping, as the checksum is defined modulo 2^64.
        self.checksum.fetch_add(t.checksum, Ordering::SeqCst);
    }

    /// The manifest property, or `None` when there are no large objects. The checksum is
    /// included only once every planned object went through a finished stream.
    pub(crate) fn property(&self) -> Option<serde_json::Value> {
        let count = self.planned_count.load(Ordering::SeqCst);
        if count == 0 {
            return None;
        }
        let all = self.count.load(Ordering::SeqCst) == count;
        let t = Totals {
            count,
            bytes: self.planned_bytes.load(Ordering::SeqCst),
            checksum: self.checksum.load(Ordering::SeqCst),
        };
        Some(t.to_property(all))
    }
}

/// One step of reading large objects.
#[derive(Debug)]
pub(crate) enum Piece {
    /// Object `i` of the list starts.
    Begin(usize),
    /// Some of its bytes, in order.
    Data(Bytes),
}

/// Reads the bytes of listed large objects with bounded memory: small ones [`BATCH_OBJECTS`] at
/// a time up to [`PIECE`] bytes per query, big ones [`PIECE`] by [`PIECE`]. Checks every size
/// against the list and sums [`ObjectDigest`]s as it goes.
pub(crate) struct Reader {
    metas: Vec<LoMeta>,
    next: usize,
    /// Big object being read: index and next offset.
    big: Option<(usize, u64)>,
    queue: VecDeque<Piece>,
    current: Option<(usize, ObjectDigest)>,
    totals: Totals,
}

impl Reader {
    pub(crate) fn new(metas: Vec<LoMeta>) -> Self {
        Reader { metas, next: 0, big: None, queue: VecDeque::new(), current: None, totals: Totals::default() }
    }

    pub(crate) fn meta(&self, i: usize) -> &LoMeta {
        &self.metas[i]
    }

    /// Totals of the objects read so far (complete ones only).
    pub(crate) fn totals(&self) -> Totals {
        self.totals
    }

    /// The next piece, or `None` once every object was read (and summed).
    pub(crate) async fn next(&mut self, c: &Client) -> Result<Option<Piece>> {
        loop {
            if let Some(p) = self.queue.pop_front() {
                match &p {
                    Piece::Begin(i) => {
                        self.finish_current();
                        self.current = Some((*i, ObjectDigest::new(&self.metas[*i])));
                    }
                    Piece::Data(b) => {
                        if let Some((_, d)) = self.current.as_mut() {
                            d.update(b);
                        }
                    }
                }
                return Ok(Some(p));
            }
            if let Some((i, offset)) = self.big {
                let m = &self.metas[i];
                let len = (m.size - offset).min(PIECE as u64);
                let what = format!("read large object {} at {offset}", m.oid);
                let row = c
                    .query_one(
                        "SELECT pg_catalog.lo_get($1, $2, $3)",
                        &[
                            &m.oid,
                            &i64::try_from(offset).unwrap_or(i64::MAX),
                            &i32::try_from(len).unwrap_or(i32::MAX),
                        ],
                    )
                    .await
                    .map_err(pg_err(what.clone()))?;
                let data: Vec<u8> = row.get(0);
                if data.len() as u64 != len {
                    return Err(Error::source(what, format!("got {} bytes, expected {len}", data.len())));
                }
                let offset = offset + len;
                self.big = (offset < m.size).then_some((i, offset));
                self.queue.push_back(Piece::Data(Bytes::from(data)));
                continue;
            }
            if self.next >= self.metas.len() {
                self.finish_current();
                return Ok(None);
            }
            let start = self.next;
            if self.metas[start].size > PIECE as u64 {
                self.queue.push_back(Piece::Begin(start));
                self.big = Some((start, 0));
                self.next += 1;
                continue;
            }
            let mut total = 0u64;
            let mut end = start;
            while end < self.metas.len()
                && end - start < BATCH_OBJECTS
                && self.metas[end].size <= PIECE as u64
                && (end == start || total + self.metas[end].size <= PIECE as u64)
            {
                total += self.metas[end].size;
                end += 1;
            }
            let oids: Vec<u32> = self.metas[start..end].iter().map(|m| m.oid).collect();
            let rows = c
                .query(
                    "SELECT pg_catalog.lo_get(u.o) FROM unnest($1::oid[]) WITH ORDINALITY AS u(o, n) ORDER BY u.n",
                    &[&oids],
                )
                .await
                .map_err(pg_err(format!("read {} large object(s) from {}", oids.len(), oids[0])))?;
            if rows.len() != oids.len() {
                return Err(Error::source(
                    "read large objects",
                    format!("{} rows for {} objects", rows.len(), oids.len()),
                ));
            }
            for (k, r) in rows.iter().enumerate() {
                let i = start + k;
                let data: Vec<u8> = r.get(0);
                if data.len() as u64 != self.metas[i].size {
                    return Err(Error::source(
                        format!("read large object {}", self.metas[i].oid),
                        format!("got {} bytes, expected {}", data.len(), self.metas[i].size),
                    ));
                }
                self.queue.push_back(Piece::Begin(i));
                if !data.is_empty() {
                    self.queue.push_back(Piece::Data(Bytes::from(data)));
                }
            }
            self.next = end;
        }
    }

    fn finish_current(&mut self) {
        if let Some((i, d)) = self.current.take() {
            self.totals.add(self.metas[i].size, d.finish());
        }
    }
}

/// Streams the framing of `metas` (read on `guard`'s connection); when the stream has ended
/// cleanly, its totals are added to `tally`.
pub(crate) fn dump_stream(
    guard: PoolGuard,
    metas: Vec<LoMeta>,
    tally: std::sync::Arc<Tally>,
    count: std::sync::Arc<AtomicU64>,
) -> ByteStream {
    let state = (guard, Reader::new(metas), Some(tally), count);
    futures::stream::try_unfold(state, |(guard, mut reader, mut tally, count)| async move {
        match reader.next(guard.client()).await? {
            Some(Piece::Begin(i)) => {
                count.fetch_add(1, Ordering::Relaxed);
                let h = header(reader.meta(i));
                Ok(Some((h, (guard, reader, tally, count))))
            }
            Some(Piece::Data(b)) => Ok(Some((b, (guard, reader, tally, count)))),
            None => {
                if let Some(t) = tally.take() {
                    t.add(&reader.totals());
                }
                Ok(None)
            }
        }
    })
    .boxed()
}

/// Re-reads every large object of the database on `c` and compares with `want`.
pub(crate) async fn check(c: &Client, want: &Expected) -> Result<Totals> {
    let mut reader = Reader::new(list(c, None, false).await?);
    while reader.next(c).await?.is_some() {}
    let got = reader.totals();
    let matches =
        got.count == want.count && got.bytes == want.bytes && want.checksum.is_none_or(|c| c == got.checksum);
    if !matches {
        let got =
            Expected { count: got.count, bytes: got.bytes, checksum: want.checksum.map(|_| got.checksum) };
        return Err(Error::integrity("large objects after load", want.describe(), got.describe()));
    }
    Ok(got)
}

/// Removes every large object of the database on `c` (in-place restores, which replace the
/// database's contents).
pub(crate) async fn unlink_all(c: &Client) -> Result<u64> {
    let row = c
        .query_one("SELECT count(pg_catalog.lo_unlink(oid)) FROM pg_catalog.pg_largeobject_metadata", &[])
        .await
        .map_err(pg_err("remove the existing large objects"))?;
    Ok(u64::try_from(row.get::<_, i64>(0)).unwrap_or(0))
}

/// One object's header as read back.
#[derive(Debug, PartialEq, Eq)]
struct Header {
    oid: u32,
    size: u64,
    comment_len: Option<u64>,
    owner_len: Option<u64>,
}

/// Pull parser of the framing over a verified byte stream.
pub(crate) struct FrameReader {
    input: ByteStream,
    buf: Bytes,
    eof: bool,
    what: String,
    last_oid: Option<u32>,
}

impl FrameReader {
    pub(crate) fn new(input: ByteStream, what: impl Into<String>) -> Self {
        FrameReader { input, buf: Bytes::new(), eof: false, what: what.into(), last_oid: None }
    }

    fn bad(&self, expected: &str, actual: impl Into<String>) -> Error {
        Error::integrity(self.what.clone(), format!("{FORMAT} framing: {expected}"), actual)
    }

    /// Makes `buf` non-empty unless the input has ended.
    async fn fill(&mut self) -> Result<()> {
        while self.buf.is_empty() && !self.eof {
            match self.input.next().await {
                Some(b) => self.buf = b?,
                None => self.eof = true,
            }
        }
        Ok(())
    }

    async fn header(&mut self) -> Result<Option<Header>> {
        let mut line = Vec::new();
        loop {
            self.fill().await?;
            if self.buf.is_empty() {
                if line.is_empty() {
                    return Ok(None);
                }
                return Err(self.bad("a complete header line", "the data ends inside one (truncated?)"));
            }
            match self.buf.iter().position(|&b| b == b'\n') {
                Some(p) => {
                    line.extend_from_slice(&self.buf[..p]);
                    self.buf.advance(p + 1);
                    break;
                }
                None => {
                    line.extend_from_slice(&self.buf);
                    self.buf.clear();
                }
            }
            if line.len() > MAX_HEADER {
                break;
            }
        }
        if line.len() > MAX_HEADER {
            return Err(self.bad("a header line of at most 80 bytes", "a longer one"));
        }
        let h = parse_header(&line).ok_or_else(|| {
            self.bad(
                "'<oid> <size> <comment-length|-> <owner-length|->'",
                format!("{:?}", String::from_utf8_lossy(&line)),
            )
        })?;
        if self.last_oid.is_some_and(|l| h.oid <= l) {
            return Err(self.bad("oids in ascending order", format!("{} after {:?}", h.oid, self.last_oid)));
        }
        self.last_oid = Some(h.oid);
        Ok(Some(h))
    }

    async fn text(&mut self, len: Option<u64>, field: &str) -> Result<Option<String>> {
        let Some(len) = len else { return Ok(None) };
        // `len` is at most MAX_TEXT (checked when the header was parsed); grow as bytes arrive.
        let mut out = Vec::with_capacity(usize::try_from(len.min(1 << 16)).unwrap_or(0));
        while (out.len() as u64) < len {
            let b = self.data(len - out.len() as u64).await?;
            out.extend_from_slice(&b);
        }
        String::from_utf8(out).map(Some).map_err(|_| self.bad(&format!("a UTF-8 {field}"), "invalid UTF-8"))
    }

    /// Between 1 and `max` (> 0) bytes of the current object.
    async fn data(&mut self, max: u64) -> Result<Bytes> {
        self.fill().await?;
        if self.buf.is_empty() {
            return Err(self.bad("the announced number of bytes", "the data ends early (truncated?)"));
        }
        let n = usize::try_from(max).unwrap_or(usize::MAX).min(self.buf.len());
        Ok(self.buf.split_to(n))
    }
}

fn parse_header(line: &[u8]) -> Option<Header> {
    fn num(s: &[u8]) -> Option<u64> {
        if s.is_empty() || s.len() > 20 || !s.iter().all(u8::is_ascii_digit) || (s.len() > 1 && s[0] == b'0')
        {
            return None;
        }
        std::str::from_utf8(s).ok()?.parse().ok()
    }
    let text_len = |s: &[u8]| -> Option<Option<u64>> {
        if s == b"-" {
            return Some(None);
        }
        num(s).filter(|&n| n <= MAX_TEXT).map(Some)
    };
    let mut f = line.split(|&b| b == b' ');
    let oid = u32::try_from(num(f.next()?)?).ok().filter(|&o| o != 0)?;
    let size = num(f.next()?)?;
    let comment_len = text_len(f.next()?)?;
    let owner_len = text_len(f.next()?)?;
    if f.next().is_some() {
        return None;
    }
    Some(Header { oid, size, comment_len, owner_len })
}

/// Loads a framed stream on `c`: each object is created with its oid (`lo_from_bytea`), its
/// bytes written [`PIECE`] by [`PIECE`] (`lo_put`), then its comment and, with `keep_owners`,
/// its owner set. Consumes the whole stream (so its digest check runs). Returns the count.
pub(crate) async fn load(c: &Client, data: ByteStream, keep_owners: bool, what: &str) -> Result<u64> {
    let mut r = FrameReader::new(data, what);
    let mut count = 0u64;
    let mut buf = BytesMut::new();
    while let Some(h) = r.header().await? {
        let comment = r.text(h.comment_len, "comment").await?;
        let owner = r.text(h.owner_len, "owner").await?;
        let ctx = format!("restore large object {}", h.oid);
        let mut remaining = h.size;
        let mut offset = 0u64;
        let mut created = false;
        buf.clear();
        while remaining > 0 || !created {
            if remaining > 0 {
                let b = r.data(remaining.min((PIECE - buf.len()) as u64)).await?;
                remaining -= b.len() as u64;
                buf.extend_from_slice(&b);
                if buf.len() < PIECE && remaining > 0 {
                    continue;
                }
            }
            if created {
                let at = i64::try_from(offset).unwrap_or(i64::MAX);
                c.execute("SELECT pg_catalog.lo_put($1, $2, $3)", &[&h.oid, &at, &&buf[..]])
                    .await
                    .map_err(pg_err(ctx.clone()))?;
            } else {
                c.execute("SELECT pg_catalog.lo_from_bytea($1, $2)", &[&h.oid, &&buf[..]])
                    .await
                    .map_err(pg_err(ctx.clone()))?;
                created = true;
            }
            offset += buf.len() as u64;
            buf.clear();
        }
        if let Some(text) = comment {
            c.batch_execute(&format!("COMMENT ON LARGE OBJECT {} IS {}", h.oid, quote_literal(&text)))
                .await
                .map_err(pg_err(format!("comment on large object {}", h.oid)))?;
        }
        if let (true, Some(role)) = (keep_owners, owner) {
            c.batch_execute(&format!("ALTER LARGE OBJECT {} OWNER TO {}", h.oid, quote_ident(&role)))
                .await
                .map_err(pg_err(format!("set the owner of large object {}", h.oid)))?;
        }
        count += 1;
    }
    Ok(count)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(oid: u32, size: u64, comment: Option<&str>, owner: Option<&str>) -> LoMeta {
        LoMeta { oid, size, comment: comment.map(Into::into), owner: owner.map(Into::into) }
    }

    /// Frames objects exactly as the dump does, with the given data.
    fn framed(objects: &[(LoMeta, Vec<u8>)]) -> Vec<u8> {
        let mut out = Vec::new();
        for (m, d) in objects {
            out.extend_from_slice(&header(m));
            out.extend_from_slice(d);
        }
        out
    }

    fn stream_of(bytes: &[u8], piece: usize) -> ByteStream {
        let parts: Vec<Result<Bytes>> =
            bytes.chunks(piece.max(1)).map(|c| Ok(Bytes::copy_from_slice(c))).collect();
        futures::stream::iter(parts).boxed()
    }

    /// Parses a stream back into (header, comment, owner, data) without a database.
    async fn parse_all(s: ByteStream) -> Result<Vec<(u32, Option<String>, Option<String>, Vec<u8>)>> {
        let mut r = FrameReader::new(s, "test");
        let mut out = Vec::new();
        while let Some(h) = r.header().await? {
            let c = r.text(h.comment_len, "comment").await?;
            let o = r.text(h.owner_len, "owner").await?;
            let mut d = Vec::new();
            while (d.len() as u64) < h.size {
                d.extend_from_slice(&r.data(h.size - d.len() as u64).await?);
            }
            out.push((h.oid, c, o, d));
        }
        Ok(out)
    }

    fn sample() -> Vec<(LoMeta, Vec<u8>)> {
        let all: Vec<u8> = (0..=255u8).collect();
        vec![
            (meta(7, 0, None, Some("postgres")), vec![]),
            (meta(8, 256, Some("it's\n a \"comment\" ✓"), None), all),
            (meta(4_294_967_295, 5, Some(""), Some("r")), b"a\nb 1".to_vec()),
        ]
    }

    #[test]
    fn header_has_the_documented_shape() {
        assert_eq!(&header(&meta(16385, 3, None, None))[..], b"16385 3 - -\n");
        assert_eq!(&header(&meta(1, 0, Some("hé"), Some("bob")))[..], "1 0 3 3\nhébob".as_bytes());
        assert_eq!(framed_len(&meta(1, 10, Some("x"), None)), b"1 10 1 -\nx".len() as u64 + 10);
    }

    #[tokio::test]
    async fn framing_round_trips_in_any_chunking() {
        let objs = sample();
        let bytes = framed(&objs);
        for piece in [1, 2, 3, 7, 64, bytes.len()] {
            let got = parse_all(stream_of(&bytes, piece)).await.unwrap();
            assert_eq!(got.len(), objs.len());
            for ((oid, c, o, d), (m, data)) in got.iter().zip(&objs) {
                assert_eq!((*oid, c, o, d), (m.oid, &m.comment, &m.owner, data), "piece {piece}");
            }
        }
        assert!(parse_all(stream_of(b"", 1)).await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn every_truncation_is_refused() {
        let bytes = framed(&sample());
        let boundaries: Vec<usize> = {
            let mut b = vec![0];
            let mut at = 0;
            for (m, d) in sample() {
                at += header(&m).len() + d.len();
                b.push(at);
            }
            b
        };
        for cut in 0..bytes.len() {
            let r = parse_all(stream_of(&bytes[..cut], 5)).await;
            if boundaries.contains(&cut) {
                assert!(r.is_ok(), "cut at an object boundary {cut} parses");
            } else {
                assert!(matches!(r, Err(Error::Integrity { .. })), "cut at {cut}: {r:?}");
            }
        }
    }

    #[tokio::test]
    async fn malformed_headers_are_refused() {
        for bad in [
            &b"0 1 - -\nx"[..],
            b"01 1 - -\nx",
            b"1 1 - \nx",
            b"1 1 - - -\nx",
            b"1 -1 - -\n",
            b"4294967296 0 - -\n",
            b"1 0 67108865 -\n",
            b"x 0 - -\n",
            b" 1 0 - -\n",
            b"2 0 - -\n1 0 - -\n",
            b"1 0 - -\n1 0 - -\n",
            b"1 0 2 -\n\xff\xfe",
        ] {
            let r = parse_all(stream_of(bad, 3)).await;
            assert!(matches!(r, Err(Error::Integrity { .. })), "{:?}: {r:?}", String::from_utf8_lossy(bad));
        }
        let long = vec![b'1'; 200];
        assert!(parse_all(stream_of(&long, 7)).await.is_err());
    }

    #[test]
    fn digest_covers_oid_size_comment_and_data() {
        let d = |m: &LoMeta, data: &[u8]| {
            let mut x = ObjectDigest::new(m);
            x.update(data);
            x.finish()
        };
        let base = d(&meta(5, 2, Some("c"), None), b"ab");
        assert_eq!(base, d(&meta(5, 2, Some("c"), Some("other owner")), b"ab"));
        for other in [
            d(&meta(6, 2, Some("c"), None), b"ab"),
            d(&meta(5, 2, None, None), b"ab"),
            d(&meta(5, 2, Some(""), None), b"ab"),
            d(&meta(5, 2, Some("d"), None), b"ab"),
            d(&meta(5, 2, Some("c"), None), b"ba"),
        ] {
            assert_ne!(base, other);
        }
        // Split updates give the same digest.
        let mut x = ObjectDigest::new(&meta(5, 2, Some("c"), None));
        x.update(b"a");
        x.update(b"b");
        assert_eq!(x.finish(), base);
    }

    #[test]
    fn expected_reads_what_totals_write() {
        let t = Totals { count: 3, bytes: 10, checksum: u64::MAX - 1 };
        let props = std::collections::BTreeMap::from([(PROPERTY.to_string(), t.to_property(true))]);
        let e = Expected::from_properties(&props).unwrap().unwrap();
        assert_eq!(e, Expected { count: 3, bytes: 10, checksum: Some(u64::MAX - 1) });
        let props = std::collections::BTreeMap::from([(PROPERTY.to_string(), t.to_property(false))]);
        assert_eq!(Expected::from_properties(&props).unwrap().unwrap().checksum, None);
        assert_eq!(Expected::from_properties(&Default::default()).unwrap(), None);
        let tally = Tally::default();
        assert_eq!(tally.property(), None);
        tally.plan(2, 10);
        assert!(tally.property().unwrap().get("checksum").is_none(), "not all summed yet");
        tally.add(&Totals { count: 2, bytes: 10, checksum: 5 });
        assert_eq!(tally.property().unwrap()["checksum"], "5");
    }
}
