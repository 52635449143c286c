//! How stored objects are compressed: the choice, its textual form (`zstd:3`) and its serde.

use std::fmt;
use std::str::FromStr;

use crate::error::{Error, Result};

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

/// Serde for a [`Compression`] field as its display string (`zstd:3`).
pub(crate) mod compression_serde {
    use crate::model::compression::Compression;
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
    fn compression_parses() {
        assert_eq!("zstd".parse::<Compression>().unwrap(), Compression::Zstd(3));
        assert_eq!("zstd:19".parse::<Compression>().unwrap(), Compression::Zstd(19));
        assert_eq!("gzip:9".parse::<Compression>().unwrap(), Compression::Gzip(9));
        assert_eq!("none".parse::<Compression>().unwrap(), Compression::None);
        for bad in ["zstd:99", "gzip:10", "lz4", "zstd:x", "none:1"] {
            assert!(bad.parse::<Compression>().is_err(), "{bad}");
        }
    }
}
