//! Connections: the server settings of a `mysql://` / `mariadb://` URL, one connection with
//! the session settings every dbbackup session uses (TLS, time limits, sql_mode, time zone),
//! statements run with errors naming them, and the quoting of identifiers and literals.

use mysql_async::prelude::Queryable;
use mysql_async::{Conn, OptsBuilder};

use super::tls;
use crate::error::{Error, Result};
use crate::model::DatabaseUrl;
use crate::source::limits::{self, SessionLimits};

/// The `sql_mode` restores run under: strict (so a value that does not fit is an error, not a
/// warning) but accepting zero and invalid dates, and keeping explicit zeros in AUTO_INCREMENT.
pub(crate) const LOAD_SQL_MODE: &str =
    "STRICT_ALL_TABLES,NO_AUTO_VALUE_ON_ZERO,NO_ENGINE_SUBSTITUTION,ALLOW_INVALID_DATES";

/// Quotes an identifier with backticks.
pub(crate) fn qi(name: &str) -> String {
    format!("`{}`", name.replace('`', "``"))
}

/// A `SHOW CREATE VIEW` text made relative to `db`, the session's default database when it was
/// read. The server normally leaves `db` out of the names it prints, but when the view's definer
/// lacks privileges on `db` (or does not exist) MariaDB prints the stored definition with every
/// column qualified by `db`, next to an unqualified `FROM`; created in another database (the
/// restore's shadow, a restore under another name) that view points at the wrong one or fails.
/// Removes those `` `db`. `` qualifiers outside string literals and other identifiers.
pub(crate) fn view_relative_to(create: &str, db: &str) -> String {
    requalify(create, db, None)
}

