//! The pipeline under the use-cases: verified reads of a backup's objects and the load of a
//! whole backup into a session with its checks. `restore`, `verify` (full and drill) and `guard`
//! (through restore) share these, so every byte read back is checked the same way.
//!
//! - [`read_stored`]: an object's stored bytes, checked against its recorded size and SHA-256;
//! - [`read_object`]: the same, then decrypted, decompressed and checked against its raw SHA-256;
//! - [`check_quick`] / [`check_full`]: every object present with its size / every byte intact,
//!   as findings;
//! - [`load_and_check`]: every selected object into a [`LoadSession`], then each table's row
//!   count and checksum compared with the manifest.

use futures::{StreamExt, TryStreamExt};
use serde::{Deserialize, Serialize};

use crate::codec::ByteStream;
use crate::codec::checksum::{verified, verified_length};
use crate::codec::compress::{self, Codec};
use crate::error::{Error, Result};
use crate::format::manifest::{Manifest, ObjectEntry, ObjectKind};
use crate::format::{layout, sealed};
use crate::progress::{Context, Event, Phase, PhaseGuard};
use crate::source::table_filter::{is_named, selects};
use crate::source::{LoadOptions, LoadSession, TableStats};
use crate::storage::Target;

/// One problem found.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Finding {
    /// Object key (relative to the backup), when the problem is an object's.
    pub object: Option<String>,
    /// Table, when the problem is a table's.
    pub table: Option<String>,
    /// What is wrong.
    pub problem: String,
}

/// Every object exists with its recorded size.
pub async fn check_quick(target: &Target, manifest: &Manifest) -> Result<Vec<Finding>> {
    let dir = layout::backup_dir(&manifest.id);
    let results: Vec<(usize, Result<Option<u64>>)> =
        futures::stream::iter(manifest.objects.iter().enumerate())
            .map(|(i, o)| {
                let key = format!("{dir}{}", o.key);
                async move { (i, target.head(&key).await) }
            })
            .buffer_unordered(16)
            .collect()
            .await;
    let mut findings = Vec::new();
    for (i, r) in results {
        let o = &manifest.objects[i];
        match r? {
            None => {
                findings.push(Finding { object: Some(o.key.clone()), table: None, problem: "missing".into() })
            }
            Some(size) if size != o.stored_bytes => findings.push(Finding {
                object: Some(o.key.clone()),
                table: None,
                problem: format!("size {size} bytes, manifest says {}", o.stored_bytes),
            }),
            Some(_) => {}
        }
    }
    findings.sort_by(|a, b| a.object.cmp(&b.object));
    Ok(findings)
}

/// Every object downloaded, digests checked, decompressed fully.
pub async fn check_full(
    target: &Target,
    manifest: &Manifest,
    jobs: usize,
    ctx: &Context,
) -> Result<Vec<Finding>> {
    let total = manifest.raw_bytes();
    let _phase = PhaseGuard::start(ctx, Phase::Verify, Some(total));
    let results: Vec<Result<Option<Finding>>> = futures::stream::iter(manifest.objects.iter())
        .map(|o| async move {
            ctx.check("verify")?;
            let quiet = Context {
                observer: std::sync::Arc::new(crate::progress::NoProgress),
                cancel: ctx.cancel.clone(),
                stores: ctx.stores.clone(),
                critical: ctx.critical.clone(),
            };
            let mut s = if manifest.is_sealed() {
                // No key: what can be proven is that the stored bytes are those written.
                read_stored(target, manifest, o)
            } else {
                read_object(target, manifest, o, &quiet)
            };
            while let Some(item) = s.next().await {
                match item {
                    Ok(b) => ctx.emit(Event::Advanced { phase: Phase::Verify, bytes: b.len() as u64 }),
                    Err(e @ (Error::Integrity { .. } | Error::NotFound { .. })) => {
                        return Ok(Some(Finding {
                            object: Some(o.key.clone()),
                            table: None,
                            problem: e.to_string(),
                        }));
                    }
                    Err(e) => return Err(e),
                }
            }
            ctx.emit(Event::ObjectDone { phase: Phase::Verify, key: o.key.clone() });
            Ok(None)
        })
        .buffer_unordered(jobs)
        .collect()
        .await;
    let mut findings = Vec::new();
    for r in results {
        if let Some(f) = r? {
            findings.push(f);
        }
    }
    findings.sort_by(|a, b| a.object.cmp(&b.object));
    Ok(findings)
}

