//! Shared measurement: run a shell command under `/usr/bin/time`, collect wall time, CPU
//! (the command's own, and the database server's when [`watch_server`] named one) and peak RSS,
//! print a table.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::{Duration, Instant};

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
#[derive(Clone)]
pub struct Measured {
    pub tool: String,
    pub seconds: f64,
    pub peak_rss_kib: u64,
    /// Bytes of table data processed (for MB/s).
    pub data_bytes: u64,
    /// Size of what the tool wrote, if meaningful.
    pub output_bytes: Option<u64>,
    /// CPU seconds (user + system) of the measured command and every process it waited for
    /// (none where the seconds are not the command's wall time: guard's recovery times).
    pub client_cpu: Option<f64>,
    /// CPU seconds of the database server during the run, when [`watch_server`] named one.
    pub server_cpu: Option<f64>,
}

impl Measured {
    pub fn mb_per_s(&self) -> f64 {
        self.data_bytes as f64 / 1e6 / self.seconds.max(1e-9)
    }
}

/// The database server whose CPU [`measure`] reports: its main process (PostgreSQL's postmaster,
/// `mariadbd`), read from its pid file.
static SERVER: Mutex<Option<u32>> = Mutex::new(None);

/// From now on, [`measure`] waits for the server whose pid file is `pid_file` to be idle before
/// each run and reports its CPU during the run. A server that is not on this machine (no
/// readable pid file or `/proc` entry) is left out with a note: its CPU is then not reported.
pub fn watch_server(pid_file: &Path) {
    let pid = std::fs::read_to_string(pid_file)
        .ok()
        .and_then(|t| t.lines().next()?.trim().parse::<u32>().ok())
        .filter(|pid| Path::new(&format!("/proc/{pid}/stat")).exists());
    if pid.is_none() {
        eprintln!("  (no server pid from {}: the server's CPU is not reported)", pid_file.display());
    }
    *SERVER.lock().unwrap_or_else(|e| e.into_inner()) = pid;
}

/// Clock ticks per second of `/proc/*/stat` (`getconf CLK_TCK`, 100 if it cannot say).
fn clock_ticks() -> f64 {
    static TICKS: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
            .unwrap_or(100.0)
    })
}

/// The fields of a `/proc/PID/stat` line after the command name (which may hold spaces and
/// parentheses): index 0 is field 3 (state), so field N of proc(5) is index N - 3.
fn stat_fields(line: &str) -> Option<Vec<u64>> {
    let rest = &line[line.rfind(')')? + 1..];
    // The state is a letter: counted as 0 so that the indices stay proc(5)'s.
    Some(rest.split_whitespace().map(|f| f.parse().unwrap_or(0)).collect())
}

/// CPU ticks of process `pid` and every child of it: its own user and system time, that of the
/// children it has reaped (a PostgreSQL backend that exited), and that of each live child. A
/// child reaped while the children are being summed would be counted neither live nor reaped,
/// so the sum is taken again until the reaped children's time did not change across it.
fn tree_ticks(pid: u32) -> Option<u64> {
    tree_ticks_parts(pid).map(|(mine, reaped, live)| mine + reaped + live)
}

/// [`tree_ticks`] in its parts: the process's own, its reaped children's, its live children's.
fn tree_ticks_parts(pid: u32) -> Option<(u64, u64, u64)> {
    // utime 14, stime 15, cutime 16, cstime 17.
    let own = || -> Option<(u64, u64)> {
        let f = stat_fields(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)?;
        Some((f.get(11..13)?.iter().sum(), f.get(13..15)?.iter().sum()))
    };
    for _ in 0..10 {
        let (_, reaped) = own()?;
        let live = live_children_ticks(pid)?;
        let (mine, reaped_after) = own()?;
        if reaped_after == reaped {
            return Some((mine, reaped, live));
        }
    }
    None
}

/// User and system ticks of the live children of `pid`.
fn live_children_ticks(pid: u32) -> Option<u64> {
    let mut ticks = 0;
    for e in std::fs::read_dir("/proc").ok()?.flatten() {
        let name = e.file_name();
        let Some(child) = name.to_str().and_then(|n| n.parse::<u32>().ok()) else { continue };
        let Ok(line) = std::fs::read_to_string(format!("/proc/{child}/stat")) else { continue };
        // ppid is field 4.
        if let Some(f) = stat_fields(&line)
            && f.get(1) == Some(&u64::from(pid))
        {
            ticks += f.get(11..15).map(|t| t.iter().sum::<u64>()).unwrap_or(0);
        }
    }
    Some(ticks)
}

