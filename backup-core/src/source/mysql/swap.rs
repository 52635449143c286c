//! Crash safety of the MySQL/MariaDB restore: the per-target lock, the intent journal kept in the
//! server itself, the swap and the recovery of killed runs.
//!
//! - **Lock**: `GET_LOCK('dbbackup:<db>', 0)` on the restore's control connection for its whole
//!   run (the server releases it when the connection dies, however the process ends); a second
//!   restore into the same target fails at once ([`Error::Locked`]).
//! - **Names**: a run's shadow and previous databases are `<db>_dbbshadow_<tag><run>` and
//!   `<db>_dbbprev_<tag><run>` (`<db>` cut to 30 characters, `<tag>` 8 hex digits of the SHA-256
//!   of the full target name, `<run>` 8 random hex digits; built and recognised by
//!   [`ShadowName`]): the next run finds exactly its own target's leftovers, whatever the length
//!   of the name.
//! - **Journal**: a table `` `dbbackup:journal` `` created in the shadow right after it; before
//!   the swap's first destructive step it receives the [`Plan`] (every table moved, the old and
//!   the new views/routines/triggers/events with their settings, the database options). The one
//!   `RENAME TABLE` that swaps the tables (atomic in MariaDB) also moves the journal from the
//!   shadow into the previous database, so where the journal is says whether the swap happened.
//! - **Recovery** ([`recover`], lock held, at the start of every restore into the target and of
//!   every backup of it): a journal still in the shadow means the swap never happened: the old
//!   triggers dropped just before it are put back. A journal in the previous database means the
//!   tables were swapped: the new objects are (re)created from the journal (if that fails, the
//!   swap is undone) — unless the shadow is gone: [`Plan::finish`] drops it first, once the
//!   objects are in place, so that restore had completed. Then the run's databases are dropped.

use mysql_async::Conn;
use serde::{Deserialize, Serialize};
use sha2::Digest;

use super::conn::{exec, qi, qs, query_text};
use super::object::{JOURNAL, Object, base_tables, drop_object, harvest, recreate, retarget_defaults};
use crate::error::{Error, Result};
use crate::failpoint;
use crate::source::shadow_name::{ShadowName, cut_chars, random_tail};

/// 8 hex digits naming the target in its runs' database names.
fn tag(live: &str) -> String {
    let d = sha2::Sha256::digest(live.as_bytes());
    d.iter().take(4).map(|b| format!("{b:02x}")).collect()
}

/// Random hex digits naming a run (the same for its shadow and its previous database).
const RUN: usize = 8;

/// `<db cut to 30 characters>_dbb<what>_<tag><run>`: the shadow (`what` = `shadow`) or previous
/// (`prev`) databases of `live`'s runs.
fn aux_names(live: &str, what: &str) -> ShadowName {
    ShadowName::new(format!("{}_dbb{what}_{}", cut_chars(live, 30), tag(live)), RUN)
}

/// The shadow (`what` = `shadow`) or previous (`prev`) database of run `run`.
pub(super) fn aux_name(live: &str, what: &str, run: &str) -> String {
    aux_names(live, what).with(run)
}

/// A new run id.
pub(super) fn new_run() -> String {
    random_tail(RUN)
}

fn lock_name(live: &str) -> String {
    // MySQL limits lock names to 64 characters.
    let name = format!("dbbackup:{live}");
    if name.len() <= 64 {
        name
    } else {
        format!("dbbackup:{}:{}", tag(live), live.chars().take(40).collect::<String>())
    }
}

/// Tries to take the target's restore lock on `c`.
pub(super) async fn try_lock(c: &mut Conn, live: &str) -> Result<bool> {
    let r = query_text(c, &format!("SELECT GET_LOCK({}, 0)", qs(&lock_name(live)))).await?;
    Ok(r.into_iter().next().and_then(|r| r.into_iter().next().flatten()).as_deref() == Some("1"))
}

/// Takes the target's restore lock on `c`, or fails at once when another restore holds it.
pub(super) async fn lock(c: &mut Conn, live: &str) -> Result<()> {
    if try_lock(c, live).await? {
        return Ok(());
    }
    Err(Error::Locked(format!(
        "another restore into MySQL database {live:?} is running (lock {} held)",
        qs(&lock_name(live))
    )))
}

