//! Codec throughput: dbbackup's streaming zstd/gzip/sha256 stages vs the command-line tools on the
//! same input file, to show how close the pipeline runs to the machine's limits.

use anyhow::{Context, Result, bail};
use backup_core::Compression;
use backup_core::compress;
use backup_core::{read_tally, tally};
use futures::StreamExt;

use crate::harness::{BenchOptions, SummaryLine, measure, print_table, row, summary};
use crate::sample::make_sqlite;

pub fn run(opts: &BenchOptions) -> Result<()> {
    let w = &opts.work_dir;
    let input = w.join("input.sqlite");
    make_sqlite(&input, opts.size_mib)?;
    let size = std::fs::metadata(&input)?.len();
    let me = std::env::current_exe()?.display().to_string();
    let f = input.display().to_string();
    let rows = vec![
        measure("dbbackup zstd:3 (1 thread) + sha256", &format!("{me} codec-run zstd:3 1 {f}"), &[], size)?,
        measure(
            "zstd -3 -T1 | sha256sum",
            &format!("zstd -q -3 -T1 -c {f} | sha256sum >/dev/null"),
            &[],
            size,
        )?,
        measure("dbbackup zstd:3 (2 workers) + sha256", &format!("{me} codec-run zstd:3 2 {f}"), &[], size)?,
        measure(
            "zstd -3 -T2 | sha256sum",
            &format!("zstd -q -3 -T2 -c {f} | sha256sum >/dev/null"),
            &[],
            size,
        )?,
        measure("dbbackup gzip:6 + sha256", &format!("{me} codec-run gzip:6 1 {f}"), &[], size)?,
        measure("gzip -6 | sha256sum", &format!("gzip -6 -c {f} | sha256sum >/dev/null"), &[], size)?,
        measure("pigz -6 -p2 | sha256sum", &format!("pigz -6 -p2 -c {f} | sha256sum >/dev/null"), &[], size)?,
        measure("dbbackup sha256 only", &format!("{me} codec-run none 1 {f}"), &[], size)?,
        measure("sha256sum", &format!("sha256sum {f} >/dev/null"), &[], size)?,
    ];
    print_table(&format!("codecs on a {} MiB SQLite file", size >> 20), &rows, "zstd -3 -T1 | sha256sum");
    summary(SummaryLine {
        what: &format!("codec: zstd:3 (2 workers) + sha256, {} MiB", size >> 20),
        ours: row(&rows, "dbbackup zstd:3 (2 workers) + sha256")?,
        peer: row(&rows, "zstd -3 -T2 | sha256sum")?,
        goal: "",
        ceiling: None,
    })?;
    std::fs::remove_dir_all(w).context("clean up work dir")?;
    Ok(())
}

/// The measured child: read FILE in 1 MiB pieces through dbbackup's compress + tally stages.
pub fn codec_run(args: &[String]) -> Result<()> {
    let [codec, threads, file] = args else { bail!("codec-run CODEC THREADS FILE") };
    let compression: Compression = codec.parse()?;
    let threads: u32 = threads.parse()?;
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    rt.block_on(async {
        let f = tokio::fs::File::open(file).await?;
        let raw = tokio_util::io::ReaderStream::with_capacity(f, 1 << 20)
            .map(|r| r.map_err(|e| backup_core::Error::io("read", e)))
            .boxed();
        let (raw, raw_t) = tally(raw);
        let (mut enc, enc_t) = tally(compress(raw, compression, threads));
        while let Some(b) = enc.next().await {
            b?;
        }
        let (n, digest) = read_tally(&enc_t);
        let (raw_n, _) = read_tally(&raw_t);
        eprintln!("    {raw_n} -> {n} bytes, sha256 {}", &digest[..16]);
        Ok(())
    })
}
