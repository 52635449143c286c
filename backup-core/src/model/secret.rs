//! Secrets (passwords, keys) that never show in `Debug` or serialized output, and the
//! redaction of credentials in URL-like strings for messages.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A secret (password, key). `Debug` never shows it, and neither does `Serialize` (it writes
/// `"***"`, so options or reports serialized for logs or JSON cannot carry it); it is read from
/// JSON as a plain string (the FFI's options).
#[derive(Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Serialize for Secret {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str("***")
    }
}

impl Secret {
    /// Wraps a secret string.
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }
    /// The secret itself. Call only where it is handed to a driver.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// Replaces any `user:password@` in a URL-like string with `user:***@`, and the value of any
/// `password=` or `sslpassword=` query parameter with `***`, for messages.
pub fn redact_str(s: &str) -> String {
    let s = &redact_userinfo(s);
    let Some(q) = s.find('?') else { return s.to_string() };
    let mut out = s[..=q].to_string();
    let pairs: Vec<String> = s[q + 1..]
        .split('&')
        .map(|p| match p.split_once('=') {
            Some((k, _)) if k.eq_ignore_ascii_case("password") || k.eq_ignore_ascii_case("sslpassword") => {
                format!("{k}=***")
            }
            _ => p.to_string(),
        })
        .collect();
    out.push_str(&pairs.join("&"));
    out
}

fn redact_userinfo(s: &str) -> String {
    match (s.find("://"), s.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let creds = &s[scheme_end + 3..at];
            match creds.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &s[..scheme_end + 3], &s[at..]),
                None => s.to_string(),
            }
        }
        _ => s.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_serialize() {
        let s = Secret::new("canary-pw");
        assert_eq!(serde_json::to_string(&s).unwrap(), "\"***\"");
        assert_eq!(format!("{s:?}"), "***");
        let back: Secret = serde_json::from_str("\"canary-pw\"").unwrap();
        assert_eq!(back.expose(), "canary-pw");
    }
}
