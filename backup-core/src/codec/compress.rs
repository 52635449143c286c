//! Streaming compression and decompression (zstd, gzip, none) on blocking threads.
//!
//! Each encoded object is one independent zstd frame or gzip member, so objects decompress in
//! parallel and each can be read by the standard command-line tools. Memory per stream is bounded:
//! two channels of [`CHANNEL_DEPTH`] chunks plus the codec's own window (zstd decoding is capped at
//! a 2^[`MAX_WINDOW_LOG`]-byte window whatever a hostile frame header claims).

use std::io::{Read, Write};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures::StreamExt;
use tokio::sync::mpsc;
use tokio_stream_shim::ReceiverStream;

use super::ByteStream;
use super::buffers::Buffers;
use crate::error::{Error, Result};
use crate::model::Compression;

/// Chunks buffered between stages.
pub const CHANNEL_DEPTH: usize = 4;
/// Size of the chunks codecs emit.
pub const OUT_CHUNK: usize = 1 << 20;
/// Largest zstd window accepted when decoding (128 MiB).
pub const MAX_WINDOW_LOG: u32 = 27;

/// Codec of a stored object as named in the manifest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Codec {
    /// zstd frame(s).
    Zstd,
    /// gzip member(s).
    Gzip,
    /// Raw bytes.
    None,
}

impl Codec {
    /// Parses a manifest codec name.
    pub fn from_name(name: &str) -> Result<Self> {
        match name {
            "zstd" => Ok(Codec::Zstd),
            "gzip" => Ok(Codec::Gzip),
            "none" => Ok(Codec::None),
            other => Err(Error::UnsupportedFormat {
                what: "object codec".into(),
                reason: format!("unknown codec {other:?}"),
            }),
        }
    }

    /// Guesses the codec of a plain dump file from its name (`.zst`, `.gz`, else none).
    pub fn from_file_name(name: &str) -> Self {
        let lower = name.to_ascii_lowercase();
        if lower.ends_with(".zst") || lower.ends_with(".zstd") {
            Codec::Zstd
        } else if lower.ends_with(".gz") {
            Codec::Gzip
        } else {
            Codec::None
        }
    }
}

impl From<Compression> for Codec {
    fn from(c: Compression) -> Self {
        match c {
            Compression::Zstd(_) => Codec::Zstd,
            Compression::Gzip(_) => Codec::Gzip,
            Compression::None => Codec::None,
        }
    }
}

/// Compresses a stream. zstd always runs in its multithreaded mode, with `threads` workers (at
/// least one; more is worth it for large objects when fewer objects than cores are in flight).
pub fn encode(input: ByteStream, compression: Compression, threads: u32) -> ByteStream {
    encode_with(input, compression, threads, None)
}

/// [`encode`] on a zstd context of `kept` (or a new one), given back to it once the frame is
/// finished cleanly.
pub(crate) fn encode_with(
    input: ByteStream,
    compression: Compression,
    threads: u32,
    kept: Option<ZstdContexts>,
) -> ByteStream {
    if compression == Compression::None {
        return input;
    }
    run_blocking(input, move |mut rx, tx| {
        let sink = ChannelWriter::new(tx);
        let io = |e: std::io::Error| Error::io(format!("{compression} compression"), e);
        match compression {
            Compression::Zstd(level) => {
                let mut cctx = ZstdContext::take(kept);
                // `with_context` resets the context's session (whatever frame an earlier stream
                // left unfinished is dropped); the parameters are set again below, every one the
                // object depends on.
                let mut enc = zstd::stream::write::Encoder::with_context(sink, cctx.get());
                enc.set_parameter(zstd::stream::raw::CParameter::CompressionLevel(level)).map_err(io)?;
                // At least one worker, even for one thread: the single-threaded stream copies
                // its input into a ring buffer, and once that wraps every block is compressed
                // through zstd's slower `extDict` path; a worker compresses each 8 MiB job with
                // the previous job's tail as a contiguous prefix (~6% less client CPU for a
                // MariaDB backup, same frame format, slightly smaller output).
                enc.multithread(threads.max(1)).map_err(io)?;
                enc.include_checksum(true).map_err(io)?;
                pump(&mut rx, &mut enc).map_err(io)?;
                let mut sink = enc.finish().map_err(io)?;
                sink.flush().map_err(io)?;
                cctx.give_back();
            }
            Compression::Gzip(level) => {
                let mut enc = flate2::write::GzEncoder::new(sink, flate2::Compression::new(level));
                pump(&mut rx, &mut enc).map_err(io)?;
                let mut sink = enc.finish().map_err(io)?;
                sink.flush().map_err(io)?;
            }
            Compression::None => unreachable_none(),
        }
        Ok(())
    })
}

