//! Where a database lives: [`DatabaseUrl`], parsed from `sqlite:`, `postgres://` and
//! `mysql://` URLs, its password moved out of the URL into a [`Secret`].

use std::fmt;

use crate::error::{Error, Result};
use crate::model::engine::Engine;
use crate::model::secret::{Secret, redact_str};

/// Where a database lives, parsed from a URL (`sqlite:`, `postgres://`, `mysql://`).
#[derive(Clone, PartialEq, Eq)]
pub struct DatabaseUrl {
    engine: Engine,
    url: url::Url,
    sqlite_path: Option<std::path::PathBuf>,
    password: Option<Secret>,
}

impl DatabaseUrl {
    /// Parses a database URL. A password inside the URL is moved into a [`Secret`] and removed
    /// from the URL, so no later `Display` can leak it.
    pub fn parse(s: &str) -> Result<Self> {
        let bad = |why: &str| Error::InvalidInput(format!("bad database URL {}: {why}", redact_str(s)));
        let lower = s.to_ascii_lowercase();
        if lower.starts_with("sqlite:") {
            let rest = &s["sqlite:".len()..];
            let path = if let Some(abs) = rest.strip_prefix("///") {
                format!("/{abs}")
            } else if let Some(rel) = rest.strip_prefix("//") {
                rel.to_string()
            } else {
                rest.to_string()
            };
            let path = path.split('?').next().unwrap_or_default().to_string();
            if path.is_empty() {
                return Err(bad("no file path (use sqlite:///abs/path.sqlite or sqlite:relative.sqlite)"));
            }
            let pb = std::path::PathBuf::from(&path);
            let url = url::Url::parse("sqlite:///").map_err(|e| bad(&e.to_string()))?;
            return Ok(DatabaseUrl { engine: Engine::Sqlite, url, sqlite_path: Some(pb), password: None });
        }
        let mut url = url::Url::parse(s).map_err(|e| bad(&e.to_string()))?;
        let engine = match url.scheme() {
            "postgres" | "postgresql" => Engine::Postgres,
            "mysql" | "mariadb" => Engine::Mysql,
            other => {
                return Err(bad(&format!(
                    "unknown scheme {other:?} (expected sqlite:, postgres://, mysql://)"
                )));
            }
        };
        let mut password = url.password().map(|p| Secret::new(percent_decode(p)));
        if url.password().is_some() {
            // set_password only fails for URLs that cannot have credentials, which these can.
            let _ = url.set_password(None);
        }
        // libpq's `?password=` and `?user=` are honoured like the userinfo, and taken out of the
        // query so no Display of the URL carries them.
        let pairs: Vec<(String, String)> =
            url.query_pairs().map(|(k, v)| (k.into_owned(), v.into_owned())).collect();
        // A key passphrase would ride along in every Display of the URL: refused, not kept.
        if pairs.iter().any(|(k, _)| k.eq_ignore_ascii_case("sslpassword")) {
            return Err(bad("sslpassword: encrypted client keys are not supported; decrypt the key \
                 (openssl pkey -in enc.key -out client.key) and protect the file (chmod 600)"));
        }
        if pairs.iter().any(|(k, _)| k == "password" || k == "user") {
            let mut kept = Vec::new();
            for (k, v) in pairs {
                match k.as_str() {
                    "password" => {
                        if password.is_some() {
                            return Err(bad("a password both in the userinfo and in ?password="));
                        }
                        password = Some(Secret::new(v));
                    }
                    "user" => {
                        if !url.username().is_empty() {
                            return Err(bad("a user both in the userinfo and in ?user="));
                        }
                        if url.set_username(&v).is_err() {
                            return Err(bad("?user= on a URL that cannot have a user"));
                        }
                    }
                    _ => kept.push((k, v)),
                }
            }
            if kept.is_empty() {
                url.set_query(None);
            } else {
                url.query_pairs_mut().clear().extend_pairs(kept);
            }
        }
        if url.host_str().is_none_or(str::is_empty)
            && !url.query_pairs().any(|(k, _)| k == "socket" || k == "host")
        {
            return Err(bad("no host"));
        }
        Ok(DatabaseUrl { engine, url, sqlite_path: None, password })
    }

    /// The engine this URL addresses.
    pub fn engine(&self) -> Engine {
        self.engine
    }

    /// The SQLite file path (SQLite URLs only).
    pub fn sqlite_path(&self) -> Option<&std::path::Path> {
        self.sqlite_path.as_deref()
    }

    /// The parsed URL without password (server engines).
    pub fn url(&self) -> &url::Url {
        &self.url
    }

