//! MySQL/MariaDB fixture for the source suite: one database per test on the server named by
//! `DBBACKUP_TEST_MYSQL_URL`, filled with awkward content (issue 4 item 7).

use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Opts};

use crate::source_suite::Fixture;

/// Databases on the test server.
pub struct MysqlFixture {
    /// Admin URL (any database).
    pub admin: String,
}

impl MysqlFixture {
    /// The fixture, when the server is configured (see [`crate::service_env`]).
    pub fn from_env() -> Option<Self> {
        crate::service_env("DBBACKUP_TEST_MYSQL_URL").map(|admin| MysqlFixture { admin })
    }

    /// URL of database `name` on the test server.
    pub fn url_of(&self, name: &str) -> String {
        let mut u = url_parts(&self.admin);
        u.set_path(&format!("/{name}"));
        u.to_string()
    }

    /// An admin connection (optionally into a database).
    pub async fn conn(&self, db: Option<&str>) -> Conn {
        let mut u = url_parts(&self.admin);
        u.set_path(&format!("/{}", db.unwrap_or("mysql")));
        connect(u.as_str()).await
    }
}

fn url_parts(s: &str) -> url::Url {
    url::Url::parse(s).expect("mysql url")
}

/// Database name of a URL.
pub fn db_of(url: &str) -> String {
    url_parts(url).path().trim_start_matches('/').to_string()
}

/// Connects with the test settings (UTC, permissive sql_mode, big packets).
pub async fn connect(url: &str) -> Conn {
    let mut u = url_parts(url);
    u.set_scheme("mysql").expect("scheme");
    let opts = Opts::from_url(u.as_str()).expect("opts");
    let b = mysql_async::OptsBuilder::from_opts(opts)
        .prefer_socket(false)
        .max_allowed_packet(Some(1 << 30))
        .init(vec![
            "SET NAMES utf8mb4",
            "SET time_zone = '+00:00'",
            "SET sql_mode = 'NO_ENGINE_SUBSTITUTION'",
        ]);
    Conn::new(b).await.expect("connect to the test MySQL server")
}

/// The awkward-content schema and rows.
pub const POPULATE: &str = r#"
CREATE TABLE ints (
  id INT PRIMARY KEY,
  ti TINYINT, tiu TINYINT UNSIGNED, si SMALLINT, siu SMALLINT UNSIGNED, mi MEDIUMINT, miu MEDIUMINT UNSIGNED,
  i INT, iu INT UNSIGNED, bi BIGINT, biu BIGINT UNSIGNED, d DECIMAL(65,30), f FLOAT, db DOUBLE,
  b1 BIT(1), b7 BIT(7), b64 BIT(64)
);
INSERT INTO ints VALUES
 (1, -128, 0, -32768, 0, -8388608, 0, -2147483648, 0, -9223372036854775808, 0,
  -99999999999999999999999999999999999.999999999999999999999999999999, -3.40282e38, -1.7976931348623157e308, b'0', b'0', b'0'),
 (2, 127, 255, 32767, 65535, 8388607, 16777215, 2147483647, 4294967295, 9223372036854775807, 18446744073709551615,
  99999999999999999999999999999999999.999999999999999999999999999999, 3.40282e38, 1.7976931348623157e308, b'1', b'1111111', b'1111111111111111111111111111111111111111111111111111111111111111'),
 (3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0.000000000000000000000000000001, 1.17549e-38, 4.9e-324, NULL, b'1010101', b'1000000000000000000000000000000000000000000000000000000000000001'),
 (4, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, 16777217, 0.1, NULL, NULL, NULL),
 (5, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, -0.5, -0.0, -0.0, NULL, NULL, NULL);
CREATE TABLE times (
  id INT PRIMARY KEY, d DATE, t TIME(6), dt DATETIME(6), ts TIMESTAMP(6) NULL DEFAULT NULL, y YEAR, dt0 DATETIME
);
INSERT INTO times VALUES
 (1, '0000-00-00', '-838:59:59.000000', '0000-00-00 00:00:00.000000', '1970-01-01 00:00:01.000000', 1901, '0000-00-00 00:00:00'),
 (2, '9999-12-31', '838:59:59.999999', '9999-12-31 23:59:59.999999', '2038-01-19 03:14:07.999999', 2155, '2020-02-29 12:00:00'),
 (3, '2024-03-31', '00:00:00.000001', '2024-03-31 02:30:00.123456', '2024-03-31 01:30:00.654321', 0, NULL),
 (4, '2020-00-00', NULL, NULL, NULL, NULL, '2020-01-00 00:00:00');
