//! `dbbackup copy`.

use anyhow::Result;
use backup_core::{Command, Context, CopyOptions, Report, Verdict};

use super::{jobs, keys, recipients, secret_from};
use crate::cli::CopyArgs;
use crate::output::{Output, bytes, millis};

pub async fn run(a: CopyArgs, ctx: &Context, out: &Output) -> Result<Verdict> {
    let (identity, passphrase) = keys(&a.keys)?;
    let opts = CopyOptions {
        encrypt_to: recipients(&a.encryption)?,
        new_passphrase: secret_from(
            a.new_passphrase_file.as_deref(),
            "DBBACKUP_NEW_PASSPHRASE",
            true,
            "passphrase file",
        )?,
        identity,
        passphrase,
        from: a.from,
        to: a.to,
        backup: a.backup,
        jobs: jobs(a.jobs),
    };
    let r = opts.run(ctx).await?;
    out.report(&r, || {
        if !r.reencrypted_to.is_empty() {
            format!(
                "{}: re-encrypted {} objects ({}) from {} to {} for {} in {}, every digest checked",
                r.id,
                r.objects,
                bytes(r.bytes),
                r.from,
                r.to,
                r.reencrypted_to.join(", "),
                millis(r.duration_ms)
            )
        } else if r.already_present {
            format!("{}: already in {} (identical); nothing copied", r.id, r.to)
        } else {
            format!(
                "{}: copied {} objects ({}) from {} to {} in {}, every digest checked",
                r.id,
                r.objects,
                bytes(r.bytes),
                r.from,
                r.to,
                millis(r.duration_ms)
            )
        }
    });
    Ok(r.verdict())
}
