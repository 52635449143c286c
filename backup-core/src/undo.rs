//! Undo of a restore: what a restore replaced is kept as an *undo copy* for a while, and
//! `restore --undo` puts the newest copy of a target back through the same shadow-and-swap.
//!
//! An undo copy is a safety backup of the target taken right before the restore (the code guard
//! uses for its safety backup, [`crate::guard::safety_backup`]), written into the *undo area*: an
//! ordinary local directory repository (by default `$XDG_STATE_HOME/dbbackup/undo`, see
//! [`default_dir`]), created with mode 0700. Being a backup, it works the same for every engine and
//! touches no engine's swap code. Its manifest carries three tags:
//!
//! ```text
//! undo                         marks an undo copy
//! undo-target:<16 hex>         which target it belongs to (a digest of engine, server and
//!                              database, or the SQLite file's absolute path; see target_key)
//! undo-until:<RFC 3339 UTC>    when it expires
//! ```
//!
//! Rules: a restore that succeeds keeps its copy and removes the older copies of that target (the
//! last one is kept); a restore that fails removes the copy it took (the target is as it was, so
//! the previous copy still describes what an undo should bring back). A target that did not exist
//! has nothing to keep: no copy is taken and older copies of it are removed, so `--undo` then
//! refuses ("no undo copy"); so does a restore with no keep time (`--no-undo`): `--undo` puts back
//! what the *last* restore replaced, or refuses, never an older state. `--undo` is itself a
//! restore: it keeps the state it replaces as the new undo copy, so a second `--undo` redoes. Expired copies are removed by every restore,
//! undo and `prune`; `status` lists the copies.
//!
//! The copy is never encrypted, also when the restored backup is: it stays on the machine that
//! runs the restore, next to the database it copies (docs/ARCHITECTURE.md).

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};

use crate::catalog;
use crate::error::{Error, Result};
use crate::format::layout;
use crate::format::manifest::Manifest;
use crate::health::{self, StatusOptions, StatusReport};
use crate::lease;
use crate::model::{BackupId, DatabaseUrl, Secret};
use crate::progress::Context;
use crate::restore::{RestoreOptions, RestoreReport};
use crate::retention::{self, Decision, PruneOptions, PruneReport, RetentionPlan, RetentionPolicy};
use crate::storage::Target;

pub use crate::catalog::DEFAULT_KEEP_UNDO_SECS;
/// Tag of every undo copy.
pub const UNDO_TAG: &str = "undo";
const TARGET_TAG: &str = "undo-target:";
const UNTIL_TAG: &str = "undo-until:";
/// Which run took the copy (`<host>/<pid>`), so an unconfirmed copy of a killed run is known.
const BY_TAG: &str = "undo-by:";
/// Written beside a copy's manifest once the restore that replaced its state succeeded.
const CONFIRMED_FILE: &str = "undo-confirmed";
/// Per-run spool directories of the undo copies being taken (`tmp/<pid>-<random>`).
const TMP_DIR: &str = "tmp";

pub use crate::catalog::UndoCopy;

/// The default undo area: `DBBACKUP_UNDO_DIR`, else `undo` under the state directory
/// (`DBBACKUP_STATE_DIR`, else `$XDG_STATE_HOME/dbbackup`, else `$HOME/.local/state/dbbackup`).
/// `var` looks a variable up: the faces pass the environment, the core never reads it.
pub fn default_dir(var: impl Fn(&str) -> Option<String>) -> Option<PathBuf> {
    let get = |k: &str| var(k).filter(|v| !v.trim().is_empty());
    if let Some(d) = get("DBBACKUP_UNDO_DIR") {
        return Some(d.into());
    }
    let state = get("DBBACKUP_STATE_DIR").map(PathBuf::from).or_else(|| {
        get("XDG_STATE_HOME")
            .map(PathBuf::from)
            .or_else(|| get("HOME").map(|h| Path::new(&h).join(".local/state")))
            .map(|d| d.join("dbbackup"))
    })?;
    Some(state.join("undo"))
}

