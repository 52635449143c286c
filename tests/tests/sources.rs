//! The source conformance suite against every engine.

use dbbackup_tests::source_suite;
use dbbackup_tests::sqlite_fixture::SqliteFixture;

source_suite!(sqlite, Some(SqliteFixture));
