//! The one public error type of the library, with semantic variants.
//!
//! Every module converts its own failures into [`Error`] at its boundary; callers branch on
//! [`Error::kind`], which is also what the CLI exit codes and the FFI status codes are derived from
//! (see [`ErrorKind::exit_code`], the one place that mapping lives).

use std::fmt;

/// Result alias used across the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong, grouped by what it means to the caller.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Something asked for does not exist: a backup id, a repository, a database, an object.
    #[error("{what} not found{}", fmt_available(.available))]
    NotFound {
        /// What was looked for, e.g. `backup 20261123T...` or `object data/...`.
        what: String,
        /// What does exist instead (backup ids, newest first), so the caller can pick one.
        available: Vec<String>,
        /// Whether it is a backup looked for in a repository (then, with nothing `available`,
        /// the hint is to list the repository); a role, an undo copy, an object are not.
        backup: bool,
    },
    /// Stored bytes do not match what the manifest promised.
    #[error("integrity check failed for {what}: expected {expected}, found {actual}")]
    Integrity {
        /// The object or table that failed.
        what: String,
        /// What the manifest recorded.
        expected: String,
        /// What was actually read.
        actual: String,
    },
    /// A backup written by a newer or unknown format that this version cannot read.
    #[error("{what}: {reason}")]
    UnsupportedFormat {
        /// The manifest or object concerned.
        what: String,
        /// Why it cannot be read.
        reason: String,
    },
    /// The caller gave something unusable: a malformed URL, an impossible option combination.
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// The operation needs the operator's confirmation (production guard) and did not get it.
    #[error("confirmation required: {0}")]
    ConfirmationRequired(String),
    /// The database side failed (connect, query, dump, load).
    #[error("{context}: {source}")]
    Source {
        /// What was being done, on what.
        context: String,
        /// The underlying error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync + 'static>,
    },
    /// The object store failed (put, get, list, delete).
    #[error("{context}: {source}")]
    Storage {
        /// What was being done, on what.
        context: String,
        /// The underlying error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync + 'static>,
        /// Whether repeating the call may succeed (timeouts, 5xx, dropped connections).
        retryable: bool,
    },
    /// Something already exists where it must not be overwritten (create-only manifest write).
    #[error("{0} already exists")]
    AlreadyExists(String),
    /// The database to back up (or a file it needs) does not exist. Distinct from [`Error::NotFound`],
    /// which is about what a repository holds, so the hint fits (exit code 5 all the same).
    #[error("{0} does not exist")]
    MissingDatabase(String),
    /// A repository read (verify, restore, copy from) names a local directory that does not
    /// exist. Reads never create it (`list` finds no backups there); `create` does.
    #[error("repository {0} does not exist")]
    MissingRepository(String),
    /// The engine or store cannot do what was asked.
    #[error("unsupported: {0}")]
    Unsupported(String),
    /// Local I/O failed (temp files, the SQLite file).
    #[error("{context}: {source}")]
    Io {
        /// What was being done, on what.
        context: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A health check or budget failed (`status`, `guard --max-rto`).
    #[error("unhealthy: {0}")]
    Unhealthy(String),
    /// The operation was cancelled by the caller or exceeded its deadline.
    #[error("cancelled: {0}")]
    Cancelled(String),
    /// An encryption key problem: no identity for an encrypted backup, a wrong, empty or
    /// malformed key, an unusable recipient. The message says which ("wrong key", "no identity
    /// for recipients ...") and never carries key material.
    #[error("{0}")]
    Key(String),
    /// Another run holds the lock this operation needs (a restore into the same target, a
    /// prune of the same repository).
    #[error("busy: {0}")]
    Locked(String),
}

fn fmt_available(available: &[String]) -> String {
    if available.is_empty() {
        String::new()
    } else {
        let shown: Vec<&str> = available.iter().take(20).map(String::as_str).collect();
        let more = available.len().saturating_sub(shown.len());
        let tail = if more > 0 { format!(" (and {more} more)") } else { String::new() };
        format!("; available: {}{tail}", shown.join(", "))
    }
}

/// The meaning of an error, independent of its message. Stable: CLI exit codes and FFI status
/// codes are derived from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ErrorKind {
    /// The operation failed (database, store, I/O).
    Failed,
    /// Bad usage or configuration.
    Usage,
    /// Corrupt, incomplete or unreadable backup.
    Integrity,
    /// Health checks failed (`status`).
    Unhealthy,
    /// A backup, repository or database does not exist.
    NotFound,
    /// Cancelled or timed out.
    Cancelled,
}

