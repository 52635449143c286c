//! # backup-ffi: the C ABI of dbbackup
//!
//! A `dbb_client*` owns one tokio runtime. Every operation takes the client, JSON options whose
//! keys are the CLI's long flag names in snake_case (`{"source": ..., "repo": [...]}`; the
//! positional backup argument is `"backup"`) and an out-parameter receiving a JSON report: exactly
//! what `dbbackup <command> --json` prints (the core's `*Report` serialized, or
//! `{"ok":false,"error":{...}}` on failure). The return value is the CLI's exit code (0 ok,
//! 1 failed, 2 usage, 3 integrity, 4 unhealthy, 5 not found, 130 cancelled), derived from
//! `ErrorKind::exit_code` like the CLI's. Two statuses exist only here: 6
//! ([`DBB_NULL_ARGUMENT`], a required pointer was NULL) and 70 ([`DBB_PANIC`], a bug inside the
//! library, caught at the boundary).
//!
//! Common keys of every operation: `timeout_ms`, `repo_settings` (each repository's store
//! settings) and `alerts`: the CLI's alert settings as an object (`{"slack_webhook": URL,
//! "webhook_url": URL, "heartbeat_url": URL, "smtp_url": "smtp://user@host", "smtp_password": ...,
//! "mail_to": [...], "notify_on", "notify_repeat", "state_dir", "host"}`; the names of
//! docs/storage.md with or without `DBBACKUP_`). With them the operation sends the CLI's alerts,
//! decided the same way (alert state kept beside the backups, one alert per change, guard
//! rollbacks and failed restores every time); `command_line` names the guarded command in
//! `dbb_guard`'s alerts. Undelivered alerts are listed in the report's `alert_warnings` and never
//! change the status. `return_alerts: true` also hands every alert the core decided to send back
//! to the caller, decided the same way (with or without `alerts`): the report's (or, on failure,
//! the error object's) `returned_alerts` lists them, each the webhook's JSON plus `subject`,
//! `body` (the e-mail's) and `slack_text`, for the caller to deliver through its own channels
//! (Laravel notifications).
//!
//! Ownership, for every function: strings passed in are borrowed for the duration of the call;
//! every `char*` handed out is owned by the caller and must be released with
//! [`dbb_string_free`] (never `free`). A `dbb_client*` is released with [`dbb_client_free`].
//!
//! Safety net: every export runs inside `catch_unwind` (the release profile keeps
//! `panic = "unwind"`), so a bug inside the library returns [`DBB_PANIC`] with a message instead
//! of aborting the host process (a PHP worker, say); how, in `boundary.rs`.
//!
//! Threads: operations run on the calling thread (blocking it until done) with their I/O on the
//! client's runtime; [`dbb_cancel`] and [`dbb_progress`] may be called from any other thread
//! meanwhile. The last error is per calling thread ([`dbb_last_error`]).

#![allow(non_camel_case_types)]

mod boundary;
mod client;
mod options;
#[cfg(test)]
mod tests;

use std::ffi::{CString, c_char, c_void};
use std::time::Duration;

use backup_core::{Command, CommandOutcome};

use crate::boundary::{
    LAST_ERROR, borrowed_str, clear_last_error, guard, into_c, null_outcome, operation, set_last_error,
};
use crate::client::{Callback, Client, Finished, Outcome};
use crate::options::{
    CopyArgs, CreateArgs, GuardArgs, ListArgs, PruneArgs, RestoreArgs, StatusArgs, VerifyArgs,
};

/// Success.
pub const DBB_OK: i32 = 0;
/// The operation failed (database, store, I/O, internal error).
pub const DBB_FAILED: i32 = 1;
/// Bad options or usage (also: invalid UTF-8, malformed JSON).
pub const DBB_USAGE: i32 = 2;
/// Corrupt, incomplete or unreadable backup.
pub const DBB_INTEGRITY: i32 = 3;
/// Health checks failed (`dbb_status`).
pub const DBB_UNHEALTHY: i32 = 4;
/// A backup, repository or database does not exist.
pub const DBB_NOT_FOUND: i32 = 5;
/// A required pointer argument (the client, a callback) was NULL.
pub const DBB_NULL_ARGUMENT: i32 = 6;
/// A bug inside the library: a panic, caught at the boundary (the client stays usable).
pub const DBB_PANIC: i32 = 70;
/// Cancelled by `dbb_cancel` or by the `timeout_ms` option.
pub const DBB_CANCELLED: i32 = 130;

/// An opaque client: one async runtime plus cancellation and progress state. Create with
/// [`dbb_client_new`], release with [`dbb_client_free`].
pub struct dbb_client {
    inner: Client,
}

