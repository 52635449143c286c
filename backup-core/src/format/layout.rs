//! Object keys. Every key the project writes or reads is built or checked here, and nowhere else.
//!
//! Keys are relative to a repository's prefix:
//!
//! ```text
//! <backup-id>/manifest.json               written last; its presence means "complete"
//! <backup-id>/schema/pre-data.sql[.zst]
//! <backup-id>/schema/post-data.sql[.zst]
//! <backup-id>/data/<table-key>/<chunk>.<format>[.zst|.gz]
//! <backup-id>/data/db/<chunk>.db[.zst|.gz]             database file chunks (SQLite)
//! <backup-id>/data/large-objects/<chunk>.lo[.zst|.gz]  large objects (PostgreSQL)
//! (encrypted backups: every object key ends in `.age`, table segments are `NNNN` only)
//! <backup-id>/verify/<timestamp>.json      verification/drill records, written after the backup
//! audit/<timestamp>-<backup-id>.json       restore audit records
//! alerts/<scope-hash>.json                 alert state of one (repository set, database, check)
//! locks/<random>.json                      a lease of a running command (see `lease`)
//! ```
//!
//! Table names are encoded so no key can contain `..`, a `/` taken from a name, control bytes or
//! anything outside `[A-Za-z0-9._-]`; a numeric prefix keeps encoded keys unique.

use crate::error::{Error, Result};
use crate::model::{BackupId, Compression};

/// File name of the manifest inside a backup's prefix.
pub const MANIFEST_FILE: &str = "manifest.json";
/// Longest relative key accepted from a manifest.
pub const MAX_KEY_LEN: usize = 512;

/// Key segment of chunks that belong to no table and name no other group: byte ranges of the
/// database file (SQLite).
pub const FILE_GROUP: &str = "db";
/// Key segment of PostgreSQL large-object chunks. Table keys start with digits, so no table key
/// can equal it.
#[cfg_attr(not(feature = "postgres"), allow(dead_code))]
pub const LARGE_OBJECTS_GROUP: &str = "large-objects";

/// Which schema script.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SchemaPart {
    /// Types, tables without secondary indexes: applied before data.
    PreData,
    /// Indexes, constraints, triggers, views, routines: applied after data.
    PostData,
}

/// `<id>/`: the prefix of everything belonging to one backup.
pub fn backup_dir(id: &BackupId) -> String {
    format!("{id}/")
}

/// `<id>/manifest.json`.
pub fn manifest_key(id: &BackupId) -> String {
    format!("{id}/{MANIFEST_FILE}")
}

/// Extracts the backup id from any key under a backup's directory.
pub fn id_of_key(key: &str) -> Option<BackupId> {
    key.split('/').next()?.parse().ok()
}

fn with_ext(base: String, compression: Compression) -> String {
    match compression.extension() {
        "" => base,
        ext => format!("{base}.{ext}"),
    }
}

/// Relative key of a schema script (`schema/pre-data.sql.zst`).
pub fn schema_key(part: SchemaPart, compression: Compression) -> String {
    let name = match part {
        SchemaPart::PreData => "schema/pre-data.sql",
        SchemaPart::PostData => "schema/post-data.sql",
    };
    with_ext(name.to_string(), compression)
}

/// Encodes a table name into a key segment: `0003-public.orders`. The index keeps it unique even
/// when two names encode alike; anything but `[A-Za-z0-9_-]` becomes `_`, and at most 48 bytes of
/// the name are kept.
pub fn table_key(index: usize, schema: Option<&str>, name: &str) -> String {
    let mut out = format!("{index:04}-");
    let push = |s: &str, out: &mut String| {
        for c in s.chars().take(48) {
            out.push(if c.is_ascii_alphanumeric() || c == '_' || c == '-' { c } else { '_' });
        }
    };
    if let Some(s) = schema {
        push(s, &mut out);
        out.push('.');
    }
    push(name, &mut out);
    out
}

/// Relative key of a data chunk: `data/0003-orders/0007.copy.zst`. `format` is a short extension
/// naming the chunk's bulk format (`copy`, `tsv`, `db`).
pub fn data_key(table_key: &str, chunk: u32, format: &str, compression: Compression) -> String {
    with_ext(format!("data/{table_key}/{chunk:06}.{format}"), compression)
}

/// Key of an encrypted object: the plain key plus `.age` (`data/0003/000007.copy.zst.age`).
pub fn encrypted_key(key: &str) -> String {
    format!("{key}.{}", crate::codec::encrypt::EXTENSION)
}

/// Table key segment in an encrypted backup: the table's index only (`0003`), so object keys
/// say nothing of table names (the manifest's table entries, with the names, are sealed).
pub fn sealed_table_key(index: usize) -> String {
    format!("{index:04}")
}

/// `<id>/verify/<timestamp>-<level>.json`: one record per verification or drill.
pub fn verification_key(id: &BackupId, at: chrono::DateTime<chrono::Utc>, level: &str) -> String {
    format!("{id}/verify/{}-{level}.json", at.format("%Y%m%dT%H%M%S%.3fZ"))
}

