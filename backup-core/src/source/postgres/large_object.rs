//! Large objects (`pg_largeobject`): listing them inside the snapshot, reading their bytes in
//! bounded pieces (`lo_get(oid, offset, len)`), and the `pg-lo-sha256-sum-v1` checksum, computed
//! by the same [`Reader`] on the dump side (while streaming) and on the restored database (one
//! extra read), so a restore proves it loaded what was dumped. The framing of a data object and
//! loading them back under the same oids: [`lo_frame`](super::lo_frame).
//!
//! Memory: at most one [`PIECE`] of large-object bytes (plus the metadata list: oid, size,
//! comment, owner per object) per stream, whatever the objects' sizes.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use sha2::{Digest, Sha256};
use tokio_postgres::Client;

use super::conn::pg_err;
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

    pub(super) fn add(&self, t: &Totals) {
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
                self.read_big(c, i, offset).await?;
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
            self.read_small(c, start).await?;
        }
    }

    /// Queues the next [`PIECE`] of big object `i` from `offset`.
    async fn read_big(&mut self, c: &Client, i: usize, offset: u64) -> Result<()> {
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
        Ok(())
    }

    /// Queues a batch of small objects from `start`: up to [`BATCH_OBJECTS`] of them and
    /// [`PIECE`] bytes, read in one query.
    async fn read_small(&mut self, c: &Client, start: usize) -> Result<()> {
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
        Ok(())
    }

    fn finish_current(&mut self) {
        if let Some((i, d)) = self.current.take() {
            self.totals.add(self.metas[i].size, d.finish());
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(oid: u32, size: u64, comment: Option<&str>, owner: Option<&str>) -> LoMeta {
        LoMeta { oid, size, comment: comment.map(Into::into), owner: owner.map(Into::into) }
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
