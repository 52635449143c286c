//! The undo area: a local directory repository holding the undo copies (mode 0700), the tags
//! that make a backup an undo copy of a target, and the clean-up of what killed runs left there.

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};

use crate::catalog::{self, DEFAULT_KEEP_UNDO_SECS, UndoCopy};
use crate::error::{Error, Result};
use crate::format::layout;
use crate::format::manifest::Manifest;
use crate::lease;
use crate::model::{BackupId, DatabaseUrl, Secret};
use crate::progress::Context;
use crate::retention::{self, Decision, RetentionPlan, RetentionPolicy};
use crate::storage::Target;

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
        if !self.remove_orphans(now, &mut errors).await {
            return errors;
        }
        // Complete copies whose restore was killed (never confirmed; taken by a gone process of
        // this host). A running restore's copy is its live process's.
        match self.copies(now).await {
            Ok(all) => {
                let killed: Vec<UndoCopy> = all
                    .into_iter()
                    .filter(|f| {
                        !f.confirmed
                            && f.by.as_deref().and_then(|b| b.rsplit_once('/')).is_some_and(|(h, pid)| {
                                h == host && pid.parse::<u32>().is_ok_and(lease::process_gone)
                            })
                    })
                    .map(|f| f.copy)
                    .collect();
                errors.extend(self.remove(&killed).await);
            }
            Err(e) => errors.push(format!("list undo copies: {e}")),
        }
        self.remove_dead_spools(&mut errors);
        errors
    }

    /// The objects of copies killed runs were taking (no manifest, no live lease), with the
    /// files a killed write left staged beside them. False when they could not be looked for
    /// (the clean-up stops there).
    async fn remove_orphans(&self, now: DateTime<Utc>, errors: &mut Vec<String>) -> bool {
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
                return false;
            }
        };
        if plan.orphans.is_empty() && plan.open_uploads.is_empty() {
            return true;
        }
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
        true
    }

    /// The spool directories of gone processes.
    fn remove_dead_spools(&self, errors: &mut Vec<String>) {
        let Ok(entries) = std::fs::read_dir(self.dir.join(TMP_DIR)) else { return };
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
            engine: m.engine,
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
