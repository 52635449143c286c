//! `dbbackup restore`, with the production confirmation prompt.

use std::io::{BufRead, IsTerminal, Write};

use anyhow::{Result, bail};
use backup_core::{Context, Error, Report, RestoreOptions, Secret, Verdict, confirmation_needed, restore};

use super::{jobs, keys, operator};
use crate::cli::RestoreArgs;
use crate::output::{Output, bytes, millis};

pub async fn run(a: RestoreArgs, password: Option<Secret>, ctx: &Context, out: &Output) -> Result<Verdict> {
    let production = a.production || std::env::var("APP_ENV").is_ok_and(|v| v == "production");
    let repo = match a.repo {
        Some(r) => r,
        None if a.undo || backup_core::foreign_script_path(&a.backup).is_some() => String::new(),
        None => {
            return Err(Error::InvalidInput(
                "--repo is required (unless restoring a plain .sql/.sql.gz/.sql.zst dump file)".into(),
            )
            .into());
        }
    };
    let (identity, passphrase) = keys(&a.keys)?;
    let mut opts = RestoreOptions {
        repo,
        backup: a.backup,
        into: a.into,
        password,
        jobs: jobs(a.jobs),
        in_place: a.in_place,
        tables: a.tables,
        production,
        force: a.force,
        verify_first: a.verify_first,
        operator: Some(operator()),
        engine_options: backup_core::EngineOptions {
            mysql: backup_core::MysqlOptions {
                no_definer: a.no_definer,
                full_checksum: a.full_checksum,
                ..Default::default()
            },
            postgres: backup_core::PostgresOptions { keep_owners: a.keep_owners },
            session: a.session.options(),
        },
        identity,
        passphrase,
        all_databases: a.all_databases,
        undo_dir: super::undo_dir(a.undo_dir),
        keep_undo_secs: if a.no_undo { 0 } else { super::prune::parse_duration(&a.keep_undo)? },
        undo: a.undo,
    };
    if let Some(name) = confirmation_needed(&opts)? {
        confirm(&name)?;
        opts.force = true;
    }
    let r = restore(&opts, ctx).await?;
    out.report(&r, || {
        let mut s = String::new();
        for n in &r.notes {
            s.push_str(&format!("note: {n}\n"));
        }
        s.push_str(&format!(
            "{} {} into {}: {} tables, {} rows, {} in {}",
            if opts.undo { "undone: put back" } else { "restored" },
            r.id,
            r.into,
            r.tables,
            r.rows,
            bytes(r.raw_bytes),
            millis(r.duration_ms)
        ));
        s
    });
    Ok(r.verdict())
}

/// Asks the operator to type the database name. Without a terminal, refuses.
fn confirm(name: &str) -> Result<()> {
    if !std::io::stdin().is_terminal() {
        return Err(Error::ConfirmationRequired(format!(
            "restoring over production database {name:?} needs confirmation, and there is no terminal to ask on; pass --force in automation"
        ))
        .into());
    }
    eprint!("This overwrites the PRODUCTION database {name:?}. Type its name to continue: ");
    let _ = std::io::stderr().flush();
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    if line.trim() != name {
        bail!(Error::ConfirmationRequired(format!(
            "typed {:?}, expected {name:?}; nothing was changed",
            line.trim()
        )));
    }
    Ok(())
}
