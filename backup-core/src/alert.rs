//! Alert state: alerts people can trust. Every (repository set, database, check) is *healthy*
//! or *failing*, and its state is kept beside the backups: an object `alerts/<hash>.json` in the
//! first repository, or, when that repository cannot be written (read-only credentials), a file
//! `<state_dir>/<hash>.json` on the machine running the check. Reads take whichever of the two is
//! newer.
//!
//! An alert is sent only when the state changes:
//! - healthy (or unknown) -> failing: `FAILING: check: expected ..., found ...`;
//! - failing -> healthy: `RECOVERED: check: healthy again after failing for ...`, and only when
//!   the failure itself was alerted (never a "recovered" without a failure before it);
//! - still failing: a reminder at most every `repeat` (default 24 h).
//!
//! A failure alert that reached no channel is not recorded as sent, so the next run sends it
//! again. Heartbeats and events (a guard rollback, a failed restore) are not state: they are
//! sent by [`crate::notify`] every time.

use std::path::PathBuf;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::Error;
use crate::format::layout;
use crate::guard::{GuardOptions, GuardReport};
use crate::notify::{self, AlertLine, Notification, NotifyConfig, Outcome};
pub use crate::notify::{Health, Subject, Transition};
use crate::progress::Context;
use crate::storage::Target;

/// Default interval between reminders while a check stays failing.
pub const DEFAULT_REPEAT_SECS: u64 = 24 * 3600;

/// Which backups the state belongs to: the repository set and the database.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlertScope {
    /// The repositories (the first one stores the state).
    pub repos: Vec<String>,
    /// The database, when the command concerns one.
    pub database: Option<String>,
}

/// The stored state of one (repository set, database, check).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckState {
    /// Check name.
    pub check: String,
    /// Repository the check is about.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repo: Option<String>,
    /// Database.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database: Option<String>,
    /// The repository set.
    #[serde(default)]
    pub repos: Vec<String>,
    /// Healthy or failing.
    pub state: Health,
    /// Since when it is in this state.
    pub since: DateTime<Utc>,
    /// When the last failure alert (or reminder) was delivered; `None`: not alerted yet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alerted_at: Option<DateTime<Utc>>,
    /// Expected (last failure).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected: Option<String>,
    /// Found (last failure).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub found: Option<String>,
    /// Last write.
    pub updated_at: DateTime<Utc>,
}

/// Result of [`track`].
#[derive(Debug, Clone, Default)]
pub struct AlertReport {
    /// The state of each subject after this run, in the subjects' order.
    pub states: Vec<CheckState>,
    /// The alert sent, if any.
    pub sent: Option<Notification>,
    /// Problems (state unreadable/unwritable, delivery failed); never fatal.
    pub warnings: Vec<String>,
}

/// Stable hex name of a (repository set, database, check, repository) scope.
pub fn scope_hash(scope: &AlertScope, check: &str, repo: Option<&str>) -> String {
    let mut repos = scope.repos.clone();
    repos.sort();
    repos.dedup();
    let mut h = Sha256::new();
    for r in &repos {
        h.update(r.as_bytes());
        h.update([0]);
    }
    h.update([1]);
    h.update(scope.database.as_deref().unwrap_or("").as_bytes());
    h.update([1]);
    h.update(check.as_bytes());
    h.update([1]);
    h.update(repo.unwrap_or("").as_bytes());
    hex::encode(&h.finalize()[..16])
}

