//! The catalog: which complete backups a repository holds, newest first, and resolving what the
//! user asked for (`latest`, an id, `tag:NAME`) to a manifest. A backup without a readable
//! manifest does not exist here.

use chrono::{DateTime, Utc};
use futures::StreamExt;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::format::layout;
use crate::format::manifest::{MAX_MANIFEST_BYTES, Manifest};
use crate::model::{BackupId, Engine, VerifyLevel};
use crate::storage::Target;

/// Default tolerance for backups stamped in the future of this clock.
pub const DEFAULT_CLOCK_TOLERANCE_SECS: u64 = 600;

/// Input of [`list`].
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct ListOptions {
    /// Repository URL.
    pub repo: String,
    /// Only backups carrying this tag.
    pub tag: Option<String>,
}

/// A verification or drill result recorded beside a backup.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VerificationRecord {
    /// `quick`, `full` or `drill`.
    pub level: VerifyLevel,
    /// When it finished.
    pub at: DateTime<Utc>,
    /// Whether everything checked out.
    pub ok: bool,
    /// Measured recovery time of a drill.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recovery_ms: Option<u64>,
    /// Number of findings.
    #[serde(default)]
    pub findings: usize,
    /// Where a drill restored to (without credentials).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scratch: Option<String>,
}

/// One line of `list`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BackupSummary {
    /// Backup id.
    pub id: BackupId,
    /// When it started.
    pub created_at: DateTime<Utc>,
    /// When it finished.
    pub finished_at: DateTime<Utc>,
    /// Engine.
    pub engine: Engine,
    /// Database.
    pub database: String,
    /// Tables.
    pub tables: usize,
    /// Rows.
    pub rows: u64,
    /// Raw bytes.
    pub raw_bytes: u64,
    /// Stored bytes.
    pub stored_bytes: u64,
    /// Tags.
    pub tags: Vec<String>,
    /// Newest verification record, if any.
    pub last_verification: Option<VerificationRecord>,
    /// Encrypted: `database`, `tables` and `rows` are sealed (empty, 0, 0) in a listing.
    #[serde(default)]
    pub encrypted: bool,
}

impl BackupSummary {
    fn from_manifest(m: &Manifest, last_verification: Option<VerificationRecord>) -> Self {
        BackupSummary {
            id: m.id.clone(),
            created_at: m.started_at,
            finished_at: m.finished_at,
            engine: m.engine,
            database: m.database.clone(),
            tables: m.tables.len(),
            rows: m.rows(),
            raw_bytes: m.raw_bytes(),
            stored_bytes: m.stored_bytes(),
            tags: m.tags.clone(),
            last_verification,
            encrypted: m.is_encrypted(),
        }
    }
}

/// A manifest that exists but could not be read.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Unreadable {
    /// Backup id.
    pub id: BackupId,
    /// Why.
    pub error: String,
}

/// Output of [`list`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ListReport {
    /// The repository, as named in messages.
    pub repo: String,
    /// Complete backups, newest first.
    pub backups: Vec<BackupSummary>,
    /// Manifests that exist but are corrupt or of an unknown version.
    pub unreadable: Vec<Unreadable>,
}

/// Lists the complete backups in a repository, newest first; with `tag`, only those carrying it.
/// (Opened from [`ListOptions`] by [`crate::Command::run`], where a local directory that does
/// not exist holds no backups and is not created.)
pub async fn list(target: &Target, tag: Option<&str>) -> Result<ListReport> {
    let ids = backup_ids(target).await?;
    let loaded: Vec<(BackupId, Result<Manifest>)> = futures::stream::iter(ids)
        .map(|id| async move {
            let m = read_manifest(target, &id).await;
            (id, m)
        })
        .buffered(8)
        .collect()
        .await;
    let mut backups = Vec::new();
    let mut unreadable = Vec::new();
    for (id, m) in loaded {
        match m {
            Ok(m) if tag.is_none_or(|t| m.tags.iter().any(|x| x == t)) => {
                let v = last_verification(target, &id).await.unwrap_or_else(|e| {
                    tracing::warn!("reading verification records of {id}: {e}");
                    None
                });
                backups.push(BackupSummary::from_manifest(&m, v));
            }
            Ok(_) => {}
            Err(Error::NotFound { .. }) => {}
            Err(e) => unreadable.push(Unreadable { id, error: e.to_string() }),
        }
    }
    // Ids only resolve to the second: two backups started in the same second order by their
    // full start time.
    backups.sort_by(|a, b| (b.created_at, &b.id).cmp(&(a.created_at, &a.id)));
    Ok(ListReport { repo: target.display_name().to_string(), backups, unreadable })
}

/// Ids of backups that have a manifest object (not yet parsed), newest first.
pub async fn backup_ids(target: &Target) -> Result<Vec<BackupId>> {
    let dirs = target.list_dirs("").await?;
    let mut ids = Vec::new();
    for d in dirs {
        let Ok(id) = d.trim_end_matches('/').parse::<BackupId>() else { continue };
        if target.head(&layout::manifest_key(&id)).await?.is_some() {
            ids.push(id);
        }
    }
    ids.sort_by(|a, b| b.cmp(a));
    Ok(ids)
}

