//! Shared measurement: run a shell command under `/usr/bin/time`, collect wall time and peak
//! RSS, print a table.

use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, bail};

/// Command-line options common to every benchmark.
pub struct BenchOptions {
    /// Dataset size in MiB.
    pub size_mib: u64,
    /// Where data and outputs go (a fresh temp dir by default).
    pub work_dir: PathBuf,
    /// The dbbackup binary (release build next to this one by default).
    pub dbbackup: PathBuf,
}

impl BenchOptions {
    pub fn parse(args: &[String]) -> Result<Self> {
        let mut size_mib = 1024;
        let mut work_dir = None;
        let mut it = args.iter();
        while let Some(a) = it.next() {
            match a.as_str() {
                "--size-mib" => size_mib = it.next().context("--size-mib N")?.parse()?,
                "--work-dir" => work_dir = Some(PathBuf::from(it.next().context("--work-dir DIR")?)),
                other => bail!("unknown option {other}"),
            }
        }
        let work_dir = match work_dir {
            Some(d) => d,
            None => std::env::temp_dir().join(format!("dbbackup-bench-{}", std::process::id())),
        };
        std::fs::create_dir_all(&work_dir)?;
        let exe = std::env::current_exe()?;
        let dbbackup = exe.with_file_name("dbbackup");
        if !dbbackup.exists() {
            bail!("{} not found: cargo build --release -p backup-cli", dbbackup.display());
        }
        Ok(BenchOptions { size_mib, work_dir, dbbackup })
    }
}

/// One measured run.
pub struct Measured {
    pub tool: String,
    pub seconds: f64,
    pub peak_rss_kib: u64,
    /// Bytes of table data processed (for MB/s).
    pub data_bytes: u64,
    /// Size of what the tool wrote, if meaningful.
    pub output_bytes: Option<u64>,
}

impl Measured {
    pub fn mb_per_s(&self) -> f64 {
        self.data_bytes as f64 / 1e6 / self.seconds.max(1e-9)
    }
}

/// Runs `sh -c script` under `/usr/bin/time`, with extra environment.
pub fn measure(tool: &str, script: &str, env: &[(&str, &str)], data_bytes: u64) -> Result<Measured> {
    let stats = std::env::temp_dir().join(format!("dbbackup-bench-time-{}", std::process::id()));
    let started = Instant::now();
    let status = Command::new("/usr/bin/time")
        .arg("-f")
        .arg("%M")
        .arg("-o")
        .arg(&stats)
        .arg("sh")
        .arg("-c")
        .arg(script)
        .envs(env.iter().copied())
        .status()
        .with_context(|| format!("run {tool}"))?;
    let seconds = started.elapsed().as_secs_f64();
    if !status.success() {
        bail!("{tool} failed ({status}): {script}");
    }
    let text = std::fs::read_to_string(&stats)?;
    let peak_rss_kib = text.lines().last().unwrap_or("0").trim().parse().unwrap_or(0);
    eprintln!("  {tool}: {seconds:.2} s, peak RSS {} MiB", peak_rss_kib / 1024);
    Ok(Measured { tool: tool.to_string(), seconds, peak_rss_kib, data_bytes, output_bytes: None })
}

/// Total size of a file or directory tree.
pub fn du(path: &std::path::Path) -> u64 {
    let Ok(meta) = std::fs::symlink_metadata(path) else { return 0 };
    if meta.is_file() {
        return meta.len();
    }
    let Ok(rd) = std::fs::read_dir(path) else { return 0 };
    rd.filter_map(|e| e.ok()).map(|e| du(&e.path())).sum()
}

/// Prints a markdown table; `baseline` names the row ratios are computed against.
pub fn print_table(title: &str, rows: &[Measured], baseline: &str) {
    let base = rows.iter().find(|r| r.tool == baseline).map(Measured::mb_per_s);
    println!("\n### {title}\n");
    let cell = |s: &str| s.replace('|', "\\|");
    println!("| tool | seconds | MB/s | vs {} | output | peak RSS |", cell(baseline));
    println!("|---|---:|---:|---:|---:|---:|");
    for r in rows {
        let ratio = base.map(|b| format!("{:.2}x", r.mb_per_s() / b)).unwrap_or_default();
        let out = r.output_bytes.map(|b| format!("{:.1} MiB", b as f64 / 1048576.0)).unwrap_or_default();
        println!(
            "| {} | {:.2} | {:.1} | {} | {} | {} MiB |",
            cell(&r.tool),
            r.seconds,
            r.mb_per_s(),
            ratio,
            out,
            r.peak_rss_kib / 1024
        );
    }
}
