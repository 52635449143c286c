//! PostgreSQL restore.
//!
//! - Default: a **shadow database** `<target>_dbbackup_shadow_<rand>` on the same server gets
//!   pre-data, the COPY chunks (parallel connections), post-data (index and key builds in
//!   parallel, the rest in order) and sequence values; after the use-case compared the stats,
//!   `commit` sets the database's own properties, terminates the target's sessions, renames it
//!   aside and the shadow in **in one transaction** (a kill leaves the old or the new database
//!   under the target name, never neither), and drops the old one. `abort` drops the shadow. The
//!   session holds the target's restore lock (an advisory lock) from start to end, and starts by
//!   cleaning what killed restores into the same target left ([`clean_leftovers`]).
//! - `in_place` (no CREATE DATABASE): everything runs in **one transaction** on the live
//!   database (drop the user schemas, pre-data, COPY, post-data, stats); `commit` is `COMMIT`,
//!   any failure `ROLLBACK`s, so the database is either fully restored or exactly as before.
//! - `tables`: one transaction on the live database that truncates the chosen tables and loads
//!   them; other tables, the schema, sequences and large objects are left alone.
//!
//! Large objects load like data chunks (parallel in the shadow), keeping their oids; once every
//! table matched, they are read back and their count, size and checksum compared with the
//! manifest ([`LoadSession::check_database`]) before anything is swapped or committed.

use async_trait::async_trait;

use super::conn::admin_url;
use super::shadow::ShadowSession;
use super::txn::{TxnMode, TxnSession};
use crate::error::{Error, Result};
use crate::format::manifest::Manifest;
use crate::model::{DatabaseUrl, Engine};
use crate::progress::Context;
use crate::source::{LoadOptions, LoadSession, Loader, RollbackPoint};

/// The PostgreSQL restore side.
pub(crate) struct PgLoader {
    url: DatabaseUrl,
}

impl PgLoader {
    pub(crate) fn new(url: &DatabaseUrl) -> Result<Self> {
        if url.database().is_empty() {
            return Err(Error::InvalidInput(format!("{url}: no database name to restore into")));
        }
        Ok(PgLoader { url: url.clone() })
    }
}

#[async_trait]
impl Loader for PgLoader {
    fn engine(&self) -> Engine {
        Engine::Postgres
    }

    async fn begin(
        &self,
        manifest: &Manifest,
        opts: &LoadOptions,
        _ctx: &Context,
    ) -> Result<Box<dyn LoadSession>> {
        if opts.tables.is_some() {
            return Ok(Box::new(TxnSession::open(&self.url, TxnMode::Tables, Some(manifest), opts).await?));
        }
        if opts.in_place {
            return Ok(Box::new(TxnSession::open(&self.url, TxnMode::Replace, Some(manifest), opts).await?));
        }
        let s = ShadowSession::open(&self.url, manifest.properties.clone(), manifest.tables.clone(), opts)
            .await?;
        Ok(Box::new(s))
    }

    async fn begin_script(&self, opts: &LoadOptions, _ctx: &Context) -> Result<Box<dyn LoadSession>> {
        if opts.tables.is_some() {
            return Err(Error::Unsupported(
                "--tables with a plain dump script: restore the whole script instead".into(),
            ));
        }
        if opts.in_place {
            return Ok(Box::new(TxnSession::open(&self.url, TxnMode::Replace, None, opts).await?));
        }
        Ok(Box::new(ShadowSession::open(&self.url, Default::default(), Vec::new(), opts).await?))
    }

    async fn rollback_point(&self) -> Result<std::result::Result<Box<dyn RollbackPoint>, String>> {
        super::clone::take(&self.url, &admin_url(&self.url)).await
    }
}