/// Reads and validates one backup's manifest.
pub async fn read_manifest(target: &Target, id: &BackupId) -> Result<Manifest> {
    let key = layout::manifest_key(id);
    let bytes = target.get_bytes(&key, MAX_MANIFEST_BYTES).await.map_err(|e| match e {
        Error::NotFound { .. } => {
            Error::no_backup(format!("backup {id} in {}", target.display_name()), vec![])
        }
        other => other,
    })?;
    let m = Manifest::parse(&bytes, &format!("manifest of {id}"))?;
    if &m.id != id {
        return Err(Error::integrity(
            format!("manifest of {id}"),
            format!("id {id}"),
            format!("id {}", m.id),
        ));
    }
    Ok(m)
}

/// Newest verification record of a backup.
pub async fn last_verification(target: &Target, id: &BackupId) -> Result<Option<VerificationRecord>> {
    let mut items = target.list(&layout::verification_dir(id)).await?;
    items.sort_by(|a, b| b.key.cmp(&a.key));
    for item in items.into_iter().take(5) {
        let bytes = target.get_bytes(&item.key, 1 << 20).await?;
        if let Ok(r) = serde_json::from_slice::<VerificationRecord>(&bytes) {
            return Ok(Some(r));
        }
    }
    Ok(None)
}

/// Records a verification result beside its backup.
pub async fn record_verification(target: &Target, id: &BackupId, rec: &VerificationRecord) -> Result<()> {
    let key = layout::verification_key(id, rec.at, rec.level.as_str());
    let bytes = serde_json::to_vec_pretty(rec).map_err(|e| Error::InvalidInput(e.to_string()))?;
    target.put_bytes(&key, bytes.into()).await
}

/// Whether two ids carry the same start second (`20261123T193000Z-...`).
fn same_second(a: &BackupId, b: &BackupId) -> bool {
    let sec = |id: &BackupId| id.to_string().split('-').next().map(str::to_string);
    sec(a) == sec(b)
}

/// One database: the engine and the database name recorded in its backups' manifests (SQLite:
/// the file name). `latest`, `prune` and `status` look at one database's backups when told
/// which, so two databases sharing a repository never stand in for each other.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct DatabaseScope {
    /// Engine (`sqlite`, `postgres`, `mysql`).
    pub engine: Engine,
    /// Database name; empty for an encrypted backup read without its key (the name is sealed).
    pub database: String,
}

impl DatabaseScope {
    /// The database a URL points at.
    pub fn of_url(url: &crate::model::DatabaseUrl) -> Self {
        DatabaseScope { engine: url.engine(), database: url.database() }
    }

    /// The database of a backup.
    pub fn of_manifest(m: &Manifest) -> Self {
        DatabaseScope { engine: m.engine, database: m.database.clone() }
    }

    /// The database of a listed backup.
    pub fn of_summary(b: &BackupSummary) -> Self {
        DatabaseScope { engine: b.engine, database: b.database.clone() }
    }
}

impl std::fmt::Display for DatabaseScope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let db = if self.database.is_empty() { "(encrypted)" } else { self.database.as_str() };
        write!(f, "{}/{db}", self.engine)
    }
}

/// [`resolve`] for restoring into the database `scope`: `latest` and `tag:NAME` pick the newest
/// backup of that engine and database name; when the repository holds no backup of that name,
/// the newest backup of that engine if they are all of one database (restoring into a database
/// of another name), and otherwise fail naming the databases found. An id is never scoped.
/// `None` is [`resolve`] (every database).
pub async fn resolve_for(target: &Target, spec: &str, scope: Option<&DatabaseScope>) -> Result<Manifest> {
    let spec = spec.trim();
    let Some(scope) = scope else { return resolve(target, spec).await };
    let tag = match spec {
        "" | "latest" => None,
        s => match s.strip_prefix("tag:") {
            Some(t) => Some(t),
            None => return resolve(target, spec).await,
        },
    };
    let horizon = Utc::now() + chrono::Duration::seconds(DEFAULT_CLOCK_TOLERANCE_SECS as i64);
    let all = backup_ids(target).await?;
    let ids = all.iter().filter(|id| id.timestamp().is_none_or(|t| t <= horizon));
    let mut same_engine: Vec<Manifest> = Vec::new();
    let mut best: Option<Manifest> = None;
    for id in ids {
        if best.as_ref().is_some_and(|b| !same_second(id, &b.id)) {
            break;
        }
        let m = match read_manifest(target, id).await {
            Ok(m) => m,
            Err(e) if best.is_none() && same_engine.is_empty() => return Err(e),
            Err(e) => {
                tracing::warn!("skipping unreadable backup {id}: {e}");
                continue;
            }
        };
        if m.engine != scope.engine || tag.is_some_and(|t| !m.tags.iter().any(|x| x == t)) {
            continue;
        }
        if m.database == scope.database {
            if best.as_ref().is_none_or(|b| m.started_at > b.started_at) {
                best = Some(m);
            }
        } else if best.is_none() {
            same_engine.push(m);
        }
    }
    if let Some(m) = best {
        return Ok(m);
    }
    let what = match tag {
        Some(t) => format!("backup of {scope} tagged {t:?} in {}", target.display_name()),
        None => format!("backup of {scope} in {}", target.display_name()),
    };
    let mut names: Vec<String> =
        same_engine.iter().map(|m| DatabaseScope::of_manifest(m).to_string()).collect();
    names.sort();
    names.dedup();
    match names.len() {
        0 => Err(Error::no_backup(what, all.iter().map(ToString::to_string).collect())),
        // One other database only: restoring it under another name is what was asked.
        1 => {
            same_engine.into_iter().max_by_key(|m| m.started_at).ok_or_else(|| Error::no_backup(what, vec![]))
        }
        _ => Err(Error::InvalidInput(format!(
            "no {what}, and it holds backups of several other databases ({}): name the backup by its id, or pass --all-databases to take the newest of any",
            names.join(", ")
        ))),
    }
}

