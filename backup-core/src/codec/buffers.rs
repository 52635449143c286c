//! Buffers a stream stage fills and sends downstream as `Bytes`, given back to it when the last
//! holder drops them, so that the stage's next chunks are written into memory already faulted in.
//!
//! A new buffer per chunk was fresh memory from the kernel more often than not (the allocator
//! returns freed heap tops to it), and faulting it in (page faults, zeroing, cgroup accounting)
//! was ~4% of a PostgreSQL backup's client CPU and half its page faults (docs/benchmarks.md,
//! "Chunk buffers kept by their stage").

use std::sync::{Arc, Mutex};

use bytes::Bytes;

/// The buffers of one stage: at most `max` kept, each of at least `capacity` bytes.
#[derive(Clone)]
pub(crate) struct Buffers(Arc<Kept>);

struct Kept {
    bufs: Mutex<Vec<Vec<u8>>>,
    capacity: usize,
    max: usize,
}

impl Buffers {
    pub(crate) fn new(capacity: usize, max: usize) -> Self {
        Buffers(Arc::new(Kept { bufs: Mutex::new(Vec::new()), capacity, max }))
    }

    /// An empty buffer of at least the stage's capacity: a kept one, or a new one.
    pub(crate) fn take(&self) -> Vec<u8> {
        let kept = self.0.bufs.lock().ok().and_then(|mut v| v.pop());
        kept.unwrap_or_else(|| Vec::with_capacity(self.0.capacity))
    }

    /// `buf` as `Bytes`; the buffer comes back to these buffers when the last clone is dropped
    /// (kept unless `max` are, or it grew past four times the capacity: a huge row's buffer).
    pub(crate) fn send(&self, buf: Vec<u8>) -> Bytes {
        Bytes::from_owner(Sent { buf, kept: self.0.clone() })
    }

    #[cfg(test)]
    pub(crate) fn kept(&self) -> usize {
        self.0.bufs.lock().map(|v| v.len()).unwrap_or_default()
    }
}

/// A sent buffer: the owner of its `Bytes`.
struct Sent {
    buf: Vec<u8>,
    kept: Arc<Kept>,
}

impl AsRef<[u8]> for Sent {
    fn as_ref(&self) -> &[u8] {
        &self.buf
    }
}

impl Drop for Sent {
    fn drop(&mut self) {
        let mut buf = std::mem::take(&mut self.buf);
        let cap = buf.capacity();
        if cap < self.kept.capacity || cap > self.kept.capacity * 4 {
            return;
        }
        buf.clear();
        if let Ok(mut v) = self.kept.bufs.lock()
            && v.len() < self.kept.max
        {
            v.push(buf);
        }
    }
}
