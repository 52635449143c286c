//! The `guard` use-case: a pre-migration safety net. Take a backup, run the caller's command, and
//! when the command fails (non-zero exit or killed by a signal) restore that backup with the
//! engine's safe restore and report the measured recovery time. Where the engine can copy the
//! database cheaply on the server ([`source::Loader::rollback_point`]: PostgreSQL `CREATE
//! DATABASE ... TEMPLATE` when nobody else is connected, SQLite a file copy), that copy, taken
//! after the backup, is the rollback point: rolling back is a rename; the backup is still taken
//! (the durable copy) and restored when the copy is missing or its rename fails.
//!
//! With [`GuardOptions::staged_rollback`], where there is no such copy (MySQL/MariaDB always,
//! PostgreSQL with another session connected), the rollback point is a **staged restore**: the
//! safety backup restored into the engine's shadow by the restore's own code path
//! ([`crate::restore::stage_with`]: every proof checked) before the command runs, its load
//! session (connections, the target's restore lock) held while the command runs. Rolling back is
//! then the restore's swap alone ([`crate::restore::Staged::commit`]); a successful command drops
//! the shadow. Staging that fails (or a swap that fails, e.g. its held connection was dropped by
//! the server) leaves the restore of the backup after the command, as without the option.
//!
//! The command itself is run by the caller (the CLI spawns a process with its output passed
//! through); this module owns every decision: the recovery-time budget check, what to back up,
//! when to roll back, and what to report.

use std::future::Future;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::backup::CreateReport;
use crate::catalog;
use crate::error::{Error, Result};
use crate::format::manifest::Manifest;
use crate::model::{Compression, DatabaseUrl, Secret, VerifyLevel};
use crate::progress::Context;
use crate::restore::{Prepared, RestoreOptions, RestoreReport, Staged, restore};
use crate::source::{self, RollbackPoint};
use crate::storage::Target;

/// Input of [`guard`].
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct GuardOptions {
    /// The database the command changes (backed up, and restored on failure).
    pub source: String,
    /// Its password.
    pub password: Option<Secret>,
    /// Repositories for the safety backup; the first is restored from.
    pub repos: Vec<String>,
    /// Compression of the safety backup.
    #[serde(with = "crate::model::compression_serde")]
    pub compression: Compression,
    /// Parallel workers.
    pub jobs: usize,
    /// Extra tags for the safety backup (it always carries `guard`).
    pub tags: Vec<String>,
    /// Refuse to start when the last drill's recovery time for this database exceeds this.
    pub max_rto_ms: Option<u64>,
    /// Who ran it, for the audit record.
    pub operator: Option<String>,
    /// Engine-specific switches for both the safety backup and the rollback (`keep_owners`,
    /// `no_definer`), as in [`CreateOptions::engine_options`](crate::CreateOptions::engine_options).
    pub engine_options: crate::engine_options::EngineOptions,
    /// Where the engine has no cheap server-side copy, restore the safety backup into a verified
    /// shadow before the command (`--staged-rollback`; see the module docs): the command starts
    /// later by the restore's time and the database's size is held again on the server while it
    /// runs, and a rollback is the swap alone.
    pub staged_rollback: bool,
}

impl Default for GuardOptions {
    fn default() -> Self {
        GuardOptions {
            source: String::new(),
            password: None,
            repos: Vec::new(),
            compression: Compression::default(),
            jobs: crate::model::default_jobs(),
            tags: Vec::new(),
            max_rto_ms: None,
            operator: None,
            engine_options: Default::default(),
            staged_rollback: false,
        }
    }
}

/// How the guarded command ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CommandOutcome {
    /// Exited with this status.
    Exited(i32),
    /// Killed by this signal.
    Signalled(i32),
}

impl CommandOutcome {
    /// Whether the command succeeded.
    pub fn success(self) -> bool {
        self == CommandOutcome::Exited(0)
    }

