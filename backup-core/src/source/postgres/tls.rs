//! TLS for PostgreSQL connections: libpq's `sslmode`, `sslrootcert`, `sslcert` and `sslkey` URL
//! parameters mapped onto rustls (the aws-lc-rs provider the HTTP stores already use), the same
//! settings handed to pg_dump's environment, and certificate failures turned into messages that
//! name the server. Only file paths travel: the client key is read here when connecting (and by
//! libpq in a child), never copied into an argument list, a log line or a manifest.

use std::path::PathBuf;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::verify_server_cert_signed_by_trust_anchor;
use rustls::crypto::{WebPkiSupportedAlgorithms, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::ParsedCertificate;
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::error::{Error, Result};
use crate::model::DatabaseUrl;

/// libpq's `sslmode` values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SslMode {
    Disable,
    Allow,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl SslMode {
    fn as_str(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Allow => "allow",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        }
    }
}

/// Where verified connections take their trust anchors from.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Roots {
    /// `sslrootcert=/path`: a PEM file with one or more CA certificates.
    File(PathBuf),
    /// No `sslrootcert` (or `sslrootcert=system`): the platform's store.
    System,
}

/// The TLS settings of one URL.
#[derive(Clone, Debug)]
pub(crate) struct TlsSettings {
    mode: SslMode,
    roots: Roots,
    /// `sslrootcert` exactly as given, for pg_dump's `PGSSLROOTCERT`.
    root_cert_param: Option<String>,
    /// `sslcert` and `sslkey`: the client certificate (chain) and its key, PEM files.
    identity: Option<(PathBuf, PathBuf)>,
}

impl TlsSettings {
    /// Reads `sslmode` (default `prefer`, as libpq) and `sslrootcert`. A Unix-socket host never
    /// uses TLS (the server does not offer it there; libpq ignores sslmode too).
    pub(crate) fn of(url: &DatabaseUrl) -> Result<Self> {
        let mode = match url.param("sslmode").as_deref() {
            None | Some("prefer") => SslMode::Prefer,
            Some("disable") => SslMode::Disable,
            Some("allow") => SslMode::Allow,
            Some("require") => SslMode::Require,
            Some("verify-ca") => SslMode::VerifyCa,
            Some("verify-full") => SslMode::VerifyFull,
            Some(other) => {
                return Err(Error::InvalidInput(format!(
                    "sslmode={other} in {url}: expected disable, allow, prefer, require, verify-ca or verify-full"
                )));
            }
        };
        let root_cert_param = url.param("sslrootcert").filter(|p| !p.is_empty());
        let roots = match root_cert_param.as_deref() {
            None | Some("system") => Roots::System,
            Some(path) => Roots::File(PathBuf::from(path)),
        };
        let param = |k: &str| url.param(k).filter(|p| !p.is_empty()).map(PathBuf::from);
        let identity = match (param("sslcert"), param("sslkey")) {
            (Some(c), Some(k)) => Some((c, k)),
            (None, None) => None,
            (Some(_), None) => {
                return Err(Error::InvalidInput(format!("sslcert without sslkey in {url}: give both")));
            }
            (None, Some(_)) => {
                return Err(Error::InvalidInput(format!("sslkey without sslcert in {url}: give both")));
            }
        };
        let socket = url.param("host").is_some_and(|h| h.starts_with('/'));
        let mode = if socket { SslMode::Disable } else { mode };
        Ok(TlsSettings { mode, roots, root_cert_param, identity })
    }

    /// What tokio-postgres negotiates: `Prefer` falls back to plain when the server has no TLS.
    pub(crate) fn pg_mode(&self) -> tokio_postgres::config::SslMode {
        use tokio_postgres::config::SslMode as M;
        match self.mode {
            SslMode::Disable => M::Disable,
            // tokio-postgres has no "plain first, then TLS"; trying TLS first reaches a server
            // that requires it just the same.
            SslMode::Allow | SslMode::Prefer => M::Prefer,
            SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => M::Require,
        }
    }

    /// `PGSSLMODE` and (when given) `PGSSLROOTCERT`, `PGSSLCERT` and `PGSSLKEY` (paths) for a
    /// libpq child process.
    pub(crate) fn env(&self) -> Vec<(&'static str, String)> {
        let mut env = vec![("PGSSLMODE", self.mode.as_str().to_string())];
        if let Some(p) = &self.root_cert_param {
            env.push(("PGSSLROOTCERT", p.clone()));
        }
        if let Some((cert, key)) = &self.identity {
            env.push(("PGSSLCERT", cert.display().to_string()));
            env.push(("PGSSLKEY", key.display().to_string()));
        }
        env
    }

