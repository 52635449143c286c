//! Engine options: what an engine takes beyond the common options of a command, typed per
//! engine ([`MysqlOptions`], [`PostgresOptions`]) with the session time limits both server
//! engines share ([`SessionOptions`]). `CreateOptions`, `RestoreOptions` and `GuardOptions`
//! carry one [`EngineOptions`]; each engine reads its own part (a `keep_owners` given to a MySQL
//! backup does nothing). Options given as text (`no_definer=on`) go through
//! [`EngineOptions::set`]: an unknown name or a value that is not a switch is a usage error
//! naming it, for every engine alike.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The engine options of one command.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EngineOptions {
    /// MySQL/MariaDB switches.
    pub mysql: MysqlOptions,
    /// PostgreSQL switches.
    pub postgres: PostgresOptions,
    /// Session time limits (PostgreSQL, MySQL/MariaDB).
    pub session: SessionOptions,
}

/// MySQL/MariaDB switches.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MysqlOptions {
    /// Drop `DEFINER=` clauses (and, on restore, SUPER-only statements).
    pub no_definer: bool,
    /// Restore: skip SUPER-only statements only (implied by `no_definer`).
    pub strip_super: bool,
    /// Restore: recompute every table's content checksum on the server.
    pub full_checksum: bool,
}

/// PostgreSQL switches.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PostgresOptions {
    /// Record object owners at backup, apply them at restore (default: `--no-owner` behaviour).
    pub keep_owners: bool,
}

/// Session time limits of the server engines, as given (`30s`, `2m`, a number of seconds, `0`
/// for no limit). They are read when the sessions open (`source::limits`), where the URL
/// parameter of the same name wins and a value that is not a duration is a usage error.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SessionOptions {
    /// How long connecting may take (default 30 s).
    pub connect_timeout: Option<String>,
    /// How long one lock request may wait (default 30 s).
    pub lock_timeout: Option<String>,
    /// How long one statement may run (default: no limit).
    pub statement_timeout: Option<String>,
}

impl EngineOptions {
    /// Every option name [`EngineOptions::set`] takes.
    pub const NAMES: [&'static str; 7] = [
        "connect_timeout",
        "full_checksum",
        "keep_owners",
        "lock_timeout",
        "no_definer",
        "statement_timeout",
        "strip_super",
    ];

    /// Options from `(name, value)` pairs, as [`EngineOptions::set`] takes them.
    pub fn from_pairs<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Result<Self> {
        let mut o = EngineOptions::default();
        for (name, value) in pairs {
            o.set(name, value)?;
        }
        Ok(o)
    }

    /// Sets one option given as text. A switch takes `true`/`on`/`yes`/`1` or an empty value
    /// (on) and `false`/`off`/`no`/`0` (off), the same for every engine; a time limit takes its
    /// text as is. An unknown name or a value that is not a switch is a usage error naming it.
    pub fn set(&mut self, name: &str, value: &str) -> Result<()> {
        let switch = || switch(name, value);
        match name {
            "no_definer" => self.mysql.no_definer = switch()?,
            "strip_super" => self.mysql.strip_super = switch()?,
            "full_checksum" => self.mysql.full_checksum = switch()?,
            "keep_owners" => self.postgres.keep_owners = switch()?,
            "connect_timeout" => self.session.connect_timeout = Some(value.to_string()),
            "lock_timeout" => self.session.lock_timeout = Some(value.to_string()),
            "statement_timeout" => self.session.statement_timeout = Some(value.to_string()),
            _ => {
                return Err(Error::InvalidInput(format!(
                    "unknown engine option {name:?} (known: {})",
                    Self::NAMES.join(", ")
                )));
            }
        }
        Ok(())
    }

    /// The options that differ from the defaults, as `(name, value)` in name order: switches
    /// that are on (`"true"`) and time limits that are given.
    pub fn pairs(&self) -> Vec<(&'static str, String)> {
        let on = |b: bool| b.then(|| "true".to_string());
        let mut out: Vec<(&'static str, String)> = [
            ("connect_timeout", self.session.connect_timeout.clone()),
            ("full_checksum", on(self.mysql.full_checksum)),
            ("keep_owners", on(self.postgres.keep_owners)),
            ("lock_timeout", self.session.lock_timeout.clone()),
            ("no_definer", on(self.mysql.no_definer)),
            ("statement_timeout", self.session.statement_timeout.clone()),
            ("strip_super", on(self.mysql.strip_super)),
        ]
        .into_iter()
        .filter_map(|(k, v)| v.map(|v| (k, v)))
        .collect();
        out.sort_by_key(|(k, _)| *k);
        out
    }
}

fn switch(name: &str, value: &str) -> Result<bool> {
    match value.trim().to_ascii_lowercase().as_str() {
        "" | "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" => Ok(false),
        _ => Err(Error::InvalidInput(format!(
            "engine option {name}={value:?} is not a switch (true/false, on/off, yes/no, 1/0)"
        ))),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::error::ErrorKind;

    #[test]
    fn every_engine_reads_switches_alike() {
        // `no_definer=on` was silently ignored by MySQL while `keep_owners=on` worked.
        for on in ["on", "true", "yes", "1", "", "ON"] {
            let o = EngineOptions::from_pairs([("no_definer", on), ("keep_owners", on)]).unwrap();
            assert!(o.mysql.no_definer && o.postgres.keep_owners, "{on:?}");
        }
        for off in ["off", "false", "no", "0"] {
            let o = EngineOptions::from_pairs([("no_definer", off), ("keep_owners", off)]).unwrap();
            assert_eq!(o, EngineOptions::default(), "{off:?}");
        }
        let e = EngineOptions::from_pairs([("no_definer", "maybe")]).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Usage);
        assert!(e.to_string().contains("no_definer=\"maybe\""), "{e}");
    }

    #[test]
    fn a_misspelt_option_is_a_usage_error_naming_it() {
        let e = EngineOptions::from_pairs([("no_definr", "true")]).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Usage);
        assert!(e.to_string().contains("\"no_definr\"") && e.to_string().contains("no_definer"), "{e}");
        let e = serde_json::from_str::<EngineOptions>(r#"{"mysql":{"no_definr":true}}"#).unwrap_err();
        assert!(e.to_string().contains("no_definr"), "{e}");
        let e = serde_json::from_str::<EngineOptions>(r#"{"sqlite":{}}"#).unwrap_err();
        assert!(e.to_string().contains("sqlite"), "{e}");
    }

    #[test]
    fn pairs_list_what_is_set() {
        let o =
            EngineOptions::from_pairs([("lock_timeout", "5s"), ("full_checksum", "1"), ("no_definer", "no")])
                .unwrap();
        assert_eq!(o.pairs(), [("full_checksum", "true".to_string()), ("lock_timeout", "5s".to_string())]);
        assert!(EngineOptions::default().pairs().is_empty());
    }
}
