//! The client behind a `dbb_client*`: one tokio runtime, cancellation, progress; runs one
//! operation to a JSON report or an [`Outcome`] error. The only `unsafe` here is calling the
//! caller's progress callback.

use std::collections::VecDeque;
use std::ffi::{CString, c_char, c_void};
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use backup_core::{
    CancellationToken, Context, Critical, Error, ErrorKind, ErrorReport, Event, Observer, Phase, Report,
};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::options::{self, Alerting, ClientArgs, Common, Scoped};

/// How long an operation may take to wind down after it was cancelled before the call returns
/// anyway (the operation's remaining work is dropped; no manifest is ever written by then). A
/// restore's swap is never dropped: the call waits for it to finish (see [`drive`]). Shorter in
/// this crate's tests, so that they can go past it quickly.
pub(crate) const CANCEL_GRACE: Duration =
    if cfg!(test) { Duration::from_millis(1500) } else { Duration::from_secs(10) };
/// Events kept for `dbb_progress`.
const EVENTS_KEPT: usize = 32;
/// Default interval between progress callbacks.
const DEFAULT_CALLBACK_INTERVAL: Duration = Duration::from_millis(250);

/// A C progress callback: `json` is a progress snapshot, valid only during the call.
pub(crate) type ProgressFn = unsafe extern "C" fn(json: *const c_char, user_data: *mut c_void);

/// A registered callback. Only ever invoked on the thread that called the operation.
#[derive(Clone, Copy)]
pub(crate) struct Callback {
    pub func: ProgressFn,
    pub user_data: *mut c_void,
    pub interval: Duration,
}

// SAFETY: the callback and its user data are only *called* from the thread that runs an operation
// (inside `block_on`, never from a runtime worker); storing them in the shared client is just
// keeping two addresses. That they may be used from whichever thread calls an operation is the
// documented contract of `dbb_client_set_progress_callback`.
unsafe impl Send for Callback {}

/// What `dbb_progress` reports.
#[derive(Debug, Default, Serialize)]
struct ProgressState {
    /// Operation name (`create`, `restore`, ...) of the most recent operation.
    operation: Option<&'static str>,
    /// Whether it is still running.
    running: bool,
    /// Milliseconds since it started.
    elapsed_ms: u64,
    /// Current (or last) phase.
    phase: Option<Phase>,
    /// Bytes done in that phase.
    phase_bytes: u64,
    /// Expected bytes of that phase, when known.
    phase_total_bytes: Option<u64>,
    /// Bytes done across all phases.
    bytes: u64,
    /// Objects finished across all phases.
    objects: u64,
    /// Number of events seen.
    events_seen: u64,
    /// The last events (without the frequent `advanced` ones).
    events: VecDeque<Event>,
    #[serde(skip)]
    started: Option<Instant>,
}

/// Collects events into the pollable snapshot. Called from any runtime thread.
#[derive(Default)]
pub(crate) struct Progress {
    state: Mutex<ProgressState>,
}

impl Progress {
    fn lock(&self) -> MutexGuard<'_, ProgressState> {
        // A panic while holding this lock cannot leave the counters inconsistent in a way that
        // matters (they are informational), so a poisoned lock is used as is.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn begin(&self, operation: &'static str) {
        let mut s = self.lock();
        *s = ProgressState {
            operation: Some(operation),
            running: true,
            started: Some(Instant::now()),
            ..Default::default()
        };
    }

    fn end(&self) {
        let mut s = self.lock();
        s.running = false;
        s.elapsed_ms = s.started.map(|t| millis(t.elapsed())).unwrap_or(0);
    }

    /// The snapshot as JSON.
    pub(crate) fn snapshot(&self) -> String {
        let mut s = self.lock();
        if s.running {
            s.elapsed_ms = s.started.map(|t| millis(t.elapsed())).unwrap_or(0);
        }
        serde_json::to_string(&*s).unwrap_or_else(|_| "{}".into())
    }
}

