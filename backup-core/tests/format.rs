//! The on-store format is a contract: a manifest written by format version 1 must keep parsing,
//! and serializing it again must give the same bytes (field names and order are part of it); a
//! version 2 (encrypted) manifest must keep opening with its key.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use backup_core::Manifest;

const V1: &str = include_str!("fixtures/manifest-v1.json");

#[test]
fn version_1_fixture_still_parses_and_round_trips_byte_for_byte() {
    let m = Manifest::parse(V1.as_bytes(), "fixture").unwrap();
    assert_eq!(m.format_version, 1);
    assert_eq!(m.engine, backup_core::Engine::Sqlite);
    assert_eq!(m.tables.len(), 5);
    assert!(m.objects.iter().all(|o| o.sha256.len() == 64));
    assert_eq!(String::from_utf8(m.to_json().unwrap()).unwrap(), V1.trim_end());
}

const V2: &str = include_str!("fixtures/manifest-v2.json");
/// A throwaway test identity (age-keygen) that the version-2 fixture was encrypted to.
const V2_KEY: &str = include_str!("fixtures/manifest-v2.key");

#[test]
fn version_2_fixture_parses_without_the_key_and_opens_with_it() {
    use backup_core::Keyring;
    use backup_core::open_sealed;
    let m = Manifest::parse(V2.as_bytes(), "fixture").unwrap();
    assert_eq!(m.format_version, 2);
    assert!(m.is_sealed() && m.tables.is_empty() && m.database.is_empty());
    assert_eq!(m.tags, vec!["fixture".to_string()]);
    assert!(m.objects.iter().all(|o| o.key.ends_with(".age") && o.sha256.len() == 64));
    let keys = Keyring::from_secrets(Some(&backup_core::Secret::new(V2_KEY)), None).unwrap();
    let opened = open_sealed(&m, keys.as_ref()).unwrap();
    assert_eq!(opened.database, "app.sqlite");
    assert_eq!(opened.tables.len(), 1);
    assert_eq!(opened.tables[0].name, "users");
    assert_eq!(opened.rows(), 2);
    assert!(opened.objects.iter().all(|o| o.raw_sha256.len() == 64));
    assert!(open_sealed(&m, None).unwrap_err().to_string().contains("no identity for recipients age1"));
}
