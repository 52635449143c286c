//! E-mail delivery over SMTP: the e-mail settings and the sending of a plain-text message (a
//! notification's subject and body, rendered by `notify`, which this module does not know).
//! The connection is encrypted unless told otherwise: STARTTLS on the submission port (`smtp://`,
//! default 587) or TLS from the first byte (`smtps://`, default 465); a plain connection
//! (`tls = none`, default port 25) is only for a relay on the same machine and never carries a
//! password.
//!
//! The password is a [`Secret`]: it goes to the server in the AUTH exchange only, never into the
//! message, a warning or a log line.

use std::path::PathBuf;
use std::time::Duration;

use lettre::message::Mailbox;
use lettre::message::header::ContentType;
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::transport::smtp::extension::ClientId;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use crate::error::{Error, Result};
use crate::model::{Secret, redact_str};

/// How the SMTP connection is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SmtpTls {
    /// Plain connection upgraded with STARTTLS; refused when the server does not offer it.
    #[default]
    StartTls,
    /// TLS from the first byte (SMTPS, "implicit TLS").
    Tls,
    /// No encryption (a relay on this machine); no authentication allowed.
    None,
}

impl std::str::FromStr for SmtpTls {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "starttls" => Ok(SmtpTls::StartTls),
            "tls" | "smtps" | "implicit" => Ok(SmtpTls::Tls),
            "none" | "plain" | "off" => Ok(SmtpTls::None),
            other => Err(Error::InvalidInput(format!("SMTP TLS mode {other:?}: use starttls, tls or none"))),
        }
    }
}

/// Where and how e-mail alerts are sent.
#[derive(Debug, Clone, Default)]
pub struct EmailConfig {
    /// SMTP server host name (also the name its certificate must carry).
    pub host: String,
    /// Port (default: 587 STARTTLS, 465 TLS, 25 none).
    pub port: Option<u16>,
    /// Connection protection.
    pub tls: SmtpTls,
    /// SMTP user, when the server wants AUTH.
    pub user: Option<String>,
    /// SMTP password.
    pub password: Option<Secret>,
    /// Extra CA certificate (PEM file) trusted beside the system roots (a private relay).
    pub ca_file: Option<PathBuf>,
    /// Sender address (default `dbbackup@<host name>`).
    pub from: Option<String>,
    /// Recipients.
    pub to: Vec<String>,
}

impl EmailConfig {
    /// From `smtp://[user[:password]@]host[:port]` (STARTTLS) or `smtps://...` (TLS); `tls`
    /// overrides the scheme's mode. User and password in the URL are percent-decoded.
    pub fn from_url(url: &str, tls: Option<SmtpTls>) -> Result<Self> {
        let bad = |why: &str| Error::InvalidInput(format!("SMTP URL {}: {why}", redact_str(url)));
        let u = url::Url::parse(url.trim()).map_err(|e| bad(&e.to_string()))?;
        let scheme_tls = match u.scheme() {
            "smtp" => SmtpTls::StartTls,
            "smtps" => SmtpTls::Tls,
            _ => return Err(bad("the scheme must be smtp:// (STARTTLS) or smtps:// (TLS)")),
        };
        let host = u.host_str().filter(|h| !h.is_empty()).ok_or_else(|| bad("no host"))?;
        let host = host.trim_start_matches('[').trim_end_matches(']').to_string();
        let decode = |s: &str| {
            percent_decode(s).ok_or_else(|| bad("user or password is not valid percent-encoded UTF-8"))
        };
        let user = (!u.username().is_empty()).then(|| decode(u.username())).transpose()?;
        let password = u.password().map(decode).transpose()?.map(Secret::new);
        Ok(EmailConfig {
            host,
            port: u.port(),
            tls: tls.unwrap_or(scheme_tls),
            user,
            password,
            ..Default::default()
        })
    }

    /// Refuses settings that cannot work or would leak: no recipient, a password over a plain
    /// connection, a password without a user.
    pub fn check(&self) -> Result<()> {
        if self.to.is_empty() {
            return Err(Error::InvalidInput(
                "e-mail alerts: an SMTP server is set but no recipient (DBBACKUP_MAIL_TO)".into(),
            ));
        }
        if self.tls == SmtpTls::None && (self.user.is_some() || self.password.is_some()) {
            return Err(Error::InvalidInput(
                "e-mail alerts: SMTP credentials over an unencrypted connection (tls none) are refused: the password would cross the network in clear; use starttls or tls".into(),
            ));
        }
        if self.password.is_some() && self.user.is_none() {
            return Err(Error::InvalidInput("e-mail alerts: an SMTP password without a user".into()));
        }
        for a in self.to.iter().chain(&self.from) {
            a.parse::<Mailbox>()
                .map_err(|e| Error::InvalidInput(format!("e-mail alerts: address {a:?}: {e}")))?;
        }
        Ok(())
    }

