//! Backup identifiers: the time a backup started plus random bits, ordered by time.

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

#[cfg(test)]
mod tests {
    use super::*;

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
}
