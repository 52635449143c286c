//! The manifest of an encrypted backup (format version 2; spec in `docs/FORMAT.md`).
//!
//! `manifest.json` keeps in clear only what `list`, `status`, `prune`, `copy` and
//! `verify --level quick|full` need without the key: id, tool, engine, times, tags, compression,
//! and per object its key, kind, chunk, codec and sizes and the SHA-256 of its stored (encrypted)
//! bytes, plus the recipients. The complete manifest (tables, settings, properties, source,
//! snapshot position, raw digests, row counts) is sealed inside it as an ASCII-armored age file.
//! Reading it takes the key ([`open`]); the sealed part must agree with the clear part.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use futures::StreamExt;
use serde::{Deserialize, Serialize};

use super::manifest::{FORMAT, Manifest, ObjectEntry, ObjectKind, ToolInfo};
use crate::codec::ByteStream;
use crate::codec::encrypt::{self, Keyring, Opened, SCHEME, Sealing, UnsealError};
use crate::error::{Error, Result};
use crate::model::{BackupId, Engine};

/// `format_version` of an encrypted backup's manifest (unencrypted backups keep version 1).
pub const FORMAT_VERSION: u32 = 2;

/// The `encryption` section of a manifest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Encryption {
    /// Always `age`.
    pub scheme: String,
    /// Public keys the objects are encrypted to (`age1...`), and `scrypt` when a passphrase
    /// also opens the backup.
    pub recipients: Vec<String>,
    /// The backup's own X25519 identity, encrypted with the passphrase (armored age file);
    /// present when the backup was made with a passphrase.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub passphrase_key: Option<String>,
    /// The complete manifest, encrypted to the recipients (armored age file). Empty inside the
    /// sealed document itself.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub sealed: String,
    /// The identities that opened this manifest (in memory only).
    #[serde(skip)]
    pub(crate) opened: Option<Opened>,
}

/// The clear part, as stored.
#[derive(Serialize, Deserialize)]
struct Clear {
    format: String,
    format_version: u32,
    id: BackupId,
    tool: ToolInfo,
    engine: Engine,
    started_at: DateTime<Utc>,
    finished_at: DateTime<Utc>,
    #[serde(default)]
    tags: Vec<String>,
    compression: String,
    objects: Vec<ClearObject>,
    encryption: Encryption,
}

#[derive(Serialize, Deserialize)]
struct ClearObject {
    key: String,
    kind: ObjectKind,
    #[serde(default)]
    chunk: u32,
    codec: String,
    raw_bytes: u64,
    stored_bytes: u64,
    sha256: String,
}

impl ClearObject {
    fn of(o: &ObjectEntry) -> Self {
        ClearObject {
            key: o.key.clone(),
            kind: o.kind,
            chunk: o.chunk,
            codec: o.codec.clone(),
            raw_bytes: o.raw_bytes,
            stored_bytes: o.stored_bytes,
            sha256: o.sha256.clone(),
        }
    }
}

/// Serializes the manifest of a backup encrypted with `sealing`: the clear part with the whole
/// manifest sealed inside.
pub fn to_json(m: &Manifest, sealing: &Sealing) -> Result<Vec<u8>> {
    let section = Encryption {
        scheme: SCHEME.into(),
        recipients: sealing.listed().to_vec(),
        passphrase_key: None,
        sealed: String::new(),
        opened: None,
    };
    let mut inner = m.clone();
    inner.format_version = FORMAT_VERSION;
    inner.encryption = Some(section.clone());
    let sealed = encrypt::seal(&inner.to_json()?, sealing.recipients())?;
    let clear = Clear {
        format: FORMAT.into(),
        format_version: FORMAT_VERSION,
        id: m.id.clone(),
        tool: m.tool.clone(),
        engine: m.engine,
        started_at: m.started_at,
        finished_at: m.finished_at,
        tags: m.tags.clone(),
        compression: m.compression.clone(),
        objects: m.objects.iter().map(ClearObject::of).collect(),
        encryption: Encryption {
            passphrase_key: sealing.passphrase_key().map(str::to_string),
            sealed,
            ..section
        },
    };
    serde_json::to_vec_pretty(&clear).map_err(|e| Error::InvalidInput(format!("serialize manifest: {e}")))
}

