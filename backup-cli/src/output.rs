//! Rendering: human text or exactly one JSON object on stdout; errors and their exit codes.

use std::io::Write;

use backup_core::{Error, ErrorKind};
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

    /// Shows an error and returns its exit code.
    pub fn error(&self, err: &anyhow::Error) -> i32 {
        let kind = kind_of(err);
        if self.json {
            let available = match err.downcast_ref::<Error>() {
                Some(Error::NotFound { available, .. }) => available.clone(),
                _ => Vec::new(),
            };
            let v = serde_json::json!({
                "ok": false,
                "error": { "kind": kind.as_str(), "message": message(err), "available": available },
            });
            println!("{v}");
        }
        eprintln!("dbbackup: error: {}", message(err));
        if let Some(hint) = err.downcast_ref::<Error>().and_then(Error::hint)
            && !self.json
        {
            eprintln!("hint: {hint}");
        }
        exit_code(kind)
    }
}

/// An error with its causes, each once (the core's one rendering).
pub fn message(err: &anyhow::Error) -> String {
    backup_core::chain_text(err.as_ref())
}

/// The meaning of an error from any layer.
pub fn kind_of(err: &anyhow::Error) -> ErrorKind {
    if let Some(e) = err.downcast_ref::<Error>() {
        return e.kind();
    }
    ErrorKind::Usage
}

/// The one place exit codes are decided: the core's mapping, except that a cancellation caused
/// by a stop signal exits 128 + the signal (130 SIGINT, 143 SIGTERM, 129 SIGHUP) and one caused
/// by `--timeout` exits 124.
pub fn exit_code(kind: ErrorKind) -> i32 {
    if kind == ErrorKind::Cancelled
        && let Some(code) = crate::signal::stopped_exit_code()
    {
        return code;
    }
    kind.exit_code()
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

/// `1.234s`-style durations.
pub fn millis(ms: u64) -> String {
    if ms < 1000 { format!("{ms} ms") } else { format!("{:.1} s", ms as f64 / 1000.0) }
}
