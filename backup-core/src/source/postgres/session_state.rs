//! The session settings of pg_dump's schema scripts (`SET default_tablespace = ...`,
//! `SET client_encoding = ...`, `SELECT pg_catalog.set_config('search_path', '', false)`, ...):
//! which parameter a statement sets ([`sets`]), the settings in force at one point of a script
//! ([`ScriptState`]), a statement run on another connection with exactly those
//! ([`exec_in_state`]: the post-data index and key builds spread over the pool), and the
//! connection's own values put back afterwards ([`Saved`]), so that a script's settings never
//! reach dbbackup's own statements on a connection it uses again (COPY text in UTF-8, the
//! read-back, the session time limits).
//!
//! Put back, not `RESET`: `RESET` returns a parameter to the session's default, which is not
//! what dbbackup's sessions run with (they `SET` the lock and statement timeouts, the text
//! settings of COPY, `synchronous_commit`, TOAST compression after connecting).

use std::sync::Arc;

use tokio_postgres::{Client, SimpleQueryMessage};

use super::conn::{exec, pg_err, quote_literal, shorten};
use crate::error::Result;

/// What a statement does to its session's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Sets {
    /// Sets (or `RESET`s) this one parameter for the session, lower case.
    Param(String),
    /// Changes the session in a way [`ScriptState`] does not follow: `SET ROLE`,
    /// `SET SESSION AUTHORIZATION`, `RESET ALL`, `DISCARD`, `SET LOCAL`, `set_config(..., true)`,
    /// `SET ... FROM CURRENT`, the transaction settings, a `set_config` call in any other form,
    /// transaction control (a `ROLLBACK` undoes the `SET`s before it), `DO` and `CALL` (whose
    /// code may set anything), ... (pg_dump writes none of them into the scripts dbbackup takes).
    Other,
}

/// A configuration parameter's name as a statement may write it unquoted (`a_b`, `ext.opt`).
fn is_param_name(s: &str) -> bool {
    s.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
        && s.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '_' | '.' | '$'))
}

/// A `'...'` literal (standard conforming, `''` for a quote) at the start of `s`: its text and
/// what follows it.
fn literal(s: &str) -> Option<(String, &str)> {
    let mut rest = s.strip_prefix('\'')?;
    let mut text = String::new();
    loop {
        let (part, after) = rest.split_once('\'')?;
        text.push_str(part);
        match after.strip_prefix('\'') {
            Some(a) => {
                text.push('\'');
                rest = a;
            }
            None => return Some((text, after)),
        }
    }
}

/// `select [pg_catalog.]set_config('name', 'value', false)` (lower case, without its `;`),
/// the session-wide form pg_dump writes for search_path: the parameter's name.
fn session_set_config(l: &str) -> Option<String> {
    let rest = l.strip_prefix("select")?.trim_start();
    let rest = rest.strip_prefix("pg_catalog.").unwrap_or(rest);
    let rest = rest.strip_prefix("set_config")?.trim_start().strip_prefix('(')?.trim_start();
    let (name, rest) = literal(rest)?;
    let rest = rest.trim_start().strip_prefix(',')?.trim_start();
    let (_value, rest) = literal(rest)?;
    let rest = rest.trim_start().strip_prefix(',')?.trim_start();
    let rest = rest.strip_prefix("false")?.trim_start().strip_prefix(')')?;
    (rest.trim().is_empty() && is_param_name(&name)).then_some(name)
}

/// Which session setting `stmt` changes, if any (`SET`, `RESET`, `SELECT set_config(...)`:
/// PostgreSQL's `VariableSetStmt` and `VariableResetStmt`, and what else may change settings).
pub(super) fn sets(stmt: &str) -> Option<Sets> {
    let l = stmt.trim().trim_end_matches(';').trim_end().to_ascii_lowercase();
    if l.starts_with("select") && l.contains("set_config") {
        return Some(session_set_config(&l).map_or(Sets::Other, Sets::Param));
    }
    let mut words = l.split_whitespace();
    // A parameter set by name (`generic_set`, `generic_reset`); the names whose setting is not
    // a plain session setting are not followed.
    let param = |w: Option<&str>| match w.map(|w| w.split('=').next().unwrap_or_default()) {
        Some(n)
            if is_param_name(n)
                && !matches!(n, "role" | "session" | "all" | "local" | "session_authorization")
                && !n.starts_with("transaction_isolation")
                && !n.starts_with("transaction_read_only")
                && !n.starts_with("transaction_deferrable")
                && n != "transaction" =>
        {
            Sets::Param(n.to_string())
        }
        _ => Sets::Other,
    };
    let named = |p: &str| Sets::Param(p.to_string());
    match words.next()? {
        "reset" => Some(match words.next() {
            Some("time") if words.next() == Some("zone") => named("timezone"),
            w => param(w),
        }),
        "set" => {
            let mut w = words.next();
            match w {
                Some("local") => return Some(Sets::Other),
                Some("session") => w = words.next(),
                _ => {}
            }
            Some(match w {
                Some("time") if words.next() == Some("zone") => named("timezone"),
                Some("xml") if words.next() == Some("option") => named("xmloption"),
                Some("schema") => named("search_path"),
                Some("names") => named("client_encoding"),
                Some(
                    "time" | "xml" | "transaction" | "constraints" | "characteristics" | "authorization"
                    | "catalog",
                ) => Sets::Other,
                w => match param(w) {
                    // `SET name FROM CURRENT` takes the value the connection has, which is not
                    // the script's on another connection.
                    Sets::Param(_) if words.next() == Some("from") => Sets::Other,
                    p => p,
                },
            })
        }
        "begin" | "start" | "commit" | "end" | "rollback" | "abort" | "savepoint" | "release" | "prepare"
        | "discard" | "do" | "call" => Some(Sets::Other),
        _ => None,
    }
}

