//! Commands run from their options alone: the one place where the URLs a command's options name
//! (the source database, the repositories) are opened, with the [`Context`]'s store settings,
//! before the use-case runs on the opened handles. The faces (CLI, FFI) call [`Command::run`];
//! tests and embedders that bring their own handles (a fault-injecting store, a limited source, a
//! fixed clock) call the use-case function itself: [`crate::create`], [`crate::list`],
//! [`crate::copy`], [`crate::prune`].

use std::future::Future;

use chrono::Utc;

use crate::backup::{self, CreateOptions, CreateReport};
use crate::catalog::{self, ListOptions, ListReport};
use crate::copy::{self, CopyOptions, CopyReport};
use crate::error::{Error, Result};
use crate::progress::Context;
use crate::retention::{PruneOptions, PruneReport};
use crate::storage::Target;
use crate::undo;

/// A command's options: what [`Command::run`] opens, then the use-case it runs.
pub trait Command: Sync {
    /// What the command reports.
    type Report;

    /// Opens the database and repositories the options name (with `ctx`'s store settings) and
    /// runs the command on them.
    fn run(&self, ctx: &Context) -> impl Future<Output = Result<Self::Report>>;
}

/// `create`: the source database (`source`, with `password`) and every repository of `repos`
/// (created when missing), then [`crate::create`].
impl Command for CreateOptions {
    type Report = CreateReport;

    async fn run(&self, ctx: &Context) -> Result<CreateReport> {
        let (source, display, targets) = backup::open(self, ctx)?;
        backup::create(source.as_ref(), &display, &targets, self, ctx).await
    }
}

/// `list`: the repository `repo`, then [`crate::list`]. A local directory that does not exist
/// holds no backups (and is not created).
impl Command for ListOptions {
    type Report = ListReport;

    async fn run(&self, ctx: &Context) -> Result<ListReport> {
        let target = match Target::open_in(&self.repo, ctx) {
            Err(Error::MissingRepository(repo)) => {
                return Ok(ListReport { repo, backups: Vec::new(), unreadable: Vec::new() });
            }
            other => other?,
        };
        catalog::list(&target, self.tag.as_deref()).await
    }
}

/// `copy`: the repository `from` (which must exist) and `to` (created when missing), then
/// [`crate::copy`].
impl Command for CopyOptions {
    type Report = CopyReport;

    async fn run(&self, ctx: &Context) -> Result<CopyReport> {
        let from = Target::open_in(&self.from, ctx)?;
        let to = Target::create_in(&self.to, ctx)?;
        copy::copy(&from, &to, self, ctx).await
    }
}

/// `prune`: the repository `repo` (created when missing), then [`crate::prune`] now.
impl Command for PruneOptions {
    type Report = PruneReport;

    async fn run(&self, ctx: &Context) -> Result<PruneReport> {
        let target = Target::create_in(&self.repo, ctx)?;
        undo::prune(&target, self, Utc::now(), ctx).await
    }
}
