//! Back up a database, verify the backup byte for byte, restore it into another database: the
//! example of docs/rust.md, compiled by `cargo test` and run by `scripts/test.sh` on SQLite.
//!
//! ```sh
//! cargo run -p backup-core --example backup_verify_restore -- SOURCE_URL REPO_URL INTO_URL
//! cargo run -p backup-core --example backup_verify_restore -- \
//!     sqlite:///srv/app/database.sqlite /srv/backups sqlite:///tmp/copy.sqlite
//! ```
//!
//! The database password, if any, comes from `DB_PASSWORD`; store credentials from `AWS_*` etc.

use std::process::ExitCode;
use std::sync::Arc;

use backup_core::{
    Command, Context, CreateOptions, Error, ErrorKind, Event, Observer, RestoreOptions, Secret, VerifyLevel,
    VerifyOptions, restore, verify,
};

/// Prints the library's notes; a real program would drive a progress bar from the other events.
struct Notes;

impl Observer for Notes {
    fn on_event(&self, e: &Event) {
        if let Event::Note { message } = e {
            eprintln!("note: {message}");
        }
    }
}

async fn run(source: String, repo: String, into: String) -> Result<(), Error> {
    let ctx = Context::with_observer(Arc::new(Notes));
    // Ctrl-C cancels cleanly: no manifest is written, so no half backup exists.
    let cancel = ctx.cancel.clone();
    tokio::spawn(async move {
        let _ = tokio::signal::ctrl_c().await;
        cancel.cancel();
    });
    let password = || std::env::var("DB_PASSWORD").ok().map(Secret::new);

    let created = CreateOptions {
        source,
        password: password(),
        repos: vec![repo.clone()],
        tags: vec!["example".into()],
        ..Default::default()
    }
    .run(&ctx)
    .await?;
    println!("backup {} ({} rows, {} bytes stored)", created.id, created.rows, created.stored_bytes);

    let checked = verify(
        &VerifyOptions {
            repo: repo.clone(),
            backup: created.id.to_string(),
            level: VerifyLevel::Full,
            ..Default::default()
        },
        &ctx,
    )
    .await?;
    if !checked.ok {
        return Err(Error::Integrity {
            what: format!("backup {}", created.id),
            expected: "no damage".into(),
            actual: format!("{:?}", checked.findings),
        });
    }
    println!("verified: {} objects, {} bytes read", checked.objects, checked.bytes_read);

    match restore(
        &RestoreOptions { repo, backup: "latest".into(), into, password: password(), ..Default::default() },
        &ctx,
    )
    .await
    {
        Ok(r) => println!("restored {} rows in {} ms", r.rows, r.duration_ms),
        Err(Error::NotFound { available, .. }) => eprintln!("no such backup; have: {available:?}"),
        Err(e) if e.kind() == ErrorKind::Integrity => {
            eprintln!("backup damaged, database untouched: {e}");
            return Err(e);
        }
        Err(e) => return Err(e),
    }
    Ok(())
}

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [source, repo, into] = <[String; 3]>::try_from(args).unwrap_or_else(|_| {
        eprintln!("usage: backup_verify_restore SOURCE_URL REPO_URL INTO_URL");
        std::process::exit(2)
    });
    match run(source, repo, into).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(u8::try_from(e.kind().exit_code()).unwrap_or(1))
        }
    }
}
