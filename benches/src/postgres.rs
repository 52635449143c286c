//! PostgreSQL: dbbackup create/restore vs `pg_dump -Fc`, `pg_dump -Fd -j2`, `pg_restore -j2` and
//! `psql -f` on the same Laravel-style data (generated server-side with generate_series), in one
//! run. The server comes from `DBBACKUP_BENCH_PG_URL` or `DBBACKUP_TEST_PG_URL`
//! (`scripts/dev-services.sh postgres`); client tools from PATH.

use anyhow::{Context, Result, bail};

use crate::harness::{BenchOptions, Measured, du, measure, print_table};

fn psql(url: &str, sql: &str) -> Result<String> {
    let out = std::process::Command::new("psql")
        .args(["-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-d", url, "-c", sql])
        .output()
        .context("run psql (PostgreSQL client tools on PATH)")?;
    if !out.status.success() {
        bail!("psql failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn db_url(base: &str, db: &str) -> Result<String> {
    let mut u = url::Url::parse(base)?;
    u.set_path(&format!("/{db}"));
    Ok(u.to_string())
}

/// Generates about `mib` MiB of Laravel-style tables into `url`.
pub fn generate(url: &str, mib: u64) -> Result<()> {
    let bytes = mib * 1024 * 1024;
    // Approximate on-disk bytes per row of each table, and each table's share of the total.
    let users = (bytes * 15 / 100 / 260).max(100);
    let tx = (bytes * 35 / 100 / 210).max(100);
    let hooks = (bytes * 35 / 100 / 2300).max(10);
    let jobs = (bytes * 10 / 100 / 1100).max(10);
    let failed = (bytes * 5 / 100 / 3200).max(10);
    let sql = format!(
        r#"
CREATE TABLE users (id bigserial PRIMARY KEY, name varchar(255) NOT NULL, email varchar(255) NOT NULL UNIQUE,
  email_verified_at timestamp NULL, password varchar(255) NOT NULL, remember_token varchar(100) NULL,
  created_at timestamp NULL, updated_at timestamp NULL);
INSERT INTO users (name, email, email_verified_at, password, remember_token, created_at, updated_at)
SELECT 'User ' || i || ' ' || substr(md5(i::text), 1, 8), 'user' || i || '@example.com',
  CASE WHEN i % 3 = 0 THEN NULL ELSE now() - (i || ' minutes')::interval END,
  '$2y$10$' || md5(i::text) || substr(md5((i * 7)::text), 1, 21), substr(md5((i * 3)::text), 1, 60),
  now() - (i || ' seconds')::interval, now() FROM generate_series(1, {users}) i;
CREATE TABLE transactions (id bigserial PRIMARY KEY, user_id bigint NOT NULL REFERENCES users(id),
  amount numeric(14,2) NOT NULL, fee numeric(10,4) NOT NULL, currency char(3) NOT NULL, status varchar(20) NOT NULL,
  meta jsonb, created_at timestamp NULL, updated_at timestamp NULL);
INSERT INTO transactions (user_id, amount, fee, currency, status, meta, created_at, updated_at)
SELECT 1 + (i::bigint * 7919) % {users}, round((random() * 10000)::numeric, 2), round((random() * 10)::numeric, 4),
  (ARRAY['EUR','USD','GBP'])[1 + i % 3], (ARRAY['pending','paid','failed','refunded'])[1 + i % 4],
  jsonb_build_object('ip', '10.' || (i % 255) || '.' || (i % 97) || '.1', 'ref', md5(i::text), 'items', i % 5),
  now() - (i || ' seconds')::interval, now() FROM generate_series(1, {tx}) i;
CREATE INDEX transactions_user_id_index ON transactions (user_id);
CREATE TABLE webhook_logs (id bigserial PRIMARY KEY, url text NOT NULL, status_code int, headers json,
  payload text, created_at timestamp NULL);
INSERT INTO webhook_logs (url, status_code, headers, payload, created_at)
SELECT 'https://hooks.example.com/' || md5(i::text), (ARRAY[200, 201, 500, 404])[1 + i % 4],
  json_build_object('content-type', 'application/json', 'x-request-id', md5((i + 1)::text)),
  '{{"event":"payment.updated","data":{{"id":' || i || ',"notes":"' ||
  (SELECT string_agg(md5((i * 31 + k)::text), ' ') FROM generate_series(1, 60) k) || '"}}}}',
  now() - (i || ' seconds')::interval FROM generate_series(1, {hooks}) i;
CREATE TABLE jobs (id bigserial PRIMARY KEY, queue varchar(255) NOT NULL, payload text NOT NULL,
  attempts smallint NOT NULL, reserved_at int NULL, available_at int NOT NULL, created_at int NOT NULL);
CREATE INDEX jobs_queue_index ON jobs (queue);
INSERT INTO jobs (queue, payload, attempts, reserved_at, available_at, created_at)
SELECT (ARRAY['default','emails','webhooks'])[1 + i % 3],
  '{{"uuid":"' || md5(i::text) || '","displayName":"App\\Jobs\\SendEmail","data":{{"command":"' ||
  (SELECT string_agg(md5((i + k)::text), '') FROM generate_series(1, 28) k) || '"}}}}',
  i % 3, NULL, 1700000000 + i, 1700000000 + i FROM generate_series(1, {jobs}) i;
CREATE TABLE failed_jobs (id bigserial PRIMARY KEY, uuid varchar(255) NOT NULL UNIQUE, connection text NOT NULL,
  queue text NOT NULL, payload text NOT NULL, exception text NOT NULL, failed_at timestamp NOT NULL DEFAULT CURRENT_TIMESTAMP);
INSERT INTO failed_jobs (uuid, connection, queue, payload, exception)
SELECT md5(i::text), 'database', 'default', '{{"job":"' || md5(i::text) || '"}}',
  'Exception: boom in /app/Jobs/X.php:' || i || E'\n' ||
  (SELECT string_agg('#' || k || ' /vendor/laravel/framework/src/Illuminate/Queue/Worker.php(' || (i + k) || ')', E'\n') FROM generate_series(1, 40) k)
FROM generate_series(1, {failed}) i;
"#
    );
    psql(url, &sql)?;
    psql(url, "VACUUM ANALYZE")?;
    Ok(())
}

pub fn run(opts: &BenchOptions) -> Result<()> {
    let base = std::env::var("DBBACKUP_BENCH_PG_URL")
        .or_else(|_| std::env::var("DBBACKUP_TEST_PG_URL"))
        .context("set DBBACKUP_BENCH_PG_URL (or DBBACKUP_TEST_PG_URL) to a PostgreSQL server URL")?;
    let w = &opts.work_dir;
    let wd = w.display();
    let dbb = opts.dbbackup.display().to_string();
    let tag = std::process::id();
    // DBBACKUP_BENCH_PG_SOURCE names an already generated database to reuse (kept afterwards).
    let reuse = std::env::var("DBBACKUP_BENCH_PG_SOURCE").ok().filter(|s| !s.is_empty());
    let src_db = reuse.clone().unwrap_or_else(|| format!("bench_src_{tag}"));
    let src = db_url(&base, &src_db)?;
    if reuse.is_none() {
        psql(&base, &format!("DROP DATABASE IF EXISTS {src_db}"))?;
        psql(&base, &format!("CREATE DATABASE {src_db}"))?;
        eprintln!("generating {} MiB of Laravel-style data in {src_db}", opts.size_mib);
        generate(&src, opts.size_mib)?;
    }
    let t = std::time::Instant::now();
    let size: u64 = psql(
        &src,
        "SELECT sum(pg_table_size(c.oid)) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE c.relkind = 'r' AND n.nspname = 'public'",
    )?
    .parse()?;
    eprintln!(
        "generated {:.0} MiB of table data in {:.0} s",
        size as f64 / 1048576.0,
        t.elapsed().as_secs_f64()
    );
    let pg_env = [("PGDATABASE", src_db.as_str())];
    let conn = {
        let u = url::Url::parse(&base)?;
        format!(
            "-h {} -p {} -U {}",
            u.host_str().unwrap_or("127.0.0.1"),
            u.port().unwrap_or(5432),
            if u.username().is_empty() { "postgres" } else { u.username() }
        )
    };
    let mut backup: Vec<Measured> = Vec::new();
    let mut m = measure(
        "dbbackup create (zstd:3, -j2, sha256, checksums)",
        &format!("{dbb} create -q --jobs 2 --source {src} --repo {wd}/repo >/dev/null"),
        &[],
        size,
    )?;
    m.output_bytes = Some(du(&w.join("repo")));
    backup.push(m);
    let mut m = measure("pg_dump -Fc", &format!("pg_dump {conn} -Fc -f {wd}/dump.fc"), &pg_env, size)?;
    m.output_bytes = Some(du(&w.join("dump.fc")));
    backup.push(m);
    let mut m =
        measure("pg_dump -Fd -j2", &format!("pg_dump {conn} -Fd -j2 -f {wd}/dump.dir"), &pg_env, size)?;
    m.output_bytes = Some(du(&w.join("dump.dir")));
    backup.push(m);
    let mut m = measure("pg_dump (plain)", &format!("pg_dump {conn} -f {wd}/dump.sql"), &pg_env, size)?;
    m.output_bytes = Some(du(&w.join("dump.sql")));
    backup.push(m);

    let mut restore: Vec<Measured> = Vec::new();
    let dst = |name: &str| format!("bench_{name}_{tag}");
    restore.push(measure(
        "dbbackup restore (verify, shadow, checksums, swap)",
        &format!(
            "{dbb} restore -q --jobs 2 --repo {wd}/repo latest --into {} >/dev/null",
            db_url(&base, &dst("dbb"))?
        ),
        &[],
        size,
    )?);
    restore.push(measure(
        "pg_restore -j2 (from -Fd)",
        &format!("createdb {conn} {0} && pg_restore {conn} -j2 -d {0} {wd}/dump.dir", dst("pgr")),
        &[],
        size,
    )?);
    restore.push(measure(
        "psql -f (plain dump)",
        &format!(
            "createdb {conn} {0} && psql {conn} -X -q -v ON_ERROR_STOP=1 -d {0} -f {wd}/dump.sql >/dev/null",
            dst("psql")
        ),
        &[],
        size,
    )?);
    restore.push(measure(
        "dbbackup restore dump.sql (plain dump, native)",
        &format!(
            "{dbb} restore -q --jobs 2 {wd}/dump.sql --into {} >/dev/null",
            db_url(&base, &dst("dbbsql"))?
        ),
        &[],
        size,
    )?);
    print_table(
        &format!("PostgreSQL backup, {:.0} MiB of table data", size as f64 / 1048576.0),
        &backup,
        "pg_dump -Fd -j2",
    );
    print_table(
        &format!("PostgreSQL restore, {:.0} MiB of table data", size as f64 / 1048576.0),
        &restore,
        "pg_restore -j2 (from -Fd)",
    );
    for d in ["dbb", "pgr", "psql", "dbbsql"] {
        let _ = psql(&base, &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", dst(d)));
    }
    if reuse.is_none() {
        let _ = psql(&base, &format!("DROP DATABASE IF EXISTS {src_db} WITH (FORCE)"));
    }
    let _ = std::fs::remove_dir_all(w);
    Ok(())
}
