//! The shadow mode of a restore: the tables are loaded into a shadow database on the same
//! server (`<db>_dbbshadow_<tag><run>`, holding the swap's journal), then swapped in by
//! [`super::swap::Plan`] — the live tables' triggers (and live views named like a restored
//! table) dropped, ONE `RENAME TABLE` moving every live table to the previous database and every
//! shadow table into the live one, then the restored views, routines, triggers and events
//! created, which the journal records before the run's databases are dropped. A failure before
//! the rename puts the triggers and views back; one after it swaps back. Abort drops the shadow.

use async_trait::async_trait;
use mysql_async::Conn;
use mysql_async::prelude::Queryable;

use super::conn::{exec, is_server_error, qi, qs};
use super::object::{Object, base_tables, harvest, trigger_table_is, views_of};
use super::session::{Core, Mode};
use super::swap;
use crate::error::{Error, Result};
use crate::failpoint;
use crate::source::CommitReport;

/// Loads into a shadow database and swaps it in.
pub(crate) struct Shadow;

#[async_trait]
impl Mode for Shadow {
    const TRANSACTION_PER_TABLE: bool = false;

    fn target(live: &str, run: &str) -> String {
        swap::aux_name(live, "shadow", run)
    }

    /// Creates the shadow with the backed-up database's character set and collation, and its
    /// journal.
    async fn prepare(core: &Core) -> Result<Self> {
        let mut c = core.control.lock().await;
        let mut sql = format!("CREATE DATABASE {}", qi(&core.target));
        if let Some(cs) = core.db_prop("charset") {
            sql.push_str(&format!(" CHARACTER SET {cs}"));
        }
        if let Some(co) = core.db_prop("collation") {
            sql.push_str(&format!(" COLLATE {co}"));
        }
        exec(&mut c, &sql).await?;
        swap::create_journal(&mut c, &core.target, &core.live).await?;
        Ok(Shadow)
    }

    /// The full swap (see [`swap`]): plan and journal it, drop what is in the rename's way
    /// (the live tables' triggers, live views named like a restored table), one `RENAME TABLE`,
    /// then the restored objects, recorded in the journal; a failure before the rename puts
    /// what was in the way back, one after it swaps back. A put-back that fails keeps the
    /// journal for the next run.
    async fn commit(&self, core: &Core, c: &mut Conn) -> Result<CommitReport> {
        let live = core.live.clone();
        // Under the swap lock, from before the first drop until the restored objects are
        // recorded: no backup reads the live database meanwhile (docs/mysql.md).
        if let Err(e) = swap::lock_swap(c, &live, core.lock_wait, "restore: nothing changed").await {
            let _ = self.abort(core, c).await;
            return Err(e);
        }
        let swapped = self.swap_in(core, c).await;
        swap::unlock_swap(c, &live).await;
        let (plan, live_at, marked) = swapped?;
        failpoint::hit("mysql-swap-unlocked");
        failpoint::delay("mysql-swap-before-cleanup").await;
        let mut report = CommitReport { live_at: Some(live_at), ..core.report() };
        // Cleanup: the restore is done whatever happens here (reporting it as failed would
        // tell the caller the target is as it was); what is left, the next run drops.
        match plan.finish(c).await {
            Ok(()) => tracing::debug!(target = %live, "swap: shadow and previous tables dropped"),
            Err(e) => {
                let unmarked = match &marked {
                    Ok(()) => String::new(),
                    Err(m) => format!(
                        "; recording that the restore had completed failed too ({m}): the next run creates \
                         the restored views, routines, triggers and events again"
                    ),
                };
                report.notes.push(format!(
                    "the restored database is live, but dropping the tables it replaced failed ({e}); \
                     the next restore or backup of {live} drops them{unmarked}"
                ));
                report.previous_kept_at = Some(plan.prev.clone());
            }
        }
        Ok(report)
    }

    async fn abort(&self, core: &Core, c: &mut Conn) -> Result<()> {
        match c.query_drop(format!("DROP DATABASE IF EXISTS {}", qi(&core.target))).await {
            Ok(()) => Ok(()),
            Err(e) if is_server_error(&e, &[1008]) => Ok(()),
            Err(e) => Err(Error::source(format!("drop shadow database {}", core.target), e)),
        }
    }
}

