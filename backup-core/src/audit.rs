//! Restore audit records: one JSON object per restore (and per guard rollback), written to
//! `audit/<timestamp>-<backup-id>.json` in the repository the backup came from: who, which backup
//! and manifest digest, which target, when, and the outcome. Writing the record never changes the
//! outcome of the restore; a failure to write it is logged.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::codec::checksum::sha256_hex;
use crate::error::{Error, Result};
use crate::format::layout;
use crate::format::manifest::Manifest;
use crate::storage::Target;

/// One audit record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditRecord {
    /// `restore` or `guard-rollback`.
    pub action: String,
    /// Who asked (`user@host`), as given by the caller.
    pub operator: Option<String>,
    /// Backup restored.
    pub backup_id: String,
    /// SHA-256 of the manifest (canonical JSON), pinning exactly which backup content was used.
    pub manifest_sha256: String,
    /// Target database, without credentials.
    pub target: String,
    /// When the restore began.
    pub started_at: DateTime<Utc>,
    /// When it ended.
    pub finished_at: DateTime<Utc>,
    /// `ok` or `failed`.
    pub outcome: String,
    /// The error, when it failed.
    pub error: Option<String>,
    /// Rows restored, when it succeeded.
    pub rows: Option<u64>,
    /// Measured duration.
    pub duration_ms: u64,
}

/// Writes the audit record of a finished restore (best effort). `result` is the rows restored,
/// or the error the restore failed with.
pub(crate) async fn record(
    target: &Target,
    manifest: &Manifest,
    into: &str,
    operator: Option<&str>,
    action: &str,
    started_at: DateTime<Utc>,
    result: std::result::Result<u64, &Error>,
) {
    let finished_at = Utc::now();
    let rec = AuditRecord {
        action: action.to_string(),
        operator: operator.map(str::to_string),
        backup_id: manifest.id.to_string(),
        manifest_sha256: manifest.to_json().map(|j| sha256_hex(&j)).unwrap_or_default(),
        target: into.to_string(),
        started_at,
        finished_at,
        outcome: if result.is_ok() { "ok" } else { "failed" }.to_string(),
        error: result.err().map(ToString::to_string),
        rows: result.ok(),
        duration_ms: u64::try_from((finished_at - started_at).num_milliseconds()).unwrap_or(0),
    };
    let key = layout::audit_key(finished_at, manifest.id.as_str());
    let write = async {
        let bytes = serde_json::to_vec_pretty(&rec).map_err(|e| Error::InvalidInput(e.to_string()))?;
        target.put_bytes(&key, bytes.into()).await
    };
    if let Err(e) = write.await {
        tracing::warn!("could not write the restore audit record {key} in {target}: {e}");
    }
}

/// Reads every audit record in a repository, newest first.
pub async fn audit_log(target: &Target) -> Result<Vec<AuditRecord>> {
    let mut items = target.list("audit").await?;
    items.sort_by(|a, b| b.key.cmp(&a.key));
    let mut out = Vec::new();
    for item in items {
        let bytes = target.get_bytes(&item.key, 1 << 20).await?;
        match serde_json::from_slice(&bytes) {
            Ok(r) => out.push(r),
            Err(e) => tracing::warn!("unreadable audit record {}: {e}", item.key),
        }
    }
    Ok(out)
}
