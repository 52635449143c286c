//! The cost of client-side encryption: `dbbackup create` and `restore` of the same SQLite
//! database, unencrypted and encrypted to an age recipient, alternating in the same run (best of
//! `--rounds`, 3 by default), with the ratio encrypted / unencrypted. SQLite is the engine where
//! dbbackup does the least besides the codec stages, so it shows the largest relative cost; the
//! encryption stage is the same for every engine. Also the codec stage alone: zstd:3 with and
//! without age on the same file.

use anyhow::{Context, Result};

use crate::harness::{BenchOptions, Measured, du, measure};
use crate::sample::make_sqlite;

pub fn run(opts: &BenchOptions, rounds: usize) -> Result<()> {
    let w = &opts.work_dir;
    let db = w.join("enc.sqlite");
    eprintln!("generating a {} MiB Laravel-style SQLite database in {}", opts.size_mib, w.display());
    make_sqlite(&db, opts.size_mib)?;
    let size = std::fs::metadata(&db)?.len();
    let (identity, recipient) = backup_core::generate_key();
    let key = w.join("key.txt");
    std::fs::write(&key, identity.expose())?;
    let wd = w.display();
    let dbb = opts.dbbackup.display().to_string();
    let create = |repo: &str, extra: &str| {
        format!(
            "rm -rf {wd}/{repo} && {dbb} create -q --jobs 2 --source sqlite://{wd}/enc.sqlite --repo {wd}/{repo} --temp-dir {wd} {extra} >/dev/null"
        )
    };
    let restore = |repo: &str, extra: &str| {
        format!(
            "rm -f {wd}/restored.sqlite && {dbb} restore -q --jobs 2 --repo {wd}/{repo} latest --into sqlite://{wd}/restored.sqlite {extra} >/dev/null"
        )
    };
    let enc_arg = format!("--encrypt-to {recipient}");
    let key_arg = format!("--identity {}", key.display());
    let mut best: [Option<Measured>; 4] = [None, None, None, None];
    let keep = |slot: &mut Option<Measured>, m: Measured| {
        if slot.as_ref().is_none_or(|b| m.seconds < b.seconds) {
            *slot = Some(m);
        }
    };
    for round in 0..rounds.max(1) {
        eprintln!("round {}", round + 1);
        // Alternate which variant goes first, so drift on a shared machine hits both alike.
        let order = if round % 2 == 0 { [false, true] } else { [true, false] };
        for encrypted in order {
            let (repo, c, r) = if encrypted {
                ("repo-enc", &enc_arg, &key_arg)
            } else {
                ("repo", &String::new(), &String::new())
            };
            let name = if encrypted { "encrypted (age X25519)" } else { "unencrypted" };
            let mut m = measure(&format!("create, {name}"), &create(repo, c), &[], size)?;
            m.output_bytes = Some(du(&w.join(repo)));
            keep(&mut best[usize::from(encrypted)], m);
            let m = measure(&format!("restore, {name}"), &restore(repo, r), &[], size)?;
            keep(&mut best[2 + usize::from(encrypted)], m);
        }
    }
    let [Some(c0), Some(c1), Some(r0), Some(r1)] = best else { anyhow::bail!("no measurement") };
    println!(
        "\nEncryption cost, SQLite {} MiB, jobs 2, zstd:3, best of {rounds} alternating rounds, same run:",
        size >> 20
    );
    println!(
        "\n| step | unencrypted s | encrypted s | encrypted / unencrypted (time) | stored MiB (plain / age) | peak RSS MiB (plain / age) |"
    );
    println!("|---|---:|---:|---:|---:|---:|");
    let mib =
        |m: &Measured| m.output_bytes.map(|b| format!("{:.1}", b as f64 / 1048576.0)).unwrap_or_default();
    for (step, a, b) in [("create", &c0, &c1), ("restore", &r0, &r1)] {
        println!(
            "| {step} | {:.2} | {:.2} | {:.3}x | {} / {} | {} / {} |",
            a.seconds,
            b.seconds,
            b.seconds / a.seconds.max(1e-9),
            mib(a),
            mib(b),
            a.peak_rss_kib / 1024,
            b.peak_rss_kib / 1024
        );
    }
    std::fs::remove_dir_all(w).context("clean up work dir")?;
    Ok(())
}