    fn port(&self) -> u16 {
        self.port.unwrap_or(match self.tls {
            SmtpTls::StartTls => 587,
            SmtpTls::Tls => 465,
            SmtpTls::None => 25,
        })
    }

    /// `smtp://user@host:port (starttls)`, never the password.
    pub fn shown(&self) -> String {
        let user = self.user.as_deref().map(|u| format!("{u}@")).unwrap_or_default();
        let mode = match self.tls {
            SmtpTls::StartTls => "starttls",
            SmtpTls::Tls => "tls",
            SmtpTls::None => "unencrypted",
        };
        format!("smtp://{user}{}:{} ({mode})", self.host, self.port())
    }
}

fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Sends a plain-text message (a notification's subject and body) by e-mail. The error is a
/// one-line warning (no password in it).
pub async fn send(
    cfg: &EmailConfig,
    subject: &str,
    body: String,
    host: Option<&str>,
    timeout: Duration,
) -> Result<(), String> {
    let shown = cfg.shown();
    let fail = |what: &str, e: &dyn std::fmt::Display| {
        format!("e-mail {shown}: {what}: {}", redact_str(&e.to_string()))
    };
    let from = cfg.from.clone().unwrap_or_else(|| format!("dbbackup@{}", host.unwrap_or("localhost")));
    let mut m = Message::builder()
        .from(from.parse::<Mailbox>().map_err(|e| fail(&format!("sender {from:?}"), &e))?)
        .subject(subject)
        .header(ContentType::TEXT_PLAIN);
    for to in &cfg.to {
        m = m.to(to.parse::<Mailbox>().map_err(|e| fail(&format!("recipient {to:?}"), &e))?);
    }
    let message = m.body(body).map_err(|e| fail("build the message", &e))?;
    let tls = match cfg.tls {
        SmtpTls::None => Tls::None,
        mode => {
            let mut p = TlsParameters::builder(cfg.host.clone());
            if let Some(ca) = &cfg.ca_file {
                let pem = tokio::fs::read(ca)
                    .await
                    .map_err(|e| fail(&format!("read CA file {}", ca.display()), &e))?;
                p = p.add_root_certificate(
                    Certificate::from_pem(&pem)
                        .map_err(|e| fail(&format!("CA file {}", ca.display()), &e))?,
                );
            }
            let p = p.build().map_err(|e| fail("TLS setup", &e))?;
            if mode == SmtpTls::Tls { Tls::Wrapper(p) } else { Tls::Required(p) }
        }
    };
    let mut t = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(cfg.host.clone())
        .port(cfg.port())
        .tls(tls)
        .timeout(Some(timeout))
        .hello_name(ClientId::Domain(host.unwrap_or("localhost").to_string()));
    if let Some(user) = &cfg.user {
        let pw = cfg.password.as_ref().map(|p| p.expose().to_string()).unwrap_or_default();
        t = t.credentials(Credentials::new(user.clone(), pw));
    }
    match t.build().send(message).await {
        Ok(_) => Ok(()),
        Err(e) => Err(fail("not sent", &e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_modes_and_refusals() {
        let c = EmailConfig::from_url("smtp://alerts%40shop:p%40ss@mail.example.com", None).unwrap();
        assert_eq!((c.host.as_str(), c.port(), c.tls), ("mail.example.com", 587, SmtpTls::StartTls));
        assert_eq!(
            (c.user.as_deref(), c.password.as_ref().map(Secret::expose)),
            (Some("alerts@shop"), Some("p@ss"))
        );
        assert!(!c.shown().contains("p@ss") && c.shown().contains("alerts@shop@mail.example.com:587"));
        let c = EmailConfig::from_url("smtps://mail.example.com", None).unwrap();
        assert_eq!((c.port(), c.tls), (465, SmtpTls::Tls));
        let c = EmailConfig::from_url("smtp://127.0.0.1:2525", Some(SmtpTls::None)).unwrap();
        assert_eq!((c.port(), c.tls), (2525, SmtpTls::None));
        assert!(EmailConfig::from_url("http://x", None).is_err());
        // No recipient; a password in clear; a bad address.
        assert!(c.check().unwrap_err().to_string().contains("DBBACKUP_MAIL_TO"));
        let mut c = EmailConfig::from_url("smtp://u:pw@127.0.0.1:2525", Some(SmtpTls::None)).unwrap();
        c.to = vec!["ops@example.com".into()];
        assert!(c.check().unwrap_err().to_string().contains("in clear"));
        c.tls = SmtpTls::StartTls;
        c.check().unwrap();
        c.to = vec!["not an address".into()];
        assert!(c.check().is_err());
        assert!("bogus".parse::<SmtpTls>().is_err());
    }
}
