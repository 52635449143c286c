//! Progress events and cancellation: how long operations talk to whoever drives them.
//!
//! The core never draws anything. It emits [`Event`]s to an [`Observer`]; the CLI turns them into
//! progress bars, the FFI into a pollable snapshot. Every long operation also takes a [`Context`]
//! whose cancellation token it checks between units of work.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

pub use tokio_util::sync::CancellationToken;

use crate::error::{Error, Result};
use crate::settings::RepoSettings;

/// A phase of a long operation, for progress display.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Taking the consistent snapshot of the source.
    Snapshot,
    /// Dumping, compressing and uploading data.
    Upload,
    /// Downloading and checking stored objects.
    Verify,
    /// Loading data into the target.
    Load,
    /// Building indexes/constraints, checking, swapping in.
    Finish,
    /// Deleting objects (prune).
    Delete,
}

/// Something that happened during an operation.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// A phase began; `total_bytes` when known lets a bar show a percentage.
    PhaseStarted {
        /// Which phase.
        phase: Phase,
        /// Expected amount of work in bytes, if known.
        total_bytes: Option<u64>,
    },
    /// Bytes of work done in the current phase (increment, not total).
    Advanced {
        /// Which phase.
        phase: Phase,
        /// Bytes processed since the last event.
        bytes: u64,
    },
    /// An object finished (stored, verified or loaded).
    ObjectDone {
        /// Which phase.
        phase: Phase,
        /// Object key relative to the backup.
        key: String,
    },
    /// A phase ended.
    PhaseFinished {
        /// Which phase.
        phase: Phase,
    },
    /// A human-readable note worth showing (fallbacks, warnings).
    Note {
        /// The note.
        message: String,
    },
}

/// Receives progress events. Implementations must be cheap and must not block: events arrive
/// from worker tasks on any thread.
pub trait Observer: Send + Sync {
    /// Called for each event.
    fn on_event(&self, event: &Event);
}

/// An observer that ignores everything.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoProgress;

impl Observer for NoProgress {
    fn on_event(&self, _event: &Event) {}
}

/// What every long operation receives besides its options: where to report progress and how to
/// learn that it should stop.
#[derive(Clone)]
pub struct Context {
    /// Progress sink.
    pub observer: Arc<dyn Observer>,
    /// Cancelled by the caller (Ctrl-C, `dbb_cancel`, deadline).
    pub cancel: CancellationToken,
    /// The store settings each repository is opened with (credentials, endpoints): explicit,
    /// never read from the environment by the core. Default: none (local and memory repositories
    /// need none).
    pub stores: RepoSettings,
    /// Uninterruptible steps running now (a restore's swap). Shared by clones of the context.
    pub critical: Critical,
}

impl Default for Context {
    fn default() -> Self {
        Context {
            observer: Arc::new(NoProgress),
            cancel: CancellationToken::new(),
            stores: RepoSettings::default(),
            critical: Critical::default(),
        }
    }
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context").field("cancelled", &self.cancel.is_cancelled()).finish()
    }
}

impl Context {
    /// A context reporting to `observer`.
    pub fn with_observer(observer: Arc<dyn Observer>) -> Self {
        Context {
            observer,
            cancel: CancellationToken::new(),
            stores: RepoSettings::default(),
            critical: Critical::default(),
        }
    }

    /// The same context with these store settings.
    pub fn with_stores(mut self, stores: RepoSettings) -> Self {
        self.stores = stores;
        self
    }

    /// Emits an event.
    pub fn emit(&self, event: Event) {
        self.observer.on_event(&event);
    }

    /// Emits a note.
    pub fn note(&self, message: impl Into<String>) {
        let message = message.into();
        tracing::info!("{message}");
        self.emit(Event::Note { message });
    }

    /// Fails with [`Error::Cancelled`] if cancellation was requested.
    pub fn check(&self, what: &str) -> Result<()> {
        if self.cancel.is_cancelled() { Err(Error::Cancelled(what.to_string())) } else { Ok(()) }
    }
}

/// Uninterruptible steps of an operation: a restore's swap either runs to its end or never
/// starts (it is not given the cancellation token, and each of its statements is bounded by the
/// server's lock timeout). A caller that gives up on a cancelled operation after a grace period
/// (the FFI drops the operation's future) must first wait for [`Critical::idle`], or it would cut
/// a swap in the middle.
#[derive(Clone, Default)]
pub struct Critical(Arc<CriticalState>);

#[derive(Default)]
struct CriticalState {
    running: AtomicUsize,
    ended: tokio::sync::Notify,
}

/// One uninterruptible step; it ends when dropped.
#[must_use = "the step ends when the guard is dropped"]
pub struct CriticalGuard(Arc<CriticalState>);

impl Critical {
    /// Marks an uninterruptible step as running until the guard is dropped.
    pub fn enter(&self) -> CriticalGuard {
        self.0.running.fetch_add(1, Ordering::SeqCst);
        CriticalGuard(self.0.clone())
    }

    /// Whether an uninterruptible step is running now.
    pub fn is_active(&self) -> bool {
        self.0.running.load(Ordering::SeqCst) > 0
    }

    /// Resolves once no uninterruptible step is running.
    pub async fn idle(&self) {
        loop {
            // Registered before the check, so an end between the check and the wait is seen.
            let ended = self.0.ended.notified();
            if !self.is_active() {
                return;
            }
            ended.await;
        }
    }
}

impl std::fmt::Debug for Critical {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Critical").field("active", &self.is_active()).finish()
    }
}

impl Drop for CriticalGuard {
    fn drop(&mut self) {
        self.0.running.fetch_sub(1, Ordering::SeqCst);
        self.0.ended.notify_waiters();
    }
}

/// Measures a phase and emits start/finish events.
pub(crate) struct PhaseGuard<'a> {
    ctx: &'a Context,
    phase: Phase,
}

impl<'a> PhaseGuard<'a> {
    pub(crate) fn start(ctx: &'a Context, phase: Phase, total_bytes: Option<u64>) -> Self {
        ctx.emit(Event::PhaseStarted { phase, total_bytes });
        PhaseGuard { ctx, phase }
    }
}

impl Drop for PhaseGuard<'_> {
    fn drop(&mut self) {
        self.ctx.emit(Event::PhaseFinished { phase: self.phase });
    }
}