    /// The connector, or `None` for `disable`.
    pub(crate) fn connector(&self) -> Result<Option<MakeRustlsConnect>> {
        if self.mode == SslMode::Disable {
            return Ok(None);
        }
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| Error::Unsupported(format!("TLS for PostgreSQL: {e}")))?;
        let algs = provider.signature_verification_algorithms;
        // libpq: require with a root certificate given behaves like verify-ca.
        let check = match (self.mode, &self.roots) {
            (SslMode::Require, Roots::File(_)) => SslMode::VerifyCa,
            (mode, _) => mode,
        };
        let builder = match check {
            SslMode::VerifyFull => builder.with_root_certificates(self.load_roots()?),
            other => {
                let roots = if other == SslMode::VerifyCa { Some(self.load_roots()?) } else { None };
                builder.dangerous().with_custom_certificate_verifier(Arc::new(NameUnchecked { roots, algs }))
            }
        };
        let config = match &self.identity {
            None => builder.with_no_client_auth(),
            Some((cert_path, key_path)) => {
                let (chain, key) = load_identity(cert_path, key_path)?;
                builder.with_client_auth_cert(chain, key).map_err(|e| {
                    Error::InvalidInput(format!(
                        "sslcert {} with sslkey {}: {e}",
                        cert_path.display(),
                        key_path.display()
                    ))
                })?
            }
        };
        Ok(Some(MakeRustlsConnect::new(config)))
    }

    fn load_roots(&self) -> Result<RootCertStore> {
        let mut store = RootCertStore::empty();
        match &self.roots {
            Roots::File(path) => {
                let what = || format!("read sslrootcert {}", path.display());
                let certs = CertificateDer::pem_file_iter(path)
                    .and_then(|it| it.collect::<std::result::Result<Vec<_>, _>>())
                    .map_err(|e| Error::InvalidInput(format!("{}: {e}", what())))?;
                if certs.is_empty() {
                    return Err(Error::InvalidInput(format!("{}: no PEM certificate in it", what())));
                }
                for c in certs {
                    store.add(c).map_err(|e| Error::InvalidInput(format!("{}: {e}", what())))?;
                }
            }
            Roots::System => {
                let found = rustls_native_certs::load_native_certs();
                let (added, _) = store.add_parsable_certificates(found.certs);
                if added == 0 {
                    let why = found.errors.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ");
                    return Err(Error::InvalidInput(format!(
                        "sslmode={}: no root certificates in the system store ({why}); give sslrootcert=/path/to/ca.pem",
                        self.mode.as_str()
                    )));
                }
            }
        }
        Ok(store)
    }

    /// A clearer message for a failed TLS handshake with `host` (`None` for other failures):
    /// names the server, the mode and where the trusted roots came from.
    pub(crate) fn describe_failure(&self, host: &str, e: &tokio_postgres::Error) -> Option<String> {
        let tls = crate::source::rustls_error(e)?;
        let roots = match &self.roots {
            Roots::File(p) => format!("sslrootcert {}", p.display()),
            Roots::System => "the system root store".to_string(),
        };
        Some(match tls {
            rustls::Error::InvalidCertificate(why) => format!(
                "certificate verification of PostgreSQL server {host} failed (sslmode={}, roots from {roots}): {why}",
                self.mode.as_str()
            ),
            other => format!(
                "TLS handshake with PostgreSQL server {host} failed (sslmode={}): {other}",
                self.mode.as_str()
            ),
        })
    }
}

/// The client certificate chain and its private key (PEM: PKCS#8, PKCS#1 or SEC1). Errors name
/// the file, never its contents.
fn load_identity(
    cert: &std::path::Path,
    key: &std::path::Path,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)> {
    let chain = CertificateDer::pem_file_iter(cert)
        .and_then(|it| it.collect::<std::result::Result<Vec<_>, _>>())
        .map_err(|e| Error::InvalidInput(format!("read sslcert {}: {e}", cert.display())))?;
    if chain.is_empty() {
        return Err(Error::InvalidInput(format!(
            "read sslcert {}: no PEM certificate in it",
            cert.display()
        )));
    }
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| {
        Error::InvalidInput(format!(
            "read sslkey {}: {e} (an unencrypted PEM private key is expected)",
            key.display()
        ))
    })?;
    Ok((chain, key))
}

