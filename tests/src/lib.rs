//! Shared helpers for the end-to-end suites: finding the throwaway services started by
//! `scripts/test.sh`, and the two conformance suites every engine and every store must pass.
//!
//! A test that needs a service and cannot find it **fails** when `CI=true` and is skipped (with a
//! message) otherwise, so CI never passes silently without the real server.

// Test support code: a failed expectation is a test failure, so panicking is the point.
#![allow(clippy::unwrap_used, clippy::expect_used)]

pub mod pg_fixture;
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