/// Releases the lock (best effort: closing the connection releases it too).
pub(super) async fn unlock(c: &mut Conn, live: &str) {
    let _ = exec(c, &format!("DO RELEASE_LOCK({})", qs(&lock_name(live)))).await;
}

/// Creates the journal in a new shadow database (it names the target).
pub(super) async fn create_journal(c: &mut Conn, db: &str, live: &str) -> Result<()> {
    exec(
        c,
        &format!(
            "CREATE TABLE {}.{} (k VARCHAR(32) PRIMARY KEY, v LONGTEXT NOT NULL) ENGINE=InnoDB",
            qi(db),
            qi(JOURNAL)
        ),
    )
    .await?;
    exec(c, &format!("INSERT INTO {}.{} VALUES ('target', {})", qi(db), qi(JOURNAL), qs(live))).await
}

/// Everything the swap does, written to the journal before its first destructive step, so that
/// the next run can finish it or undo it without this process.
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct Plan {
    pub(super) live: String,
    pub(super) shadow: String,
    pub(super) prev: String,
    /// Whole database (false with `--tables`: only the selected tables and their triggers).
    pub(super) whole: bool,
    /// Live tables moved to `prev`.
    pub(super) live_tables: Vec<String>,
    /// Shadow tables moved to `live`.
    pub(super) shadow_tables: Vec<String>,
    /// The live database's objects before the swap (whole: all; else the moved tables' triggers).
    pub(super) old_objects: Vec<Object>,
    /// The restored objects (DEFINER already stripped when asked), events held back included.
    pub(super) new_objects: Vec<Object>,
    /// `CHARACTER SET .. COLLATE .. COMMENT ..` of the restored database (whole only).
    pub(super) alter: Option<String>,
    /// The same clause of the live database before the swap.
    pub(super) old_alter: Option<String>,
}

/// The database's options as an `ALTER DATABASE` clause.
pub(super) async fn database_options(c: &mut Conn, db: &str) -> Result<Option<String>> {
    let rows = query_text(
        c,
        &format!(
            "SELECT DEFAULT_CHARACTER_SET_NAME, DEFAULT_COLLATION_NAME, SCHEMA_COMMENT \
             FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = {}",
            qs(db)
        ),
    )
    .await?;
    let Some(r) = rows.into_iter().next() else { return Ok(None) };
    let get = |i: usize| r.get(i).cloned().flatten();
    let mut parts = Vec::new();
    if let Some(cs) = get(0) {
        parts.push(format!("CHARACTER SET {}", qi(&cs)));
    }
    if let Some(co) = get(1) {
        parts.push(format!("COLLATE {}", qi(&co)));
    }
    parts.push(format!("COMMENT {}", qs(&get(2).unwrap_or_default())));
    Ok(Some(parts.join(" ")))
}

impl Plan {
    /// Records the plan in the shadow's journal (durable: InnoDB, autocommit).
    pub(super) async fn write(&self, c: &mut Conn) -> Result<()> {
        let body = serde_json::to_string(self).map_err(|e| Error::source("encode the restore journal", e))?;
        exec(c, &format!("REPLACE INTO {}.{} VALUES ('plan', {})", qi(&self.shadow), qi(JOURNAL), qs(&body)))
            .await
            .map_err(|e| e.context("write the restore journal"))
    }

