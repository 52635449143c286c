//! Crash safety of the SQLite restore: the per-target lock file, the intent journal beside the
//! database, and the swap that renames the restored file over the live one.
//!
//! Files beside `<dir>/<name>` (all hidden, all derived from the name so the next run finds them):
//! - `.<name>.dbbackup-lock`: `flock`ed by a restore for its whole run (the kernel drops the lock
//!   when the process dies, even by SIGKILL). The holder removes it before unlocking; a taker
//!   checks after locking that the path still names the file it locked (else it retries), so the
//!   removal cannot let two runs in.
//! - `.<name>.dbbackup-restore-XXXXXX`: the file being restored (a killed run leaves it).
//! - `.<name>.dbbackup-journal`: written (atomically, synced) before the first destructive step
//!   of the swap and removed after the last; it names the restored temp file.
//! - `.<name>.dbbackup-prev` (+ `-wal`, `-shm`): a hard link to the live file and its moved
//!   sidecars, kept until the new file is in place.
//!
//! The swap: checkpoint the live WAL (so the file alone is complete), journal, link the live
//! file to `prev`, move `-wal`/`-shm` aside, then `rename(2)` the restored file over the live
//! name — the live name always points at a complete database, old or new. [`recover`], run under
//! the lock at the start of every restore and backup of the target, reads a leftover journal:
//! if the restored file still exists the rename never happened and the old state is put back;
//! otherwise the rename happened and the leftovers of the old file are removed. Then leftover
//! temp files of killed runs are removed.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::failpoint;

/// The paths derived from one target file.
pub(crate) struct Paths {
    pub(crate) target: PathBuf,
    dir: PathBuf,
    name: String,
}

impl Paths {
    pub(crate) fn new(target: &Path) -> Paths {
        let dir = match target.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let name =
            target.file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_else(|| "db".into());
        Paths { target: target.to_path_buf(), dir, name }
    }

    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    fn hidden(&self, what: &str) -> PathBuf {
        self.dir.join(format!(".{}.dbbackup-{what}", self.name))
    }

    /// Prefix of restore temp files (`tempfile` adds random characters).
    pub(crate) fn temp_prefix(&self) -> String {
        format!(".{}.dbbackup-restore-", self.name)
    }

    fn lock(&self) -> PathBuf {
        self.hidden("lock")
    }

    fn journal(&self) -> PathBuf {
        self.hidden("journal")
    }

    fn prev(&self) -> PathBuf {
        self.hidden("prev")
    }
}

/// `p` with `suffix` appended to its file name (`-wal`, `-shm`).
fn with_suffix(p: &Path, suffix: &str) -> PathBuf {
    let mut s = p.as_os_str().to_os_string();
    s.push(suffix);
    PathBuf::from(s)
}

const SIDECARS: [&str; 2] = ["-wal", "-shm"];

fn sync_dir(dir: &Path) {
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
}

fn remove_if_exists(p: &Path) -> Result<()> {
    match std::fs::remove_file(p) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io(format!("remove {}", p.display()), e)),
    }
}

/// An exclusive `flock` on the target's lock file, released (and the file removed) when dropped,
/// or released by the kernel when the process dies.
pub(crate) struct TargetLock {
    file: Option<File>,
    path: PathBuf,
}

impl Drop for TargetLock {
    fn drop(&mut self) {
        // Remove while still holding the lock; a waiting taker then sees a different file.
        let _ = std::fs::remove_file(&self.path);
        self.file.take();
    }
}

/// Takes the target's lock without waiting; `Ok(None)` when another process holds it.
pub(crate) fn try_lock(paths: &Paths) -> Result<Option<TargetLock>> {
    let p = paths.lock();
    loop {
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&p)
            .map_err(|e| Error::io(format!("open lock file {}", p.display()), e))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => return Ok(None),
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(Error::io(format!("lock {}", p.display()), e));
            }
        }
        let locked = file.metadata().map_err(|e| Error::io(format!("stat {}", p.display()), e))?;
        match std::fs::metadata(&p) {
            Ok(now) if (now.dev(), now.ino()) == (locked.dev(), locked.ino()) => {
                return Ok(Some(TargetLock { file: Some(file), path: p }));
            }
            // The previous holder removed it between our open and our lock: take the new one.
            _ => continue,
        }
    }
}

/// Takes the target's lock or fails clearly when another restore holds it.
pub(crate) fn lock(paths: &Paths) -> Result<TargetLock> {
    try_lock(paths)?.ok_or_else(|| {
        Error::Locked(format!(
            "another restore into {} is running (lock {} is held); wait for it to finish",
            paths.target.display(),
            paths.lock().display()
        ))
    })
}