/// Which target a copy belongs to: 16 hex digits of SHA-256 over the engine and the server's
/// address and database (not the user: two users restoring the same database share its copies),
/// or the SQLite file's absolute path (its directory's symbolic links resolved).
pub fn target_key(url: &DatabaseUrl) -> String {
    let ident = match url.sqlite_path() {
        Some(p) => {
            let abs = std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
            let abs = match (abs.parent().map(std::fs::canonicalize), abs.file_name()) {
                (Some(Ok(dir)), Some(name)) => dir.join(name),
                _ => abs,
            };
            format!("sqlite\n{}", abs.display())
        }
        None => {
            let u = url.url();
            format!(
                "{}\n{}\n{}\n{}\n{}",
                url.engine(),
                u.host_str().unwrap_or_default().to_ascii_lowercase(),
                u.port().map(|p| p.to_string()).unwrap_or_default(),
                url.param("socket").or_else(|| url.param("host")).unwrap_or_default(),
                url.database()
            )
        }
    };
    let digest = Sha256::digest(ident.as_bytes());
    digest.iter().take(8).map(|b| format!("{b:02x}")).collect()
}

/// Restores a backup (see `crate::restore`), keeping what it replaces: with an undo area
/// (`undo_dir`) and `keep_undo_secs`, a safety backup of the target is taken first and kept as
/// its undo copy; with `undo`, the newest undo copy of the target is restored instead of
/// `backup`. Without an undo area it is the plain restore. This is the library's `restore`.
pub async fn restore(opts: &RestoreOptions, ctx: &Context) -> Result<RestoreReport> {
    let url = crate::restore::checked_target(opts)?;
    let area = match &opts.undo_dir {
        Some(dir) => {
            let area = Area::open(dir, ctx)?;
            // Expired copies (and a killed run's leftovers) go first, so an expired copy is never
            // what --undo restores.
            match area.sweep(Utc::now(), false).await {
                Ok((_, errors)) => errors.iter().for_each(|e| tracing::warn!("undo area: {e}")),
                Err(e) => tracing::warn!("undo area {}: {e}", dir.display()),
            }
            Some(area)
        }
        None => None,
    };
    if opts.undo {
        let Some(area) = &area else {
            return Err(Error::InvalidInput("--undo needs the undo directory (--undo-dir)".into()));
        };
        if opts.tables.is_some() || opts.in_place {
            return Err(Error::InvalidInput(
                "--undo puts the whole database back through a shadow: no --tables, no --in-place".into(),
            ));
        }
        let copy = area.newest(&url, Utc::now()).await?;
        let manifest = catalog::read_manifest(area.target(), &copy.id).await?;
        let loader = crate::source::open_loader(&url)?;
        let started_at = Utc::now();
        let shown = url.to_string();
        let result = keeping_undo(Some(area), &url, opts, ctx, async {
            let mut r =
                crate::restore::restore_with(area.target(), &manifest, loader.as_ref(), &shown, opts, ctx)
                    .await?;
            r.notes.push(format!(
                "put back the undo copy {} taken {} (what the last restore replaced)",
                copy.id,
                copy.created_at.format("%Y-%m-%d %H:%M:%S UTC")
            ));
            Ok(r)
        })
        .await;
        crate::audit::record(
            area.target(),
            &manifest,
            &shown,
            opts.operator.as_deref(),
            "undo",
            started_at,
            result.as_ref().map(|r| r.rows),
        )
        .await;
        return result;
    }
    // What is restored is resolved first: an unknown backup or a wrong key takes no copy.
    let prepared = crate::restore::prepare(opts, &url, ctx).await?;
    keeping_undo(area.as_ref(), &url, opts, ctx, crate::restore::run_prepared(prepared, &url, opts, ctx))
        .await
}

