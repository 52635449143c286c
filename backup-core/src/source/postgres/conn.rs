//! Connections: URL -> `tokio_postgres::Config`, quoting, and running pg_dump with the password
//! (and the TLS settings) in the environment. The workers' pool is [`crate::source::pool::Pool`].

use tokio::io::{AsyncRead, AsyncWrite};
use tokio_postgres::{Client, Config, Connection, NoTls};

use super::tls::TlsSettings;
use crate::error::{Error, Result};
use crate::format::manifest::TableEntry;
use crate::model::DatabaseUrl;
use crate::source::limits::{self, SessionLimits};

/// Session settings that make COPY text and row text (checksums) independent of the server's
/// and the role's defaults. `idle_in_transaction_session_timeout` is off because the dump
/// leader holds its snapshot transaction idle while the workers dump; the lock and statement
/// timeouts follow [`SessionLimits`] ([`limit_settings`]).
pub(crate) const SESSION_SETTINGS: &str = "SET client_encoding = 'UTF8'; SET DateStyle = 'ISO, YMD'; \
     SET IntervalStyle = 'postgres'; SET TimeZone = 'UTC'; SET extra_float_digits = 3; \
     SET bytea_output = 'hex'; SET standard_conforming_strings = on; \
     SET idle_in_transaction_session_timeout = 0";

/// `SET lock_timeout = ...; SET statement_timeout = ...` for `limits` (0: no limit).
pub(crate) fn limit_settings(limits: &SessionLimits) -> String {
    let ms = |d: Option<std::time::Duration>| d.map(limits::millis).unwrap_or(0);
    format!("SET lock_timeout = {}; SET statement_timeout = {}", ms(limits.lock), ms(limits.statement))
}

pub(crate) fn pg_err(context: impl Into<String>) -> impl FnOnce(tokio_postgres::Error) -> Error {
    let context = context.into();
    move |e| {
        // The server's message (with detail) says far more than the driver's "db error".
        let msg = match e.as_db_error() {
            Some(db) => {
                let mut m = format!("{}: {}", db.code().code(), db.message());
                if let Some(d) = db.detail() {
                    m.push_str(&format!(" ({d})"));
                }
                // Say which limit ended it and how to change it.
                if db.code() == &tokio_postgres::error::SqlState::LOCK_NOT_AVAILABLE {
                    m.push_str(
                        " (another session holds a conflicting lock for longer than the lock timeout: \
                         find it in pg_locks/pg_stat_activity, or raise --lock-timeout)",
                    );
                } else if db.code() == &tokio_postgres::error::SqlState::QUERY_CANCELED
                    && db.message().contains("statement timeout")
                {
                    m.push_str(" (the statement ran longer than --statement-timeout)");
                }
                m
            }
            // The driver's own text ("error connecting to server") hides the cause.
            None => crate::error::chain_text(&e),
        };
        Error::Source { context, source: msg.into() }
    }
}

/// `"ident"` with embedded quotes doubled.
pub(crate) fn quote_ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

/// `'literal'` (standard_conforming_strings on), or `E'...'` when it holds a backslash.
pub(crate) fn quote_literal(s: &str) -> String {
    if s.contains('\\') {
        format!("E'{}'", s.replace('\\', "\\\\").replace('\'', "''"))
    } else {
        format!("'{}'", s.replace('\'', "''"))
    }
}