CREATE TABLE texts (
  id INT PRIMARY KEY,
  u VARCHAR(100) CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci,
  l VARCHAR(100) CHARACTER SET latin1,
  bin VARBINARY(300),
  c CHAR(10) CHARACTER SET utf8mb4,
  tx TEXT,
  bl LONGBLOB,
  e ENUM('a','b','c d'),
  s SET('x','y','z'),
  j JSON,
  g GEOMETRY,
  p POINT
);
INSERT INTO texts VALUES
 (1, 'emoji 😀🐘 𝄞 and ünïcödé', 'café £ ÿ', 0x00FF0A0D095C4E, 'pad', 'tab\there\nnewline\\back \r cr', NULL, 'c d', 'x,z', '{"a": [1, 2.5, "x"], "b": null, "c": "\\u00e9\\n"}', ST_GeomFromText('POLYGON((0 0,10 0,10 10,0 10,0 0))'), ST_GeomFromText('POINT(1.5 -2.25)', 4326)),
 (2, '', '', '', '', '', '', 'a', '', '[]', ST_GeomFromText('LINESTRING(0 0, 1 1, 2 3)'), NULL),
 (3, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL),
 (4, 'NULL', 'NULL', 'NULL', 'NULL', '\\N', 'N', 'b', 'y', 'null', NULL, NULL),
 (5, '\\', '\t', 0x5C, ' trail ', '\n', 0x00, NULL, 'x,y,z', '"str"', ST_GeomFromText('GEOMETRYCOLLECTION(POINT(1 1))'), NULL);
CREATE TABLE blobs (id INT AUTO_INCREMENT PRIMARY KEY, b BLOB, note VARCHAR(20)) AUTO_INCREMENT=1000;
CREATE TABLE gen (
  id INT PRIMARY KEY,
  a INT,
  v INT AS (a * 2) VIRTUAL,
  s VARCHAR(20) AS (CONCAT('s', a)) STORED,
  hid INT INVISIBLE DEFAULT 7,
  CHECK (a >= 0),
  KEY kv (v),
  UNIQUE KEY us (s)
);
INSERT INTO gen (id, a, hid) VALUES (1, 1, 10), (2, 5, NULL), (3, 0, 7);
CREATE TABLE nopk (a INT, b TEXT, KEY (a));
INSERT INTO nopk VALUES (1, 'dup'), (1, 'dup'), (NULL, NULL), (2, '');
CREATE TABLE empty_t (id INT PRIMARY KEY, x VARCHAR(5));
CREATE TABLE `select` (`from` INT PRIMARY KEY, `we``ird "name" 'q' sp ace` VARCHAR(10), `ünï é` INT);
INSERT INTO `select` VALUES (1, 'w', 2);
CREATE TABLE parent (id INT PRIMARY KEY, child_id INT, KEY (child_id)) ENGINE=InnoDB;
CREATE TABLE child (id INT PRIMARY KEY, parent_id INT NOT NULL, CONSTRAINT fk_child_parent FOREIGN KEY (parent_id) REFERENCES parent (id) ON DELETE CASCADE) ENGINE=InnoDB;
INSERT INTO parent VALUES (1, 1), (2, NULL);
INSERT INTO child VALUES (1, 1), (2, 2);
ALTER TABLE parent ADD CONSTRAINT fk_parent_child FOREIGN KEY (child_id) REFERENCES child (id);
CREATE TABLE parts (id INT NOT NULL, k INT NOT NULL, v VARCHAR(10), PRIMARY KEY (id, k)) PARTITION BY RANGE (k) (PARTITION p0 VALUES LESS THAN (10), PARTITION p1 VALUES LESS THAN MAXVALUE);
INSERT INTO parts VALUES (1, 1, 'low'), (2, 50, 'high');
CREATE TABLE versioned (id INT PRIMARY KEY, v VARCHAR(20)) WITH SYSTEM VERSIONING;
INSERT INTO versioned VALUES (1, 'first'), (2, 'two');
UPDATE versioned SET v = 'second' WHERE id = 1;
DELETE FROM versioned WHERE id = 2;
CREATE SEQUENCE seq_a START WITH 100 INCREMENT BY 5 MAXVALUE 120 CYCLE CACHE 2;
CREATE TABLE filler (id INT PRIMARY KEY, payload VARBINARY(1000), n DOUBLE, KEY (n));
CREATE VIEW v_base AS SELECT id, a FROM gen;
CREATE VIEW v_top AS SELECT COUNT(*) AS n FROM v_base;
CREATE VIEW `v a` AS SELECT * FROM v_top;
CREATE FUNCTION twice(x INT) RETURNS INT DETERMINISTIC RETURN x * 2;
DELIMITER ;;
CREATE PROCEDURE p_count(OUT n INT) BEGIN SELECT COUNT(*) INTO n FROM gen; SELECT 'a;b'; END;;
DELIMITER ;
CREATE TRIGGER trg_gen BEFORE INSERT ON gen FOR EACH ROW SET NEW.a = NEW.a + 0;
CREATE TRIGGER trg_gen2 BEFORE INSERT ON gen FOR EACH ROW FOLLOWS trg_gen SET NEW.hid = IFNULL(NEW.hid, 1);
CREATE EVENT ev_noop ON SCHEDULE EVERY 1 DAY STARTS '2030-01-01 00:00:00' DISABLE DO DELETE FROM empty_t WHERE id < 0;
"#;