    fn triggers<'a>(objects: &'a [Object]) -> impl Iterator<Item = &'a Object> + 'a {
        objects.iter().filter(|o| o.kind == "TRIGGER")
    }

    /// The live views named like a table the rename brings in: a view and a table share one
    /// namespace, so the rename would fail on them (a migration that replaced table `t` by a
    /// view `t`, rolled back).
    fn views_in_the_way(&self) -> impl Iterator<Item = &Object> + '_ {
        self.old_objects.iter().filter(|o| o.kind == "VIEW" && self.shadow_tables.contains(&o.name))
    }

    /// Drops the live tables' triggers (a table with triggers cannot move to another database)
    /// and the live views in the rename's way ([`Plan::views_in_the_way`]).
    pub(super) async fn drop_old_triggers(&self, c: &mut Conn) -> Result<()> {
        exec(c, &format!("USE {}", qi(&self.live))).await?;
        for o in Self::triggers(&self.old_objects).chain(self.views_in_the_way()) {
            drop_object(c, o).await?;
        }
        Ok(())
    }

    /// Puts the old triggers and the views in the rename's way back (the swap did not happen).
    pub(super) async fn restore_old_triggers(&self, c: &mut Conn) -> Result<()> {
        exec(c, &format!("USE {}", qi(&self.live))).await?;
        let old: Vec<Object> =
            Self::triggers(&self.old_objects).chain(self.views_in_the_way()).cloned().collect();
        for o in &old {
            drop_object(c, o).await?;
        }
        recreate(c, &self.live, &old, false).await
    }

    /// The swap itself: ONE `RENAME TABLE` moving the live tables to `prev`, the shadow's to
    /// `live` and the journal to `prev` (all or nothing).
    pub(super) async fn rename_in(&self, c: &mut Conn) -> Result<()> {
        let (live, shadow, prev) = (qi(&self.live), qi(&self.shadow), qi(&self.prev));
        let mut renames: Vec<String> =
            self.live_tables.iter().map(|t| format!("{live}.{q} TO {prev}.{q}", q = qi(t))).collect();
        renames.extend(self.shadow_tables.iter().map(|t| format!("{shadow}.{q} TO {live}.{q}", q = qi(t))));
        renames.push(format!("{shadow}.{j} TO {prev}.{j}", j = qi(JOURNAL)));
        exec(c, &format!("RENAME TABLE {}", renames.join(", "))).await
    }

    /// After the rename: the live database gets exactly the restored objects and options.
    /// Idempotent (the recovery of a run killed halfway runs it again).
    pub(super) async fn forward(&self, c: &mut Conn) -> Result<()> {
        retarget_defaults(c, &self.shadow, &self.live).await?;
        if self.whole {
            for o in harvest(c, &self.live, true).await? {
                drop_object(c, &o).await?;
            }
            // Before the objects: routines, triggers and events record the database's collation.
            if let Some(a) = &self.alter {
                exec(c, &format!("ALTER DATABASE {} {a}", qi(&self.live))).await?;
            }
        } else {
            exec(c, &format!("USE {}", qi(&self.live))).await?;
            for o in &self.new_objects {
                drop_object(c, o).await?;
            }
        }
        failpoint::hit("mysql-swap-objects-dropped");
        recreate(c, &self.live, &self.new_objects, false).await
    }

    /// Undoes [`Plan::rename_in`] and puts the old objects back.
    pub(super) async fn back(&self, c: &mut Conn) -> Result<()> {
        let current = harvest(c, &self.live, self.whole).await?;
        for o in &current {
            if self.whole || self.new_objects.iter().any(|n| n.kind == o.kind && n.name == o.name) {
                drop_object(c, o).await?;
            }
        }
        let (live, shadow, prev) = (qi(&self.live), qi(&self.shadow), qi(&self.prev));
        let mut renames: Vec<String> =
            self.shadow_tables.iter().map(|t| format!("{live}.{q} TO {shadow}.{q}", q = qi(t))).collect();
        renames.extend(self.live_tables.iter().map(|t| format!("{prev}.{q} TO {live}.{q}", q = qi(t))));
        renames.push(format!("{prev}.{j} TO {shadow}.{j}", j = qi(JOURNAL)));
        exec(c, &format!("RENAME TABLE {}", renames.join(", "))).await?;
        if self.whole
            && let Some(a) = &self.old_alter
        {
            exec(c, &format!("ALTER DATABASE {live} {a}")).await?;
        }
        recreate(c, &self.live, &self.old_objects, false).await
    }

    /// Drops the run's databases (the journal goes last, with `prev`).
    pub(super) async fn finish(&self, c: &mut Conn) -> Result<()> {
        exec(c, &format!("DROP DATABASE IF EXISTS {}", qi(&self.shadow))).await?;
        failpoint::hit("mysql-swap-shadow-dropped");
        exec(c, &format!("DROP DATABASE IF EXISTS {}", qi(&self.prev))).await
    }
}