/// CPU seconds the watched server has used so far.
fn server_cpu_now() -> Option<f64> {
    let pid = (*SERVER.lock().unwrap_or_else(|e| e.into_inner()))?;
    Some(tree_ticks(pid)? as f64 / clock_ticks())
}

/// Waits (at most 30 s) until the watched server uses under 10% of a core over half a second,
/// so that background work a previous run left (checkpoints, page flushing, vacuum, purge) is
/// not counted in, and does not slow, the next run.
fn wait_server_idle() {
    let Some(mut last) = server_cpu_now() else { return };
    let until = Instant::now() + Duration::from_secs(30);
    while Instant::now() < until {
        std::thread::sleep(Duration::from_millis(500));
        let Some(now) = server_cpu_now() else { return };
        if now - last < 0.05 {
            return;
        }
        last = now;
    }
    eprintln!("  (the server was still busy after 30 s; measuring anyway)");
}

/// Runs `sh -c script` under `/usr/bin/time`, with extra environment.
pub fn measure(tool: &str, script: &str, env: &[(&str, &str)], data_bytes: u64) -> Result<Measured> {
    let stats = std::env::temp_dir().join(format!("dbbackup-bench-time-{}", std::process::id()));
    wait_server_idle();
    let server_before = server_cpu_now();
    let started = Instant::now();
    let status = Command::new("/usr/bin/time")
        .arg("-f")
        .arg("%U %S %M")
        .arg("-o")
        .arg(&stats)
        .arg("sh")
        .arg("-c")
        .arg(script)
        .envs(env.iter().copied())
        .status()
        .with_context(|| format!("run {tool}"))?;
    let seconds = started.elapsed().as_secs_f64();
    let server_cpu = server_before.zip(server_cpu_now()).map(|(b, a)| a - b);
    // /usr/bin/time's report is read once and removed, whatever the outcome.
    let text = std::fs::read_to_string(&stats);
    let _ = std::fs::remove_file(&stats);
    if !status.success() {
        bail!("{tool} failed ({status}): {script}");
    }
    let text = text?;
    let last: Vec<&str> = text.lines().last().unwrap_or("").split_whitespace().collect();
    let field = |i: usize| last.get(i).and_then(|v| v.parse::<f64>().ok());
    let client_cpu = field(0).unwrap_or(0.0) + field(1).unwrap_or(0.0);
    let peak_rss_kib = field(2).unwrap_or(0.0) as u64;
    let server = server_cpu.map(|s| format!(", server CPU {s:.2} s")).unwrap_or_default();
    eprintln!(
        "  {tool}: {seconds:.2} s, CPU {client_cpu:.2} s{server}, peak RSS {} MiB",
        peak_rss_kib / 1024
    );
    Ok(Measured {
        tool: tool.to_string(),
        seconds,
        peak_rss_kib,
        data_bytes,
        output_bytes: None,
        client_cpu: Some(client_cpu),
        server_cpu,
    })
}

/// "client + server = total" CPU seconds of a run, and what that total is on 2 cores: the wall
/// time the run could not go below on this machine even with both cores busy throughout.
pub fn cpu_cell(m: &Measured) -> String {
    match (m.client_cpu, m.server_cpu) {
        (Some(c), Some(s)) => format!("{c:.1} + {s:.1} = {:.1} (/2 = {:.1} s)", c + s, (c + s) / 2.0),
        (Some(c), None) => format!("{c:.1} (/2 = {:.1} s)", c / 2.0),
        (None, _) => String::new(),
    }
}

/// One tool of a side-by-side comparison, run by [`best_of`].
pub struct Case {
    /// Name printed in the tables.
    pub tool: String,
    /// The measured shell script.
    pub script: String,
    /// Untimed shell script run before every attempt (e.g. drop the previous attempt's target).
    pub before: Option<String>,
    /// Extra environment of the measured script.
    pub env: Vec<(String, String)>,
    /// Bytes of table data processed (for MB/s).
    pub data_bytes: u64,
    /// What the tool writes, measured after its last attempt.
    pub output: Option<std::path::PathBuf>,
}

