//! Client-side encryption in the age format (<https://age-encryption.org/v1>): a stage after
//! compression, on a blocking thread like the compressors, so every stored object is an ordinary
//! age file that `age -d` decrypts.
//!
//! Backups are encrypted to X25519 recipients (`age1...`). A passphrase does not encrypt objects
//! directly (age's scrypt stanza costs about a second per file): it wraps a fresh X25519 identity
//! made for the backup, and the objects are encrypted to that identity's recipient as well (see
//! [`Sealing`] and docs/FORMAT.md). Memory per stream is bounded like compression: two channels of
//! `CHANNEL_DEPTH` chunks plus age's 64 KiB chunk buffer.

use std::fmt;
use std::io::{Read, Write};
use std::sync::Arc;

use age::secrecy::{ExposeSecret, SecretString};
use age::x25519;

use super::ByteStream;
use super::compress::{ChannelReader, ChannelWriter, pump, run_blocking};
use crate::error::{Error, Result};
use crate::model::Secret;

/// Name of the scheme in manifests.
pub const SCHEME: &str = "age";
/// Extension appended to the key of every encrypted object.
pub const EXTENSION: &str = "age";
/// Largest sealed (armored) text accepted from a manifest.
const MAX_SEALED: usize = 64 << 20;

/// Public keys a backup is encrypted to. Not secret; their canonical `age1...` strings are
/// recorded in the clear part of the manifest.
#[derive(Clone, Default)]
pub struct Recipients {
    keys: Vec<x25519::Recipient>,
}

impl fmt::Debug for Recipients {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.names()).finish()
    }
}

impl Recipients {
    /// Parses recipients: `age1...` strings, several to an entry separated by commas, blanks or
    /// lines; `#` comment lines (as in a recipients file) are skipped; anything else that is not an X25519 recipient is refused.
    pub fn parse<S: AsRef<str>>(list: &[S]) -> Result<Self> {
        let mut keys: Vec<x25519::Recipient> = Vec::new();
        for (i, entry) in list.iter().enumerate() {
            let tokens = entry
                .as_ref()
                .lines()
                .map(str::trim)
                .filter(|l| !l.starts_with('#'))
                .flat_map(|l| l.split(|c: char| c == ',' || c.is_whitespace()))
                .filter(|t| !t.is_empty());
            for line in tokens {
                let r: x25519::Recipient = line.parse().map_err(|why| {
                    // A recipient is public, so it may be quoted; cut it in case a secret key
                    // was pasted here by mistake.
                    let shown: String = line.chars().take(12).collect();
                    Error::Key(format!(
                        "bad recipient #{} ({shown}...): {why}; expected an X25519 age recipient (age1...)",
                        i + 1
                    ))
                })?;
                if !keys.iter().any(|k| k.to_string() == r.to_string()) {
                    keys.push(r);
                }
            }
        }
        Ok(Recipients { keys })
    }

    /// Canonical `age1...` strings, in order.
    pub fn names(&self) -> Vec<String> {
        self.keys.iter().map(ToString::to_string).collect()
    }

    /// No recipient at all.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    fn iter(&self) -> impl Iterator<Item = &dyn age::Recipient> {
        self.keys.iter().map(|k| k as &dyn age::Recipient)
    }
}

/// Secret keys that open encrypted backups: X25519 identities (an age identity file) and/or a
/// passphrase. `Debug` never prints them.
#[derive(Clone, Default)]
pub struct Keyring {
    identities: Vec<x25519::Identity>,
    passphrase: Option<SecretString>,
}

impl fmt::Debug for Keyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Keyring({} identities, passphrase: {})", self.identities.len(), self.passphrase.is_some())
    }
}