/// Most zstd compression contexts kept for the next object (the backup's objects in flight at
/// once: `--jobs`, plus one or two for the schema and small objects).
const KEPT_CONTEXTS: usize = 4;

/// zstd compression contexts of one backup's finished objects, kept for its next ones (at most
/// [`KEPT_CONTEXTS`]). A multithreaded context owns its workers' job buffers (about 3 x 8 MiB at
/// level 3 with one worker); a new context per object got fresh pages from the kernel for every
/// object, and faulting them in (page faults, zeroing, cgroup accounting) was ~5% of a
/// PostgreSQL backup's client CPU. The contexts are freed with the last clone: the backup's
/// (`backup::dump::Job`), however the backup ends (an error, a cancellation, its future dropped
/// by an FFI caller's deadline), or that of a stream still finishing after it. Nothing is kept
/// beyond its backup, so guard's staging or restore after its safety backup, or an FFI process
/// after a backup, does not carry them.
#[derive(Clone, Default)]
pub(crate) struct ZstdContexts(Arc<Mutex<Vec<zstd::zstd_safe::CCtx<'static>>>>);

impl ZstdContexts {
    #[cfg(test)]
    fn len(&self) -> usize {
        self.0.lock().map(|v| v.len()).unwrap_or_default()
    }
}

/// A context taken from a [`ZstdContexts`] (or a new one); dropped with the stream unless given
/// back after a clean finish.
struct ZstdContext {
    cctx: Option<zstd::zstd_safe::CCtx<'static>>,
    kept: Option<ZstdContexts>,
}

impl ZstdContext {
    fn take(kept: Option<ZstdContexts>) -> Self {
        let reused = kept.as_ref().and_then(|k| k.0.lock().ok().and_then(|mut v| v.pop()));
        ZstdContext { cctx: Some(reused.unwrap_or_else(zstd::zstd_safe::CCtx::create)), kept }
    }

    fn get(&mut self) -> &mut zstd::zstd_safe::CCtx<'static> {
        self.cctx.get_or_insert_with(zstd::zstd_safe::CCtx::create)
    }

    /// Keeps the context for the next object (only after its frame finished cleanly).
    fn give_back(mut self) {
        if let (Some(c), Some(kept)) = (self.cctx.take(), self.kept.take())
            && let Ok(mut v) = kept.0.lock()
            && v.len() < KEPT_CONTEXTS
        {
            v.push(c);
        }
    }
}

/// Decompresses a stream. Hostile input yields an error, never a panic or an unbounded allocation.
pub fn decode(input: ByteStream, codec: Codec, what: String) -> ByteStream {
    if codec == Codec::None {
        return input;
    }
    run_blocking(input, move |rx, tx| {
        let reader = ChannelReader { rx, cur: Bytes::new() };
        let bad = |e: std::io::Error| {
            Error::integrity(what.clone(), format!("valid {codec:?} data"), e.to_string())
        };
        let mut sink = ChannelWriter::new(tx);
        match codec {
            Codec::Zstd => {
                let mut dec = zstd::stream::read::Decoder::new(reader).map_err(bad)?;
                dec.window_log_max(MAX_WINDOW_LOG).map_err(bad)?;
                copy_out(&mut dec, &mut sink, &bad)?;
            }
            Codec::Gzip => {
                let mut dec = flate2::read::MultiGzDecoder::new(reader);
                copy_out(&mut dec, &mut sink, &bad)?;
            }
            Codec::None => unreachable_none(),
        }
        sink.flush().map_err(|e| Error::io("decompress", e))?;
        Ok(())
    })
}

fn unreachable_none() {
    // `None` returns early in both callers; reaching here would be a logic error caught in tests.
    debug_assert!(false, "codec none handled by caller");
}

fn copy_out<R: Read>(
    dec: &mut R,
    sink: &mut ChannelWriter,
    bad: &dyn Fn(std::io::Error) -> Error,
) -> Result<()> {
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = match dec.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => return Ok(()),
            Err(e) => return Err(bad(e)),
        };
        if sink.write_all(&buf[..n]).is_err() {
            // Consumer went away; stop quietly.
            return Ok(());
        }
    }
}

pub(crate) fn pump(rx: &mut mpsc::Receiver<Bytes>, w: &mut impl Write) -> std::io::Result<()> {
    while let Some(b) = rx.blocking_recv() {
        w.write_all(&b)?;
    }
    Ok(())
}

