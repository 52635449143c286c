//! The server-side half of a dump snapshot's table stats: each table's `COUNT(*)` and `CHECKSUM
//! TABLE` (two scans on the server, see [`super::checksum::snapshot_stats`]) as separate
//! statements in one queue, in the order the dump reaches the tables ([`order`]). The snapshot's
//! stats worker runs them from the moment the plan is made, without waiting for the tables'
//! dump: every snapshot connection reads the same instant, so what they count and sum does not
//! depend on when they run. In the dump's order the stats worker scans a table about when the
//! dump workers read it, so its pages are read into the buffer pool once for both. Once every
//! chunk has a dump worker, the dump workers join in as they come free, so the statements left
//! when the dump ends run side by side instead of one after the other while the client idles.
//! With no stats worker (one consistent connection), only that last part happens.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use mysql_async::Conn;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::checksum;
use super::conn::exec;
use crate::error::{Error, Result};
use crate::source::pool::Pool;

/// One server-side statement of a table's stats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Stat {
    /// `CHECKSUM TABLE` (plain tables only).
    ChecksumTable,
    /// `SELECT COUNT(*)`.
    Count,
}

/// What the queue needs to know of a table.
#[derive(Debug, Clone)]
pub(crate) struct StatsTable {
    pub(crate) name: String,
    /// Where the dump reaches it: the position of its first chunk in the plan.
    pub(crate) first_chunk: usize,
    /// System-versioned: counted over its whole history, no `CHECKSUM TABLE`.
    pub(crate) versioned: bool,
}

/// The statements of `tables` in the order they run: the table the dump reaches first, first
/// (each table's `CHECKSUM TABLE`, the longer scan, before its `COUNT(*)`).
pub(crate) fn order(tables: &[StatsTable]) -> Vec<(usize, Stat)> {
    let mut idx: Vec<usize> = (0..tables.len()).collect();
    idx.sort_by_key(|&i| tables[i].first_chunk);
    let mut out = Vec::with_capacity(2 * idx.len());
    for i in idx {
        if !tables[i].versioned {
            out.push((i, Stat::ChecksumTable));
        }
        out.push((i, Stat::Count));
    }
    out
}

type Item = (usize, Stat);

/// The queue, the answers and the runners of one snapshot's stats.
pub(crate) struct StatsRun {
    shared: Arc<Shared>,
    runners: Mutex<Vec<JoinHandle<()>>>,
}

struct Shared {
    db: String,
    tables: Vec<StatsTable>,
    queue: Mutex<VecDeque<Item>>,
    /// Answers by statement: the count, or `CHECKSUM TABLE`'s value (`None`: the server has none).
    done: Mutex<HashMap<Item, Result<Option<String>>>>,
    /// Bumped when an answer arrives or a runner ends.
    changed: watch::Sender<()>,
    /// Runners not ended.
    live: AtomicUsize,
}

/// Decrements the live runners when a runner ends (also when it is aborted).
struct Live(Arc<Shared>);

impl Drop for Live {
    fn drop(&mut self) {
        self.0.live.fetch_sub(1, Ordering::SeqCst);
        self.0.changed.send_replace(());
    }
}

impl StatsRun {
    /// Queues the stats of `tables` ([`order`]) and starts the runners: one on `early` (the
    /// stats worker) at once, and one per connection of `late` once `gate` opens (every chunk
    /// has its dump worker).
    pub(crate) fn start(
        db: &str,
        tables: Vec<StatsTable>,
        early: Option<Pool<Conn>>,
        late: Pool<Conn>,
        gate: watch::Receiver<bool>,
    ) -> Arc<Self> {
        let queue = order(&tables).into_iter().collect();
        let shared = Arc::new(Shared {
            db: db.to_string(),
            tables,
            queue: Mutex::new(queue),
            done: Mutex::default(),
            changed: watch::Sender::new(()),
            live: AtomicUsize::new(0),
        });
        let mut runners = Vec::new();
        let mut spawn = |pool: Pool<Conn>, gate: Option<watch::Receiver<bool>>| {
            shared.live.fetch_add(1, Ordering::SeqCst);
            let live = Live(shared.clone());
            runners.push(tokio::spawn(run(live, pool, gate)));
        };
        if let Some(p) = early {
            spawn(p, None);
        }
        for _ in 0..late.size() {
            spawn(late.clone(), Some(gate.clone()));
        }
        Arc::new(StatsRun { shared, runners: Mutex::new(runners) })
    }

