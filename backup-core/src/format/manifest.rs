//! The manifest: a versioned JSON document describing one complete backup. Written last and
//! create-only, so its presence means every object it lists was stored. Spec: `docs/FORMAT.md`.

use std::collections::{BTreeMap, HashSet};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::layout;
use crate::error::{Error, Result};
use crate::model::{BackupId, Engine};

/// Value of the `format` field.
pub const FORMAT: &str = "dbbackup.manifest";
/// Version written by this build. Readers refuse any other major version.
pub const FORMAT_VERSION: u32 = 1;
/// Largest manifest accepted (bytes); a hostile length never turns into an allocation.
pub const MAX_MANIFEST_BYTES: u64 = 64 << 20;
/// Most objects/tables a manifest may list.
pub const MAX_ENTRIES: usize = 1_000_000;

/// What an object holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ObjectKind {
    /// Schema applied before data.
    SchemaPre,
    /// Schema applied after data.
    SchemaPost,
    /// One chunk of one table's rows in the engine's bulk format.
    Data,
    /// A byte range of a database file (SQLite); `offset` says where it goes.
    File,
}

/// One stored object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectEntry {
    /// Key relative to the backup's directory.
    pub key: String,
    /// What it holds.
    pub kind: ObjectKind,
    /// Index into [`Manifest::tables`] for data objects.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub table: Option<usize>,
    /// Chunk number within the table (or file).
    #[serde(default)]
    pub chunk: u32,
    /// Bulk format of the raw bytes (`pg-copy-text`, `mysql-tsv`, `sqlite-db`, `sql`).
    pub format: String,
    /// `zstd`, `gzip` or `none`.
    pub codec: String,
    /// Uncompressed length.
    pub raw_bytes: u64,
    /// Stored (compressed) length.
    pub stored_bytes: u64,
    /// SHA-256 of the stored bytes, lower-case hex.
    pub sha256: String,
    /// SHA-256 of the uncompressed bytes, lower-case hex.
    pub raw_sha256: String,
    /// Rows in a data chunk.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rows: Option<u64>,
    /// Byte offset of a file chunk within the database file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offset: Option<u64>,
}

/// One table as seen at snapshot time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableEntry {
    /// Schema / namespace, where the engine has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<String>,
    /// Table name, exactly as in the database.
    pub name: String,
    /// Encoded key segment used for this table's objects.
    pub key: String,
    /// Rows at snapshot time.
    pub rows: u64,
    /// Content checksum at snapshot time (engine-defined, see `checksum_algo`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checksum: Option<String>,
    /// Names the checksum algorithm so a loader computes the same thing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checksum_algo: Option<String>,
    /// Engine-specific details needed to load the table (column list, flags).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub properties: BTreeMap<String, serde_json::Value>,
}

impl TableEntry {
    /// `schema.name` or `name`, for messages.
    pub fn display_name(&self) -> String {
        match &self.schema {
            Some(s) => format!("{s}.{}", self.name),
            None => self.name.clone(),
        }
    }
}

/// The tool that wrote a manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ToolInfo {
    /// Always `dbbackup`.
    pub name: String,
    /// Crate version.
    pub version: String,
}

impl Default for ToolInfo {
    fn default() -> Self {
        ToolInfo { name: "dbbackup".into(), version: env!("CARGO_PKG_VERSION").into() }
    }
}

