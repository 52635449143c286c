//! The store conformance suite against every backend.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use backup_core::Target;
use dbbackup_tests::store_suite;

store_suite!(memory, async {
    Some(Target::open(&format!("memory://{}", dbbackup_tests::unique("mem"))).unwrap())
});
store_suite!(local_dir, async {
    let dir = tempfile::Builder::new().prefix("dbbackup-store-suite-").tempdir().unwrap().keep();
    Some(Target::open(dir.to_str().unwrap()).unwrap())
});