impl Case {
    pub fn new(tool: &str, script: String, data_bytes: u64) -> Self {
        Case { tool: tool.to_string(), script, before: None, env: Vec::new(), data_bytes, output: None }
    }
    pub fn before(mut self, script: String) -> Self {
        self.before = Some(script);
        self
    }
    pub fn env(mut self, k: &str, v: &str) -> Self {
        self.env.push((k.to_string(), v.to_string()));
        self
    }
    pub fn output(mut self, path: std::path::PathBuf) -> Self {
        self.output = Some(path);
        self
    }
}

/// Rounds of every comparison: `DBBACKUP_BENCH_ROUNDS` (default 2).
pub fn rounds() -> usize {
    std::env::var("DBBACKUP_BENCH_ROUNDS").ok().and_then(|v| v.parse().ok()).filter(|&n| n > 0).unwrap_or(2)
}

/// Runs every case [`rounds`] times, alternating the order between rounds (forwards, then
/// backwards) so no tool always runs on a warmer or busier machine, and keeps each tool's best
/// wall time. Peak RSS is the highest of its attempts (a memory claim must hold for all of them).
pub fn best_of(cases: &[Case]) -> Result<Vec<Measured>> {
    let mut best: Vec<Option<Measured>> = cases.iter().map(|_| None).collect();
    for round in 0..rounds() {
        let order: Vec<usize> =
            if round % 2 == 0 { (0..cases.len()).collect() } else { (0..cases.len()).rev().collect() };
        for i in order {
            let c = &cases[i];
            if let Some(before) = &c.before {
                let ok = Command::new("sh").arg("-c").arg(before).status()?.success();
                if !ok {
                    bail!("preparing {} failed: {before}", c.tool);
                }
            }
            let env: Vec<(&str, &str)> = c.env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            let m = measure(&c.tool, &c.script, &env, c.data_bytes)?;
            best[i] = Some(match best[i].take() {
                None => m,
                Some(b) => {
                    let rss = b.peak_rss_kib.max(m.peak_rss_kib);
                    let mut keep = if m.seconds < b.seconds { m } else { b };
                    keep.peak_rss_kib = rss;
                    keep
                }
            });
        }
    }
    let mut out = Vec::new();
    for (c, m) in cases.iter().zip(best) {
        let mut m = m.context("no rounds ran")?;
        m.output_bytes = c.output.as_deref().map(du);
        out.push(m);
    }
    Ok(out)
}

/// Finds a measured row by tool name.
pub fn row<'a>(rows: &'a [Measured], tool: &str) -> Result<&'a Measured> {
    rows.iter().find(|r| r.tool == tool).with_context(|| format!("no row {tool:?}"))
}

/// One line of the summary table `scripts/bench.sh` prints at the end of a run: appended to the
/// file named by `DBBACKUP_BENCH_SUMMARY` (nothing when unset).
pub struct SummaryLine<'a> {
    pub what: &'a str,
    pub ours: &'a Measured,
    pub peer: &'a Measured,
    pub goal: &'a str,
    /// The server's own ingest ceiling for restores (faster is better; ours as a fraction of it).
    pub ceiling: Option<&'a Measured>,
}

pub fn summary(line: SummaryLine<'_>) -> Result<()> {
    let Ok(path) = std::env::var("DBBACKUP_BENCH_SUMMARY") else { return Ok(()) };
    let ratio = line.peer.seconds / line.ours.seconds.max(1e-9);
    let ceiling = line
        .ceiling
        .map(|c| format!("{:.2} s; ours at {:.2} of it", c.seconds, c.seconds / line.ours.seconds.max(1e-9)))
        .unwrap_or_default();
    let cell = |s: &str| s.replace('|', "\\|");
    let cpu = [Some(line.ours), Some(line.peer), line.ceiling]
        .iter()
        .flatten()
        .map(|m| cpu_cell(m))
        .collect::<Vec<_>>()
        .join(" / ");
    let text = format!(
        "| {} | {:.2} s | {} | {:.2} s | {:.2}x | {} | {} | {} MiB | {} MiB | {} |\n",
        cell(line.what),
        line.ours.seconds,
        cell(&line.peer.tool),
        line.peer.seconds,
        ratio,
        cell(line.goal),
        ceiling,
        line.ours.peak_rss_kib / 1024,
        line.peer.peak_rss_kib / 1024,
        cpu
    );
    use std::io::Write as _;
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .with_context(|| format!("open {path}"))?
        .write_all(text.as_bytes())?;
    Ok(())
}