/// An in-place restore's journal (a `dbbackup:journal` table in the live database itself,
/// written before the first live object is dropped): what was moved aside and removed, so that
/// the next run can put it back, or finish a commit that had started.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct InPlacePlan {
    pub(super) live: String,
    pub(super) whole: bool,
    /// Live tables renamed aside: (aside name, original name).
    pub(super) aside: Vec<(String, String)>,
    /// Foreign keys dropped from them: (table, constraint, `ALTER TABLE ... ADD ...`).
    pub(super) fks: Vec<(String, String, String)>,
    /// Objects dropped (whole: all; else the moved tables' triggers).
    pub(super) objects: Vec<Object>,
    /// Tables the restore creates under their live names.
    pub(super) loaded: Vec<String>,
    /// Set when the commit starts: the held-back events it creates before dropping the aside
    /// tables (from then on the restore is finished, never undone).
    pub(super) committing: Option<Vec<Object>>,
}

impl InPlacePlan {
    /// Creates (first time) or updates the journal in the live database.
    pub(super) async fn write(&self, c: &mut Conn) -> Result<()> {
        let (db, j) = (qi(&self.live), qi(JOURNAL));
        exec(c, &format!("CREATE TABLE IF NOT EXISTS {db}.{j} (k VARCHAR(32) PRIMARY KEY, v LONGTEXT NOT NULL) ENGINE=InnoDB"))
            .await?;
        let body = serde_json::to_string(self).map_err(|e| Error::source("encode the restore journal", e))?;
        exec(c, &format!("REPLACE INTO {db}.{j} VALUES ('in-place', {})", qs(&body)))
            .await
            .map_err(|e| e.context("write the in-place restore journal"))
    }

    async fn drop_journal(&self, c: &mut Conn) -> Result<()> {
        exec(c, &format!("DROP TABLE IF EXISTS {}.{}", qi(&self.live), qi(JOURNAL))).await
    }

    /// Finishes a commit: the held-back events, the aside tables dropped, the journal last.
    pub(super) async fn finish(&self, c: &mut Conn, events: &[Object]) -> Result<()> {
        exec(c, &format!("USE {}", qi(&self.live))).await?;
        if !events.is_empty() {
            // The start dropped every live event and only this step creates any: the ones
            // present are from a commit killed halfway (held-back events carry no parsed name).
            let present = query_text(
                c,
                &format!(
                    "SELECT EVENT_NAME FROM information_schema.EVENTS WHERE EVENT_SCHEMA = {}",
                    qs(&self.live)
                ),
            )
            .await?;
            for name in present.into_iter().filter_map(|r| r.into_iter().next().flatten()) {
                exec(c, &format!("DROP EVENT IF EXISTS {}", qi(&name))).await?;
            }
        }
        recreate(c, &self.live, events, false).await?;
        for (a, _) in &self.aside {
            exec(c, &format!("DROP TABLE IF EXISTS {}.{}", qi(&self.live), qi(a))).await?;
        }
        self.drop_journal(c).await
    }

    /// Puts the live database back as it was, from whatever point the restore reached: drops
    /// what was loaded and renames the originals back (if they had been moved: the rename is
    /// one statement), re-adds the missing foreign keys, recreates the objects. Then the journal
    /// is dropped.
    pub(super) async fn undo(&self, c: &mut Conn) -> Result<()> {
        let live = &self.live;
        // Loaded tables reference each other (and the backup's run may be a plain session).
        exec(c, "SET SESSION foreign_key_checks = 0").await?;
        let current = harvest(c, live, self.whole).await?;
        let touched = |t: &str| self.loaded.iter().any(|l| l == t) || self.aside.iter().any(|(_, o)| o == t);
        for o in &current {
            if self.whole || o.time_zone.as_deref().is_some_and(touched) {
                drop_object(c, o).await?;
            }
        }
        let tables = base_tables(c, live).await?;
        let moved = self.aside.first().is_none_or(|(a, _)| tables.contains(a));
        if moved {
            for t in &tables {
                if !self.aside.iter().any(|(a, _)| a == t) && touched(t) {
                    exec(c, &format!("DROP TABLE IF EXISTS {}.{}", qi(live), qi(t))).await?;
                }
            }
            let renames: Vec<String> = self
                .aside
                .iter()
                .map(|(a, t)| format!("{}.{} TO {}.{}", qi(live), qi(a), qi(live), qi(t)))
                .collect();
            exec(c, &format!("RENAME TABLE {}", renames.join(", "))).await?;
        }
        for (t, name, add) in &self.fks {
            let present = query_text(
                c,
                &format!(
                    "SELECT 1 FROM information_schema.REFERENTIAL_CONSTRAINTS WHERE CONSTRAINT_SCHEMA = {} \
                     AND TABLE_NAME = {} AND CONSTRAINT_NAME = {}",
                    qs(live),
                    qs(t),
                    qs(name)
                ),
            )
            .await?;
            if present.is_empty() {
                exec(c, add).await?;
            }
        }
        recreate(c, live, &self.objects, false).await?;
        self.drop_journal(c).await
    }
}

