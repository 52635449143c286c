//! The `pg-large-objects-v1` framing of a large-object data object (normative in
//! docs/FORMAT.md): per object a header line `<oid> <size> <comment-length|-> <owner-length|->`,
//! the comment, the owner, then the data. Written while the dump streams ([`dump_stream`]), read
//! back by a pull parser over the verified stream and loaded under the same oids ([`load`]).

use std::sync::atomic::{AtomicU64, Ordering};

use bytes::{Buf, Bytes, BytesMut};
use futures::StreamExt;
use tokio_postgres::Client;

use super::conn::{pg_err, quote_ident, quote_literal};
use super::large_object::{FORMAT, LoMeta, PIECE, Piece, Reader, Tally};
use crate::codec::ByteStream;
use crate::error::{Error, Result};
use crate::source::pool::PoolGuard;

/// Longest comment or owner name accepted from a backup (a hostile length is refused before
/// anything is allocated).
const MAX_TEXT: u64 = 64 << 20;
/// Longest header line accepted (the longest valid one has 10 + 3 x 20 digits and 3 spaces).
const MAX_HEADER: usize = 80;

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

/// Streams the framing of `metas` (read on `guard`'s connection); when the stream has ended
/// cleanly, its totals are added to `tally`.
pub(crate) fn dump_stream(
    guard: PoolGuard<Client>,
    metas: Vec<LoMeta>,
    tally: std::sync::Arc<Tally>,
    count: std::sync::Arc<AtomicU64>,
) -> ByteStream {
    let state = (guard, Reader::new(metas), Some(tally), count);
    futures::stream::try_unfold(state, |(guard, mut reader, mut tally, count)| async move {
        match reader.next(&guard).await? {
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
}