impl ErrorKind {
    /// The process exit code / FFI status code for this kind. The one place this mapping lives.
    pub fn exit_code(self) -> i32 {
        match self {
            ErrorKind::Failed => 1,
            ErrorKind::Usage => 2,
            ErrorKind::Integrity => 3,
            ErrorKind::Unhealthy => 4,
            ErrorKind::NotFound => 5,
            ErrorKind::Cancelled => 130,
        }
    }

    /// Short stable name (`integrity`, `not_found`, ...), used in JSON error output.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Failed => "failed",
            ErrorKind::Usage => "usage",
            ErrorKind::Integrity => "integrity",
            ErrorKind::Unhealthy => "unhealthy",
            ErrorKind::NotFound => "not_found",
            ErrorKind::Cancelled => "cancelled",
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Error {
    /// What this error means to the caller.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::NotFound { .. } | Error::MissingDatabase(_) | Error::MissingRepository(_) => {
                ErrorKind::NotFound
            }
            Error::Integrity { .. } | Error::UnsupportedFormat { .. } => ErrorKind::Integrity,
            Error::InvalidInput(_) | Error::ConfirmationRequired(_) | Error::Key(_) => ErrorKind::Usage,
            Error::Cancelled(_) => ErrorKind::Cancelled,
            Error::Unhealthy(_) => ErrorKind::Unhealthy,
            Error::Source { .. }
            | Error::Storage { .. }
            | Error::AlreadyExists(_)
            | Error::Unsupported(_)
            | Error::Locked(_)
            | Error::Io { .. } => ErrorKind::Failed,
        }
    }

    /// A hint for a person, when one fits this error (the CLI prints it under the message).
    pub fn hint(&self) -> Option<&'static str> {
        match self {
            Error::NotFound { available, backup: true, .. } if available.is_empty() => {
                Some("`dbbackup list --repo ...` shows what the repository holds")
            }
            Error::MissingDatabase(_) => {
                Some("check the database name and host (or the file's directory) in the database URL")
            }
            Error::MissingRepository(_) => {
                Some("check the --repo path; `dbbackup create` makes the directory with the first backup")
            }
            Error::Key(_) => Some(
                "an encrypted backup opens with the identity of one of its recipients (--identity FILE, DBBACKUP_IDENTITY or DBBACKUP_IDENTITY_FILE) or its passphrase (DBBACKUP_PASSPHRASE)",
            ),
            _ => None,
        }
    }

    /// Whether repeating the same call may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Error::Storage { retryable: true, .. })
    }

    /// Builds a [`Error::Source`] from any error with a context string.
    pub fn source<E>(context: impl Into<String>, err: E) -> Self
    where
        E: Into<Box<dyn std::error::Error + Send + Sync + 'static>>,
    {
        Error::Source { context: context.into(), source: err.into() }
    }

    /// Builds a [`Error::Io`] with a context string.
    pub fn io(context: impl Into<String>, err: std::io::Error) -> Self {
        Error::Io { context: context.into(), source: err }
    }

    /// Builds a [`Error::NotFound`] without alternatives, for something that is not a backup.
    pub fn not_found(what: impl Into<String>) -> Self {
        Error::NotFound { what: what.into(), available: Vec::new(), backup: false }
    }

    /// Builds a [`Error::NotFound`] for a backup looked for in a repository, with the backups
    /// that do exist there.
    pub fn no_backup(what: impl Into<String>, available: Vec<String>) -> Self {
        Error::NotFound { what: what.into(), available, backup: true }
    }

    /// Builds a [`Error::Integrity`].
    pub fn integrity(
        what: impl Into<String>,
        expected: impl Into<String>,
        actual: impl Into<String>,
    ) -> Self {
        Error::Integrity { what: what.into(), expected: expected.into(), actual: actual.into() }
    }

    /// Builds an [`Error::Storage`] from an `object_store` error, keeping its meaning: decided by
    /// the error's variant (not found, already exists or precondition failed, permission
    /// denied or unauthenticated); the message text only picks a hint within a meaning.
    pub fn storage(context: impl Into<String>, err: object_store::Error) -> Self {
        let context = context.into();
        match err {
            object_store::Error::NotFound { .. } => {
                // A missing bucket/container is also a 404: say so rather than "object not found".
                let what = match missing_bucket_hint(&format!("{err:?}")) {
                    Some(hint) => format!("{context} ({hint})"),
                    None => context,
                };
                Error::NotFound { what, available: Vec::new(), backup: false }
            }
            object_store::Error::AlreadyExists { .. } | object_store::Error::Precondition { .. } => {
                Error::AlreadyExists(context)
            }
            denied @ (object_store::Error::PermissionDenied { .. }
            | object_store::Error::Unauthenticated { .. }) => Error::Storage {
                context: format!("{context} ({ACCESS_DENIED})"),
                source: Box::new(denied),
                retryable: false,
            },
            other => {
                let retryable = matches!(other, object_store::Error::Generic { .. });
                let context = match store_hint(&other.to_string()) {
                    Some(hint) => format!("{context} ({hint})"),
                    None => context,
                };
                Error::Storage { context, source: Box::new(other), retryable }
            }
        }
    }

    /// Prefixes the context of this error with more context ("while X: ...").
    pub fn context(self, ctx: impl fmt::Display) -> Self {
        match self {
            Error::Source { context, source } => {
                Error::Source { context: format!("{ctx}: {context}"), source }
            }
            Error::Storage { context, source, retryable } => {
                Error::Storage { context: format!("{ctx}: {context}"), source, retryable }
            }
            Error::Io { context, source } => Error::Io { context: format!("{ctx}: {context}"), source },
            other => other,
        }
    }
}

