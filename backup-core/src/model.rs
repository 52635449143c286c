//! Domain types shared by every layer: backup ids, engines, compression choices, database
//! locators and secrets. No I/O here.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// A backup identifier: `20261123T193000Z-7f3a`. Lexicographic order is chronological order.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct BackupId(String);

impl BackupId {
    /// A new id for a backup started at `at`, with 64 random bits (16 hex digits) after the
    /// time, so two backups started in the same second do not collide: even a million backups
    /// in one second into one repository collide with a probability of about 3e-8. (Older ids
    /// carry 16 bits; readers accept 1 to 16 digits, see docs/FORMAT.md.)
    pub fn new(at: DateTime<Utc>) -> Self {
        let suffix: u64 = rand::random();
        BackupId(format!("{}-{suffix:016x}", at.format("%Y%m%dT%H%M%SZ")))
    }

    /// The id as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The time encoded in the id.
    pub fn timestamp(&self) -> Option<DateTime<Utc>> {
        chrono::NaiveDateTime::parse_from_str(self.0.get(..16)?, "%Y%m%dT%H%M%SZ").ok().map(|n| n.and_utc())
    }
}

impl TryFrom<String> for BackupId {
    type Error = Error;
    fn try_from(s: String) -> Result<Self> {
        // 15 chars of time, 'Z', '-', then 1..=16 lowercase hex digits.
        let ok = s.len() >= 18
            && s.len() <= 33
            && s.is_char_boundary(16)
            && s.as_bytes()[15] == b'Z'
            && s.as_bytes()[16] == b'-'
            && s[17..].bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
            && BackupId(s.clone()).timestamp().is_some();
        if ok { Ok(BackupId(s)) } else { Err(Error::InvalidInput(format!("not a backup id: {s:?}"))) }
    }
}

impl FromStr for BackupId {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        BackupId::try_from(s.to_string())
    }
}

impl From<BackupId> for String {
    fn from(id: BackupId) -> String {
        id.0
    }
}

impl fmt::Display for BackupId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A database engine family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Engine {
    /// SQLite database file.
    Sqlite,
    /// PostgreSQL server.
    Postgres,
    /// MySQL or MariaDB server.
    Mysql,
}

impl Engine {
    /// Stable lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            Engine::Sqlite => "sqlite",
            Engine::Postgres => "postgres",
            Engine::Mysql => "mysql",
        }
    }
}

impl fmt::Display for Engine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // `pad`, so `{:<8}` in a table lines up as the engine's name string did.
        f.pad(self.as_str())
    }
}

// By name, as the engine's name string sorted (`mysql` < `postgres` < `sqlite`).
impl PartialOrd for Engine {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Engine {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.as_str().cmp(other.as_str())
    }
}

/// How deep to check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum VerifyLevel {
    /// Objects exist with the right sizes.
    Quick,
    /// Every byte checked.
    #[default]
    Full,
    /// Restored into a scratch database and compared.
    Drill,
}

impl VerifyLevel {
    /// Lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            VerifyLevel::Quick => "quick",
            VerifyLevel::Full => "full",
            VerifyLevel::Drill => "drill",
        }
    }
}

impl fmt::Display for VerifyLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

impl FromStr for VerifyLevel {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "quick" => Ok(VerifyLevel::Quick),
            "full" => Ok(VerifyLevel::Full),
            "drill" => Ok(VerifyLevel::Drill),
            other => {
                Err(Error::InvalidInput(format!("unknown verify level {other:?}: quick, full or drill")))
            }
        }
    }
}

/// How stored objects are compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Compression {
    /// Zstandard at a level (1..=22, negative for fast modes).
    Zstd(i32),
    /// gzip (deflate) at a level (0..=9).
    Gzip(u32),
    /// Stored as is.
    None,
}

impl Default for Compression {
    fn default() -> Self {
        Compression::Zstd(3)
    }
}

impl Compression {
    /// File-name extension of objects in this codec (`zst`, `gz`, or empty).
    pub fn extension(self) -> &'static str {
        match self {
            Compression::Zstd(_) => "zst",
            Compression::Gzip(_) => "gz",
            Compression::None => "",
        }
    }

    /// Codec name as recorded in the manifest (`zstd`, `gzip`, `none`).
    pub fn codec_name(self) -> &'static str {
        match self {
            Compression::Zstd(_) => "zstd",
            Compression::Gzip(_) => "gzip",
            Compression::None => "none",
        }
    }
}