    /// The shell-style status: the exit code, or 128 + signal.
    pub fn status(self) -> i32 {
        match self {
            CommandOutcome::Exited(c) => c,
            CommandOutcome::Signalled(s) => 128 + s,
        }
    }
}

/// Output of [`guard`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GuardReport {
    /// The safety backup.
    pub backup_id: String,
    /// Time to take it.
    pub backup_ms: u64,
    /// How the command ended.
    pub command: CommandOutcome,
    /// Shell-style status of the command (what `dbbackup guard` exits with).
    pub command_status: i32,
    /// Time the command ran.
    pub command_ms: u64,
    /// Whether the database was rolled back.
    pub rolled_back: bool,
    /// Measured recovery time of the rollback.
    pub recovery_ms: Option<u64>,
    /// Time spent between the backup and the command on the rollback point, whichever path the
    /// rollback takes: taking the server-side copy (what the `clone` path costs up front),
    /// finding there can be none (PostgreSQL with other sessions connected: its 3 s wait; 0 for
    /// MySQL/MariaDB, which never takes one), and with `staged_rollback` the staging of the
    /// restore after that. Never part of `recovery_ms`.
    pub rollback_point_ms: u64,
    /// The rollback point held while the command ran: `clone` (a server-side copy), `staged` (the
    /// backup restored into a verified shadow, waiting for its swap); absent when there was none
    /// (a rollback then restores the backup).
    #[serde(default)]
    pub rollback_point: Option<String>,
    /// How the database was rolled back: `clone` (the server-side copy taken before the command
    /// renamed in place), `staged` (the staged restore's swap), `restore` (the safety backup
    /// restored after the command); absent when it was not.
    pub rollback: Option<String>,
    /// The rollback's restore report (`restore`: the whole restore; `staged`: the swap, its
    /// times measured from the command's failure).
    pub restore: Option<RestoreReport>,
    /// What happened to the rollback point and why a path was taken, for the operator.
    pub notes: Vec<String>,
}

/// The newest recorded drill of a backup of this database (engine + name): its recovery time.
pub async fn last_drill_recovery_ms(target: &Target, url: &DatabaseUrl) -> Result<Option<(String, u64)>> {
    let report = catalog::list(target, None).await?;
    for b in report.backups.iter().filter(|b| b.engine == url.engine() && b.database == url.database()) {
        if let Some(v) = &b.last_verification
            && v.level == VerifyLevel::Drill
            && v.ok
            && let Some(ms) = v.recovery_ms
        {
            return Ok(Some((b.id.to_string(), ms)));
        }
    }
    Ok(None)
}