/// The intent record written before the swap's first destructive step.
#[derive(Debug, Serialize, Deserialize)]
struct Journal {
    /// Always `swap`.
    step: String,
    /// File name (in the target's directory) of the restored file about to be renamed in.
    temp: String,
    /// Process that wrote it (for the operator).
    pid: u32,
}

fn write_journal(paths: &Paths, j: &Journal) -> Result<()> {
    let p = paths.journal();
    let tmp = with_suffix(&p, ".tmp");
    let body = serde_json::to_vec(j).map_err(|e| Error::source("encode the restore journal", e))?;
    let mut f = File::create(&tmp).map_err(|e| Error::io(format!("create {}", tmp.display()), e))?;
    f.write_all(&body).map_err(|e| Error::io(format!("write {}", tmp.display()), e))?;
    f.sync_all().map_err(|e| Error::io(format!("flush {}", tmp.display()), e))?;
    std::fs::rename(&tmp, &p).map_err(|e| Error::io(format!("rename {}", p.display()), e))?;
    sync_dir(&paths.dir);
    Ok(())
}

/// Puts back what the swap moved aside (the rename of the restored file did not happen).
fn undo(paths: &Paths, notes: &mut Vec<String>) -> Result<()> {
    let prev = paths.prev();
    if !paths.target.exists() && prev.exists() {
        std::fs::rename(&prev, &paths.target)
            .map_err(|e| Error::io(format!("put {} back", paths.target.display()), e))?;
    }
    for s in SIDECARS {
        let aside = with_suffix(&prev, s);
        let live = with_suffix(&paths.target, s);
        if aside.exists() {
            if live.exists() {
                notes.push(format!(
                    "{} was recreated meanwhile; the previous one is kept at {}",
                    live.display(),
                    aside.display()
                ));
            } else {
                std::fs::rename(&aside, &live)
                    .map_err(|e| Error::io(format!("put {} back", live.display()), e))?;
            }
        }
    }
    remove_if_exists(&prev)?;
    sync_dir(&paths.dir);
    Ok(())
}

/// Removes the previous file's leftovers once the restored file is in place.
fn finish(paths: &Paths) -> Result<()> {
    let prev = paths.prev();
    for s in SIDECARS {
        remove_if_exists(&with_suffix(&prev, s))?;
    }
    remove_if_exists(&prev)
}

/// Completes or undoes an interrupted restore of this target and removes the temp files of
/// killed runs. Call only while holding the target's lock. Returns notes for the operator.
pub(crate) fn recover(paths: &Paths) -> Result<Vec<String>> {
    let mut notes = Vec::new();
    let jp = paths.journal();
    match std::fs::read(&jp) {
        Ok(body) => {
            let j: Journal = serde_json::from_slice(&body)
                .map_err(|e| Error::source(format!("read the restore journal {}", jp.display()), e))?;
            let temp = paths.dir.join(&j.temp);
            if temp.exists() {
                undo(paths, &mut notes)?;
                remove_if_exists(&temp)?;
                notes.push(format!(
                    "an interrupted restore into {} (process {}) was undone: the previous database is in place",
                    paths.target.display(),
                    j.pid
                ));
            } else {
                finish(paths)?;
                notes.push(format!(
                    "an interrupted restore into {} (process {}) was completed: the restored database is in place",
                    paths.target.display(),
                    j.pid
                ));
            }
            remove_if_exists(&jp)?;
            sync_dir(&paths.dir);
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            // No swap was under way: a `prev` link can only be a leftover of a failed removal.
            finish(paths)?;
        }
        Err(e) => return Err(Error::io(format!("read {}", jp.display()), e)),
    }
    remove_if_exists(&with_suffix(&jp, ".tmp"))?;
    let prefix = paths.temp_prefix();
    let mut removed = 0usize;
    if let Ok(entries) = std::fs::read_dir(&paths.dir) {
        for entry in entries.flatten() {
            if entry.file_name().to_string_lossy().starts_with(&prefix) {
                remove_if_exists(&entry.path())?;
                removed += 1;
            }
        }
    }
    if removed > 0 {
        notes.push(format!(
            "removed {removed} temp file(s) of interrupted restores of {}",
            paths.target.display()
        ));
    }
    for n in &notes {
        tracing::warn!("{n}");
    }
    Ok(notes)
}

