//! PostgreSQL: dbbackup create/restore vs `pg_dump -Fc`, `pg_dump -Fd -j2`, `pg_restore -j2` and
//! `psql -f` on the same Laravel-style data (generated server-side with generate_series), in one
//! run. The server comes from `DBBACKUP_BENCH_PG_URL` or `DBBACKUP_TEST_PG_URL`
//! (`scripts/dev-services.sh postgres`); client tools from PATH.

use anyhow::{Context, Result, bail};

use crate::harness::{BenchOptions, Case, Measured, SummaryLine, best_of, print_table, row, summary};

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

/// The connection flags of the PostgreSQL client tools for `base`.
fn conn_flags(base: &str) -> Result<String> {
    let u = url::Url::parse(base)?;
    Ok(format!(
        "-h {} -p {} -U {}",
        u.host_str().unwrap_or("127.0.0.1"),
        u.port().unwrap_or(5432),
        if u.username().is_empty() { "postgres" } else { u.username() }
    ))
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
    let size = table_bytes(&src)?;
    eprintln!(
        "generated {:.0} MiB of table data in {:.0} s",
        size as f64 / 1048576.0,
        t.elapsed().as_secs_f64()
    );
    // The server's CPU is reported beside each run's own (a server on this machine).
    let data_dir = psql(&base, "SHOW data_directory")?;
    crate::harness::watch_server(&std::path::Path::new(&data_dir).join("postmaster.pid"));
    let pg_env = ("PGDATABASE", src_db.as_str());
    let conn = conn_flags(&base)?;
    let dbb_backup = "dbbackup create (zstd:3, -j2, sha256, checksums)";
    let backup = best_of(&[
        Case::new(
            dbb_backup,
            format!("{dbb} create -q --jobs 2 --source {src} --repo {wd}/repo >/dev/null"),
            size,
        )
        .before(format!("rm -rf {wd}/repo"))
        .output(w.join("repo")),
        Case::new("pg_dump -Fc", format!("pg_dump {conn} -Fc -f {wd}/dump.fc"), size)
            .env(pg_env.0, pg_env.1)
            .output(w.join("dump.fc")),
        Case::new("pg_dump -Fd -j2", format!("pg_dump {conn} -Fd -j2 -f {wd}/dump.dir"), size)
            .before(format!("rm -rf {wd}/dump.dir"))
            .env(pg_env.0, pg_env.1)
            .output(w.join("dump.dir")),
        Case::new("pg_dump (plain)", format!("pg_dump {conn} -f {wd}/dump.sql"), size)
            .env(pg_env.0, pg_env.1)
            .output(w.join("dump.sql")),
    ])?;

    let dst = |name: &str| format!("bench_{name}_{tag}");
    let drop = |name: &str| format!("dropdb {conn} --if-exists --force {}", dst(name));
    let dbb_restore = "dbbackup restore (verify, shadow, checksums, swap)";
    let restore = best_of(&[
        Case::new(
            dbb_restore,
            format!(
                "{dbb} restore -q --jobs 2 --repo {wd}/repo latest --into {} >/dev/null",
                db_url(&base, &dst("dbb"))?
            ),
            size,
        )
        .before(drop("dbb")),
        Case::new(
            "pg_restore -j2 (from -Fd)",
            format!("createdb {conn} {0} && pg_restore {conn} -j2 -d {0} {wd}/dump.dir", dst("pgr")),
            size,
        )
        .before(drop("pgr")),
        Case::new(
            "psql -f (plain dump)",
            format!(
                "createdb {conn} {0} && psql {conn} -X -q -v ON_ERROR_STOP=1 -d {0} -f {wd}/dump.sql >/dev/null",
                dst("psql")
            ),
            size,
        )
        .before(drop("psql")),
        Case::new(
            "dbbackup restore dump.sql (plain dump, native)",
            format!(
                "{dbb} restore -q --jobs 2 {wd}/dump.sql --into {} >/dev/null",
                db_url(&base, &dst("dbbsql"))?
            ),
            size,
        )
        .before(drop("dbbsql")),
    ])?;
    let ceiling = ceiling(&base, &src, opts, size, &conn)?;
    // guard with nobody else connected (the server-side copy, renamed in) and with a session held
    // open (no copy possible: the backup is restored).
    let guard_alone = crate::harness::guard_recovery(&dbb, &src, w, size, None, "")?;
    let guard_held =
        crate::harness::guard_recovery(&dbb, &src, w, size, Some(&crate::guard::pg_holder(&src)), "")?;
    let mib = size as f64 / 1048576.0;
    print_table(&format!("PostgreSQL backup, {mib:.0} MiB of table data"), &backup, "pg_dump -Fd -j2");
    print_table(
        &format!("PostgreSQL restore, {mib:.0} MiB of table data"),
        &restore,
        "pg_restore -j2 (from -Fd)",
    );
    print_table(
        &format!("PostgreSQL server-side ingest ceiling, {mib:.0} MiB (no client; fastest variant counts)"),
        &ceiling,
        &ceiling[0].tool.clone(),
    );
    let guard_rows = [
        (format!("PostgreSQL {mib:.0} MiB"), &guard_alone, "<= 2 s"),
        (format!("PostgreSQL {mib:.0} MiB, a session connected"), &guard_held, "<= 15 s"),
    ];
    let table: Vec<Measured> =
        guard_rows.iter().map(|(what, g, _)| Measured { tool: g.describe(what), ..g.m.clone() }).collect();
    print_table(&format!("PostgreSQL guard recovery, {mib:.0} MiB"), &table, "");
    let best_ceiling = ceiling.iter().min_by(|a, b| a.seconds.total_cmp(&b.seconds)).context("no ceiling")?;
    summary(SummaryLine {
        what: &format!("PostgreSQL backup, {mib:.0} MiB"),
        ours: row(&backup, dbb_backup)?,
        peer: row(&backup, "pg_dump -Fd -j2")?,
        goal: ">= 2.0x",
        ceiling: None,
    })?;
    summary(SummaryLine {
        what: &format!("PostgreSQL restore, {mib:.0} MiB"),
        ours: row(&restore, dbb_restore)?,
        peer: row(&restore, "pg_restore -j2 (from -Fd)")?,
        goal: ">= 1.1x and >= 0.9 of the ceiling",
        ceiling: Some(best_ceiling),
    })?;
    for (what, g, goal) in &guard_rows {
        crate::harness::summary_time(&g.describe(what), &g.m, goal)?;
    }
    for d in ["dbb", "pgr", "psql", "dbbsql", "ceil"] {
        let _ = psql(&base, &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", dst(d)));
    }
    if reuse.is_none() {
        let _ = psql(&base, &format!("DROP DATABASE IF EXISTS {src_db} WITH (FORCE)"));
    }
    let _ = std::fs::remove_dir_all(w);
    Ok(())
}

/// Creates database `name` (at `url`) on the server at `base` and generates `mib` MiB into it.
pub fn create_generated(base: &str, name: &str, url: &str, mib: u64) -> Result<()> {
    psql(base, &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))?;
    psql(base, &format!("CREATE DATABASE {name}"))?;
    generate(url, mib)
}