/// Parses the clear part of a version 2 manifest into a sealed [`Manifest`]: what is sealed is
/// empty until [`open`].
pub(crate) fn parse_clear(bytes: &[u8], what: &str) -> Result<Manifest> {
    let c: Clear = serde_json::from_slice(bytes)
        .map_err(|e| Error::integrity(what, "a valid version 2 manifest", e.to_string()))?;
    if c.encryption.scheme != SCHEME {
        return Err(Error::UnsupportedFormat {
            what: what.to_string(),
            reason: format!("encryption scheme {:?} is not supported (only {SCHEME:?})", c.encryption.scheme),
        });
    }
    if c.encryption.sealed.is_empty() || c.encryption.recipients.is_empty() {
        return Err(Error::integrity(what, "a sealed manifest and its recipients", "none"));
    }
    let m = Manifest {
        format: c.format,
        format_version: c.format_version,
        id: c.id,
        tool: c.tool,
        engine: c.engine,
        server_version: String::new(),
        database: String::new(),
        source: String::new(),
        snapshot: BTreeMap::new(),
        started_at: c.started_at,
        finished_at: c.finished_at,
        tags: c.tags,
        compression: c.compression,
        objects: c
            .objects
            .into_iter()
            .map(|o| ObjectEntry {
                key: o.key,
                kind: o.kind,
                table: None,
                chunk: o.chunk,
                format: String::new(),
                codec: o.codec,
                raw_bytes: o.raw_bytes,
                stored_bytes: o.stored_bytes,
                sha256: o.sha256,
                raw_sha256: String::new(),
                rows: None,
                offset: None,
            })
            .collect(),
        tables: Vec::new(),
        notes: Vec::new(),
        properties: BTreeMap::new(),
        encryption: Some(c.encryption),
    };
    m.validate(what)?;
    Ok(m)
}

/// Opens an encrypted backup's manifest with `keys`: the complete manifest, carrying the
/// identities its objects are decrypted with. An unencrypted (or already opened) manifest is
/// returned as it is. Fails with [`Error::Key`] — "no identity for recipients ..." or
/// "wrong key: ..." — before anything else is read.
pub fn open(m: &Manifest, keys: Option<&Keyring>) -> Result<Manifest> {
    let Some(enc) = &m.encryption else { return Ok(m.clone()) };
    if enc.opened.is_some() {
        return Ok(m.clone());
    }
    let id = &m.id;
    let what = format!("manifest of {id}");
    let recipients = enc.recipients.join(", ");
    let no_identity =
        || Error::Key(format!("no identity for recipients {recipients} of encrypted backup {id}"));
    let Some(keys) = keys else { return Err(no_identity()) };
    let mut ids = keys.identities().to_vec();
    if let Some(p) = keys.passphrase() {
        match &enc.passphrase_key {
            Some(wrapped) => match encrypt::unseal_with_passphrase(wrapped, p) {
                Ok(text) => ids.push(encrypt::parse_identity(&text).ok_or_else(|| {
                    Error::integrity(
                        format!("passphrase key of {id}"),
                        "an age X25519 identity",
                        "something else",
                    )
                })?),
                Err(UnsealError::WrongKey) if ids.is_empty() => {
                    return Err(Error::Key(format!("wrong key: the passphrase does not open backup {id}")));
                }
                Err(UnsealError::WrongKey) => {}
                Err(UnsealError::Damaged(why)) => {
                    return Err(Error::integrity(
                        format!("passphrase key of {id}"),
                        "an authentic age file",
                        why,
                    ));
                }
            },
            None if ids.is_empty() => {
                return Err(Error::Key(format!(
                    "wrong key: backup {id} has no passphrase; it opens with an identity for recipients {recipients}"
                )));
            }
            None => {}
        }
    }
    if ids.is_empty() {
        return Err(no_identity());
    }
    let text = match encrypt::unseal(&enc.sealed, &ids) {
        Ok(t) => t,
        Err(UnsealError::WrongKey) => {
            let tried = keys.recipient_names();
            let tried = if tried.is_empty() { "the passphrase".to_string() } else { tried.join(", ") };
            return Err(Error::Key(format!(
                "wrong key: none of the identities given ({tried}) opens encrypted backup {id} (recipients {recipients})"
            )));
        }
        Err(UnsealError::Damaged(why)) => {
            return Err(Error::integrity(format!("sealed {what}"), "an authentic age file", why));
        }
    };
    let mut inner: Manifest = serde_json::from_slice(&text)
        .map_err(|e| Error::integrity(format!("sealed {what}"), "a valid manifest", e.to_string()))?;
    if inner.format != FORMAT || inner.format_version != FORMAT_VERSION {
        return Err(Error::integrity(
            format!("sealed {what}"),
            format!("format {FORMAT:?} version {FORMAT_VERSION}"),
            format!("{:?} version {}", inner.format, inner.format_version),
        ));
    }
    inner.encryption = Some(Encryption { opened: Some(Opened(Arc::new(ids))), ..enc.clone() });
    inner.validate(&format!("sealed {what}"))?;
    agree(m, &inner, &what)?;
    Ok(inner)
}

