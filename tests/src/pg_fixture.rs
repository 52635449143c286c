//! PostgreSQL fixture for the source suite: databases on the server in `DBBACKUP_TEST_PG_URL`,
//! filled with the awkward content of issue 3 item 6 (and large objects); fingerprint =
//! normalized `pg_dump --schema-only` + every table's rows in a deterministic order + sequence
//! values + every large object (oid, size, md5, comment) + the whole catalog
//! ([`crate::pg_catalog`]: every object kind, the database's own and per-role settings).

use tokio_postgres::{Client, NoTls};

use crate::source_suite::Fixture;

/// The fixture; `base` is the server URL (any database).
pub struct PgFixture {
    /// Server URL from `DBBACKUP_TEST_PG_URL`.
    pub base: String,
}

impl PgFixture {
    /// From the environment (skips/fails like every service test).
    pub fn from_env() -> Option<Self> {
        crate::service_env("DBBACKUP_TEST_PG_URL").map(|base| PgFixture { base })
    }

    /// The URL of database `name` on the same server.
    pub fn url_of(&self, name: &str) -> String {
        let mut u = url::Url::parse(&self.base).expect("pg url");
        u.set_path(&format!("/{name}"));
        u.to_string()
    }

    /// A connected client for `url`.
    pub async fn client(url: &str) -> Client {
        let (c, conn) = tokio_postgres::connect(url, NoTls).await.expect("connect to postgres");
        tokio::spawn(async move {
            let _ = conn.await;
        });
        c.batch_execute("SET TimeZone = 'UTC'; SET DateStyle = 'ISO, YMD'; SET extra_float_digits = 3")
            .await
            .expect("settings");
        c
    }

    /// The database name of a URL.
    pub fn db_name(url: &str) -> String {
        url::Url::parse(url).expect("url").path().trim_start_matches('/').to_string()
    }
}

/// The awkward-content fixture (issue 3 item 6).
pub const AWKWARD: &str = r#"
CREATE EXTENSION IF NOT EXISTS citext;
CREATE SCHEMA "Sales Dept";
CREATE SCHEMA other;
CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy', 'it''s "complicated"');
CREATE DOMAIN posint AS integer CHECK (VALUE > 0);
CREATE TYPE pair AS (a integer, b text);
CREATE TYPE floatrange AS RANGE (subtype = float8);
CREATE TABLE bytes (id serial PRIMARY KEY, b bytea);
INSERT INTO bytes (b) SELECT string_agg(set_byte('\x00'::bytea, 0, i), ''::bytea ORDER BY i) FROM generate_series(0, 255) i;
INSERT INTO bytes (b) VALUES (NULL), (''::bytea), ('\x5c4e'::bytea);
CREATE TABLE nulls (id int PRIMARY KEY, t text, note text);
INSERT INTO nulls VALUES (1, NULL, 'null'), (2, '', 'empty'), (3, '\N', 'backslash N'), (4, 'NULL', 'text NULL'),
  (5, E'tab\there\nnewline\\backslash\r', 'controls'), (6, 'emoji 😀🐘 𝄞', 'unicode');
CREATE TABLE arrays (id int PRIMARY KEY, a int[], m text[][], n numeric[]);
INSERT INTO arrays VALUES (1, '{1,NULL,3}', '{{a,"b c"},{NULL,"\"q\""}}', '{1.5,NaN}'), (2, '{}', NULL, '{}'), (3, NULL, '{{"",NULL}}', NULL);
CREATE TABLE docs (id int PRIMARY KEY, j json, jb jsonb);
INSERT INTO docs VALUES (1, '{"b": 1,   "a": [1, 2],"a": 3}', '{"b": 1, "a": [1, 2]}'), (2, 'null', 'null'), (3, NULL, '"\u00e9 \\ \""');
CREATE TABLE nums (id int PRIMARY KEY, n numeric, f double precision, r real, i8 bigint);
INSERT INTO nums VALUES (1, 123456789012345678901234567890.123456789012345678901234567890, 'NaN', 'Infinity', 9223372036854775807),
  (2, 'NaN', '-Infinity', '-0', -9223372036854775808), (3, '-0.000000000000000000001', '-0.0', 1.17549435e-38, 0),
  (4, NULL, 4.9e-324, 'NaN', NULL), (5, 0.1, 0.1, 0.1, 1);
