//! MySQL/MariaDB engine: consistent parallel dumps through `mysql_async`, rows encoded for
//! `LOAD DATA LOCAL INFILE`, restore into a shadow database swapped in with one atomic
//! multi-table `RENAME TABLE`. One file per role (the PostgreSQL engine uses the same names
//! where the roles are the same):
//!
//! | role | file |
//! |---|---|
//! | connection: server settings, TLS, session settings, statements, quoting | [`conn`], [`tls`] |
//! | snapshot: FTWRL or one worker, consistent-snapshot workers, binlog position | [`snapshot`] |
//! | stats: the snapshot's `COUNT(*)` and `CHECKSUM TABLE` statements, queued in the dump's table order | [`stats`] |
//! | tables: column kinds, table properties in the manifest, the table listing | [`table`] |
//! | schema scripts: pre-data, post-data, views ordered, routines/triggers/events | [`schema`] |
//! | dump: primary-key range chunks, the TSV rows of one chunk | [`dump`] |
//! | checksum: the content checksum on both sides, `CHECKSUM TABLE` | [`checksum`] |
//! | load: the restore's entry (checks, mode chosen) | [`load`] |
//! | session: what both restore modes share; the modes [`shadow`] and [`in_place`] | [`session`] |
//! | `LOAD DATA` of one chunk, warnings checked | [`infile`] |
//! | scripts: schema scripts and foreign dumps run statement by statement | [`runner`] |
//! | live objects: views, routines, triggers, events read, dropped, recreated | [`object`] |
//! | swap: the per-target lock, the journal, the swap and the recovery of killed restores | [`swap`] |
//!
//! The SQL script splitter is `source::mysql_script` (public and feature-independent, for the
//! fuzz target), run by the engines' shared script runner `source::script` with the hook in
//! [`runner`]; the connection pool is the engines' shared `source::pool`.
//! docs/mysql.md describes the guarantees and the manual restore path.

mod checksum;
mod conn;
mod dump;
mod in_place;
mod infile;
mod load;
mod object;
mod runner;
mod schema;
mod session;
mod shadow;
mod snapshot;
mod stats;
mod swap;
mod table;
mod tls;

pub(crate) use load::MysqlLoader;
pub(crate) use snapshot::MysqlSource;