/// Drops database `name` on the server at `base` (best effort).
pub fn drop_database(base: &str, name: &str) {
    let _ = psql(base, &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"));
}

/// Bytes of the public tables of the database at `url`.
pub fn table_bytes(url: &str) -> Result<u64> {
    Ok(psql(
        url,
        "SELECT sum(pg_table_size(c.oid)) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE c.relkind = 'r' AND n.nspname = 'public'",
    )?
    .parse()?)
}

/// The server's own ingest ceiling for the database at `src`: its tables exported once (untimed)
/// to server-side files, then loaded with no client in the data path — `COPY ... FROM 'file'` in
/// two sessions (the restore's parallelism), the same schema, then the same indexes and foreign
/// keys with `pg_restore -j2 --section=post-data`. Variants: plain COPY into the created tables;
/// `COPY ... FREEZE` after a TRUNCATE in the same transaction (no hint-bit rewrite later); and
/// the same from files in COPY's binary format with lz4 TOAST compression on the load sessions
/// (less parsing and cheaper compression per row: the server's least work for the same rows,
/// where it has lz4). Needs the server on this machine (it reads the files).
fn ceiling(base: &str, src: &str, opts: &BenchOptions, size: u64, conn: &str) -> Result<Vec<Measured>> {
    let w = &opts.work_dir;
    let dir = w.join("ceiling");
    std::fs::create_dir_all(&dir)?;
    // The server process (user postgres) writes and reads the files.
    std::process::Command::new("chmod").arg("777").arg(&dir).arg(w).status()?;
    let tables: Vec<(String, u64)> = psql(
        src,
        "SELECT c.relname || ' ' || pg_table_size(c.oid) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE c.relkind = 'r' AND n.nspname = 'public' ORDER BY pg_table_size(c.oid) DESC",
    )?
    .lines()
    .filter_map(|l| l.split_once(' ').map(|(n, s)| (n.to_string(), s.parse().unwrap_or(0))))
    .collect();
    let lz4 = psql(
        src,
        "SELECT count(*) FROM pg_settings WHERE name = 'default_toast_compression' AND 'lz4' = ANY(enumvals)",
    )? == "1";
    for (t, _) in &tables {
        psql(src, &format!("COPY public.\"{t}\" TO '{}/{t}.copy'", dir.display()))?;
        if lz4 {
            psql(src, &format!("COPY public.\"{t}\" TO '{}/{t}.bin' (FORMAT binary)", dir.display()))?;
        }
    }
    let wd = w.display();
    let srcdb = url::Url::parse(src)?.path().trim_start_matches('/').to_string();
    let sh = |cmd: String| -> Result<()> {
        if !std::process::Command::new("sh").arg("-c").arg(&cmd).status()?.success() {
            bail!("failed: {cmd}");
        }
        Ok(())
    };
    sh(format!("pg_dump {conn} -d {srcdb} -s --section=pre-data -f {wd}/pre.sql"))?;
    sh(format!("pg_dump {conn} -d {srcdb} -Fd -s -f {wd}/schema.dir"))?;
    // Two sessions, the tables split greedily by size.
    let mut sessions: [(u64, Vec<&str>); 2] = [(0, Vec::new()), (0, Vec::new())];
    for (t, s) in &tables {
        let i = if sessions[0].0 <= sessions[1].0 { 0 } else { 1 };
        sessions[i].0 += s;
        sessions[i].1.push(t);
    }
    let db = format!("bench_ceil_{}", std::process::id());
    // freeze: TRUNCATE + COPY FREEZE; binary: the binary files, lz4 TOAST on the load sessions.
    let script = |freeze: bool, binary: bool| -> String {
        let load: Vec<String> = sessions
            .iter()
            .map(|(_, ts)| {
                let stmts: String = ts
                    .iter()
                    .map(|t| {
                        let f = format!("{}/{t}.{}", dir.display(), if binary { "bin" } else { "copy" });
                        let with = if binary { "FREEZE, FORMAT binary" } else { "FREEZE" };
                        if freeze {
                            format!(
                                "BEGIN; TRUNCATE public.\\\"{t}\\\"; COPY public.\\\"{t}\\\" FROM '{f}' WITH ({with}); COMMIT; "
                            )
                        } else {
                            format!("COPY public.\\\"{t}\\\" FROM '{f}'; ")
                        }
                    })
                    .collect();
                let env = if binary { "PGOPTIONS='-c default_toast_compression=lz4' " } else { "" };
                format!("{env}psql {conn} -X -q -v ON_ERROR_STOP=1 -d {db} -c \"{stmts}\" &")
            })
            .collect();
        format!(
            "createdb {conn} {db} && psql {conn} -X -q -v ON_ERROR_STOP=1 -d {db} -f {wd}/pre.sql >/dev/null && \
             {{ {} wait; }} && pg_restore {conn} -j2 --section=post-data -d {db} {wd}/schema.dir",
            load.join(" ")
        )
    };
    let drop = format!("dropdb {conn} --if-exists --force {db}");
    let mut cases = vec![
        Case::new("server COPY FROM file x2, then indexes/FKs -j2", script(false, false), size)
            .before(drop.clone()),
        Case::new("server COPY FREEZE x2, then indexes/FKs -j2", script(true, false), size)
            .before(drop.clone()),
    ];
    if lz4 {
        cases.push(
            Case::new(
                "server binary COPY FREEZE x2, lz4 TOAST, then indexes/FKs -j2",
                script(true, true),
                size,
            )
            .before(drop.clone()),
        );
    }
    let rows = best_of(&cases)?;
    // The ceiling must have loaded everything: same tables, same bytes.
    let loaded = table_bytes(&db_url(base, &db)?)?;
    if loaded == 0 {
        bail!("ceiling database {db} is empty");
    }
    sh(drop)?;
    Ok(rows)
}