/// A complete backup's description.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// Always `FORMAT` (`dbbackup.manifest`).
    pub format: String,
    /// `FORMAT_VERSION` at write time.
    pub format_version: u32,
    /// The backup id (also its directory name).
    pub id: BackupId,
    /// Writer.
    pub tool: ToolInfo,
    /// Source engine.
    pub engine: Engine,
    /// Server or library version of the source.
    pub server_version: String,
    /// Database name.
    pub database: String,
    /// Source locator without credentials.
    pub source: String,
    /// Snapshot position (LSN, binlog file/pos, GTID set, ...), engine-defined keys.
    #[serde(default)]
    pub snapshot: BTreeMap<String, String>,
    /// When the backup started.
    pub started_at: DateTime<Utc>,
    /// When the last object was stored.
    pub finished_at: DateTime<Utc>,
    /// User tags.
    #[serde(default)]
    pub tags: Vec<String>,
    /// Compression setting used (`zstd:3`).
    pub compression: String,
    /// Every stored object.
    pub objects: Vec<ObjectEntry>,
    /// Every table.
    #[serde(default)]
    pub tables: Vec<TableEntry>,
    /// Things the operator should know (fallbacks taken during the backup).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
    /// Engine-specific database-level properties (charset, settings, ...).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub properties: BTreeMap<String, serde_json::Value>,
    /// Client-side encryption (format version 2, see `format::sealed`); absent for an
    /// unencrypted backup, whose manifest is byte for byte what version 1 always wrote.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encryption: Option<super::sealed::Encryption>,
}

impl Manifest {
    /// Whether the backup is encrypted (objects are age files; see `format::sealed`).
    pub fn is_encrypted(&self) -> bool {
        self.encryption.is_some()
    }

    /// An encrypted backup's manifest read without its key: only the clear part is known (ids,
    /// times, tags, objects' keys, sizes and stored digests); tables, settings, source and raw
    /// digests are sealed until [`super::sealed::open`].
    pub fn is_sealed(&self) -> bool {
        self.encryption.as_ref().is_some_and(|e| e.opened.is_none())
    }

    /// Sum of stored bytes over all objects.
    pub fn stored_bytes(&self) -> u64 {
        self.objects.iter().map(|o| o.stored_bytes).sum()
    }

    /// Sum of raw bytes over all objects.
    pub fn raw_bytes(&self) -> u64 {
        self.objects.iter().map(|o| o.raw_bytes).sum()
    }

    /// Total rows over all tables.
    pub fn rows(&self) -> u64 {
        self.tables.iter().map(|t| t.rows).sum()
    }

    /// Serializes (pretty, stable field order).
    pub fn to_json(&self) -> Result<Vec<u8>> {
        serde_json::to_vec_pretty(self).map_err(|e| Error::InvalidInput(format!("serialize manifest: {e}")))
    }

    /// Parses and validates a manifest read from a store. `what` names it in errors.
    pub fn parse(bytes: &[u8], what: &str) -> Result<Self> {
        if bytes.len() as u64 > MAX_MANIFEST_BYTES {
            return Err(Error::integrity(
                what,
                format!("at most {MAX_MANIFEST_BYTES} bytes"),
                format!("{} bytes", bytes.len()),
            ));
        }
        // Look at the version before the full schema, so a newer format gets a clear message.
        #[derive(Deserialize)]
        struct Head {
            format: Option<String>,
            format_version: Option<u64>,
        }
        let head: Head = serde_json::from_slice(bytes)
            .map_err(|e| Error::integrity(what, "a JSON manifest", format!("unparseable: {e}")))?;
        if head.format.as_deref() != Some(FORMAT) {
            return Err(Error::integrity(what, format!("format {FORMAT:?}"), format!("{:?}", head.format)));
        }
        match head.format_version {
            Some(v) if v == u64::from(FORMAT_VERSION) => {}
            Some(v) if v == u64::from(super::sealed::FORMAT_VERSION) => {
                return super::sealed::parse_clear(bytes, what);
            }
            Some(v) => {
                return Err(Error::UnsupportedFormat {
                    what: what.to_string(),
                    reason: format!(
                        "manifest format version {v} is not supported by this dbbackup ({}; reads versions {FORMAT_VERSION} and {})",
                        env!("CARGO_PKG_VERSION"),
                        super::sealed::FORMAT_VERSION
                    ),
                });
            }
            None => return Err(Error::integrity(what, "a format_version", "none")),
        }
        let m: Manifest = serde_json::from_slice(bytes)
            .map_err(|e| Error::integrity(what, "a valid version 1 manifest", e.to_string()))?;
        m.validate(what)?;
        Ok(m)
    }

