//! The `verify` use-case, a ladder of three levels:
//! - `quick`: the manifest parses and every object exists with its recorded size;
//! - `full`: every object is downloaded, its SHA-256 checked, decompressed fully and the raw
//!   SHA-256 checked (any flipped byte is found and named); for an encrypted backup without the
//!   key, the SHA-256 of the stored bytes only (with the key: decrypted and checked as above);
//! - `drill`: the backup is restored into a scratch shadow, every table's row count and content
//!   checksum compared with the manifest, the shadow discarded, and the recovery time measured.
//!
//! Checks collect findings instead of stopping at the first. The result is recorded beside the
//! backup so `list` and `status` can say when it was last proven restorable.

use std::time::Instant;

use chrono::Utc;
use serde::{Deserialize, Serialize};

use crate::catalog::{self, VerificationRecord};
use crate::codec::encrypt::Keyring;
use crate::error::{Error, Result};
use crate::format::manifest::Manifest;
use crate::format::sealed;
use crate::model::{DatabaseUrl, Engine, Secret, VerifyLevel};
use crate::pipeline::{Finding, check_full, check_quick, load_and_check};
use crate::progress::Context;
use crate::source::{self, LoadOptions};
use crate::storage::Target;

/// Input of [`verify`].
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct VerifyOptions {
    /// Repository URL.
    pub repo: String,
    /// `latest` (default), an id, or `tag:NAME`.
    pub backup: String,
    /// Level.
    pub level: VerifyLevel,
    /// Scratch database URL for drills (SQLite: a file path; defaults to the temp directory).
    pub scratch: Option<String>,
    /// Password for the scratch database.
    pub password: Option<Secret>,
    /// Parallel downloads / loaders.
    pub jobs: usize,
    /// Record the result beside the backup.
    pub record: bool,
    /// Text of an age identity file, for an encrypted backup: `full` then also decrypts and
    /// checks the raw digests; a drill needs it.
    pub identity: Option<Secret>,
    /// Passphrase of an encrypted backup made with one (instead of `identity`).
    pub passphrase: Option<Secret>,
}

impl Default for VerifyOptions {
    fn default() -> Self {
        VerifyOptions {
            repo: String::new(),
            backup: "latest".into(),
            level: VerifyLevel::Full,
            scratch: None,
            password: None,
            jobs: crate::model::default_jobs(),
            record: true,
            identity: None,
            passphrase: None,
        }
    }
}

/// Output of [`verify`] (the CLI's `--json` for `verify`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VerifyReport {
    /// Backup checked.
    pub id: String,
    /// Level.
    pub level: VerifyLevel,
    /// True when there are no findings.
    pub ok: bool,
    /// Problems.
    pub findings: Vec<Finding>,
    /// Objects checked.
    pub objects: usize,
    /// Stored bytes read.
    pub bytes_read: u64,
    /// Wall time.
    pub duration_ms: u64,
    /// Drill: measured recovery time (load + checks).
    pub recovery_ms: Option<u64>,
    /// Drill: rows compared.
    pub rows: Option<u64>,
    /// An encrypted backup checked without its key: stored bytes only (sizes and SHA-256),
    /// not decrypted.
    #[serde(default)]
    pub without_key: bool,
}

/// Verifies a backup. Returns `Ok` with `ok: false` and findings for a damaged backup; `Err` for
/// a backup that cannot be found or whose manifest cannot be read.
pub async fn verify(opts: &VerifyOptions, ctx: &Context) -> Result<VerifyReport> {
    let target = Target::open_in(&opts.repo, ctx)?;
    let manifest = catalog::resolve(&target, &opts.backup).await?;
    // With a key, an encrypted backup is opened first (a wrong key fails here); without one,
    // quick and full check the stored bytes and a drill fails asking for it.
    let keys = Keyring::from_secrets(opts.identity.as_ref(), opts.passphrase.as_ref())?;
    let manifest = match keys {
        Some(k) => sealed::open(&manifest, Some(&k))?,
        None => manifest,
    };
    verify_with(&target, &manifest, opts, ctx).await
}

