//! SQLite fixture for the source suite: awkward content in a file under a per-process temp dir.

use std::path::PathBuf;
use std::sync::OnceLock;

use rusqlite::Connection;

use crate::source_suite::Fixture;

/// Files live in one temp dir kept for the test process (a static is never dropped, so the dir
/// outlives it); each process first removes the dirs of test processes that are gone.
pub struct SqliteFixture;

const ROOT_PREFIX: &str = "dbbackup-sqlite-suite-";

fn root() -> &'static PathBuf {
    static ROOT: OnceLock<PathBuf> = OnceLock::new();
    ROOT.get_or_init(|| {
        let tmp = std::env::temp_dir();
        sweep_dead_roots(&tmp);
        tempfile::Builder::new()
            .prefix(&format!("{ROOT_PREFIX}{}-", std::process::id()))
            .tempdir_in(&tmp)
            .expect("temp dir")
            .keep()
    })
}

/// Removes `dbbackup-sqlite-suite-PID-*` dirs whose process no longer runs, and dirs of the older
/// naming (no PID) untouched for an hour.
fn sweep_dead_roots(tmp: &std::path::Path) {
    let Ok(entries) = std::fs::read_dir(tmp) else { return };
    for e in entries.flatten() {
        let name = e.file_name();
        let Some(rest) = name.to_str().and_then(|n| n.strip_prefix(ROOT_PREFIX)) else { continue };
        let dead = match rest.split_once('-').and_then(|(pid, _)| pid.parse::<u32>().ok()) {
            Some(pid) => !std::path::Path::new(&format!("/proc/{pid}")).exists(),
            None => e
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok())
                .is_some_and(|age| age > std::time::Duration::from_secs(3600)),
        };
        if dead {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

/// Path of a SQLite URL.
pub fn path_of(url: &str) -> PathBuf {
    backup_core::DatabaseUrl::parse(url).expect("url").sqlite_path().expect("sqlite").to_path_buf()
}

/// Creates the awkward-content schema and rows in an open connection.
pub fn populate_conn(c: &Connection) {
    c.execute_batch(
        r#"
        pragma page_size = 8192;
        pragma auto_vacuum = incremental;
        pragma journal_mode = wal;
        pragma user_version = 20261202;
        pragma application_id = 1145258561;
        create table strict_t (id integer primary key, n int not null check (n >= 0), r real, t text collate nocase,
          b blob, twice int generated always as (n * 2) virtual, tag text generated always as ('#' || t) stored,
          a any) strict;
        create table parent (id integer primary key, code text unique not null);
        create table child (id integer primary key, parent_id integer references parent(id) on delete cascade
          deferrable initially deferred, note text default ('n/a'));
        create index child_partial on child(note) where note is not null;
        create index child_expr on child(lower(note), parent_id desc);
        create unique index parent_code_nocase on parent(code collate nocase);
        insert into parent values (1, 'A'), (2, 'b');
        insert into child values (1, 1, 'x'), (2, 2, null);
        insert into strict_t (id, n, r, t, b, a) values (1, 3, 1.5, 'Mixed', x'01', 'any');
        create table "odd ""name"" tábla" (id integer primary key, v text);
        create table blobs (id integer primary key, b blob);
        create table nulls (id integer primary key, t text, note text);
        create table kv (k text primary key, v any) without rowid;
        create table filler (id integer primary key, payload blob, n real);
        create index filler_n on filler(n);
        create table audit (id integer primary key autoincrement, what text);
        create trigger kv_audit after insert on kv begin insert into audit(what) values ('kv ' || new.k); end;
        create view v_kv as select k, typeof(v) as t from kv;
        create view v_v as select count(*) as n from v_kv;
        insert into "odd ""name"" tábla" (v) values ('emoji 😀🐘 and 𝄞'), ('tab	newline
 quote'' dq"'), ('');
        insert into nulls (t, note) values (null, 'null'), ('', 'empty'), ('NULL', 'text NULL'), ('\N', 'backslash N');
        insert into kv values ('int', 9223372036854775807), ('neg', -9223372036854775808), ('real', 1.5e308),
          ('tiny', 4.9e-324), ('text', 'x'), ('blob', x'00ff00'), ('null', null);
        "#,
    )
    .expect("fixture schema");
    let all: Vec<u8> = (0..=255u8).collect();
    c.execute(
        "insert into blobs (b) values (?1), (?2), (x'')",
        rusqlite::params![all, all.iter().rev().copied().collect::<Vec<u8>>()],
    )
    .expect("blobs");
    for i in 0..40 {
        c.execute_batch(&format!("create table t{i:02} (id integer primary key, v text); insert into t{i:02} (v) values ('row of t{i:02}');"))
            .expect("many tables");
    }
    let tx = c.unchecked_transaction().expect("tx");
    {
        let mut st = tx.prepare("insert into filler (payload, n) values (?1, ?2)").expect("prep");
        for i in 0..3000u32 {
            let payload: Vec<u8> =
                (0..1000u32).map(|j| (i.wrapping_mul(31).wrapping_add(j * 7) % 251) as u8).collect();
            st.execute(rusqlite::params![payload, f64::from(i) / 3.0]).expect("filler");
        }
    }
    tx.commit().expect("commit");
}

/// Settings kept in the file itself (header fields and persistent modes), as `pragma name = value`.
/// Not `schema_version`: the online backup API writes its own schema cookie into the copy (a
/// counter SQLite uses to invalidate prepared statements, not a setting).
pub const FILE_PRAGMAS: [&str; 6] =
    ["page_size", "auto_vacuum", "journal_mode", "user_version", "application_id", "encoding"];

/// The whole catalog of a SQLite database (issue 12): every `sqlite_schema` row (type, name,
/// table, SQL), what SQLite derives from it per table (`table_xinfo`: declared type, NOT NULL,
/// default, primary-key position, hidden/generated; `index_xlist`: unique, origin, partial;
/// `foreign_key_list`), and the [`FILE_PRAGMAS`]; sorted lines.
pub fn catalog_conn(c: &Connection) -> String {
    let mut lines = Vec::new();
    for p in FILE_PRAGMAS {
        let v: String = c
            .query_row(&format!("select cast({p} as text) from pragma_{p}"), [], |r| r.get(0))
            .expect("pragma");
        lines.push(format!("pragma {p} = {v}"));
    }
    let mut st =
        c.prepare("select type, name, tbl_name, coalesce(sql, '') from sqlite_schema").expect("schema");
    let objs: Vec<(String, String, String, String)> = st
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
        .expect("q")
        .collect::<Result<_, _>>()
        .expect("rows");
    let derived = |lines: &mut Vec<String>, q: &str, name: &str, what: &str| {
        let mut st = c.prepare(q).expect("derived");
        let n = st.column_count();
        let mut rows = st.query([name]).expect("derived");
        while let Some(r) = rows.next().expect("row") {
            let vals: Vec<String> = (0..n).map(|i| format!("{:?}", r.get_ref(i).expect("v"))).collect();
            lines.push(format!("{what} {name:?}: {}", vals.join(" ")));
        }
    };
    for (ty, name, tbl, sql) in &objs {
        lines.push(format!("{ty} {name:?} on {tbl:?}: {sql}"));
        if ty == "table" {
            derived(
                &mut lines,
                "select cid, name, type, \"notnull\", dflt_value, pk, hidden from pragma_table_xinfo(?1)",
                name,
                "column",
            );
            derived(
                &mut lines,
                "select name, \"unique\", origin, partial from pragma_index_list(?1)",
                name,
                "index",
            );
            derived(
                &mut lines,
                "select id, seq, \"table\", \"from\", \"to\", on_update, on_delete, match from pragma_foreign_key_list(?1)",
                name,
                "foreign key",
            );
        }
    }
    lines.sort();
    lines.iter().map(|l| format!("{l}\n")).collect()
}

/// Asserts two catalogs are equal, showing the lines only in one of them.
pub fn assert_same_catalog(restored: &str, source: &str, what: &str) {
    if restored == source {
        return;
    }
    let r: std::collections::BTreeSet<&str> = restored.lines().collect();
    let s: std::collections::BTreeSet<&str> = source.lines().collect();
    let mut diff = String::new();
    for l in s.difference(&r) {
        diff.push_str(&format!("- {l}\n"));
    }
    for l in r.difference(&s) {
        diff.push_str(&format!("+ {l}\n"));
    }
    panic!("{what}: the catalogs differ (- source only, + restored only):\n{diff}");
}

/// The catalog ([`catalog_conn`]), then every row of every table, in key order.
pub fn fingerprint_conn(c: &Connection) -> String {
    let mut out = catalog_conn(c);
    let mut st = c
        .prepare("select type, name, coalesce(sql, '') from sqlite_schema order by type, name")
        .expect("schema");
    let objs: Vec<(String, String, String)> = st
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .expect("q")
        .collect::<Result<_, _>>()
        .expect("rows");
    for (ty, name, sql) in &objs {
        out.push_str(&format!("{ty} {name}: {sql}\n"));
    }
    for (ty, name, _) in &objs {
        if ty != "table" {
            continue;
        }
        let q = format!("select * from \"{}\" not indexed", name.replace('"', "\"\""));
        let mut st = c.prepare(&q).expect("scan");
        let n = st.column_count();
        let mut rows = st.query([]).expect("scan");
        while let Some(r) = rows.next().expect("row") {
            let vals: Vec<String> = (0..n).map(|i| format!("{:?}", r.get_ref(i).expect("v"))).collect();
            out.push_str(&format!("{name}|{}\n", vals.join("|")));
        }
    }
    out
}

#[async_trait::async_trait]
impl Fixture for SqliteFixture {
    async fn create_db(&self, name: &str) -> String {
        format!("sqlite://{}", root().join(format!("{name}.sqlite")).display())
    }

    async fn populate(&self, url: &str) {
        let c = Connection::open(path_of(url)).expect("open");
        populate_conn(&c);
    }

    async fn mutate(&self, url: &str) {
        let c = Connection::open(path_of(url)).expect("open");
        c.execute_batch("delete from blobs; alter table kv rename to kv_old; create table migrated (x); insert into filler (payload) values (x'01');")
            .expect("mutate");
    }

    async fn fingerprint(&self, url: &str) -> String {
        let p = path_of(url);
        if !p.exists() {
            return String::from("<no file>");
        }
        fingerprint_conn(&Connection::open(p).expect("open"))
    }

    async fn drop_db(&self, url: &str) {
        let p = path_of(url);
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", p.display()));
        }
    }
}