    /// Structural checks: keys safe and unique, table references in range, digests well formed.
    pub fn validate(&self, what: &str) -> Result<()> {
        let bad = |why: String| Error::integrity(what, "a consistent manifest", why);
        if self.objects.len() > MAX_ENTRIES || self.tables.len() > MAX_ENTRIES {
            return Err(bad("too many entries".into()));
        }
        let mut seen = HashSet::new();
        for o in &self.objects {
            layout::validate_relative_key(&o.key)?;
            if !seen.insert(o.key.as_str()) {
                return Err(bad(format!("duplicate object key {}", o.key)));
            }
            if let Some(t) = o.table
                && t >= self.tables.len()
            {
                return Err(bad(format!("object {} refers to table #{t}", o.key)));
            }
            // A sealed manifest's raw digests are in its sealed part.
            let raw = (!self.is_sealed()).then_some(&o.raw_sha256);
            for d in std::iter::once(&o.sha256).chain(raw) {
                if d.len() != 64 || !d.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()) {
                    return Err(bad(format!("object {} has a malformed sha256", o.key)));
                }
            }
            crate::codec::compress::Codec::from_name(&o.codec)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn sample() -> Manifest {
        Manifest {
            format: FORMAT.into(),
            format_version: FORMAT_VERSION,
            id: "20261123T193000Z-7f3a".parse().unwrap(),
            tool: ToolInfo { name: "dbbackup".into(), version: "0.1.0".into() },
            engine: Engine::Sqlite,
            server_version: "3.46.0".into(),
            database: "app.sqlite".into(),
            source: "sqlite:///srv/app.sqlite".into(),
            snapshot: BTreeMap::from([("method".into(), "backup-api".into())]),
            started_at: "2026-11-23T19:30:00Z".parse().unwrap(),
            finished_at: "2026-11-23T19:30:02Z".parse().unwrap(),
            tags: vec!["nightly".into()],
            compression: "zstd:3".into(),
            objects: vec![ObjectEntry {
                key: "data/db/000000.db.zst".into(),
                kind: ObjectKind::File,
                table: None,
                chunk: 0,
                format: "sqlite-db".into(),
                codec: "zstd".into(),
                raw_bytes: 4096,
                stored_bytes: 120,
                sha256: "a".repeat(64),
                raw_sha256: "b".repeat(64),
                rows: None,
                offset: Some(0),
            }],
            tables: vec![TableEntry {
                schema: None,
                name: "users".into(),
                key: "0000-users".into(),
                rows: 2,
                checksum: Some("c".repeat(64)),
                checksum_algo: Some("sqlite-rows-sha256-v1".into()),
                properties: BTreeMap::new(),
            }],
            notes: vec![],
            properties: BTreeMap::new(),
            encryption: None,
        }
    }

    #[test]
    fn round_trips() {
        let m = sample();
        let back = Manifest::parse(&m.to_json().unwrap(), "m").unwrap();
        assert_eq!(back, m);
    }

    #[test]
    fn rejects_newer_versions_with_a_clear_message() {
        let mut v: serde_json::Value = serde_json::from_slice(&sample().to_json().unwrap()).unwrap();
        v["format_version"] = 3.into();
        let e = Manifest::parse(&serde_json::to_vec(&v).unwrap(), "m").unwrap_err();
        assert!(matches!(e, Error::UnsupportedFormat { .. }), "{e}");
        assert!(e.to_string().contains("format version 3"), "{e}");
    }

    #[test]
    fn rejects_hostile_content() {
        for (field, value) in [
            ("key", serde_json::json!("../../etc/passwd")),
            ("key", serde_json::json!("/abs")),
            ("sha256", serde_json::json!("zz")),
            ("table", serde_json::json!(99)),
            ("codec", serde_json::json!("lzma")),
        ] {
            let mut v: serde_json::Value = serde_json::from_slice(&sample().to_json().unwrap()).unwrap();
            v["objects"][0][field] = value;
            assert!(Manifest::parse(&serde_json::to_vec(&v).unwrap(), "m").is_err(), "{field}");
        }
        assert!(Manifest::parse(b"{", "m").is_err());
        assert!(Manifest::parse(b"[]", "m").is_err());
        assert!(Manifest::parse(br#"{"format":"other","format_version":1}"#, "m").is_err());
    }
}