impl Keyring {
    /// The keys a caller gave: the text of an age identity file (`AGE-SECRET-KEY-1...` lines,
    /// `#` comments) and/or a passphrase. `None` when neither is given. An identity text with no
    /// key, or with a line that is not one, is refused as a malformed key (the line is not quoted).
    pub fn from_secrets(identity: Option<&Secret>, passphrase: Option<&Secret>) -> Result<Option<Self>> {
        let mut ring = Keyring::default();
        if let Some(text) = identity {
            let mut n = 0;
            for (i, line) in text.expose().lines().enumerate() {
                let line = line.trim();
                if line.is_empty() || line.starts_with('#') {
                    continue;
                }
                let id: x25519::Identity = line.parse().map_err(|why| {
                    Error::Key(format!(
                        "malformed key: line {} of the identity is not an age X25519 identity (AGE-SECRET-KEY-1...): {why}",
                        i + 1
                    ))
                })?;
                ring.identities.push(id);
                n += 1;
            }
            if n == 0 {
                return Err(Error::Key(
                    "empty key: the identity holds no age identity (AGE-SECRET-KEY-1... line)".into(),
                ));
            }
        }
        if let Some(p) = passphrase {
            if p.expose().is_empty() {
                return Err(Error::Key("empty key: the passphrase is empty".into()));
            }
            ring.passphrase = Some(SecretString::from(p.expose().to_string()));
        }
        Ok((!ring.identities.is_empty() || ring.passphrase.is_some()).then_some(ring))
    }

    /// Public keys of the identities (for messages: which keys were tried).
    pub fn recipient_names(&self) -> Vec<String> {
        self.identities.iter().map(|i| i.to_public().to_string()).collect()
    }

    pub(crate) fn identities(&self) -> &[x25519::Identity] {
        &self.identities
    }

    pub(crate) fn passphrase(&self) -> Option<&SecretString> {
        self.passphrase.as_ref()
    }
}

/// A new X25519 key pair, like `age-keygen`: (identity file text, recipient `age1...`).
pub fn generate_key() -> (Secret, String) {
    let id = x25519::Identity::generate();
    let recipient = id.to_public().to_string();
    let text = format!("# public key: {recipient}\n{}\n", id.to_string().expose_secret());
    (Secret::new(text), recipient)
}

/// Identities that opened a manifest, shared by every object stream of that backup.
#[derive(Clone)]
pub struct Opened(pub(crate) Arc<Vec<x25519::Identity>>);

impl fmt::Debug for Opened {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Opened(***)")
    }
}

impl PartialEq for Opened {
    fn eq(&self, _: &Self) -> bool {
        // Which key opened a manifest is not part of its content.
        true
    }
}

/// How a new backup is encrypted: its recipients, plus a fresh X25519 identity wrapped with a
/// passphrase when one is given.
#[derive(Clone, Debug)]
pub struct Sealing {
    recipients: Recipients,
    /// The recipients as given (what the manifest lists; the passphrase key's recipient is
    /// listed as `scrypt`).
    listed: Vec<String>,
    passphrase_key: Option<String>,
}

/// What a manifest lists for the passphrase-wrapped backup key.
pub const PASSPHRASE_RECIPIENT: &str = "scrypt";

impl Sealing {
    /// Encryption to `recipients` and/or a passphrase; `None` when neither is given (the backup
    /// is not encrypted).
    pub fn new<S: AsRef<str>>(recipients: &[S], passphrase: Option<&Secret>) -> Result<Option<Self>> {
        let mut r = Recipients::parse(recipients)?;
        let mut listed = r.names();
        let mut passphrase_key = None;
        if let Some(p) = passphrase {
            if p.expose().is_empty() {
                return Err(Error::Key("empty key: the passphrase is empty".into()));
            }
            let backup_key = x25519::Identity::generate();
            let wrapped = seal_with_passphrase(
                backup_key.to_string().expose_secret().as_bytes(),
                &SecretString::from(p.expose().to_string()),
            )?;
            r.keys.push(backup_key.to_public());
            listed.push(PASSPHRASE_RECIPIENT.to_string());
            passphrase_key = Some(wrapped);
        }
        if r.is_empty() {
            return Ok(None);
        }
        Ok(Some(Sealing { recipients: r, listed, passphrase_key }))
    }

    /// Recipients as listed in the manifest.
    pub fn listed(&self) -> &[String] {
        &self.listed
    }

    /// The passphrase-wrapped backup key (armored age file), when a passphrase was given.
    pub fn passphrase_key(&self) -> Option<&str> {
        self.passphrase_key.as_deref()
    }

    /// Every recipient objects are encrypted to.
    pub fn recipients(&self) -> &Recipients {
        &self.recipients
    }
}

fn encrypt_error(e: age::EncryptError) -> Error {
    Error::Key(format!("cannot encrypt: {e}"))
}