/// Splits a listed verification record key into (backup id, level), e.g. `drill`.
pub fn verification_of_key(key: &str) -> Option<(BackupId, String)> {
    let (id, rest) = key.split_once("/verify/")?;
    let stem = rest.strip_suffix(".json")?;
    let (_, level) = stem.rsplit_once('-')?;
    Some((id.parse().ok()?, level.to_string()))
}

/// Prefix of a backup's verification records.
pub fn verification_dir(id: &BackupId) -> String {
    format!("{id}/verify/")
}

/// `audit/<timestamp>-<id>.json`: one record per restore.
pub fn audit_key(at: chrono::DateTime<chrono::Utc>, id: &str) -> String {
    let safe: String =
        id.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' { c } else { '_' }).take(64).collect();
    format!("audit/{}-{safe}.json", at.format("%Y%m%dT%H%M%S%.3fZ"))
}

/// `alerts/<hash>.json`: the alert state of one (repository set, database, check); `hash` is
/// hex (see `alert::scope_hash`), so the key is never a backup id and prune never touches it.
pub fn alert_state_key(hash: &str) -> String {
    format!("alerts/{hash}.json")
}

/// Prefix of the lease objects.
pub const LOCKS_DIR: &str = "locks/";

/// `locks/<token>.json`: one lease of a running command; `token` is random hex.
pub fn lease_key(token: &str) -> String {
    format!("{LOCKS_DIR}{token}.json")
}

/// Whether a listed key is a lease object.
pub fn is_lease_key(key: &str) -> bool {
    key.strip_prefix(LOCKS_DIR)
        .and_then(|k| k.strip_suffix(".json"))
        .is_some_and(|t| !t.is_empty() && t.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// Checks a key read from a manifest before it is joined to a backup's prefix: relative, no empty,
/// `.` or `..` segment, only `[A-Za-z0-9._-]` and `/`, bounded length. A manifest that fails this
/// is treated as corrupt; restore never follows a key outside its backup.
pub fn validate_relative_key(key: &str) -> Result<()> {
    let bad =
        |why: &str| Error::integrity(format!("object key {key:?}"), "a safe relative key", why.to_string());
    if key.is_empty() || key.len() > MAX_KEY_LEN {
        return Err(bad("empty or too long"));
    }
    if !key.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'/')) {
        return Err(bad("forbidden character"));
    }
    for seg in key.split('/') {
        if seg.is_empty() || seg == "." || seg == ".." {
            return Err(bad("empty, '.' or '..' segment"));
        }
    }
    if key == MANIFEST_FILE || key.starts_with("verify/") {
        return Err(bad("reserved name"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_have_the_documented_shape() {
        let id: BackupId = "20261123T193000Z-7f3a".parse().unwrap();
        assert_eq!(manifest_key(&id), "20261123T193000Z-7f3a/manifest.json");
        assert_eq!(schema_key(SchemaPart::PreData, Compression::Zstd(3)), "schema/pre-data.sql.zst");
        assert_eq!(schema_key(SchemaPart::PostData, Compression::None), "schema/post-data.sql");
        assert_eq!(table_key(3, Some("public"), "orders"), "0003-public.orders");
        assert_eq!(table_key(4, None, "../../etc/passwd"), "0004-______etc_passwd");
        assert_eq!(table_key(5, None, "naïve\u{0}x"), "0005-na_ve_x");
        assert_eq!(
            data_key("0003-orders", 7, "copy", Compression::Gzip(6)),
            "data/0003-orders/000007.copy.gz"
        );
        assert_eq!(
            data_key(LARGE_OBJECTS_GROUP, 2, "lo", Compression::Zstd(3)),
            "data/large-objects/000002.lo.zst"
        );
        validate_relative_key(&data_key(LARGE_OBJECTS_GROUP, 0, "lo", Compression::None)).unwrap();
        let sealed = encrypted_key(&data_key(&sealed_table_key(3), 7, "copy", Compression::Zstd(3)));
        assert_eq!(sealed, "data/0003/000007.copy.zst.age");
        validate_relative_key(&sealed).unwrap();
    }

    #[test]
    fn every_generated_key_is_valid_and_hostile_keys_are_not() {
        for name in ["a", "../..", "a/b", "\u{1F600}", "x\ny", "", ".", "..", "CON", "a b"] {
            let k = data_key(&table_key(1, Some(".."), name), 0, "tsv", Compression::Zstd(3));
            validate_relative_key(&k).unwrap();
        }
        for bad in
            ["", "/abs", "a//b", "../x", "a/../b", "a/./b", "a\\b", "a\0b", "manifest.json", "verify/x", "é"]
        {
            assert!(validate_relative_key(bad).is_err(), "{bad:?}");
        }
        assert!(validate_relative_key(&"a".repeat(MAX_KEY_LEN + 1)).is_err());
    }
}