/// Whether the server must get the statements after `stmt` in a later message: `stmt` may
/// change `client_encoding` (`SET client_encoding`/`NAMES`, `RESET`, or a change not followed,
/// such as `RESET ALL`), and the server converts a whole query message from the client encoding
/// in force when the message arrives. pg_dump writes its scripts in the source database's
/// encoding after `SET client_encoding = '...'`: a LATIN1 script's text sent in the same
/// message as that `SET` would be read as UTF-8 (`Ã©`, the bytes C3 A9, read as `é`).
pub(super) fn ends_message(stmt: &str) -> bool {
    match sets(stmt) {
        Some(Sets::Param(p)) => p == "client_encoding",
        Some(Sets::Other) => true,
        None => false,
    }
}

/// The settings a script has made at one point: the last statement setting each parameter, in
/// the order of those statements. Replaying them on a connection that has run none of the
/// script gives it the script's settings at that point.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct ScriptState {
    sets: Vec<(String, String)>,
}

impl ScriptState {
    /// Follows one statement of the script (in script order). `false` when the statement changes
    /// the session in a way this does not follow ([`Sets::Other`]): the script must then run in
    /// order on one connection.
    pub(super) fn follow(self: &mut Arc<Self>, stmt: &str) -> bool {
        match sets(stmt) {
            None => true,
            Some(Sets::Param(p)) => {
                // Copied only when a statement before still holds the earlier state.
                let me = Arc::make_mut(self);
                me.sets.retain(|(q, _)| *q != p);
                me.sets.push((p, stmt.to_string()));
                true
            }
            Some(Sets::Other) => false,
        }
    }

    /// The parameters it sets.
    pub(super) fn params(&self) -> Vec<String> {
        self.sets.iter().map(|(p, _)| p.clone()).collect()
    }

    /// Its statements, in order, as one batch.
    fn batch(&self) -> String {
        self.sets.iter().map(|(_, s)| format!("{s}\n")).collect()
    }
}

/// The parameters any of `stmts` sets (each once).
pub(super) fn params_set_by(stmts: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for s in stmts {
        if let Some(Sets::Param(p)) = sets(s)
            && !out.contains(&p)
        {
            out.push(p);
        }
    }
    out
}

/// A connection's values of some parameters, to be put back after a script changed them.
#[derive(Debug, Default)]
pub(super) struct Saved {
    values: Vec<(String, String)>,
}

impl Saved {
    /// Reads `params` on `c` (one round trip). A parameter the server does not know (a script's
    /// `SET` would fail on it) has no value to put back and is left out.
    pub(super) async fn read(c: &Client, params: &[String]) -> Result<Saved> {
        if params.is_empty() {
            return Ok(Saved::default());
        }
        let cols: Vec<String> = params
            .iter()
            .map(|p| format!("pg_catalog.current_setting({}, true)", quote_literal(p)))
            .collect();
        let msgs = c
            .simple_query(&format!("SELECT {}", cols.join(", ")))
            .await
            .map_err(pg_err("read the session's settings"))?;
        let mut values = Vec::new();
        for m in msgs {
            if let SimpleQueryMessage::Row(r) = m {
                for (i, p) in params.iter().enumerate() {
                    if let Some(v) = r.get(i) {
                        values.push((p.clone(), v.to_string()));
                    }
                }
            }
        }
        Ok(Saved { values })
    }