/// [`verify`] with an opened repository and a resolved manifest. Holds a shared lease on the
/// backup while it runs (`prune` keeps it).
pub async fn verify_with(
    target: &Target,
    manifest: &Manifest,
    opts: &VerifyOptions,
    ctx: &Context,
) -> Result<VerifyReport> {
    let command = if opts.level == VerifyLevel::Drill { "drill" } else { "verify" };
    let lease = crate::lease::share(target, command, vec![manifest.id.clone()]).await?;
    let result = verify_leased(target, manifest, opts, &lease.context(ctx)).await;
    lease.release().await;
    result
}

async fn verify_leased(
    target: &Target,
    manifest: &Manifest,
    opts: &VerifyOptions,
    ctx: &Context,
) -> Result<VerifyReport> {
    let started = Instant::now();
    let jobs = opts.jobs.max(1);
    if opts.level == VerifyLevel::Drill && manifest.is_sealed() {
        // Restoring needs the key; fails with "no identity for recipients ...".
        sealed::open(manifest, None)?;
    }
    let mut findings = check_quick(target, manifest).await?;
    let mut recovery_ms = None;
    let mut rows = None;
    let mut scratch_display = None;
    if findings.is_empty() {
        match opts.level {
            VerifyLevel::Quick => {}
            VerifyLevel::Full => findings = check_full(target, manifest, jobs, ctx).await?,
            VerifyLevel::Drill => {
                let url = scratch_url(opts, manifest)?;
                scratch_display = Some(url.to_string());
                let loader = source::open_loader(&url)?;
                let load_opts = LoadOptions { jobs, ..Default::default() };
                let t0 = Instant::now();
                let session = loader.begin(manifest, &load_opts, ctx).await?;
                let outcome = load_and_check(target, manifest, session.as_ref(), &load_opts, ctx).await;
                let elapsed = u64::try_from(t0.elapsed().as_millis()).unwrap_or(u64::MAX);
                if let Err(e) = session.abort().await {
                    tracing::warn!("dropping drill scratch: {e}");
                }
                match outcome {
                    Ok(l) => {
                        recovery_ms = Some(elapsed);
                        rows = Some(l.rows);
                    }
                    Err(e @ (Error::Integrity { .. } | Error::UnsupportedFormat { .. })) => {
                        findings.push(Finding { object: None, table: None, problem: e.to_string() })
                    }
                    Err(e) => return Err(e),
                }
            }
        }
    }
    let ok = findings.is_empty();
    let bytes_read = if opts.level == VerifyLevel::Quick { 0 } else { manifest.stored_bytes() };
    if opts.record {
        let rec = VerificationRecord {
            level: opts.level,
            at: Utc::now(),
            ok,
            recovery_ms,
            findings: findings.len(),
            scratch: scratch_display,
        };
        if let Err(e) = catalog::record_verification(target, &manifest.id, &rec).await {
            tracing::warn!("could not record the verification result beside {}: {e}", manifest.id);
        }
    }
    Ok(VerifyReport {
        id: manifest.id.to_string(),
        level: opts.level,
        ok,
        findings,
        objects: manifest.objects.len(),
        bytes_read,
        duration_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        recovery_ms,
        rows,
        without_key: manifest.is_sealed(),
    })
}

fn scratch_url(opts: &VerifyOptions, manifest: &Manifest) -> Result<DatabaseUrl> {
    let mut url = match (&opts.scratch, manifest.engine) {
        (Some(s), _) => DatabaseUrl::parse(s)?,
        (None, Engine::Sqlite) => {
            let p = std::env::temp_dir().join(format!("dbbackup-drill-{}.sqlite", manifest.id));
            DatabaseUrl::parse(&format!("sqlite://{}", p.display()))?
        }
        (None, e) => {
            return Err(Error::InvalidInput(format!(
                "a {e} drill needs --scratch URL (a server where a throwaway database can be created)"
            )));
        }
    };
    url.set_password(opts.password.clone());
    Ok(url)
}