    /// The index of table `name` in the queue's tables.
    pub(crate) fn index_of(&self, name: &str) -> Option<usize> {
        self.shared.tables.iter().position(|t| t.name == name)
    }

    /// Waits for table `t`'s answers: its row count and `CHECKSUM TABLE` (`None` when not taken
    /// or the server has none). An error when a statement failed or every runner ended first.
    pub(crate) async fn wait(&self, t: usize) -> Result<(u64, Option<String>)> {
        let s = &self.shared;
        let items: Vec<Item> = order(&s.tables).into_iter().filter(|(i, _)| *i == t).collect();
        let mut seen = s.changed.subscribe();
        loop {
            {
                let mut done = s.done.lock().map_err(|_| Error::Cancelled("table stats poisoned".into()))?;
                if items.iter().all(|i| done.contains_key(i)) {
                    let mut rows = 0;
                    let mut value = None;
                    for item in &items {
                        // An answer stays for a later call; an error is given once.
                        let answer = match done.get(item) {
                            Some(Ok(v)) => v.clone(),
                            _ => done.remove(item).unwrap_or(Ok(None))?,
                        };
                        match item.1 {
                            Stat::Count => {
                                let n = answer.unwrap_or_default();
                                rows = n.parse().map_err(|_| {
                                    Error::source("MySQL row count", format!("bad count {n:?}"))
                                })?;
                            }
                            Stat::ChecksumTable => value = answer,
                        }
                    }
                    return Ok((rows, value));
                }
            }
            if s.live.load(Ordering::SeqCst) == 0 {
                return Err(Error::Cancelled("the snapshot's table stats connections are gone".into()));
            }
            seen.changed().await.map_err(|_| Error::Cancelled("table stats ended".into()))?;
        }
    }

    /// Stops the runners (a failed dump never needs their answers).
    pub(crate) fn abort(&self) {
        if let Ok(mut r) = self.runners.lock() {
            for h in r.drain(..) {
                h.abort();
            }
        }
    }
}

/// One runner: after `gate` (if any) opens, takes a connection of `pool` and runs the queue's
/// statements until it is empty.
async fn run(live: Live, pool: Pool<Conn>, gate: Option<watch::Receiver<bool>>) {
    let s = &live.0;
    if let Some(mut g) = gate
        && g.wait_for(|open| *open).await.is_err()
    {
        return;
    }
    if s.queue.lock().map(|q| q.is_empty()).unwrap_or(true) {
        return;
    }
    let Ok(mut lease) = pool.get().await else { return };
    // A dump worker's chunk sets `character_set_results` again before its SELECT.
    let charset = exec(&mut lease, "SET SESSION character_set_results = utf8mb4").await;
    loop {
        let Some(item) = s.queue.lock().ok().and_then(|mut q| q.pop_front()) else { return };
        let t = &s.tables[item.0];
        if let Some(hold) = crate::failpoint::mysql_stats_hold(&s.db) {
            let _ =
                exec(&mut lease, &format!("DO GET_LOCK({}, 300), RELEASE_LOCK({0})", super::conn::qs(&hold)))
                    .await;
        }
        let answer = match (&charset, item.1) {
            (Err(e), _) => Err(Error::source("MySQL table stats", e.to_string())),
            (Ok(()), Stat::Count) => checksum::row_count(&mut lease, &s.db, &t.name, t.versioned)
                .await
                .map(|n| Some(n.to_string())),
            (Ok(()), Stat::ChecksumTable) => checksum::checksum_table(&mut lease, &s.db, &t.name).await,
        };
        if let Ok(mut done) = s.done.lock() {
            done.insert(item, answer);
        }
        s.changed.send_replace(());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(name: &str, first_chunk: usize, versioned: bool) -> StatsTable {
        StatsTable { name: name.into(), first_chunk, versioned }
    }

    /// In the order of the tables' first chunks, `CHECKSUM TABLE` before `COUNT(*)`, none for a
    /// versioned table, ties in listing order.
    #[test]
    fn dump_order_checksum_before_count() {
        let tables = [
            t("failed_jobs", 9, false),
            t("hist", 0, true),
            t("transactions", 10, false),
            t("webhook", 4, false),
        ];
        assert_eq!(
            order(&tables),
            vec![
                (1, Stat::Count),
                (3, Stat::ChecksumTable),
                (3, Stat::Count),
                (0, Stat::ChecksumTable),
                (0, Stat::Count),
                (2, Stat::ChecksumTable),
                (2, Stat::Count),
            ]
        );
        assert_eq!(order(&[t("a", 1, false), t("b", 1, false)])[0], (0, Stat::ChecksumTable));
    }
}