/// A recovery-time line of the summary table (no peer: the goal is an absolute time).
pub fn summary_time(what: &str, m: &Measured, goal: &str) -> Result<()> {
    let Ok(path) = std::env::var("DBBACKUP_BENCH_SUMMARY") else { return Ok(()) };
    use std::io::Write as _;
    let mut f = std::fs::OpenOptions::new().create(true).append(true).open(&path).context("summary")?;
    writeln!(f, "| {what} | {:.2} s | | | | {goal} | | {} MiB | | |", m.seconds, m.peak_rss_kib / 1024)?;
    Ok(())
}

/// One engine's guard measurement ([`guard_recovery`]).
pub struct Guarded {
    /// Seconds: the best recovery time; peak RSS: the guard process's, highest of the rounds.
    pub m: Measured,
    /// How guard rolled back: `clone` (the server-side copy renamed in), `staged` (the restore
    /// staged before the command, swapped in) or `restore`.
    pub path: String,
    /// Time guard took, before the command, to make the copy (or to find it could not), and with
    /// `--staged-rollback` to stage the restore, in the best round: the up-front cost of the
    /// `clone` and `staged` paths.
    pub point_seconds: f64,
}

impl Guarded {
    /// The summary's description: what was measured, and how it rolled back.
    pub fn describe(&self, what: &str) -> String {
        if self.path == "clone" {
            format!(
                "guard recovery, {what} (rollback: clone, taken in {:.2} s before the command)",
                self.point_seconds
            )
        } else if self.path == "staged" {
            format!(
                "guard recovery, {what} (rollback: staged, restored into a shadow in {:.2} s before the command)",
                self.point_seconds
            )
        } else {
            // rollback_point_ms means the same on both paths: time spent before the command on
            // the server-side copy (here: finding there can be none; MariaDB never has one).
            format!(
                "guard recovery, {what} (rollback: {}, {:.2} s before the command finding no copy could be taken)",
                self.path, self.point_seconds
            )
        }
    }
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
    println!(
        "| tool | seconds | MB/s | vs {} | output | peak RSS | CPU s: client + server = total (/2 cores) |",
        cell(baseline)
    );
    println!("|---|---:|---:|---:|---:|---:|---:|");
    for r in rows {
        let ratio = base.map(|b| format!("{:.2}x", r.mb_per_s() / b)).unwrap_or_default();
        let out = r.output_bytes.map(|b| format!("{:.1} MiB", b as f64 / 1048576.0)).unwrap_or_default();
        println!(
            "| {} | {:.2} | {:.1} | {} | {} | {} MiB | {} |",
            cell(&r.tool),
            r.seconds,
            r.mb_per_s(),
            ratio,
            out,
            r.peak_rss_kib / 1024,
            cpu_cell(r)
        );
    }
}