/// What a load put into a session.
#[derive(Debug, Clone, Default)]
pub(crate) struct Loaded {
    pub(crate) tables: usize,
    pub(crate) rows: u64,
    pub(crate) raw_bytes: u64,
    pub(crate) objects: usize,
    pub(crate) notes: Vec<String>,
}

/// Loads every object of `manifest` into `session` (digests checked as bytes stream), then
/// compares each selected table's row count and checksum with the manifest.
pub(crate) async fn load_and_check<'a>(
    target: &'a Target,
    manifest: &'a Manifest,
    session: &'a dyn LoadSession,
    opts: &LoadOptions,
    ctx: &'a Context,
) -> Result<Loaded> {
    tables_exist(manifest, &opts.tables)?;
    let load = Load { target, manifest, session, opts, ctx };
    let wanted = |o: &ObjectEntry| match o.table {
        Some(t) => selects(opts.tables.as_deref(), &manifest.tables[t]),
        None => true,
    };
    let total: u64 = manifest.objects.iter().filter(|o| wanted(o)).map(|o| o.raw_bytes).sum();
    let phase = PhaseGuard::start(ctx, Phase::Load, Some(total));
    let mut loaded = Loaded::default();
    for o in manifest.objects.iter().filter(|o| o.kind == ObjectKind::SchemaPre) {
        session
            .pre_data(read_object(target, manifest, o, ctx))
            .await
            .map_err(|e| e.context("apply pre-data schema"))?;
        loaded.objects += 1;
    }
    // A session that builds each table's keys right after its load needs the post-data script
    // first (read whole, every digest checked); post-data then runs from this text.
    let mut post_texts: Vec<String> = Vec::new();
    if session.keys_per_table() {
        for o in manifest.objects.iter().filter(|o| o.kind == ObjectKind::SchemaPost) {
            let text = crate::source::read_text(
                read_object(target, manifest, o, ctx),
                MAX_POST_DATA,
                "post-data schema",
            )
            .await
            .map_err(|e| e.context("read post-data schema"))?;
            session.plan_keys(&text).await.map_err(|e| e.context("plan the keys of post-data"))?;
            post_texts.push(text);
        }
    }
    let data: Vec<&ObjectEntry> = manifest
        .objects
        .iter()
        .filter(|o| matches!(o.kind, ObjectKind::Data | ObjectKind::File) && wanted(o))
        .collect();
    // Table stats already taken (manifest table index), see `stats_after_table_load`.
    let mut early: Vec<(usize, TableStats)> = Vec::new();
    if session.one_table_at_a_time() {
        early = load.by_table(&data).await?;
    } else {
        load.unordered(&data).await?;
    }
    loaded.objects += data.len();
    loaded.raw_bytes = data.iter().map(|o| o.raw_bytes).sum();
    tracing::debug!("restore: data loaded");
    let mut post_texts = post_texts.into_iter();
    for o in manifest.objects.iter().filter(|o| o.kind == ObjectKind::SchemaPost) {
        let sql = match post_texts.next() {
            Some(text) => futures::stream::once(async move { Ok(bytes::Bytes::from(text)) }).boxed(),
            None => read_object(target, manifest, o, ctx),
        };
        session.post_data(sql, ctx).await.map_err(|e| e.context("apply post-data schema"))?;
        loaded.objects += 1;
    }
    drop(phase);
    tracing::debug!("restore: post-data applied");
    let _p = PhaseGuard::start(ctx, Phase::Finish, None);
    load.check(early, &mut loaded).await?;
    Ok(loaded)
}