/// The pure state machine: the new state and the alert to send for subject `s`, given the stored
/// state `prev`. `can_send`: some channel is configured (without one, nothing counts as alerted).
/// The returned state assumes the alert is delivered; see [`track`].
pub fn step(
    prev: Option<&CheckState>,
    s: &Subject,
    scope: &AlertScope,
    can_send: bool,
    now: DateTime<Utc>,
    repeat_secs: u64,
) -> (CheckState, Option<Transition>) {
    let base = |state: Health, since: DateTime<Utc>| CheckState {
        check: s.check.clone(),
        repo: s.repo.clone(),
        database: scope.database.clone(),
        repos: scope.repos.clone(),
        state,
        since,
        alerted_at: None,
        expected: None,
        found: None,
        updated_at: now,
    };
    let failing_prev = prev.filter(|p| p.state == Health::Failing);
    if s.ok {
        return match failing_prev {
            Some(p) => {
                let t = p.alerted_at.is_some().then_some(Transition::Recovered);
                (base(Health::Healthy, now), t)
            }
            None => (base(Health::Healthy, prev.map_or(now, |p| p.since)), None),
        };
    }
    let mut st = base(Health::Failing, failing_prev.map_or(now, |p| p.since));
    st.expected = Some(s.expected.clone());
    st.found = Some(s.found.clone());
    st.alerted_at = failing_prev.and_then(|p| p.alerted_at);
    let t = match st.alerted_at {
        _ if !can_send => None,
        None => Some(Transition::Failing),
        Some(at) if (now - at).num_seconds() >= i64::try_from(repeat_secs).unwrap_or(i64::MAX) => {
            Some(Transition::StillFailing)
        }
        Some(_) => None,
    };
    if t.is_some() {
        st.alerted_at = Some(now);
    }
    (st, t)
}

/// Where states are kept: the first repository, and a local directory where it is read-only.
struct StateStore<'a> {
    repo: Option<&'a Target>,
    local_dir: Option<PathBuf>,
}

impl StateStore<'_> {
    async fn read(&self, hash: &str, warnings: &mut Vec<String>) -> Option<CheckState> {
        let mut found: Vec<CheckState> = Vec::new();
        if let Some(t) = self.repo {
            match t.get_bytes(&layout::alert_state_key(hash), 1 << 16).await {
                Ok(b) => match serde_json::from_slice(&b) {
                    Ok(s) => found.push(s),
                    Err(e) => {
                        warnings.push(format!("alert state {hash} in {t}: unreadable ({e}); starting afresh"))
                    }
                },
                Err(Error::NotFound { .. }) => {}
                Err(e) => warnings.push(format!("alert state: {e}")),
            }
        }
        if let Some(dir) = &self.local_dir
            && let Ok(b) = tokio::fs::read(dir.join(format!("{hash}.json"))).await
            && let Ok(s) = serde_json::from_slice::<CheckState>(&b)
        {
            found.push(s);
        }
        found.into_iter().max_by_key(|s| s.updated_at)
    }

    async fn write(&self, hash: &str, st: &CheckState, warnings: &mut Vec<String>) {
        let Ok(bytes) = serde_json::to_vec_pretty(st) else { return };
        let mut why = String::from("no repository");
        if let Some(t) = self.repo {
            match t.put_bytes(&layout::alert_state_key(hash), bytes.clone().into()).await {
                Ok(()) => return,
                Err(e) => why = e.to_string(),
            }
        }
        let Some(dir) = &self.local_dir else {
            warnings.push(format!("alert state not saved ({why}) and no local state directory is set"));
            return;
        };
        let path = dir.join(format!("{hash}.json"));
        let tmp = dir.join(format!("{hash}.json.tmp"));
        let res = async {
            tokio::fs::create_dir_all(dir).await?;
            tokio::fs::write(&tmp, &bytes).await?;
            tokio::fs::rename(&tmp, &path).await
        }
        .await;
        match res {
            Ok(()) => {
                tracing::info!("alert state kept in {} (repository not writable: {why})", path.display())
            }
            Err(e) => warnings.push(format!(
                "alert state not saved: repository not writable ({why}), local file {}: {e}",
                path.display()
            )),
        }
    }
}

