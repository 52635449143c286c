//! Repository leases (restic-style lock objects with an expiry): who is using a repository right
//! now, so `prune` never deletes a backup that a running restore, drill, verify or copy reads or
//! that a running create writes, and two prunes never run at once.
//!
//! A lease is one object `locks/<random>.json` ([`LeaseRecord`]: kind, command, host, pid, the
//! backups it uses, when it was taken and refreshed, when it expires). Its holder writes it
//! create-only, rewrites it every third of its time to live while it runs, and deletes it when
//! done. A lease whose `expires_at` has passed is stale: a dead run's (SIGKILL, power loss)
//! lease stops counting after its expiry and the next prune removes it.
//!
//! - **Shared** (create, restore, verify, copy): taken *before* the backup is used and followed
//!   by a check that the manifest is still there; a prune that deleted it first makes the reader
//!   fail cleanly, before it touched anything.
//! - **Exclusive** (prune): written, then every lease listed; another live exclusive lease makes
//!   this one back off (both may back off, never both proceed: whichever lists second sees the
//!   other). The prune then protects every backup named by a live shared lease, deletes the
//!   manifests of what it removes, lists the leases again and keeps the objects of any backup a
//!   reader leased in between (they become orphans, swept by a later prune).
//!
//! The guarantee rests on a listing showing every object written before it started
//! (read-after-write consistent listings: local directories, S3, GCS, Azure); it does not need
//! conditional writes (`PutMode::Create` only keeps a lease from replacing another). A holder
//! that cannot refresh its lease before it expires cancels its operation (the context it hands
//! out is cancelled), so it never runs unprotected.

use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::format::layout;
use crate::model::BackupId;
use crate::progress::{CancellationToken, Context};
use crate::storage::Target;

/// Default time to live of a lease: a holder refreshes it every third of this (kept with the
/// store handle, which carries the repository's lease TTL).
pub use crate::storage::target::DEFAULT_LEASE_TTL_SECS;

/// What a lease allows its holder.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LeaseKind {
    /// Reads or writes the backups it names; any number at once.
    Shared,
    /// Deletes (prune): one at a time.
    Exclusive,
}

/// The content of a lease object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseRecord {
    /// Shared or exclusive.
    pub kind: LeaseKind,
    /// The command holding it (`restore`, `prune`, ...).
    pub command: String,
    /// Host name of the holder.
    pub host: String,
    /// Process id of the holder on that host.
    pub pid: u32,
    /// Backups the holder reads or writes (shared leases).
    #[serde(default)]
    pub backups: Vec<BackupId>,
    /// When the lease was taken.
    pub created_at: DateTime<Utc>,
    /// When it was last refreshed.
    pub refreshed_at: DateTime<Utc>,
    /// When it stops counting unless refreshed.
    pub expires_at: DateTime<Utc>,
}

impl LeaseRecord {
    /// Whether the lease still counts at `now`.
    pub fn live_at(&self, now: DateTime<Utc>) -> bool {
        self.expires_at > now
    }

    /// `restore on db1 (pid 4242) until 2026-11-23 10:15:00 UTC`.
    pub fn describe(&self) -> String {
        format!(
            "{} on {} (pid {}) until {}",
            self.command,
            self.host,
            self.pid,
            self.expires_at.format("%Y-%m-%d %H:%M:%S UTC")
        )
    }
}

/// A lease object found in a repository.
#[derive(Debug, Clone)]
pub struct FoundLease {
    /// Its key (`locks/....json`).
    pub key: String,
    /// Its content, or why it could not be read.
    pub record: std::result::Result<LeaseRecord, String>,
    /// When the object was last written.
    pub modified: DateTime<Utc>,
}

impl FoundLease {
    /// Whether it counts at `now`. An unreadable lease counts until one default time to live
    /// after it was written (a hostile or foreign object cannot block a repository for ever).
    pub fn live_at(&self, now: DateTime<Utc>) -> bool {
        match &self.record {
            Ok(r) => r.live_at(now),
            Err(_) => self.modified + secs(DEFAULT_LEASE_TTL_SECS) > now,
        }
    }

    /// What holds it, for messages.
    pub fn describe(&self) -> String {
        match &self.record {
            Ok(r) => r.describe(),
            Err(e) => format!("an unreadable lease {} ({e})", self.key),
        }
    }
}