/// The most post-data text read ahead of the data ([`LoadSession::keys_per_table`]).
const MAX_POST_DATA: usize = 256 << 20;

/// Every table the filter names is in the backup.
fn tables_exist(manifest: &Manifest, tables: &Option<Vec<String>>) -> Result<()> {
    for name in tables.iter().flatten() {
        if !manifest.tables.iter().any(|t| is_named(t, name)) {
            return Err(Error::NotFound {
                backup: false,
                what: format!("table {name:?} in backup {}", manifest.id),
                available: manifest.tables.iter().map(|t| t.display_name()).collect(),
            });
        }
    }
    Ok(())
}

/// One [`load_and_check`]: the backup read from, the session loaded into.
#[derive(Clone, Copy)]
struct Load<'a> {
    target: &'a Target,
    manifest: &'a Manifest,
    session: &'a dyn LoadSession,
    opts: &'a LoadOptions,
    ctx: &'a Context,
}

impl<'a> Load<'a> {
    /// Loads one data object.
    async fn object(self, o: &'a ObjectEntry) -> Result<u64> {
        self.ctx.check("restore")?;
        let data = match self.session.checks_raw_digests_on_file() {
            true => read_object_unhashed(self.target, self.manifest, o, self.ctx),
            false => read_object(self.target, self.manifest, o, self.ctx),
        };
        let r = self.session.load(o, data).await.map_err(|e| e.context(format!("load {}", o.key)))?;
        self.ctx.emit(Event::ObjectDone { phase: Phase::Load, key: o.key.clone() });
        Ok(r)
    }