impl Observer for Progress {
    fn on_event(&self, event: &Event) {
        let mut s = self.lock();
        s.events_seen += 1;
        match event {
            Event::PhaseStarted { phase, total_bytes } => {
                s.phase = Some(*phase);
                s.phase_bytes = 0;
                s.phase_total_bytes = *total_bytes;
            }
            Event::Advanced { bytes, .. } => {
                s.phase_bytes += bytes;
                s.bytes += bytes;
                return;
            }
            Event::ObjectDone { .. } => s.objects += 1,
            _ => {}
        }
        if s.events.len() == EVENTS_KEPT {
            s.events.pop_front();
        }
        s.events.push_back(event.clone());
    }
}

/// An error on its way to C: the status code and the core's error object ([`ErrorReport`]), to
/// which the C ABI adds `code` (the status) and, when asked, `returned_alerts`.
#[derive(Debug)]
pub(crate) struct Outcome {
    pub code: i32,
    pub error: ErrorReport,
    pub returned_alerts: Option<Value>,
}

impl Outcome {
    pub(crate) fn from_error(e: &Error) -> Self {
        Outcome { code: e.kind().exit_code(), error: ErrorReport::of(e), returned_alerts: None }
    }

    /// A report whose verdict is a failure (a damaged backup, unhealthy repositories).
    pub(crate) fn failed(kind: ErrorKind, message: &str) -> Self {
        Outcome { code: kind.exit_code(), error: ErrorReport::failed(kind, message), returned_alerts: None }
    }

    /// An outcome only the C ABI has (`panic`, `null_argument`), with its own status.
    pub(crate) fn with_code(kind: &str, code: i32, message: String) -> Self {
        let error = ErrorReport { kind: kind.to_string(), message, available: Vec::new(), hint: None };
        Outcome { code, error, returned_alerts: None }
    }

    /// The error object: `{"available", "code", "kind", "message"}` plus `returned_alerts`.
    pub(crate) fn json(&self) -> Value {
        let mut v = self.error.to_value();
        if let Value::Object(m) = &mut v {
            m.insert("code".into(), json!(self.code));
            if let Some(alerts) = &self.returned_alerts {
                m.insert("returned_alerts".into(), alerts.clone());
            }
        }
        v
    }

    /// What the CLI's `--json` prints for this error.
    pub(crate) fn cli_json(&self) -> String {
        ErrorReport::envelope(self.json())
    }
}

/// The result of one operation: the JSON report (also on failure when the operation produced one,
/// like a verify that found damage), the error if any, and what an alert says went wrong.
pub(crate) struct Finished {
    pub report: Option<String>,
    pub error: Option<Outcome>,
    pub alert_error: Option<String>,
}

impl Finished {
    /// An operation that failed without a report.
    pub(crate) fn failed(outcome: Outcome) -> Self {
        let alert_error = Some(format!("{} error: {}", outcome.error.kind, outcome.error.message));
        Finished { report: None, error: Some(outcome), alert_error }
    }
}

/// The object behind `dbb_client*`.
pub struct Client {
    runtime: tokio::runtime::Runtime,
    /// Cancelled and replaced by `dbb_cancel`; every operation runs on a child of the current one.
    cancel: Mutex<CancellationToken>,
    pub(crate) progress: Arc<Progress>,
    pub(crate) callback: Mutex<Option<Callback>>,
}

impl Client {
    /// Builds a client from `dbb_client_new`'s JSON options.
    pub(crate) fn new(options: Option<&str>) -> Result<Self, Error> {
        let (_, args): (Common, ClientArgs) = options::parse(options)?;
        let mut builder = tokio::runtime::Builder::new_multi_thread();
        builder.enable_all().thread_name("dbbackup-ffi");
        if let Some(n) = args.worker_threads {
            builder.worker_threads(n.max(1));
        }
        let runtime = builder.build().map_err(|e| Error::io("start the async runtime", e))?;
        Ok(Client {
            runtime,
            cancel: Mutex::new(CancellationToken::new()),
            progress: Arc::new(Progress::default()),
            callback: Mutex::new(None),
        })
    }