pub(crate) fn config(url: &DatabaseUrl) -> Result<Config> {
    let u = url.url();
    let mut c = Config::new();
    if let Some(sock) = url.param("host").filter(|h| h.starts_with('/')) {
        c.host_path(sock);
    } else if let Some(h) = u.host_str() {
        c.host(h.trim_start_matches('[').trim_end_matches(']'));
        // libpq's hostaddr: connect to this address, but keep the host name for TLS
        // verification (verify-full checks the certificate against the name).
        if let Some(a) = url.param("hostaddr") {
            let addr = a.parse::<std::net::IpAddr>().map_err(|e| {
                Error::InvalidInput(format!("hostaddr={a} in {url}: not an IP address ({e})"))
            })?;
            c.hostaddr(addr);
        }
    }
    c.port(u.port().unwrap_or(5432));
    c.user(url.user().unwrap_or_else(|| "postgres".into()));
    if let Some(p) = url.password() {
        c.password(p.expose());
    } else if let Ok(p) = std::env::var("PGPASSWORD") {
        c.password(p);
    }
    let db = url.database();
    c.dbname(if db.is_empty() { "postgres" } else { &db });
    c.application_name("dbbackup");
    c.ssl_mode(TlsSettings::of(url)?.pg_mode());
    // A server that vanishes (host down, cable cut, NAT state dropped) is noticed in about two
    // minutes instead of the kernel's two hours.
    c.keepalives(true)
        .keepalives_idle(limits::KEEPALIVE_IDLE)
        .keepalives_interval(limits::KEEPALIVE_INTERVAL)
        .keepalives_retries(limits::KEEPALIVE_RETRIES);
    Ok(c)
}

/// Connects (TLS as `sslmode`/`sslrootcert` say) within the connect timeout, spawns the
/// connection task, applies [`SESSION_SETTINGS`] and the lock and statement timeouts.
pub(crate) async fn connect(url: &DatabaseUrl, role: &str, limits: &SessionLimits) -> Result<Client> {
    let client =
        limits.connecting(|| format!("connect to {url} ({role})"), connect_unbounded(url, role)).await?;
    client.batch_execute(&limit_settings(limits)).await.map_err(pg_err("apply session time limits"))?;
    Ok(client)
}

async fn connect_unbounded(url: &DatabaseUrl, role: &str) -> Result<Client> {
    let cfg = config(url)?;
    let tls = TlsSettings::of(url)?;
    let connected = match tls.connector()? {
        None => cfg.connect(NoTls).await.map(|(client, conn)| {
            spawn_connection(conn);
            client
        }),
        Some(connector) => cfg.connect(connector).await.map(|(client, conn)| {
            spawn_connection(conn);
            client
        }),
    };
    let client = connected.map_err(|e| {
        // A database that does not exist is the same failure on every engine.
        if e.code() == Some(&tokio_postgres::error::SqlState::INVALID_CATALOG_NAME) {
            return Error::MissingDatabase(format!("PostgreSQL database {:?} at {url}", url.database()));
        }
        let context = format!("connect to {url} ({role})");
        let host = url.url().host_str().unwrap_or("localhost");
        match tls.describe_failure(host, &e) {
            Some(msg) => Error::Source { context, source: msg.into() },
            None => pg_err(context)(e),
        }
    })?;
    session_setup(&client).await?;
    Ok(client)
}

/// Drives the connection until the client is dropped.
fn spawn_connection<S, T>(conn: Connection<S, T>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!("postgres connection ended: {e}");
        }
    });
}

pub(crate) async fn session_setup(c: &Client) -> Result<()> {
    c.batch_execute(SESSION_SETTINGS).await.map_err(pg_err("apply session settings"))
}