/// Whether the process `pid` of this host is gone (Linux: no `/proc/<pid>`). Elsewhere, or when
/// `/proc` is not mounted, never: the lease's expiry decides.
pub(crate) fn process_gone(pid: u32) -> bool {
    cfg!(target_os = "linux")
        && Path::new("/proc/self").exists()
        && pid != std::process::id()
        && !Path::new("/proc").join(pid.to_string()).exists()
}

impl FoundLease {
    /// Whether its holder is known dead at `now`: expired, or held by a process of this host
    /// that is gone (a local area's killed run, without waiting for the expiry).
    pub(crate) fn dead_at(&self, now: DateTime<Utc>, host: &str) -> bool {
        !self.live_at(now) || self.record.as_ref().is_ok_and(|r| r.host == host && process_gone(r.pid))
    }
}

fn secs(s: u64) -> chrono::Duration {
    chrono::Duration::seconds(i64::try_from(s).unwrap_or(i64::MAX / 1000).min(i64::MAX / 1000))
}

/// Every lease object in a repository.
pub async fn leases(target: &Target) -> Result<Vec<FoundLease>> {
    let mut out = Vec::new();
    for item in target.list(layout::LOCKS_DIR).await? {
        if !layout::is_lease_key(&item.key) {
            continue;
        }
        let record = match target.get_bytes(&item.key, 1 << 16).await {
            Ok(b) => serde_json::from_slice::<LeaseRecord>(&b).map_err(|e| e.to_string()),
            // Released between the listing and the read.
            Err(Error::NotFound { .. }) => continue,
            Err(e) => Err(e.to_string()),
        };
        out.push(FoundLease { key: item.key, record, modified: item.modified });
    }
    Ok(out)
}

/// The backups named by leases live at `now`, with who holds them.
pub fn in_use(found: &[FoundLease], now: DateTime<Utc>) -> Vec<(BackupId, String)> {
    found
        .iter()
        .filter(|l| l.live_at(now))
        .filter_map(|l| l.record.as_ref().ok())
        .flat_map(|r| r.backups.iter().map(move |id| (id.clone(), r.describe())))
        .collect()
}

/// A lease held by this process. Released by [`Lease::release`]; dropped without it (a panic,
/// an abort), the refreshing stops and the object goes stale at its expiry.
pub struct Lease {
    target: Target,
    key: String,
    stop: CancellationToken,
    lost: CancellationToken,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl std::fmt::Debug for Lease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Lease({} in {})", self.key, self.target)
    }
}

impl Lease {
    /// Takes a lease on `target` for `command`, naming the `backups` it uses. An exclusive lease
    /// fails with [`Error::Locked`] while another live exclusive lease exists.
    pub async fn acquire(
        target: &Target,
        kind: LeaseKind,
        command: &str,
        backups: Vec<BackupId>,
    ) -> Result<Lease> {
        let ttl = target.lease_ttl();
        let now = Utc::now();
        let record = LeaseRecord {
            kind,
            command: command.to_string(),
            host: host_name(),
            pid: std::process::id(),
            backups,
            created_at: now,
            refreshed_at: now,
            expires_at: now + chrono::Duration::from_std(ttl).unwrap_or(chrono::Duration::MAX),
        };
        let token: u64 = rand::random();
        let key = layout::lease_key(&format!("{token:016x}"));
        target.put_create(&key, to_json(&record)?).await.map_err(|e| e.context("take a lease"))?;
        let mut lease = Lease {
            target: target.clone(),
            key,
            stop: CancellationToken::new(),
            lost: CancellationToken::new(),
            task: None,
        };
        if kind == LeaseKind::Exclusive {
            let found = match leases(target).await {
                Ok(f) => f,
                Err(e) => {
                    lease.release().await;
                    return Err(e.context("list leases"));
                }
            };
            let now = Utc::now();
            if let Some(other) = found.iter().find(|l| {
                l.key != lease.key
                    && l.live_at(now)
                    && l.record.as_ref().map_or(true, |r| r.kind == LeaseKind::Exclusive)
            }) {
                let what = other.describe();
                lease.release().await;
                return Err(Error::Locked(format!(
                    "{} is in use by {what} (lease {}); wait for it to finish, or for the lease to expire if that run died",
                    target.display_name(),
                    other.key
                )));
            }
        }
        lease.task = Some(tokio::spawn(refresh(
            target.clone(),
            lease.key.clone(),
            record,
            ttl,
            lease.stop.clone(),
            lease.lost.clone(),
        )));
        Ok(lease)
    }

