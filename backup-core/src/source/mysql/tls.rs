//! TLS for MySQL/MariaDB connections: the MySQL client's `--ssl-mode`, `--ssl-ca`, `--ssl-cert`
//! and `--ssl-key` as URL parameters (`?ssl-mode=VERIFY_CA&ssl-ca=/path/ca.pem`; `ssl_mode`,
//! `sslMode` and `sslmode` are the same parameter), mapped onto mysql_async's rustls connector,
//! and handshake failures turned into messages that name the server, the mode and the CA.
//!
//! Only file paths travel in the URL: the key is read by the driver when it connects, so its
//! contents never reach an argument list, a log line or a manifest.

use std::path::{Path, PathBuf};

use mysql_async::{ClientIdentity, SslOpts};

use crate::error::{Error, Result};
use crate::model::DatabaseUrl;

/// The MySQL client's `--ssl-mode` values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SslMode {
    Disabled,
    /// TLS when the server offers it, plain otherwise; the certificate is not checked.
    Preferred,
    /// TLS or fail; the certificate is not checked (unless `ssl-ca` is given: then as `VerifyCa`).
    Required,
    /// TLS, the server's chain must lead to `ssl-ca` (or the built-in roots).
    VerifyCa,
    /// `VerifyCa` and the certificate must name the host connected to.
    VerifyIdentity,
}

impl SslMode {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            SslMode::Disabled => "DISABLED",
            SslMode::Preferred => "PREFERRED",
            SslMode::Required => "REQUIRED",
            SslMode::VerifyCa => "VERIFY_CA",
            SslMode::VerifyIdentity => "VERIFY_IDENTITY",
        }
    }
}

/// The TLS settings of one URL.
#[derive(Clone, Debug)]
pub(crate) struct TlsSettings {
    mode: SslMode,
    ca: Option<PathBuf>,
    identity: Option<(PathBuf, PathBuf)>,
}

/// A query parameter under any of the spellings people use for the MySQL client's options:
/// `ssl-ca`, `ssl_ca`, `sslCa`, `sslca` (case, `-` and `_` ignored).
fn param(url: &DatabaseUrl, name: &str) -> Option<String> {
    let norm =
        |k: &str| k.chars().filter(|c| *c != '-' && *c != '_').collect::<String>().to_ascii_lowercase();
    url.url()
        .query_pairs()
        .find(|(k, _)| norm(k) == name)
        .map(|(_, v)| v.into_owned())
        .filter(|v| !v.is_empty())
}

impl TlsSettings {
    /// Reads `ssl-mode` (default `PREFERRED`, as the MySQL client; `VERIFY_CA` when only `ssl-ca`
    /// is given), `ssl-ca`, `ssl-cert` and `ssl-key`. A Unix socket never uses TLS (the MySQL
    /// client treats it as secure; the driver does not encrypt it).
    pub(crate) fn of(url: &DatabaseUrl) -> Result<Self> {
        let ca = param(url, "sslca").map(PathBuf::from);
        let mode = match param(url, "sslmode").map(|m| m.to_ascii_uppercase().replace('-', "_")).as_deref() {
            None if ca.is_some() => SslMode::VerifyCa,
            None | Some("PREFERRED" | "PREFER") => SslMode::Preferred,
            Some("DISABLED" | "DISABLE") => SslMode::Disabled,
            Some("REQUIRED" | "REQUIRE") => SslMode::Required,
            Some("VERIFY_CA") => SslMode::VerifyCa,
            Some("VERIFY_IDENTITY" | "VERIFY_FULL") => SslMode::VerifyIdentity,
            Some(other) => {
                return Err(Error::InvalidInput(format!(
                    "ssl-mode={other} in {url}: expected DISABLED, PREFERRED, REQUIRED, VERIFY_CA or VERIFY_IDENTITY"
                )));
            }
        };
        // As libpq's require with a root certificate: a CA given is a CA checked.
        let mode = if mode == SslMode::Required && ca.is_some() { SslMode::VerifyCa } else { mode };
        let identity = match (param(url, "sslcert"), param(url, "sslkey")) {
            (Some(c), Some(k)) => Some((PathBuf::from(c), PathBuf::from(k))),
            (None, None) => None,
            (Some(_), None) => {
                return Err(Error::InvalidInput(format!("ssl-cert without ssl-key in {url}: give both")));
            }
            (None, Some(_)) => {
                return Err(Error::InvalidInput(format!("ssl-key without ssl-cert in {url}: give both")));
            }
        };
        let mode = if url.param("socket").is_some() { SslMode::Disabled } else { mode };
        Ok(TlsSettings { mode, ca, identity })
    }

    pub(crate) fn mode(&self) -> SslMode {
        self.mode
    }

    /// Does this connection carry a client certificate?
    pub(crate) fn has_identity(&self) -> bool {
        self.identity.is_some() && self.mode != SslMode::Disabled
    }