/// Replaces every `` `from`. `` qualifier outside string literals and other identifiers by
/// `` `to`. `` (or removes it with `None`).
pub(crate) fn requalify(create: &str, from: &str, to: Option<&str>) -> String {
    let prefix = format!("{}.", qi(from));
    let replacement = to.map(|t| format!("{}.", qi(t))).unwrap_or_default();
    let (b, p) = (create.as_bytes(), prefix.as_bytes());
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'`' if b[i..].starts_with(p) => {
                out.extend_from_slice(replacement.as_bytes());
                i += p.len();
            }
            q @ (b'`' | b'\'' | b'"') => {
                // Copy the quoted token whole: a doubled quote stays inside, `\` escapes in strings.
                out.push(q);
                i += 1;
                while i < b.len() {
                    let c = b[i];
                    out.push(c);
                    i += 1;
                    if c == b'\\' && q != b'`' && i < b.len() {
                        out.push(b[i]);
                        i += 1;
                    } else if c == q {
                        if b.get(i) == Some(&q) {
                            out.push(q);
                            i += 1;
                        } else {
                            break;
                        }
                    }
                }
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    // Only whole ASCII-delimited runs were removed or replaced by UTF-8, so the bytes are UTF-8.
    String::from_utf8(out).unwrap_or_else(|_| create.to_string())
}

/// Quotes a string literal (backslash escapes are on in every session we open).
pub(crate) fn qs(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('\'');
    for c in s.chars() {
        match c {
            '\'' => out.push_str("\\'"),
            '\\' => out.push_str("\\\\"),
            '\0' => out.push_str("\\0"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\u{1a}' => out.push_str("\\Z"),
            c => out.push(c),
        }
    }
    out.push('\'');
    out
}

/// Connection settings for one server, from a `mysql://` / `mariadb://` URL.
#[derive(Clone)]
pub(crate) struct Server {
    url: DatabaseUrl,
    limits: SessionLimits,
    tls: tls::TlsSettings,
    /// `PREFERRED` found the server without TLS: later sessions skip the TLS attempt.
    plain_only: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl Server {
    pub(crate) fn new(url: &DatabaseUrl) -> Result<Self> {
        if url.database().is_empty() {
            return Err(Error::InvalidInput(format!("{url}: no database name in the URL path")));
        }
        Ok(Server {
            url: url.clone(),
            limits: SessionLimits::of(url, &Default::default())?,
            tls: tls::TlsSettings::of(url)?,
            plain_only: Default::default(),
        })
    }

    /// The same server, its sessions under the time limits of these engine options (and the
    /// URL's parameters, which win).
    pub(crate) fn with_limits(&self, engine_options: &crate::engine_options::EngineOptions) -> Result<Self> {
        Ok(Server { limits: SessionLimits::of(&self.url, &engine_options.session)?, ..self.clone() })
    }

    /// The session time limits.
    pub(crate) fn limits(&self) -> &SessionLimits {
        &self.limits
    }

    pub(crate) fn database(&self) -> String {
        self.url.database()
    }

    /// Opens one connection with the session settings every dbbackup session uses.
    pub(crate) async fn connect(&self, extra_init: &[String]) -> Result<Conn> {
        let u = self.url.url();
        let mut b = OptsBuilder::default()
            .ip_or_hostname(u.host_str().unwrap_or("localhost").trim_matches(['[', ']']))
            .tcp_port(u.port().unwrap_or(3306))
            .user(self.url.user())
            .pass(self.url.password().map(|p| p.expose().to_string()))
            .prefer_socket(false)
            .max_allowed_packet(Some(1 << 30))
            .stmt_cache_size(0)
            // A server that vanishes is noticed in minutes, not the kernel's two hours.
            .tcp_keepalive(Some(limits::KEEPALIVE_IDLE));
        if let Some(s) = self.url.param("socket") {
            b = b.socket(Some(s));
        }
        let mut init: Vec<String> = vec![
            "SET NAMES utf8mb4".into(),
            "SET SESSION time_zone = '+00:00'".into(),
            format!("SET SESSION sql_mode = {}", qs(LOAD_SQL_MODE)),
        ];
        // Metadata locks (FLUSH TABLES WITH READ LOCK, RENAME TABLE, DDL) and InnoDB row locks
        // wait at most the lock timeout (the servers' defaults: a year and 50 s). 0 = no limit:
        // the largest value both accept.
        let lock_secs = self.limits.lock.map(limits::secs_ceil).unwrap_or(31_536_000);
        init.push(format!("SET SESSION lock_wait_timeout = {lock_secs}"));
        init.push(format!("SET SESSION innodb_lock_wait_timeout = {}", lock_secs.min(1_073_741_824)));
        init.extend(extra_init.iter().cloned());
        b = b.init(init);
        let what = || format!("connect to MySQL at {}", self.url);
        let mut conn = self.limits.connecting(what, self.open(b)).await?;
        if let Some(t) = self.limits.statement {
            set_statement_timeout(&mut conn, t).await?;
        }
        Ok(conn)
    }
}

impl Server {
    /// Connects with the URL's TLS settings: `PREFERRED` falls back to a plain connection when
    /// the server does not offer TLS (and remembers that for the next sessions).
    async fn open(&self, b: OptsBuilder) -> Result<Conn> {
        use std::sync::atomic::Ordering;
        let host = self.url.url().host_str().unwrap_or("localhost").to_string();
        let fail = |e: mysql_async::Error| {
            let context = format!("connect to MySQL at {}", self.url);
            if let Some(msg) = self.tls.describe_failure(&host, &e) {
                return Error::source(context, msg);
            }
            // 1045 ER_ACCESS_DENIED_ERROR: also what an account that REQUIRE SSL/X509 answers.
            if is_server_error(&e, &[1045]) {
                let hint = match (self.tls.mode(), self.tls.has_identity()) {
                    (tls::SslMode::Disabled, _) => {
                        " (if the account requires TLS (REQUIRE SSL/X509), do not set ssl-mode=DISABLED)"
                    }
                    (_, false) => {
                        " (if the account requires a client certificate (REQUIRE X509/SUBJECT/ISSUER), give ssl-cert= and ssl-key=)"
                    }
                    (_, true) => "",
                };
                return Error::source(context, format!("{e}{hint}"));
            }
            Error::source(context, e)
        };
        let ssl = if self.plain_only.load(Ordering::Relaxed) { None } else { self.tls.ssl_opts()? };
        let Some(ssl) = ssl else { return Conn::new(b).await.map_err(fail) };
        match Conn::new(b.clone().ssl_opts(ssl)).await {
            Err(mysql_async::Error::Driver(mysql_async::DriverError::NoClientSslFlagFromServer))
                if self.tls.mode() == tls::SslMode::Preferred =>
            {
                self.plain_only.store(true, Ordering::Relaxed);
                Conn::new(b).await.map_err(fail)
            }
            r => r.map_err(fail),
        }
    }
}

/// MariaDB's `max_statement_time` (seconds, every statement), else MySQL's
/// `max_execution_time` (milliseconds, read-only SELECTs only).
async fn set_statement_timeout(conn: &mut Conn, t: std::time::Duration) -> Result<()> {
    let mariadb = format!("SET SESSION max_statement_time = {:.3}", t.as_secs_f64());
    match conn.query_drop(&mariadb).await {
        Ok(()) => Ok(()),
        // ER_UNKNOWN_SYSTEM_VARIABLE: MySQL.
        Err(e) if is_server_error(&e, &[1193]) => {
            exec(conn, &format!("SET SESSION max_execution_time = {}", limits::millis(t))).await
        }
        Err(e) => Err(mysql_err(&mariadb, e)),
    }
}

/// A failed statement as an error naming it; lock and statement timeouts say which limit ended
/// them and how to change it.
pub(crate) fn mysql_err(sql: &str, e: mysql_async::Error) -> Error {
    let context = format!("MySQL: {}", short(sql));
    // 1205 ER_LOCK_WAIT_TIMEOUT; 1969 (MariaDB) / 3024 (MySQL): statement time limit reached.
    let hint = if is_server_error(&e, &[1205]) {
        " (another session holds a conflicting lock for longer than the lock timeout: find it in \
         SHOW PROCESSLIST, or raise --lock-timeout)"
    } else if is_server_error(&e, &[1969, 3024]) {
        " (the statement ran longer than --statement-timeout)"
    } else {
        ""
    };
    if hint.is_empty() { Error::source(context, e) } else { Error::source(context, format!("{e}{hint}")) }
}

/// Runs a statement, naming it in the error.
pub(crate) async fn exec(conn: &mut Conn, sql: &str) -> Result<()> {
    conn.query_drop(sql).await.map_err(|e| mysql_err(sql, e))
}

/// First 200 characters of a statement, for error messages.
pub(crate) fn short(sql: &str) -> String {
    let s: String = sql.chars().take(200).collect();
    if s.len() < sql.len() { format!("{s}...") } else { s }
}

/// Rows of text columns (NULL as `None`).
pub(crate) async fn query_text(conn: &mut Conn, sql: &str) -> Result<Vec<Vec<Option<String>>>> {
    let rows: Vec<mysql_async::Row> = conn.query(sql).await.map_err(|e| mysql_err(sql, e))?;
    Ok(rows
        .into_iter()
        .map(|r| {
            r.unwrap_raw()
                .into_iter()
                .map(|v| match v {
                    Some(mysql_async::Value::Bytes(b)) => Some(String::from_utf8_lossy(&b).into_owned()),
                    Some(mysql_async::Value::NULL) | None => None,
                    Some(other) => Some(other.as_sql(true).trim_matches('\'').to_string()),
                })
                .collect()
        })
        .collect())
}

/// The first column of the first row (`None` for no row or NULL).
pub(crate) async fn query_value(conn: &mut Conn, sql: &str) -> Result<Option<String>> {
    let rows = query_text(conn, sql).await?;
    Ok(rows.into_iter().next().and_then(|r| r.into_iter().next().flatten()))
}

/// Is this a server error with one of these codes?
pub(crate) fn is_server_error(e: &mysql_async::Error, codes: &[u16]) -> bool {
    matches!(e, mysql_async::Error::Server(s) if codes.contains(&s.code))
}

#[cfg(test)]
mod tests {
    use super::view_relative_to;

    #[test]
    fn view_definitions_lose_their_own_database_qualifier_only() {
        let shown = "CREATE ALGORITHM=UNDEFINED DEFINER=`d`@`%` SQL SECURITY DEFINER VIEW `v` AS select \
                     `app`.`o`.`id` AS `id`,`other`.`x`.`y` AS `y` from `o` join `other`.`x` \
                     where `app`.`o`.`note` <> '`app`.`o`' and `app.`.`t` = \"`app`.\" and `a``b`.`c` = 1";
        assert_eq!(
            view_relative_to(shown, "app"),
            "CREATE ALGORITHM=UNDEFINED DEFINER=`d`@`%` SQL SECURITY DEFINER VIEW `v` AS select \
             `o`.`id` AS `id`,`other`.`x`.`y` AS `y` from `o` join `other`.`x` \
             where `o`.`note` <> '`app`.`o`' and `app.`.`t` = \"`app`.\" and `a``b`.`c` = 1"
        );
        // Escapes inside strings, a backtick in the database name, multi-byte text.
        assert_eq!(
            view_relative_to("select 'it\\'s `a``b`.' AS `é`, `a``b`.`t`.`c` from `t`", "a`b"),
            "select 'it\\'s `a``b`.' AS `é`, `t`.`c` from `t`"
        );
        let plain = "select `o`.`id` AS `id` from `o`";
        assert_eq!(view_relative_to(plain, "app"), plain);
        assert_eq!(
            super::requalify("nextval(`sh`.`s`) + '`sh`.'", "sh", Some("live")),
            "nextval(`live`.`s`) + '`sh`.'"
        );
    }
}
