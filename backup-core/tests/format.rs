//! The on-store format is a contract: a manifest written by format version 1 must keep parsing,
//! and serializing it again must give the same bytes (field names and order are part of it).

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
