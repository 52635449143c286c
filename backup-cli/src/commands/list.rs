//! `dbbackup list`.

use anyhow::Result;
use backup_core::{Command, Context, ListOptions, Report, Verdict};

use crate::cli::ListArgs;
use crate::output::{Output, bytes, verification};

pub async fn run(a: ListArgs, ctx: &Context, out: &Output) -> Result<Verdict> {
    let r = ListOptions { repo: a.repo, tag: a.tag }.run(ctx).await?;
    out.report(&r, || {
        let mut s = String::new();
        if r.backups.is_empty() {
            s.push_str(&format!("no backups in {}", r.repo));
        } else {
            s.push_str(&format!(
                "{:<33}  {:<19}  {:<8} {:<20} {:>10}  {:<16} {}\n",
                "ID", "CREATED (UTC)", "ENGINE", "DATABASE", "SIZE", "TAGS", "LAST VERIFIED"
            ));
            for b in &r.backups {
                let v = verification(b.last_verification.as_ref());
                s.push_str(&format!(
                    "{:<33}  {:<19}  {:<8} {:<20} {:>10}  {:<16} {}\n",
                    b.id,
                    b.created_at.format("%Y-%m-%d %H:%M:%S"),
                    b.engine,
                    if b.encrypted { "(encrypted)" } else { b.database.as_str() },
                    bytes(b.stored_bytes),
                    b.tags.join(","),
                    v
                ));
            }
        }
        for u in &r.unreadable {
            s.push_str(&format!("\nunreadable manifest {}: {}", u.id, u.error));
        }
        s.trim_end().to_string()
    });
    Ok(r.verdict())
}