/// An error and its causes as one line, each cause once: a cause whose text its parent already
/// printed (thiserror's `"{context}: {source}"`, drivers that repeat their source) is left out, and
/// a segment repeated back to back ("Input/output error: Input/output error: ...") is said once.
/// The one rendering of error messages for the CLI, the FFI and notifications.
pub fn chain_text(err: &(dyn std::error::Error + 'static)) -> String {
    let mut text = String::new();
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = cur {
        let msg = e.to_string();
        if !msg.is_empty() && !text.contains(&msg) {
            if !text.is_empty() {
                text.push_str(": ");
            }
            text.push_str(&msg);
        }
        cur = e.source();
    }
    let mut out: Vec<&str> = Vec::new();
    for seg in text.split(": ") {
        if out.last() != Some(&seg) {
            out.push(seg);
        }
    }
    out.join(": ")
}

/// What to fix when the store refuses the credentials (a 401 or 403).
const ACCESS_DENIED: &str = "access denied: check AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY (or AZURE_STORAGE_ACCOUNT_KEY, GOOGLE_SERVICE_ACCOUNT) and the key's permissions on this bucket";

/// A not-found that is the bucket or container itself, not an object in it.
fn missing_bucket_hint(msg: &str) -> Option<&'static str> {
    let m = msg.to_ascii_lowercase();
    (m.contains("nosuchbucket") || m.contains("containernotfound") || m.contains("bucket does not exist"))
        .then_some(
            "the bucket/container does not exist: create it first, or check the name in the URL / AWS_BUCKET",
        )
}