/// `dbbackup guard -- false` on the database at `source`, [`rounds`] times: the safety backup,
/// a command that fails at once, then the rollback. The seconds are the best recovery time guard
/// itself measured (`recovery_ms`: from the command's failure to the database being live again);
/// the peak RSS is the whole guard process's. `hold`, when given, is a shell command started in
/// the background before guard and killed after it: a session connected to the database (an
/// application that was not stopped), under which PostgreSQL cannot copy the database. `flags`
/// are more guard flags (`--staged-rollback`).
pub fn guard_recovery(
    dbb: &str,
    source: &str,
    work: &std::path::Path,
    data_bytes: u64,
    hold: Option<&str>,
    flags: &str,
) -> Result<Guarded> {
    let repo = work.join(format!("guard-repo-{}", std::process::id()));
    let out = work.join("guard.json");
    let mut best: Option<Guarded> = None;
    for _ in 0..rounds() {
        let _ = std::fs::remove_dir_all(&repo);
        // guard exits with the command's status (1 from `false`): that is the expected outcome.
        let guard = format!(
            "{dbb} guard --json -q --jobs 2 {flags} --source '{source}' --repo '{}' -- false > '{}'; test $? -eq 1",
            repo.display(),
            out.display()
        );
        let script = match hold {
            // The holder is given a moment to connect; guard's rollback may end its session.
            Some(h) => {
                format!("{h} & holder=$!; sleep 1; {guard}; s=$?; kill $holder 2>/dev/null; wait; exit $s")
            }
            None => guard,
        };
        let whole = measure("dbbackup guard -- false (recovery time)", &script, &[], data_bytes)?;
        let text: String = std::fs::read_to_string(&out)?.chars().filter(|c| !c.is_whitespace()).collect();
        let number = |key: &str| -> Result<u64> {
            text.split(&format!("\"{key}\":"))
                .nth(1)
                .and_then(|v| v.split(|c: char| !c.is_ascii_digit()).next()?.parse::<u64>().ok())
                .with_context(|| format!("no {key} in guard's --json output: {text}"))
        };
        let recovery_ms = number("recovery_ms")?;
        let point_ms = number("rollback_point_ms")?;
        if !text.contains("\"rolled_back\":true") {
            bail!("guard did not roll back: {text}");
        }
        let path = text
            .split("\"rollback\":\"")
            .nth(1)
            .and_then(|v| v.split('"').next())
            .context("no rollback path in guard's --json output")?
            .to_string();
        eprintln!("    rollback: {path}, rollback point taken in {point_ms} ms, recovery {recovery_ms} ms");
        let m = Guarded {
            m: Measured { seconds: recovery_ms as f64 / 1000.0, client_cpu: None, server_cpu: None, ..whole },
            path,
            point_seconds: point_ms as f64 / 1000.0,
        };
        // Every round must take the same path, or the best time would hide the slower one.
        if let Some(b) = &best
            && b.path != m.path
        {
            bail!("guard rolled back by {} in one round and by {} in another", b.path, m.path);
        }
        best = Some(match best.take() {
            Some(mut b) if b.m.seconds <= m.m.seconds => {
                b.m.peak_rss_kib = b.m.peak_rss_kib.max(m.m.peak_rss_kib);
                b
            }
            Some(b) => {
                Guarded { m: Measured { peak_rss_kib: b.m.peak_rss_kib.max(m.m.peak_rss_kib), ..m.m }, ..m }
            }
            None => m,
        });
    }
    let _ = std::fs::remove_dir_all(&repo);
    best.context("no rounds ran")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_skip_a_command_name_with_spaces_and_parentheses() {
        // pid 7, comm "post (gres) x", state S, ppid 42, ..., utime 11, stime 22, cutime 33, cstime 44.
        let line = "7 (post (gres) x) S 42 7 7 0 -1 4194304 100 0 0 0 11 22 33 44 20 0 1 0 5 1000 50";
        let f = stat_fields(line).unwrap();
        assert_eq!(f[1], 42, "ppid is field 4");
        assert_eq!(&f[11..15], &[11, 22, 33, 44], "utime, stime, cutime, cstime are fields 14-17");
    }

    #[test]
    fn this_process_tree_has_used_cpu() {
        // Spin for 300 ms of wall time: at least several clock ticks of user time.
        let start = Instant::now();
        let mut x = 0u64;
        while start.elapsed() < Duration::from_millis(300) {
            x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(1));
        }
        let ticks = tree_ticks(std::process::id()).expect("our own /proc entry");
        assert!(ticks as f64 / clock_ticks() >= 0.1, "300 ms of spinning shows in utime: {ticks} ticks");
    }

    #[test]
    fn a_reaped_child_still_counts() {
        // The reaped part alone: the other test spins in this process at the same time.
        let reaped = || tree_ticks_parts(std::process::id()).expect("our own /proc entry").1;
        let before = reaped();
        // A child that spins for about 300 ms of CPU, waited for (reaped) before the second read.
        let ok = Command::new("sh")
            .arg("-c")
            .arg("end=$(($(date +%s%N) + 300000000)); while [ $(date +%s%N) -lt $end ]; do :; done")
            .status()
            .expect("run sh")
            .success();
        assert!(ok);
        let secs = (reaped() - before) as f64 / clock_ticks();
        assert!(secs >= 0.1, "the child's CPU is in our reaped children's time: {secs} s");
    }
}
