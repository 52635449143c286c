//! Time limits of database server sessions (PostgreSQL, MySQL/MariaDB): how long to wait for a
//! connection, for a lock, for one statement, and how soon a dead peer is noticed (TCP
//! keepalive). Nothing a backup or restore does may wait forever: a lock held by another session
//! (a migration's `ALTER TABLE`, a long transaction) makes the operation fail after the lock
//! timeout with a message that says so, instead of stalling it, and with it the sessions queued
//! behind its lock request (PostgreSQL) or every writer on the server (MySQL's global read lock).
//!
//! The limits come from the engine options' [`SessionOptions`] (the CLI flags and the FFI
//! options) and, winning over them, the URL's query parameters of the same names (libpq spells
//! `connect_timeout` that way, in seconds).

use std::time::Duration;

use crate::engine_options::SessionOptions;
use crate::error::{Error, Result};
use crate::model::DatabaseUrl;

/// Default: how long connecting (TCP, TLS, authentication, session set-up) may take.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// Default: how long one lock request may wait.
pub const DEFAULT_LOCK_TIMEOUT: Duration = Duration::from_secs(30);
/// TCP keepalive: first probe after this much silence; the kernel then gives up on a peer that
/// answers none of [`KEEPALIVE_RETRIES`] probes [`KEEPALIVE_INTERVAL`] apart (about 2 minutes).
pub(crate) const KEEPALIVE_IDLE: Duration = Duration::from_secs(60);
pub(crate) const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(10);
pub(crate) const KEEPALIVE_RETRIES: u32 = 6;

/// The time limits of every session an engine opens for one backup or restore.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SessionLimits {
    /// Connecting, authentication and session set-up included; `None`: no limit.
    pub connect: Option<Duration>,
    /// One lock wait (PostgreSQL `lock_timeout`; MySQL `lock_wait_timeout` and
    /// `innodb_lock_wait_timeout`); `None`: no limit.
    pub lock: Option<Duration>,
    /// One statement (PostgreSQL `statement_timeout`, MariaDB `max_statement_time`, MySQL
    /// `max_execution_time`); `None` (the default): no limit, since one `COPY`/`SELECT` of a
    /// big table is one statement that may rightly run for hours.
    pub statement: Option<Duration>,
}

impl Default for SessionLimits {
    fn default() -> Self {
        SessionLimits {
            connect: Some(DEFAULT_CONNECT_TIMEOUT),
            lock: Some(DEFAULT_LOCK_TIMEOUT),
            statement: None,
        }
    }
}

impl SessionLimits {
    /// The limits for sessions on `url`: URL parameter, else engine option, else the default.
    pub(crate) fn of(url: &DatabaseUrl, given: &SessionOptions) -> Result<Self> {
        let d = SessionLimits::default();
        let pick = |key: &str,
                    given: &Option<String>,
                    default: Option<Duration>|
         -> Result<Option<Duration>> {
            match url.param(key) {
                Some(v) => {
                    parse_limit(&v).map_err(|e| Error::InvalidInput(format!("{key}={v} in {url}: {e}")))
                }
                None => match given {
                    Some(v) => parse_limit(v).map_err(|e| Error::InvalidInput(format!("{key} {v:?}: {e}"))),
                    None => Ok(default),
                },
            }
        };
        Ok(SessionLimits {
            connect: pick("connect_timeout", &given.connect_timeout, d.connect)?,
            lock: pick("lock_timeout", &given.lock_timeout, d.lock)?,
            statement: pick("statement_timeout", &given.statement_timeout, d.statement)?,
        })
    }

    /// Runs a connection attempt within the connect timeout; `what` names it in the error.
    pub(crate) async fn connecting<T>(
        &self,
        what: impl FnOnce() -> String,
        attempt: impl Future<Output = Result<T>>,
    ) -> Result<T> {
        match self.connect {
            None => attempt.await,
            Some(limit) => match tokio::time::timeout(limit, attempt).await {
                Ok(r) => r,
                Err(_) => Err(Error::Source {
                    context: what(),
                    source: format!(
                        "no answer within the connect timeout of {} (--connect-timeout, or connect_timeout in the URL)",
                        show(limit)
                    )
                    .into(),
                }),
            },
        }
    }
}

/// `30s`, `2m`, `1h 30m`, or a plain number of seconds (libpq's `connect_timeout=10`); `0` is
/// no limit.
pub(crate) fn parse_limit(s: &str) -> std::result::Result<Option<Duration>, String> {
    let t = s.trim();
    let d = match t.parse::<u64>() {
        Ok(secs) => Duration::from_secs(secs),
        Err(_) => humantime::parse_duration(t)
            .map_err(|e| format!("not a duration (e.g. 30s, 5m, 0 for none): {e}"))?,
    };
    Ok(if d.is_zero() { None } else { Some(d) })
}

/// A limit as people read it (`30s`, `1m 30s`, `500ms`).
pub(crate) fn show(d: Duration) -> String {
    humantime::format_duration(d).to_string()
}

/// Whole milliseconds, at least 1 (a server setting of 0 would mean "no limit").
pub(crate) fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
}

/// Whole seconds, rounded up, at least 1 (MySQL's lock timeouts take seconds).
pub(crate) fn secs_ceil(d: Duration) -> u64 {
    let s = d.as_secs() + u64::from(d.subsec_nanos() > 0);
    s.max(1)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn url_wins_over_options_which_win_over_defaults() {
        let url = DatabaseUrl::parse("postgres://u@h/db?connect_timeout=5").unwrap();
        let opts = SessionOptions {
            connect_timeout: Some("1m".into()),
            lock_timeout: Some("2s".into()),
            statement_timeout: Some("0".into()),
        };
        let l = SessionLimits::of(&url, &opts).unwrap();
        assert_eq!(l.connect, Some(Duration::from_secs(5)));
        assert_eq!(l.lock, Some(Duration::from_secs(2)));
        assert_eq!(l.statement, None);
        let l = SessionLimits::of(&DatabaseUrl::parse("mysql://u@h/db").unwrap(), &SessionOptions::default())
            .unwrap();
        assert_eq!(l, SessionLimits::default());
        let url = DatabaseUrl::parse("mysql://u@h/db?lock_timeout=soon").unwrap();
        let e = SessionLimits::of(&url, &SessionOptions::default()).unwrap_err().to_string();
        assert!(e.contains("lock_timeout=soon"), "{e}");
    }

    #[test]
    fn units() {
        assert_eq!(parse_limit("1500ms").unwrap(), Some(Duration::from_millis(1500)));
        assert_eq!(secs_ceil(Duration::from_millis(1500)), 2);
        assert_eq!(secs_ceil(Duration::from_millis(1)), 1);
        assert_eq!(millis(Duration::from_micros(10)), 1);
        assert_eq!(show(Duration::from_secs(90)), "1m 30s");
    }
}
