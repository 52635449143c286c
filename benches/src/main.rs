//! `dbbackup-bench`: end-to-end throughput of dbbackup side by side with the peer tools, on the
//! same data in the same run. Every tool runs as a child process under `/usr/bin/time` so wall
//! time and peak RSS are measured the same way for all of them.
//!
//! ```text
//! cargo build --release -p backup-cli -p dbbackup-benches
//! target/release/dbbackup-bench sqlite   [--size-mib 1024]
//! target/release/dbbackup-bench postgres [--size-mib 1024]   (server: DBBACKUP_BENCH_PG_URL)
//! target/release/dbbackup-bench mysql    [--size-mib 1024]   (server: DBBACKUP_BENCH_MYSQL_URL)
//! target/release/dbbackup-bench mysql-generate URL [MIB]       (the dataset only, for profiling)
//! target/release/dbbackup-bench codec    [--size-mib 512]
//! target/release/dbbackup-bench guard    [--size-mib 25]     (guard's recovery time, every engine)
//! target/release/dbbackup-bench encryption [--size-mib 512] [--rounds 3]  (age vs unencrypted)
//! target/release/dbbackup-bench sample-sqlite PATH [--size-mib 50]   (the README demo's data)
//! target/release/dbbackup-bench describe PATH [PATH...]               (row counts per table)
//! ```
//! `scripts/bench.sh` starts the servers and runs them all.

mod codec;
mod encryption;
mod guard;
#[allow(dead_code)] // shared by the engine benchmarks as they land
mod harness;
mod mysql;
mod postgres;
mod sample;
mod sqlite;

use std::path::Path;

use anyhow::{Context, Result, bail};

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(which) = args.first() else {
        bail!(
            "usage: dbbackup-bench <sqlite|postgres|codec|sample-sqlite PATH|describe PATH...> [--size-mib N] [--work-dir DIR]"
        );
    };
    match which.as_str() {
        "sample-sqlite" => {
            let path = args.get(1).context("sample-sqlite PATH [--size-mib N]")?;
            let size = match args.get(2).map(String::as_str) {
                Some("--size-mib") => args.get(3).context("--size-mib N")?.parse()?,
                _ => 50,
            };
            sample::make_sqlite(Path::new(path), size)
        }
        "describe" => {
            let paths = &args[1..];
            let described: Vec<_> =
                paths.iter().map(|p| sample::describe(Path::new(p))).collect::<Result<_>>()?;
            println!(
                "{:<16} {}",
                "table",
                paths.iter().map(|p| format!("{:>18}", short(p))).collect::<String>()
            );
            for (i, (name, _)) in described[0].iter().enumerate() {
                let counts: String = described
                    .iter()
                    .map(|d| format!("{:>18}", d.get(i).map(|x| x.1).unwrap_or(-1)))
                    .collect();
                println!("{name:<16} {counts}");
            }
            Ok(())
        }
        "codec-run" => codec::codec_run(&args[1..]),
        "postgres-generate" => {
            let url = args.get(1).context("postgres-generate URL [MIB]")?;
            postgres::generate(url, args.get(2).map(|s| s.parse()).transpose()?.unwrap_or(1024))
        }
        "mysql-generate" => {
            let url = args.get(1).context("mysql-generate URL [MIB]  (the URL's database is created)")?;
            mysql::generate_into(url, args.get(2).map(|s| s.parse()).transpose()?.unwrap_or(1024))
        }
        "encryption" => {
            let mut rest: Vec<String> = args[1..].to_vec();
            let mut rounds = 3;
            if let Some(i) = rest.iter().position(|a| a == "--rounds") {
                rounds = rest.get(i + 1).context("--rounds N")?.parse()?;
                rest.drain(i..i + 2);
            }
            encryption::run(&harness::BenchOptions::parse(&rest)?, rounds)
        }
        _ => {
            let opts = harness::BenchOptions::parse(&args[1..])?;
            match which.as_str() {
                "sqlite" => sqlite::run(&opts),
                "postgres" => postgres::run(&opts),
                "mysql" => mysql::run(&opts),
                "codec" => codec::run(&opts),
                "guard" => guard::run(&opts),
                other => bail!("unknown benchmark {other:?}"),
            }
        }
    }
}

fn short(p: &str) -> &str {
    Path::new(p).file_name().and_then(|f| f.to_str()).unwrap_or(p)
}