/// The objects and values of issue 12 ("every database comes back exactly"), each of which a
/// restore lost or refused before: explicitly named system-versioning period columns, INET4 /
/// INET6 / UUID zero values, ENUM error values (index 0), a foreign key whose referenced index
/// comes from another table's post-data, a `nextval()` default naming its own database, and
/// Oracle-mode packages; and the wider sweep: partitioning by HASH, KEY, LIST COLUMNS and
/// subpartitions, per-column collations and comments, descending, prefix, FULLTEXT and SPATIAL
/// indexes, table options. Applied by [`populate_fidelity`] after [`POPULATE`].
pub const FIDELITY: &str = r#"
CREATE TABLE sv_named (
  id INT PRIMARY KEY, v VARCHAR(10),
  valid_from TIMESTAMP(6) GENERATED ALWAYS AS ROW START INVISIBLE,
  valid_to TIMESTAMP(6) GENERATED ALWAYS AS ROW END INVISIBLE,
  PERIOD FOR SYSTEM_TIME (valid_from, valid_to)
) WITH SYSTEM VERSIONING;
INSERT INTO sv_named (id, v) VALUES (1, 'a'), (2, 'b');
UPDATE sv_named SET v = 'c' WHERE id = 1;
CREATE TABLE nets (id INT PRIMARY KEY, a INET4, b INET6, u UUID, KEY (a));
INSERT INTO nets VALUES
 (1, '0.0.0.0', '::', '00000000-0000-0000-0000-000000000000'),
 (2, '255.255.255.255', 'ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff', 'ffffffff-ffff-ffff-ffff-ffffffffffff'),
 (3, '10.1.2.3', '::ffff:10.1.2.3', '123e4567-e89b-12d3-a456-426614174000'),
 (4, NULL, NULL, NULL);
