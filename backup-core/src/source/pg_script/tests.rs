//! The reader cut for cut on pg_dump-like scripts, in every chunking.

use super::*;

/// Reads a script fed in pieces of `step` bytes; consecutive COPY data is merged.
fn read(script: &[u8], step: usize) -> Vec<Piece> {
    let mut r = ScriptReader::new();
    let mut out: Vec<Piece> = Vec::new();
    let drain = |r: &mut ScriptReader, out: &mut Vec<Piece>| {
        while let Some(p) = r.next_piece().unwrap() {
            match (out.last_mut(), p) {
                (Some(Piece::CopyData(a)), Piece::CopyData(b)) => {
                    let mut v = a.to_vec();
                    v.extend_from_slice(&b);
                    *a = Bytes::from(v);
                }
                (_, p) => out.push(p),
            }
        }
    };
    for c in script.chunks(step.max(1)) {
        r.push(c);
        drain(&mut r, &mut out);
    }
    r.finish();
    drain(&mut r, &mut out);
    assert!(r.is_clean(), "not clean at end");
    out
}

const SCRIPT: &str = "--\n-- PostgreSQL database dump\n--\n\\restrict abc\nSET statement_timeout = 0;\n\
    SELECT pg_catalog.set_config('search_path', '', false);\n\
    CREATE FUNCTION f() RETURNS text LANGUAGE plpgsql AS $_$ BEGIN RETURN 'a;b' || $x$;$x$; END $_$;\n\
    /* block /* nested ; */ still */ CREATE TABLE \"we;ird\"\"\" (a text DEFAULT E'it\\'s;', b text DEFAULT 'x'';y');\n\
    COPY public.t (a, b) FROM stdin;\n1\t\\\\.\n\\N\tx;y\n2\t$$\n\\.\n\
    INSERT INTO a$b VALUES ($1);\n-- trailing comment ; here\nSELECT 1\n";

#[test]
fn splits_a_pg_dump_script_identically_in_any_chunking() {
    let whole = read(SCRIPT.as_bytes(), usize::MAX);
    assert_eq!(
        whole,
        vec![
            Piece::Meta("\\restrict abc".into()),
            Piece::Statement("SET statement_timeout = 0;".into()),
            Piece::Statement("SELECT pg_catalog.set_config('search_path', '', false);".into()),
            Piece::Statement(
                "CREATE FUNCTION f() RETURNS text LANGUAGE plpgsql AS $_$ BEGIN RETURN 'a;b' || $x$;$x$; END $_$;"
                    .into()
            ),
            Piece::Statement(
                "CREATE TABLE \"we;ird\"\"\" (a text DEFAULT E'it\\'s;', b text DEFAULT 'x'';y');".into()
            ),
            Piece::CopyStart("COPY public.t (a, b) FROM stdin;".into()),
            Piece::CopyData(Bytes::from_static(b"1\t\\\\.\n\\N\tx;y\n2\t$$\n")),
            Piece::CopyEnd,
            Piece::Statement("INSERT INTO a$b VALUES ($1);".into()),
            Piece::Statement("SELECT 1\n".into()),
        ]
    );
    for step in 1..40 {
        assert_eq!(read(SCRIPT.as_bytes(), step), whole, "step {step}");
    }
}

/// Found by the `pg_script` fuzz target: `\.` followed by other bytes used to end the COPY
/// at a point that depended on the chunking.
#[test]
fn end_marker_with_trailing_bytes_stays_data_in_any_chunking() {
    let script = b"SET a = 1;\nCOPY t (a) FROM stdin;\n2\n\\.\x01\x00\x00fEAT FUNCTI;\n2\n\\.\n";
    let whole = read(script, usize::MAX);
    assert_eq!(
        whole,
        vec![
            Piece::Statement("SET a = 1;".into()),
            Piece::CopyStart("COPY t (a) FROM stdin;".into()),
            Piece::CopyData(Bytes::from_static(b"2\n\\.\x01\x00\x00fEAT FUNCTI;\n2\n")),
            Piece::CopyEnd,
        ]
    );
    for step in 1..20 {
        assert_eq!(read(script, step), whole, "step {step}");
    }
}

/// SQL-standard bodies (PostgreSQL 14+) as pg_dump writes them: the `;` inside `BEGIN
/// ATOMIC ... END` (and inside a CASE there) does not end the statement, as in psql.
#[test]
fn begin_atomic_bodies_are_one_statement_in_any_chunking() {
    let f = "CREATE FUNCTION public.add1(a integer) RETURNS integer\n    LANGUAGE sql IMMUTABLE\n    BEGIN ATOMIC\n                  SELECT CASE WHEN (a > 0) THEN (a + 1) ELSE 0 END AS \"case\";\n END;";
    let p = "CREATE OR REPLACE PROCEDURE public.ins(IN x integer)\n    LANGUAGE sql\n    BEGIN ATOMIC\n                  INSERT INTO public.t (a) VALUES (ins.x);\n INSERT INTO public.t (a) VALUES ((ins.x + 1));\nEND;";
    let script = format!(
        "{f}\nBEGIN;\n{p}\nCREATE TABLE begin_end (\"end\" int, b text DEFAULT 'begin');\nCOMMIT;\n\
         CREATE FUNCTION g() RETURNS int LANGUAGE sql RETURN 1;\nSELECT (1; 2);\nEND;\n"
    );
    let whole = read(script.as_bytes(), usize::MAX);
    assert_eq!(
        whole,
        vec![
            Piece::Statement(f.into()),
            Piece::Statement("BEGIN;".into()),
            Piece::Statement(p.into()),
            Piece::Statement("CREATE TABLE begin_end (\"end\" int, b text DEFAULT 'begin');".into()),
            Piece::Statement("COMMIT;".into()),
            Piece::Statement("CREATE FUNCTION g() RETURNS int LANGUAGE sql RETURN 1;".into()),
            Piece::Statement("SELECT (1; 2);".into()),
            Piece::Statement("END;".into()),
        ]
    );
    for step in 1..60 {
        assert_eq!(read(script.as_bytes(), step), whole, "step {step}");
    }
}

#[test]
fn truncated_scripts_are_not_clean() {
    for cut in ["COPY t FROM stdin;\n1\n", "SELECT 'abc", "SELECT $$ body", "/* open"] {
        let mut r = ScriptReader::new();
        r.push(cut.as_bytes());
        r.finish();
        while r.next_piece().unwrap().is_some() {}
        assert!(!r.is_clean(), "{cut:?} should be unclean");
    }
}
