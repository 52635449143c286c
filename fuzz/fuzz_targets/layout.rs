//! Arbitrary table names and keys into the layout module: generated keys are always valid, and
//! validation never accepts a key that escapes its backup.
#![no_main]

use backup_core::Compression;
use backup_core::{data_key, table_key, validate_relative_key};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let (schema, name) = text.split_once('\u{1}').map(|(a, b)| (Some(a), b)).unwrap_or((None, &text));
    let key = data_key(&table_key(data.len(), schema, name), data.first().copied().unwrap_or(0).into(), "tsv", Compression::Zstd(3));
    assert!(validate_relative_key(&key).is_ok(), "{key:?}");
    if validate_relative_key(&text).is_ok() {
        assert!(!text.starts_with('/'));
        assert!(!text.split('/').any(|s| s == ".." || s == "." || s.is_empty()));
        assert!(text.bytes().all(|b| b.is_ascii_graphic()));
    }
});