    /// Cancels every operation running on this client now. Later operations are not affected.
    pub(crate) fn cancel(&self) {
        let mut token = self.cancel.lock().unwrap_or_else(|p| p.into_inner());
        token.cancel();
        *token = CancellationToken::new();
    }

    fn child_token(&self) -> CancellationToken {
        self.cancel.lock().unwrap_or_else(|p| p.into_inner()).child_token()
    }

    /// Runs one operation on the calling thread: parse `options` as `A`, turn them into the
    /// core's options with `prepare`, run `op`, serialize its report. Whether a report that was
    /// produced still means failure (a verify that found damage) is the report's verdict.
    pub(crate) fn run<A, O, R, F, Fut>(
        &self,
        name: &'static str,
        options: Option<&str>,
        prepare: impl FnOnce(A) -> Result<O, Error>,
        op: F,
    ) -> Finished
    where
        A: DeserializeOwned,
        O: Scoped,
        R: Report,
        F: FnOnce(O, Context, Alerting) -> Fut,
        Fut: Future<Output = Result<R, Error>>,
    {
        let prepared = options::parse::<A>(options).and_then(|(common, args)| Ok((common, prepare(args)?)));
        let (common, opts) = match prepared {
            Ok(p) => p,
            Err(e) => return Finished::failed(Outcome::from_error(&e)),
        };
        if common.debug_panic {
            panic!("debug_panic requested in the options of {name}");
        }
        let token = self.child_token();
        let observer: Arc<dyn Observer> = self.progress.clone();
        let ctx = Context {
            observer,
            cancel: token.clone(),
            stores: common.stores.clone(),
            critical: Critical::default(),
        };
        let callback = *self.callback.lock().unwrap_or_else(|p| p.into_inner());
        let scope = common.alerts.cfg.as_ref().and_then(|_| opts.alert_scope());
        self.progress.begin(name);
        let fut = op(opts, ctx.clone(), common.alerts.clone());
        let result =
            self.runtime.block_on(drive(fut, token, &ctx.critical, common.timeout, callback, &self.progress));
        self.progress.end();
        if let Some(cb) = callback {
            notify(cb, &self.progress);
        }
        let mut finished = Self::finish(name, result);
        let alerting = common.alerts;
        if let (Some(cfg), Some(scope)) = (&alerting.cfg, &scope) {
            // The same alerts as the CLI's, decided by the core; they never change the outcome.
            let error = finished.alert_error.clone();
            let handled = finished.report.is_some() && matches!(name, "status" | "guard");
            let ctx = Context { cancel: CancellationToken::new(), ..ctx };
            let after =
                self.runtime.block_on(backup_core::after_command(cfg, name, scope, error, handled, &ctx));
            alerting.warn(after);
        }
        let warnings = alerting.take_warnings();
        if !warnings.is_empty() {
            finished.report = finished.report.map(|text| with_field(text, "alert_warnings", json!(warnings)));
        }
        let returned = alerting.take_returned();
        if alerting.cfg.as_ref().is_some_and(|c| c.inbox.is_some()) {
            // Every alert with the texts the core's channels send (subject, body, Slack line).
            let returned: Vec<Value> = returned
                .iter()
                .map(|n| {
                    let mut v = serde_json::to_value(n).unwrap_or_else(|_| json!({}));
                    if let Value::Object(m) = &mut v {
                        m.insert("subject".into(), json!(n.subject()));
                        m.insert("body".into(), json!(n.body()));
                        m.insert("slack_text".into(), json!(backup_core::slack_text(n)));
                    }
                    v
                })
                .collect();
            finished.report =
                finished.report.map(|text| with_field(text, "returned_alerts", json!(returned)));
            if let Some(o) = &mut finished.error {
                o.returned_alerts = Some(json!(returned));
            }
        }
        finished
    }