/// Runs the guard. `run` runs the command and reports how it ended; it is called once, after
/// the safety backup is complete.
pub async fn guard<F, Fut>(opts: &GuardOptions, ctx: &Context, run: F) -> Result<GuardReport>
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = std::io::Result<CommandOutcome>>,
{
    let url = DatabaseUrl::parse(&opts.source)?;
    let repo =
        opts.repos.first().ok_or_else(|| Error::InvalidInput("no repository given (--repo)".into()))?;
    if let Some(budget) = opts.max_rto_ms {
        check_rto(repo, &url, budget, ctx).await?;
    }
    let t0 = Instant::now();
    let created = safety_backup(opts, ctx).await?;
    let backup_ms = ms_since(t0);
    let mut notes = Vec::new();
    // A cheap server-side copy as the rollback point where the engine allows one; the verified
    // backup above stays the durable copy and the fallback.
    let tp = Instant::now();
    let point = match rollback_point(&url, opts).await {
        Ok(p) => {
            notes.push(format!("rollback point: {}", p.describe()));
            Point::Clone(p)
        }
        Err(why) if opts.staged_rollback => {
            ctx.note(format!(
                "no server-side copy ({why}); staging the rollback: restoring backup {} into a shadow",
                created.id
            ));
            let ts = Instant::now();
            match stage(opts, repo, &created, ctx).await {
                Ok(s) => {
                    notes.push(format!(
                        "no server-side copy ({why}); rollback point: backup {} restored into a shadow and verified in {} ms, its swap held for a rollback (staged)",
                        created.id,
                        ms_since(ts)
                    ));
                    Point::Staged(Box::new(s))
                }
                // Stopped (Ctrl-C) while staging: the command is not started either.
                Err(e) if ctx.cancel.is_cancelled() => {
                    return Err(e.context(
                        "staging the rollback before the guarded command (the command was not run)",
                    ));
                }
                Err(e) => {
                    notes.push(format!(
                        "no server-side copy ({why}); staging the rollback failed ({e}); a rollback restores the backup"
                    ));
                    Point::None
                }
            }
        }
        Err(why) => {
            notes.push(format!("no server-side copy ({why}); a rollback restores the backup"));
            Point::None
        }
    };
    let rollback_point_ms = ms_since(tp);
    ctx.note(format!("safety backup {} taken in {backup_ms} ms; running the command", created.id));
    let t1 = Instant::now();
    let outcome = match run().await {
        Ok(o) => o,
        Err(e) => {
            point.discard().await;
            return Err(Error::io("start the guarded command", e));
        }
    };
    let command_ms = ms_since(t1);
    // The recovery time of a staged rollback starts here, when the command is known to have failed.
    let failed_at = Instant::now();
    let mut report = GuardReport {
        backup_id: created.id.to_string(),
        backup_ms,
        command: outcome,
        command_status: outcome.status(),
        command_ms,
        rolled_back: false,
        recovery_ms: None,
        rollback_point_ms,
        rollback_point: point.kind().map(str::to_string),
        rollback: None,
        restore: None,
        notes,
    };
    if outcome.success() {
        if let Some(e) = point.discard().await {
            report.notes.push(format!("could not remove the rollback point: {e}"));
        }
        return Ok(report);
    }
    match point {
        Point::Clone(p) => {
            if roll_back_to_point(p, opts, repo, &url, &created, &mut report, ctx).await {
                return Ok(report);
            }
        }
        Point::Staged(s) => {
            if roll_back_staged(*s, failed_at, opts, &mut report, ctx).await {
                return Ok(report);
            }
        }
        Point::None => {}
    }
    restore_safety_backup(opts, repo, &created, &mut report, ctx).await?;
    Ok(report)
}

/// The rollback point held while the command runs.
enum Point {
    /// The engine's server-side copy.
    Clone(Box<dyn RollbackPoint>),
    /// The safety backup restored into a verified shadow, waiting for its swap.
    Staged(Box<StagedRollback>),
    /// None: a rollback restores the backup.
    None,
}

impl Point {
    /// `clone`, `staged`, or none.
    fn kind(&self) -> Option<&'static str> {
        match self {
            Point::Clone(_) => Some("clone"),
            Point::Staged(_) => Some("staged"),
            Point::None => None,
        }
    }

    /// Removes the rollback point (the command succeeded, or could not be started); why that
    /// failed, if it did (what is left is removed by the next run into the database).
    async fn discard(self) -> Option<String> {
        match self {
            Point::Clone(p) => p.discard().await.err().map(|e| e.to_string()),
            Point::Staged(s) => {
                s.staged.abort().await.err().map(|e| format!("dropping the staged shadow: {e}"))
            }
            Point::None => None,
        }
    }
}

/// A staged restore of the safety backup, with what its audit record needs.
struct StagedRollback {
    staged: Staged,
    target: Target,
    manifest: Box<Manifest>,
    into: String,
}

/// The restore of the safety backup into the guarded database, as the rollback runs it.
fn rollback_restore_options(opts: &GuardOptions, repo: &str, created: &CreateReport) -> RestoreOptions {
    RestoreOptions {
        repo: repo.to_string(),
        backup: created.id.to_string(),
        into: opts.source.clone(),
        password: opts.password.clone(),
        jobs: opts.jobs,
        force: true,
        operator: Some(format!("guard ({})", opts.operator.as_deref().unwrap_or("unknown"))),
        engine_options: opts.engine_options.clone(),
        ..Default::default()
    }
}