impl fmt::Display for Compression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Compression::Zstd(l) => write!(f, "zstd:{l}"),
            Compression::Gzip(l) => write!(f, "gzip:{l}"),
            Compression::None => f.write_str("none"),
        }
    }
}

impl FromStr for Compression {
    type Err = Error;
    /// Parses `zstd`, `zstd:19`, `gzip`, `gzip:9`, `none`.
    fn from_str(s: &str) -> Result<Self> {
        let (name, level) = match s.split_once(':') {
            Some((n, l)) => (n, Some(l)),
            None => (s, None),
        };
        let bad = || {
            Error::InvalidInput(format!("bad compression {s:?}: expected zstd[:1..22], gzip[:0..9] or none"))
        };
        match (name.to_ascii_lowercase().as_str(), level) {
            ("zstd" | "zst", None) => Ok(Compression::Zstd(3)),
            ("zstd" | "zst", Some(l)) => {
                let l: i32 = l.parse().map_err(|_| bad())?;
                if (-7..=22).contains(&l) && l != 0 { Ok(Compression::Zstd(l)) } else { Err(bad()) }
            }
            ("gzip" | "gz", None) => Ok(Compression::Gzip(6)),
            ("gzip" | "gz", Some(l)) => {
                let l: u32 = l.parse().map_err(|_| bad())?;
                if l <= 9 { Ok(Compression::Gzip(l)) } else { Err(bad()) }
            }
            ("none", None) => Ok(Compression::None),
            _ => Err(bad()),
        }
    }
}

/// A secret (password, key). `Debug` never shows it, and neither does `Serialize` (it writes
/// `"***"`, so options or reports serialized for logs or JSON cannot carry it); it is read from
/// JSON as a plain string (the FFI's options).
#[derive(Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Serialize for Secret {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str("***")
    }
}

impl Secret {
    /// Wraps a secret string.
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }
    /// The secret itself. Call only where it is handed to a driver.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// Where a database lives, parsed from a URL (`sqlite:`, `postgres://`, `mysql://`).
#[derive(Clone, PartialEq, Eq)]
pub struct DatabaseUrl {
    engine: Engine,
    url: url::Url,
    sqlite_path: Option<std::path::PathBuf>,
    password: Option<Secret>,
}

impl DatabaseUrl {
    /// Parses a database URL. A password inside the URL is moved into a [`Secret`] and removed
    /// from the URL, so no later `Display` can leak it.
    pub fn parse(s: &str) -> Result<Self> {
        let bad = |why: &str| Error::InvalidInput(format!("bad database URL {}: {why}", redact_str(s)));
        let lower = s.to_ascii_lowercase();
        if lower.starts_with("sqlite:") {
            let rest = &s["sqlite:".len()..];
            let path = if let Some(abs) = rest.strip_prefix("///") {
                format!("/{abs}")
            } else if let Some(rel) = rest.strip_prefix("//") {
                rel.to_string()
            } else {
                rest.to_string()
            };
            let path = path.split('?').next().unwrap_or_default().to_string();
            if path.is_empty() {
                return Err(bad("no file path (use sqlite:///abs/path.sqlite or sqlite:relative.sqlite)"));
            }
            let pb = std::path::PathBuf::from(&path);
            let url = url::Url::parse("sqlite:///").map_err(|e| bad(&e.to_string()))?;
            return Ok(DatabaseUrl { engine: Engine::Sqlite, url, sqlite_path: Some(pb), password: None });
        }
        let mut url = url::Url::parse(s).map_err(|e| bad(&e.to_string()))?;
        let engine = match url.scheme() {
            "postgres" | "postgresql" => Engine::Postgres,
            "mysql" | "mariadb" => Engine::Mysql,
            other => {
                return Err(bad(&format!(
                    "unknown scheme {other:?} (expected sqlite:, postgres://, mysql://)"
                )));
            }
        };
        let mut password = url.password().map(|p| Secret::new(percent_decode(p)));
        if url.password().is_some() {
            // set_password only fails for URLs that cannot have credentials, which these can.
            let _ = url.set_password(None);
        }
        // libpq's `?password=` and `?user=` are honoured like the userinfo, and taken out of the
        // query so no Display of the URL carries them.
        let pairs: Vec<(String, String)> =
            url.query_pairs().map(|(k, v)| (k.into_owned(), v.into_owned())).collect();
        // A key passphrase would ride along in every Display of the URL: refused, not kept.
        if pairs.iter().any(|(k, _)| k.eq_ignore_ascii_case("sslpassword")) {
            return Err(bad("sslpassword: encrypted client keys are not supported; decrypt the key \
                 (openssl pkey -in enc.key -out client.key) and protect the file (chmod 600)"));
        }
        if pairs.iter().any(|(k, _)| k == "password" || k == "user") {
            let mut kept = Vec::new();
            for (k, v) in pairs {
                match k.as_str() {
                    "password" => {
                        if password.is_some() {
                            return Err(bad("a password both in the userinfo and in ?password="));
                        }
                        password = Some(Secret::new(v));
                    }
                    "user" => {
                        if !url.username().is_empty() {
                            return Err(bad("a user both in the userinfo and in ?user="));
                        }
                        if url.set_username(&v).is_err() {
                            return Err(bad("?user= on a URL that cannot have a user"));
                        }
                    }
                    _ => kept.push((k, v)),
                }
            }
            if kept.is_empty() {
                url.set_query(None);
            } else {
                url.query_pairs_mut().clear().extend_pairs(kept);
            }
        }
        if url.host_str().is_none_or(str::is_empty)
            && !url.query_pairs().any(|(k, _)| k == "socket" || k == "host")
        {
            return Err(bad("no host"));
        }
        Ok(DatabaseUrl { engine, url, sqlite_path: None, password })
    }

