//! How an operation ended, decided once for every face: the [`Verdict`] of a finished command's
//! report ([`Report::verdict`], implemented here for every command's report, so each exit policy
//! is in this file) and the one JSON rendering of an error ([`ErrorReport`]).
//!
//! How an error becomes an exit code: an [`Error`] has an [`ErrorKind`]
//! ([`Error::kind`]), whose [`ErrorKind::exit_code`] is the CLI's exit code and the FFI's status.
//! A command that produced its report can still have failed (a verify that found damage, an
//! unhealthy status): its report's [`Verdict`] says so, with the kind and a one-line reason.
//! The CLI exits with [`Verdict::exit_code`] (`backup-cli/src/commands/mod.rs`), the FFI returns
//! [`Verdict::status`] (`backup-ffi/src/client.rs`); both render errors through [`ErrorReport`].

use serde::Serialize;
use serde_json::{Value, json};

use crate::backup::CreateReport;
use crate::catalog::ListReport;
use crate::copy::CopyReport;
use crate::error::{Error, ErrorKind, chain_text};
use crate::guard::GuardReport;
use crate::health::StatusReport;
use crate::restore::RestoreReport;
use crate::retention::PruneReport;
use crate::verify::VerifyReport;

/// What a finished operation's report means to its caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Everything asked for was done.
    Done,
    /// The report is the answer, and it says the operation failed: `verify` found damage
    /// (integrity), `status` is unhealthy, `prune` could not remove everything.
    Failed {
        /// The failure's meaning (and so its exit code / status).
        kind: ErrorKind,
        /// One line saying what failed.
        message: String,
    },
    /// Done, but not everywhere asked: `create` stored the backup in some repositories and not
    /// in others (`failed_repos`). A process exits with `kind`'s code; a library call returns
    /// success with the report, whose fields say where the backup is missing.
    Partial {
        /// The failure's meaning.
        kind: ErrorKind,
        /// One line saying what is missing where.
        message: String,
    },
    /// `guard` did its job (the command succeeded, or it failed and was rolled back) and the
    /// guarded command ended with this shell-style status. A process wrapping the command exits
    /// with it; a library call returns success (the report carries `command_status`).
    Command(i32),
}

impl Verdict {
    /// The process exit code (the CLI's): 0, the kind's code, or the guarded command's status.
    /// The CLI alone overrides it for a run stopped by a signal or `--timeout`.
    pub fn exit_code(&self) -> i32 {
        match self {
            Verdict::Done => 0,
            Verdict::Failed { kind, .. } | Verdict::Partial { kind, .. } => kind.exit_code(),
            Verdict::Command(status) => *status,
        }
    }

    /// The library status (the FFI's): the kind's code for a failed report, else 0.
    pub fn status(&self) -> i32 {
        self.failure().map_or(0, |(kind, _)| kind.exit_code())
    }

    /// The failure a library call reports (its status and error object), if any.
    pub fn failure(&self) -> Option<(ErrorKind, &str)> {
        match self {
            Verdict::Failed { kind, message } => Some((*kind, message)),
            _ => None,
        }
    }

    /// What an alert says went wrong (`None`: the command succeeded), the same for every face.
    pub fn alert_error(&self) -> Option<String> {
        match self {
            Verdict::Done | Verdict::Command(0) => None,
            Verdict::Failed { kind, message } | Verdict::Partial { kind, message } => {
                Some(format!("{kind} error: {message}"))
            }
            Verdict::Command(status) => Some(format!("the guarded command failed with status {status}")),
        }
    }
}

/// A command's report: it says how the command ended. Every `*Report` a command returns
/// implements it, so that the faces never decide what a report means.
pub trait Report: Serialize {
    /// How the command ended; reports that cannot fail once produced are [`Verdict::Done`].
    fn verdict(&self) -> Verdict {
        Verdict::Done
    }
}

impl Report for ListReport {}
impl Report for RestoreReport {}
impl Report for CopyReport {}

impl Report for CreateReport {
    /// A repository that failed while others got the backup: the run failed (exit 1), the
    /// backup exists.
    fn verdict(&self) -> Verdict {
        if self.failed_repos.is_empty() {
            return Verdict::Done;
        }
        let missing: Vec<String> = self
            .failed_repos
            .iter()
            .map(|f| format!("backup {} is NOT in {}: {}", self.id, f.repo, f.error))
            .collect();
        Verdict::Partial { kind: ErrorKind::Failed, message: missing.join("; ") }
    }
}

impl Report for VerifyReport {
    /// Damage found is an integrity failure (exit 3), with the report written.
    fn verdict(&self) -> Verdict {
        if self.ok {
            return Verdict::Done;
        }
        Verdict::Failed {
            kind: ErrorKind::Integrity,
            message: format!("backup {} is damaged: {} finding(s)", self.id, self.findings.len()),
        }
    }
}

