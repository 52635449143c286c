//! The page image digest: what proves a restored SQLite file byte for byte the file the backup
//! was cut from, so that reading its tables back proves nothing more (docs/FORMAT.md, "SQLite
//! page image").
//!
//! A backup's file chunks are byte ranges of one snapshot file, and its tables' row counts and
//! content checksums are read from that same file ([`super::dump`]). Once every chunk is stored,
//! the dump records in the manifest's `snapshot` map a digest over the chunk list
//! ([`IMAGE_ALGO`]: SHA-256 over each chunk's offset, length and raw SHA-256, in offset order),
//! which pins the whole image independently of the object entries. A restore of such a backup
//! ([`super::load`]) recomputes it from the manifest's objects before anything is written (a
//! chunk list that does not make up the recorded image is refused), checks every chunk's stored
//! bytes and decompressed length as they stream, and then reads the written file back and checks
//! every chunk's range against its raw SHA-256 ([`read_back`]; once, there instead of on the
//! stream: docs/FORMAT.md, "SQLite page image"): the file as written is the backed-up image, so
//! its tables hold the rows and checksums the manifest records. Older manifests, without the
//! digest, keep the per-table read-back.

use std::collections::BTreeMap;
use std::fs::File;
use std::os::unix::fs::FileExt;

use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::format::manifest::{Manifest, ObjectEntry, ObjectKind};

/// Name of the page image digest (the value of [`ALGO_KEY`]).
pub const IMAGE_ALGO: &str = "sqlite-chunk-list-sha256-v1";
/// `snapshot` key of the digest's algorithm.
pub const ALGO_KEY: &str = "page_image_algo";
/// `snapshot` key of the digest (lowercase hex).
pub const DIGEST_KEY: &str = "page_image_sha256";

/// Bytes read back at a time.
const READ_BACK_BLOCK: usize = 4 << 20;

/// One file chunk of the image.
#[derive(Debug, Clone)]
pub(super) struct ImageChunk {
    pub(super) key: String,
    pub(super) offset: u64,
    pub(super) len: u64,
    pub(super) raw_sha256: String,
}

/// The file chunks of `objects` in offset order.
fn chunks(objects: &[ObjectEntry]) -> Result<Vec<ImageChunk>> {
    let mut out = objects
        .iter()
        .filter(|o| o.kind == ObjectKind::File)
        .map(|o| {
            Ok(ImageChunk {
                key: o.key.clone(),
                offset: o.offset.ok_or_else(|| Error::integrity(&o.key, "an offset", "none"))?,
                len: o.raw_bytes,
                raw_sha256: o.raw_sha256.clone(),
            })
        })
        .collect::<Result<Vec<_>>>()?;
    out.sort_by_key(|c| c.offset);
    Ok(out)
}

/// [`IMAGE_ALGO`] over `chunks` (already in offset order): SHA-256 over, per chunk, its offset
/// and length as u64 little-endian and the 32 bytes of its raw SHA-256.
fn digest(chunks: &[ImageChunk]) -> Result<String> {
    let mut h = Sha256::new();
    for c in chunks {
        let raw = hex::decode(&c.raw_sha256)
            .ok()
            .filter(|d| d.len() == 32)
            .ok_or_else(|| Error::integrity(&c.key, "a raw sha256 of 64 hex digits", c.raw_sha256.clone()))?;
        h.update(c.offset.to_le_bytes());
        h.update(c.len.to_le_bytes());
        h.update(&raw);
    }
    Ok(hex::encode(h.finalize()))
}

/// What the dump records once every chunk of the snapshot file is stored (see the module docs).
pub(super) fn record(objects: &[ObjectEntry]) -> Result<BTreeMap<String, String>> {
    let digest = digest(&chunks(objects)?)?;
    Ok(BTreeMap::from([(ALGO_KEY.to_string(), IMAGE_ALGO.to_string()), (DIGEST_KEY.to_string(), digest)]))
}

