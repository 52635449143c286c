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
            Error::NotFound { .. } => ErrorKind::NotFound,
            Error::Integrity { .. } | Error::UnsupportedFormat { .. } => ErrorKind::Integrity,
            Error::InvalidInput(_) | Error::ConfirmationRequired(_) => ErrorKind::Usage,
            Error::Cancelled(_) => ErrorKind::Cancelled,
            Error::Unhealthy(_) => ErrorKind::Unhealthy,
            Error::Source { .. }
            | Error::Storage { .. }
            | Error::AlreadyExists(_)
            | Error::Unsupported(_)
            | Error::Io { .. } => ErrorKind::Failed,
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

    /// Builds a [`Error::NotFound`] without alternatives.
    pub fn not_found(what: impl Into<String>) -> Self {
        Error::NotFound { what: what.into(), available: Vec::new() }
    }

    /// Builds a [`Error::Integrity`].
    pub fn integrity(
        what: impl Into<String>,
        expected: impl Into<String>,
        actual: impl Into<String>,
    ) -> Self {
        Error::Integrity { what: what.into(), expected: expected.into(), actual: actual.into() }
    }

    /// Builds an [`Error::Storage`] from an `object_store` error, keeping its meaning.
    pub fn storage(context: impl Into<String>, err: object_store::Error) -> Self {
        let context = context.into();
        match err {
            object_store::Error::NotFound { .. } => {
                // A missing bucket/container is also a 404: say so rather than "object not found".
                let what = match store_hint(&format!("{err:?}")) {
                    Some(hint) => format!("{context} ({hint})"),
                    None => context,
                };
                Error::NotFound { what, available: Vec::new() }
            }
            object_store::Error::AlreadyExists { .. } | object_store::Error::Precondition { .. } => {
                Error::AlreadyExists(context)
            }
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

/// What to fix, for the object-store failures users meet most (bucket, region, keys, http).
pub(crate) fn store_hint(msg: &str) -> Option<&'static str> {
    let m = msg.to_ascii_lowercase();
    let hint = if m.contains("nosuchbucket")
        || m.contains("containernotfound")
        || m.contains("bucket does not exist")
    {
        "the bucket/container does not exist: create it first, or check the name in the URL / AWS_BUCKET"
    } else if m.contains("authorizationheadermalformed")
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
        "access denied: check AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY (or AZURE_STORAGE_ACCOUNT_KEY, GOOGLE_SERVICE_ACCOUNT) and the key's permissions on this bucket"
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

    use super::*;

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
        let e = Error::NotFound { what: "backup nope".into(), available: vec!["a".into(), "b".into()] };
        assert_eq!(e.to_string(), "backup nope not found; available: a, b");
    }
}