/// Before the command: restores the safety backup into the engine's shadow up to (not
/// including) its swap, by the restore's own code path (resolve, every proof checked).
async fn stage(
    opts: &GuardOptions,
    repo: &str,
    created: &CreateReport,
    ctx: &Context,
) -> Result<StagedRollback> {
    let ropts = rollback_restore_options(opts, repo, created);
    let url = crate::restore::checked_target(&ropts)?;
    let Prepared::Backup { target, manifest, loader } = crate::restore::prepare(&ropts, &url, ctx).await?
    else {
        return Err(Error::InvalidInput(format!("backup {} is not in the repository", created.id)));
    };
    let into = url.to_string();
    let staged = crate::restore::stage_with(&target, &manifest, loader.as_ref(), &into, &ropts, ctx).await?;
    crate::failpoint::hit("guard-staged");
    Ok(StagedRollback { staged, target, manifest, into })
}

/// After the command failed: the staged restore's swap (not stopped by the Ctrl-C that may have
/// killed the command), audited as the restore of the safety backup it is. Whether it worked
/// (if not, `report` says why and the backup is to be restored; the failed swap left the
/// database as it was, and the shadow is dropped by that restore's start).
async fn roll_back_staged(
    s: StagedRollback,
    failed_at: Instant,
    opts: &GuardOptions,
    report: &mut GuardReport,
    ctx: &Context,
) -> bool {
    ctx.note(format!(
        "the command failed (status {}); swapping in the staged restore of backup {}",
        report.command_status, s.manifest.id
    ));
    let rollback_ctx = Context { cancel: crate::progress::CancellationToken::new(), ..ctx.clone() };
    let started_at = chrono::Utc::now();
    let StagedRollback { staged, target, manifest, into } = s;
    let r = staged.commit(failed_at, &rollback_ctx).await;
    let operator = format!("guard ({})", opts.operator.as_deref().unwrap_or("unknown"));
    crate::audit::record(
        &target,
        &manifest,
        &into,
        Some(&operator),
        "restore",
        started_at,
        r.as_ref().map(|r| r.rows),
    )
    .await;
    match r {
        Ok(r) => {
            report.rolled_back = true;
            report.rollback = Some("staged".into());
            report.recovery_ms = Some(r.live_ms.unwrap_or(r.duration_ms));
            report.restore = Some(r);
            true
        }
        Err(e) => {
            report.notes.push(format!(
                "the swap of the staged restore failed ({e}); the database is as the command left it; restoring the backup"
            ));
            false
        }
    }
}

/// `--max-rto`: the last successful drill of the database recorded in `repo` recovered within
/// `budget` ms; no drill, or a slower one, refuses to start.
async fn check_rto(repo: &str, url: &DatabaseUrl, budget: u64, ctx: &Context) -> Result<()> {
    let target = Target::create_in(repo, ctx)?;
    match last_drill_recovery_ms(&target, url).await? {
        None => Err(Error::Unhealthy(format!(
            "--max-rto is set but no successful drill of {} is recorded in {target}; run `dbbackup verify --level drill` first",
            url.database()
        ))),
        Some((id, ms)) if ms > budget => Err(Error::Unhealthy(format!(
            "the last drill (backup {id}) measured a recovery time of {ms} ms, over the {budget} ms budget; not starting"
        ))),
        Some(_) => Ok(()),
    }
}

/// The verified backup taken before the command runs, tagged `guard`.
async fn safety_backup(opts: &GuardOptions, ctx: &Context) -> Result<CreateReport> {
    let mut tags = vec!["guard".to_string()];
    tags.extend(opts.tags.iter().cloned());
    crate::backup::safety_backup(
        &opts.source,
        opts.password.clone(),
        opts.repos.clone(),
        opts.compression,
        opts.jobs,
        tags,
        &opts.engine_options,
        None,
        ctx,
    )
    .await
    .map_err(|e| e.context("safety backup before the guarded command (the command was not run)"))
}