/// Runs `restore` with the undo copy around it: taken before (when there is an undo area and a
/// keep time), kept and the target's older copies removed when the restore succeeds, removed
/// when it fails (the target is then as it was, and its previous copy still applies). Without a
/// keep time the target's older copies are removed all the same: `--undo` puts back what the
/// last restore replaced, or refuses, never an older state.
async fn keeping_undo(
    area: Option<&Area>,
    url: &DatabaseUrl,
    opts: &RestoreOptions,
    ctx: &Context,
    restore: impl std::future::Future<Output = Result<RestoreReport>>,
) -> Result<RestoreReport> {
    let Some(area) = area else { return restore.await };
    let mut copy_notes = Vec::new();
    let kept = if opts.keep_undo_secs > 0 {
        let (kept, notes) = area
            .keep(
                url,
                opts.password.clone(),
                opts.keep_undo_secs,
                opts.jobs.max(1),
                &opts.engine_options,
                ctx,
            )
            .await?;
        copy_notes = notes;
        if let Some(k) = &kept {
            ctx.note(format!(
                "undo copy {} of {url} kept until {}",
                k.id,
                k.expires_at.format("%Y-%m-%d %H:%M UTC")
            ));
        }
        Some(kept)
    } else {
        None
    };
    match restore.await {
        Ok(mut r) => {
            // What the copy's backup found and did to the target (a killed restore finished or
            // undone) comes first: it happened first.
            r.notes.splice(0..0, copy_notes);
            let mut keep = kept.clone().flatten();
            // Confirmed first: only then is it what --undo puts back (a restore killed before
            // this point leaves an unconfirmed copy, which the next run removes).
            if let Some(k) = &keep
                && let Err(e) = area.confirm(&k.id).await
            {
                tracing::warn!("confirming the undo copy {}: {e}", k.id);
                r.notes.push(format!("undo: the copy {} could not be marked kept ({e}); removed", k.id));
                let errors = area.remove(std::slice::from_ref(k)).await;
                errors.iter().for_each(|err| tracing::warn!("removing the undo copy {}: {err}", k.id));
                keep = None;
            }
            area.drop_others(url, keep.as_ref().map(|k| &k.id)).await;
            match (&kept, &keep) {
                (_, Some(k)) => r.notes.push(format!(
                    "undo: what this restore replaced is kept until {} (`restore --undo` puts it back)",
                    k.expires_at.format("%Y-%m-%d %H:%M UTC")
                )),
                (Some(Some(_)), None) => {}
                (Some(None), None) => {
                    r.notes.push(format!("undo: {url} did not exist before, so there is nothing to put back"))
                }
                _ => r.notes.push("undo: no copy kept (--no-undo); this restore cannot be undone".into()),
            }
            r.undo = keep;
            Ok(r)
        }
        Err(e) => {
            if let Some(Some(k)) = &kept {
                let errors = area.remove(std::slice::from_ref(k)).await;
                errors.iter().for_each(|err| tracing::warn!("removing the unused undo copy {}: {err}", k.id));
            }
            Err(e)
        }
    }
}

/// Applies a retention policy to a repository (see `crate::retention`) and removes the undo
/// area's expired copies (`undo_dir`). This is the library's `prune`.
pub async fn prune(opts: &PruneOptions, ctx: &Context) -> Result<PruneReport> {
    let target = Target::create_in(&opts.repo, ctx)?;
    prune_in(&target, opts, Utc::now(), ctx).await
}

/// [`prune`] on an opened repository at a given time (tests).
pub async fn prune_in(
    target: &Target,
    opts: &PruneOptions,
    now: DateTime<Utc>,
    ctx: &Context,
) -> Result<PruneReport> {
    let mut r = retention::prune_in(target, opts, now, ctx).await?;
    if let Some(dir) = opts.undo_dir.as_deref().filter(|d| d.exists()) {
        let (removed, errors) = Area::open(dir, ctx)?.sweep(now, opts.dry_run).await?;
        r.undo_removed = removed;
        r.errors.extend(errors);
    }
    Ok(r)
}

/// The repositories' health (see `crate::health`) with the undo area's copies listed
/// (`undo_dir`). This is the library's `status`.
pub async fn status(opts: &StatusOptions, ctx: &Context) -> Result<StatusReport> {
    let mut r = health::status(opts, ctx).await?;
    r.undo = listed(opts, Utc::now(), ctx).await;
    Ok(r)
}

