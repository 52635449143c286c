//! The committed `php/include/dbbackup.h` (inside the PHP package, which loads it with
//! `FFI::cdef`) must be exactly what cbindgen generates from the sources.
//! Regenerate with `DBB_BLESS=1 cargo test -p backup-ffi --test header`.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::path::Path;

#[test]
fn committed_header_matches_cbindgen() {
    let crate_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let config = cbindgen::Config::from_file(crate_dir.join("cbindgen.toml")).unwrap();
    let mut generated = Vec::new();
    cbindgen::Builder::new()
        .with_crate(crate_dir)
        .with_config(config)
        .generate()
        .expect("cbindgen generates the header")
        .write(&mut generated);
    let generated = String::from_utf8(generated).unwrap();
    let path = crate_dir.join("php/include/dbbackup.h");
    if std::env::var_os("DBB_BLESS").is_some() {
        std::fs::write(&path, &generated).unwrap();
        return;
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "php/include/dbbackup.h is stale: run `DBB_BLESS=1 cargo test -p backup-ffi --test header` and commit it"
    );
}
