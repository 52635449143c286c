//! Hostile bytes into the manifest parser: never a panic; a parsed manifest always re-serializes
//! and re-parses to itself, and every key it holds is safe.
#![no_main]

use backup_core::Manifest;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(m) = Manifest::parse(data, "fuzz") {
        for o in &m.objects {
            assert!(backup_core::validate_relative_key(&o.key).is_ok());
        }
        let again = Manifest::parse(&m.to_json().expect("serialize"), "fuzz").expect("re-parse");
        assert_eq!(again, m);
    }
});
