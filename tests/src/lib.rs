//! Shared helpers for the end-to-end suites: finding the throwaway services started by
//! `scripts/test.sh`, and the two conformance suites every engine and every store must pass.
//!
//! A test that needs a service and cannot find it **fails** when `CI=true` and is skipped (with a
//! message) otherwise, so CI never passes silently without the real server.

// Test support code: a failed expectation is a test failure, so panicking is the point.
#![allow(clippy::unwrap_used, clippy::expect_used)]

pub mod mysql_catalog;
pub mod mysql_fixture;
pub mod pg_catalog;
pub mod pg_fixture;
pub mod receiver;
pub mod source_suite;
pub mod sqlite_fixture;
pub mod store_suite;

use std::sync::atomic::{AtomicU32, Ordering};

/// The value of a service variable set by `scripts/services.sh`, or `None` (after printing why)
/// when running outside CI without it. Panics under `CI=true`.
pub fn service_env(var: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(v) if !v.is_empty() => Some(v),
        _ => {
            let ci = std::env::var("CI").is_ok_and(|v| v == "true" || v == "1");
            assert!(
                !ci,
                "{var} is not set: CI must run this test against the real service (scripts/test.sh starts it)"
            );
            eprintln!(
                "SKIPPED: {var} is not set (run scripts/test.sh, or scripts/dev-services.sh for a dev loop)"
            );
            None
        }
    }
}

/// A name unique within this process and across concurrent test processes.
pub fn unique(prefix: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let n = N.fetch_add(1, Ordering::SeqCst);
    format!("{prefix}_{}_{n}_{:04x}", std::process::id(), rand_u16())
}

fn rand_u16() -> u16 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    (t ^ (t >> 16)) as u16
}

/// Store settings for the moto S3 server at `endpoint`: any credentials, path-style, few retries
/// (a broken emulator must fail fast, not retry for three minutes).
pub fn s3_config(endpoint: &str) -> backup_core::StoreConfig {
    backup_core::StoreConfig::from_pairs([
        ("AWS_ACCESS_KEY_ID", "test"),
        ("AWS_SECRET_ACCESS_KEY", "test"),
        ("AWS_DEFAULT_REGION", "us-east-1"),
        ("AWS_ENDPOINT", endpoint),
        ("DBBACKUP_STORE_MAX_RETRIES", "2"),
        ("DBBACKUP_STORE_RETRY_TIMEOUT", "5"),
    ])
}

/// The well-known Azurite development account key.
pub const AZURITE_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

/// Store settings for Azurite at `url` (`http://127.0.0.1:PORT/devstoreaccount1`), few retries.
pub fn azurite_config(url: &str) -> backup_core::StoreConfig {
    backup_core::StoreConfig::from_pairs([
        ("AZURE_STORAGE_ACCOUNT_NAME", "devstoreaccount1"),
        ("AZURE_STORAGE_ACCOUNT_KEY", AZURITE_KEY),
        ("AZURE_STORAGE_ENDPOINT", url),
        ("DBBACKUP_STORE_MAX_RETRIES", "2"),
        ("DBBACKUP_STORE_RETRY_TIMEOUT", "5"),
    ])
}

/// Runs one SQL string with `psql` against `url` (quiet, unaligned, tuples only, stop on the
/// first error) and returns its trimmed output; panics with psql's stderr when it fails.
pub fn psql(url: &str, sql: &str) -> String {
    let out = std::process::Command::new("psql")
        .args(["-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-d", url, "-c", sql])
        .output()
        .expect("run psql (PostgreSQL client tools on PATH)");
    assert!(out.status.success(), "psql {sql}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// The PostgreSQL URL `base` pointed at database `name` (its query parameters kept).
pub fn pg_db(base: &str, name: &str) -> String {
    let (url, query) = base.split_once('?').map_or((base, None), |(u, q)| (u, Some(q)));
    let server = url.rsplit_once('/').map_or(url, |(server, _)| server);
    match query {
        Some(q) => format!("{server}/{name}?{q}"),
        None => format!("{server}/{name}"),
    }
}