    /// The driver's options, or `None` for `DISABLED`. The files are checked here so a wrong
    /// path is an error naming the parameter (the driver only says "No such file").
    pub(crate) fn ssl_opts(&self) -> Result<Option<SslOpts>> {
        if self.mode == SslMode::Disabled {
            return Ok(None);
        }
        let readable = |what: &str, p: &Path| -> Result<()> {
            std::fs::File::open(p)
                .map(drop)
                .map_err(|e| Error::InvalidInput(format!("{what} {}: {e}", p.display())))
        };
        let mut opts = SslOpts::default();
        match self.mode {
            SslMode::Preferred | SslMode::Required => {
                opts = opts.with_danger_accept_invalid_certs(true).with_danger_skip_domain_validation(true);
            }
            SslMode::VerifyCa => opts = opts.with_danger_skip_domain_validation(true),
            SslMode::VerifyIdentity | SslMode::Disabled => {}
        }
        if let Some(ca) = &self.ca
            && matches!(self.mode, SslMode::VerifyCa | SslMode::VerifyIdentity)
        {
            readable("ssl-ca", ca)?;
            // As the MySQL client: with ssl-ca, that file is the only trust anchor.
            opts = opts.with_root_certs(vec![ca.clone().into()]).with_disable_built_in_roots(true);
        }
        if let Some((cert, key)) = &self.identity {
            readable("ssl-cert", cert)?;
            readable("ssl-key", key)?;
            opts =
                opts.with_client_identity(Some(ClientIdentity::new(cert.clone().into(), key.clone().into())));
        }
        Ok(Some(opts))
    }

    /// A clearer message for a failed TLS handshake with `host` (`None` for other failures):
    /// names the server, the mode and where the trusted roots came from.
    pub(crate) fn describe_failure(&self, host: &str, e: &mysql_async::Error) -> Option<String> {
        let roots = match &self.ca {
            Some(p) => format!("ssl-ca {}", p.display()),
            None => "the built-in root store".to_string(),
        };
        if let mysql_async::Error::Driver(mysql_async::DriverError::NoClientSslFlagFromServer) = e {
            return Some(format!(
                "MySQL server {host} does not offer TLS (ssl-mode={}): enable TLS on the server or use ssl-mode=PREFERRED",
                self.mode.as_str()
            ));
        }
        Some(match crate::source::rustls_error(e)? {
            rustls::Error::InvalidCertificate(why) => format!(
                "certificate verification of MySQL server {host} failed (ssl-mode={}, roots from {roots}): {why}",
                self.mode.as_str()
            ),
            other => format!(
                "TLS handshake with MySQL server {host} failed (ssl-mode={}): {other}",
                self.mode.as_str()
            ),
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn settings(q: &str) -> Result<TlsSettings> {
        TlsSettings::of(&DatabaseUrl::parse(&format!("mysql://u@db.example:3306/app{q}"))?)
    }

    #[test]
    fn modes_and_spellings() {
        let cases = [
            ("", SslMode::Preferred),
            ("?ssl-mode=DISABLED", SslMode::Disabled),
            ("?ssl_mode=required", SslMode::Required),
            ("?sslMode=VERIFY_CA&sslCa=/ca.pem", SslMode::VerifyCa),
            ("?sslmode=verify-identity", SslMode::VerifyIdentity),
            // ssl-ca alone means: check against it; REQUIRED with a CA checks it too.
            ("?ssl-ca=/ca.pem", SslMode::VerifyCa),
            ("?ssl-mode=REQUIRED&ssl-ca=/ca.pem", SslMode::VerifyCa),
            ("?ssl-mode=PREFERRED&ssl-ca=/ca.pem", SslMode::Preferred),
            // A socket is never encrypted.
            ("?socket=/run/mysqld/mysqld.sock&ssl-mode=VERIFY_IDENTITY", SslMode::Disabled),
        ];
        for (q, want) in cases {
            assert_eq!(settings(q).unwrap().mode(), want, "{q}");
        }
        assert!(settings("?ssl-mode=DISABLED").unwrap().ssl_opts().unwrap().is_none());
        let e = settings("?ssl-mode=VERIFY").unwrap_err().to_string();
        assert!(e.contains("ssl-mode=VERIFY") && e.contains("VERIFY_IDENTITY"), "{e}");
    }

    #[test]
    fn certificate_and_key_go_together_and_must_exist() {
        let e = settings("?ssl-cert=/c.pem").unwrap_err().to_string();
        assert!(e.contains("ssl-cert without ssl-key"), "{e}");
        let e = settings("?ssl-key=/k.pem").unwrap_err().to_string();
        assert!(e.contains("ssl-key without ssl-cert"), "{e}");
        let s = settings("?ssl-cert=/nonexistent/c.pem&ssl-key=/nonexistent/k.pem").unwrap();
        assert!(s.has_identity());
        let e = s.ssl_opts().unwrap_err().to_string();
        assert!(e.contains("ssl-cert /nonexistent/c.pem"), "{e}");
        let e = settings("?ssl-mode=VERIFY_CA&ssl-ca=/nonexistent/ca.pem").unwrap().ssl_opts().unwrap_err();
        assert!(e.to_string().contains("ssl-ca /nonexistent/ca.pem"), "{e}");
    }
}