/// The type of the guarded command of [`dbb_guard`]: runs the command (a migration, say) on the
/// calling thread and returns its exit status (0 = success; anything else makes `dbb_guard` roll
/// the database back).
pub type dbb_command_fn = Option<unsafe extern "C" fn(user_data: *mut c_void) -> i32>;

/// The type of a progress callback (see [`dbb_client_set_progress_callback`]).
///
/// `json` is a progress snapshot, borrowed for the duration of the call only.
pub type dbb_progress_fn = Option<unsafe extern "C" fn(json: *const c_char, user_data: *mut c_void)>;

/// The library version (e.g. `0.1.0`).
///
/// Ownership: returns a pointer to a static string owned by the library; do not free it.
#[unsafe(no_mangle)]
pub extern "C" fn dbb_version() -> *const c_char {
    concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr().cast()
}

/// Creates a client with its own multi-threaded async runtime.
///
/// `options_json` may be NULL or a JSON object: `{"worker_threads": N}` (default: number of CPUs).
///
/// Ownership: `options_json` is borrowed for the call. The returned client is owned by the caller
/// and must be released with `dbb_client_free`. Returns NULL on failure (see `dbb_last_error`).
///
/// # Safety
/// `options_json` is NULL or a NUL-terminated string.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dbb_client_new(options_json: *const c_char) -> *mut dbb_client {
    clear_last_error();
    guard("dbb_client_new", std::ptr::null_mut(), || {
        // SAFETY: the caller guarantees `options_json` is NULL or a valid C string.
        let built = unsafe { borrowed_str(options_json, "options") }.and_then(Client::new);
        match built {
            Ok(inner) => Box::into_raw(Box::new(dbb_client { inner })),
            Err(e) => {
                set_last_error(&Outcome::from_error(&e));
                std::ptr::null_mut()
            }
        }
    })
}

/// Releases a client: cancels whatever still runs on it and shuts its runtime down.
///
/// Ownership: takes back ownership of `client` (NULL is ignored). No other call on this client
/// may be in progress or follow.
///
/// # Safety
/// `client` is NULL or a pointer from `dbb_client_new` not freed before.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dbb_client_free(client: *mut dbb_client) {
    guard("dbb_client_free", (), || {
        if client.is_null() {
            return;
        }
        // SAFETY: the caller guarantees the pointer came from `dbb_client_new` (Box::into_raw)
        // and is freed only once, with no other call in flight.
        let client = unsafe { Box::from_raw(client) };
        client.inner.cancel();
        drop(client);
    });
}

/// Backs up a database (`dbbackup create`).
///
/// Options: `source` (URL), `repo` (string or array), `compression`, `jobs`, `tag` (string or
/// array), `chunk_mib`, `no_checksums`, `temp_dir`, `password`, `no_definer`, `keep_owners`,
/// `timeout_ms`.
/// Report: the `create --json` object (`id`, `engine`, `database`, `tables`, `rows`,
/// `raw_bytes`, `stored_bytes`, `duration_ms`, `repos`, `failed_repos`, ...). When some
/// repositories failed and others hold the backup, the status is 0 and `failed_repos` names them
/// (the CLI exits 1; both decided by the core's `Verdict::Partial`).
///
/// Ownership: `options_json` is borrowed for the call. On return `*report_out` (if
/// `report_out` is not NULL) holds a caller-owned string to release with `dbb_string_free`: the
/// report, or the error object on failure. Returns the status code.
///
/// # Safety
/// `client` is NULL or a live client; `options_json` is NULL or a NUL-terminated string;
/// `report_out` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dbb_create(
    client: *const dbb_client,
    options_json: *const c_char,
    report_out: *mut *mut c_char,
) -> i32 {
    // SAFETY: forwarded caller guarantees.
    unsafe {
        operation("dbb_create", client, options_json, report_out, |c, o| {
            c.run("create", o, CreateArgs::into_core, |opts, ctx, _| async move { opts.run(&ctx).await })
        })
    }
}

/// Lists the complete backups in a repository, newest first (`dbbackup list`).
///
/// Options: `repo`, `tag`, `timeout_ms`. Report: the `list --json` object (`repo`, `backups`,
/// `unreadable`).
///
/// Ownership: as for `dbb_create`.
///
/// # Safety
/// As for `dbb_create`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dbb_list(
    client: *const dbb_client,
    options_json: *const c_char,
    report_out: *mut *mut c_char,
) -> i32 {
    // SAFETY: forwarded caller guarantees.
    unsafe {
        operation("dbb_list", client, options_json, report_out, |c, o| {
            c.run("list", o, ListArgs::into_core, |opts, ctx, _| async move { opts.run(&ctx).await })
        })
    }
}