impl Shadow {
    /// The swap, up to the restored objects recorded (the caller holds the swap lock): the plan,
    /// when it is live, and whether recording `objects-created` succeeded.
    async fn swap_in(
        &self,
        core: &Core,
        c: &mut Conn,
    ) -> Result<(swap::Plan, std::time::Instant, Result<()>)> {
        let live = core.live.clone();
        tracing::debug!(target = %live, "swap: planning");
        let plan = plan(core, c).await?;
        exec(c, &format!("CREATE DATABASE {}", qi(&plan.prev))).await?;
        plan.write(c).await?;
        tracing::debug!(target = %live, "swap: journaled");
        failpoint::hit("mysql-swap-journaled");
        let renamed: Result<()> = async {
            plan.drop_in_the_way(c).await?;
            failpoint::hit("mysql-swap-triggers-dropped");
            failpoint::fail("mysql-swap-rename")?;
            plan.rename_in(c).await
        }
        .await;
        if let Err(e) = renamed {
            // Put back, recorded, then the shadow dropped with the journal. A put-back that
            // fails keeps the journal (and so the shadow) for the next run, which retries it.
            let back = async {
                failpoint::fail("mysql-swap-put-back")?;
                plan.restore_in_the_way(c).await?;
                plan.mark(c, &plan.shadow, swap::Step::PutBack).await
            }
            .await;
            return Err(match back {
                Ok(()) => {
                    let _ = plan.finish(c).await;
                    e.context("swap the restored tables in (nothing changed)")
                }
                Err(b) => e.context(format!(
                    "swap the restored tables in; putting the live triggers and views back ALSO failed ({b}); \
                     the next restore into {live} or backup of it retries"
                )),
            });
        }
        failpoint::hit("mysql-swap-renamed");
        tracing::debug!(target = %live, "swap: renamed");
        // The data is live. Objects next; on failure swap back.
        let forward = async {
            failpoint::fail("mysql-swap-forward")?;
            plan.forward(c).await
        }
        .await;
        if let Err(e) = forward {
            plan.back(c).await.map_err(|re| {
                re.context(format!(
                    "swapping back after a failure ({e}); the next restore into {live} finishes or undoes it"
                ))
            })?;
            if plan.mark(c, &plan.shadow, swap::Step::PutBack).await.is_ok() {
                let _ = plan.finish(c).await;
            }
            return Err(
                e.context("recreate views, routines, triggers and events (the previous data was put back)")
            );
        }
        // The restored database is live from here, complete. Recorded in the journal first: the
        // next run, finding the run's databases, only drops them (the live database may have
        // changed by then; running the objects step again would undo that).
        let live_at = std::time::Instant::now();
        let marked = plan.mark(c, &plan.prev, swap::Step::ObjectsCreated).await;
        failpoint::hit("mysql-swap-objects-created");
        tracing::debug!(target = %live, "swap: objects created, the restored database is live");
        Ok((plan, live_at, marked))
    }
}

/// What the swap will do: the tables on both sides, the old and the new objects (the shadow's
/// triggers dropped, since a table with triggers cannot move to another database), the
/// database options. Creates the live database if it does not exist.
async fn plan(core: &Core, c: &mut Conn) -> Result<swap::Plan> {
    let (live, shadow) = (core.live.clone(), core.target.clone());
    let whole = core.selected.is_none();
    exec(c, &format!("CREATE DATABASE IF NOT EXISTS {}", qi(&live))).await?;
    let strip = |o: Object| o.without_definer(core.no_definer);
    let mut new_objects: Vec<Object> = harvest(c, &shadow, true)
        .await?
        .into_iter()
        .filter(|o| whole || o.kind == "TRIGGER")
        .map(strip)
        .collect();
    // Tables with triggers cannot move to another database.
    for o in new_objects.iter().filter(|o| o.kind == "TRIGGER") {
        exec(c, &format!("DROP TRIGGER {}.{}", qi(&shadow), qi(&o.name))).await?;
    }
    if whole {
        new_objects.extend(core.deferred_events());
    }
    let shadow_tables = base_tables(c, &shadow).await?;
    let mut live_tables = base_tables(c, &live).await?;
    if !whole {
        live_tables.retain(|t| shadow_tables.contains(t));
    }
    let mut old_objects = harvest(c, &live, whole).await?;
    if !whole {
        old_objects.retain(|o| o.kind == "TRIGGER" && shadow_tables.iter().any(|t| trigger_table_is(o, t)));
        // A live view named like a restored table is in the rename's way (`Plan::in_the_way`).
        old_objects.extend(views_of(c, &live).await?.into_iter().filter(|v| shadow_tables.contains(&v.name)));
    }
    let mut alter = Vec::new();
    if let Some(cs) = core.db_prop("charset") {
        alter.push(format!("CHARACTER SET {cs}"));
    }
    if let Some(co) = core.db_prop("collation") {
        alter.push(format!("COLLATE {co}"));
    }
    if let Some(cm) = core.db_prop("comment") {
        alter.push(format!("COMMENT {}", qs(cm)));
    }
    Ok(swap::Plan {
        prev: swap::aux_name(&live, "prev", &core.run),
        whole,
        live_tables,
        shadow_tables,
        old_objects,
        new_objects,
        alter: (whole && !alter.is_empty()).then(|| alter.join(" ")),
        old_alter: if whole { swap::database_options(c, &live).await? } else { None },
        live,
        shadow,
    })
}