/// [`status`] on opened repositories at a given time (tests).
pub async fn status_in(
    targets: &[Target],
    opts: &StatusOptions,
    now: DateTime<Utc>,
    ctx: &Context,
) -> Result<StatusReport> {
    let mut r = health::status_in(targets, opts, now, ctx).await?;
    r.undo = listed(opts, now, ctx).await;
    Ok(r)
}

async fn listed(opts: &StatusOptions, now: DateTime<Utc>, ctx: &Context) -> Vec<UndoCopy> {
    match &opts.undo_dir {
        Some(dir) => undo_copies(dir, now, ctx).await.unwrap_or_else(|e| {
            tracing::warn!("listing the undo copies in {}: {e}", dir.display());
            Vec::new()
        }),
        None => Vec::new(),
    }
}

/// The undo area: a local directory repository.
pub(crate) struct Area {
    dir: PathBuf,
    url: String,
    target: Target,
}

impl Area {
    /// Opens (and creates, mode 0700) the undo area at `dir`.
    pub(crate) fn open(dir: &Path, ctx: &Context) -> Result<Area> {
        let mut b = std::fs::DirBuilder::new();
        b.recursive(true);
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut b, 0o700);
        b.create(dir).map_err(|e| Error::io(format!("create the undo directory {}", dir.display()), e))?;
        let text = dir.to_str().ok_or_else(|| {
            Error::InvalidInput(format!("undo directory {} is not valid UTF-8", dir.display()))
        })?;
        Ok(Area { dir: dir.to_path_buf(), url: text.to_string(), target: Target::open_in(text, ctx)? })
    }

    /// The repository holding the copies.
    pub(crate) fn target(&self) -> &Target {
        &self.target
    }

    /// Every undo copy, confirmed or not, newest first.
    async fn copies(&self, now: DateTime<Utc>) -> Result<Vec<Found>> {
        let mut out = Vec::new();
        for id in catalog::backup_ids(&self.target).await? {
            let m = match catalog::read_manifest(&self.target, &id).await {
                Ok(m) => m,
                Err(e) => {
                    tracing::warn!("undo area {}: skipping {id}: {e}", self.dir.display());
                    continue;
                }
            };
            if let Some((copy, key)) = copy_of(&m, now) {
                let confirmed = self.target.head(&confirmed_key(&id)).await?.is_some();
                let by = m.tags.iter().find_map(|t| t.strip_prefix(BY_TAG)).map(str::to_string);
                out.push(Found { copy, key, by, confirmed });
            }
        }
        out.sort_by(|a, b| (b.copy.created_at, &b.copy.id).cmp(&(a.copy.created_at, &a.copy.id)));
        Ok(out)
    }

    /// Marks the copy `id` as what a restore that succeeded replaced: only confirmed copies are
    /// put back by `--undo` (a copy whose restore was killed holds the state that was never
    /// replaced) and listed.
    pub(crate) async fn confirm(&self, id: &BackupId) -> Result<()> {
        self.target.put_bytes(&confirmed_key(id), bytes::Bytes::from_static(b"restored\n")).await
    }

    /// The newest copy of the target `url`, or NotFound saying where it looked.
    pub(crate) async fn newest(&self, url: &DatabaseUrl, now: DateTime<Utc>) -> Result<UndoCopy> {
        let key = target_key(url);
        self.copies(now)
            .await?
            .into_iter()
            .find(|f| f.key == key && f.confirmed && !f.copy.expired)
            .map(|f| f.copy)
            .ok_or_else(
            || {
                Error::not_found(format!(
                    "undo copy of {url} in {} (a restore keeps one only when it replaced an existing database, for --keep-undo; or it expired)",
                    self.dir.display()
                ))
            },
        )
    }

    /// Takes the undo copy of `url` (a safety backup tagged for it), or `None` when the target
    /// does not exist; with the backup's notes (e.g. a killed restore's leftovers it recovered:
    /// the backup of a target finishes or undoes those first).
    pub(crate) async fn keep(
        &self,
        url: &DatabaseUrl,
        password: Option<Secret>,
        keep_secs: u64,
        jobs: usize,
        engine_options: &crate::engine_options::EngineOptions,
        ctx: &Context,
    ) -> Result<(Option<UndoCopy>, Vec<String>)> {
        let until =
            Utc::now() + chrono::Duration::seconds(i64::try_from(keep_secs).unwrap_or(i64::MAX / 1000));
        let tags = vec![
            UNDO_TAG.to_string(),
            format!("{TARGET_TAG}{}", target_key(url)),
            format!("{UNTIL_TAG}{}", until.format("%Y-%m-%dT%H:%M:%SZ")),
            format!("{BY_TAG}{}", this_run()),
        ];
        // The engine spools into this run's own directory of the area (not the system's temp
        // directory), so what a killed run leaves there is found and removed by the next one.
        let spool =
            self.dir.join(TMP_DIR).join(format!("{}-{:016x}", std::process::id(), rand::random::<u64>()));
        std::fs::create_dir_all(&spool)
            .map_err(|e| Error::io(format!("create the undo spool directory {}", spool.display()), e))?;
        let created = crate::backup::safety_backup(
            &url.to_string(),
            password,
            vec![self.url.clone()],
            crate::model::Compression::default(),
            jobs,
            tags,
            engine_options,
            Some(spool.clone()),
            ctx,
        )
        .await;
        if let Err(e) = std::fs::remove_dir_all(&spool) {
            tracing::warn!("removing the undo spool directory {}: {e}", spool.display());
        }
        let created = match created {
            Ok(c) => c,
            Err(Error::MissingDatabase(_)) => return Ok((None, Vec::new())),
            Err(e) => {
                return Err(e.context(format!(
                    "undo copy of {url} before the restore (nothing was changed; --no-undo restores without one)"
                )));
            }
        };
        let m = catalog::read_manifest(&self.target, &created.id).await?;
        Ok((copy_of(&m, Utc::now()).map(|(c, _)| c), created.notes))
    }

    /// After a successful restore of `url`: removes its copies other than `keep`.
    pub(crate) async fn drop_others(&self, url: &DatabaseUrl, keep: Option<&BackupId>) {
        let key = target_key(url);
        match self.copies(Utc::now()).await {
            Ok(all) => {
                let old: Vec<UndoCopy> = all
                    .into_iter()
                    .filter(|f| f.key == key && Some(&f.copy.id) != keep)
                    .map(|f| f.copy)
                    .collect();
                self.remove(&old).await;
            }
            Err(e) => tracing::warn!("undo area {}: {e}", self.dir.display()),
        }
    }

    /// Removes copies (manifest first, then objects), best effort; returns the errors.
    pub(crate) async fn remove(&self, copies: &[UndoCopy]) -> Vec<String> {
        if copies.is_empty() {
            return Vec::new();
        }
        let plan = RetentionPlan {
            decisions: copies
                .iter()
                .map(|c| Decision {
                    id: c.id.clone(),
                    created_at: c.created_at,
                    stored_bytes: c.stored_bytes,
                    keep: false,
                    reasons: vec!["undo copy no longer needed".into()],
                })
                .collect(),
            orphans: Vec::new(),
            stale_leases: Vec::new(),
            open_uploads: Vec::new(),
            uploads_unlisted: None,
        };
        match retention::apply(&self.target, &plan, &Context::default()).await {
            Ok(applied) => applied.errors,
            Err(e) => vec![e.to_string()],
        }
    }

    /// Removes expired copies. Returns what was (or, with `dry_run`, would be) removed, and the
    /// errors.
    pub(crate) async fn sweep(
        &self,
        now: DateTime<Utc>,
        dry_run: bool,
    ) -> Result<(Vec<UndoCopy>, Vec<String>)> {
        let expired: Vec<UndoCopy> =
            self.copies(now).await?.into_iter().map(|f| f.copy).filter(|c| c.expired).collect();
        if dry_run {
            return Ok((expired, Vec::new()));
        }
        let mut errors = self.clean_killed(now).await;
        errors.extend(self.remove(&expired).await);
        Ok((expired, errors))
    }

    /// Removes what killed runs left in the area: their leases (expired, or of a process of this
    /// host that is gone: the area is local, so a killed run is known dead at once), the objects
    /// of the copies they were taking (no manifest, no live lease naming them; with the files a
    /// killed write left staged beside them), and their spool directories. A live run's copy is
    /// named by its live lease, and its spool directory by its live process, so both stay.
    /// Best effort: returns the errors.
    pub(crate) async fn clean_killed(&self, now: DateTime<Utc>) -> Vec<String> {
        let mut errors = Vec::new();
        let host = lease::host_name();
        match lease::leases(&self.target).await {
            Ok(found) => {
                for l in found.iter().filter(|l| l.dead_at(now, &host)) {
                    if let Err(e) = self.target.delete(&l.key).await {
                        errors.push(format!("remove the dead lease {}: {e}", l.key));
                    }
                }
            }
            Err(e) => errors.push(format!("list leases: {e}")),
        }
        // Only orphans: every complete copy is kept here (expiry and restores decide those).
        let keep_all = RetentionPolicy { keep_last: Some(u32::MAX), ..Default::default() };
        let plan = match retention::plan(&self.target, &keep_all, 0, now, true).await {
            Ok(p) => RetentionPlan {
                decisions: Vec::new(),
                orphans: p.orphans.into_iter().filter(|o| o.sweep).collect(),
                stale_leases: Vec::new(),
                // A killed write's staged file (no live lease covers it).
                open_uploads: p.open_uploads.into_iter().filter(|u| u.sweep).collect(),
                uploads_unlisted: None,
            },
            Err(e) => {
                errors.push(format!("look for a killed run's objects: {e}"));
                return errors;
            }
        };
        if !plan.orphans.is_empty() || !plan.open_uploads.is_empty() {
            match retention::apply(&self.target, &plan, &Context::default()).await {
                Ok(applied) => errors.extend(applied.errors),
                Err(e) => errors.push(e.to_string()),
            }
            // A write killed mid-object leaves a staged file the listing does not show: the
            // directory goes once no listed object is left in it (apply skips a re-leased one).
            for o in &plan.orphans {
                let left = self.target.list(&layout::backup_dir(&o.id)).await.map(|l| l.is_empty());
                let dir = self.dir.join(o.id.to_string());
                if matches!(left, Ok(true))
                    && dir.exists()
                    && let Err(e) = std::fs::remove_dir_all(&dir)
                {
                    errors.push(format!("remove {}: {e}", dir.display()));
                }
            }
        }
        // Complete copies whose restore was killed (never confirmed; taken by a gone process of
        // this host). A running restore's copy is its live process's.
        match self.copies(now).await {
            Ok(all) => {
                let me = lease::host_name();
                let killed: Vec<UndoCopy> = all
                    .into_iter()
                    .filter(|f| {
                        !f.confirmed
                            && f.by.as_deref().and_then(|b| b.rsplit_once('/')).is_some_and(|(h, pid)| {
                                h == me && pid.parse::<u32>().is_ok_and(lease::process_gone)
                            })
                    })
                    .map(|f| f.copy)
                    .collect();
                errors.extend(self.remove(&killed).await);
            }
            Err(e) => errors.push(format!("list undo copies: {e}")),
        }
        if let Ok(entries) = std::fs::read_dir(self.dir.join(TMP_DIR)) {
            for entry in entries.flatten() {
                let name = entry.file_name();
                let pid = name.to_str().and_then(|n| n.split('-').next()).and_then(|p| p.parse::<u32>().ok());
                let old = entry
                    .metadata()
                    .and_then(|m| m.modified())
                    .is_ok_and(|t| t.elapsed().is_ok_and(|d| d.as_secs() > DEFAULT_KEEP_UNDO_SECS));
                // By its process where that is known (Linux); by age (a day) elsewhere.
                if (pid.map_or(old, lease::process_gone) || (old && !cfg!(target_os = "linux")))
                    && let Err(e) = std::fs::remove_dir_all(entry.path())
                {
                    errors.push(format!("remove {}: {e}", entry.path().display()));
                }
            }
        }
        errors
    }
}