/// Runs `work` on a blocking thread with the input forwarded to it through a bounded channel and
/// its output sent back through another. An input error is passed straight to the output and the
/// work sees end-of-input, so the consumer always sees the first error.
pub(crate) fn run_blocking<F>(mut input: ByteStream, work: F) -> ByteStream
where
    F: FnOnce(mpsc::Receiver<Bytes>, mpsc::Sender<Result<Bytes>>) -> Result<()> + Send + 'static,
{
    let (in_tx, in_rx) = mpsc::channel::<Bytes>(CHANNEL_DEPTH);
    let (out_tx, out_rx) = mpsc::channel::<Result<Bytes>>(CHANNEL_DEPTH);
    let err_tx = out_tx.clone();
    tokio::spawn(async move {
        while let Some(item) = input.next().await {
            match item {
                Ok(b) => {
                    if in_tx.send(b).await.is_err() {
                        return;
                    }
                }
                Err(e) => {
                    let _ = err_tx.send(Err(e)).await;
                    return;
                }
            }
        }
    });
    tokio::task::spawn_blocking(move || {
        let tx = out_tx.clone();
        if let Err(e) = work(in_rx, out_tx) {
            let _ = tx.blocking_send(Err(e));
        }
    });
    ReceiverStream::new(out_rx).boxed()
}

/// Output buffers a [`ChannelWriter`] keeps for its next chunks.
const KEPT_OUT_BUFFERS: usize = CHANNEL_DEPTH * 2;

/// `Write` that emits [`OUT_CHUNK`]-sized `Bytes` into a channel (blocking when it is full), each
/// written into a buffer of the writer's [`Buffers`]: a chunk's buffer comes back once the store
/// has written the chunk and dropped it.
pub(crate) struct ChannelWriter {
    tx: mpsc::Sender<Result<Bytes>>,
    buf: Vec<u8>,
    kept: Buffers,
}

impl ChannelWriter {
    pub(crate) fn new(tx: mpsc::Sender<Result<Bytes>>) -> Self {
        let kept = Buffers::new(OUT_CHUNK, KEPT_OUT_BUFFERS);
        ChannelWriter { tx, buf: kept.take(), kept }
    }

    fn send_buf(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = self.kept.send(std::mem::replace(&mut self.buf, self.kept.take()));
        self.tx.blocking_send(Ok(chunk)).map_err(|_| std::io::Error::from(std::io::ErrorKind::BrokenPipe))
    }
}

impl Write for ChannelWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        let room = OUT_CHUNK - self.buf.len().min(OUT_CHUNK);
        let n = data.len().min(room.max(1));
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() >= OUT_CHUNK {
            self.send_buf()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.send_buf()
    }
}

/// `Read` over a channel of chunks.
pub(crate) struct ChannelReader {
    pub(crate) rx: mpsc::Receiver<Bytes>,
    pub(crate) cur: Bytes,
}

impl Read for ChannelReader {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        while self.cur.is_empty() {
            match self.rx.blocking_recv() {
                Some(b) => self.cur = b,
                None => return Ok(0),
            }
        }
        let n = out.len().min(self.cur.len());
        out[..n].copy_from_slice(&self.cur.split_to(n));
        Ok(n)
    }
}

/// Minimal `Stream` over a tokio receiver (avoids a dependency on tokio-stream).
mod tokio_stream_shim {
    use std::pin::Pin;
    use std::task::{Context, Poll};

    use tokio::sync::mpsc::Receiver;

    pub struct ReceiverStream<T>(Receiver<T>);

    impl<T> ReceiverStream<T> {
        pub fn new(rx: Receiver<T>) -> Self {
            ReceiverStream(rx)
        }
    }

    impl<T> futures::Stream for ReceiverStream<T> {
        type Item = T;
        fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<T>> {
            self.0.poll_recv(cx)
        }
    }
}

pub(crate) use tokio_stream_shim::ReceiverStream as ChannelStream;

#[cfg(test)]
mod tests {
    use super::*;

    fn one(data: Vec<u8>) -> ByteStream {
        futures::stream::iter(vec![Ok(Bytes::from(data))]).boxed()
    }

