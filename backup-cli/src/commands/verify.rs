//! `dbbackup verify`.

use anyhow::Result;
use backup_core::{Context, Report, Secret, Verdict, VerifyOptions, verify};

use super::{jobs, keys};
use crate::cli::VerifyArgs;
use crate::output::{Output, millis};

pub async fn run(a: VerifyArgs, password: Option<Secret>, ctx: &Context, out: &Output) -> Result<Verdict> {
    let (identity, passphrase) = keys(&a.keys)?;
    let opts = VerifyOptions {
        repo: a.repo,
        backup: a.backup,
        level: a.level.parse()?,
        scratch: a.scratch,
        password,
        jobs: jobs(a.jobs),
        record: !a.no_record,
        identity,
        passphrase,
    };
    let r = verify(&opts, ctx).await?;
    out.report(&r, || {
        let mut s = String::new();
        for f in &r.findings {
            let what = f.object.as_deref().or(f.table.as_deref()).unwrap_or("backup");
            s.push_str(&format!("PROBLEM {what}: {}\n", f.problem));
        }
        let verdict = if r.ok { "ok" } else { "DAMAGED" };
        if r.without_key {
            s.push_str(
                "encrypted backup checked without its key: stored bytes only (pass --identity to decrypt)\n",
            );
        }
        s.push_str(&format!(
            "{} {}: {verdict} ({} objects, {}{})",
            r.level.as_str(),
            r.id,
            r.objects,
            millis(r.duration_ms),
            r.recovery_ms.map(|m| format!(", recovery time {}", millis(m))).unwrap_or_default()
        ));
        s
    });
    Ok(r.verdict())
}