CREATE TABLE times (id int PRIMARY KEY, tz timestamptz, ts timestamp, d date, iv interval, t time, ttz timetz);
INSERT INTO times VALUES (1, '2024-03-10 02:30:00 America/New_York', '2024-02-29 23:59:59.999999', '0001-01-01 BC', '1 year 2 mons -3 days 04:05:06.789', '24:00', '12:00+05:30'),
  (2, 'infinity', '-infinity', 'infinity', '-178000000 years', '00:00', '23:59:59-12'),
  (3, '1969-12-31 23:59:59.5+14', 'epoch', '2000-02-29', '0', NULL, NULL);
CREATE TABLE typed (id int PRIMARY KEY, m mood, p posint, c pair, r floatrange, ir int4range, ci citext);
INSERT INTO typed VALUES (1, 'it''s "complicated"', 5, ROW(1, 'x,y'), '[1.5,2.5)', '[1,10)', 'MiXeD'), (2, 'ok', NULL, ROW(NULL, NULL), 'empty', '(,)', NULL);
CREATE TABLE gen (id int GENERATED ALWAYS AS IDENTITY PRIMARY KEY, a int, twice int GENERATED ALWAYS AS (a * 2) STORED);
INSERT INTO gen (a) VALUES (1), (2), (NULL);
CREATE TABLE "Sales Dept"."Order ""Items"" ✓" ("select" int, "MixedCase" text, "with space" text);
INSERT INTO "Sales Dept"."Order ""Items"" ✓" VALUES (1, 'a', 'b'), (2, NULL, 'c');
CREATE TABLE other.nopk (a int, b text);
INSERT INTO other.nopk VALUES (1, 'dup'), (1, 'dup'), (NULL, NULL);
CREATE TABLE other.empty (a int PRIMARY KEY);
CREATE UNLOGGED TABLE other.scratch (k text PRIMARY KEY, v int);
INSERT INTO other.scratch VALUES ('u', 1);
CREATE TABLE measurements (id int, at date NOT NULL, v numeric, PRIMARY KEY (id, at)) PARTITION BY RANGE (at);
CREATE TABLE measurements_2024 PARTITION OF measurements FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');
CREATE TABLE measurements_2025 PARTITION OF measurements FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
INSERT INTO measurements VALUES (1, '2024-05-01', 1.5), (2, '2025-06-01', 2.5);
CREATE TABLE animals (id int PRIMARY KEY, name text);
CREATE TABLE dogs (bark text) INHERITS (animals);
INSERT INTO animals VALUES (1, 'generic');
INSERT INTO dogs VALUES (2, 'rex', 'woof');
CREATE TABLE a_side (id int PRIMARY KEY, b_id int);
CREATE TABLE b_side (id int PRIMARY KEY, a_id int REFERENCES a_side(id));
ALTER TABLE a_side ADD CONSTRAINT a_to_b FOREIGN KEY (b_id) REFERENCES b_side(id) DEFERRABLE INITIALLY DEFERRED;
BEGIN; INSERT INTO a_side VALUES (1, 1); INSERT INTO b_side VALUES (1, 1); COMMIT;
CREATE VIEW v1 AS SELECT id, name FROM animals;
CREATE VIEW v2 AS SELECT count(*) AS n FROM v1;
CREATE MATERIALIZED VIEW mv AS SELECT id, twice FROM gen;
CREATE INDEX mv_id ON mv (id);
CREATE INDEX nulls_t ON nulls (t) WHERE t IS NOT NULL;
CREATE TABLE audit (id bigserial PRIMARY KEY, what text);
CREATE FUNCTION log_it() RETURNS trigger LANGUAGE plpgsql AS $body$
BEGIN
  INSERT INTO audit (what) VALUES ('nulls ' || NEW.id || $q$ it's $$ $q$);
  RETURN NEW;
END $body$;
CREATE TRIGGER nulls_audit AFTER INSERT ON nulls FOR EACH ROW EXECUTE FUNCTION log_it();
CREATE PROCEDURE bump(n int) LANGUAGE sql AS $$ UPDATE gen SET a = a + n $$;
CREATE RULE no_delete AS ON DELETE TO other.empty DO INSTEAD NOTHING;
ALTER TABLE other.nopk ENABLE ROW LEVEL SECURITY;
CREATE POLICY p_all ON other.nopk USING (a IS NULL OR a > 0);
COMMENT ON TABLE nulls IS 'NULL vs empty vs \N';
COMMENT ON COLUMN gen.twice IS 'generated';
CREATE SEQUENCE other.counter START 100;
SELECT nextval('other.counter'), nextval('other.counter');
CREATE TABLE big (id int PRIMARY KEY, payload text);
INSERT INTO big SELECT i, repeat(md5(i::text), 20) FROM generate_series(1, 6000) i;
SELECT lo_from_bytea(70001, '');
SELECT lo_from_bytea(70002, (SELECT string_agg(set_byte('\x00'::bytea, 0, i), ''::bytea ORDER BY i) FROM generate_series(0, 255) i));
SELECT lo_from_bytea(70003, (SELECT decode(string_agg(md5(i::text), ''), 'hex') FROM generate_series(1, 70000) i));
SELECT lo_from_bytea(70004, 'commented');
COMMENT ON LARGE OBJECT 70004 IS 'a large object''s comment \ ✓';
SELECT lo_from_bytea(0, 'oid chosen by the server');
CREATE TABLE attachments (id int PRIMARY KEY, body oid);
INSERT INTO attachments VALUES (1, 70002), (2, 70003);
-- issue 12: a child attached after creation keeps its own column order
CREATE TABLE vehicles (id int, name text);
CREATE TABLE trucks (payload_kg int, name text, id int);
ALTER TABLE trucks INHERIT vehicles;
INSERT INTO trucks VALUES (5000, 'big', 7);
-- issue 12: SQL-standard bodies (PostgreSQL 14+)
CREATE FUNCTION add1(a int) RETURNS int LANGUAGE sql IMMUTABLE
  BEGIN ATOMIC SELECT CASE WHEN a > 0 THEN a + 1 ELSE 0 END; END;
CREATE PROCEDURE log_twice(x text) LANGUAGE sql
  BEGIN ATOMIC INSERT INTO audit (what) VALUES (x); INSERT INTO audit (what) VALUES (x || '!'); END;
COMMENT ON FUNCTION add1(int) IS 'sql-standard body';
"#;

/// The role the fixture grants to and sets per-role settings for (roles are cluster-level: it is
/// created once per server and shared by concurrent tests).
pub const FIXTURE_ROLE: &str = "dbbackup_fixture_reader";

/// Creates [`FIXTURE_ROLE`] if missing (safe when tests race to create it).
pub async fn ensure_fixture_role(c: &Client) {
    c.batch_execute(&format!(
        "DO $$ BEGIN CREATE ROLE {FIXTURE_ROLE} NOLOGIN; \
         EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL; END $$"
    ))
    .await
    .expect("fixture role");
}

/// The wider sweep of issue 12 (pg_dump's `t/002_pg_dump.pl` kinds): extension types, enum
/// values added out of order, domains with several constraints, ranges with a collation, forced
/// row-level security and restrictive policies, grants (table, column, schema), default
/// privileges, an event trigger, statistics objects, per-column options, table options,
/// per-column collations, publications, an aggregate, an operator, casts (one between built-in
/// types), a collation, a text search configuration, a foreign-data wrapper with a server, a user
/// mapping and a foreign table. Needs [`FIXTURE_ROLE`].
pub const SWEEP: &str = r#"
CREATE EXTENSION IF NOT EXISTS hstore;
CREATE TABLE ext_types (id int PRIMARY KEY, h hstore, c citext);
INSERT INTO ext_types VALUES (1, 'a=>1, "b c"=>NULL', 'CamelCase'), (2, '', NULL);
CREATE DOMAIN email AS citext NOT NULL DEFAULT 'x@y' CONSTRAINT has_at CHECK (VALUE LIKE '%@%')
  CONSTRAINT not_long CHECK (length(VALUE) < 200);
CREATE TYPE textrange AS RANGE (subtype = text, collation = "C");
CREATE TABLE sweep (id int PRIMARY KEY, mail email, tr textrange, mr int4multirange, m mood,
  a text COLLATE "C", b text COLLATE "POSIX", payload text);
INSERT INTO sweep VALUES (1, 'a@b', '[a,b)', '{[1,3),[5,7)}', 'meh', 'z', 'Z', repeat('x', 5000));
ALTER TABLE sweep ALTER COLUMN payload SET STATISTICS 321;
ALTER TABLE sweep ALTER COLUMN payload SET (n_distinct = -0.5);
ALTER TABLE sweep ALTER COLUMN payload SET STORAGE EXTERNAL;
ALTER TABLE sweep ALTER COLUMN payload SET COMPRESSION pglz;
ALTER TABLE sweep SET (fillfactor = 70, autovacuum_enabled = false);
ALTER TABLE other.nopk FORCE ROW LEVEL SECURITY;
CREATE POLICY p_ins ON other.nopk AS RESTRICTIVE FOR INSERT TO dbbackup_fixture_reader WITH CHECK (b <> 'x');
COMMENT ON POLICY p_all ON other.nopk IS 'policy comment';
GRANT USAGE ON SCHEMA other TO dbbackup_fixture_reader;
GRANT SELECT ON nulls TO dbbackup_fixture_reader;
GRANT SELECT (id), UPDATE (b) ON bytes TO dbbackup_fixture_reader;
GRANT EXECUTE ON FUNCTION add1(int) TO dbbackup_fixture_reader;
ALTER DEFAULT PRIVILEGES IN SCHEMA other GRANT SELECT ON TABLES TO dbbackup_fixture_reader;
ALTER DEFAULT PRIVILEGES REVOKE EXECUTE ON FUNCTIONS FROM PUBLIC;
CREATE TABLE ddl_log (tag text);
CREATE FUNCTION ddl_seen() RETURNS event_trigger LANGUAGE plpgsql AS $$ BEGIN INSERT INTO public.ddl_log VALUES (tg_tag); END $$;
CREATE EVENT TRIGGER fixture_ddl ON ddl_command_end WHEN TAG IN ('CREATE TABLE', 'REFRESH MATERIALIZED VIEW')
  EXECUTE FUNCTION ddl_seen();
TRUNCATE ddl_log;
CREATE STATISTICS other.nopk_stats (dependencies, ndistinct) ON a, b FROM other.nopk;
ALTER STATISTICS other.nopk_stats SET STATISTICS 500;
CREATE STATISTICS sweep_expr ON (lower(a)), id FROM sweep;
CREATE PUBLICATION fixture_pub FOR TABLE nulls WHERE (id > 0), sweep (id, a);
CREATE PUBLICATION fixture_schema_pub FOR TABLES IN SCHEMA other WITH (publish = 'insert');
CREATE FUNCTION sq_acc(bigint, int) RETURNS bigint LANGUAGE sql IMMUTABLE AS 'SELECT $1 + $2::bigint * $2';
CREATE AGGREGATE sum_sq(int) (SFUNC = sq_acc, STYPE = bigint, INITCOND = '0');
CREATE FUNCTION approx_eq(numeric, numeric) RETURNS bool LANGUAGE sql IMMUTABLE AS 'SELECT abs($1 - $2) < 0.01';
CREATE OPERATOR === (LEFTARG = numeric, RIGHTARG = numeric, FUNCTION = approx_eq, COMMUTATOR = ===);
CREATE CAST (pair AS text) WITH INOUT AS ASSIGNMENT;
CREATE CAST (bytea AS text) WITHOUT FUNCTION;
CREATE COLLATION other.c_copy FROM "C";
CREATE TEXT SEARCH CONFIGURATION other.fixture_ts (COPY = english);
CREATE FOREIGN DATA WRAPPER fixture_fdw;
CREATE SERVER fixture_srv FOREIGN DATA WRAPPER fixture_fdw OPTIONS (host 'nowhere');
CREATE USER MAPPING FOR dbbackup_fixture_reader SERVER fixture_srv OPTIONS (user 'x');
CREATE FOREIGN TABLE other.ft (a int OPTIONS (column_name 'b')) SERVER fixture_srv OPTIONS (table_name 't');
"#;

#[async_trait::async_trait]
impl Fixture for PgFixture {
    async fn create_db(&self, name: &str) -> String {
        let admin = Self::client(&self.base).await;
        admin.batch_execute(&format!("CREATE DATABASE \"{name}\"")).await.expect("create database");
        self.url_of(name)
    }

    async fn populate(&self, url: &str) {
        let c = Self::client(url).await;
        c.batch_execute(AWKWARD).await.expect("awkward fixture");
        ensure_fixture_role(&c).await;
        // Its own transaction: a new enum value cannot be used in the one that added it.
        c.batch_execute("ALTER TYPE mood ADD VALUE 'meh' BEFORE 'ok'").await.expect("enum value");
        c.batch_execute(SWEEP).await.expect("sweep fixture");
        let db = Self::db_name(url);
        c.batch_execute(&format!(
            "COMMENT ON DATABASE \"{db}\" IS 'fixture db ''comment'''; \
             ALTER DATABASE \"{db}\" SET search_path = \"$user\", public, other; \
             ALTER DATABASE \"{db}\" SET work_mem = '8MB'; \
             ALTER ROLE {FIXTURE_ROLE} IN DATABASE \"{db}\" SET work_mem = '3MB'; \
             ALTER ROLE {FIXTURE_ROLE} IN DATABASE \"{db}\" SET search_path = other, \"$user\"; \
             ALTER DATABASE \"{db}\" CONNECTION LIMIT 50; \
             REVOKE TEMPORARY ON DATABASE \"{db}\" FROM PUBLIC; \
             GRANT CONNECT, CREATE ON DATABASE \"{db}\" TO {FIXTURE_ROLE} WITH GRANT OPTION"
        ))
        .await
        .expect("db properties");
    }

    async fn mutate(&self, url: &str) {
        let c = Self::client(url).await;
        c.batch_execute(
            "DELETE FROM nulls; ALTER TABLE docs RENAME TO docs_old; CREATE TABLE migrated (x int); \
             INSERT INTO bytes (b) VALUES ('\\x01'); SELECT setval('other.counter', 5000); \
             SELECT lo_unlink(70001); SELECT lo_put(70003, 1048570, '\\xdeadbeefdeadbeef'); \
             COMMENT ON LARGE OBJECT 70004 IS 'changed'; SELECT lo_from_bytea(0, 'added');",
        )
        .await
        .expect("mutate");
        let db = Self::db_name(url);
        ensure_fixture_role(&c).await;
        c.batch_execute(&format!(
            "ALTER DATABASE \"{db}\" SET statement_timeout = '1min'; \
             ALTER ROLE {FIXTURE_ROLE} IN DATABASE \"{db}\" SET work_mem = '1MB'; \
             ALTER ROLE {FIXTURE_ROLE} IN DATABASE \"{db}\" SET lock_timeout = '5s'; \
             ALTER DATABASE \"{db}\" CONNECTION LIMIT 7; \
             GRANT TEMPORARY ON DATABASE \"{db}\" TO {FIXTURE_ROLE}; \
             ALTER DEFAULT PRIVILEGES GRANT SELECT ON SEQUENCES TO {FIXTURE_ROLE}; \
             CREATE PUBLICATION added_pub FOR TABLE migrated; \
             CREATE CAST (text AS bytea) WITHOUT FUNCTION; \
             CREATE FOREIGN DATA WRAPPER added_fdw; CREATE SERVER added_srv FOREIGN DATA WRAPPER added_fdw"
        ))
        .await
        .expect("mutate settings");
    }

    async fn fingerprint(&self, url: &str) -> String {
        fingerprint(url).await
    }

    async fn drop_db(&self, url: &str) {
        let admin = Self::client(&self.base).await;
        let db = Self::db_name(url);
        let _ = admin.batch_execute(&format!("DROP DATABASE IF EXISTS \"{db}\" WITH (FORCE)")).await;
    }
}

/// Normalized schema dump + every row + sequences + database properties.
pub async fn fingerprint(url: &str) -> String {
    let db = PgFixture::db_name(url);
    let c = PgFixture::client(url).await;
    let mut out = String::new();
    let u = url::Url::parse(url).expect("url");
    let dump = std::process::Command::new("pg_dump")
        .args(["--schema-only", "--no-owner"])
        .env("PGHOST", u.host_str().unwrap_or("127.0.0.1"))
        .env("PGPORT", u.port().unwrap_or(5432).to_string())
        .env("PGUSER", if u.username().is_empty() { "postgres" } else { u.username() })
        .env("PGDATABASE", &db)
        .output()
        .expect("run pg_dump (PostgreSQL client tools on PATH)");
    assert!(dump.status.success(), "pg_dump failed: {}", String::from_utf8_lossy(&dump.stderr));
    for line in String::from_utf8_lossy(&dump.stdout).lines() {
        if line.starts_with("--")
            || line.starts_with("\\restrict")
            || line.starts_with("\\unrestrict")
            || line.is_empty()
        {
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    let tables = c
        .query(
            "SELECT format('%I.%I', n.nspname, c.relname) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE c.relkind IN ('r', 'm') AND n.nspname NOT IN ('pg_catalog', 'information_schema') \
             AND n.nspname NOT LIKE 'pg_toast%' ORDER BY 1",
            &[],
        )
        .await
        .expect("tables");
    for t in tables {
        let name: String = t.get(0);
        out.push_str(&format!("== {name}\n"));
        let rows = c
            .query(&format!("SELECT fp_row_::text FROM ONLY {name} fp_row_ ORDER BY 1"), &[])
            .await
            .expect("rows");
        for r in rows {
            let s: String = r.get(0);
            out.push_str(&s);
            out.push('\n');
        }
    }
    for r in c
        .query("SELECT schemaname, sequencename, last_value::text FROM pg_sequences ORDER BY 1, 2", &[])
        .await
        .expect("sequences")
    {
        let (a, b, v): (String, String, Option<String>) = (r.get(0), r.get(1), r.get(2));
        out.push_str(&format!("seq {a}.{b} = {v:?}\n"));
    }
    out.push_str(&large_objects(&c).await);
    // The whole catalog; its lines about the database itself start with `db`.
    out.push_str(&crate::pg_catalog::catalog(&c).await);
    out
}

/// One line per large object: oid, size, md5 of its bytes, comment (quoted) or `-`.
pub async fn large_objects(c: &Client) -> String {
    let rows = c
        .query(
            "SELECT format('lo %s %s %s %s', m.oid, length(lo_get(m.oid)), md5(lo_get(m.oid)), \
             coalesce(quote_literal(obj_description(m.oid, 'pg_largeobject')), '-')) \
             FROM pg_largeobject_metadata m ORDER BY m.oid",
            &[],
        )
        .await
        .expect("large objects");
    rows.iter().map(|r| format!("{}\n", r.get::<_, String>(0))).collect()
}

/// Asserts two fingerprints are equal, showing only the lines that differ.
pub fn assert_same(got: &str, want: &str, what: &str) {
    if got != want {
        let g: Vec<&str> = got.lines().collect();
        let w: Vec<&str> = want.lines().collect();
        let only_got: Vec<&&str> = g.iter().filter(|l| !w.contains(l)).take(20).collect();
        let only_want: Vec<&&str> = w.iter().filter(|l| !g.contains(l)).take(20).collect();
        // Same lines in another order (or repeated): show where the order first differs.
        let first = g.iter().zip(&w).position(|(a, b)| a != b).unwrap_or(g.len().min(w.len()));
        let around = |v: &[&str]| v[first.saturating_sub(2)..(first + 3).min(v.len())].join("\n");
        panic!(
            "{what}: fingerprints differ\n  only in actual: {only_got:#?}\n  only in expected: {only_want:#?}\n  \
             first difference at line {first}:\n  actual:\n{}\n  expected:\n{}",
            around(&g),
            around(&w)
        );
    }
}
