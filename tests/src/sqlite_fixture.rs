//! SQLite fixture for the source suite: awkward content in a file under a per-process temp dir.

use std::path::PathBuf;
use std::sync::OnceLock;

use rusqlite::Connection;

use crate::source_suite::Fixture;

/// Files live in one temp dir kept for the test process.
pub struct SqliteFixture;

fn root() -> &'static PathBuf {
    static ROOT: OnceLock<PathBuf> = OnceLock::new();
    ROOT.get_or_init(|| {
        tempfile::Builder::new().prefix("dbbackup-sqlite-suite-").tempdir().expect("temp dir").keep()
    })
}

/// Path of a SQLite URL.
pub fn path_of(url: &str) -> PathBuf {
    backup_core::DatabaseUrl::parse(url).expect("url").sqlite_path().expect("sqlite").to_path_buf()
}

/// Creates the awkward-content schema and rows in an open connection.
pub fn populate_conn(c: &Connection) {
    c.execute_batch(
        r#"
        pragma journal_mode = wal;
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

/// Schema text plus every row of every table, in key order.
pub fn fingerprint_conn(c: &Connection) -> String {
    let mut out = String::new();
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