/// An undo copy as found in the area.
struct Found {
    copy: UndoCopy,
    /// Its target key.
    key: String,
    /// `<host>/<pid>` of the run that took it.
    by: Option<String>,
    /// The restore that took it succeeded (`Area::confirm`).
    confirmed: bool,
}

fn confirmed_key(id: &BackupId) -> String {
    format!("{}{CONFIRMED_FILE}", layout::backup_dir(id))
}

/// `<host>/<pid>` of this process.
fn this_run() -> String {
    format!("{}/{}", lease::host_name(), std::process::id())
}

/// The undo copy a manifest describes (and its target key), if it is one.
fn copy_of(m: &Manifest, now: DateTime<Utc>) -> Option<(UndoCopy, String)> {
    if !m.tags.iter().any(|t| t == UNDO_TAG) {
        return None;
    }
    let key = m.tags.iter().find_map(|t| t.strip_prefix(TARGET_TAG))?.to_string();
    let until = m.tags.iter().find_map(|t| t.strip_prefix(UNTIL_TAG))?;
    let expires_at = DateTime::parse_from_rfc3339(until).ok()?.with_timezone(&Utc);
    Some((
        UndoCopy {
            id: m.id.clone(),
            target: m.source.clone(),
            engine: m.engine.to_string(),
            database: m.database.clone(),
            created_at: m.started_at,
            expires_at,
            stored_bytes: m.stored_bytes(),
            expired: expires_at <= now,
        },
        key,
    ))
}