/// The chunks of the image `manifest` records, checked against its digest; `None` when the
/// manifest records none (older backups) or one of an algorithm this version does not know
/// (the tables are then read back as before). A chunk list that does not make up the recorded
/// image is an integrity error.
pub(super) fn proven_chunks(manifest: &Manifest) -> Result<Option<Vec<ImageChunk>>> {
    let (Some(algo), Some(want)) = (manifest.snapshot.get(ALGO_KEY), manifest.snapshot.get(DIGEST_KEY))
    else {
        return Ok(None);
    };
    if algo != IMAGE_ALGO {
        return Ok(None);
    }
    let chunks = chunks(&manifest.objects)?;
    let got = digest(&chunks)?;
    if &got != want {
        return Err(Error::integrity(
            "manifest: the file chunks' page image",
            format!("{IMAGE_ALGO} {want} (recorded at backup time)"),
            format!("{got} (the chunks listed do not make up the backed-up file)"),
        ));
    }
    Ok(Some(chunks))
}

/// Reads the restored file back and checks its length and every chunk's range against the
/// chunk's raw SHA-256: the bytes on file, not only those handed to the writes.
pub(super) fn read_back(file: &File, chunks: &[ImageChunk]) -> Result<()> {
    let want_len = chunks.last().map(|c| c.offset + c.len).unwrap_or(0);
    let len = file.metadata().map_err(|e| Error::io("stat restored file", e))?.len();
    if len != want_len {
        return Err(Error::integrity(
            "restored file",
            format!("{want_len} bytes (the backed-up page image)"),
            format!("{len} bytes"),
        ));
    }
    let mut buf = vec![0u8; READ_BACK_BLOCK];
    for c in chunks {
        let mut h = Sha256::new();
        let (mut pos, end) = (c.offset, c.offset + c.len);
        while pos < end {
            let n = ((end - pos) as usize).min(buf.len());
            file.read_exact_at(&mut buf[..n], pos)
                .map_err(|e| Error::io(format!("read back restored file at {pos}"), e))?;
            h.update(&buf[..n]);
            pos += n as u64;
        }
        let got = hex::encode(h.finalize());
        if got != c.raw_sha256 {
            return Err(Error::integrity(
                format!("restored file bytes {}..{end} (chunk {})", c.offset, c.key),
                format!("sha256 {} (the backed-up page image)", c.raw_sha256),
                format!("sha256 {got}"),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(key: &str, offset: u64, data: &[u8]) -> ObjectEntry {
        ObjectEntry {
            key: key.into(),
            kind: ObjectKind::File,
            table: None,
            chunk: 0,
            format: "sqlite-db".into(),
            codec: "none".into(),
            raw_bytes: data.len() as u64,
            stored_bytes: data.len() as u64,
            sha256: crate::codec::checksum::sha256_hex(data),
            raw_sha256: crate::codec::checksum::sha256_hex(data),
            rows: None,
            offset: Some(offset),
        }
    }

    /// The digest covers every chunk's place, length and bytes, whatever the manifest's order.
    #[test]
    fn the_digest_pins_every_chunk() {
        let a = chunk("a", 0, b"first");
        let b = chunk("b", 5, b"second");
        let base = digest(&chunks(&[a.clone(), b.clone()]).unwrap()).unwrap();
        assert_eq!(base, digest(&chunks(&[b.clone(), a.clone()]).unwrap()).unwrap(), "order of entries");
        let other = chunk("b", 5, b"secONd");
        assert_ne!(base, digest(&chunks(&[a.clone(), other]).unwrap()).unwrap(), "bytes");
        let mut moved = b.clone();
        moved.offset = Some(6);
        assert_ne!(base, digest(&chunks(&[a.clone(), moved]).unwrap()).unwrap(), "offset");
        let mut longer = b;
        longer.raw_bytes += 1;
        assert_ne!(base, digest(&chunks(&[a, longer]).unwrap()).unwrap(), "length");
    }

    /// The read-back refuses a file whose bytes or length differ from the image.
    #[test]
    fn read_back_checks_the_bytes_on_file() {
        let objects = [chunk("a", 0, b"first"), chunk("b", 5, b"second")];
        let list = chunks(&objects).unwrap();
        let f = tempfile::tempfile().unwrap();
        f.write_all_at(b"firstsecond", 0).unwrap();
        read_back(&f, &list).unwrap();
        f.write_all_at(b"S", 5).unwrap();
        let e = read_back(&f, &list).unwrap_err();
        assert!(e.to_string().contains("bytes 5..11"), "{e}");
        f.write_all_at(b"second!", 5).unwrap();
        let e = read_back(&f, &list).unwrap_err();
        assert!(e.to_string().contains("12 bytes"), "{e}");
    }
}
