//! SQLite: dbbackup create/restore vs `sqlite3 .backup` + `zstd` + `sha256sum` on the same file,
//! plus peak RSS of dbbackup at two database sizes (it must not grow with the size).

use anyhow::{Context, Result};

use crate::harness::{BenchOptions, Case, SummaryLine, best_of, measure, print_table, row, summary};
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
    let dbb_backup = "dbbackup create (zstd:3, -j2)";
    let peer_backup = "sqlite3 .backup + zstd -3 -T2 + sha256sum";
    let backup = best_of(&[
        Case::new(
            dbb_backup,
            format!(
                "{dbb} create -q --jobs 2 --source sqlite://{wd}/big.sqlite --repo {wd}/repo --temp-dir {wd} >/dev/null"
            ),
            size,
        )
        .before(format!("rm -rf {wd}/repo"))
        .output(w.join("repo")),
        Case::new(
            peer_backup,
            format!(
                "sqlite3 {wd}/big.sqlite '.backup {wd}/peer.sqlite' && zstd -q -f -3 -T2 {wd}/peer.sqlite -o {wd}/peer.sqlite.zst && sha256sum {wd}/peer.sqlite.zst >/dev/null && rm {wd}/peer.sqlite"
            ),
            size,
        )
        .output(w.join("peer.sqlite.zst")),
        Case::new(
            "sqlite3 .backup + gzip -6 (the usual cron job)",
            format!("sqlite3 {wd}/big.sqlite '.backup {wd}/peer2.sqlite' && gzip -6 -f {wd}/peer2.sqlite"),
            size,
        )
        .output(w.join("peer2.sqlite.gz")),
    ])?;
    let dbb_restore = "dbbackup restore (verify digests, page image read back, integrity_check)";
    let peer_restore = "zstd -d -T2 + sqlite3 integrity_check";
    let restore = best_of(&[
        Case::new(
            dbb_restore,
            format!(
                "{dbb} restore -q --jobs 2 --repo {wd}/repo latest --into sqlite://{wd}/restored.sqlite >/dev/null"
            ),
            size,
        )
        .before(format!("rm -f {wd}/restored.sqlite")),
        Case::new(
            peer_restore,
            format!(
                "zstd -q -f -d {wd}/peer.sqlite.zst -o {wd}/restored-peer.sqlite && sqlite3 {wd}/restored-peer.sqlite 'pragma integrity_check' | grep -qx ok"
            ),
            size,
        )
        .before(format!("rm -f {wd}/restored-peer.sqlite")),
    ])?;
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
    let mib = size >> 20;
    summary(SummaryLine {
        what: &format!("SQLite backup, {mib} MiB"),
        ours: row(&backup, dbb_backup)?,
        peer: row(&backup, peer_backup)?,
        goal: ">= 1.0x",
        ceiling: None,
    })?;
    summary(SummaryLine {
        what: &format!("SQLite restore, {mib} MiB"),
        ours: row(&restore, dbb_restore)?,
        peer: row(&restore, peer_restore)?,
        goal: ">= 1.0x",
        ceiling: None,
    })?;
    std::fs::remove_dir_all(w).context("clean up work dir")?;
    Ok(())
}