impl Report for StatusReport {
    /// A failed check (not a warning) makes the repositories unhealthy (exit 4).
    fn verdict(&self) -> Verdict {
        if self.healthy {
            return Verdict::Done;
        }
        let failed: Vec<&str> = self.checks.iter().filter(|c| !c.ok).map(|c| c.message.as_str()).collect();
        Verdict::Failed { kind: ErrorKind::Unhealthy, message: format!("unhealthy: {}", failed.join("; ")) }
    }
}

impl Report for PruneReport {
    /// Deletions that failed (they are retried by the next prune) fail the run (exit 1).
    fn verdict(&self) -> Verdict {
        if self.errors.is_empty() {
            return Verdict::Done;
        }
        Verdict::Failed { kind: ErrorKind::Failed, message: self.errors.join("; ") }
    }
}

impl Report for GuardReport {
    /// The guard did its job; the command's own status is passed on by a process.
    fn verdict(&self) -> Verdict {
        Verdict::Command(self.command_status)
    }
}

/// The one JSON rendering of an error: `{"kind", "message", "available"}`. The CLI prints it
/// inside `{"ok": false, "error": ...}` ([`ErrorReport::envelope`]); the FFI adds its status
/// (`code`) and, when asked, `returned_alerts`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ErrorReport {
    /// [`ErrorKind::as_str`], or a status only the C ABI has (`panic`, `null_argument`).
    pub kind: String,
    /// The error and its causes, each once ([`chain_text`]).
    pub message: String,
    /// Backup ids (or tables) that do exist when the one asked for does not.
    pub available: Vec<String>,
    /// A hint for a person when one fits ([`Error::hint`]); never in the JSON.
    #[serde(skip)]
    pub hint: Option<&'static str>,
}

impl Error {
    /// The first [`Error`] in an error's chain (a face's own error may wrap one with context).
    pub fn in_chain<'a>(err: &'a (dyn std::error::Error + 'static)) -> Option<&'a Error> {
        let mut cur = Some(err);
        while let Some(e) = cur {
            if let Some(found) = e.downcast_ref::<Error>() {
                return Some(found);
            }
            cur = e.source();
        }
        None
    }
}

impl ErrorReport {
    /// An error with its causes: the kind, `available` and hint of the first [`Error`] in its
    /// chain (an error with none is a usage error: a face's own, like a malformed flag).
    pub fn of(err: &(dyn std::error::Error + 'static)) -> Self {
        let core = Error::in_chain(err);
        let available = match core {
            Some(Error::NotFound { available, .. }) => available.clone(),
            _ => Vec::new(),
        };
        ErrorReport {
            kind: core.map_or(ErrorKind::Usage, Error::kind).as_str().to_string(),
            message: chain_text(err),
            available,
            hint: core.and_then(Error::hint),
        }
    }

    /// A failed report's error (a [`Verdict::Failed`]).
    pub fn failed(kind: ErrorKind, message: impl Into<String>) -> Self {
        ErrorReport {
            kind: kind.as_str().to_string(),
            message: message.into(),
            available: Vec::new(),
            hint: None,
        }
    }

    /// The error object as JSON (keys in order: `available`, `kind`, `message`).
    pub fn to_value(&self) -> Value {
        // A struct of strings always serialises; the fallback only satisfies the signature.
        serde_json::to_value(self).unwrap_or_else(|_| json!({ "kind": self.kind, "message": self.message }))
    }

    /// What `--json` prints on failure: `{"error": {...}, "ok": false}`.
    pub fn envelope(error: Value) -> String {
        json!({ "ok": false, "error": error }).to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdicts_give_each_face_its_code() {
        let damaged = Verdict::Failed { kind: ErrorKind::Integrity, message: "backup x is damaged".into() };
        assert_eq!((damaged.exit_code(), damaged.status()), (3, 3));
        assert_eq!(damaged.alert_error().as_deref(), Some("integrity error: backup x is damaged"));
        let partial = Verdict::Partial { kind: ErrorKind::Failed, message: "not in /b".into() };
        assert_eq!((partial.exit_code(), partial.status(), partial.failure()), (1, 0, None));
        let rolled_back = Verdict::Command(7);
        assert_eq!((rolled_back.exit_code(), rolled_back.status()), (7, 0));
        assert!(rolled_back.alert_error().is_some());
        assert_eq!((Verdict::Command(0).alert_error(), Verdict::Done.exit_code()), (None, 0));
    }

    #[test]
    fn one_error_object_for_every_face() {
        let e = Error::no_backup("backup nope", vec!["a".into()]);
        let r = ErrorReport::of(&e);
        assert_eq!(
            ErrorReport::envelope(r.to_value()),
            r#"{"error":{"available":["a"],"kind":"not_found","message":"backup nope not found; available: a"},"ok":false}"#
        );
        let plain = std::io::Error::other("--jobs: not a number");
        assert_eq!(ErrorReport::of(&plain).kind, "usage");
    }
}