/// After the command failed: rolls back to the engine's server-side copy, audited like a
/// restore of the safety backup. Whether it worked (if not, `report` says why and the backup
/// is to be restored).
async fn roll_back_to_point(
    p: Box<dyn RollbackPoint>,
    opts: &GuardOptions,
    repo: &str,
    url: &DatabaseUrl,
    created: &CreateReport,
    report: &mut GuardReport,
    ctx: &Context,
) -> bool {
    ctx.note(format!(
        "the command failed (status {}); rolling back to {}",
        report.command_status,
        p.describe()
    ));
    let t = Instant::now();
    let started_at = chrono::Utc::now();
    let rolled = p.roll_back().await;
    let recovery_ms = ms_since(t);
    // Audited like a restore of the safety backup (the copy is the same state, taken after it).
    if let Ok(target) = Target::open_in(repo, ctx)
        && let Ok(m) = catalog::resolve(&target, created.id.as_str()).await
    {
        let err = rolled.as_ref().err().map(|e| Error::source("roll back to the copy", e.to_string()));
        let rows = match &err {
            None => Ok(m.rows()),
            Some(e) => Err(e),
        };
        crate::audit::record(
            &target,
            &m,
            &url.to_string(),
            Some(&format!("guard ({})", opts.operator.as_deref().unwrap_or("unknown"))),
            "rollback",
            started_at,
            rows,
        )
        .await;
    }
    match rolled {
        Ok(n) => {
            report.notes.extend(n);
            report.rolled_back = true;
            report.rollback = Some("clone".into());
            report.recovery_ms = Some(recovery_ms);
            true
        }
        Err(e) => {
            report.notes.push(format!("rolling back to the copy failed ({e}); restoring the backup"));
            false
        }
    }
}

/// After the command failed and no server-side copy brought the database back: restores the
/// safety backup (not stopped by the Ctrl-C that may have killed the command).
async fn restore_safety_backup(
    opts: &GuardOptions,
    repo: &str,
    created: &CreateReport,
    report: &mut GuardReport,
    ctx: &Context,
) -> Result<()> {
    ctx.note(format!(
        "the command failed (status {}); restoring backup {}",
        report.command_status, created.id
    ));
    // The rollback must not be stopped by the Ctrl-C that may have killed the command.
    let rollback_ctx = Context { cancel: crate::progress::CancellationToken::new(), ..ctx.clone() };
    let r = restore(&rollback_restore_options(opts, repo, created), &rollback_ctx)
    .await
    .map_err(|e| {
        e.context(format!(
            "ROLLBACK FAILED after the guarded command failed: the database may be in the command's state; restore backup {} by hand",
            created.id
        ))
    })?;
    report.rolled_back = true;
    report.rollback = Some("restore".into());
    // Live again at the swap's commit: what follows it (MySQL drops the replaced tables) is
    // cleanup, still done before guard returns, and finished by the next run if killed.
    report.recovery_ms = Some(r.live_ms.unwrap_or(r.duration_ms));
    report.restore = Some(r);
    Ok(())
}

/// The engine's rollback point for the guarded database, or why there is none.
async fn rollback_point(
    url: &DatabaseUrl,
    opts: &GuardOptions,
) -> std::result::Result<Box<dyn RollbackPoint>, String> {
    let mut url = url.clone();
    url.set_password(opts.password.clone());
    let loader = source::open_loader(&url).map_err(|e| e.to_string())?;
    match loader.rollback_point().await {
        Ok(p) => p,
        Err(e) => Err(e.to_string()),
    }
}

fn ms_since(t: Instant) -> u64 {
    u64::try_from(t.elapsed().as_millis()).unwrap_or(u64::MAX)
}