/// Runs a PostgreSQL client tool (`pg_dump`) against `url`, password by environment, and
/// returns its stdout as text (schema scripts: bounded metadata).
pub(crate) async fn run_pg_tool(
    url: &DatabaseUrl,
    limits: &SessionLimits,
    tool: &str,
    args: &[String],
    _temp_dir: Option<&std::path::Path>,
) -> Result<String> {
    let exe = find_tool(tool).ok_or_else(|| {
        Error::Unsupported(format!(
            "{tool} not found on PATH or in /usr/lib/postgresql/*/bin (install the PostgreSQL client tools)"
        ))
    })?;
    let cfg = config(url)?;
    let mut cmd = tokio::process::Command::new(&exe);
    cmd.args(args);
    cmd.env("PGDATABASE", url.database());
    if let Some(sock) = url.param("host").filter(|h| h.starts_with('/')) {
        cmd.env("PGHOST", sock);
    } else if let Some(h) = url.url().host_str() {
        cmd.env("PGHOST", h.trim_start_matches('[').trim_end_matches(']'));
    }
    if let Some(a) = url.param("hostaddr") {
        cmd.env("PGHOSTADDR", a);
    }
    cmd.env("PGPORT", url.url().port().unwrap_or(5432).to_string());
    cmd.env("PGUSER", cfg.get_user().unwrap_or("postgres"));
    if let Some(p) = url.password() {
        cmd.env("PGPASSWORD", p.expose());
    }
    cmd.envs(TlsSettings::of(url)?.env());
    // libpq takes whole seconds; pg_dump's own lock waits are bounded by --lock-wait-timeout.
    if let Some(t) = limits.connect {
        cmd.env("PGCONNECT_TIMEOUT", limits::secs_ceil(t).max(2).to_string());
    }
    if let Some(t) = limits.lock {
        cmd.arg(format!("--lock-wait-timeout={}", limits::millis(t)));
    }
    cmd.stdin(std::process::Stdio::null());
    cmd.kill_on_drop(true);
    let out = cmd.output().await.map_err(|e| Error::io(format!("run {}", exe.display()), e))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        // pg_dump's --lock-wait-timeout is a statement timeout around its LOCK TABLE.
        let hint = if err.contains("LOCK TABLE") && err.contains("statement timeout") {
            " (a table is locked by another session for longer than the lock timeout: find it in \
             pg_locks/pg_stat_activity, or raise --lock-timeout)"
        } else {
            ""
        };
        return Err(Error::Source {
            context: format!("{tool} of {url}"),
            source: format!("{}: {}{hint}", out.status, err.trim()).into(),
        });
    }
    String::from_utf8(out.stdout).map_err(|e| Error::Source {
        context: format!("{tool} of {url}"),
        source: format!("output is not UTF-8: {e}").into(),
    })
}

/// `tool` on PATH, else the newest `/usr/lib/postgresql/*/bin/tool`.
pub(crate) fn find_tool(tool: &str) -> Option<std::path::PathBuf> {
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            let p = dir.join(tool);
            if p.is_file() {
                return Some(p);
            }
        }
    }
    let mut found: Vec<std::path::PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| e.ok())
        .map(|e| e.path().join("bin").join(tool))
        .filter(|p| p.is_file())
        .collect();
    found.sort();
    found.pop()
}

pub(crate) async fn exec(c: &Client, stmt: &str) -> Result<()> {
    c.batch_execute(stmt).await.map_err(pg_err(format!("execute {}", shorten(stmt))))
}

pub(crate) fn shorten(stmt: &str) -> String {
    let one: String = stmt.split_whitespace().collect::<Vec<_>>().join(" ");
    if one.len() > 120 {
        let mut end = 120;
        while !one.is_char_boundary(end) {
            end -= 1;
        }
        format!("{}...", &one[..end])
    } else {
        one
    }
}

/// A table's identity and the columns its chunks carry (generated columns excluded).
pub(crate) fn qualified(t: &TableEntry) -> String {
    match &t.schema {
        Some(s) => format!("{}.{}", quote_ident(s), quote_ident(&t.name)),
        None => quote_ident(&t.name),
    }
}

/// The column list recorded for a table (`properties.columns`), quoted and comma-joined.
pub(crate) fn column_list(t: &TableEntry) -> Option<String> {
    let cols = t.properties.get("columns")?.as_array()?;
    let names: Vec<String> = cols.iter().filter_map(|c| c.as_str()).map(quote_ident).collect();
    Some(names.join(", "))
}

/// The maintenance database an admin session connects to (`postgres`, or `template1` when the
/// target is `postgres` itself).
pub(crate) fn admin_url(url: &DatabaseUrl) -> DatabaseUrl {
    let admin = if url.database() == "postgres" { "template1" } else { "postgres" };
    url.with_database(admin)
}
