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
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
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