    /// Sets every parameter read back to its value (one round trip).
    pub(super) async fn put_back(&self, c: &Client) -> Result<()> {
        if self.values.is_empty() {
            return Ok(());
        }
        let calls: Vec<String> = self
            .values
            .iter()
            .map(|(p, v)| format!("pg_catalog.set_config({}, {}, false)", quote_literal(p), quote_literal(v)))
            .collect();
        c.batch_execute(&format!("SELECT {}", calls.join(", ")))
            .await
            .map_err(pg_err("put the session's settings back"))
    }
}

/// Runs `stmt` on `c` with `state`'s settings in force (the script's `SET`s, then the statement
/// in a message of its own, so that the server reads it in the script's `client_encoding`: see
/// [`ends_message`]), then puts back the values `c` had for them, also when a statement failed.
pub(super) async fn exec_in_state(c: &Client, state: &ScriptState, stmt: &str) -> Result<()> {
    let params = state.params();
    if params.is_empty() {
        return exec(c, stmt).await;
    }
    let saved = Saved::read(c, &params).await?;
    let ran = match c.batch_execute(&state.batch()).await {
        Ok(()) => c.batch_execute(stmt).await,
        Err(e) => Err(e),
    }
    .map_err(pg_err(format!("execute {} (with the script's settings at that point)", shorten(stmt))));
    let back = saved.put_back(c).await;
    ran?;
    back
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Option<Sets> {
        Some(Sets::Param(s.into()))
    }

    #[test]
    fn names_what_each_statement_sets() {
        let cases: &[(&str, Option<Sets>)] = &[
            ("SET default_tablespace = '';", p("default_tablespace")),
            ("SET default_tablespace = ts_a;", p("default_tablespace")),
            ("SET statement_timeout = 0;", p("statement_timeout")),
            ("set  Client_Encoding TO 'LATIN1'", p("client_encoding")),
            ("SET SESSION lock_timeout = 0;", p("lock_timeout")),
            ("SET xmloption=content;", p("xmloption")),
            ("SET myext.opt = 'x';", p("myext.opt")),
            ("SELECT pg_catalog.set_config('search_path', '', false);", p("search_path")),
            ("SELECT set_config('search_path', 'a, false', false);", p("search_path")),
            ("SET TIME ZONE 'UTC';", p("timezone")),
            ("SET SCHEMA 'app';", p("search_path")),
            ("SET NAMES 'UTF8';", p("client_encoding")),
            ("RESET default_tablespace;", p("default_tablespace")),
            ("SELECT pg_catalog.set_config('search_path', '', true);", Some(Sets::Other)),
            ("SELECT pg_catalog.set_config(current_user, '', false);", Some(Sets::Other)),
            ("SET ROLE app;", Some(Sets::Other)),
            ("SET SESSION AUTHORIZATION app;", Some(Sets::Other)),
            ("SET LOCAL work_mem = '1GB';", Some(Sets::Other)),
            ("SET TRANSACTION ISOLATION LEVEL SERIALIZABLE;", Some(Sets::Other)),
            ("SET CONSTRAINTS ALL DEFERRED;", Some(Sets::Other)),
            ("SET \"Quoted\" = 1;", Some(Sets::Other)),
            ("RESET ALL;", Some(Sets::Other)),
            ("RESET ROLE;", Some(Sets::Other)),
            // PostgreSQL's other spellings of a parameter, by the name the server knows it.
            ("SET XML OPTION DOCUMENT;", p("xmloption")),
            ("SET SESSION XML OPTION content;", p("xmloption")),
            ("SET SESSION TIME ZONE 'Europe/Paris';", p("timezone")),
            ("SET SESSION NAMES 'LATIN1';", p("client_encoding")),
            ("SET SESSION SCHEMA 'app';", p("search_path")),
            ("RESET TIME ZONE;", p("timezone")),
            ("SET search_path TO DEFAULT;", p("search_path")),
            ("SET search_path = \"a,b\", public;", p("search_path")),
            ("SET\n  default_tablespace\n  = ts_a;", p("default_tablespace")),
            ("SET default_tablespace='';", p("default_tablespace")),
            ("SET transaction_timeout = 0;", p("transaction_timeout")),
            ("SELECT pg_catalog.set_config('search_path', 'a, ''b''', false);", p("search_path")),
            ("SELECT  pg_catalog.set_config ( 'search_path' , '' , FALSE ) ;", p("search_path")),
            // Not plain session settings, or not in a form followed.
            ("RESET TRANSACTION ISOLATION LEVEL;", Some(Sets::Other)),
            ("RESET SESSION AUTHORIZATION;", Some(Sets::Other)),
            ("SET session_authorization = 'app';", Some(Sets::Other)),
            ("SET SESSION SESSION AUTHORIZATION DEFAULT;", Some(Sets::Other)),
            ("SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY;", Some(Sets::Other)),
            ("SET transaction_read_only = on;", Some(Sets::Other)),
            ("SET default_tablespace FROM CURRENT;", Some(Sets::Other)),
            ("SET /* c */ default_tablespace = x;", Some(Sets::Other)),
            (
                "SELECT pg_catalog.set_config('search_path', '', false), pg_catalog.set_config('a.b', '1', false);",
                Some(Sets::Other),
            ),
            (
                "SELECT pg_catalog.set_config('search_path', current_setting('search_path'), false);",
                Some(Sets::Other),
            ),
            ("SELECT 1, set_config('work_mem', '1MB', false);", Some(Sets::Other)),
            ("SELECT pg_catalog.set_config('search_path', '', false) /* c */;", Some(Sets::Other)),
            ("BEGIN;", Some(Sets::Other)),
            ("ROLLBACK;", Some(Sets::Other)),
            ("ROLLBACK TO SAVEPOINT s;", Some(Sets::Other)),
            ("DISCARD ALL;", Some(Sets::Other)),
            ("DO $$BEGIN PERFORM set_config('a.b', '1', false); END$$;", Some(Sets::Other)),
            (
                "CREATE FUNCTION f() RETURNS int LANGUAGE sql SET search_path = '' AS $$ SET x = 1; SELECT 1 $$;",
                None,
            ),
            ("COMMENT ON TABLE t IS 'SET default_tablespace = x';", None),
            ("CREATE INDEX i ON t (a);", None),
            ("SELECT pg_catalog.setval('public.s', 3, true);", None),
            ("ALTER TABLE t SET TABLESPACE x;", None),
        ];
        for (stmt, want) in cases {
            assert_eq!(&sets(stmt), want, "{stmt}");
        }
    }

    #[test]
    fn a_possible_client_encoding_change_ends_the_message() {
        for stmt in
            ["SET client_encoding = 'LATIN1';", "SET NAMES 'LATIN1';", "RESET client_encoding;", "RESET ALL;"]
        {
            assert!(ends_message(stmt), "{stmt}");
        }
        for stmt in [
            "SET default_tablespace = '';",
            "CREATE INDEX i ON t (a);",
            "SELECT pg_catalog.set_config('search_path', '', false);",
        ] {
            assert!(!ends_message(stmt), "{stmt}");
        }
    }

    #[test]
    fn state_keeps_the_last_setting_of_each_parameter_in_order() {
        let mut st = Arc::new(ScriptState::default());
        assert!(st.follow("SET statement_timeout = 0;"));
        assert!(st.follow("SET default_tablespace = '';"));
        let before = st.clone();
        assert!(st.follow("CREATE INDEX a ON t (a);"));
        assert!(Arc::ptr_eq(&st, &before), "a statement that sets nothing shares the state");
        assert!(st.follow("SET default_tablespace = ts_b;"));
        assert_eq!(before.params(), ["statement_timeout", "default_tablespace"]);
        assert_eq!(before.batch(), "SET statement_timeout = 0;\nSET default_tablespace = '';\n");
        assert_eq!(st.batch(), "SET statement_timeout = 0;\nSET default_tablespace = ts_b;\n");
        assert!(!st.follow("SET ROLE app;"));
        // pg_dump's header (15 and 17) and what dbbackup adds to post-data are all followed.
        let mut dump = Arc::new(ScriptState::default());
        for stmt in [
            "SET statement_timeout = 0;",
            "SET lock_timeout = 0;",
            "SET idle_in_transaction_session_timeout = 0;",
            "SET transaction_timeout = 0;",
            "SET client_encoding = 'LATIN1';",
            "SET standard_conforming_strings = on;",
            "SELECT pg_catalog.set_config('search_path', '', false);",
            "SET check_function_bodies = false;",
            "SET xmloption = content;",
            "SET client_min_messages = warning;",
            "SET row_security = off;",
            "SET default_tablespace = '';",
            "SET default_table_access_method = heap;",
            "REFRESH MATERIALIZED VIEW public.mv;",
            "SELECT pg_catalog.setval('\"public\".\"s\"', 3, true);",
        ] {
            assert!(dump.follow(stmt), "{stmt}");
        }
        assert_eq!(dump.params().len(), 13);
        // A ROLLBACK would undo the SET inside the transaction: not followed.
        let mut tx = Arc::new(ScriptState::default());
        assert!(!tx.follow("BEGIN;"));
        let stmts = ["SET a = 1;", "CREATE INDEX i ON t (a);", "SET b = 2;", "SET a = 3;", "SET ROLE x;"]
            .map(String::from);
        assert_eq!(params_set_by(&stmts), ["a", "b"]);
    }
}
