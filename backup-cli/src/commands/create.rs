//! `dbbackup create`.

use anyhow::Result;
use backup_core::{Command, Context, CreateOptions, Report, Secret, Verdict};

use super::{jobs, recipients, secret_from};
use crate::cli::CreateArgs;
use crate::output::{Output, bytes, millis};

pub async fn run(a: CreateArgs, password: Option<Secret>, ctx: &Context, out: &Output) -> Result<Verdict> {
    let opts = CreateOptions {
        source: a.source,
        password,
        repos: a.repos,
        compression: a.compression.parse()?,
        jobs: jobs(a.jobs),
        tags: a.tags,
        chunk_bytes: a.chunk_mib.max(1) << 20,
        checksums: !a.no_checksums,
        temp_dir: a.temp_dir,
        engine_options: backup_core::EngineOptions {
            mysql: backup_core::MysqlOptions { no_definer: a.no_definer, ..Default::default() },
            postgres: backup_core::PostgresOptions { keep_owners: a.keep_owners },
            session: a.session.options(),
        },
        encrypt_to: recipients(&a.encryption)?,
        passphrase: secret_from(
            a.passphrase_file.as_deref(),
            "DBBACKUP_PASSPHRASE",
            true,
            "passphrase file",
        )?,
    };
    let r = opts.run(ctx).await?;
    out.report(&r, || {
        if out.quiet {
            return r.id.to_string();
        }
        for n in &r.notes {
            eprintln!("note: {n}");
        }
        eprintln!(
            "backed up {} {} ({} tables, {} rows): {} -> {} in {} to {}",
            r.engine,
            r.database,
            r.tables,
            r.rows,
            bytes(r.raw_bytes),
            bytes(r.stored_bytes),
            millis(r.duration_ms),
            r.repos.join(", ")
        );
        r.id.to_string()
    });
    // 3-2-1 with a failed repository: the backup exists in the others, but the run failed.
    for f in &r.failed_repos {
        eprintln!("dbbackup: error: backup {} is NOT in {}: {}", r.id, f.repo, f.error);
    }
    Ok(r.verdict())
}
