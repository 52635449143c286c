//! A repository URL read into a [`RepoUrl`]: which store, which bucket or directory, which
//! prefix; credentials in a URL are refused without being echoed.

use crate::error::{Error, Result};
use crate::model::redact_str;
use crate::settings::parse_bool;

/// A parsed repository locator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RepoUrl {
    /// Local directory.
    Local {
        /// Absolute or relative directory.
        path: std::path::PathBuf,
    },
    /// Process-local in-memory store.
    Memory {
        /// Registry name.
        name: String,
    },
    /// S3 or an S3-compatible store.
    S3 {
        /// Bucket; `None` means "take it from `AWS_BUCKET`".
        bucket: Option<String>,
        /// Key prefix inside the bucket (no leading/trailing slash).
        prefix: String,
        /// `?conditional_put=` override.
        conditional_put: Option<bool>,
    },
    /// Google Cloud Storage.
    Gcs {
        /// Bucket.
        bucket: String,
        /// Key prefix.
        prefix: String,
    },
    /// Azure Blob Storage.
    Azure {
        /// Container.
        container: String,
        /// Key prefix.
        prefix: String,
    },
}

impl RepoUrl {
    /// Parses a repository URL.
    pub fn parse(s: &str) -> Result<Self> {
        let s = s.trim();
        if s.is_empty() {
            return Err(Error::InvalidInput("empty repository URL".into()));
        }
        if let Some(rest) = s.strip_prefix("memory://") {
            return Ok(RepoUrl::Memory { name: rest.trim_matches('/').to_string() });
        }
        if s == "memory:" {
            return Ok(RepoUrl::Memory { name: String::new() });
        }
        if let Some(rest) = s.strip_prefix("file://") {
            if !rest.starts_with('/') {
                return Err(Error::InvalidInput(format!(
                    "bad repository URL {s}: file:// needs an absolute path (file:///srv/backups)"
                )));
            }
            return Ok(RepoUrl::Local { path: rest.into() });
        }
        if let Some((scheme, rest)) = s.split_once("://") {
            let bad = |why: &str| Error::InvalidInput(format!("bad repository URL {}: {why}", redact_str(s)));
            let (rest, query) = match rest.split_once('?') {
                Some((r, q)) => (r, Some(q)),
                None => (rest, None),
            };
            let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
            // Over the whole authority: `s3://KEY:SECRET@bucket` where the secret holds a '/'
            // (AWS secrets do) splits at that '/', so look for `user:...@` anywhere before the
            // last '@', and refuse a ':' in the bucket name (no store allows one).
            let userinfo = rest.rfind('@').is_some_and(|at| rest[..at].contains(':'));
            if host.contains('@') || host.contains(':') || userinfo {
                return Err(bad(
                    "credentials do not belong in the URL; set them in the environment (AWS_ACCESS_KEY_ID, ...)",
                ));
            }
            let prefix = path.trim_matches('/').to_string();
            if prefix.split('/').any(|seg| seg == "." || seg == "..") || prefix.contains("//") {
                return Err(bad("the prefix may not contain '.', '..' or empty segments"));
            }
            let mut conditional_put = None;
            for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
                match pair.split_once('=') {
                    Some(("conditional_put", v)) if scheme == "s3" => {
                        conditional_put =
                            Some(parse_bool(v).ok_or_else(|| bad("conditional_put must be true or false"))?);
                    }
                    _ => {
                        return Err(bad(&format!(
                            "unknown option {pair:?} (known: conditional_put for s3://)"
                        )));
                    }
                }
            }
            let named = |what: &str| -> Result<String> {
                if host.is_empty() {
                    Err(bad(&format!("no {what} name ({scheme}://{what}/prefix)")))
                } else {
                    Ok(host.to_string())
                }
            };
            return match scheme {
                "s3" | "s3a" => Ok(RepoUrl::S3 {
                    bucket: (!host.is_empty()).then(|| host.to_string()),
                    prefix,
                    conditional_put,
                }),
                "gs" => Ok(RepoUrl::Gcs { bucket: named("bucket")?, prefix }),
                "az" | "azure" => Ok(RepoUrl::Azure { container: named("container")?, prefix }),
                _ => Err(Error::InvalidInput(format!(
                    "unsupported repository scheme {scheme:?} in {} (known: a path, file://, s3://, gs://, az://, memory://)",
                    redact_str(s)
                ))),
            };
        }
        Ok(RepoUrl::Local { path: s.into() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_documented_forms() {
        assert_eq!(RepoUrl::parse("/srv/b").unwrap(), RepoUrl::Local { path: "/srv/b".into() });
        assert_eq!(RepoUrl::parse("rel/b").unwrap(), RepoUrl::Local { path: "rel/b".into() });
        assert_eq!(RepoUrl::parse("file:///srv/b").unwrap(), RepoUrl::Local { path: "/srv/b".into() });
        assert_eq!(RepoUrl::parse("memory://t1").unwrap(), RepoUrl::Memory { name: "t1".into() });
        assert!(RepoUrl::parse("file://rel").is_err());
        assert!(RepoUrl::parse("").is_err());
        let e = RepoUrl::parse("ftp://u:pw@h/x").unwrap_err().to_string();
        assert!(e.contains("ftp") && !e.contains("pw"), "{e}");
    }

    /// AWS secret keys contain '/': the credentials check covers the whole authority, and the
    /// message never repeats the secret.
    #[test]
    fn credentials_with_a_slash_are_refused_and_not_echoed() {
        for url in [
            "s3://AKIAEXAMPLE:wJalr/XUtnFEMI/K7MDENG@bucket/prefix",
            "s3://AKIAEXAMPLE:wJalr/XUtnFEMI@bucket",
            "gs://user:wJalr/XUtnFEMI@bucket/x",
            "az://acct:wJalr/XUtnFEMI@container/x",
            "s3://AKIAEXAMPLE:wJalrXUtnFEMI@bucket",
        ] {
            let e = RepoUrl::parse(url).unwrap_err().to_string();
            assert!(e.contains("credentials") && !e.contains("wJalr"), "{url}: {e}");
        }
        // An '@' inside the prefix is not a credential.
        assert!(RepoUrl::parse("s3://bucket/backups@home").is_ok());
    }

    #[test]
    fn parses_cloud_urls() {
        assert_eq!(
            RepoUrl::parse("s3://b/app/prod/").unwrap(),
            RepoUrl::S3 { bucket: Some("b".into()), prefix: "app/prod".into(), conditional_put: None }
        );
        assert_eq!(
            RepoUrl::parse("s3:///p?conditional_put=false").unwrap(),
            RepoUrl::S3 { bucket: None, prefix: "p".into(), conditional_put: Some(false) }
        );
        assert_eq!(
            RepoUrl::parse("s3://").unwrap(),
            RepoUrl::S3 { bucket: None, prefix: String::new(), conditional_put: None }
        );
        assert_eq!(
            RepoUrl::parse("gs://g/x").unwrap(),
            RepoUrl::Gcs { bucket: "g".into(), prefix: "x".into() }
        );
        assert_eq!(
            RepoUrl::parse("az://c/x/y").unwrap(),
            RepoUrl::Azure { container: "c".into(), prefix: "x/y".into() }
        );
        assert_eq!(
            RepoUrl::parse("azure://c").unwrap(),
            RepoUrl::Azure { container: "c".into(), prefix: "".into() }
        );
        for bad in
            ["gs://", "az:///x", "s3://b/../x", "s3://b/a//b", "s3://b?x=1", "gs://b?conditional_put=true"]
        {
            assert!(RepoUrl::parse(bad).is_err(), "{bad}");
        }
        let e = RepoUrl::parse("s3://KEY:SECRET@b/x").unwrap_err().to_string();
        assert!(!e.contains("SECRET") && e.contains("environment"), "{e}");
    }
}
