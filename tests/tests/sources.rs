//! The source conformance suite against every engine.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use dbbackup_tests::mysql_fixture::MysqlFixture;
use dbbackup_tests::pg_fixture::PgFixture;
use dbbackup_tests::source_suite;
use dbbackup_tests::sqlite_fixture::SqliteFixture;

source_suite!(sqlite, Some(SqliteFixture));
source_suite!(postgres, PgFixture::from_env());
source_suite!(mysql, MysqlFixture::from_env());