/// A hint for the object-store failures users meet most that have no variant of their own
/// (bucket, region, keys reported in a generic error, plain http, unreachable endpoint).
pub(crate) fn store_hint(msg: &str) -> Option<&'static str> {
    if let Some(hint) = missing_bucket_hint(msg) {
        return Some(hint);
    }
    let m = msg.to_ascii_lowercase();
    let hint = if m.contains("authorizationheadermalformed")
        || m.contains("permanentredirect")
        || m.contains("illegallocationconstraint")
        || (m.contains("region") && m.contains("wrong"))
    {
        "wrong region: set AWS_DEFAULT_REGION to the bucket's region (for B2/R2/MinIO also set AWS_ENDPOINT)"
    } else if m.contains("invalidaccesskeyid")
        || m.contains("signaturedoesnotmatch")
        || m.contains("authenticationfailed")
        || m.contains("invalid_grant")
        || m.contains("403 forbidden")
        || m.contains("accessdenied")
    {
        ACCESS_DENIED
    } else if m.contains("url scheme is not allowed") || m.contains("http is not allowed") {
        "plain http endpoint: use https, or set AWS_ALLOW_HTTP=true for a trusted local endpoint"
    } else if m.contains("dns error")
        || m.contains("connection refused")
        || m.contains("error sending request")
    {
        "cannot reach the endpoint: check AWS_ENDPOINT / AZURE_STORAGE_ENDPOINT and the network"
    } else {
        return None;
    };
    Some(hint)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An error that prints its source inside its own message, as many drivers do.
    #[derive(Debug)]
    struct Repeats(&'static str, Option<Box<Repeats>>);
    impl fmt::Display for Repeats {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            match &self.1 {
                Some(s) => write!(f, "{}: {s}", self.0),
                None => f.write_str(self.0),
            }
        }
    }
    impl std::error::Error for Repeats {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            self.1.as_deref().map(|e| e as _)
        }
    }

    #[test]
    fn each_cause_is_said_once() {
        // mysql_async's shape: "Input/output error: Input/output error: Connection refused".
        let io = Repeats("Connection refused (os error 111)", None);
        let inner = Repeats("Input/output error", Some(Box::new(io)));
        let outer = Repeats("Input/output error", Some(Box::new(inner)));
        let e = Error::source("connect to MySQL at mysql://127.0.0.1:1/x", outer);
        assert_eq!(
            chain_text(&e),
            "connect to MySQL at mysql://127.0.0.1:1/x: Input/output error: Connection refused (os error 111)"
        );
        // A cause its parent does not print is kept.
        let quiet = Error::Io {
            context: "read manifest".into(),
            source: std::io::Error::other(Repeats("disk on fire", None)),
        };
        assert_eq!(chain_text(&quiet), "read manifest: disk on fire");
    }

    #[test]
    fn hints_fit_the_error() {
        let repo = Error::no_backup("any backup in /srv/backups", vec![]);
        assert!(repo.hint().unwrap_or_default().contains("dbbackup list"));
        for other in [Error::not_found("undo copy of x"), Error::not_found("role(s) r on the target server")]
        {
            assert_eq!(other.hint(), None, "not in a repository: {other}");
        }
        let listed = Error::no_backup("backup x", vec!["y".into()]);
        assert_eq!(listed.hint(), None, "the available ones are already listed");
        let db = Error::MissingDatabase("MySQL database \"shop\"".into());
        assert_eq!(db.kind(), ErrorKind::NotFound);
        assert!(
            !db.hint().unwrap_or_default().contains("dbbackup list"),
            "a database is not in a repository"
        );
    }

    #[test]
    fn store_failures_say_what_to_fix() {
        for (msg, want) in [
            ("Error performing GET ... NoSuchBucket: The specified bucket does not exist", "bucket"),
            (
                "<Code>AuthorizationHeaderMalformed</Code> the region 'us-east-1' is wrong",
                "AWS_DEFAULT_REGION",
            ),
            ("<Code>InvalidAccessKeyId</Code>", "AWS_ACCESS_KEY_ID"),
            ("<Code>SignatureDoesNotMatch</Code>", "AWS_SECRET_ACCESS_KEY"),
            ("builder error: URL scheme is not allowed", "https"),
            ("error sending request for url: connection refused", "AWS_ENDPOINT"),
        ] {
            let hint = store_hint(msg).unwrap_or_default();
            assert!(hint.contains(want), "{msg} -> {hint}");
        }
        assert_eq!(store_hint("something else"), None);
    }

    #[test]
    fn exit_codes_follow_the_cli_contract() {
        assert_eq!(Error::not_found("backup x").kind().exit_code(), 5);
        assert_eq!(Error::integrity("o", "a", "b").kind().exit_code(), 3);
        assert_eq!(Error::InvalidInput("x".into()).kind().exit_code(), 2);
        assert_eq!(Error::Cancelled("x".into()).kind().exit_code(), 130);
        assert_eq!(Error::Unsupported("x".into()).kind().exit_code(), 1);
        assert_eq!(ErrorKind::Unhealthy.exit_code(), 4);
    }

    #[test]
    fn not_found_lists_alternatives() {
        let e = Error::no_backup("backup nope", vec!["a".into(), "b".into()]);
        assert_eq!(e.to_string(), "backup nope not found; available: a, b");
    }

    #[test]
    fn store_errors_keep_their_meaning_by_variant() {
        // Messages that name no status code or error word: only the variant says what happened.
        let src = || Box::new(std::io::Error::other("refused")) as Box<dyn std::error::Error + Send + Sync>;
        for err in [
            object_store::Error::PermissionDenied { path: "k".into(), source: src() },
            object_store::Error::Unauthenticated { path: "k".into(), source: src() },
        ] {
            let e = Error::storage("put manifest.json of x", err);
            assert_eq!(e.kind(), ErrorKind::Failed);
            assert!(!e.is_retryable(), "{e}");
            assert!(
                e.to_string().starts_with("put manifest.json of x (access denied: check AWS_ACCESS_KEY_ID"),
                "{e}"
            );
        }
        let e = Error::storage("get k", object_store::Error::NotFound { path: "k".into(), source: src() });
        assert_eq!((e.kind(), e.to_string()), (ErrorKind::NotFound, "get k not found".to_string()));
        let e =
            Error::storage("put k", object_store::Error::Precondition { path: "k".into(), source: src() });
        assert!(matches!(&e, Error::AlreadyExists(c) if c == "put k"), "{e:?}");
        let e =
            Error::storage("put k", object_store::Error::AlreadyExists { path: "k".into(), source: src() });
        assert!(matches!(&e, Error::AlreadyExists(c) if c == "put k"), "{e:?}");
    }

    #[test]
    fn a_missing_repository_is_said_not_to_exist() {
        let e = Error::MissingRepository("/srv/nope".into());
        assert_eq!(e.to_string(), "repository /srv/nope does not exist");
        assert_eq!(e.kind(), ErrorKind::NotFound);
        assert!(
            e.hint().is_some_and(|h| h.contains("--repo") && !h.contains("dbbackup list")),
            "{:?}",
            e.hint()
        );
    }
}