/// The clear part must say exactly what the sealed part says about what it repeats.
fn agree(clear: &Manifest, inner: &Manifest, what: &str) -> Result<()> {
    let differ =
        |field: String| Error::integrity(what, "a clear part that matches the sealed manifest", field);
    if clear.id != inner.id
        || clear.engine != inner.engine
        || clear.started_at != inner.started_at
        || clear.finished_at != inner.finished_at
        || clear.tags != inner.tags
        || clear.compression != inner.compression
    {
        return Err(differ("id, engine, times, tags or compression differ".into()));
    }
    if clear.objects.len() != inner.objects.len() {
        return Err(differ(format!(
            "{} objects in clear, {} sealed",
            clear.objects.len(),
            inner.objects.len()
        )));
    }
    for (c, s) in clear.objects.iter().zip(&inner.objects) {
        if c.key != s.key
            || c.kind != s.kind
            || c.chunk != s.chunk
            || c.codec != s.codec
            || c.raw_bytes != s.raw_bytes
            || c.stored_bytes != s.stored_bytes
            || c.sha256 != s.sha256
        {
            return Err(differ(format!("object {} differs", c.key)));
        }
    }
    Ok(())
}

/// The plaintext (still compressed) of a stored object's verified bytes: decrypted with the
/// identities that opened the manifest, or passed through for an unencrypted backup. A sealed
/// manifest that was never opened yields a key error.
pub(crate) fn decrypted(m: &Manifest, stored: ByteStream, what: &str) -> ByteStream {
    match &m.encryption {
        None => stored,
        Some(Encryption { opened: Some(o), .. }) => encrypt::decrypt(stored, o.0.clone(), what.to_string()),
        Some(e) => {
            let err = Error::Key(format!(
                "no identity for recipients {} of encrypted backup {}",
                e.recipients.join(", "),
                m.id
            ));
            futures::stream::once(async move { Err(err) }).boxed()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::encrypt::generate_key;
    use crate::model::Secret;

    fn sample() -> Manifest {
        let json = r#"{"format":"dbbackup.manifest","format_version":1,"id":"20261123T193000Z-7f3a",
            "tool":{"name":"dbbackup","version":"0.1.0"},"engine":"postgres","server_version":"15.4",
            "database":"payments","source":"postgres://app@db/payments","snapshot":{"lsn":"0/1"},
            "started_at":"2026-11-23T19:30:00Z","finished_at":"2026-11-23T19:30:02Z","tags":["nightly"],
            "compression":"zstd:3","objects":[{"key":"data/0000/000000.copy.zst.age","kind":"data","table":0,
            "chunk":0,"format":"pg-copy-text","codec":"zstd","raw_bytes":10,"stored_bytes":300,
            "sha256":"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
            "raw_sha256":"bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb","rows":3}],
            "tables":[{"name":"card_tokens","key":"0000-card_tokens","rows":3}],
            "properties":{"settings":["app.jwt_secret=hunter2"]}}"#;
        Manifest::parse(json.as_bytes(), "m").unwrap()
    }

    #[test]
    fn clear_part_hides_the_contents_and_opens_with_the_key_only() {
        let m = sample();
        assert!(!String::from_utf8(m.to_json().unwrap()).unwrap().contains("encryption"), "v1 unchanged");
        let (identity, recipient) = generate_key();
        let sealing = Sealing::new(std::slice::from_ref(&recipient), None).unwrap().unwrap();
        let json = to_json(&m, &sealing).unwrap();
        let text = String::from_utf8(json.clone()).unwrap();
        for secret in ["payments", "card_tokens", "hunter2", "postgres://", "0/1", "bbbbbbbb", "pg-copy-text"]
        {
            assert!(!text.contains(secret), "{secret} in the clear part: {text}");
        }
        assert!(text.contains(&recipient) && text.contains("\"format_version\": 2"));
        let sealed = Manifest::parse(&json, "m").unwrap();
        assert!(sealed.is_sealed() && sealed.tables.is_empty() && sealed.stored_bytes() == 300);
        let e = open(&sealed, None).unwrap_err();
        assert!(e.to_string().contains(&format!("no identity for recipients {recipient}")), "{e}");
        let (wrong, _) = generate_key();
        let ring = |s: &Secret| Keyring::from_secrets(Some(s), None).unwrap().unwrap();
        let e = open(&sealed, Some(&ring(&wrong))).unwrap_err();
        assert!(matches!(e, Error::Key(_)) && e.to_string().starts_with("wrong key"), "{e}");
        let opened = open(&sealed, Some(&ring(&identity))).unwrap();
        assert!(!opened.is_sealed() && opened.is_encrypted());
        assert_eq!(opened.tables, m.tables);
        assert_eq!(opened.objects, m.objects);
        assert_eq!(opened.properties, m.properties);
        assert_eq!(
            (opened.database.as_str(), opened.source.as_str()),
            ("payments", "postgres://app@db/payments")
        );
        // A clear part that says something else than the sealed one is refused.
        let mut v: serde_json::Value = serde_json::from_slice(&json).unwrap();
        v["objects"][0]["stored_bytes"] = 301.into();
        let forged = Manifest::parse(&serde_json::to_vec(&v).unwrap(), "m").unwrap();
        let e = open(&forged, Some(&ring(&identity))).unwrap_err();
        assert!(matches!(e, Error::Integrity { .. }) && e.to_string().contains("differs"), "{e}");
    }

    #[test]
    fn a_passphrase_opens_through_the_backup_key() {
        let m = sample();
        let (identity, recipient) = generate_key();
        let pass = Secret::new("correct horse");
        let sealing = Sealing::new(&[recipient], Some(&pass)).unwrap().unwrap();
        assert_eq!(sealing.listed().last().map(String::as_str), Some(encrypt::PASSPHRASE_RECIPIENT));
        let sealed = Manifest::parse(&to_json(&m, &sealing).unwrap(), "m").unwrap();
        let by_pass = Keyring::from_secrets(None, Some(&pass)).unwrap();
        assert_eq!(open(&sealed, by_pass.as_ref()).unwrap().tables, m.tables);
        let by_key = Keyring::from_secrets(Some(&identity), None).unwrap();
        assert_eq!(open(&sealed, by_key.as_ref()).unwrap().tables, m.tables);
        let wrong = Keyring::from_secrets(None, Some(&Secret::new("wrong horse"))).unwrap();
        let e = open(&sealed, wrong.as_ref()).unwrap_err();
        assert!(e.to_string().starts_with("wrong key"), "{e}");
    }
}
