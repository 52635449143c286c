//! Arbitrary text into the URL and value parsers (database URLs, repository URLs, sizes,
//! durations, redaction): none may panic, and a parsed database URL never shows a password.
#![no_main]

use backup_core::RepoUrl;
use backup_core::{DatabaseUrl, parse_duration, parse_size, redact_str};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Ok(u) = DatabaseUrl::parse(&text) {
        // What is shown carries no password: parsed again, it has none.
        let shown = u.to_string();
        if let Ok(again) = DatabaseUrl::parse(&shown) {
            assert!(again.password().is_none(), "password shown in {shown:?}");
        }
        let _ = (u.database(), u.user(), u.with_database("x").to_string());
    }
    let _ = RepoUrl::parse(&text);
    let _ = parse_size(&text);
    let _ = parse_duration(&text);
    let _ = redact_str(&text);
});
