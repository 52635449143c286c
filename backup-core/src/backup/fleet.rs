//! The repositories one backup is written to: the same bytes to each, a repository that fails
//! dropped from the rest of the backup (never given the manifest, its objects removed), the
//! backup failing only when none is left.

use bytes::Bytes;
use futures::StreamExt;
use tokio::sync::mpsc;

use crate::codec::ByteStream;
use crate::codec::compress::{self, ChannelStream};
use crate::error::{Error, Result};
use crate::model::BackupId;
use crate::progress::Context;
use crate::storage::Target;

/// The repositories of one backup and which of them have failed so far. A failed repository
/// receives nothing more and never gets the manifest; the others carry on.
pub(super) struct Fleet<'a> {
    targets: &'a [Target],
    failed: std::sync::Mutex<Vec<Option<Error>>>,
    /// Keys this run started writing, per repository: the only objects a failed run removes.
    written: std::sync::Mutex<Vec<Vec<String>>>,
}

impl<'a> Fleet<'a> {
    pub(super) fn new(targets: &'a [Target]) -> Self {
        Fleet {
            targets,
            failed: std::sync::Mutex::new(targets.iter().map(|_| None).collect()),
            written: std::sync::Mutex::new(targets.iter().map(|_| Vec::new()).collect()),
        }
    }

    /// Notes that this run is about to write `key` in repository `i` (before the upload starts:
    /// an upload that fails after the store took it must still be removed).
    fn writing(&self, i: usize, key: &str) {
        self.written.lock().unwrap_or_else(|p| p.into_inner())[i].push(key.to_string());
    }

    /// Best effort: removes from repository `i` the objects this run wrote, and nothing else: not
    /// the manifest (a failed run never wrote one; one that is there belongs to another run) nor
    /// any other object under the same id. What is left is swept by `prune` after its grace
    /// period.
    pub(super) async fn cleanup(&self, i: usize, id: &BackupId) {
        let keys = std::mem::take(&mut self.written.lock().unwrap_or_else(|p| p.into_inner())[i]);
        let t = &self.targets[i];
        for key in keys {
            if let Err(e) = t.delete(&key).await {
                tracing::warn!("cleanup of failed backup {id} in {t}: {e}");
            }
        }
    }

    /// [`Fleet::cleanup`] in every repository.
    pub(super) async fn cleanup_all(&self, id: &BackupId) {
        for i in 0..self.targets.len() {
            self.cleanup(i, id).await;
        }
    }

    /// Repository `i`.
    pub(super) fn target(&self, i: usize) -> &'a Target {
        &self.targets[i]
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Option<Error>>> {
        self.failed.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Indexes and targets still alive.
    pub(super) fn live(&self) -> Vec<(usize, &'a Target)> {
        let failed = self.lock();
        self.targets.iter().enumerate().filter(|(i, _)| failed[*i].is_none()).collect()
    }

    /// Marks a repository failed. Returns the error back if no repository is left alive.
    pub(super) fn fail(&self, i: usize, e: Error) -> Option<Error> {
        let mut failed = self.lock();
        tracing::warn!("repository {} failed, continuing with the others: {e}", self.targets[i]);
        let msg = e.to_string();
        failed[i] = Some(e);
        if failed.iter().all(Option::is_some) {
            return Some(Error::source(format!("every repository failed; last: {}", self.targets[i]), msg));
        }
        None
    }

    pub(super) fn take_failures(&self) -> Vec<(usize, Error)> {
        self.lock().iter_mut().enumerate().filter_map(|(i, e)| e.take().map(|e| (i, e))).collect()
    }
}

/// Sends one stream to every live repository. A repository whose upload fails is marked failed
/// and dropped from the rest of the backup; the call fails only when the stream itself fails,
/// on cancellation, or when no repository is left.
pub(super) async fn fan_out(
    mut data: ByteStream,
    key: &str,
    size_hint: Option<u64>,
    fleet: &Fleet<'_>,
    ctx: &Context,
) -> Result<()> {
    if let [only] = fleet.targets {
        fleet.writing(0, key);
        only.put_stream(key, data, size_hint, ctx).await?;
        return Ok(());
    }
    let live = fleet.live();
    let mut senders = Vec::new();
    let mut uploads = Vec::new();
    for (i, t) in &live {
        fleet.writing(*i, key);
        let (tx, rx) = mpsc::channel::<Result<Bytes>>(compress::CHANNEL_DEPTH);
        senders.push(tx);
        let stream = ChannelStream::new(rx).boxed();
        uploads.push(async move { t.put_stream(key, stream, size_hint, ctx).await });
    }
    let pump = async move {
        while let Some(item) = data.next().await {
            match item {
                Ok(b) => {
                    for tx in &senders {
                        // A closed receiver means that upload failed; its error is reported below.
                        let _ = tx.send(Ok(b.clone())).await;
                    }
                }
                Err(e) => {
                    let msg = e.to_string();
                    for tx in &senders {
                        let _ = tx.send(Err(Error::source("backup stream", msg.clone()))).await;
                    }
                    return Err(e);
                }
            }
        }
        Ok(())
    };
    let (pumped, results) = tokio::join!(pump, futures::future::join_all(uploads));
    pumped?;
    for ((i, _), r) in live.iter().zip(results) {
        match r {
            Ok(_) => {}
            Err(e @ Error::Cancelled(_)) => return Err(e),
            Err(e) => {
                if let Some(all) = fleet.fail(*i, e) {
                    return Err(all);
                }
            }
        }
    }
    Ok(())
}
