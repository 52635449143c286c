//! The MySQL/MariaDB script splitter (foreign mysqldump/mariadb-dump restores and dbbackup's own
//! schema scripts): any bytes, in any chunking, must split without panicking, identically
//! whatever the chunking, and the statement helpers must accept every statement.
#![no_main]

use backup_core::mysql_script::{ScriptSplitter, classify, head, split_all, strip_definer};
use libfuzzer_sys::fuzz_target;

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
    for st in pieces {
        let _ = classify(&st);
        let _ = head(&st, 8);
        let _ = strip_definer(&st);
    }
});
