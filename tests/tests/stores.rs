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
store_suite!(s3_moto, async {
    let endpoint = dbbackup_tests::service_env("DBBACKUP_TEST_S3_ENDPOINT")?;
    let bucket = dbbackup_tests::service_env("DBBACKUP_TEST_S3_BUCKET")?;
    let cfg = dbbackup_tests::s3_config(&endpoint);
    Some(Target::open_with(&format!("s3://{bucket}/{}", dbbackup_tests::unique("s3")), &cfg).unwrap())
});
store_suite!(azure_azurite, async {
    let url = dbbackup_tests::service_env("DBBACKUP_TEST_AZURITE_URL")?;
    let container = dbbackup_tests::service_env("DBBACKUP_TEST_AZ_CONTAINER")?;
    let cfg = dbbackup_tests::azurite_config(&url);
    Some(Target::open_with(&format!("az://{container}/{}", dbbackup_tests::unique("az")), &cfg).unwrap())
});