/// Reads the stored state of each subject, steps the state machine, stores what changed and
/// sends one alert for every transition of this run (grouped into one notification). `failing`
/// is the outcome a failure is reported as (`failure` for commands, `unhealthy` for `status`).
pub async fn track(
    cfg: &NotifyConfig,
    state_repo: Option<&Target>,
    scope: &AlertScope,
    command: &str,
    failing: Outcome,
    subjects: &[Subject],
    now: DateTime<Utc>,
) -> AlertReport {
    let store = StateStore { repo: state_repo, local_dir: cfg.state_dir.clone() };
    let can_send = cfg.has_alert_channel() && cfg.wants(failing);
    let repeat = cfg.repeat.map_or(DEFAULT_REPEAT_SECS, |d| d.as_secs());
    let mut report = AlertReport::default();
    let mut pending: Vec<(String, CheckState, Option<CheckState>, Transition)> = Vec::new();
    for s in subjects {
        let hash = scope_hash(scope, &s.check, s.repo.as_deref());
        let prev = store.read(&hash, &mut report.warnings).await;
        let (st, t) = step(prev.as_ref(), s, scope, can_send, now, repeat);
        let changed = prev.as_ref().is_none_or(|p| p.state != st.state || p.alerted_at != st.alerted_at);
        match t {
            Some(t) => pending.push((hash, st.clone(), prev, t)),
            None if changed => store.write(&hash, &st, &mut report.warnings).await,
            None => {}
        }
        report.states.push(st);
    }
    if pending.is_empty() {
        return report;
    }
    let lines: Vec<AlertLine> = pending
        .iter()
        .map(|(_, st, prev, t)| {
            let since = prev.as_ref().filter(|p| p.state == Health::Failing).map_or(st.since, |p| p.since);
            AlertLine {
                transition: *t,
                check: st.check.clone(),
                repo: st.repo.clone(),
                database: st.database.clone(),
                expected: st.expected.clone(),
                found: st.found.clone(),
                failing_since: since,
                failing_secs: u64::try_from((now - since).num_seconds()).unwrap_or(0),
            }
        })
        .collect();
    let outcome = if lines.iter().any(|l| l.transition != Transition::Recovered) {
        failing
    } else {
        Outcome::Recovered
    };
    let mut n = Notification::new(command, outcome, notify::alert_text(&lines), cfg.host.clone());
    n.alerts = lines;
    n.repos = scope.repos.clone();
    n.database = scope.database.clone();
    let (delivered, warnings) = notify::deliver(cfg, &n).await;
    report.warnings.extend(warnings);
    for (hash, mut st, prev, t) in pending {
        if !delivered && t != Transition::Recovered {
            // Not delivered anywhere: not alerted, so the next run tries again.
            st.alerted_at = prev.and_then(|p| p.alerted_at);
        }
        store.write(&hash, &st, &mut report.warnings).await;
        if let Some(s) = report.states.iter_mut().find(|s| s.check == st.check && s.repo == st.repo) {
            *s = st;
        }
    }
    report.sent = delivered.then_some(n);
    report
}

/// [`track`] for a `status` report: each check is a subject; the report's checks get their
/// state and since when.
pub async fn track_status(
    cfg: &NotifyConfig,
    report: &mut crate::health::StatusReport,
    state_repo: Option<&Target>,
    scope: &AlertScope,
    now: DateTime<Utc>,
) -> AlertReport {
    let subjects: Vec<Subject> = report.checks.iter().map(crate::health::Check::subject).collect();
    let r = track(cfg, state_repo, scope, "status", Outcome::Unhealthy, &subjects, now).await;
    for (c, s) in report.checks.iter_mut().zip(&r.states) {
        c.state = Some(s.state);
        c.since = Some(s.since);
    }
    r
}

/// [`track`] for one command's result: the command is the check; `error` is what went wrong.
pub async fn track_command(
    cfg: &NotifyConfig,
    scope: &AlertScope,
    command: &str,
    error: Option<String>,
    ctx: &Context,
) -> AlertReport {
    // Opened with the repository's own store settings, like the command's repositories.
    let state_repo = match scope.repos.first().map(|r| Target::create_in(r, ctx)) {
        Some(Ok(t)) => Some(t),
        _ => None,
    };
    let s = Subject {
        check: command.to_string(),
        repo: None,
        ok: error.is_none(),
        expected: format!("`{command}` succeeds"),
        found: error.unwrap_or_else(|| "success".into()),
    };
    track(cfg, state_repo.as_ref(), scope, command, Outcome::Failure, &[s], Utc::now()).await
}

