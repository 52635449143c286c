//! Receivers for the alert tests: a tiny local HTTP server standing for Slack, the webhook and the
//! heartbeat, and the reader of the SMTP sink `scripts/smtp-sink.py` (started by
//! `scripts/services.sh`), which writes each message it receives to a directory.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// What the HTTP receiver saw: `METHOD PATH BODY` per request, in order.
pub type Seen = Arc<Mutex<Vec<String>>>;

/// Starts an HTTP server on a free loopback port that records every request and answers 200;
/// returns its base URL (`http://127.0.0.1:PORT`).
pub fn http_server() -> (String, Seen) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", l.local_addr().unwrap());
    let seen: Seen = Arc::new(Mutex::new(Vec::new()));
    let s = seen.clone();
    std::thread::spawn(move || {
        for conn in l.incoming() {
            let Ok(mut conn) = conn else { continue };
            let mut r = BufReader::new(conn.try_clone().unwrap());
            let mut line = String::new();
            r.read_line(&mut line).unwrap();
            let mut len = 0usize;
            loop {
                let mut h = String::new();
                r.read_line(&mut h).unwrap();
                if h.trim().is_empty() {
                    break;
                }
                if let Some(v) = h.to_ascii_lowercase().strip_prefix("content-length:") {
                    len = v.trim().parse().unwrap();
                }
            }
            let mut body = vec![0; len];
            r.read_exact(&mut body).unwrap();
            let mut parts = line.split_whitespace();
            let req = format!(
                "{} {} {}",
                parts.next().unwrap(),
                parts.next().unwrap(),
                String::from_utf8_lossy(&body)
            );
            s.lock().unwrap().push(req);
            let _ = conn.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok");
        }
    });
    (url, seen)
}

/// The bodies of the `POST <path>` requests received since the last call, as JSON.
pub fn take_posts(seen: &Seen, path: &str) -> Vec<serde_json::Value> {
    let got: Vec<String> = std::mem::take(&mut *seen.lock().unwrap());
    let prefix = format!("POST {path} ");
    got.iter().filter_map(|r| r.strip_prefix(&prefix)).map(|b| serde_json::from_str(b).unwrap()).collect()
}

/// The SMTP sink's addresses: `smtp://` (STARTTLS offered), `smtps://` (TLS from the first byte),
/// the CA that signed its certificate, and the directory it writes messages to.
pub struct MailSink {
    /// `smtp://127.0.0.1:PORT`.
    pub url: String,
    /// `smtps://127.0.0.1:PORT`.
    pub tls_url: String,
    /// PEM of the throwaway CA.
    pub ca: String,
    /// Where each received message lands (`*.eml`).
    pub dir: PathBuf,
}

/// The sink from `DBBACKUP_TEST_SMTP_*`, or `None` outside CI when it is not running.
pub fn mail_sink() -> Option<MailSink> {
    Some(MailSink {
        url: crate::service_env("DBBACKUP_TEST_SMTP_URL")?,
        tls_url: crate::service_env("DBBACKUP_TEST_SMTPS_URL")?,
        ca: crate::service_env("DBBACKUP_TEST_SMTP_CA")?,
        dir: crate::service_env("DBBACKUP_TEST_SMTP_DIR")?.into(),
    })
}

/// One message as the sink received it.
#[derive(Debug, Clone)]
pub struct Mail {
    /// Headers (unfolded), the sink's `X-Sink-*` first.
    pub headers: Vec<(String, String)>,
    /// The body, quoted-printable decoded.
    pub body: String,
    /// The file exactly as written (to search for what must never be there).
    pub raw: String,
}

impl Mail {
    /// The first header of that name (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

/// The messages whose envelope recipients include `rcpt`, oldest first.
pub fn mails_to(dir: &Path, rcpt: &str) -> Vec<Mail> {
    let mut names: Vec<PathBuf> = match std::fs::read_dir(dir) {
        Ok(d) => d
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "eml"))
            .collect(),
        Err(_) => Vec::new(),
    };
    // `<nanoseconds>-<n>.eml`: numeric order is arrival order.
    names.sort_by_key(|p| {
        let stem = p.file_stem().unwrap().to_string_lossy().to_string();
        let (t, n) = stem.split_once('-').unwrap_or((&stem, "0"));
        (t.parse::<u128>().unwrap_or(0), n.parse::<u64>().unwrap_or(0))
    });
    names
        .iter()
        .map(|p| parse(&std::fs::read_to_string(p).unwrap()))
        .filter(|m| m.header("X-Sink-Rcpt-To").is_some_and(|r| r.split(", ").any(|a| a == rcpt)))
        .collect()
}

fn parse(raw: &str) -> Mail {
    let text = raw.replace("\r\n", "\n");
    let (head, body) = text.split_once("\n\n").unwrap_or((&text, ""));
    let mut headers: Vec<(String, String)> = Vec::new();
    for line in head.lines() {
        if line.starts_with([' ', '\t']) {
            if let Some(last) = headers.last_mut() {
                last.1.push(' ');
                last.1.push_str(line.trim());
            }
        } else if let Some((k, v)) = line.split_once(':') {
            headers.push((k.trim().to_string(), v.trim().to_string()));
        }
    }
    let qp = headers.iter().any(|(k, v)| {
        k.eq_ignore_ascii_case("Content-Transfer-Encoding") && v.eq_ignore_ascii_case("quoted-printable")
    });
    let body = if qp { quoted_printable(body) } else { body.to_string() };
    Mail { headers, body, raw: raw.to_string() }
}

fn quoted_printable(s: &str) -> String {
    let s = s.replace("=\n", "");
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'='
            && let Some(v) = s.get(i + 1..i + 3).and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(v);
            i += 3;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}
