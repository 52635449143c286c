//! The database engine families.

use std::fmt;

use serde::{Deserialize, Serialize};

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
