//! `guard`'s recovery time on a small Laravel-sized database (25 MiB by default) on every engine
//! whose server is configured: the time from the failed command to the database being live again,
//! as guard itself measures it (`recovery_ms`). The 1 GiB figures come from the engine benchmarks.

use anyhow::{Context, Result};

use crate::harness::{BenchOptions, Measured, guard_recovery, print_table, summary_time};

pub fn run(opts: &BenchOptions) -> Result<()> {
    let w = &opts.work_dir;
    let dbb = opts.dbbackup.display().to_string();
    let mut rows: Vec<Measured> = Vec::new();
    let db = w.join("app.sqlite");
    crate::sample::make_sqlite(&db, opts.size_mib)?;
    let size = std::fs::metadata(&db)?.len();
    let mut m = guard_recovery(&dbb, &format!("sqlite://{}", db.display()), w, size)?;
    m.tool = format!("SQLite, {} MiB", size >> 20);
    rows.push(m);
    if let Some(base) = server("DBBACKUP_BENCH_PG_URL", "DBBACKUP_TEST_PG_URL") {
        let name = format!("bench_guard_{}", std::process::id());
        let mut url = url::Url::parse(&base)?;
        url.set_path(&format!("/{name}"));
        let url = url.to_string();
        crate::postgres::create_generated(&base, &name, &url, opts.size_mib)?;
        let size = crate::postgres::table_bytes(&url)?;
        let r = guard_recovery(&dbb, &url, w, size);
        crate::postgres::drop_database(&base, &name);
        let mut m = r?;
        m.tool = format!("PostgreSQL, {} MiB", size >> 20);
        rows.push(m);
    }
    if let Some(base) = server("DBBACKUP_BENCH_MYSQL_URL", "DBBACKUP_TEST_MYSQL_URL") {
        let name = format!("bench_guard_{}", std::process::id());
        let mut url = url::Url::parse(&base)?;
        url.set_path(&format!("/{name}"));
        let url = url.to_string();
        crate::mysql::generate_into(&url, opts.size_mib)?;
        let size = crate::mysql::data_bytes_of(&url)?;
        let r = guard_recovery(&dbb, &url, w, size);
        let _ = crate::mysql::drop_database(&url);
        let mut m = r?;
        m.tool = format!("MariaDB, {} MiB", size >> 20);
        rows.push(m);
    }
    print_table("guard recovery time (dbbackup guard -- false), goal <= 2 s", &rows, "");
    for r in &rows {
        summary_time(&format!("guard recovery, {}", r.tool), r, "<= 2 s")?;
    }
    std::fs::remove_dir_all(w).context("clean up work dir")?;
    Ok(())
}

fn server(a: &str, b: &str) -> Option<String> {
    std::env::var(a).or_else(|_| std::env::var(b)).ok().filter(|s| !s.is_empty())
}