    /// The engine this URL addresses.
    pub fn engine(&self) -> Engine {
        self.engine
    }

    /// The SQLite file path (SQLite URLs only).
    pub fn sqlite_path(&self) -> Option<&std::path::Path> {
        self.sqlite_path.as_deref()
    }

    /// The parsed URL without password (server engines).
    pub fn url(&self) -> &url::Url {
        &self.url
    }

    /// Database name: the path's first segment for servers, the file name for SQLite.
    pub fn database(&self) -> String {
        match &self.sqlite_path {
            Some(p) => p.file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_default(),
            None => percent_decode(self.url.path().trim_start_matches('/')),
        }
    }

    /// Returns the same locator pointing at another database on the same server (or another file).
    pub fn with_database(&self, name: &str) -> Self {
        let mut out = self.clone();
        match &self.sqlite_path {
            Some(p) => out.sqlite_path = Some(p.with_file_name(name)),
            None => out.url.set_path(&format!("/{name}")),
        }
        out
    }

    /// The user name (server engines), percent-decoded.
    pub fn user(&self) -> Option<String> {
        let u = self.url.username();
        if u.is_empty() { None } else { Some(percent_decode(u)) }
    }

    /// The password, if one was given in the URL or set with [`DatabaseUrl::set_password`].
    pub fn password(&self) -> Option<&Secret> {
        self.password.as_ref()
    }

    /// Sets the password from the environment/file/FFI caller; wins over one from the URL.
    pub fn set_password(&mut self, password: Option<Secret>) {
        if password.is_some() {
            self.password = password;
        }
    }

    /// A query parameter (`sslmode`, `socket`, ...).
    pub fn param(&self, key: &str) -> Option<String> {
        self.url.query_pairs().find(|(k, _)| k == key).map(|(_, v)| v.into_owned())
    }
}

impl fmt::Display for DatabaseUrl {
    /// Never contains the password.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.sqlite_path {
            Some(p) if p.is_absolute() => write!(f, "sqlite://{}", p.display()),
            Some(p) => write!(f, "sqlite:{}", p.display()),
            None => f.write_str(self.url.as_str()),
        }
    }
}

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DatabaseUrl({self})")
    }
}