/// Finishes or undoes an in-place restore into `live` that was killed (journal in `live`).
async fn recover_in_place(c: &mut Conn, live: &str, notes: &mut Vec<String>) -> Result<()> {
    let has = query_text(
        c,
        &format!(
            "SELECT 1 FROM information_schema.TABLES WHERE TABLE_SCHEMA = {} AND TABLE_NAME = {}",
            qs(live),
            qs(JOURNAL)
        ),
    )
    .await?;
    if has.is_empty() {
        return Ok(());
    }
    let rows =
        query_text(c, &format!("SELECT v FROM {}.{} WHERE k = 'in-place'", qi(live), qi(JOURNAL))).await?;
    let Some(body) = rows.into_iter().next().and_then(|r| r.into_iter().next().flatten()) else {
        exec(c, &format!("DROP TABLE {}.{}", qi(live), qi(JOURNAL))).await?;
        return Ok(());
    };
    let plan: InPlacePlan = serde_json::from_str(&body)
        .map_err(|e| Error::source(format!("read the in-place restore journal in database {live}"), e))?;
    match &plan.committing {
        Some(events) => {
            plan.finish(c, events).await?;
            notes.push(format!(
                "finished an interrupted in-place restore into {live} (killed while dropping the previous tables)"
            ));
        }
        None => {
            plan.undo(c).await?;
            notes.push(format!(
                "undid an interrupted in-place restore into {live}: its previous tables, keys and objects are back"
            ));
        }
    }
    Ok(())
}

async fn read_plan(c: &mut Conn, db: &str, live: &str) -> Result<Option<Plan>> {
    let has = query_text(
        c,
        &format!(
            "SELECT 1 FROM information_schema.TABLES WHERE TABLE_SCHEMA = {} AND TABLE_NAME = {}",
            qs(db),
            qs(JOURNAL)
        ),
    )
    .await?;
    if has.is_empty() {
        return Ok(None);
    }
    let rows = query_text(c, &format!("SELECT v FROM {}.{} WHERE k = 'plan'", qi(db), qi(JOURNAL))).await?;
    let Some(body) = rows.into_iter().next().and_then(|r| r.into_iter().next().flatten()) else {
        return Ok(None);
    };
    let plan: Plan = serde_json::from_str(&body)
        .map_err(|e| Error::source(format!("read the restore journal in database {db}"), e))?;
    if plan.live != live {
        return Err(Error::InvalidInput(format!(
            "the restore journal in database {db} is for database {:?}, not {live:?}; left alone",
            plan.live
        )));
    }
    Ok(Some(plan))
}