/// The server name is never checked here (`verify-full` uses rustls' own verifier).
/// With `roots` (`verify-ca`) the chain must lead to one of them; without (`allow`, `prefer`,
/// `require` and no root certificate: libpq's semantics) the connection is encrypted but the
/// server not authenticated. Handshake signatures are checked either way, so the peer holds the
/// key of the certificate it presents.
#[derive(Debug)]
struct NameUnchecked {
    roots: Option<RootCertStore>,
    algs: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for NameUnchecked {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        if let Some(roots) = &self.roots {
            let cert = ParsedCertificate::try_from(end_entity)?;
            verify_server_cert_signed_by_trust_anchor(&cert, roots, intermediates, now, self.algs.all)?;
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.algs)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.algs)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algs.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn settings(url: &str) -> Result<TlsSettings> {
        TlsSettings::of(&DatabaseUrl::parse(url)?)
    }

    #[test]
    fn modes_map_like_libpq() {
        use tokio_postgres::config::SslMode as M;
        let cases = [
            ("", M::Prefer, "prefer"),
            ("?sslmode=disable", M::Disable, "disable"),
            ("?sslmode=allow", M::Prefer, "allow"),
            ("?sslmode=prefer", M::Prefer, "prefer"),
            ("?sslmode=require", M::Require, "require"),
            ("?sslmode=verify-ca", M::Require, "verify-ca"),
            ("?sslmode=verify-full", M::Require, "verify-full"),
        ];
        for (q, pg, env) in cases {
            let s = settings(&format!("postgres://u@db.example:5432/app{q}")).unwrap();
            assert_eq!(s.pg_mode(), pg, "{q}");
            assert_eq!(s.env(), vec![("PGSSLMODE", env.to_string())], "{q}");
        }
    }

    #[test]
    fn root_cert_goes_to_the_child_environment() {
        let s = settings("postgres://u@h/app?sslmode=verify-full&sslrootcert=/etc/ca.pem").unwrap();
        assert_eq!(
            s.env(),
            vec![("PGSSLMODE", "verify-full".to_string()), ("PGSSLROOTCERT", "/etc/ca.pem".to_string())]
        );
    }

    #[test]
    fn client_certificate_paths_go_to_the_child_environment_and_come_in_pairs() {
        let s = settings("postgres://u@h/app?sslmode=require&sslcert=/c/client.crt&sslkey=/c/client.key")
            .unwrap();
        assert_eq!(
            s.env(),
            vec![
                ("PGSSLMODE", "require".to_string()),
                ("PGSSLCERT", "/c/client.crt".to_string()),
                ("PGSSLKEY", "/c/client.key".to_string())
            ]
        );
        let e = settings("postgres://u@h/app?sslcert=/c/client.crt").unwrap_err().to_string();
        assert!(e.contains("sslcert without sslkey"), "{e}");
        let e = settings("postgres://u@h/app?sslkey=/c/client.key").unwrap_err().to_string();
        assert!(e.contains("sslkey without sslcert"), "{e}");
        let e = settings(
            "postgres://u@h/app?sslmode=require&sslcert=/nonexistent/c.crt&sslkey=/nonexistent/c.key",
        )
        .unwrap()
        .connector()
        .err()
        .unwrap()
        .to_string();
        assert!(e.contains("read sslcert /nonexistent/c.crt"), "{e}");
    }

    #[test]
    fn unknown_mode_is_refused() {
        let e = settings("postgres://u@h/app?sslmode=verify").unwrap_err();
        assert!(e.to_string().contains("sslmode=verify"), "{e}");
    }

    #[test]
    fn unix_socket_never_uses_tls() {
        let s = settings("postgres://u@localhost/app?host=/run/postgresql&sslmode=require").unwrap();
        assert_eq!(s.pg_mode(), tokio_postgres::config::SslMode::Disable);
        assert!(s.connector().unwrap().is_none());
    }

    #[test]
    fn missing_or_empty_root_cert_file_is_an_error() {
        let e = settings("postgres://u@h/app?sslmode=verify-full&sslrootcert=/nonexistent/ca.pem")
            .unwrap()
            .connector()
            .err()
            .unwrap();
        assert!(e.to_string().contains("/nonexistent/ca.pem"), "{e}");
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        let e = settings(&format!("postgres://u@h/app?sslmode=verify-ca&sslrootcert={}", empty.display()))
            .unwrap()
            .connector()
            .err()
            .unwrap();
        assert!(e.to_string().contains("no PEM certificate"), "{e}");
    }
}