fn percent_decode(s: &str) -> String {
    fn hex(b: u8) -> Option<u8> {
        (b as char).to_digit(16).map(|d| d as u8)
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2]))
        {
            out.push(h * 16 + l);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Replaces any `user:password@` in a URL-like string with `user:***@`, and the value of any
/// `password=` or `sslpassword=` query parameter with `***`, for messages.
pub fn redact_str(s: &str) -> String {
    let s = &redact_userinfo(s);
    let Some(q) = s.find('?') else { return s.to_string() };
    let mut out = s[..=q].to_string();
    let pairs: Vec<String> = s[q + 1..]
        .split('&')
        .map(|p| match p.split_once('=') {
            Some((k, _)) if k.eq_ignore_ascii_case("password") || k.eq_ignore_ascii_case("sslpassword") => {
                format!("{k}=***")
            }
            _ => p.to_string(),
        })
        .collect();
    out.push_str(&pairs.join("&"));
    out
}

fn redact_userinfo(s: &str) -> String {
    match (s.find("://"), s.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let creds = &s[scheme_end + 3..at];
            match creds.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &s[..scheme_end + 3], &s[at..]),
                None => s.to_string(),
            }
        }
        _ => s.to_string(),
    }
}

/// A fraction as people write it: `50%` or `0.5` (between 0 and 1). Shared by the CLI flags and
/// the FFI options (`--max-shrink`).
pub fn parse_fraction(s: &str) -> Result<f64> {
    let t = s.trim();
    let v = match t.strip_suffix('%') {
        Some(p) => p.trim().parse::<f64>().map(|v| v / 100.0),
        None => t.parse::<f64>(),
    };
    match v {
        Ok(v) if (0.0..=1.0).contains(&v) => Ok(v),
        _ => Err(Error::InvalidInput(format!("bad fraction {s:?}: use a percentage (50%) or 0..1 (0.5)"))),
    }
}

/// A size as people write it: `50GiB`, `500MB`, `1.5T`, `1024` (bytes); binary (`KiB`, `K`) and
/// decimal (`KB`) units. Shared by the CLI flags and the FFI options.
pub fn parse_size(s: &str) -> Result<u64> {
    let t = s.trim();
    let split = t.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: f64 =
        num.parse().map_err(|_| Error::InvalidInput(format!("bad size {s:?} (e.g. 50GiB, 500MB)")))?;
    let mult: f64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kib" => 1024.0,
        "kb" => 1e3,
        "m" | "mib" => 1024f64.powi(2),
        "mb" => 1e6,
        "g" | "gib" => 1024f64.powi(3),
        "gb" => 1e9,
        "t" | "tib" => 1024f64.powi(4),
        "tb" => 1e12,
        u => {
            return Err(Error::InvalidInput(format!(
                "bad size unit {u:?} in {s:?} (B, KB, KiB, MB, MiB, GB, GiB, TB, TiB)"
            )));
        }
    };
    Ok((n * mult) as u64)
}

/// A duration as people write it: `26h`, `30m`, `7d`, `1h 30m`, `90s`.
pub fn parse_duration(s: &str) -> Result<std::time::Duration> {
    humantime::parse_duration(s.trim())
        .map_err(|e| Error::InvalidInput(format!("bad duration {s:?} (e.g. 26h, 30m, 7d): {e}")))
}

/// Number of CPUs, at least 1: the default for `jobs`.
pub fn default_jobs() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2)
}

/// Serde for a [`Compression`] field as its display string (`zstd:3`).
pub(crate) mod compression_serde {
    use crate::model::Compression;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(c: &Compression, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&c.to_string())
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Compression, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_serialize() {
        let s = Secret::new("canary-pw");
        assert_eq!(serde_json::to_string(&s).unwrap(), "\"***\"");
        assert_eq!(format!("{s:?}"), "***");
        let back: Secret = serde_json::from_str("\"canary-pw\"").unwrap();
        assert_eq!(back.expose(), "canary-pw");
    }

    #[test]
    fn query_password_and_user_are_honoured_and_not_displayed() {
        let u =
            DatabaseUrl::parse("postgres://h:5432/db?sslmode=disable&password=canary%2Fpw&user=app").unwrap();
        assert_eq!(u.password().unwrap().expose(), "canary/pw");
        assert_eq!(u.user().as_deref(), Some("app"));
        assert_eq!(u.param("sslmode").as_deref(), Some("disable"));
        assert_eq!(u.to_string(), "postgres://app@h:5432/db?sslmode=disable");
        let u = DatabaseUrl::parse("mysql://root@h/db?password=canary").unwrap();
        assert_eq!(u.password().unwrap().expose(), "canary");
        assert!(!u.to_string().contains("canary") && !u.to_string().contains('?'), "{u}");
        let e = DatabaseUrl::parse("postgres://a:one@h/db?password=canary").unwrap_err().to_string();
        assert!(e.contains("both") && !e.contains("canary"), "{e}");
        let e = DatabaseUrl::parse("postgres://a@h/db?sslkey=/k&sslpassword=canary").unwrap_err().to_string();
        assert!(e.contains("sslpassword") && !e.contains("canary"), "{e}");
    }