/// The undo copies kept in `dir`, newest first (`status`). A missing directory holds none.
pub async fn undo_copies(dir: &Path, now: DateTime<Utc>, ctx: &Context) -> Result<Vec<UndoCopy>> {
    if !dir.exists() {
        return Ok(Vec::new());
    }
    Ok(Area::open(dir, ctx)?.copies(now).await?.into_iter().filter(|f| f.confirmed).map(|f| f.copy).collect())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn default_dir_follows_the_state_directory() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| pairs.iter().find(|(n, _)| *n == k).map(|(_, v)| v.to_string())
        };
        assert_eq!(default_dir(env(&[("DBBACKUP_UNDO_DIR", "/u"), ("HOME", "/h")])), Some("/u".into()));
        assert_eq!(default_dir(env(&[("DBBACKUP_STATE_DIR", "/s")])), Some("/s/undo".into()));
        assert_eq!(
            default_dir(env(&[("XDG_STATE_HOME", "/x"), ("HOME", "/h")])),
            Some("/x/dbbackup/undo".into())
        );
        assert_eq!(default_dir(env(&[("HOME", "/h")])), Some("/h/.local/state/dbbackup/undo".into()));
        assert_eq!(default_dir(env(&[])), None);
    }

    #[test]
    fn target_key_ignores_the_user_and_password_but_not_the_database() {
        let k = |u: &str| target_key(&DatabaseUrl::parse(u).unwrap());
        assert_eq!(k("postgres://a:pw@db:5432/shop"), k("postgres://b@DB:5432/shop"));
        assert_ne!(k("postgres://a@db:5432/shop"), k("postgres://a@db:5432/shop2"));
        assert_ne!(k("postgres://a@db:5432/shop"), k("mysql://a@db:5432/shop"));
        assert_ne!(k("postgres://a@db:5432/shop"), k("postgres://a@db:5433/shop"));
        assert_eq!(k("sqlite:///tmp/x.db").len(), 16);
        assert_ne!(k("sqlite:///tmp/x.db"), k("sqlite:///tmp/y.db"));
    }
}