/// Gives the restored file the owner, group and mode of the file it replaces. Returns a note
/// when the owner could not be kept (a non-root restore over another user's file).
pub(crate) fn match_owner_and_mode(file: &File, target: &Path) -> Result<Option<String>> {
    let Ok(meta) = std::fs::metadata(target) else { return Ok(None) };
    file.set_permissions(std::fs::Permissions::from_mode(meta.mode() & 0o7777))
        .map_err(|e| Error::io(format!("give the restored file the mode of {}", target.display()), e))?;
    let mine = file.metadata().map_err(|e| Error::io("stat the restored file", e))?;
    if (mine.uid(), mine.gid()) != (meta.uid(), meta.gid())
        && let Err(e) = std::os::unix::fs::fchown(file, Some(meta.uid()), Some(meta.gid()))
    {
        return Ok(Some(format!(
            "the restored {} could not be given its previous owner {}:{} ({e}); it is owned by {}:{}",
            target.display(),
            meta.uid(),
            meta.gid(),
            mine.uid(),
            mine.gid()
        )));
    }
    Ok(None)
}

/// Removes the `-wal`/`-shm` that the read-only checks of a WAL-mode restored file created
/// (empty: nothing writes to it), so they do not outlive it under its temp name.
pub(crate) fn remove_temp_sidecars(temp: &Path) -> Result<()> {
    for s in SIDECARS {
        remove_if_exists(&with_suffix(temp, s))?;
    }
    Ok(())
}

/// Folds the live WAL into the live file (best effort), so the file alone is the whole
/// database while its sidecars are moved aside.
fn checkpoint(target: &Path) {
    if !with_suffix(target, "-wal").exists() {
        return;
    }
    if let Ok(c) = rusqlite::Connection::open_with_flags(target, rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE)
    {
        let _ = c.busy_timeout(std::time::Duration::from_secs(5));
        let _ = c.query_row("pragma wal_checkpoint(TRUNCATE)", [], |_| Ok(()));
    }
}

/// Renames `temp` (complete, synced, checked) over the target; see the module docs.
pub(crate) fn swap_into_place(paths: &Paths, temp: tempfile::TempPath) -> Result<()> {
    let target = &paths.target;
    let temp_name = temp
        .file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .ok_or_else(|| Error::InvalidInput(format!("restore temp file {}", temp.display())))?;
    remove_temp_sidecars(&temp)?;
    if !target.exists() {
        temp.persist(target)
            .map_err(|e| Error::io(format!("rename restored file to {}", target.display()), e.error))?;
        sync_dir(&paths.dir);
        return Ok(());
    }
    checkpoint(target);
    write_journal(paths, &Journal { step: "swap".into(), temp: temp_name.clone(), pid: std::process::id() })?;
    failpoint::hit("sqlite-swap-journaled");
    let moved = (|| -> Result<()> {
        let prev = paths.prev();
        remove_if_exists(&prev)?;
        if std::fs::hard_link(target, &prev).is_err() {
            // A file system without hard links: a copy keeps the old database just as well.
            std::fs::copy(target, &prev)
                .map_err(|e| Error::io(format!("keep {} as {}", target.display(), prev.display()), e))?;
        }
        failpoint::hit("sqlite-swap-linked");
        for s in SIDECARS {
            let live = with_suffix(target, s);
            if live.exists() {
                std::fs::rename(&live, with_suffix(&prev, s))
                    .map_err(|e| Error::io(format!("move {} aside", live.display()), e))?;
            }
        }
        failpoint::hit("sqlite-swap-aside");
        Ok(())
    })();
    // On failure the restored file is kept until the undo is done: while the journal exists, its
    // presence is what tells a later recovery that the rename never happened.
    let renamed = match moved {
        Ok(()) => temp.persist(target).map_err(|e| {
            let _ = e.path.keep();
            Error::io(format!("rename restored file over {}", target.display()), e.error)
        }),
        Err(e) => {
            let _ = temp.keep();
            Err(e)
        }
    };
    if let Err(e) = renamed {
        let mut notes = Vec::new();
        let cleanup = undo(paths, &mut notes)
            .and_then(|()| remove_if_exists(&paths.dir.join(&temp_name)))
            .and_then(|()| remove_if_exists(&paths.journal()));
        return Err(match cleanup {
            Ok(()) => e,
            Err(c) => e.context(format!(
                "putting the previous file back also failed ({c}); the next restore or backup of {} finishes it",
                target.display()
            )),
        });
    }
    sync_dir(&paths.dir);
    failpoint::hit("sqlite-swap-renamed");
    finish(paths)?;
    remove_if_exists(&paths.journal())?;
    sync_dir(&paths.dir);
    Ok(())
}
