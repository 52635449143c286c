//! SHA-256 and byte counts computed while bytes stream past, and verification of a stream against
//! what a manifest recorded.

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures::StreamExt;
use sha2::{Digest, Sha256};

use super::ByteStream;
use crate::error::Error;

/// Running SHA-256 and length of a byte stream.
#[derive(Debug, Clone, Default)]
pub struct Tally {
    hasher: Sha256,
    bytes: u64,
}

impl Tally {
    /// Feeds bytes.
    pub fn update(&mut self, data: &[u8]) {
        self.hasher.update(data);
        self.bytes += data.len() as u64;
    }

    /// Bytes seen so far.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Lower-case hex SHA-256 of everything seen.
    pub fn hex_digest(&self) -> String {
        hex::encode(self.hasher.clone().finalize())
    }
}

/// A shared handle to a [`Tally`] being filled by a stream.
pub type TallyHandle = Arc<Mutex<Tally>>;

/// Reads the tally's current (length, hex digest). Poisoning cannot happen: the lock is held only
/// for plain arithmetic that cannot panic.
pub fn read_tally(handle: &TallyHandle) -> (u64, String) {
    let t = handle.lock().unwrap_or_else(|p| p.into_inner());
    (t.bytes(), t.hex_digest())
}

/// Wraps a stream so every chunk passing through is counted and hashed.
pub fn tally(input: ByteStream) -> (ByteStream, TallyHandle) {
    let handle: TallyHandle = Arc::default();
    let h = handle.clone();
    let out = input.map(move |item| {
        if let Ok(b) = &item {
            h.lock().unwrap_or_else(|p| p.into_inner()).update(b);
        }
        item
    });
    (out.boxed(), handle)
}

/// Wraps a stream so it fails with [`Error::Integrity`] unless exactly `expected_len` bytes with
/// SHA-256 `expected_sha256` pass through. The error comes no later than the last chunk, so a
/// consumer that commits only after a clean end of stream never commits corrupt data. A stream
/// longer than promised fails as soon as it exceeds the length.
pub fn verified(input: ByteStream, what: String, expected_len: u64, expected_sha256: String) -> ByteStream {
    checked(input, what, expected_len, Some(expected_sha256))
}

/// [`verified`] for the length alone, for a consumer that checks the SHA-256 itself on the bytes
/// it keeps before it commits them (SQLite's read-back of the restored file against its page
/// image): the stream still fails as soon as it exceeds `expected_len`, and at its end when short.
pub fn verified_length(input: ByteStream, what: String, expected_len: u64) -> ByteStream {
    checked(input, what, expected_len, None)
}

fn checked(
    input: ByteStream,
    what: String,
    expected_len: u64,
    expected_sha256: Option<String>,
) -> ByteStream {
    let state = (input, Tally::default(), what, false);
    futures::stream::unfold(state, move |(mut input, mut t, what, done)| {
        let expected_sha256 = expected_sha256.clone();
        async move {
            if done {
                return None;
            }
            match input.next().await {
                Some(Ok(b)) => {
                    match expected_sha256 {
                        Some(_) => t.update(&b),
                        None => t.bytes += b.len() as u64,
                    }
                    if t.bytes() > expected_len {
                        let e = Error::integrity(
                            what.clone(),
                            format!("{expected_len} bytes"),
                            format!("more than {expected_len} bytes"),
                        );
                        return Some((Err(e), (input, t, what, true)));
                    }
                    Some((Ok::<Bytes, Error>(b), (input, t, what, false)))
                }
                Some(Err(e)) => Some((Err(e), (input, t, what, true))),
                None => {
                    if t.bytes() != expected_len {
                        let e = Error::integrity(
                            what.clone(),
                            format!("{expected_len} bytes"),
                            format!("{} bytes (truncated)", t.bytes()),
                        );
                        return Some((Err(e), (input, t, what, true)));
                    }
                    let expected_sha256 = expected_sha256?;
                    let actual = t.hex_digest();
                    if actual != expected_sha256 {
                        let e = Error::integrity(
                            what.clone(),
                            format!("sha256 {expected_sha256}"),
                            format!("sha256 {actual}"),
                        );
                        return Some((Err(e), (input, t, what, true)));
                    }
                    None
                }
            }
        }
    })
    .boxed()
}

/// SHA-256 of a byte slice as lower-case hex.
pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunks(parts: &[&'static [u8]]) -> ByteStream {
        futures::stream::iter(parts.iter().map(|p| Ok(Bytes::from_static(p))).collect::<Vec<_>>()).boxed()
    }

    #[tokio::test]
    async fn tally_matches_one_shot_digest() {
        let (s, h) = tally(chunks(&[b"hello ", b"world"]));
        let _: Vec<_> = s.collect().await;
        assert_eq!(read_tally(&h), (11, sha256_hex(b"hello world")));
    }

    #[tokio::test]
    async fn verified_passes_good_and_rejects_bad() {
        let good = sha256_hex(b"abcdef");
        let out: Vec<_> = verified(chunks(&[b"abc", b"def"]), "o".into(), 6, good.clone()).collect().await;
        assert!(out.iter().all(Result::is_ok));
        let out: Vec<_> = verified(chunks(&[b"abc", b"deX"]), "o".into(), 6, good.clone()).collect().await;
        assert!(matches!(out.last(), Some(Err(Error::Integrity { .. }))));
        let out: Vec<_> = verified(chunks(&[b"abc"]), "o".into(), 6, good.clone()).collect().await;
        assert!(out.last().unwrap().as_ref().unwrap_err().to_string().contains("truncated"));
        let out: Vec<_> = verified(chunks(&[b"abc", b"defg"]), "o".into(), 6, good).collect().await;
        assert!(matches!(out.last(), Some(Err(Error::Integrity { .. }))));
    }

    #[tokio::test]
    async fn verified_length_checks_the_length_alone() {
        let out: Vec<_> = verified_length(chunks(&[b"abc", b"deX"]), "o".into(), 6).collect().await;
        assert!(out.iter().all(Result::is_ok));
        let out: Vec<_> = verified_length(chunks(&[b"abc"]), "o".into(), 6).collect().await;
        assert!(out.last().unwrap().as_ref().unwrap_err().to_string().contains("truncated"));
        let out: Vec<_> = verified_length(chunks(&[b"abc", b"defg"]), "o".into(), 6).collect().await;
        assert!(matches!(out.last(), Some(Err(Error::Integrity { .. }))));
    }
}