    /// A context for the operation the lease protects: cancelled with `ctx`, and also when the
    /// lease could not be refreshed before it expired.
    pub fn context(&self, ctx: &Context) -> Context {
        let token = ctx.cancel.child_token();
        let (lost, stop, t) = (self.lost.clone(), self.stop.clone(), token.clone());
        tokio::spawn(async move {
            tokio::select! {
                _ = lost.cancelled() => t.cancel(),
                _ = t.cancelled() => {}
                _ = stop.cancelled() => {}
            }
        });
        Context { cancel: token, ..ctx.clone() }
    }

    /// Whether the lease was lost (not refreshed before its expiry).
    pub fn is_lost(&self) -> bool {
        self.lost.is_cancelled()
    }

    /// Stops refreshing and deletes the lease object (best effort: a lease that cannot be deleted
    /// goes stale at its expiry).
    pub async fn release(mut self) {
        self.stop.cancel();
        if let Some(t) = self.task.take() {
            let _ = t.await;
        }
        if let Err(e) = self.target.delete(&self.key).await {
            tracing::warn!("releasing lease {} in {}: {e} (it expires by itself)", self.key, self.target);
        }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.stop.cancel();
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }
}

fn to_json(r: &LeaseRecord) -> Result<Bytes> {
    serde_json::to_vec_pretty(r).map(Bytes::from).map_err(|e| Error::InvalidInput(format!("lease: {e}")))
}

/// Rewrites the lease every third of its time to live; gives up (and signals `lost`) when the
/// lease expired without a successful refresh.
async fn refresh(
    target: Target,
    key: String,
    mut record: LeaseRecord,
    ttl: Duration,
    stop: CancellationToken,
    lost: CancellationToken,
) {
    let every = (ttl / 3).max(Duration::from_millis(100));
    let mut valid_until = record.expires_at;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
        let now = Utc::now();
        record.refreshed_at = now;
        record.expires_at = now + chrono::Duration::from_std(ttl).unwrap_or(chrono::Duration::MAX);
        let written = match to_json(&record) {
            Ok(b) => target.put_bytes(&key, b).await,
            Err(e) => Err(e),
        };
        match written {
            Ok(()) => valid_until = record.expires_at,
            Err(e) => {
                tracing::warn!("refreshing lease {key} in {target}: {e}");
                if Utc::now() + chrono::Duration::from_std(every).unwrap_or_default() >= valid_until {
                    tracing::error!(
                        "lease {key} in {target} expires before it can be refreshed: stopping the operation"
                    );
                    lost.cancel();
                    return;
                }
            }
        }
    }
}

/// This machine's host name (`/proc/sys/kernel/hostname`, `/etc/hostname`, or `unknown`).
pub(crate) fn host_name() -> String {
    ["/proc/sys/kernel/hostname", "/etc/hostname"]
        .iter()
        .filter_map(|p| std::fs::read_to_string(p).ok())
        .map(|s| s.trim().to_string())
        .find(|s| !s.is_empty())
        .unwrap_or_else(|| "unknown".into())
}

/// Takes a shared lease on `target` for `backups`, then checks that each still has its manifest
/// (a prune may have removed it between the caller's lookup and the lease). Fails with
/// [`Error::NotFound`] then, having touched nothing.
pub(crate) async fn share(target: &Target, command: &str, backups: Vec<BackupId>) -> Result<Lease> {
    let lease = Lease::acquire(target, LeaseKind::Shared, command, backups.clone()).await?;
    for id in &backups {
        match target.head(&layout::manifest_key(id)).await {
            Ok(Some(_)) => {}
            Ok(None) => {
                lease.release().await;
                return Err(Error::no_backup(
                    format!("backup {id} in {} (removed by a prune meanwhile)", target.display_name()),
                    vec![],
                ));
            }
            Err(e) => {
                lease.release().await;
                return Err(e);
            }
        }
    }
    Ok(lease)
}
