//! Crash safety of the MySQL/MariaDB restore: the per-target lock, the intent journal kept in the
//! server itself, the swap and the recovery of killed runs.
//!
//! - **Lock**: `GET_LOCK('dbbackup:<db>', 0)` on the restore's control connection for its whole
//!   run (the server releases it when the connection dies, however the process ends); a second
//!   restore into the same target fails at once ([`Error::Locked`]).
//! - **Swap lock**: `GET_LOCK('dbbackup-swap:<db>', <lock timeout>)` ([`lock_swap`]) while a run
//!   changes the live database (a shadow swap up to `objects-created`, an in-place restore from
//!   its first drop to its end, every [`recover`]) or a backup reads what its snapshot does not
//!   cover (its table list, schema and objects, until every table is pinned): a backup never
//!   reads a database that never existed (docs/mysql.md, "Backups and restores of one database").
//!   A backup holding it whose restore lock try fails but that finds the live database left
//!   mid-swap ([`left_mid_swap`]: a restore dying between its two locks' release) waits for the
//!   restore lock ([`wait_lock`]) and recovers.
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
//! - **Steps**: where the journal's place does not say how far a swap got, its `step` row does
//!   ([`Step`], written right after the step's last statement): the restored objects created
//!   (`objects-created`, in the previous database), the swap being undone (`swapping-back`,
//!   written before the rename back, which moves it to the shadow), the live database put back
//!   (`put-back`, in the shadow). Each is written before the run's databases are dropped, so a
//!   run killed while dropping them is never redone over what the live database became since.
//! - **Recovery** ([`recover`], lock held, at the start of every restore into the target and of
//!   every backup of it; [`recover_run`] has the table of every state): a journal still in the
//!   shadow means the swap never happened: what was dropped in the rename's way (the old
//!   triggers and views) is put back — or, marked `swapping-back`, every old object. A journal in
//!   the previous database means the tables were swapped: the new objects are (re)created from
//!   the journal (if that fails, the swap is undone) — unless it is marked `objects-created`, or
//!   the shadow is gone (a journal of a version before the marks: [`Plan::finish`] drops the
//!   shadow first, once the objects are in place): that restore had completed. Marked
//!   `put-back`, nothing is redone either. Then the run's databases are dropped. A recovery
//!   killed midway is itself recovered the same way: each step is idempotent and marked.
//! - **Journals of older versions** hold no `step` row and are read as they were then (the
//!   plan's shape is unchanged); an older version reading a newer journal ignores the row.

use mysql_async::Conn;
use serde::{Deserialize, Serialize};
use sha2::Digest;

use super::conn::{exec, qi, qs, query_text, query_value};
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

/// The name of one of `live`'s user locks: `prefix` and the database's name, or, past MySQL's
/// 64 characters, `prefix`, the name's tag and as much of the name as fits in 64 with them.
fn capped_lock_name(prefix: &str, live: &str) -> String {
    let name = format!("{prefix}{live}");
    if name.len() <= 64 {
        name
    } else {
        let keep = 49 - prefix.len();
        format!("{prefix}{}:{}", tag(live), live.chars().take(keep).collect::<String>())
    }
}

fn lock_name(live: &str) -> String {
    capped_lock_name("dbbackup:", live)
}