/// Resolves `latest`, an id, or `tag:NAME` (newest with that tag) to a manifest, over every
/// database in the repository ([`resolve_for`] scopes it). Unknown ids fail with
/// [`Error::NotFound`] listing the available backups.
pub async fn resolve(target: &Target, spec: &str) -> Result<Manifest> {
    let spec = spec.trim();
    let all = backup_ids(target).await?;
    let available = || all.iter().map(ToString::to_string).collect::<Vec<_>>();
    // A backup stamped in the future of this clock (a host with a wrong clock) is never `latest`
    // nor the newest of a tag; it stays reachable by its id.
    let horizon = Utc::now() + chrono::Duration::seconds(DEFAULT_CLOCK_TOLERANCE_SECS as i64);
    let ids: Vec<BackupId> =
        all.iter().filter(|id| id.timestamp().is_none_or(|t| t <= horizon)).cloned().collect();
    if spec.is_empty() || spec == "latest" {
        // Newest readable manifest; a corrupt newest one is reported rather than skipped silently.
        let Some(first) = ids.first() else {
            return Err(Error::no_backup(format!("any backup in {}", target.display_name()), vec![]));
        };
        // Ids resolve to the second; backups started in the same second as the newest id are
        // told apart by their manifests' start times.
        let mut best: Option<Manifest> = None;
        for id in ids.iter().take_while(|id| same_second(id, first)) {
            let m = read_manifest(target, id).await?;
            if best.as_ref().is_none_or(|b| m.started_at > b.started_at) {
                best = Some(m);
            }
        }
        return best.ok_or_else(|| Error::no_backup(format!("backup {first}"), available()));
    }
    if let Some(tag) = spec.strip_prefix("tag:") {
        let mut best: Option<Manifest> = None;
        for id in &ids {
            if best.as_ref().is_some_and(|b| !same_second(id, &b.id)) {
                break;
            }
            if let Ok(m) = read_manifest(target, id).await
                && m.tags.iter().any(|t| t == tag)
                && best.as_ref().is_none_or(|b| m.started_at > b.started_at)
            {
                best = Some(m);
            }
        }
        if let Some(m) = best {
            return Ok(m);
        }
        return Err(Error::no_backup(
            format!("backup tagged {tag:?} in {}", target.display_name()),
            available(),
        ));
    }
    match spec.parse::<BackupId>() {
        Ok(id) if all.contains(&id) => read_manifest(target, &id).await,
        _ => Err(Error::no_backup(format!("backup {spec:?} in {}", target.display_name()), available())),
    }
}

/// Total bytes of every object under a backup's directory (manifest included).
pub async fn backup_footprint(target: &Target, id: &BackupId) -> Result<u64> {
    let items = target.list(&layout::backup_dir(id)).await?;
    Ok(items.iter().map(|i| i.size).sum())
}

/// Default time an undo copy is kept: 24 hours.
pub const DEFAULT_KEEP_UNDO_SECS: u64 = 24 * 3600;

/// One kept undo copy (`undo`; a record of the undo area, here so the use-cases' reports
/// can name it) (the `undo` entries of `restore`, `status` and `prune --json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UndoCopy {
    /// Its backup id in the undo area.
    pub id: BackupId,
    /// The database it was taken of, without credentials.
    pub target: String,
    /// Engine.
    pub engine: Engine,
    /// Database name (SQLite: the file name).
    pub database: String,
    /// When it was taken (just before the restore that replaced it).
    pub created_at: DateTime<Utc>,
    /// When it expires (then removed by the next restore or `prune`).
    pub expires_at: DateTime<Utc>,
    /// Bytes it takes in the undo area.
    pub stored_bytes: u64,
    /// Past its time (still listed until something removes it).
    pub expired: bool,
}