impl AlertScope {
    /// The scope of a command on `repos` about the database of `database_url` (if any). An
    /// encrypted run names the database by a digest only: the state lives in the repository, and
    /// the bucket must not say which database its encrypted backups hold.
    pub fn of(repos: Vec<String>, database_url: Option<&str>, encrypted: bool) -> Self {
        let database = database_url
            .and_then(|u| crate::model::DatabaseUrl::parse(u).ok())
            .map(|u| u.database().to_string())
            .map(|d| {
                if encrypted {
                    format!("sha256:{}", &crate::codec::checksum::sha256_hex(d.as_bytes())[..16])
                } else {
                    d
                }
            });
        AlertScope { repos, database }
    }
}

/// Alerts for a finished command, the same from every face: `create`, `copy`, `prune`,
/// `verify` (and a `status` that failed before its report) are state-tracked checks, one alert
/// per change; a failed `restore` or `guard` is an event, alerted every time. `handled`: the
/// command alerted for itself (a `status` that tracked its checks, a `guard` that returned its
/// report and alerted a rollback). `error`: what went wrong, `None` on success. Then the success
/// notification (when `on` asks for it) and the heartbeat. Returns delivery warnings.
pub async fn after_command(
    cfg: &NotifyConfig,
    command: &str,
    scope: &AlertScope,
    error: Option<String>,
    handled: bool,
    ctx: &Context,
) -> Vec<String> {
    let mut warnings = Vec::new();
    match command {
        "restore" | "guard" => {
            if let (Some(e), false) = (&error, handled) {
                let mut n = Notification::new(
                    command,
                    Outcome::Failure,
                    format!("FAILED: {command}: {e}"),
                    cfg.host.clone(),
                );
                n.repos = scope.repos.clone();
                n.database = scope.database.clone();
                if cfg.wants(Outcome::Failure) {
                    warnings.extend(notify::deliver(cfg, &n).await.1);
                }
            }
        }
        "status" if handled => {}
        _ => warnings.extend(track_command(cfg, scope, command, error.clone(), ctx).await.warnings),
    }
    if error.is_none() && cfg.on.contains(&Outcome::Success) {
        let mut n =
            Notification::new(command, Outcome::Success, format!("{command} completed"), cfg.host.clone());
        n.repos = scope.repos.clone();
        n.database = scope.database.clone();
        warnings.extend(notify::deliver(cfg, &n).await.1);
    }
    warnings.extend(notify::heartbeat(cfg, error.is_none()).await);
    warnings
}

/// The event alert of a guard whose command failed: `ROLLED BACK: ...` (the rollback succeeded)
/// or, critical and always sent, `ROLLBACK FAILED: ...`; `None` when there is nothing to say.
/// `command_line` names the guarded command (redacted); `failed_status` is its exit status when
/// it ran and failed (negative otherwise).
pub async fn guard_alert(
    command_line: &str,
    opts: &GuardOptions,
    result: &crate::error::Result<GuardReport>,
    failed_status: i32,
    cfg: &NotifyConfig,
    ctx: &Context,
) -> Option<Notification> {
    let database = crate::model::DatabaseUrl::parse(&opts.source).ok().map(|u| u.database().to_string());
    let mut n = match result {
        Ok(r) if r.rolled_back => rollback_event(
            Outcome::Failure,
            format!(
                "ROLLED BACK: guarded command `{command_line}` failed (exit status {}); database {} restored from backup {} in {} (recovery time); the rollback succeeded",
                r.command_status,
                database.as_deref().unwrap_or("?"),
                r.backup_id,
                match r.recovery_ms.unwrap_or(0) {
                    ms if ms < 1000 => format!("{ms} ms"),
                    ms => format!("{:.1} s", ms as f64 / 1000.0),
                }
            ),
            command_line,
            r.command_status,
            Some(r.backup_id.clone()),
            r.recovery_ms,
            true,
        ),
        Err(e) if failed_status >= 0 => {
            let id = match opts.repos.first().map(|u| Target::open_in(u, ctx)) {
                Some(Ok(t)) => crate::catalog::resolve(&t, "tag:guard").await.ok().map(|m| m.id.to_string()),
                _ => None,
            };
            rollback_event(
                Outcome::Critical,
                format!(
                    "ROLLBACK FAILED: guarded command `{command_line}` failed (exit status {failed_status}) and restoring the safety backup {} into database {} failed: {}. The database may be in the command's state: restore it by hand",
                    id.as_deref().unwrap_or("?"),
                    database.as_deref().unwrap_or("?"),
                    crate::model::redact_str(&e.to_string())
                ),
                command_line,
                failed_status,
                id,
                None,
                false,
            )
        }
        _ => return None,
    };
    n.repos = opts.repos.clone();
    n.database = database;
    n.host = cfg.host.clone();
    Some(n)
}