CREATE TABLE enums (id INT PRIMARY KEY, e ENUM('x','y'), m ENUM('','z') NOT NULL, s SET('p','q'));
INSERT INTO enums VALUES (1, 'x', '', 'p,q'), (2, NULL, 'z', ''), (3, 'bad', 'bad', 'p');
CREATE TABLE z_ref (id INT PRIMARY KEY, code INT, UNIQUE KEY uk_code (code));
CREATE TABLE a_fk (id INT PRIMARY KEY, code INT, CONSTRAINT fk_a_code FOREIGN KEY (code) REFERENCES z_ref (code));
INSERT INTO z_ref VALUES (1, 10), (2, 20);
INSERT INTO a_fk VALUES (1, 10), (2, NULL);
CREATE SEQUENCE zz_ticket_seq START WITH 1000 INCREMENT BY 10;
CREATE TABLE tickets (id BIGINT NOT NULL DEFAULT nextval(zz_ticket_seq) PRIMARY KEY, note VARCHAR(10));
INSERT INTO tickets (note) VALUES ('a'), ('b');
CREATE TABLE p_hash (id INT PRIMARY KEY, v INT) PARTITION BY HASH (id) PARTITIONS 3;
INSERT INTO p_hash VALUES (1, 1), (2, 2), (3, 3), (4, NULL);
CREATE TABLE p_key (id INT PRIMARY KEY) PARTITION BY KEY (id) PARTITIONS 2;
INSERT INTO p_key VALUES (1), (2), (3);
CREATE TABLE p_list (id INT NOT NULL, r CHAR(2) NOT NULL, PRIMARY KEY (id, r))
  PARTITION BY LIST COLUMNS (r) (PARTITION pe VALUES IN ('de', 'fr') COMMENT 'europe', PARTITION pw VALUES IN ('us'));
INSERT INTO p_list VALUES (1, 'de'), (2, 'us');
CREATE TABLE p_sub (id INT NOT NULL, y INT NOT NULL, PRIMARY KEY (id, y)) PARTITION BY RANGE (y)
  SUBPARTITION BY HASH (id) SUBPARTITIONS 2 (PARTITION p0 VALUES LESS THAN (2000), PARTITION p1 VALUES LESS THAN MAXVALUE);
INSERT INTO p_sub VALUES (1, 1999), (2, 2024), (3, 2024);
CREATE TABLE opts (
  id INT PRIMARY KEY,
  a VARCHAR(20) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin COMMENT 'col ''c''',
  b VARCHAR(20) CHARACTER SET ascii COLLATE ascii_bin DEFAULT 'x',
  t TEXT CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_520_ci,
  g GEOMETRY NOT NULL,
  KEY kd (id DESC, a),
  KEY kp (a(5)) COMMENT 'prefix',
  FULLTEXT KEY ft (t),
  SPATIAL KEY sp (g)
) ENGINE=InnoDB ROW_FORMAT=DYNAMIC STATS_PERSISTENT=1 COMMENT='table ''c''';
INSERT INTO opts VALUES (1, 'Aa', 'b', 'full text here', ST_GeomFromText('POINT(1 2)')), (2, 'aA', NULL, NULL, ST_GeomFromText('POINT(0 0)'));
SET SESSION sql_mode = 'ORACLE';
DELIMITER $$
CREATE PACKAGE pkg AS FUNCTION f1 RETURN INT; PROCEDURE p1; END;
$$
CREATE PACKAGE BODY pkg AS cnt INT := 0; FUNCTION f1 RETURN INT AS BEGIN RETURN cnt; END; PROCEDURE p1 AS BEGIN cnt := cnt + 1; END; END;
$$
DELIMITER ;
SET SESSION sql_mode = 'NO_ENGINE_SUBSTITUTION';
"#;

/// Adds [`FIDELITY`] to a database filled by [`populate_conn`] (selected on `c`).
pub async fn populate_fidelity(c: &mut Conn) {
    for stmt in backup_core::mysql_script::split_all(FIDELITY.as_bytes()).expect("split") {
        c.query_drop(stmt.as_slice())
            .await
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&stmt)));
    }
}