/// Encrypts a stream into one age file (binary) for `recipients`.
pub fn encrypt(input: ByteStream, recipients: Arc<Recipients>) -> ByteStream {
    run_blocking(input, move |mut rx, tx| {
        let sink = ChannelWriter::new(tx);
        let io = |e: std::io::Error| Error::io("age encryption", e);
        let enc = age::Encryptor::with_recipients(recipients.iter()).map_err(encrypt_error)?;
        let mut w = enc.wrap_output(sink).map_err(io)?;
        pump(&mut rx, &mut w).map_err(io)?;
        let mut sink = w.finish().map_err(io)?;
        sink.flush().map_err(io)?;
        Ok(())
    })
}

/// Decrypts one age file. Every failure is an integrity error naming `what`: the manifest was
/// opened with these identities, so an object they cannot open, or whose authentication fails,
/// has been damaged or replaced.
pub fn decrypt(input: ByteStream, identities: Arc<Vec<x25519::Identity>>, what: String) -> ByteStream {
    run_blocking(input, move |rx, tx| {
        let reader = ChannelReader { rx, cur: bytes::Bytes::new() };
        let bad = |why: String| Error::integrity(what.clone(), "an authentic age file", why);
        let dec = age::Decryptor::new(reader).map_err(|e| bad(format!("unreadable header: {e}")))?;
        let mut plain = dec
            .decrypt(identities.iter().map(|i| i as &dyn age::Identity))
            .map_err(|e| bad(format!("cannot be opened with the backup's key: {e}")))?;
        let mut sink = ChannelWriter::new(tx);
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            let n = match plain.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(bad(format!("decryption failed (tampered or truncated): {e}"))),
            };
            if sink.write_all(&buf[..n]).is_err() {
                // Consumer went away; stop quietly.
                return Ok(());
            }
        }
        sink.flush().map_err(|e| Error::io("decrypt", e))?;
        Ok(())
    })
}

fn armored(data: &[u8], enc: age::Encryptor) -> Result<String> {
    use age::armor::{ArmoredWriter, Format};
    let io = |e: std::io::Error| Error::io("seal", e);
    let mut out = Vec::new();
    let armor = ArmoredWriter::wrap_output(&mut out, Format::AsciiArmor).map_err(io)?;
    let mut w = enc.wrap_output(armor).map_err(io)?;
    w.write_all(data).map_err(io)?;
    w.finish().and_then(ArmoredWriter::finish).map_err(io)?;
    String::from_utf8(out).map_err(|e| Error::InvalidInput(format!("armor: {e}")))
}

/// Encrypts small metadata (the sealed manifest) to `recipients` as an ASCII-armored age file.
pub fn seal(data: &[u8], recipients: &Recipients) -> Result<String> {
    armored(data, age::Encryptor::with_recipients(recipients.iter()).map_err(encrypt_error)?)
}

/// Encrypts small metadata (the backup key) with a passphrase (age scrypt recipient), armored.
pub fn seal_with_passphrase(data: &[u8], passphrase: &SecretString) -> Result<String> {
    armored(data, age::Encryptor::with_user_passphrase(passphrase.clone()))
}

/// Why an armored age file could not be opened.
#[derive(Debug)]
pub enum UnsealError {
    /// None of the identities (or the passphrase) opens it: a wrong key.
    WrongKey,
    /// It is not a well-formed, authentic age file.
    Damaged(String),
}

fn unseal_with(text: &str, identities: &[&dyn age::Identity]) -> std::result::Result<Vec<u8>, UnsealError> {
    if text.len() > MAX_SEALED {
        return Err(UnsealError::Damaged(format!("{} bytes, more than {MAX_SEALED}", text.len())));
    }
    let reader = age::armor::ArmoredReader::new(text.as_bytes());
    let dec = age::Decryptor::new(reader).map_err(|e| UnsealError::Damaged(e.to_string()))?;
    let mut r = dec.decrypt(identities.iter().copied()).map_err(|e| match e {
        age::DecryptError::NoMatchingKeys | age::DecryptError::DecryptionFailed => UnsealError::WrongKey,
        other => UnsealError::Damaged(other.to_string()),
    })?;
    let mut out = Vec::new();
    r.by_ref()
        .take(MAX_SEALED as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| UnsealError::Damaged(format!("decryption failed: {e}")))?;
    if out.len() > MAX_SEALED {
        return Err(UnsealError::Damaged("more than 64 MiB of plaintext".into()));
    }
    Ok(out)
}

