//! The in-place mode of a restore (`--in-place`, for accounts without CREATE DATABASE): the
//! live tables are moved aside inside the live database (one atomic `RENAME TABLE`, after
//! dropping their triggers and foreign keys, which the server names per database), the backup
//! is loaded straight into the live names, and the aside copies are dropped only once
//! everything else succeeded; abort or failure drops what was loaded, renames the originals
//! back and restores their foreign keys, triggers, views, routines and events — from a journal
//! in the live database ([`swap::InPlacePlan`]), so the next run can do the same after a kill.

use async_trait::async_trait;
use mysql_async::Conn;

use super::conn::{exec, qi};
use super::object::{Object, base_tables, drop_object, foreign_keys, harvest, trigger_table_is};
use super::session::{Core, Mode};
use super::swap::{self, InPlacePlan};
use crate::error::Result;
use crate::failpoint;
use crate::source::CommitReport;
use crate::source::shadow_name::random_tail;

/// Loads into the live database, its tables moved aside (the plan, also in its journal).
pub(crate) struct InPlace {
    plan: InPlacePlan,
}

#[async_trait]
impl Mode for InPlace {
    const TRANSACTION_PER_TABLE: bool = true;

    fn target(live: &str, _run: &str) -> String {
        live.to_string()
    }

    /// Takes the swap lock, held until the session ends (from the first drop until the commit or
    /// the abort is done, the live database is neither the old one nor the restored one: no
    /// backup may read it), saves and removes the live objects, triggers and foreign keys, then
    /// renames the live tables aside in one statement.
    async fn prepare(core: &Core) -> Result<Self> {
        let mut c = core.control.lock().await;
        let live = core.live.clone();
        swap::lock_swap(&mut c, &live, core.lock_wait, "in-place restore: nothing changed").await?;
        exec(&mut c, &format!("CREATE DATABASE IF NOT EXISTS {}", qi(&live))).await?;
        let plan = plan(core, &mut c).await?;
        // Journaled first: from here on, a failure here or a kill anywhere until the commit puts
        // back what was removed (this process, or the next run from the journal).
        plan.write(&mut c).await?;
        if let Err(e) = move_aside(&plan, &mut c).await {
            return Err(match plan.undo(&mut c).await {
                Ok(()) => e.context("move the live tables aside for an in-place restore (put back)"),
                Err(u) => e.context(format!(
                    "move the live tables aside for an in-place restore; putting them back ALSO failed ({u}); \
                     the next restore into {live} retries from its journal"
                )),
            });
        }
        Ok(InPlace { plan })
    }

    /// The held-back events, then the aside tables dropped. A failure before the events are
    /// in place puts back; after it, the restored database is live and complete but for the
    /// aside tables, so a failure to drop them is a note (the next run drops them).
    async fn commit(&self, core: &Core, c: &mut Conn) -> Result<CommitReport> {
        let events = core.deferred_events();
        // Recorded first: the next run finishes (never undoes) a commit that had started, since
        // the aside tables may be partly dropped. An error here (events first) still puts back,
        // recorded as such first.
        let committing = InPlacePlan { committing: Some(events.clone()), ..self.plan.clone() };
        let started: Result<InPlacePlan> = async {
            committing.write(c).await?;
            failpoint::hit("mysql-in-place-committing");
            failpoint::fail("mysql-in-place-events")?;
            committing.create_events(c, &events).await
        }
        .await;
        let done = match started {
            Ok(done) => done,
            Err(e) => {
                // No aside table is gone yet: put back. The journal is first rewritten without
                // `committing`, so that a run killed (or failing) while putting back is put back
                // by the next run too, not finished over the old tables already renamed back.
                // Unrecorded, nothing is undone: the next run finishes the commit.
                self.plan.write(c).await.map_err(|w| {
                    w.context(format!(
                        "finish the in-place restore ({e}); the next restore or backup of {} finishes it",
                        self.plan.live
                    ))
                })?;
                self.plan.undo(c).await.map_err(|pe| pe.context(format!("rolling back after {e}")))?;
                return Err(e.context("finish the in-place restore (the previous data was put back)"));
            }
        };
        failpoint::hit("mysql-in-place-events-created");
        let mut report = core.report();
        // Some aside tables may be gone already: never undone from here (that would leave the
        // restored tables beside what is left of the old ones).
        if let Err(e) = done.drop_aside(c).await {
            let live = &self.plan.live;
            report.notes.push(format!(
                "the restored database is live, but dropping the tables it replaced (dbbprev_* in {live}) \
                 failed ({e}); the next restore or backup of {live} drops them"
            ));
            report.previous_kept_at = Some(format!("{live} (tables dbbprev_*)"));
        }
        Ok(report)
    }

    /// Drops what was loaded and puts the original tables and objects back.
    async fn abort(&self, _core: &Core, c: &mut Conn) -> Result<()> {
        self.plan.undo(c).await
    }
}

/// What the in-place restore moves aside and removes: the live tables it replaces (the selected
/// ones with `--tables`), their foreign keys, and the objects (with `--tables`: their triggers).
async fn plan(core: &Core, c: &mut Conn) -> Result<InPlacePlan> {
    let live = core.live.clone();
    let mut tables = base_tables(c, &live).await?;
    tables.retain(|t| core.is_selected(t));
    let mut objects: Vec<Object> = harvest(c, &live, core.selected.is_none()).await?;
    if let Some(sel) = &core.selected {
        objects.retain(|o| o.kind == "TRIGGER" && sel.iter().any(|s| trigger_table_is(o, s)));
    }
    let mut fks = Vec::new();
    for t in &tables {
        for (name, def) in foreign_keys(c, &live, t).await? {
            let add = format!("ALTER TABLE {}.{} ADD {def}", qi(&live), qi(t));
            fks.push((t.clone(), name, add));
        }
    }
    let aside = tables
        .iter()
        .enumerate()
        .map(|(i, t)| (format!("dbbprev_{}_{i}", random_tail(8)), t.clone()))
        .collect();
    let loaded = core.tables.iter().map(|t| t.name.clone()).filter(|t| core.is_selected(t)).collect();
    Ok(InPlacePlan { live, whole: core.selected.is_none(), aside, fks, objects, loaded, committing: None })
}

/// Drops the journaled objects and foreign keys, then renames the live tables aside.
async fn move_aside(plan: &InPlacePlan, c: &mut Conn) -> Result<()> {
    let live = &plan.live;
    exec(c, &format!("USE {}", qi(live))).await?;
    for o in &plan.objects {
        drop_object(c, o).await?;
    }
    for (t, name, _) in &plan.fks {
        exec(c, &format!("ALTER TABLE {}.{} DROP FOREIGN KEY {}", qi(live), qi(t), qi(name))).await?;
    }
    failpoint::hit("mysql-in-place-dropped");
    if !plan.aside.is_empty() {
        let renames: Vec<String> = plan
            .aside
            .iter()
            .map(|(a, t)| format!("{}.{} TO {}.{}", qi(live), qi(t), qi(live), qi(a)))
            .collect();
        exec(c, &format!("RENAME TABLE {}", renames.join(", "))).await?;
    }
    Ok(())
}