/// Fills `db` (already selected on `c`) with [`POPULATE`], blobs with every byte value, the
/// sequence advanced through a cycle and ~3 MB of filler (chunked with 1 MiB chunks).
pub async fn populate_conn(c: &mut Conn, db: &str) {
    c.query_drop(format!(
        "ALTER DATABASE `{db}` CHARACTER SET latin1 COLLATE latin1_swedish_ci COMMENT 'fixture db ''c'''"
    ))
    .await
    .expect("alter db");
    for stmt in backup_core::mysql_script::split_all(POPULATE.as_bytes()).expect("split") {
        c.query_drop(stmt.as_slice())
            .await
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&stmt)));
    }
    let all: Vec<u8> = (0..=255u8).collect();
    let rev: Vec<u8> = all.iter().rev().copied().collect();
    c.exec_drop(
        "INSERT INTO blobs (b, note) VALUES (?, 'all'), (?, 'rev'), ('', 'empty'), (NULL, 'null')",
        (all, rev),
    )
    .await
    .expect("blobs");
    for _ in 0..7 {
        c.query_drop("SELECT NEXTVAL(seq_a)").await.expect("nextval");
    }
    c.query_drop("INSERT INTO filler SELECT seq, RANDOM_BYTES(1000), seq / 3 FROM seq_1_to_3000")
        .await
        .expect("filler");
    c.query_drop("ANALYZE TABLE filler").await.expect("analyze");
}

/// Canonical text: database properties, every object's definition, every row (hex), sorted.
pub async fn fingerprint_conn(c: &mut Conn, db: &str) -> String {
    let mut out = String::new();
    let props: Vec<(String, String, String)> = c
        .query(format!(
            "SELECT DEFAULT_CHARACTER_SET_NAME, DEFAULT_COLLATION_NAME, SCHEMA_COMMENT FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = '{db}'"
        ))
        .await
        .expect("schemata");
    let Some(p) = props.first() else { return "<no database>".into() };
    out.push_str(&format!("db: {p:?}\n"));
    c.query_drop(format!("USE `{db}`")).await.expect("use");
    let tables: Vec<(String, String)> = c
        .query(format!(
            "SELECT TABLE_NAME, TABLE_TYPE FROM information_schema.TABLES WHERE TABLE_SCHEMA = '{db}' ORDER BY TABLE_NAME"
        ))
        .await
        .expect("tables");
    for (t, ty) in &tables {
        let q = if ty == "VIEW" {
            "VIEW"
        } else if ty == "SEQUENCE" {
            "SEQUENCE"
        } else {
            "TABLE"
        };
        let row: Option<mysql_async::Row> =
            c.query_first(format!("SHOW CREATE {q} `{}`", t.replace('`', "``"))).await.expect("show create");
        let def: String = row.and_then(|r| r.get(1)).unwrap_or_default();
        out.push_str(&format!("{ty} {t}: {def}\n"));
    }
    for (kind, list) in [
        (
            "FUNCTION",
            format!(
                "SELECT ROUTINE_NAME FROM information_schema.ROUTINES WHERE ROUTINE_SCHEMA='{db}' AND ROUTINE_TYPE='FUNCTION' ORDER BY 1"
            ),
        ),
        (
            "PROCEDURE",
            format!(
                "SELECT ROUTINE_NAME FROM information_schema.ROUTINES WHERE ROUTINE_SCHEMA='{db}' AND ROUTINE_TYPE='PROCEDURE' ORDER BY 1"
            ),
        ),
        (
            "TRIGGER",
            format!(
                "SELECT TRIGGER_NAME FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA='{db}' ORDER BY 1"
            ),
        ),
        (
            "EVENT",
            format!("SELECT EVENT_NAME FROM information_schema.EVENTS WHERE EVENT_SCHEMA='{db}' ORDER BY 1"),
        ),
    ] {
        let names: Vec<String> = c.query(list).await.expect("objects");
        for n in names {
            let row: Option<mysql_async::Row> =
                c.query_first(format!("SHOW CREATE {kind} `{n}`")).await.expect("show create object");
            let row = row.expect("definition");
            let idx = match kind {
                "EVENT" => 3,
                _ => 2,
            };
            let def: Option<String> = row.get(idx);
            let mode: Option<String> = row.get(1);
            out.push_str(&format!("{kind} {n} [{mode:?}]: {def:?}\n"));
        }
    }
    let trig_order: Vec<(String, String)> = c
        .query(format!("SELECT TRIGGER_NAME, ACTION_ORDER FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA='{db}' ORDER BY 1"))
        .await
        .expect("trigger order");
    out.push_str(&format!("trigger order: {trig_order:?}\n"));
    for (t, ty) in &tables {
        if ty == "VIEW" {
            continue;
        }
        if ty == "SEQUENCE" {
            let r: Option<mysql_async::Row> =
                c.query_first(format!("SELECT * FROM `{t}`")).await.expect("sequence state");
            out.push_str(&format!("{t} state: {:?}\n", r.map(|r| r.unwrap())));
            continue;
        }
        let cols: Vec<(String, String, String)> = c
            .query(format!(
                "SELECT COLUMN_NAME, DATA_TYPE, EXTRA FROM information_schema.COLUMNS WHERE TABLE_SCHEMA='{db}' AND TABLE_NAME='{}' ORDER BY ORDINAL_POSITION",
                t.replace('\'', "''")
            ))
            .await
            .expect("columns");
        let mut exprs: Vec<String> = cols
            .iter()
            .map(|(n, dt, _)| {
                let q = format!("`{}`", n.replace('`', "``"));
                let v = if dt == "float" { format!("CAST({q} AS DOUBLE)") } else { q };
                format!("IFNULL(HEX(CAST({v} AS BINARY)), 'NULL')")
            })
            .collect();
        let versioned = ty == "SYSTEM VERSIONED";
        let named_period: Option<i64> = c
            .query_first(format!(
                "SELECT COUNT(*) FROM information_schema.COLUMNS WHERE TABLE_SCHEMA='{db}' AND TABLE_NAME='{}' \
                 AND GENERATION_EXPRESSION IN ('ROW START', 'ROW END')",
                t.replace('\'', "''")
            ))
            .await
            .expect("period columns");
        // Explicitly named period columns are among the columns already.
        if versioned && named_period == Some(0) {
            exprs.push("HEX(CAST(ROW_START AS BINARY))".into());
            exprs.push("HEX(CAST(ROW_END AS BINARY))".into());
        }
        let sql = format!(
            "SELECT CONCAT_WS('|', {}) FROM `{}`{}",
            exprs.join(", "),
            t.replace('`', "``"),
            if versioned { " FOR SYSTEM_TIME ALL" } else { "" }
        );
        let mut rows: Vec<String> = c.query(sql).await.expect("rows");
        rows.sort();
        out.push_str(&format!("{t}: {} rows\n", rows.len()));
        for r in rows {
            out.push_str(&format!("{t}|{r}\n"));
        }
    }
    out
}

