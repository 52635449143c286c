//! Rendering: human text or exactly one JSON object on stdout; errors and their exit codes.

use std::io::Write;

use backup_core::{Error, ErrorKind, ErrorReport, Verdict};
use serde::Serialize;

/// How results are shown.
pub struct Output {
    pub json: bool,
    pub quiet: bool,
}

impl Output {
    pub fn new(json: bool, quiet: bool) -> Self {
        Output { json, quiet }
    }

    /// Prints a report: JSON, or the human text produced by `human`.
    pub fn report<T: Serialize>(&self, value: &T, human: impl FnOnce() -> String) {
        let mut stdout = std::io::stdout().lock();
        if self.json {
            let text = serde_json::to_string(value).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"));
            let _ = writeln!(stdout, "{text}");
        } else {
            let text = human();
            if !text.is_empty() {
                let _ = writeln!(stdout, "{text}");
            }
        }
    }

    /// Shows an error (the core's one rendering, [`ErrorReport`]) and returns its exit code.
    pub fn error(&self, err: &anyhow::Error) -> i32 {
        let report = ErrorReport::of(err.as_ref());
        if self.json {
            println!("{}", ErrorReport::envelope(report.to_value()));
        }
        eprintln!("dbbackup: error: {}", report.message);
        if let Some(hint) = report.hint
            && !self.json
        {
            eprintln!("hint: {hint}");
        }
        exit_code(Error::in_chain(err.as_ref()).map_or(ErrorKind::Usage, Error::kind))
    }
}

/// The exit code of an error: the core's mapping, except that a cancellation caused by a stop
/// signal exits 128 + the signal (130 SIGINT, 143 SIGTERM, 129 SIGHUP) and one caused by
/// `--timeout` exits 124.
pub fn exit_code(kind: ErrorKind) -> i32 {
    if kind == ErrorKind::Cancelled
        && let Some(code) = crate::signal::stopped_exit_code()
    {
        return code;
    }
    kind.exit_code()
}

/// The exit code of a command that produced its report: the report's verdict, decided by the
/// core ([`Verdict::exit_code`]), except that a guard stopped from outside (its command stopped
/// and rolled back) exits with the signal's code.
pub fn verdict_code(verdict: &Verdict) -> i32 {
    match verdict {
        Verdict::Command(_) => crate::signal::stopped_exit_code().unwrap_or_else(|| verdict.exit_code()),
        _ => verdict.exit_code(),
    }
}

/// `1.5 GiB`-style sizes.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 { format!("{n} B") } else { format!("{v:.1} {}", UNITS[u]) }
}

/// The LAST VERIFIED cell of `list` and `status`: `full ok 2026-12-03 14:07`, or `never`.
pub fn verification(v: Option<&backup_core::VerificationRecord>) -> String {
    match v {
        Some(v) => {
            format!("{} {} {}", v.level, if v.ok { "ok" } else { "FAILED" }, v.at.format("%Y-%m-%d %H:%M"))
        }
        None => "never".into(),
    }
}

/// `1.234s`-style durations.
pub fn millis(ms: u64) -> String {
    if ms < 1000 { format!("{ms} ms") } else { format!("{:.1} s", ms as f64 / 1000.0) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use backup_core::{VerificationRecord, VerifyLevel};
    use chrono::TimeZone;

    #[test]
    fn the_last_verified_cell_says_level_outcome_and_minute() {
        let at = chrono::Utc.with_ymd_and_hms(2026, 12, 3, 14, 7, 46).unwrap();
        let rec = |ok| VerificationRecord {
            level: VerifyLevel::Drill,
            at,
            ok,
            recovery_ms: None,
            findings: 0,
            scratch: None,
        };
        assert_eq!(verification(Some(&rec(true))), "drill ok 2026-12-03 14:07");
        assert_eq!(verification(Some(&rec(false))), "drill FAILED 2026-12-03 14:07");
        assert_eq!(verification(None), "never");
    }
}
