//! `dbbackup copy`.

use anyhow::Result;
use backup_core::{Context, CopyOptions, copy};

use super::jobs;
use crate::cli::CopyArgs;
use crate::output::{Output, bytes, millis};

pub async fn run(a: CopyArgs, ctx: &Context, out: &Output) -> Result<i32> {
    let opts = CopyOptions { from: a.from, to: a.to, backup: a.backup, jobs: jobs(a.jobs) };
    let r = copy(&opts, ctx).await?;
    out.report(&r, || {
        if r.already_present {
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
    Ok(0)
}