/// Checks a backup (`dbbackup verify`).
///
/// Options: `repo`, `backup` (id, `latest` or `tag:NAME`; default `latest`), `level` (`quick`,
/// `full` (default), `drill`), `scratch`, `jobs`, `no_record`, `password`, `timeout_ms`.
/// Report: the `verify --json` object (`id`, `level`, `ok`, `findings`, ...). When the backup is
/// damaged the report is still written and the status is 3 (integrity).
///
/// Ownership: as for `dbb_create`.
///
/// # Safety
/// As for `dbb_create`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dbb_verify(
    client: *const dbb_client,
    options_json: *const c_char,
    report_out: *mut *mut c_char,
) -> i32 {
    // SAFETY: forwarded caller guarantees.
    unsafe {
        operation("dbb_verify", client, options_json, report_out, |c, o| {
            c.run("verify", o, VerifyArgs::into_core, |opts, ctx, _| async move {
                backup_core::verify(&opts, &ctx).await
            })
        })
    }
}

/// Restores a backup into a database (`dbbackup restore`), through a shadow swapped in only when
/// complete and checked.
///
/// Options: `repo`, `backup` (default `latest`), `into` (URL), `force`, `production` (refuse
/// unless `force`), `in_place`, `tables` (string or array), `verify_first`, `jobs`, `password`,
/// `no_definer`, `keep_owners`, `full_checksum`, `timeout_ms`. Report: the `restore --json` object (`id`, `into`, `tables`, `rows`,
/// `duration_ms`, ...). An unknown backup gives status 5 with the available ids in the error.
///
/// Ownership: as for `dbb_create`.
///
/// # Safety
/// As for `dbb_create`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dbb_restore(
    client: *const dbb_client,
    options_json: *const c_char,
    report_out: *mut *mut c_char,
) -> i32 {
    // SAFETY: forwarded caller guarantees.
    unsafe {
        operation("dbb_restore", client, options_json, report_out, |c, o| {
            c.run("restore", o, RestoreArgs::into_core, |opts, ctx, _| async move {
                backup_core::restore(&opts, &ctx).await
            })
        })
    }
}

/// Applies a retention policy to a repository (`dbbackup prune`): never deletes the newest
/// complete backup; sweeps objects of incomplete backups older than the grace period.
///
/// Options: `repo`, `keep_last`, `keep_hourly`, `keep_daily`, `keep_weekly`, `keep_monthly`,
/// `keep_yearly`, `max_size` (bytes or `50GiB`), `orphan_grace` (seconds or `24h`), `dry_run`,
/// `timeout_ms`. Report: the `prune --json` object (`plan`, `kept`, `removed`, `freed_bytes`,
/// `errors`, ...). When some deletions failed the report is still written and the status is 1.
///
/// Ownership: as for `dbb_create`.
///
/// # Safety
/// As for `dbb_create`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dbb_prune(
    client: *const dbb_client,
    options_json: *const c_char,
    report_out: *mut *mut c_char,
) -> i32 {
    // SAFETY: forwarded caller guarantees.
    unsafe {
        operation("dbb_prune", client, options_json, report_out, |c, o| {
            c.run("prune", o, PruneArgs::into_core, |opts, ctx, _| async move { opts.run(&ctx).await })
        })
    }
}

/// Checks the health of one or more repositories (`dbbackup status`): newest backup age, total
/// size, last verification, copies per repository.
///
/// Options: `repo` (string or array), `max_age` (seconds or `26h`), `max_size` (bytes or
/// `50GiB`), `timeout_ms`. Report: the `status --json` object (`healthy`, `checks`, `repos`).
/// When unhealthy the report is still written and the status is 4.
///
/// Ownership: as for `dbb_create`.
///
/// # Safety
/// As for `dbb_create`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dbb_status(
    client: *const dbb_client,
    options_json: *const c_char,
    report_out: *mut *mut c_char,
) -> i32 {
    // SAFETY: forwarded caller guarantees.
    unsafe {
        operation("dbb_status", client, options_json, report_out, |c, o| {
            c.run("status", o, StatusArgs::into_core, |opts, ctx, alerts| async move {
                let mut r = backup_core::status(&opts, &ctx).await?;
                if let Some(cfg) = &alerts.cfg {
                    // Each check is a state: its changes alert, and the report shows them.
                    let scope = backup_core::AlertScope::of(opts.repos.clone(), None, false);
                    let state_repo =
                        opts.repos.first().and_then(|u| backup_core::Target::open_in(u, &ctx).ok());
                    let now = chrono::Utc::now();
                    let tracked =
                        backup_core::track_status(cfg, &mut r, state_repo.as_ref(), &scope, now).await;
                    alerts.warn(tracked.warnings);
                }
                Ok(r)
            })
        })
    }
}