/// Tries to take the target's restore lock on `c`.
pub(super) async fn try_lock(c: &mut Conn, live: &str) -> Result<bool> {
    get_lock(c, &qs(&lock_name(live)), 0).await
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

fn swap_lock_name(live: &str) -> String {
    capped_lock_name("dbbackup-swap:", live)
}

/// Takes the target's swap lock on `c` (`GET_LOCK('dbbackup-swap:<db>', ..)`), waiting at most
/// `wait` (the run's lock timeout; `None`: a year). Held by a restore while it changes the live
/// database (the shadow's swap up to `objects-created`, an in-place restore from its first drop
/// to its end, every recovery), and by a backup from before its snapshot instant until its table
/// list, schema and objects are read and every table is pinned in its snapshot transactions; see
/// "Backups and restores of one database" in docs/mysql.md. Not granted in time: [`Error::Locked`]
/// naming the other run, prefixed with `waiting` (what could not go on).
pub(super) async fn lock_swap(
    c: &mut Conn,
    live: &str,
    wait: Option<std::time::Duration>,
    waiting: &str,
) -> Result<()> {
    let name = qs(&swap_lock_name(live));
    let secs = wait_secs(wait);
    if get_lock(c, &name, secs).await? {
        return Ok(());
    }
    // Who holds it: a restore holds its restore lock on the same connection, a backup does not.
    let holders =
        query_text(c, &format!("SELECT IS_USED_LOCK({name}), IS_USED_LOCK({})", qs(&lock_name(live))))
            .await?;
    let holder = holders.into_iter().next().unwrap_or_default();
    let (swapper, restorer) = (holder.first().cloned().flatten(), holder.get(1).cloned().flatten());
    let other = match (&swapper, &restorer) {
        (Some(s), Some(r)) if s == r => format!("a restore into it (server connection {s}) is changing it"),
        (Some(s), _) => format!("a backup of it (server connection {s}) is reading its tables and objects"),
        (None, _) => "another run held it and has ended; retry".to_string(),
    };
    Err(Error::Locked(format!(
        "{waiting}: {other} (MySQL database {live:?}); lock {name} not granted within the lock timeout \
         of {secs}s (--lock-timeout)"
    )))
}

/// Seconds for `GET_LOCK` from a lock timeout (`None`: a year).
fn wait_secs(wait: Option<std::time::Duration>) -> u64 {
    wait.map(crate::source::limits::secs_ceil).unwrap_or(31_536_000)
}

/// `GET_LOCK(<name>, <secs>)` on `c` (`name` quoted): whether it was granted.
async fn get_lock(c: &mut Conn, name: &str, secs: u64) -> Result<bool> {
    let r = query_text(c, &format!("SELECT GET_LOCK({name}, {secs})")).await?;
    Ok(r.into_iter().next().and_then(|r| r.into_iter().next().flatten()).as_deref() == Some("1"))
}

/// Takes the target's restore lock on `c`, waiting at most `wait` (the run's lock timeout;
/// `None`: a year): a backup that found killed runs' leftovers showing the live database
/// mid-swap ([`left_mid_swap`]) while the lock looked held waits this way for the dying restore's
/// connection to let go (the caller holds no other lock of the target meanwhile). Not granted
/// in time: [`Error::Locked`] naming the lock and its holder, prefixed with `waiting`.
pub(super) async fn wait_lock(
    c: &mut Conn,
    live: &str,
    wait: Option<std::time::Duration>,
    waiting: &str,
) -> Result<()> {
    let (name, secs) = (qs(&lock_name(live)), wait_secs(wait));
    if get_lock(c, &name, secs).await? {
        return Ok(());
    }
    let holder = query_value(c, &format!("SELECT IS_USED_LOCK({name})")).await?;
    let holder = holder.map(|h| format!(" (server connection {h})")).unwrap_or_default();
    Err(Error::Locked(format!(
        "{waiting}: MySQL database {live:?} was found mid-swap (left by a killed restore), and a \
         restore into it{holder} still holds lock {name}; not granted within the lock timeout of {secs}s \
         (--lock-timeout)"
    )))
}

/// Releases the swap lock (best effort, nothing when not held; closing the connection releases
/// it too).
pub(super) async fn unlock_swap(c: &mut Conn, live: &str) {
    let _ = exec(c, &format!("DO RELEASE_LOCK({})", qs(&swap_lock_name(live)))).await;
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

/// How far a swap got, where the journal's place does not say it: the journal's row `step`,
/// written once the step's last statement succeeded. A journal without it (written by a version
/// before it, or before the first step below) is read as before: in the shadow, the swap never
/// happened; in the previous database, the tables were swapped, and the objects are in place only
/// if the shadow is gone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Step {
    /// In the previous database: the restored objects are in place ([`Plan::forward`] done), the
    /// restore is complete; only the run's databases are left to drop. The live database may
    /// have changed since, so nothing is run against it again.
    ObjectsCreated,
    /// Written in the previous database by [`Plan::back`] before its rename, which moves it to the
    /// shadow: the swap is being undone, every old object is to be put back.
    SwappingBack,
    /// In the shadow: the live database is as it was before the restore (what was in the
    /// rename's way put back, or the swap undone); only the run's databases are left to drop.
    PutBack,
}

impl Step {
    fn as_str(self) -> &'static str {
        match self {
            Step::ObjectsCreated => "objects-created",
            Step::SwappingBack => "swapping-back",
            Step::PutBack => "put-back",
        }
    }

    fn parse(v: &str) -> Option<Step> {
        [Step::ObjectsCreated, Step::SwappingBack, Step::PutBack].into_iter().find(|s| s.as_str() == v)
    }
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

    /// The live objects that must leave before the rename ([`Plan::drop_in_the_way`]): the
    /// moved tables' triggers (a table with triggers cannot move to another database) and the
    /// live views named like a table the rename brings in (a view and a table share one
    /// namespace, so the rename would fail on them: a migration that replaced table `t` by a
    /// view `t`, rolled back). Derived from `old_objects` and `shadow_tables`, so a journal of
    /// any version names the same ones.
    fn in_the_way(&self) -> impl Iterator<Item = &Object> + '_ {
        self.old_objects
            .iter()
            .filter(|o| o.kind == "TRIGGER" || (o.kind == "VIEW" && self.shadow_tables.contains(&o.name)))
    }

    /// Drops what is in the rename's way ([`Plan::in_the_way`]): the live triggers and views.
    pub(super) async fn drop_in_the_way(&self, c: &mut Conn) -> Result<()> {
        exec(c, &format!("USE {}", qi(&self.live))).await?;
        for o in self.in_the_way() {
            drop_object(c, o).await?;
        }
        Ok(())
    }

    /// Puts back what [`Plan::drop_in_the_way`] dropped (the swap did not happen). Idempotent.
    pub(super) async fn restore_in_the_way(&self, c: &mut Conn) -> Result<()> {
        exec(c, &format!("USE {}", qi(&self.live))).await?;
        let old: Vec<Object> = self.in_the_way().cloned().collect();
        for o in &old {
            drop_object(c, o).await?;
        }
        recreate(c, &self.live, &old, false).await
    }

    /// Records in the journal (in database `db`, where the journal is at that point) that the
    /// swap got to `step`.
    pub(super) async fn mark(&self, c: &mut Conn, db: &str, step: Step) -> Result<()> {
        exec(c, &format!("REPLACE INTO {}.{} VALUES ('step', {})", qi(db), qi(JOURNAL), qs(step.as_str())))
            .await
            .map_err(|e| e.context(format!("record step {} in the restore journal", step.as_str())))
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

    /// Undoes [`Plan::rename_in`] and puts the old objects back. Marked first
    /// ([`Step::SwappingBack`], moved to the shadow by the rename with the journal), so a run
    /// killed after the rename puts every old object back, not only what was in the way.
    /// Idempotent up to its rename (the recovery of a run killed before it runs it again).
    pub(super) async fn back(&self, c: &mut Conn) -> Result<()> {
        self.mark(c, &self.prev, Step::SwappingBack).await?;
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
        failpoint::hit("mysql-swap-back-renamed");
        self.put_old_objects_back(c).await
    }

    /// After [`Plan::back`]'s rename (the old tables live again): the live database gets exactly
    /// the old objects and options. Idempotent.
    async fn put_old_objects_back(&self, c: &mut Conn) -> Result<()> {
        let current = harvest(c, &self.live, self.whole).await?;
        for o in &current {
            if self.whole || self.old_objects.iter().any(|n| n.kind == o.kind && n.name == o.name) {
                drop_object(c, o).await?;
            }
        }
        if self.whole
            && let Some(a) = &self.old_alter
        {
            exec(c, &format!("ALTER DATABASE {} {a}", qi(&self.live))).await?;
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

    /// Finishes a commit: the held-back events ([`InPlacePlan::create_events`]), then the aside
    /// tables dropped, the journal last ([`InPlacePlan::drop_aside`]).
    pub(super) async fn finish(&self, c: &mut Conn, events: &[Object]) -> Result<()> {
        let done = self.create_events(c, events).await?;
        done.drop_aside(c).await
    }

    /// Creates the held-back events and records that in the journal (`committing` left empty),
    /// so the next run, finding the commit killed later, only drops the aside tables: the
    /// events may have changed since. Returns the plan as recorded.
    pub(super) async fn create_events(&self, c: &mut Conn, events: &[Object]) -> Result<InPlacePlan> {
        let done = InPlacePlan { committing: Some(Vec::new()), ..self.clone() };
        if events.is_empty() {
            return Ok(done);
        }
        exec(c, &format!("USE {}", qi(&self.live))).await?;
        // The start dropped every live event and only this step creates any: the ones present
        // are from a commit killed halfway (held-back events carry no parsed name).
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
        recreate(c, &self.live, events, false).await?;
        done.write(c).await?;
        Ok(done)
    }

    /// The last step of a commit: the aside tables dropped, then the journal.
    pub(super) async fn drop_aside(&self, c: &mut Conn) -> Result<()> {
        for (a, _) in &self.aside {
            exec(c, &format!("DROP TABLE IF EXISTS {}.{}", qi(&self.live), qi(a))).await?;
            failpoint::fail("mysql-in-place-drop-aside")?;
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
            failpoint::hit("mysql-in-place-undo-renamed");
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
    if !has_journal(c, live).await? {
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

/// Whether database `db` holds a `dbbackup:journal` table.
async fn has_journal(c: &mut Conn, db: &str) -> Result<bool> {
    let has = query_text(
        c,
        &format!(
            "SELECT 1 FROM information_schema.TABLES WHERE TABLE_SCHEMA = {} AND TABLE_NAME = {}",
            qs(db),
            qs(JOURNAL)
        ),
    )
    .await?;
    Ok(!has.is_empty())
}

/// The plan and the step of the journal in `db`, if it holds one.
async fn read_plan(c: &mut Conn, db: &str, live: &str) -> Result<Option<(Plan, Option<Step>)>> {
    if !has_journal(c, db).await? {
        return Ok(None);
    }
    let rows =
        query_text(c, &format!("SELECT k, v FROM {}.{} WHERE k IN ('plan', 'step')", qi(db), qi(JOURNAL)))
            .await?;
    let value = |key: &str| {
        rows.iter()
            .find(|r| r.first().cloned().flatten().as_deref() == Some(key))
            .and_then(|r| r.get(1).cloned().flatten())
    };
    let Some(body) = value("plan") else {
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
    let step = match value("step") {
        None => None,
        Some(v) => Some(Step::parse(&v).ok_or_else(|| {
            Error::InvalidInput(format!(
                "the restore journal in database {db} records step {v:?}, which this version does not know; left alone"
            ))
        })?),
    };
    Ok(Some((plan, step)))
}

/// Brings the live database of one killed run to the old or the new database, from its journal,
/// and records that in the journal ([`Step`]) before the caller drops the run's databases: killed
/// there, the next run only drops them, whatever the live database became meanwhile.
///
/// | journal in | step | the run was killed | done here |
/// |---|---|---|---|
/// | shadow | none | before its rename | what was in the way put back, `PutBack` |
/// | shadow | `SwappingBack` | undoing its swap, after the rename back | every old object put back, `PutBack` |
/// | shadow | `PutBack` | dropping its databases (old complete) | nothing |
/// | previous | none, shadow present | creating the restored objects | objects created (swap undone if they cannot be), `ObjectsCreated` |
/// | previous | none, shadow gone | dropping its databases (an older version's run, new complete) | nothing |
/// | previous | `ObjectsCreated` | dropping its databases (new complete) | nothing |
/// | previous | `SwappingBack` | undoing its swap, before the rename back | swap undone, `PutBack` |
/// | neither | - | before its plan was written | nothing (the previous database must be empty) |
async fn recover_run(
    c: &mut Conn,
    live: &str,
    shadow: &str,
    has_shadow: bool,
    prev: &str,
    has_prev: bool,
    notes: &mut Vec<String>,
) -> Result<()> {
    if let Some((plan, step)) = if has_prev { read_plan(c, prev, live).await? } else { None } {
        match step {
            Some(Step::ObjectsCreated) => notes.push(format!(
                "found an interrupted restore into {live} that had completed (killed dropping the tables it \
                 replaced); {live} left as it is"
            )),
            // The shadow is dropped first, and only once the restored objects are in place.
            None if !has_shadow => notes.push(format!(
                "found an interrupted restore into {live} that had completed (its shadow dropped); {live} left \
                 as it is"
            )),
            Some(Step::SwappingBack) => {
                plan.back(c).await.map_err(|e| {
                    e.context(format!(
                        "undoing an interrupted restore into {live} failed; the previous tables are in database {prev}"
                    ))
                })?;
                plan.mark(c, shadow, Step::PutBack).await?;
                notes.push(format!(
                    "undid an interrupted restore into {live}: it was killed undoing its swap; the previous \
                     database was put back"
                ));
            }
            None => match plan.forward(c).await {
                Ok(()) => {
                    plan.mark(c, prev, Step::ObjectsCreated).await?;
                    notes.push(format!(
                        "finished an interrupted restore into {live}: its tables had been swapped in; \
                         its views, routines, triggers and events are now in place"
                    ));
                }
                Err(e) => {
                    plan.back(c).await.map_err(|b| {
                        b.context(format!(
                            "finishing an interrupted restore into {live} failed ({e}) and undoing it failed \
                             too; the previous tables are in database {prev}"
                        ))
                    })?;
                    plan.mark(c, shadow, Step::PutBack).await?;
                    notes.push(format!(
                        "undid an interrupted restore into {live}: its objects could not be created ({e}); \
                         the previous database was put back"
                    ));
                }
            },
            Some(Step::PutBack) => {
                return Err(Error::InvalidInput(format!(
                    "the restore journal in database {prev} says its swap was undone, but it is not in the \
                     shadow; left alone for inspection"
                )));
            }
        }
    } else if let Some((plan, step)) = if has_shadow { read_plan(c, shadow, live).await? } else { None } {
        match step {
            None => {
                plan.restore_in_the_way(c).await?;
                plan.mark(c, shadow, Step::PutBack).await?;
                notes.push(format!(
                    "undid an interrupted restore into {live}: it was killed before its swap; {live} is as it was"
                ));
            }
            Some(Step::SwappingBack) => {
                plan.put_old_objects_back(c).await?;
                plan.mark(c, shadow, Step::PutBack).await?;
                notes.push(format!(
                    "undid an interrupted restore into {live}: it was killed undoing its swap; the previous \
                     database was put back"
                ));
            }
            Some(Step::PutBack) => notes.push(format!(
                "found an interrupted restore into {live} that had been undone; {live} left as it is"
            )),
            Some(Step::ObjectsCreated) => {
                return Err(Error::InvalidInput(format!(
                    "the restore journal in database {shadow} says its objects were created, but it is still \
                     in the shadow; left alone for inspection"
                )));
            }
        }
    } else if has_prev && !base_tables(c, prev).await?.is_empty() {
        return Err(Error::InvalidInput(format!(
            "database {prev} (left by an interrupted restore into {live}) holds tables but no journal; \
             left alone for inspection"
        )));
    }
    Ok(())
}

/// The server's databases, and the run ids of `live`'s shadow and previous databases among them.
async fn runs(c: &mut Conn, live: &str) -> Result<(Vec<String>, std::collections::BTreeSet<String>)> {
    let (shadows, prevs) = (aux_names(live, "shadow"), aux_names(live, "prev"));
    let names: Vec<String> = query_text(c, "SELECT SCHEMA_NAME FROM information_schema.SCHEMATA")
        .await?
        .into_iter()
        .filter_map(|r| r.into_iter().next().flatten())
        .collect();
    let runs = names
        .iter()
        .filter_map(|n| shadows.tail_of(n).or_else(|| prevs.tail_of(n)))
        .map(str::to_string)
        .collect();
    Ok((names, runs))
}

/// Whether what killed restores into `live` left shows the live database mid-swap: a state
/// [`recover`] would change it from ([`recover_run`]'s table: a plan in the shadow, not marked
/// `put-back`; a plan in the previous database marked `swapping-back`, or unmarked with the shadow
/// still there; [`recover_in_place`]: a journal in the live database). Reads only. The caller
/// holds the swap lock but could not take the restore lock: a running restore never leaves such
/// a state outside the swap lock (loading, its shadow's journal has no plan; after its swap, its
/// journal says `objects-created`; in place, it holds the swap lock from its journal to its
/// end) — except for the instant between the two locks' release when it dies or fails, which is
/// what this finds: then the live database is half-swapped and must not be read.
pub(super) async fn left_mid_swap(c: &mut Conn, live: &str) -> Result<bool> {
    let (names, runs) = runs(c, live).await?;
    if names.iter().any(|n| n == live) && has_journal(c, live).await? {
        return Ok(true);
    }
    for run in runs {
        let (shadow, prev) = (aux_name(live, "shadow", &run), aux_name(live, "prev", &run));
        let has_shadow = names.contains(&shadow);
        // A running restore drops its databases without the swap lock (its shadow on abort, both
        // once `objects-created` is recorded): a journal gone since the listing is no journal.
        if names.contains(&prev)
            && let Some(step) = step_if_there(c, &prev, live).await?
        {
            if step == Some(Step::SwappingBack) || (step.is_none() && has_shadow) {
                return Ok(true);
            }
        } else if has_shadow
            && let Some(step) = step_if_there(c, &shadow, live).await?
            && matches!(step, None | Some(Step::SwappingBack))
        {
            return Ok(true);
        }
    }
    Ok(false)
}

/// The step of the plan journaled in `db` (`Some(None)`: a plan without a step), if `db` still
/// holds one: an error reading a journal that is gone meanwhile is none.
async fn step_if_there(c: &mut Conn, db: &str, live: &str) -> Result<Option<Option<Step>>> {
    match read_plan(c, db, live).await {
        Ok(found) => Ok(found.map(|(_, step)| step)),
        Err(_) if !has_journal(c, db).await? => Ok(None),
        Err(e) => Err(e),
    }
}

/// Finishes or undoes what killed restores into `live` left, and drops their databases. The
/// caller holds the target's lock, so none of them belongs to a running restore. Returns notes
/// for the operator.
pub(super) async fn recover(c: &mut Conn, live: &str) -> Result<Vec<String>> {
    let (names, runs) = runs(c, live).await?;
    let mut notes = Vec::new();
    if names.iter().any(|n| n == live) {
        recover_in_place(c, live, &mut notes).await?;
    }
    for run in runs {
        let (shadow, prev) = (aux_name(live, "shadow", &run), aux_name(live, "prev", &run));
        let (has_shadow, has_prev) = (names.contains(&shadow), names.contains(&prev));
        recover_run(c, live, &shadow, has_shadow, &prev, has_prev, &mut notes).await?;
        if has_shadow {
            notes.push(format!("dropped {shadow}, the shadow of an interrupted restore"));
        }
        if has_prev {
            notes.push(format!("dropped {prev}, the previous database of an interrupted restore"));
        }
        failpoint::hit("mysql-recovered");
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
        assert!(swap_lock_name(&"x".repeat(64)).len() <= 64);
        let long = "x".repeat(64);
        assert_eq!(lock_name(&long), format!("dbbackup:{}:{}", tag(&long), "x".repeat(40)));
        assert_eq!(swap_lock_name(&long), format!("dbbackup-swap:{}:{}", tag(&long), "x".repeat(35)));
        assert_eq!(swap_lock_name("app"), "dbbackup-swap:app");
        assert_eq!(lock_name("app"), "dbbackup:app");
    }

    /// A journal's plan as the version before the `step` row wrote it still reads (the next run
    /// recovers a killed run of an older version), and the steps read back what they write.
    #[test]
    fn journals_of_older_versions_still_read_and_steps_round_trip() {
        let old = r#"{"live":"app","shadow":"app_dbbshadow_a172cedc0123abcd","prev":"app_dbbprev_a172cedc0123abcd","whole":true,"live_tables":["t"],"shadow_tables":["t","u"],"old_objects":[{"kind":"TRIGGER","name":"trg","sql_mode":"","time_zone":"t","create":"CREATE TRIGGER trg BEFORE INSERT ON t FOR EACH ROW SET @x = 1"},{"kind":"VIEW","name":"u","sql_mode":"","time_zone":null,"create":"CREATE VIEW u AS SELECT 1"},{"kind":"VIEW","name":"w","sql_mode":"","time_zone":null,"create":"CREATE VIEW w AS SELECT 1"}],"new_objects":[],"alter":"CHARACTER SET `utf8mb4`","old_alter":null}"#;
        let plan: Plan = serde_json::from_str(old).unwrap();
        let in_the_way: Vec<&str> = plan.in_the_way().map(|o| o.name.as_str()).collect();
        assert_eq!(in_the_way, ["trg", "u"], "the trigger and the view named like a restored table");
        for step in [Step::ObjectsCreated, Step::SwappingBack, Step::PutBack] {
            assert_eq!(Step::parse(step.as_str()), Some(step));
        }
        assert_eq!(Step::parse("objects-dropped"), None, "an unknown step is refused, not guessed");
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
