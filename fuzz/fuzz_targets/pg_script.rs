//! The plain PostgreSQL script reader (foreign pg_dump restores): any bytes, in any chunking,
//! must split without panicking, with bounded memory, and identically whatever the chunking.
#![no_main]

use backup_core::pg_script::{Piece, ScriptReader};
use libfuzzer_sys::fuzz_target;

fn read(data: &[u8], step: usize) -> Option<Vec<Piece>> {
    let mut r = ScriptReader::new();
    let mut out: Vec<Piece> = Vec::new();
    let drain = |r: &mut ScriptReader, out: &mut Vec<Piece>| -> Option<()> {
        while let Some(p) = r.next_piece().ok()? {
            match (out.last_mut(), p) {
                (Some(Piece::CopyData(a)), Piece::CopyData(b)) => {
                    let mut v = a.to_vec();
                    v.extend_from_slice(&b);
                    *a = bytes::Bytes::from(v);
                }
                (_, p) => out.push(p),
            }
        }
        Some(())
    };
    for c in data.chunks(step.max(1)) {
        r.push(c);
        drain(&mut r, &mut out)?;
    }
    r.finish();
    drain(&mut r, &mut out)?;
    let _ = r.is_clean();
    Some(out)
}

fuzz_target!(|data: &[u8]| {
    let Some((&step, script)) = data.split_first() else { return };
    let whole = read(script, usize::MAX);
    let chunked = read(script, usize::from(step % 17) + 1);
    assert_eq!(whole, chunked, "chunking changed the pieces");
});