/// Copies one backup between repositories, checking every digest while streaming
/// (`dbbackup copy`).
///
/// Options: `from`, `to` (repository URLs), `backup` (id, `latest` or `tag:NAME`; default
/// `latest`), `jobs`, `repo_settings`, `timeout_ms`. Report: the `copy --json` object (`id`,
/// `from`, `to`, `objects`, `bytes`, `already_present`, `duration_ms`).
///
/// Ownership: as for `dbb_create`.
///
/// # Safety
/// As for `dbb_create`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dbb_copy(
    client: *const dbb_client,
    options_json: *const c_char,
    report_out: *mut *mut c_char,
) -> i32 {
    // SAFETY: forwarded caller guarantees.
    unsafe {
        operation("dbb_copy", client, options_json, report_out, |c, o| {
            c.run("copy", o, CopyArgs::into_core, |opts, ctx, _| async move { opts.run(&ctx).await })
        })
    }
}

/// Guards a change to a database (`dbbackup guard`): takes a safety backup, calls `command` once
/// (on the calling thread, after the backup is complete), and when it returns non-zero restores
/// the safety backup with the engine's safe restore and measures the recovery time.
///
/// Options: `source` (URL), `repo` (string or array; the first is restored from), `max_rto`
/// (seconds or `2m`: refuse to start unless the last successful drill of this database recovered
/// within it; status 4 otherwise), `max_rto_ms`, `compression`, `tag`, `jobs`, `password`,
/// `operator`, `no_definer`, `keep_owners`, `staged_rollback` (bool, `--staged-rollback`), `repo_settings`,
/// `timeout_ms`.
/// Report: the `guard --json` object (`backup_id`, `backup_ms`, `command`, `command_status`,
/// `command_ms`, `rolled_back`, `recovery_ms`, `rollback_point_ms`, `rollback_point` — `clone`, `staged` or null —,
/// `rollback` — `clone`, `staged` or `restore`, null when it
/// did not roll back —, `restore` (the rollback's restore report on the `restore` and `staged` paths), `notes`). The status is 0 when the guard did its job —
/// whether the command succeeded or was rolled back: read `command_status` and `rolled_back`;
/// it is an error status when the safety backup or the rollback failed (the command is not
/// run when the backup fails).
///
/// `command` must not call into this client; it may take as long as it needs (the timeout
/// still applies to the whole operation). `user_data` is passed through untouched.
///
/// Ownership: as for `dbb_create`.
///
/// # Safety
/// As for `dbb_create`; `command` is NULL (status 6) or a function safe to call once with
/// `user_data` on the calling thread.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dbb_guard(
    client: *const dbb_client,
    options_json: *const c_char,
    command: dbb_command_fn,
    user_data: *mut c_void,
    report_out: *mut *mut c_char,
) -> i32 {
    let body = move |c: &Client, o: Option<&str>| {
        let Some(command) = command else {
            return Finished::failed(null_outcome("dbb_guard", "the command callback"));
        };
        c.run("guard", o, GuardArgs::into_core, |opts, ctx, alerts| async move {
            let failed = std::sync::atomic::AtomicI32::new(-1);
            let result = backup_core::guard(&opts, &ctx, || async {
                // SAFETY: the caller guarantees `command` may be called once with
                // `user_data`; this future is polled by `block_on` on the calling thread.
                let status = unsafe { command(user_data) };
                if status != 0 {
                    failed.store(status, std::sync::atomic::Ordering::SeqCst);
                }
                Ok(CommandOutcome::Exited(status))
            })
            .await;
            if let Some(cfg) = &alerts.cfg {
                // A rollback (or a failed one) is an event with its details, like the CLI's.
                let line = alerts
                    .command_line
                    .as_deref()
                    .map_or_else(|| "the guarded callback".to_string(), backup_core::redact_str);
                let status = failed.load(std::sync::atomic::Ordering::SeqCst);
                if let Some(n) = backup_core::guard_alert(&line, &opts, &result, status, cfg, &ctx).await {
                    alerts.warn(backup_core::deliver(cfg, &n).await.1);
                }
            }
            result
        })
    };
    // SAFETY: forwarded caller guarantees.
    unsafe { operation("dbb_guard", client, options_json, report_out, body) }
}

