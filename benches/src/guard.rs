//! `guard`'s recovery time on a small Laravel-sized database (25 MiB by default) on every engine
//! whose server is configured: the time from the failed command to the database being live again,
//! as guard itself measures it (`recovery_ms`). PostgreSQL twice: with nobody else connected (guard
//! keeps a server-side copy and rolls back by renaming it in) and with a session held open (an
//! application that was not stopped: no copy, the backup is restored). MariaDB twice: the backup
//! restored after the command, and `--staged-rollback` (restored into a shadow before the command,
//! swapped in). The 1 GiB figures come from the engine benchmarks.

use anyhow::{Context, Result};

use crate::harness::{BenchOptions, Guarded, guard_recovery, print_table, summary_time};

/// A background command that keeps a session connected to the PostgreSQL database at `url`.
pub fn pg_holder(url: &str) -> String {
    format!("psql '{url}' -X -q -c 'SELECT pg_sleep(3600)' >/dev/null 2>&1")
}

pub fn run(opts: &BenchOptions) -> Result<()> {
    let w = &opts.work_dir;
    let dbb = opts.dbbackup.display().to_string();
    let mut rows: Vec<(String, Guarded)> = Vec::new();
    let db = w.join("app.sqlite");
    crate::sample::make_sqlite(&db, opts.size_mib)?;
    let size = std::fs::metadata(&db)?.len();
    let g = guard_recovery(&dbb, &format!("sqlite://{}", db.display()), w, size, None, "")?;
    rows.push((format!("SQLite, {} MiB", size >> 20), g));
    if let Some(base) = server("DBBACKUP_BENCH_PG_URL", "DBBACKUP_TEST_PG_URL") {
        let name = format!("bench_guard_{}", std::process::id());
        let mut url = url::Url::parse(&base)?;
        url.set_path(&format!("/{name}"));
        let url = url.to_string();
        crate::postgres::create_generated(&base, &name, &url, opts.size_mib)?;
        let size = crate::postgres::table_bytes(&url)?;
        let r = guard_recovery(&dbb, &url, w, size, None, "").and_then(|alone| {
            let held = guard_recovery(&dbb, &url, w, size, Some(&pg_holder(&url)), "")?;
            Ok((alone, held))
        });
        crate::postgres::drop_database(&base, &name);
        let (alone, held) = r?;
        rows.push((format!("PostgreSQL, {} MiB", size >> 20), alone));
        rows.push((format!("PostgreSQL, {} MiB, a session connected", size >> 20), held));
    }
    if let Some(base) = server("DBBACKUP_BENCH_MYSQL_URL", "DBBACKUP_TEST_MYSQL_URL") {
        let name = format!("bench_guard_{}", std::process::id());
        let mut url = url::Url::parse(&base)?;
        url.set_path(&format!("/{name}"));
        let url = url.to_string();
        crate::mysql::generate_into(&url, opts.size_mib)?;
        let size = crate::mysql::data_bytes_of(&url)?;
        let r = guard_recovery(&dbb, &url, w, size, None, "").and_then(|restore| {
            let staged = guard_recovery(&dbb, &url, w, size, None, "--staged-rollback")?;
            Ok((restore, staged))
        });
        let _ = crate::mysql::drop_database(&url);
        let (restore, staged) = r?;
        rows.push((format!("MariaDB, {} MiB", size >> 20), restore));
        rows.push((format!("MariaDB, {} MiB", size >> 20), staged));
    }
    let table: Vec<_> = rows
        .iter()
        .map(|(what, g)| crate::harness::Measured { tool: g.describe(what), ..g.m.clone() })
        .collect();
    print_table("guard recovery time (dbbackup guard -- false), goal <= 2 s", &table, "");
    for (what, g) in &rows {
        summary_time(&g.describe(what), &g.m, "<= 2 s")?;
    }
    std::fs::remove_dir_all(w).context("clean up work dir")?;
    Ok(())
}

fn server(a: &str, b: &str) -> Option<String> {
    std::env::var(a).or_else(|_| std::env::var(b)).ok().filter(|s| !s.is_empty())
}