/// Finishes or undoes what killed restores into `live` left, and drops their databases. The
/// caller holds the target's lock, so none of them belongs to a running restore. Returns notes
/// for the operator.
pub(super) async fn recover(c: &mut Conn, live: &str) -> Result<Vec<String>> {
    let (shadows, prevs) = (aux_names(live, "shadow"), aux_names(live, "prev"));
    let names: Vec<String> = query_text(c, "SELECT SCHEMA_NAME FROM information_schema.SCHEMATA")
        .await?
        .into_iter()
        .filter_map(|r| r.into_iter().next().flatten())
        .collect();
    let runs: std::collections::BTreeSet<String> = names
        .iter()
        .filter_map(|n| shadows.tail_of(n).or_else(|| prevs.tail_of(n)))
        .map(str::to_string)
        .collect();
    let mut notes = Vec::new();
    if names.iter().any(|n| n == live) {
        recover_in_place(c, live, &mut notes).await?;
    }
    for run in runs {
        let (shadow, prev) = (aux_name(live, "shadow", &run), aux_name(live, "prev", &run));
        let (has_shadow, has_prev) = (names.contains(&shadow), names.contains(&prev));
        let swapped = if has_prev { read_plan(c, &prev, live).await? } else { None };
        if swapped.is_some() && !has_shadow {
            // `Plan::finish` drops the shadow first, and only once the restored objects are in
            // place: the restore was complete and live, and was killed dropping the replaced
            // tables. Only they are left; the live database may have changed since (running
            // `forward` again would drop its objects and recreate the restore's).
            notes.push(format!(
                "dropped {prev}, the tables an interrupted restore into {live} had replaced (that restore had completed)"
            ));
            exec(c, &format!("DROP DATABASE IF EXISTS {}", qi(&prev))).await?;
            continue;
        }
        if let Some(plan) = swapped {
            match plan.forward(c).await {
                Ok(()) => notes.push(format!(
                    "finished an interrupted restore into {live}: its tables had been swapped in; \
                     its views, routines, triggers and events are now in place"
                )),
                Err(e) => {
                    plan.back(c).await.map_err(|b| {
                        b.context(format!(
                            "finishing an interrupted restore into {live} failed ({e}) and undoing it failed \
                             too; the previous tables are in database {prev}"
                        ))
                    })?;
                    notes.push(format!(
                        "undid an interrupted restore into {live}: its objects could not be created ({e}); \
                         the previous database was put back"
                    ));
                }
            }
        } else if let Some(plan) = if has_shadow { read_plan(c, &shadow, live).await? } else { None } {
            plan.restore_old_triggers(c).await?;
            notes.push(format!(
                "undid an interrupted restore into {live}: it was killed before its swap; {live} is as it was"
            ));
        } else if has_prev && !base_tables(c, &prev).await?.is_empty() {
            return Err(Error::InvalidInput(format!(
                "database {prev} (left by an interrupted restore into {live}) holds tables but no journal; \
                 left alone for inspection"
            )));
        }
        if has_shadow {
            notes.push(format!("dropped {shadow}, the shadow of an interrupted restore"));
        }
        if has_prev {
            notes.push(format!("dropped {prev}, the previous database of an interrupted restore"));
        }
        exec(c, &format!("DROP DATABASE IF EXISTS {}", qi(&shadow))).await?;
        exec(c, &format!("DROP DATABASE IF EXISTS {}", qi(&prev))).await?;
    }
    for n in &notes {
        tracing::warn!("{n}");
    }
    Ok(notes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_names_belong_to_their_target_only() {
        let long_a = "a".repeat(40);
        let long_b = format!("{}b", "a".repeat(39));
        let run = new_run();
        let a = aux_name(&long_a, "shadow", &run);
        assert!(a.len() <= 64, "{a}");
        assert_eq!(aux_names(&long_a, "shadow").tail_of(&a), Some(run.as_str()));
        // Same first 30 characters, another target: not its leftover.
        assert_eq!(aux_names(&long_b, "shadow").tail_of(&a), None);
        assert_eq!(aux_names(&long_a, "prev").tail_of(&a), None);
        assert_eq!(aux_names(&long_a, "shadow").tail_of(&format!("{a}0")), None);
        assert!(lock_name(&"x".repeat(64)).len() <= 64);
        assert_eq!(lock_name("app"), "dbbackup:app");
    }

    /// The names killed runs left are found by these exact bytes: they never change.
    #[test]
    fn run_names_are_byte_for_byte_what_older_versions_made() {
        assert_eq!(aux_name("app", "shadow", "0123abcd"), "app_dbbshadow_a172cedc0123abcd");
        let long = "é".repeat(40);
        assert_eq!(
            aux_name(&long, "prev", "deadbeef"),
            format!("{}_dbbprev_84fe2e03deadbeef", "é".repeat(30))
        );
        let run = new_run();
        assert!(
            run.len() == 8 && run.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()),
            "{run}"
        );
        assert_eq!(aux_names("app", "shadow").tail_of("app_dbbshadow_a172cedc0123ABCD"), Some("0123ABCD"));
        assert_eq!(aux_names("app", "shadow").tail_of("app_dbbshadow_a172cedc0123abcg"), None);
    }
}
