//! The PostgreSQL binary COPY encoder of the restore: any line, for any column types, must
//! encode or be refused without panicking; an encoded row is well formed (its field count, each
//! field's length, nothing after the last field), and a refused line leaves the output as it was.
#![no_main]

use backup_core::pg_binary::{Kind, RowEncoder};
use libfuzzer_sys::fuzz_target;

const KINDS: [Kind; 15] = [
    Kind::Bool,
    Kind::Bytea,
    Kind::Int8,
    Kind::Int2,
    Kind::Int4,
    Kind::Text,
    Kind::Json,
    Kind::Float4,
    Kind::Float8,
    Kind::Date,
    Kind::Timestamp,
    Kind::Timestamptz,
    Kind::Numeric,
    Kind::Uuid,
    Kind::Jsonb,
];

fuzz_target!(|data: &[u8]| {
    // First byte: the number of columns (1-4); then one byte per column's kind; then the line.
    let Some((&n, rest)) = data.split_first() else { return };
    let n = 1 + usize::from(n % 4);
    if rest.len() < n {
        return;
    }
    let (kinds, line) = rest.split_at(n);
    let kinds: Vec<Kind> = kinds.iter().map(|k| KINDS[usize::from(*k) % KINDS.len()]).collect();
    let mut enc = RowEncoder::new(kinds).expect("1-4 columns");
    let mut out = b"prefix".to_vec();
    match enc.encode_line(line, &mut out) {
        Err(_) => assert_eq!(out, b"prefix"),
        Ok(()) => {
            let row = &out[6..];
            assert_eq!(i16::from_be_bytes([row[0], row[1]]) as usize, n);
            let mut p = 2;
            for _ in 0..n {
                let len = i32::from_be_bytes(row[p..p + 4].try_into().unwrap());
                assert!(len >= -1);
                p += 4 + len.max(0) as usize;
                assert!(p <= row.len());
            }
            assert_eq!(p, row.len());
        }
    }
});