/// The alert for a guard that rolled back (or failed to): always sent, never state-tracked.
fn rollback_event(
    outcome: Outcome,
    message: String,
    command: &str,
    status: i32,
    backup_id: Option<String>,
    recovery_ms: Option<u64>,
    rollback_succeeded: bool,
) -> Notification {
    let mut n = Notification::new("guard", outcome, message, None);
    let d = &mut n.details;
    d.insert("guarded_command".into(), command.into());
    d.insert("command_status".into(), status.into());
    d.insert("backup_id".into(), backup_id.into());
    d.insert("recovery_ms".into(), recovery_ms.into());
    d.insert("rolled_back".into(), true.into());
    d.insert("rollback_succeeded".into(), rollback_succeeded.into());
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subj(ok: bool) -> Subject {
        Subject {
            check: "newest_age".into(),
            repo: Some("/r".into()),
            ok,
            expected: "at most 26h".into(),
            found: "30h".into(),
        }
    }

    #[test]
    fn transitions() {
        let scope = AlertScope { repos: vec!["/r".into()], database: None };
        let t0 = Utc::now();
        let h = chrono::Duration::hours(1);
        // healthy twice: nothing
        let (s1, t) = step(None, &subj(true), &scope, true, t0, 86400);
        assert_eq!((s1.state, t), (Health::Healthy, None));
        let (s2, t) = step(Some(&s1), &subj(true), &scope, true, t0 + h, 86400);
        assert_eq!((s2.since, t), (t0, None));
        // failing twice: one alert
        let (f1, t) = step(Some(&s2), &subj(false), &scope, true, t0 + h * 2, 86400);
        assert_eq!((f1.state, t, f1.since), (Health::Failing, Some(Transition::Failing), t0 + h * 2));
        let (f2, t) = step(Some(&f1), &subj(false), &scope, true, t0 + h * 3, 86400);
        assert_eq!((t, f2.alerted_at), (None, Some(t0 + h * 2)));
        // reminder after the repeat interval
        let (f3, t) = step(Some(&f2), &subj(false), &scope, true, t0 + h * 26, 86400);
        assert_eq!((t, f3.since), (Some(Transition::StillFailing), t0 + h * 2));
        // recovering: one "recovered"
        let (r1, t) = step(Some(&f3), &subj(true), &scope, true, t0 + h * 27, 86400);
        assert_eq!((r1.state, t), (Health::Healthy, Some(Transition::Recovered)));
        // never a "recovered" without an alerted failure
        let (u, t) = step(Some(&s2), &subj(false), &scope, false, t0, 86400);
        assert_eq!((u.alerted_at, t), (None, None));
        let (_, t) = step(Some(&u), &subj(true), &scope, true, t0 + h, 86400);
        assert_eq!(t, None);
        assert_ne!(scope_hash(&scope, "a", None), scope_hash(&scope, "b", None));
    }
}
