//! Domain types shared by every layer, one file per concept: backup ids (`id`), engines
//! (`engine`), verify depths (`verify_level`), compression choices (`compression`), secrets and
//! the redaction of credentials in messages (`secret`), database locators (`database_url`) and
//! quantities as people write them (`units`). No I/O here.

mod compression;
mod database_url;
mod engine;
mod id;
mod secret;
mod units;
mod verify_level;

pub use compression::Compression;
pub(crate) use compression::compression_serde;
pub use database_url::DatabaseUrl;
pub use engine::Engine;
pub use id::BackupId;
pub use secret::{Secret, redact_str};
pub use units::{parse_duration, parse_fraction, parse_size};
pub use verify_level::VerifyLevel;

/// Number of CPUs, at least 1: the default for `jobs`.
pub fn default_jobs() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2)
}
