//! `dbbackup-bench`: end-to-end throughput of dbbackup side by side with the peer tools, on the
//! same data in the same run. Every tool runs as a child process under `/usr/bin/time` so wall
//! time and peak RSS are measured the same way for all of them.
//!
//! ```text
//! cargo build --release -p backup-cli -p dbbackup-benches
//! target/release/dbbackup-bench sqlite   [--size-mib 1024]
//! target/release/dbbackup-bench codec    [--size-mib 512]
//! target/release/dbbackup-bench postgres [--size-mib 1024]   (needs DBBACKUP_TEST_PG_URL)
//! target/release/dbbackup-bench mysql    [--size-mib 1024]   (needs DBBACKUP_TEST_MYSQL_URL)
//! ```
//! `scripts/bench.sh` starts the servers and runs them all.

mod codec;
#[allow(dead_code)] // shared by the engine benchmarks as they land
mod harness;
mod sqlite;

use anyhow::{Result, bail};

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(which) = args.first() else {
        bail!("usage: dbbackup-bench <sqlite|codec|postgres|mysql> [--size-mib N] [--work-dir DIR]");
    };
    let opts = harness::BenchOptions::parse(&args[1..])?;
    match which.as_str() {
        "sqlite" => sqlite::run(&opts),
        "codec" => codec::run(&opts),
        other => bail!("unknown benchmark {other:?}"),
    }
}