/// Opens an armored age file with X25519 identities.
pub fn unseal(text: &str, identities: &[x25519::Identity]) -> std::result::Result<Vec<u8>, UnsealError> {
    let ids: Vec<&dyn age::Identity> = identities.iter().map(|i| i as &dyn age::Identity).collect();
    unseal_with(text, &ids)
}

/// Opens an armored, passphrase-encrypted age file (the backup key).
pub fn unseal_with_passphrase(
    text: &str,
    passphrase: &SecretString,
) -> std::result::Result<Vec<u8>, UnsealError> {
    let id = age::scrypt::Identity::new(passphrase.clone());
    unseal_with(text, &[&id as &dyn age::Identity])
}

/// Parses an X25519 identity unsealed from a backup's passphrase key.
pub(crate) fn parse_identity(text: &[u8]) -> Option<x25519::Identity> {
    std::str::from_utf8(text).ok()?.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt;

    fn one(data: Vec<u8>) -> ByteStream {
        futures::stream::iter(vec![Ok(bytes::Bytes::from(data))]).boxed()
    }

    async fn collect(s: ByteStream) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        let mut s = s;
        while let Some(b) = s.next().await {
            out.extend_from_slice(&b?);
        }
        Ok(out)
    }

    fn keypair() -> (x25519::Identity, String) {
        let id = x25519::Identity::generate();
        let r = id.to_public().to_string();
        (id, r)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn round_trips_and_refuses_tampering() {
        let (id, r) = keypair();
        let recipients = Arc::new(Recipients::parse(&[r]).unwrap());
        let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
        let enc = collect(encrypt(one(data.clone()), recipients)).await.unwrap();
        assert!(enc.starts_with(b"age-encryption.org/v1\n"));
        let ids = Arc::new(vec![id]);
        let dec = collect(decrypt(one(enc.clone()), ids.clone(), "o".into())).await.unwrap();
        assert_eq!(dec, data);
        let mut flipped = enc.clone();
        let at = flipped.len() / 2;
        flipped[at] ^= 1;
        let e = collect(decrypt(one(flipped), ids.clone(), "o".into())).await.unwrap_err();
        assert!(matches!(e, Error::Integrity { .. }), "{e}");
        let e = collect(decrypt(one(enc[..enc.len() - 100].to_vec()), ids.clone(), "o".into()))
            .await
            .unwrap_err();
        assert!(matches!(e, Error::Integrity { .. }), "{e}");
        let (other, _) = keypair();
        let e = collect(decrypt(one(enc), Arc::new(vec![other]), "o".into())).await.unwrap_err();
        assert!(matches!(e, Error::Integrity { .. }), "{e}");
    }

    #[test]
    fn keys_are_checked_and_never_quoted() {
        let (id, r) = keypair();
        let secret = id.to_string().expose_secret().to_string();
        assert!(Recipients::parse(&[format!("# mine\n{r}\n\n{r}, {r}")]).unwrap().names() == vec![r.clone()]);
        let e = Recipients::parse(std::slice::from_ref(&secret)).unwrap_err();
        assert!(!e.to_string().contains(&secret[12..]), "{e}");
        let ring = Keyring::from_secrets(Some(&Secret::new(format!("# created\n{secret}\n"))), None)
            .unwrap()
            .unwrap();
        assert_eq!(ring.recipient_names(), vec![r]);
        for bad in ["", "# only a comment\n", "AGE-SECRET-KEY-1NOTAKEY", "age1notasecret"] {
            let e = Keyring::from_secrets(Some(&Secret::new(bad)), None).unwrap_err();
            assert!(matches!(e, Error::Key(_)), "{bad}: {e}");
            assert!(e.to_string().contains("empty key") || e.to_string().contains("malformed key"), "{e}");
        }
        assert!(format!("{ring:?}").contains("1 identities"));
        assert!(Keyring::from_secrets(None, None).unwrap().is_none());
    }

    #[test]
    fn sealed_text_opens_with_the_right_key_only() {
        let (id, r) = keypair();
        let text = seal(b"{\"hello\":1}", &Recipients::parse(&[r]).unwrap()).unwrap();
        assert!(text.starts_with("-----BEGIN AGE ENCRYPTED FILE-----"));
        assert_eq!(unseal(&text, &[id]).unwrap(), b"{\"hello\":1}");
        let (other, _) = keypair();
        assert!(matches!(unseal(&text, &[other]), Err(UnsealError::WrongKey)));
        assert!(matches!(unseal("garbage", &[]), Err(UnsealError::Damaged(_))));
    }
}