    /// The status, error and alert text of a finished operation, all from the core: the error's
    /// kind, or the report's verdict.
    fn finish<R: Report>(name: &str, result: Result<R, Error>) -> Finished {
        match result {
            Ok(report) => {
                let verdict = report.verdict();
                let error = verdict.failure().map(|(kind, message)| Outcome::failed(kind, message));
                match serde_json::to_string(&report) {
                    Ok(text) => Finished { report: Some(text), error, alert_error: verdict.alert_error() },
                    Err(e) => Finished::failed(Outcome::failed(
                        ErrorKind::Failed,
                        &format!("serialize the {name} report: {e}"),
                    )),
                }
            }
            Err(e) => Finished::failed(Outcome::from_error(&e)),
        }
    }
}

/// The report with a field added: `alert_warnings` (alerts that could not be delivered; the
/// operation's result stands) or `returned_alerts`.
fn with_field(report: String, key: &str, value: Value) -> String {
    match serde_json::from_str::<Value>(&report) {
        Ok(Value::Object(mut m)) => {
            m.insert(key.into(), value);
            Value::Object(m).to_string()
        }
        _ => report,
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn notify(cb: Callback, progress: &Progress) {
    // A snapshot is JSON text, which never contains a NUL byte; if it somehow did, skip the call.
    if let Ok(text) = CString::new(progress.snapshot()) {
        // SAFETY: the caller registered `func`/`user_data` with `dbb_client_set_progress_callback`,
        // promising they stay valid while operations run; we are on the thread that called the
        // operation, and `text` outlives the call.
        unsafe { (cb.func)(text.as_ptr(), cb.user_data) };
    }
}

/// Polls the operation on the calling thread, calling the progress callback between polls, and
/// turns a cancellation or an expired deadline into [`Error::Cancelled`]. A cancelled operation
/// gets [`CANCEL_GRACE`] to wind down before it is dropped, except while it is inside a
/// [`Critical`] step (a restore's swap, bounded by the server's lock timeout): dropped there, the
/// swap would be cut in the middle, so the call waits for the step to end. An operation that
/// finished anyway (its swap had begun) reports its result.
async fn drive<R>(
    fut: impl Future<Output = Result<R, Error>>,
    token: CancellationToken,
    critical: &Critical,
    timeout: Option<Duration>,
    callback: Option<Callback>,
    progress: &Progress,
) -> Result<R, Error> {
    let deadline = async {
        match timeout {
            Some(d) => tokio::time::sleep(d).await,
            None => std::future::pending().await,
        }
    };
    let ticks = async {
        match callback {
            Some(cb) => {
                let period = if cb.interval.is_zero() { DEFAULT_CALLBACK_INTERVAL } else { cb.interval };
                let mut interval = tokio::time::interval(period);
                interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
                interval.tick().await;
                loop {
                    interval.tick().await;
                    notify(cb, progress);
                }
            }
            None => std::future::pending::<()>().await,
        }
    };
    tokio::pin!(fut, deadline, ticks);
    let reason = tokio::select! {
        r = &mut fut => return r,
        () = &mut deadline => {
            token.cancel();
            format!("deadline of {} ms exceeded", timeout.map(millis).unwrap_or(0))
        }
        () = token.cancelled() => "cancelled by dbb_cancel".to_string(),
        () = &mut ticks => "progress ticker stopped".to_string(),
    };
    // Let the operation wind down (abort uploads, remove temp files) before returning.
    loop {
        match tokio::time::timeout(CANCEL_GRACE, &mut fut).await {
            Ok(Ok(report)) => return Ok(report),
            Ok(Err(_)) => return Err(Error::Cancelled(reason)),
            Err(_) if critical.is_active() => {
                tokio::select! {
                    r = &mut fut => return r.map_err(|_| Error::Cancelled(reason)),
                    () = critical.idle() => {}
                }
            }
            Err(_) => return Err(Error::Cancelled(reason)),
        }
    }
}
