//! The SQLite script splitter (sqlite3 `.dump` restores): any bytes, in any chunking, must split
//! without panicking and identically whatever the chunking; and where the input has no NUL byte
//! its cuts must be exactly where SQLite's own `sqlite3_complete()` says a statement ends
//! (differential check against the bundled SQLite).
#![no_main]

use std::ffi::CString;

use backup_core::sqlite_script::{ScriptSplitter, first_words, split_all};
use libfuzzer_sys::fuzz_target;

fn complete(s: &[u8]) -> bool {
    let Ok(c) = CString::new(s) else { return false };
    // SAFETY: `c` is a valid NUL-terminated string that outlives the call; sqlite3_complete
    // only reads it.
    unsafe { rusqlite::ffi::sqlite3_complete(c.as_ptr()) == 1 }
}

/// SQLite's own cuts: the shortest prefix ending in `;` that sqlite3_complete() accepts, again and
/// again. Returns the pieces and the incomplete tail.
fn reference(data: &[u8]) -> (Vec<&[u8]>, &[u8]) {
    let mut pieces = Vec::new();
    let mut start = 0;
    for (i, &b) in data.iter().enumerate() {
        if b == b';' && complete(&data[start..=i]) {
            pieces.push(&data[start..=i]);
            start = i + 1;
        }
    }
    (pieces, &data[start..])
}

fuzz_target!(|data: &[u8]| {
    let Some((&step, data)) = data.split_first() else { return };
    let whole = split_all(data);
    let mut s = ScriptSplitter::new(1 << 20);
    let mut pieces = Vec::new();
    let mut failed = false;
    for c in data.chunks(usize::from(step).max(1)) {
        match s.push(c) {
            Ok(v) => pieces.extend(v),
            Err(_) => {
                failed = true;
                break;
            }
        }
    }
    if !failed {
        match s.finish() {
            Ok(v) => pieces.extend(v),
            Err(_) => failed = true,
        }
    }
    if let (Ok(w), false) = (&whole, failed) {
        assert_eq!(w, &pieces, "chunking changed the statements");
    }
    for st in &pieces {
        let _ = first_words(st, 4);
    }
    if data.contains(&0) {
        return;
    }
    // Each of SQLite's statements is at most one of ours (none when it is blank: `;` alone or
    // after comments), and ours are exactly those, in order.
    let (refs, tail) = reference(data);
    let mut expected = Vec::new();
    for r in refs {
        let mine = split_all(r).expect("a statement sqlite3_complete() accepts must split");
        assert!(mine.len() <= 1, "cut inside one SQLite statement: {:?}", String::from_utf8_lossy(r));
        if let Some(m) = mine.first() {
            assert!(complete(m), "a statement SQLite does not call complete: {:?}", String::from_utf8_lossy(m));
            assert!(r.ends_with(m), "statement is not the end of SQLite's piece");
        }
        expected.extend(mine);
    }
    let mut s = ScriptSplitter::default();
    let mut got = s.push(data).expect("no statement limit");
    assert_eq!(&got[..], &expected[..], "cuts differ from sqlite3_complete()");
    // The tail holds no complete statement: finish gives nothing or the "cut short" error.
    got = s.finish().unwrap_or_default();
    assert!(got.is_empty(), "a statement SQLite does not see in {:?}", String::from_utf8_lossy(tail));
});
