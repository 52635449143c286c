//! MySQL/MariaDB: dbbackup create/restore vs `mariadb-dump --single-transaction | gzip`,
//! `mariadb < dump.sql`, and mydumper/myloader with 2 threads (`mydumper -c`), on the same
//! Laravel-style data as the PostgreSQL benchmark (generated server-side from the Sequence
//! engine's `seq_1_to_N` tables), in one run. The server comes from `DBBACKUP_BENCH_MYSQL_URL`
//! or `DBBACKUP_TEST_MYSQL_URL`; the password, if any, from `MYSQL_PWD`.

use anyhow::{Context, Result, bail};

use crate::harness::{BenchOptions, Case, Measured, SummaryLine, best_of, print_table, row, summary};

struct Conn {
    host: String,
    port: u16,
    user: String,
}

impl Conn {
    fn args(&self) -> String {
        format!("-h {} -P {} -u {}", self.host, self.port, self.user)
    }
}

fn sql(c: &Conn, db: Option<&str>, sql: &str) -> Result<String> {
    let mut cmd = std::process::Command::new("mariadb");
    cmd.args(["-h", &c.host, "-P", &c.port.to_string(), "-u", &c.user, "-N", "-B"]);
    if let Some(db) = db {
        cmd.arg(db);
    }
    let out = cmd.arg("-e").arg(sql).output().context("run mariadb (client on PATH)")?;
    if !out.status.success() {
        bail!("mariadb failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn md5s(expr: &str, n: u32, sep: &str) -> String {
    let parts: Vec<String> = (1..=n).map(|k| format!("MD5({expr} * 31 + {k})")).collect();
    format!("CONCAT_WS('{sep}', {})", parts.join(", "))
}

/// Generates about `mib` MiB of Laravel-style tables into `db`.
fn generate(c: &Conn, db: &str, mib: u64) -> Result<()> {
    let bytes = mib * 1024 * 1024;
    let users = (bytes * 15 / 100 / 260).max(100);
    let tx = (bytes * 35 / 100 / 210).max(100);
    let hooks = (bytes * 35 / 100 / 2300).max(10);
    let jobs = (bytes * 10 / 100 / 1100).max(10);
    let failed = (bytes * 5 / 100 / 3200).max(10);
    let hook_notes = md5s("seq", 60, " ");
    let job_cmd = md5s("seq", 28, "");
    let trace: Vec<String> = (1..=40)
        .map(|k| format!("'#{k} /vendor/laravel/framework/src/Illuminate/Queue/Worker.php(', seq + {k}, ')'"))
        .collect();
    let script = format!(
        r#"
SET SESSION sql_log_bin = 0;
CREATE TABLE users (id BIGINT UNSIGNED AUTO_INCREMENT PRIMARY KEY, name VARCHAR(255) NOT NULL,
  email VARCHAR(255) NOT NULL UNIQUE, email_verified_at TIMESTAMP NULL, password VARCHAR(255) NOT NULL,
  remember_token VARCHAR(100) NULL, created_at TIMESTAMP NULL, updated_at TIMESTAMP NULL) DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;
INSERT INTO users (name, email, email_verified_at, password, remember_token, created_at, updated_at)
SELECT CONCAT('User ', seq, ' ', LEFT(MD5(seq), 8)), CONCAT('user', seq, '@example.com'),
  IF(seq % 3 = 0, NULL, NOW() - INTERVAL seq MINUTE), CONCAT('$2y$10$', MD5(seq), LEFT(MD5(seq * 7), 21)),
  LEFT(MD5(seq * 3), 60), NOW() - INTERVAL seq SECOND, NOW() FROM seq_1_to_{users};
CREATE TABLE transactions (id BIGINT UNSIGNED AUTO_INCREMENT PRIMARY KEY, user_id BIGINT UNSIGNED NOT NULL,
  amount DECIMAL(14,2) NOT NULL, fee DECIMAL(10,4) NOT NULL, currency CHAR(3) NOT NULL, status VARCHAR(20) NOT NULL,
  meta JSON, created_at TIMESTAMP NULL, updated_at TIMESTAMP NULL, KEY transactions_user_id_index (user_id),
  CONSTRAINT transactions_user_id_foreign FOREIGN KEY (user_id) REFERENCES users (id)) DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;
INSERT INTO transactions (user_id, amount, fee, currency, status, meta, created_at, updated_at)
SELECT 1 + (seq * 7919) % {users}, ROUND(RAND() * 10000, 2), ROUND(RAND() * 10, 4),
  ELT(1 + seq % 3, 'EUR', 'USD', 'GBP'), ELT(1 + seq % 4, 'pending', 'paid', 'failed', 'refunded'),
  JSON_OBJECT('ip', CONCAT('10.', seq % 255, '.', seq % 97, '.1'), 'ref', MD5(seq), 'items', seq % 5),
  NOW() - INTERVAL seq SECOND, NOW() FROM seq_1_to_{tx};
CREATE TABLE webhook_logs (id BIGINT UNSIGNED AUTO_INCREMENT PRIMARY KEY, url TEXT NOT NULL, status_code INT,
  headers JSON, payload LONGTEXT, created_at TIMESTAMP NULL) DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;
INSERT INTO webhook_logs (url, status_code, headers, payload, created_at)
SELECT CONCAT('https://hooks.example.com/', MD5(seq)), ELT(1 + seq % 4, 200, 201, 500, 404),
  JSON_OBJECT('content-type', 'application/json', 'x-request-id', MD5(seq + 1)),
  CONCAT('{{"event":"payment.updated","data":{{"id":', seq, ',"notes":"', {hook_notes}, '"}}}}'),
  NOW() - INTERVAL seq SECOND FROM seq_1_to_{hooks};
CREATE TABLE jobs (id BIGINT UNSIGNED AUTO_INCREMENT PRIMARY KEY, queue VARCHAR(255) NOT NULL, payload LONGTEXT NOT NULL,
  attempts TINYINT UNSIGNED NOT NULL, reserved_at INT UNSIGNED NULL, available_at INT UNSIGNED NOT NULL,
  created_at INT UNSIGNED NOT NULL, KEY jobs_queue_index (queue)) DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;
INSERT INTO jobs (queue, payload, attempts, reserved_at, available_at, created_at)
SELECT ELT(1 + seq % 3, 'default', 'emails', 'webhooks'),
  CONCAT('{{"uuid":"', MD5(seq), '","displayName":"App\\\\Jobs\\\\SendEmail","data":{{"command":"', {job_cmd}, '"}}}}'),
  seq % 3, NULL, 1700000000 + seq, 1700000000 + seq FROM seq_1_to_{jobs};
CREATE TABLE failed_jobs (id BIGINT UNSIGNED AUTO_INCREMENT PRIMARY KEY, uuid VARCHAR(255) NOT NULL UNIQUE,
  connection TEXT NOT NULL, queue TEXT NOT NULL, payload LONGTEXT NOT NULL, exception LONGTEXT NOT NULL,
  failed_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP) DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;
INSERT INTO failed_jobs (uuid, connection, queue, payload, exception)
SELECT MD5(seq), 'database', 'default', CONCAT('{{"job":"', MD5(seq), '"}}'),
  CONCAT('Exception: boom in /app/Jobs/X.php:', seq, '\n', CONCAT_WS('\n', {trace}))
FROM seq_1_to_{failed};
ANALYZE TABLE users, transactions, webhook_logs, jobs, failed_jobs;
"#,
        trace = trace.iter().map(|t| format!("CONCAT({t})")).collect::<Vec<_>>().join(", ")
    );
    sql(c, Some(db), &script)?;
    Ok(())
}

fn conn_of(base: &str) -> Result<Conn> {
    let u = url::Url::parse(base)?;
    Ok(Conn {
        host: u.host_str().unwrap_or("127.0.0.1").to_string(),
        port: u.port().unwrap_or(3306),
        user: if u.username().is_empty() { "root".into() } else { u.username().to_string() },
    })
}

/// Generates the dataset into the database named by `url` (created), for profiling by hand.
pub fn generate_into(url: &str, mib: u64) -> Result<()> {
    let c = conn_of(url)?;
    let db = url::Url::parse(url)?.path().trim_start_matches('/').to_string();
    if db.is_empty() {
        bail!("mysql-generate: the URL must name a database");
    }
    sql(&c, None, &format!("CREATE DATABASE `{db}`"))?;
    generate(&c, &db, mib)
}

pub fn run(opts: &BenchOptions) -> Result<()> {
    let base = std::env::var("DBBACKUP_BENCH_MYSQL_URL")
        .or_else(|_| std::env::var("DBBACKUP_TEST_MYSQL_URL"))
        .context("set DBBACKUP_BENCH_MYSQL_URL (or DBBACKUP_TEST_MYSQL_URL) to a MariaDB/MySQL server URL")?;
    let c = conn_of(&base)?;
    let url_of = |db: &str| -> Result<String> {
        let mut x = url::Url::parse(&base)?;
        x.set_path(&format!("/{db}"));
        Ok(x.to_string())
    };
    let w = &opts.work_dir;
    let wd = w.display();
    let dbb = opts.dbbackup.display().to_string();
    let tag = std::process::id();
    let src = format!("bench_src_{tag}");
    sql(&c, None, &format!("DROP DATABASE IF EXISTS {src}; CREATE DATABASE {src}"))?;
    eprintln!("generating {} MiB of Laravel-style data in {src}", opts.size_mib);
    let t = std::time::Instant::now();
    generate(&c, &src, opts.size_mib)?;
    let size = data_bytes(&c, &src)?;
    eprintln!(
        "generated {:.0} MiB of table data in {:.0} s",
        size as f64 / 1048576.0,
        t.elapsed().as_secs_f64()
    );
    // The server's CPU is reported beside each run's own (a server on this machine).
    let pid_file = sql(&c, None, "SELECT @@pid_file")?;
    let datadir = sql(&c, None, "SELECT @@datadir")?;
    crate::harness::watch_server(&std::path::Path::new(&datadir).join(pid_file.trim()));
    let ca = c.args();
    let dbb_backup = "dbbackup create (zstd:3, -j2, sha256, checksums)";
    let peer_backup = "mariadb-dump --single-transaction | gzip";
    let backup = best_of(&[
        Case::new(
            dbb_backup,
            format!("{dbb} create -q --jobs 2 --source {} --repo {wd}/repo >/dev/null", url_of(&src)?),
            size,
        )
        .before(format!("rm -rf {wd}/repo"))
        .output(w.join("repo")),
        Case::new(
            peer_backup,
            format!(
                "mariadb-dump {ca} --single-transaction --routines --triggers {src} | gzip > {wd}/dump.sql.gz"
            ),
            size,
        )
        .output(w.join("dump.sql.gz")),
        Case::new("mydumper -t 2 -c", format!("mydumper {ca} -B {src} -t 2 -c -o {wd}/mydumper"), size)
            .before(format!("rm -rf {wd}/mydumper"))
            .output(w.join("mydumper")),
    ])?;
    std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("gzip -dc {wd}/dump.sql.gz > {wd}/dump.sql"))
        .status()?;

    let dst = |name: &str| format!("bench_{name}_{tag}");
    let drop = |name: &str| format!("mariadb {ca} -e 'DROP DATABASE IF EXISTS {}'", dst(name));
    let dbb_restore = "dbbackup restore (verify, shadow, checksums, swap)";
    let restore = best_of(&[
        Case::new(
            dbb_restore,
            format!(
                "{dbb} restore -q --jobs 2 --repo {wd}/repo latest --into {} >/dev/null",
                url_of(&dst("dbb"))?
            ),
            size,
        )
        .before(drop("dbb")),
        Case::new("myloader -t 2", format!("myloader {ca} -B {} -t 2 -d {wd}/mydumper", dst("myl")), size)
            .before(drop("myl")),
        Case::new(
            "mariadb < dump.sql",
            format!("mariadb {ca} -e 'CREATE DATABASE {0}' && mariadb {ca} {0} < {wd}/dump.sql", dst("cli")),
            size,
        )
        .before(drop("cli")),
        Case::new(
            "dbbackup restore dump.sql.gz (foreign dump, native)",
            format!(
                "{dbb} restore -q --jobs 2 {wd}/dump.sql.gz --into {} >/dev/null",
                url_of(&dst("dbbsql"))?
            ),
            size,
        )
        .before(drop("dbbsql")),
    ])?;
    let ceiling = ceiling(&c, &src, w, size)?;
    let guard = crate::harness::guard_recovery(&dbb, &url_of(&src)?, w, size, None, "")?;
    let staged = crate::harness::guard_recovery(&dbb, &url_of(&src)?, w, size, None, "--staged-rollback")?;
    let mib = size as f64 / 1048576.0;
    print_table(&format!("MySQL/MariaDB backup, {mib:.0} MiB of table data"), &backup, peer_backup);
    print_table(&format!("MySQL/MariaDB restore, {mib:.0} MiB of table data"), &restore, "myloader -t 2");
    print_table(
        &format!("MariaDB server-side ingest, {mib:.0} MiB (no client; fastest variant counts)"),
        &ceiling,
        &ceiling[0].tool.clone(),
    );
    let guard_what = format!("MariaDB {mib:.0} MiB");
    print_table(
        &format!("MySQL/MariaDB guard recovery, {mib:.0} MiB"),
        &[
            Measured { tool: guard.describe(&guard_what), ..guard.m.clone() },
            Measured { tool: staged.describe(&guard_what), ..staged.m.clone() },
        ],
        "",
    );
    let best_ceiling = ceiling.iter().min_by(|a, b| a.seconds.total_cmp(&b.seconds)).context("no ceiling")?;
    summary(SummaryLine {
        what: &format!("MariaDB backup, {mib:.0} MiB"),
        ours: row(&backup, dbb_backup)?,
        peer: row(&backup, peer_backup)?,
        goal: ">= 3.0x",
        ceiling: None,
    })?;
    summary(SummaryLine {
        what: &format!("MariaDB backup vs mydumper, {mib:.0} MiB"),
        ours: row(&backup, dbb_backup)?,
        peer: row(&backup, "mydumper -t 2 -c")?,
        goal: ">= 1.0x",
        ceiling: None,
    })?;
    summary(SummaryLine {
        what: &format!("MariaDB restore, {mib:.0} MiB"),
        ours: row(&restore, dbb_restore)?,
        peer: row(&restore, "myloader -t 2")?,
        goal: ">= 2.0x",
        ceiling: Some(best_ceiling),
    })?;
    crate::harness::summary_time(&guard.describe(&guard_what), &guard.m, "<= 15 s")?;
    crate::harness::summary_time(&staged.describe(&guard_what), &staged.m, "<= 15 s")?;
    for d in ["dbb", "myl", "cli", "dbbsql", "ceil"] {
        let _ = sql(&c, None, &format!("DROP DATABASE IF EXISTS {}", dst(d)));
    }
    let _ = sql(&c, None, &format!("DROP DATABASE IF EXISTS {src}"));
    let _ = std::fs::remove_dir_all(w);
    Ok(())
}

/// Bytes of table data of the database the URL names.
pub fn data_bytes_of(url: &str) -> Result<u64> {
    let db = url::Url::parse(url)?.path().trim_start_matches('/').to_string();
    data_bytes(&conn_of(url)?, &db)
}

/// Drops the database the URL names.
pub fn drop_database(url: &str) -> Result<()> {
    let db = url::Url::parse(url)?.path().trim_start_matches('/').to_string();
    sql(&conn_of(url)?, None, &format!("DROP DATABASE IF EXISTS `{db}`")).map(|_| ())
}

/// Bytes of table data of `db` (InnoDB's DATA_LENGTH).
fn data_bytes(c: &Conn, db: &str) -> Result<u64> {
    Ok(sql(
        c,
        None,
        &format!("SELECT SUM(DATA_LENGTH) FROM information_schema.TABLES WHERE TABLE_SCHEMA = '{db}'"),
    )?
    .parse()?)
}

/// The server's own ingest path for `src`: each table exported once (untimed) in primary-key order
/// with `SELECT ... INTO OUTFILE`, then `LOAD DATA INFILE` (no client in the data path) in two
/// sessions with `unique_checks=0, foreign_key_checks=0, sql_log_bin=0`. Variants: tables created
/// with all their keys (loaded in key order); tables created without secondary keys and foreign
/// keys, which are added afterwards (`ALTER TABLE ... ADD`, two sessions, then the foreign keys);
/// and the same with each table's keys added right after its own load in its session (the
/// restore's schedule), then the foreign keys. Needs the server on this machine.
fn ceiling(c: &Conn, src: &str, w: &std::path::Path, size: u64) -> Result<Vec<Measured>> {
    let dir = w.join("ceiling");
    std::fs::create_dir_all(&dir)?;
    std::process::Command::new("chmod").arg("777").arg(&dir).arg(w).status()?;
    let tables: Vec<(String, u64)> = sql(
        c,
        None,
        &format!(
            "SELECT TABLE_NAME, DATA_LENGTH FROM information_schema.TABLES WHERE TABLE_SCHEMA = '{src}' \
             AND TABLE_TYPE = 'BASE TABLE' ORDER BY DATA_LENGTH DESC"
        ),
    )?
    .lines()
    .filter_map(|l| l.split_once('\t').map(|(n, s)| (n.to_string(), s.parse().unwrap_or(0))))
    .collect();
    for (t, _) in &tables {
        let pk = sql(
            c,
            None,
            &format!(
                "SELECT GROUP_CONCAT(CONCAT('`', COLUMN_NAME, '`') ORDER BY SEQ_IN_INDEX) FROM information_schema.STATISTICS \
                 WHERE TABLE_SCHEMA = '{src}' AND TABLE_NAME = '{t}' AND INDEX_NAME = 'PRIMARY'"
            ),
        )?;
        let order = if pk.is_empty() || pk == "NULL" { String::new() } else { format!(" ORDER BY {pk}") };
        let f = dir.join(format!("{t}.txt"));
        let _ = std::fs::remove_file(&f);
        sql(c, Some(src), &format!("SELECT * INTO OUTFILE '{}' FROM `{t}`{order}", f.display()))?;
    }
    let wd = w.display();
    let ca = c.args();
    let sh = |cmd: String| -> Result<()> {
        if !std::process::Command::new("sh").arg("-c").arg(&cmd).status()?.success() {
            bail!("failed: {cmd}");
        }
        Ok(())
    };
    sh(format!("mariadb-dump {ca} --no-data --skip-triggers {src} > {wd}/schema.sql"))?;
    // Secondary indexes and foreign keys of the source, to drop after the schema and add back.
    let indexes = sql(
        c,
        None,
        &format!(
            "SELECT TABLE_NAME, INDEX_NAME, MAX(NON_UNIQUE), GROUP_CONCAT(CONCAT('`', COLUMN_NAME, '`', \
             IF(SUB_PART IS NULL, '', CONCAT('(', SUB_PART, ')'))) ORDER BY SEQ_IN_INDEX) \
             FROM information_schema.STATISTICS WHERE TABLE_SCHEMA = '{src}' AND INDEX_NAME <> 'PRIMARY' \
             GROUP BY TABLE_NAME, INDEX_NAME"
        ),
    )?;
    let fks = sql(
        c,
        None,
        &format!(
            "SELECT k.TABLE_NAME, k.CONSTRAINT_NAME, GROUP_CONCAT(CONCAT('`', k.COLUMN_NAME, '`') ORDER BY k.ORDINAL_POSITION), \
             k.REFERENCED_TABLE_NAME, GROUP_CONCAT(CONCAT('`', k.REFERENCED_COLUMN_NAME, '`') ORDER BY k.ORDINAL_POSITION) \
             FROM information_schema.KEY_COLUMN_USAGE k WHERE k.TABLE_SCHEMA = '{src}' AND k.REFERENCED_TABLE_NAME IS NOT NULL \
             GROUP BY k.TABLE_NAME, k.CONSTRAINT_NAME, k.REFERENCED_TABLE_NAME"
        ),
    )?;
    let mut drop_fk = String::new();
    let mut add_fk = String::new();
    for l in fks.lines() {
        let f: Vec<&str> = l.split('\t').collect();
        if let [t, name, cols, rt, rcols] = f[..] {
            drop_fk.push_str(&format!("ALTER TABLE `{t}` DROP FOREIGN KEY `{name}`; "));
            add_fk.push_str(&format!(
                "ALTER TABLE `{t}` ADD CONSTRAINT `{name}` FOREIGN KEY ({cols}) REFERENCES `{rt}` ({rcols}); "
            ));
        }
    }
    let mut drop_ix = String::new();
    let mut add_ix: [String; 2] = [String::new(), String::new()];
    // The same statements by table, for the variant that adds each table's keys after its load.
    let mut ix_of: std::collections::HashMap<String, String> = std::collections::HashMap::new();
    for (n, l) in indexes.lines().enumerate() {
        let f: Vec<&str> = l.split('\t').collect();
        if let [t, name, non_unique, cols] = f[..] {
            drop_ix.push_str(&format!("ALTER TABLE `{t}` DROP INDEX `{name}`; "));
            let unique = if non_unique == "0" { "UNIQUE " } else { "" };
            let add = format!("ALTER TABLE `{t}` ADD {unique}INDEX `{name}` ({cols}); ");
            add_ix[n % 2].push_str(&add);
            ix_of.entry(t.to_string()).or_default().push_str(&add);
        }
    }
    let mut sessions: [(u64, Vec<&str>); 2] = [(0, Vec::new()), (0, Vec::new())];
    for (t, s) in &tables {
        let i = if sessions[0].0 <= sessions[1].0 { 0 } else { 1 };
        sessions[i].0 += s;
        sessions[i].1.push(t);
    }
    let db = format!("bench_ceil_{}", std::process::id());
    let bulk = "SET SESSION unique_checks = 0, foreign_key_checks = 0, sql_log_bin = 0;";
    let quote = |s: &str| s.replace('`', "\\`");
    // keys: each table's secondary keys right after its own load, in the same session.
    let sessions_sql = |keys: bool| -> String {
        sessions
            .iter()
            .map(|(_, ts)| {
                let stmts: String = ts
                    .iter()
                    .map(|t| {
                        let load =
                            format!("LOAD DATA INFILE '{}/{t}.txt' INTO TABLE \\`{t}\\`; ", dir.display());
                        match (keys, ix_of.get(*t)) {
                            (true, Some(ix)) => load + &quote(ix),
                            _ => load,
                        }
                    })
                    .collect();
                format!("mariadb {ca} {db} -e \"{bulk} {stmts}\" &")
            })
            .collect::<Vec<_>>()
            .join(" ")
    };
    let load = sessions_sql(false);
    let create = format!("mariadb {ca} -e 'CREATE DATABASE {db}' && mariadb {ca} {db} < {wd}/schema.sql");
    let keys_first = format!("{create} && {{ {load} wait; }}");
    let keys_after = format!(
        "{create} && mariadb {ca} {db} -e \"SET SESSION foreign_key_checks = 0; {} {}\" && {{ {load} wait; }} && \
         {{ mariadb {ca} {db} -e \"{bulk} {}\" & mariadb {ca} {db} -e \"{bulk} {}\" & wait; }} && \
         mariadb {ca} {db} -e \"{bulk} {}\"",
        quote(&drop_fk),
        quote(&drop_ix),
        quote(&add_ix[0]),
        quote(&add_ix[1]),
        quote(&add_fk)
    );
    let keys_per_table = format!(
        "{create} && mariadb {ca} {db} -e \"SET SESSION foreign_key_checks = 0; {} {}\" && {{ {} wait; }} && \
         mariadb {ca} {db} -e \"{bulk} {}\"",
        quote(&drop_fk),
        quote(&drop_ix),
        sessions_sql(true),
        quote(&add_fk)
    );
    let drop = format!("mariadb {ca} -e 'DROP DATABASE IF EXISTS {db}'");
    let rows = best_of(&[
        Case::new("LOAD DATA INFILE x2, tables with their keys, PK order", keys_first, size)
            .before(drop.clone()),
        Case::new("LOAD DATA INFILE x2, then ADD KEY x2, then FKs", keys_after, size).before(drop.clone()),
        Case::new("LOAD DATA INFILE x2, each table's keys after its load, then FKs", keys_per_table, size)
            .before(drop.clone()),
    ])?;
    if data_bytes(c, &db)? == 0 {
        bail!("ceiling database {db} is empty");
    }
    sh(drop)?;
    Ok(rows)
}
