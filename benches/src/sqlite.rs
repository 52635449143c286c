//! SQLite: dbbackup create/restore vs `sqlite3 .backup` + `zstd` + `sha256sum` on the same file,
//! plus peak RSS of dbbackup at two database sizes (it must not grow with the size).

use anyhow::{Context, Result};

use crate::harness::{BenchOptions, Measured, du, measure, print_table};
use crate::sample::make_sqlite;

pub fn run(opts: &BenchOptions) -> Result<()> {
    let w = &opts.work_dir;
    let dbb = opts.dbbackup.display().to_string();
    let small = w.join("small.sqlite");
    let big = w.join("big.sqlite");
    let small_mib = (opts.size_mib / 8).max(16);
    eprintln!(
        "generating {small_mib} MiB and {} MiB Laravel-style SQLite databases in {}",
        opts.size_mib,
        w.display()
    );
    make_sqlite(&small, small_mib)?;
    make_sqlite(&big, opts.size_mib)?;
    let size = std::fs::metadata(&big)?.len();
    let wd = w.display();
    let mut backup: Vec<Measured> = Vec::new();
    let mut m = measure(
        "dbbackup create (zstd:3, -j2)",
        &format!(
            "{dbb} create -q --jobs 2 --source sqlite://{wd}/big.sqlite --repo {wd}/repo --temp-dir {wd} >/dev/null"
        ),
        &[],
        size,
    )?;
    m.output_bytes = Some(du(&w.join("repo")));
    backup.push(m);
    let mut m = measure(
        "sqlite3 .backup + zstd -3 -T2 + sha256sum",
        &format!(
            "sqlite3 {wd}/big.sqlite '.backup {wd}/peer.sqlite' && zstd -q -f -3 -T2 {wd}/peer.sqlite -o {wd}/peer.sqlite.zst && sha256sum {wd}/peer.sqlite.zst >/dev/null && rm {wd}/peer.sqlite"
        ),
        &[],
        size,
    )?;
    m.output_bytes = Some(std::fs::metadata(w.join("peer.sqlite.zst"))?.len());
    backup.push(m);
    let mut m = measure(
        "sqlite3 .backup + gzip -6 (the usual cron job)",
        &format!("sqlite3 {wd}/big.sqlite '.backup {wd}/peer2.sqlite' && gzip -6 -f {wd}/peer2.sqlite"),
        &[],
        size,
    )?;
    m.output_bytes = Some(std::fs::metadata(w.join("peer2.sqlite.gz"))?.len());
    backup.push(m);
    let restore = vec![
        measure(
            "dbbackup restore (verify digests, integrity_check, table checksums)",
            &format!(
                "{dbb} restore -q --jobs 2 --repo {wd}/repo latest --into sqlite://{wd}/restored.sqlite >/dev/null"
            ),
            &[],
            size,
        )?,
        measure(
            "zstd -d -T2 + sqlite3 integrity_check",
            &format!(
                "zstd -q -f -d {wd}/peer.sqlite.zst -o {wd}/restored-peer.sqlite && sqlite3 {wd}/restored-peer.sqlite 'pragma integrity_check' | grep -qx ok"
            ),
            &[],
            size,
        )?,
    ];
    let small_size = std::fs::metadata(&small)?.len();
    let rss = vec![
        measure(
            &format!("dbbackup create, {} MiB database", small_size >> 20),
            &format!(
                "{dbb} create -q --jobs 2 --source sqlite://{wd}/small.sqlite --repo {wd}/repo-small --temp-dir {wd} >/dev/null"
            ),
            &[],
            small_size,
        )?,
        measure(
            &format!("dbbackup create, {} MiB database", size >> 20),
            &format!(
                "{dbb} create -q --jobs 2 --source sqlite://{wd}/big.sqlite --repo {wd}/repo-rss --temp-dir {wd} >/dev/null"
            ),
            &[],
            size,
        )?,
    ];
    println!("\nSQLite, {} MiB Laravel-style database file, 2 cores, same run:", size >> 20);
    print_table(
        "backup (snapshot + compress + sha256 + write)",
        &backup,
        "sqlite3 .backup + zstd -3 -T2 + sha256sum",
    );
    print_table("restore", &restore, "zstd -d -T2 + sqlite3 integrity_check");
    print_table("peak memory vs database size", &rss, &rss[0].tool.clone());
    std::fs::remove_dir_all(w).context("clean up work dir")?;
    Ok(())
}
