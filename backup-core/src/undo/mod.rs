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
//!
//! The parts: this file holds the use-cases around the plain ones (`restore`, `prune`, `status`
//! keeping and cleaning the undo area); `area` the undo area itself (where it is, the copies'
//! tags, taking, confirming, finding and removing copies, cleaning what killed runs left).

mod area;

use chrono::{DateTime, Utc};

use crate::catalog;
use crate::error::{Error, Result};
use crate::health::{self, StatusOptions, StatusReport};
use crate::model::DatabaseUrl;
use crate::progress::Context;
use crate::restore::{RestoreOptions, RestoreReport};
use crate::retention::{self, PruneOptions, PruneReport};
use crate::storage::Target;

pub use crate::catalog::{DEFAULT_KEEP_UNDO_SECS, UndoCopy};
use area::Area;
pub use area::{UNDO_TAG, default_dir, target_key, undo_copies};

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

/// Applies a retention policy to a repository at `now` (see `crate::retention`) and removes the
/// undo area's expired copies (`undo_dir`). This is the library's `prune` (`opts.repo` opened by
/// [`crate::Command::run`], or `target` given opened: tests, fault injection).
pub async fn prune(
    target: &Target,
    opts: &PruneOptions,
    now: DateTime<Utc>,
    ctx: &Context,
) -> Result<PruneReport> {
    let mut r = retention::prune_repository(target, opts, now, ctx).await?;
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