    /// Database name: the path's first segment for servers, the file name for SQLite.
    pub fn database(&self) -> String {
        match &self.sqlite_path {
            Some(p) => p.file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_default(),
            None => percent_decode(self.url.path().trim_start_matches('/')),
        }
    }

    /// Returns the same locator pointing at another database on the same server (or another file).
    pub fn with_database(&self, name: &str) -> Self {
        let mut out = self.clone();
        match &self.sqlite_path {
            Some(p) => out.sqlite_path = Some(p.with_file_name(name)),
            None => out.url.set_path(&format!("/{name}")),
        }
        out
    }

    /// The user name (server engines), percent-decoded.
    pub fn user(&self) -> Option<String> {
        let u = self.url.username();
        if u.is_empty() { None } else { Some(percent_decode(u)) }
    }

    /// The password, if one was given in the URL or set with [`DatabaseUrl::set_password`].
    pub fn password(&self) -> Option<&Secret> {
        self.password.as_ref()
    }

    /// Sets the password from the environment/file/FFI caller; wins over one from the URL.
    pub fn set_password(&mut self, password: Option<Secret>) {
        if password.is_some() {
            self.password = password;
        }
    }

    /// A query parameter (`sslmode`, `socket`, ...).
    pub fn param(&self, key: &str) -> Option<String> {
        self.url.query_pairs().find(|(k, _)| k == key).map(|(_, v)| v.into_owned())
    }
}

impl fmt::Display for DatabaseUrl {
    /// Never contains the password.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.sqlite_path {
            Some(p) if p.is_absolute() => write!(f, "sqlite://{}", p.display()),
            Some(p) => write!(f, "sqlite:{}", p.display()),
            None => f.write_str(self.url.as_str()),
        }
    }
}

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DatabaseUrl({self})")
    }
}

fn percent_decode(s: &str) -> String {
    fn hex(b: u8) -> Option<u8> {
        (b as char).to_digit(16).map(|d| d as u8)
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2]))
        {
            out.push(h * 16 + l);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_password_and_user_are_honoured_and_not_displayed() {
        let u =
            DatabaseUrl::parse("postgres://h:5432/db?sslmode=disable&password=canary%2Fpw&user=app").unwrap();
        assert_eq!(u.password().unwrap().expose(), "canary/pw");
        assert_eq!(u.user().as_deref(), Some("app"));
        assert_eq!(u.param("sslmode").as_deref(), Some("disable"));
        assert_eq!(u.to_string(), "postgres://app@h:5432/db?sslmode=disable");
        let u = DatabaseUrl::parse("mysql://root@h/db?password=canary").unwrap();
        assert_eq!(u.password().unwrap().expose(), "canary");
        assert!(!u.to_string().contains("canary") && !u.to_string().contains('?'), "{u}");
        let e = DatabaseUrl::parse("postgres://a:one@h/db?password=canary").unwrap_err().to_string();
        assert!(e.contains("both") && !e.contains("canary"), "{e}");
        let e = DatabaseUrl::parse("postgres://a@h/db?sslkey=/k&sslpassword=canary").unwrap_err().to_string();
        assert!(e.contains("sslpassword") && !e.contains("canary"), "{e}");
    }

    #[test]
    fn urls_hide_passwords() {
        let u = DatabaseUrl::parse("postgres://app:s3cr%40t@db.example:5432/shop?sslmode=require").unwrap();
        assert_eq!(u.engine(), Engine::Postgres);
        assert_eq!(u.password().unwrap().expose(), "s3cr@t");
        assert_eq!(u.database(), "shop");
        assert_eq!(u.param("sslmode").as_deref(), Some("require"));
        assert!(!u.to_string().contains("s3cr"));
        assert!(!format!("{u:?}").contains("s3cr"));
        assert_eq!(redact_str("mysql://root:pw@h/db"), "mysql://root:***@h/db");
    }

    #[test]
    fn sqlite_urls() {
        let a = DatabaseUrl::parse("sqlite:///var/app.sqlite").unwrap();
        assert_eq!(a.sqlite_path().unwrap(), std::path::Path::new("/var/app.sqlite"));
        let r = DatabaseUrl::parse("sqlite://rel/app.sqlite").unwrap();
        assert_eq!(r.sqlite_path().unwrap(), std::path::Path::new("rel/app.sqlite"));
        let r = DatabaseUrl::parse("sqlite:app.sqlite").unwrap();
        assert_eq!(r.database(), "app.sqlite");
        assert!(DatabaseUrl::parse("sqlite:").is_err());
        assert!(DatabaseUrl::parse("oracle://x/y").is_err());
    }
}