    #[test]
    fn sizes_and_durations() {
        assert_eq!(parse_size("50GiB").unwrap(), 50 << 30);
        assert_eq!(parse_size("500MB").unwrap(), 500_000_000);
        assert_eq!(parse_size("1.5k").unwrap(), 1536);
        assert_eq!(parse_size(" 1024 ").unwrap(), 1024);
        assert!(parse_size("lots").is_err() && parse_size("5 parsecs").is_err());
        assert_eq!(parse_duration("26h").unwrap().as_secs(), 26 * 3600);
        assert_eq!(parse_duration("1h 30m").unwrap().as_secs(), 5400);
        assert_eq!(parse_duration("7d").unwrap().as_secs(), 7 * 86400);
        assert!(parse_duration("soon").is_err());
    }

    #[test]
    fn ids_round_trip_and_sort_by_time() {
        let a = BackupId::new("2026-11-23T19:30:00Z".parse().unwrap());
        assert!(a.as_str().starts_with("20261123T193000Z-"));
        assert_eq!(a.as_str().len(), 16 + 1 + 16, "64 random bits: {a}");
        // Ids of older versions (16 random bits) still parse.
        assert!("20261123T193000Z-7f3a".parse::<BackupId>().is_ok());
        let b: BackupId = a.as_str().parse().unwrap();
        assert_eq!(a, b);
        assert_eq!(a.timestamp().unwrap().to_rfc3339(), "2026-11-23T19:30:00+00:00");
        let later = BackupId::new("2026-11-23T19:30:01Z".parse().unwrap());
        assert!(later > a);
        for bad in
            ["", "latest", "../etc", "20261123T193000Z-", "20261123T193000Z-XYZ", "2026112xT193000Z-ab"]
        {
            assert!(bad.parse::<BackupId>().is_err(), "{bad}");
        }
    }

    #[test]
    fn compression_parses() {
        assert_eq!("zstd".parse::<Compression>().unwrap(), Compression::Zstd(3));
        assert_eq!("zstd:19".parse::<Compression>().unwrap(), Compression::Zstd(19));
        assert_eq!("gzip:9".parse::<Compression>().unwrap(), Compression::Gzip(9));
        assert_eq!("none".parse::<Compression>().unwrap(), Compression::None);
        for bad in ["zstd:99", "gzip:10", "lz4", "zstd:x", "none:1"] {
            assert!(bad.parse::<Compression>().is_err(), "{bad}");
        }
    }

    #[test]
    fn urls_hide_passwords() {
        let u = DatabaseUrl::parse("postgres://app:s3cr%40t@db.example:5432/shop?sslmode=require").unwrap();
        assert_eq!(u.engine(), Engine::Postgres);
        assert_eq!(u.password().unwrap().expose(), "s3cr@t");
        assert_eq!(u.database(), "shop");
        assert_eq!(u.param("sslmode").as_deref(), Some("require"));
        assert!(!u.to_string().contains("s3cr"));
        assert!(!format!("{u:?}").contains("s3cr"));
        assert_eq!(redact_str("mysql://root:pw@h/db"), "mysql://root:***@h/db");
    }

    #[test]
    fn sqlite_urls() {
        let a = DatabaseUrl::parse("sqlite:///var/app.sqlite").unwrap();
        assert_eq!(a.sqlite_path().unwrap(), std::path::Path::new("/var/app.sqlite"));
        let r = DatabaseUrl::parse("sqlite://rel/app.sqlite").unwrap();
        assert_eq!(r.sqlite_path().unwrap(), std::path::Path::new("rel/app.sqlite"));
        let r = DatabaseUrl::parse("sqlite:app.sqlite").unwrap();
        assert_eq!(r.database(), "app.sqlite");
        assert!(DatabaseUrl::parse("sqlite:").is_err());
        assert!(DatabaseUrl::parse("oracle://x/y").is_err());
    }
}
