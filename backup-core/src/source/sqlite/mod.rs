//! SQLite engine: page-exact snapshots with the online backup API, restore through a verified
//! temp file, `PRAGMA integrity_check` and an atomic rename.
//!
//! Dump: the backup API copies the database into a temp file in one step, holding one read
//! transaction, so the copy is a single consistent instant (in WAL mode writers keep writing
//! meanwhile). The copy is then streamed as fixed-size byte ranges ("file chunks"), each its own
//! compressed object, so chunks compress and upload in parallel.
//!
//! Restore: chunks are written at their offsets into a temp file beside the target, the file is
//! checked (`integrity_check`, per-table row counts and content checksums against the manifest),
//! given the owner and mode of the file it replaces, then renamed over the target under a lock
//! file and an intent journal (see [`swap`]): the target name always holds a complete
//! database, and the next restore or backup of it finishes or undoes an interrupted swap.
//!
//! One file per role, as for the other engines: [`dump`] (snapshot and file chunks), [`load`]
//! (the restore session, scripts included), [`swap`] (lock file, intent journal, the rename),
//! [`clone`] (`guard`'s file copy), [`checksum`] (table stats, `integrity_check`), [`conn`]
//! (opening files, the online backup API's page copy both the dump and the clone use) and
//! [`script`] (the statement splitter for `.dump` scripts).

mod checksum;
mod clone;
mod conn;
mod dump;
mod image;
mod load;
pub mod script;
mod swap;

pub(crate) use self::dump::SqliteSource;
pub(crate) use self::load::SqliteLoader;
