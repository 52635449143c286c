//! How deep a verify checks a backup.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

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