    /// For a session that loads one table at a time: one group per table (chunks in manifest
    /// order), biggest tables first, the next group to the first slot free, each finished with
    /// `table_loaded` (and `table_keys`, with `keys_per_table`: its secondary keys built in the
    /// same slot while the others load). With `stats_after_table_load` (MySQL's shadow: every
    /// chunk commits on its own; PostgreSQL's shadow: `table_loaded` commits the table), a table
    /// is read back as soon as it is loaded, while the other connections still load. Gives the
    /// stats taken.
    async fn by_table(self, data: &[&'a ObjectEntry]) -> Result<Vec<(usize, TableStats)>> {
        let mut groups: Vec<(Option<usize>, Vec<&ObjectEntry>)> = Vec::new();
        for o in data {
            match groups.iter_mut().find(|(t, _)| *t == o.table && t.is_some()) {
                Some((_, g)) => g.push(o),
                None => groups.push((o.table, vec![o])),
            }
        }
        groups.sort_by_key(|(_, g)| std::cmp::Reverse(g.iter().map(|o| o.raw_bytes).sum::<u64>()));
        let early_stats = self.session.stats_after_table_load();
        let keys = self.session.keys_per_table();
        Ok(futures::stream::iter(groups)
            .map(|(t, g)| async move {
                for o in g {
                    self.object(o).await?;
                }
                let Some((i, t)) = t.and_then(|i| self.manifest.tables.get(i).map(|t| (i, t))) else {
                    return Ok::<_, Error>(None);
                };
                self.session
                    .table_loaded(t)
                    .await
                    .map_err(|e| e.context(format!("finish loading table {}", t.display_name())))?;
                let stats = match early_stats && selects(self.opts.tables.as_deref(), t) {
                    true => Some((i, self.session.table_stats(t).await?)),
                    false => None,
                };
                // After the read-back: the rows proven are the ones loaded, whatever the
                // post-data statements run here do.
                if keys {
                    self.session
                        .table_keys(t, self.ctx)
                        .await
                        .map_err(|e| e.context(format!("build the keys of table {}", t.display_name())))?;
                }
                Ok(stats)
            })
            .buffer_unordered(self.opts.jobs.max(1))
            .try_collect::<Vec<Option<(usize, TableStats)>>>()
            .await?
            .into_iter()
            .flatten()
            .collect())
    }

    /// `jobs` objects at a time, in any order.
    async fn unordered(self, data: &[&'a ObjectEntry]) -> Result<()> {
        futures::stream::iter(data.iter().copied())
            .map(|o| self.object(o))
            .buffer_unordered(self.opts.jobs.max(1))
            .try_collect::<Vec<u64>>()
            .await?;
        Ok(())
    }

    /// Reads back every selected table not in `early` and compares all of them with the
    /// manifest; the database-level check runs alongside. Fills `loaded`'s tables, rows, notes.
    async fn check(self, early: Vec<(usize, TableStats)>, loaded: &mut Loaded) -> Result<()> {
        let (manifest, session) = (self.manifest, self.session);
        let tables: Vec<usize> = (0..manifest.tables.len())
            .filter(|&i| selects(self.opts.tables.as_deref(), &manifest.tables[i]))
            .collect();
        if session.tables_proven_by_database_check() {
            // The database check proves the loaded database byte for byte the one the
            // manifest's stats were read from (SQLite's page image): its tables hold exactly
            // those rows and checksums, and reading them back would prove nothing more.
            loaded.notes = session.check_database().await?;
            for (i, s) in &early {
                compare_table(&manifest.tables[*i], s)?;
            }
            loaded.rows = tables.iter().map(|&i| manifest.tables[i].rows).sum();
            loaded.tables = tables.len();
            return Ok(());
        }
        let pending: Vec<usize> =
            tables.iter().copied().filter(|i| !early.iter().any(|(j, _)| j == i)).collect();
        // The database-level check (SQLite: integrity_check, PostgreSQL: large objects) is
        // read-only and independent of the tables: it runs alongside their scans, and counts
        // after them. A check that is one long thread's work takes one of the jobs.
        let jobs = self.opts.jobs.max(1);
        let scans = match session.database_check_takes_a_job() {
            true => scan_jobs(jobs),
            false => jobs,
        };
        let stats = futures::stream::iter(pending)
            .map(|i| async move { session.table_stats(&manifest.tables[i]).await.map(|s| (i, s)) })
            .buffer_unordered(scans)
            .try_collect::<Vec<(usize, TableStats)>>();
        let (stats, database_check) = futures::join!(stats, session.check_database());
        let mut stats = stats?;
        stats.extend(early);
        if stats.len() != tables.len() {
            return Err(Error::integrity(
                "restored tables",
                format!("{} tables read back", tables.len()),
                format!("{} tables read back", stats.len()),
            ));
        }
        for (i, s) in stats {
            compare_table(&manifest.tables[i], &s)?;
            loaded.rows += s.rows;
        }
        loaded.tables = tables.len();
        loaded.notes = database_check?;
        Ok(())
    }
}

/// Table read-backs at once beside a database check that takes one of the `jobs`.
fn scan_jobs(jobs: usize) -> usize {
    jobs.saturating_sub(1).max(1)
}

/// A table read back after a load against the manifest: the same rows and checksum.
fn compare_table(t: &crate::format::manifest::TableEntry, s: &TableStats) -> Result<()> {
    if s.rows != t.rows {
        return Err(Error::integrity(
            format!("table {} after load", t.display_name()),
            format!("{} rows", t.rows),
            format!("{} rows", s.rows),
        ));
    }
    // A loader that answers with another algorithm than the manifest names cannot prove
    // anything: refuse rather than skip the comparison.
    if t.checksum.is_some() && s.checksum.is_some() && t.checksum_algo != s.checksum_algo {
        return Err(Error::Unsupported(format!(
            "table {}: the backup's checksum algorithm {:?} is not the one this restore computed ({:?})",
            t.display_name(),
            t.checksum_algo.as_deref().unwrap_or("none"),
            s.checksum_algo.as_deref().unwrap_or("none"),
        )));
    }
    if let (Some(want), Some(got)) = (&t.checksum, &s.checksum)
        && want != got
    {
        return Err(Error::integrity(
            format!("table {} after load", t.display_name()),
            format!("checksum {want}"),
            format!("checksum {got}"),
        ));
    }
    Ok(())
}

/// Streams a stored object's stored bytes, checked against their recorded size and SHA-256 (no
/// decryption or decompression).
pub(crate) fn read_stored(target: &Target, manifest: &Manifest, o: &ObjectEntry) -> ByteStream {
    let key = format!("{}{}", layout::backup_dir(&manifest.id), o.key);
    let what = format!("object {} of {}", o.key, manifest.id);
    verified(target.get_stream(&key), what, o.stored_bytes, o.sha256.clone())
}

/// Streams a stored object: stored-digest check, decryption (encrypted backups, authenticated
/// by age), decompression, raw-digest check. The stream ends in an error, before its
/// end-of-stream, if any byte is wrong.
pub(crate) fn read_object(
    target: &Target,
    manifest: &Manifest,
    o: &ObjectEntry,
    ctx: &Context,
) -> ByteStream {
    read_object_with(target, manifest, o, ctx, true)
}

/// [`read_object`] with the raw bytes checked for their length alone, for a session that checks
/// every object's raw SHA-256 on the bytes as written before its database check succeeds
/// ([`LoadSession::checks_raw_digests_on_file`]).
fn read_object_unhashed(target: &Target, manifest: &Manifest, o: &ObjectEntry, ctx: &Context) -> ByteStream {
    read_object_with(target, manifest, o, ctx, false)
}

fn read_object_with(
    target: &Target,
    manifest: &Manifest,
    o: &ObjectEntry,
    ctx: &Context,
    raw_digest: bool,
) -> ByteStream {
    let key = format!("{}{}", layout::backup_dir(&manifest.id), o.key);
    let what = format!("object {} of {}", o.key, manifest.id);
    let codec = match Codec::from_name(&o.codec) {
        Ok(c) => c,
        Err(e) => return futures::stream::once(async move { Err(e) }).boxed(),
    };
    let stored = verified(target.get_stream(&key), what.clone(), o.stored_bytes, o.sha256.clone());
    let plain = sealed::decrypted(manifest, stored, &what);
    let raw = compress::decode(plain, codec, what.clone());
    let ctx = ctx.clone();
    let what = format!("{what} (decompressed)");
    let raw = match raw_digest {
        true => verified(raw, what, o.raw_bytes, o.raw_sha256.clone()),
        false => verified_length(raw, what, o.raw_bytes),
    };
    raw.inspect_ok(move |b| ctx.emit(Event::Advanced { phase: Phase::Load, bytes: b.len() as u64 })).boxed()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(table: Option<usize>, chunk: u32, raw_bytes: u64) -> ObjectEntry {
        ObjectEntry {
            key: format!("data/{table:?}/{chunk}"),
            kind: ObjectKind::Data,
            table,
            chunk,
            format: "pg-copy-text".into(),
            codec: "zstd".into(),
            raw_bytes,
            stored_bytes: 1,
            sha256: String::new(),
            raw_sha256: String::new(),
            rows: None,
            offset: None,
        }
    }

    /// A session that loads nothing, for [`Load::check`]: its table scans are counted and
    /// record how many run at once (each takes 20 ms); its database check takes `check_ms` and
    /// fails when `check_fails`; `busy`: that check is a thread's worth of work; `proven`: it
    /// proves the tables (SQLite's page image); `keyed`: it loads one table at a time, reads each
    /// back as soon as it is loaded and builds its keys then (MySQL's shadow), each load taking
    /// `load_ms`, and logs its loads, scans and key builds in order.
    #[derive(Default)]
    struct TestSession {
        busy: bool,
        proven: bool,
        check_fails: bool,
        check_ms: u64,
        keyed: bool,
        load_ms: u64,
        log: std::sync::Mutex<Vec<String>>,
        now: std::sync::atomic::AtomicUsize,
        most: std::sync::atomic::AtomicUsize,
        scans: std::sync::atomic::AtomicUsize,
    }

    #[async_trait::async_trait]
    impl LoadSession for TestSession {
        async fn pre_data(&self, _: ByteStream) -> Result<()> {
            Ok(())
        }
        async fn load(&self, o: &ObjectEntry, _: ByteStream) -> Result<u64> {
            tokio::time::sleep(std::time::Duration::from_millis(self.load_ms)).await;
            self.log.lock().unwrap().push(format!("load {}", o.key));
            Ok(0)
        }
        fn one_table_at_a_time(&self) -> bool {
            self.keyed
        }
        fn stats_after_table_load(&self) -> bool {
            self.keyed
        }
        fn keys_per_table(&self) -> bool {
            self.keyed
        }
        async fn table_keys(&self, t: &crate::format::manifest::TableEntry, _: &Context) -> Result<()> {
            self.log.lock().unwrap().push(format!("keys {}", t.name));
            Ok(())
        }
        async fn post_data(&self, _: ByteStream, _: &Context) -> Result<()> {
            Ok(())
        }
        async fn table_stats(&self, t: &crate::format::manifest::TableEntry) -> Result<TableStats> {
            use std::sync::atomic::Ordering::SeqCst;
            self.scans.fetch_add(1, SeqCst);
            let n = self.now.fetch_add(1, SeqCst) + 1;
            self.most.fetch_max(n, SeqCst);
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            self.now.fetch_sub(1, SeqCst);
            self.log.lock().unwrap().push(format!("stats {}", t.name));
            Ok(TableStats { rows: t.rows, ..Default::default() })
        }
        async fn check_database(&self) -> Result<Vec<String>> {
            tokio::time::sleep(std::time::Duration::from_millis(self.check_ms)).await;
            match self.check_fails {
                true => Err(Error::integrity("restored file", "the page image", "other bytes")),
                false => Ok(Vec::new()),
            }
        }
        fn database_check_takes_a_job(&self) -> bool {
            self.busy
        }
        fn tables_proven_by_database_check(&self) -> bool {
            self.proven
        }
        async fn commit(self: Box<Self>, _: &Context) -> Result<crate::source::CommitReport> {
            Ok(Default::default())
        }
        async fn abort(self: Box<Self>) -> Result<()> {
            Ok(())
        }
    }

    /// A manifest with four tables of 10 rows and no objects.
    fn four_tables() -> Manifest {
        let table = |i: usize| crate::format::manifest::TableEntry {
            schema: None,
            name: format!("t{i}"),
            key: format!("{i:04}-t{i}"),
            rows: 10,
            checksum: None,
            checksum_algo: None,
            properties: Default::default(),
        };
        Manifest {
            format: crate::format::manifest::FORMAT.into(),
            format_version: crate::format::manifest::FORMAT_VERSION,
            id: "20261123T193000Z-7f3a".parse().unwrap(),
            tool: crate::format::manifest::ToolInfo { name: "dbbackup".into(), version: "0".into() },
            engine: crate::model::Engine::Sqlite,
            server_version: String::new(),
            database: String::new(),
            source: String::new(),
            snapshot: Default::default(),
            started_at: "2026-11-23T19:30:00Z".parse().unwrap(),
            finished_at: "2026-11-23T19:30:02Z".parse().unwrap(),
            tags: vec![],
            compression: "zstd:3".into(),
            objects: vec![],
            tables: (0..4).map(table).collect(),
            notes: vec![],
            properties: Default::default(),
            encryption: None,
        }
    }

    /// Most table scans running at once in `check` with `jobs` 2, four tables.
    async fn most_scans_at_once(busy: bool) -> usize {
        let manifest = four_tables();
        let target = Target::open("memory://").unwrap();
        let session = TestSession { busy, check_ms: 100, ..Default::default() };
        let opts = LoadOptions { jobs: 2, ..Default::default() };
        let ctx = Context::default();
        let load = Load { target: &target, manifest: &manifest, session: &session, opts: &opts, ctx: &ctx };
        let mut loaded = Loaded::default();
        load.check(Vec::new(), &mut loaded).await.unwrap();
        assert_eq!(loaded.tables, 4);
        session.most.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// A database check that is one thread's work (SQLite's integrity_check) gets a job of its
    /// own: the scans run at `jobs - 1` beside it; other sessions' scans use every job.
    #[tokio::test]
    async fn a_busy_database_check_takes_one_of_the_jobs() {
        assert_eq!(most_scans_at_once(true).await, 1);
        assert_eq!(most_scans_at_once(false).await, 2);
    }

    /// With the tables proven by the database check, no table is read back, the rows are the
    /// manifest's, and the check's failure is the load's.
    #[tokio::test]
    async fn tables_proven_by_the_database_check_are_not_read_back() {
        let manifest = four_tables();
        let target = Target::open("memory://").unwrap();
        let opts = LoadOptions { jobs: 2, ..Default::default() };
        let ctx = Context::default();
        for fails in [false, true] {
            let session = TestSession { proven: true, check_fails: fails, ..Default::default() };
            let load =
                Load { target: &target, manifest: &manifest, session: &session, opts: &opts, ctx: &ctx };
            let mut loaded = Loaded::default();
            let r = load.check(Vec::new(), &mut loaded).await;
            assert_eq!(session.scans.load(std::sync::atomic::Ordering::SeqCst), 0);
            match fails {
                false => {
                    r.unwrap();
                    assert_eq!((loaded.tables, loaded.rows), (4, 40));
                }
                true => assert_eq!(r.unwrap_err().kind(), crate::error::ErrorKind::Integrity),
            }
        }
    }

    /// With `keys_per_table`, each table's keys are built in the slot that loaded it, right
    /// after its last chunk and its read-back (so the other slot still loads meanwhile), not
    /// all at the end in post-data.
    #[tokio::test]
    async fn each_tables_keys_follow_its_load_in_the_same_slot() {
        let manifest = four_tables();
        let target = Target::open("memory://").unwrap();
        let session = TestSession { keyed: true, load_ms: 30, ..Default::default() };
        let opts = LoadOptions { jobs: 2, ..Default::default() };
        let ctx = Context::default();
        let load = Load { target: &target, manifest: &manifest, session: &session, opts: &opts, ctx: &ctx };
        let objects = [
            chunk(Some(0), 0, 10),
            chunk(Some(0), 1, 10),
            chunk(Some(0), 2, 10),
            chunk(Some(1), 0, 5),
            chunk(Some(2), 0, 4),
            chunk(Some(3), 0, 3),
        ];
        let data: Vec<&ObjectEntry> = objects.iter().collect();
        let stats = load.by_table(&data).await.unwrap();
        assert_eq!(stats.len(), 4);
        let log = session.log.lock().unwrap().clone();
        for t in 0..4 {
            let name = format!("t{t}");
            let at = |what: &str| log.iter().position(|l| *l == format!("{what} {name}"));
            let last_load = log.iter().rposition(|l| l.starts_with(&format!("load data/Some({t})/")));
            let (stats_at, keys_at) = (at("stats"), at("keys"));
            assert!(keys_at.is_some(), "no keys built for {name}: {log:?}");
            assert!(last_load < stats_at && stats_at < keys_at, "{name}: {log:?}");
        }
        // Table 0 (the biggest, three chunks) is still loading when table 1's keys are built in
        // the other slot.
        let keys1 = log.iter().position(|l| l == "keys t1").unwrap();
        let last0 = log.iter().rposition(|l| l.starts_with("load data/Some(0)/")).unwrap();
        assert!(keys1 < last0, "{log:?}");
    }
}