    async fn collect(s: ByteStream) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        let mut s = s;
        while let Some(b) = s.next().await {
            out.extend_from_slice(&b?);
        }
        Ok(out)
    }

    /// A chunk's buffer goes back to its writer only once the chunk is dropped, and the writer's
    /// next chunks are written into it; chunks still held keep their bytes.
    #[test]
    fn output_chunks_come_back_to_their_writer_once_dropped() {
        let (tx, mut rx) = mpsc::channel::<Result<Bytes>>(64);
        let mut w = ChannelWriter::new(tx);
        let fill = |w: &mut ChannelWriter, byte: u8| w.write_all(&vec![byte; OUT_CHUNK]).unwrap();
        let mut next = || rx.try_recv().unwrap().unwrap();
        fill(&mut w, 1);
        let first = next();
        let first_at = first.as_ptr();
        // Held downstream: the writer's next chunks go elsewhere and leave it as it was.
        fill(&mut w, 2);
        fill(&mut w, 3);
        let (second, third) = (next(), next());
        assert!(first.iter().all(|&b| b == 1) && second.iter().all(|&b| b == 2));
        assert!(third.iter().all(|&b| b == 3));
        assert!(![second.as_ptr(), third.as_ptr()].contains(&first_at));
        assert_eq!(w.kept.kept(), 0, "nothing given back while every chunk is held");
        // Dropped (a clone too: the buffer comes back with the last holder).
        let clone = first.clone();
        drop(first);
        assert_eq!(w.kept.kept(), 0);
        drop(clone);
        assert_eq!(w.kept.kept(), 1);
        // The writer is filling the buffer it took when it sent `third`; the one after is `first`'s.
        fill(&mut w, 4);
        fill(&mut w, 5);
        let (fourth, fifth) = (next(), next());
        assert_eq!(fifth.as_ptr(), first_at, "the dropped chunk's buffer is reused");
        assert!(fourth.iter().all(|&b| b == 4) && fifth.iter().all(|&b| b == 5));
        assert!(second.iter().all(|&b| b == 2) && third.iter().all(|&b| b == 3));
        // A short last chunk, and no more than KEPT_OUT_BUFFERS kept however many come back.
        w.write_all(b"tail").unwrap();
        w.flush().unwrap();
        assert_eq!(&next()[..], b"tail");
        for _ in 0..KEPT_OUT_BUFFERS + 4 {
            fill(&mut w, 6);
        }
        let held: Vec<Bytes> = std::iter::from_fn(|| rx.try_recv().ok().map(|c| c.unwrap())).collect();
        assert_eq!(held.len(), KEPT_OUT_BUFFERS + 4);
        drop((second, third, fourth, fifth, held));
        assert_eq!(w.kept.kept(), KEPT_OUT_BUFFERS);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn round_trips_every_codec() {
        let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8 ^ (i >> 12) as u8).collect();
        for (c, threads) in [
            (Compression::Zstd(3), 1),
            (Compression::Zstd(1), 2),
            (Compression::Gzip(6), 1),
            (Compression::None, 1),
        ] {
            let enc = collect(encode(one(data.clone()), c, threads)).await.unwrap();
            let dec = collect(decode(one(enc), Codec::from(c), "t".into())).await.unwrap();
            assert_eq!(dec, data, "{c}");
        }
    }

    /// One thread still compresses through one zstd worker (not the single-threaded stream,
    /// whose ring buffer sends every block after the first 2 MiB through the slower `extDict`
    /// path): the object is the one frame zstd's one-worker mode writes for these bytes.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn zstd_compresses_through_one_worker() {
        let data: Vec<u8> = (0..12_000_000u32)
            .flat_map(|i| format!("{}\t{}\tpaid\n", i, i.wrapping_mul(2_654_435_761) % 100_000).into_bytes())
            .take(12 << 20)
            .collect();
        let pieces: Vec<Result<Bytes>> =
            data.chunks(1 << 20).map(|c| Ok(Bytes::copy_from_slice(c))).collect();
        let got =
            collect(encode(futures::stream::iter(pieces).boxed(), Compression::Zstd(3), 1)).await.unwrap();
        let mut want = zstd::stream::write::Encoder::new(Vec::new(), 3).unwrap();
        want.multithread(1).unwrap();
        want.include_checksum(true).unwrap();
        want.write_all(&data).unwrap();
        let want = want.finish().unwrap();
        assert_eq!(got, want);
        assert_eq!(zstd::zstd_safe::find_frame_compressed_size(&got), Ok(got.len()), "one frame");
    }

    /// Rows of text that compress well, 6 MiB.
    fn text_data() -> Vec<u8> {
        (0..3_000_000u32)
            .flat_map(|i| format!("{i}\t{}\n", i.wrapping_mul(2_654_435_761) % 1000).into_bytes())
            .take(6 << 20)
            .collect()
    }

    /// The frame a new encoder writes.
    fn fresh_frame(data: &[u8], level: i32, threads: u32) -> Vec<u8> {
        let mut e = zstd::stream::write::Encoder::new(Vec::new(), level).unwrap();
        e.multithread(threads).unwrap();
        e.include_checksum(true).unwrap();
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    /// Waits until nothing but `kept` itself holds its contexts (the encoders' threads have
    /// ended).
    async fn alone(kept: &ZstdContexts) {
        for _ in 0..400 {
            if Arc::strong_count(&kept.0) == 1 {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(25)).await;
        }
        panic!("an encoder still holds the kept contexts after 10 s");
    }

    /// Contexts are kept from object to object: an object compressed on a context that last
    /// wrote another level with other workers is still the frame a new encoder writes.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_kept_zstd_context_writes_what_a_new_one_does() {
        let data = text_data();
        let kept = ZstdContexts::default();
        for (level, threads) in [(19, 2), (3, 1), (1, 2), (3, 1), (19, 1), (3, 2)] {
            let s = encode_with(one(data.clone()), Compression::Zstd(level), threads, Some(kept.clone()));
            let got = collect(s).await.unwrap();
            let want = fresh_frame(&data, level, threads);
            assert!(
                got == want,
                "level {level}, {threads} workers: {} bytes, a new encoder {}",
                got.len(),
                want.len()
            );
            alone(&kept).await;
            assert_eq!(kept.len(), 1, "the context was kept for the next object");
        }
    }

    /// An object whose reader goes away mid-frame drops its context instead of keeping it, and
    /// the next object is still a new encoder's frame. The kept contexts are freed with their
    /// last holder: a backup whose handle is dropped (an error, a cancellation, an FFI caller's
    /// deadline dropping the backup's future) while an object is still being compressed keeps
    /// nothing once that object ends, and nothing survives the backup in the process.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn kept_zstd_contexts_are_dropped_mid_frame_and_freed_with_their_last_holder() {
        let data = text_data();
        let want = fresh_frame(&data, 3, 1);
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let noise: Vec<u8> = (0..24 << 20)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                seed as u8
            })
            .collect();
        let kept = ZstdContexts::default();
        let z3 = Compression::Zstd(3);
        assert_eq!(collect(encode_with(one(data.clone()), z3, 1, Some(kept.clone()))).await.unwrap(), want);
        alone(&kept).await;
        assert_eq!(kept.len(), 1);
        // 24 MiB that do not compress: dozens of output chunks, so the reader leaves mid-frame.
        let mut s = encode_with(one(noise), z3, 1, Some(kept.clone()));
        s.next().await.unwrap().unwrap();
        drop(s);
        alone(&kept).await;
        assert_eq!(kept.len(), 0, "a context left mid-frame was kept");
        assert_eq!(collect(encode_with(one(data.clone()), z3, 1, Some(kept.clone()))).await.unwrap(), want);
        alone(&kept).await;
        assert_eq!(kept.len(), 1);
        // The holder goes first, the object being compressed ends after it.
        let held = Arc::downgrade(&kept.0);
        let s = encode_with(one(data.clone()), z3, 1, Some(kept.clone()));
        drop(kept);
        assert_eq!(collect(s).await.unwrap(), want);
        for _ in 0..400 {
            if held.strong_count() == 0 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(25)).await;
        }
        assert!(held.upgrade().is_none(), "the kept contexts outlived every holder");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn hostile_bytes_are_an_error_not_a_panic() {
        for codec in [Codec::Zstd, Codec::Gzip] {
            let r =
                collect(decode(one(b"\x28\xb5\x2f\xfd garbage garbage".to_vec()), codec, "x".into())).await;
            assert!(r.is_err(), "{codec:?}");
        }
        // A truncated zstd frame is an error too.
        let enc = collect(encode(one(vec![7u8; 100_000]), Compression::Zstd(3), 1)).await.unwrap();
        let r = collect(decode(one(enc[..enc.len() / 2].to_vec()), Codec::Zstd, "x".into())).await;
        assert!(r.is_err());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn input_errors_reach_the_consumer() {
        let s =
            futures::stream::iter(vec![Ok(Bytes::from_static(b"abc")), Err(Error::Cancelled("boom".into()))])
                .boxed();
        let r = collect(encode(s, Compression::Zstd(3), 1)).await;
        assert!(matches!(r, Err(Error::Cancelled(_))));
    }
}