#[async_trait::async_trait]
impl Fixture for MysqlFixture {
    async fn create_db(&self, name: &str) -> String {
        let mut c = self.conn(None).await;
        c.query_drop(format!("CREATE DATABASE `{name}`")).await.expect("create database");
        self.url_of(name)
    }

    async fn populate(&self, url: &str) {
        let db = db_of(url);
        let mut c = self.conn(Some(&db)).await;
        populate_conn(&mut c, &db).await;
    }

    async fn mutate(&self, url: &str) {
        let db = db_of(url);
        let mut c = self.conn(Some(&db)).await;
        for s in [
            "DELETE FROM blobs WHERE note = 'all'",
            "ALTER TABLE texts ADD COLUMN migrated INT",
            "CREATE TABLE new_table (x INT)",
            "DROP VIEW `v a`",
            "DROP TRIGGER trg_gen2",
            "UPDATE ints SET ti = 5 WHERE id = 4",
            "SELECT NEXTVAL(seq_a)",
        ] {
            c.query_drop(s).await.expect(s);
        }
    }

    async fn fingerprint(&self, url: &str) -> String {
        let db = db_of(url);
        let mut c = self.conn(None).await;
        fingerprint_conn(&mut c, &db).await
    }

    async fn drop_db(&self, url: &str) {
        let db = db_of(url);
        let mut c = self.conn(None).await;
        c.query_drop(format!("DROP DATABASE IF EXISTS `{db}`")).await.expect("drop database");
    }
}

/// Runs one statement (test setup), panicking with the statement on error.
pub async fn exec(c: &mut Conn, sql: &str) {
    c.query_drop(sql).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
}

/// The first column of every row of a query, as text.
pub async fn column(c: &mut Conn, sql: &str) -> Vec<String> {
    c.query(sql).await.unwrap_or_else(|e| panic!("{sql}: {e}"))
}
