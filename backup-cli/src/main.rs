//! `dbbackup`: parse arguments, call one backup-core function, render the report. No backup
//! semantics live here.

mod cli;
mod commands;
mod config;
mod output;
mod progress;
mod signal;

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches};

use crate::cli::Cli;
use crate::output::Output;

fn main() -> ExitCode {
    // Find --config before the real parse, so its values can become flag defaults.
    let config_path = find_config_arg();
    let cmd = match config::apply(Cli::command(), config_path.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("dbbackup: {e:#}");
            return ExitCode::from(2);
        }
    };
    let cli = match cmd.try_get_matches().and_then(|m| Cli::from_arg_matches(&m)) {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 2 } else { 0 });
        }
    };
    init_logging(&cli);
    let out = Output::new(cli.json, cli.quiet);
    let mut builder = match on_one_thread(&cli) {
        true => tokio::runtime::Builder::new_current_thread(),
        false => tokio::runtime::Builder::new_multi_thread(),
    };
    let runtime = match builder.enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("dbbackup: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let code = runtime.block_on(commands::run(cli, &out));
    // Blocking codec threads finish on their own once their channels close.
    runtime.shutdown_timeout(std::time::Duration::from_secs(2));
    ExitCode::from(u8::try_from(code).unwrap_or(1))
}

/// Whether the command runs on a current-thread runtime: a restore into PostgreSQL. Its
/// pipeline runs under `block_on` on this thread either way (the loads, encoders and checksums
/// of every connection are one future); on a multi-thread runtime each connection's driver task
/// ran on a worker, and every message batch between a driver and the pipeline (the read-backs'
/// ~8 KiB batches above all) was a futex wake and a context switch across threads: ~290k per GiB,
/// ~30k on one thread, ~1.2 s less client CPU (docs/benchmarks.md, "The restore's runtime on one
/// thread"). Decompression and file reads still run on the blocking pool's threads.
fn on_one_thread(cli: &Cli) -> bool {
    match &cli.command {
        cli::Command::Restore(a) => backup_core::DatabaseUrl::parse(&a.into)
            .is_ok_and(|u| u.engine() == backup_core::Engine::Postgres),
        _ => false,
    }
}

fn find_config_arg() -> Option<std::path::PathBuf> {
    let args: Vec<String> = std::env::args().collect();
    for (i, a) in args.iter().enumerate() {
        if a == "--" {
            break;
        }
        if let Some(v) = a.strip_prefix("--config=") {
            return Some(v.into());
        }
        if a == "--config" {
            return args.get(i + 1).map(Into::into);
        }
    }
    std::env::var_os("DBBACKUP_CONFIG").map(Into::into)
}

fn init_logging(cli: &Cli) {
    let default = match (cli.quiet, cli.verbose) {
        (true, _) => "error",
        (false, 0) => "warn",
        (false, 1) => "info",
        (false, _) => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("DBBACKUP_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .init();
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    fn one_thread(args: &[&str]) -> bool {
        on_one_thread(&Cli::try_parse_from(std::iter::once("dbbackup").chain(args.iter().copied())).unwrap())
    }

    /// A restore into PostgreSQL runs on one thread; every other command, and restores into the
    /// other engines, on the multi-thread runtime.
    #[test]
    fn only_a_postgres_restore_runs_on_one_thread() {
        for into in ["postgres://u@h/app", "postgresql://u@h:5433/app?sslmode=require"] {
            assert!(one_thread(&["restore", "--repo", "/r", "latest", "--into", into]), "{into}");
        }
        for into in ["mysql://u@h/app", "sqlite:///tmp/app.sqlite"] {
            assert!(!one_thread(&["restore", "--repo", "/r", "latest", "--into", into]), "{into}");
        }
        assert!(!one_thread(&["create", "--source", "postgres://u@h/app", "--repo", "/r"]));
    }
}