/// Cancels every operation running on `client` right now (from any thread). Operations started
/// afterwards are not affected. The cancelled operation returns 130 and writes no manifest; it
/// gets 10 s to clean up (abort uploads, drop a restore's shadow) before the call returns anyway.
/// A restore whose swap has already begun is never cut: the call waits for the swap (bounded by
/// the lock timeout) and returns the finished restore's report with 0.
///
/// Ownership: borrows `client` for the call. Returns 0, or 6 when `client` is NULL.
///
/// # Safety
/// `client` is NULL or a live client (not being freed concurrently).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dbb_cancel(client: *const dbb_client) -> i32 {
    guard("dbb_cancel", DBB_PANIC, || {
        // SAFETY: the caller guarantees `client` is NULL or live.
        match unsafe { client.as_ref() } {
            Some(c) => {
                c.inner.cancel();
                DBB_OK
            }
            None => {
                set_last_error(&null_outcome("dbb_cancel", "the client"));
                DBB_NULL_ARGUMENT
            }
        }
    })
}

/// A JSON snapshot of the progress of the client's most recent operation (from any thread):
/// `operation`, `running`, `elapsed_ms`, `phase`, `phase_bytes`, `phase_total_bytes`, `bytes`,
/// `objects`, `events_seen` and `events` (the last 32 events, without byte increments).
///
/// Ownership: borrows `client`; the returned string is owned by the caller (`dbb_string_free`).
/// Returns NULL when `client` is NULL.
///
/// # Safety
/// `client` is NULL or a live client.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dbb_progress(client: *const dbb_client) -> *mut c_char {
    guard("dbb_progress", std::ptr::null_mut(), || {
        // SAFETY: the caller guarantees `client` is NULL or live.
        match unsafe { client.as_ref() } {
            Some(c) => into_c(c.inner.progress.snapshot()),
            None => std::ptr::null_mut(),
        }
    })
}

/// Registers (or, with `callback` NULL, removes) a progress callback. It is invoked with the same
/// JSON snapshot as `dbb_progress`, every `interval_ms` (0: 250 ms) while an operation runs and
/// once when it ends, **only on the thread that called the operation**, never concurrently.
/// The callback must not call back into this client and must return normally.
///
/// Ownership: the `json` argument is borrowed for the duration of the callback only.
/// `user_data` is passed through untouched; the caller keeps it (and the callback) valid until
/// the callback is removed or the client freed. Returns 0, or 6 when `client` is NULL.
///
/// # Safety
/// `client` is NULL or a live client; `callback` is NULL or a function safe to call with any
/// progress JSON and `user_data` from the threads that run operations.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dbb_client_set_progress_callback(
    client: *const dbb_client,
    callback: dbb_progress_fn,
    user_data: *mut c_void,
    interval_ms: u32,
) -> i32 {
    guard("dbb_client_set_progress_callback", DBB_PANIC, || {
        // SAFETY: the caller guarantees `client` is NULL or live.
        let Some(c) = (unsafe { client.as_ref() }) else {
            set_last_error(&null_outcome("dbb_client_set_progress_callback", "the client"));
            return DBB_NULL_ARGUMENT;
        };
        let cb = callback.map(|func| Callback {
            func,
            user_data,
            interval: Duration::from_millis(u64::from(interval_ms)),
        });
        *c.inner.callback.lock().unwrap_or_else(|p| p.into_inner()) = cb;
        DBB_OK
    })
}

/// The last error of the calling thread as a JSON object
/// `{"kind": "not_found", "code": 5, "message": "...", "available": [...]}`, or NULL when the
/// thread's last call succeeded. Each operation clears it when it starts.
///
/// Ownership: the returned string is owned by the caller (`dbb_string_free`).
#[unsafe(no_mangle)]
pub extern "C" fn dbb_last_error() -> *mut c_char {
    guard("dbb_last_error", std::ptr::null_mut(), || {
        LAST_ERROR.with(|e| e.borrow().clone()).map_or(std::ptr::null_mut(), into_c)
    })
}

/// Releases a string returned by this library (reports, progress, errors). NULL is ignored.
///
/// Ownership: takes back ownership of `s`; it must not be used afterwards.
///
/// # Safety
/// `s` is NULL or a string returned by this library and not yet freed.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dbb_string_free(s: *mut c_char) {
    guard("dbb_string_free", (), || {
        if !s.is_null() {
            // SAFETY: the caller guarantees `s` came from `CString::into_raw` in this library and
            // is freed once.
            drop(unsafe { CString::from_raw(s) });
        }
    });
}
