//! MySQL/MariaDB: dbbackup create/restore vs `mariadb-dump --single-transaction | gzip`,
//! `mariadb < dump.sql`, and mydumper/myloader with 2 threads (`mydumper -c`), on the same
//! Laravel-style data as the PostgreSQL benchmark (generated server-side from the Sequence
//! engine's `seq_1_to_N` tables), in one run. The server comes from `DBBACKUP_BENCH_MYSQL_URL`
//! or `DBBACKUP_TEST_MYSQL_URL`; the password, if any, from `MYSQL_PWD`.

use anyhow::{Context, Result, bail};

use crate::harness::{BenchOptions, Measured, du, measure, print_table};

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
    let size: u64 = sql(
        &c,
        None,
        &format!("SELECT SUM(DATA_LENGTH) FROM information_schema.TABLES WHERE TABLE_SCHEMA = '{src}'"),
    )?
    .parse()?;
    eprintln!(
        "generated {:.0} MiB of table data in {:.0} s",
        size as f64 / 1048576.0,
        t.elapsed().as_secs_f64()
    );
    let ca = c.args();
    let mut backup: Vec<Measured> = Vec::new();
    let mut m = measure(
        "dbbackup create (zstd:3, -j2, sha256, checksums)",
        &format!("{dbb} create -q --jobs 2 --source {} --repo {wd}/repo >/dev/null", url_of(&src)?),
        &[],
        size,
    )?;
    m.output_bytes = Some(du(&w.join("repo")));
    backup.push(m);
    let mut m = measure(
        "mariadb-dump --single-transaction | gzip",
        &format!(
            "mariadb-dump {ca} --single-transaction --routines --triggers {src} | gzip > {wd}/dump.sql.gz"
        ),
        &[],
        size,
    )?;
    m.output_bytes = Some(du(&w.join("dump.sql.gz")));
    backup.push(m);
    let mut m =
        measure("mydumper -t 2 -c", &format!("mydumper {ca} -B {src} -t 2 -c -o {wd}/mydumper"), &[], size)?;
    m.output_bytes = Some(du(&w.join("mydumper")));
    backup.push(m);
    std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("gzip -dc {wd}/dump.sql.gz > {wd}/dump.sql"))
        .status()?;

    let dst = |name: &str| format!("bench_{name}_{tag}");
    let mut restore: Vec<Measured> = Vec::new();
    restore.push(measure(
        "dbbackup restore (verify, shadow, checksums, swap)",
        &format!(
            "{dbb} restore -q --jobs 2 --repo {wd}/repo latest --into {} >/dev/null",
            url_of(&dst("dbb"))?
        ),
        &[],
        size,
    )?);
    restore.push(measure(
        "myloader -t 2",
        &format!("myloader {ca} -B {} -t 2 -d {wd}/mydumper", dst("myl")),
        &[],
        size,
    )?);
    restore.push(measure(
        "mariadb < dump.sql",
        &format!("mariadb {ca} -e 'CREATE DATABASE {0}' && mariadb {ca} {0} < {wd}/dump.sql", dst("cli")),
        &[],
        size,
    )?);
    restore.push(measure(
        "dbbackup restore dump.sql.gz (foreign dump, native)",
        &format!("{dbb} restore -q --jobs 2 {wd}/dump.sql.gz --into {} >/dev/null", url_of(&dst("dbbsql"))?),
        &[],
        size,
    )?);
    let mib = size as f64 / 1048576.0;
    print_table(
        &format!("MySQL/MariaDB backup, {mib:.0} MiB of table data"),
        &backup,
        "mariadb-dump --single-transaction | gzip",
    );
    print_table(&format!("MySQL/MariaDB restore, {mib:.0} MiB of table data"), &restore, "myloader -t 2");
    for d in ["dbb", "myl", "cli", "dbbsql"] {
        let _ = sql(&c, None, &format!("DROP DATABASE IF EXISTS {}", dst(d)));
    }
    let _ = sql(&c, None, &format!("DROP DATABASE IF EXISTS {src}"));
    let _ = std::fs::remove_dir_all(w);
    Ok(())
}
