//! PostgreSQL engine (`tokio-postgres`), one file per role:
//!
//! - [`dump`]: a leader connection opens `REPEATABLE READ` and exports its snapshot
//!   (`pg_export_snapshot()`); `jobs` worker connections and a row-count connection import it
//!   (`SET TRANSACTION SNAPSHOT`), so every chunk, the schema (`pg_dump --schema-only
//!   --snapshot=<id>`, written beside the data) and every table's stats (`count(*)` on the
//!   row-count connection while the workers dump) see one instant. Chunks are `COPY ... TO STDOUT` text, big tables split into ctid page
//!   ranges. Large objects are listed and read inside the same snapshot ([`large_object`], framed by [`lo_frame`]).
//! - [`load`]: the `Loader`, choosing a session: [`shadow`] (a throwaway database renamed in by
//!   [`swap`]) or [`txn`] (one transaction on the live database: in place, `--tables`).
//! - [`conn`] (connections, quoting, pg_dump; the workers' pool is `source::pool`), [`tls`],
//!   [`checksum`] (table stats), [`properties`] (the database's own properties), [`schema`]
//!   (schema scripts), [`session_state`] (the session settings a schema script makes, carried
//!   with each post-data build to the pool connection that runs it, and put back after), [`data`] (COPY chunks into a session), [`script`] (foreign plain dump
//!   scripts), [`column_order`] (inheritance children's column order), [`clone`] (`guard`'s
//!   server-side copy).

mod checksum;
mod clone;
mod column_order;
mod conn;
mod data;
mod dump;
mod large_object;
mod lo_frame;
mod load;
mod properties;
mod schema;
mod script;
mod session_state;
mod shadow;
mod swap;
mod tls;
mod txn;

pub(crate) use self::dump::PgSource;
pub(crate) use self::load::PgLoader;

/// Bulk format of data chunks.
pub(crate) const FORMAT: &str = "pg-copy-text";
/// Manifest property: per-role settings inside the database (`ALTER ROLE r IN DATABASE d SET`),
/// an object of role name to `name=value` strings as in `pg_db_role_setting.setconfig`.
pub(crate) const PROP_ROLE_SETTINGS: &str = "pg.role_settings";
/// Manifest property: the database's privileges other than its owner's, a list of `{role (null
/// for PUBLIC), privilege, grantable}`, or null when never changed (the server's default).
pub(crate) const PROP_ACL: &str = "pg.acl";
/// Manifest property: the database's connection limit (-1: none).
pub(crate) const PROP_CONNECTION_LIMIT: &str = "pg.connection_limit";
