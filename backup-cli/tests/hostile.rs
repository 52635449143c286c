//! A repository is input: a manifest whose SQLite chunks leave gaps or overlap, or that declares
//! more data than the disk can take, is refused before the target is touched. A SQLite restore
//! reads no table back when the backup records its page image: a chunk list that does not make
//! up that image, or a file written other than the chunks say, is refused all the same.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;

fn dbbackup(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_dbbackup"))
        .args(args)
        .env_remove("APP_ENV")
        .env_remove("DBBACKUP_REPO")
        .output()
        .expect("run dbbackup")
}

/// A SQLite database of a few MiB, backed up in 1 MiB chunks; returns (repo, backup id).
fn backup(dir: &Path) -> (String, String) {
    sqlite_backup(dir, "app.sqlite", "hex(randomblob(500))", &[])
}

/// A SQLite database `name` of 4,000 rows whose text is `value` (an SQL expression), backed up
/// in 1 MiB chunks with `extra` arguments to `create`; returns (repo, backup id).
fn sqlite_backup(dir: &Path, name: &str, value: &str, extra: &[&str]) -> (String, String) {
    let db = dir.join(name);
    let c = rusqlite::Connection::open(&db).unwrap();
    c.execute_batch(&format!(
        "create table t (id integer primary key, v text);
         with recursive n(i) as (select 1 union all select i + 1 from n where i < 4000)
         insert into t select i, {value} from n;"
    ))
    .unwrap();
    drop(c);
    let repo = dir.join("repo").display().to_string();
    let source = format!("sqlite://{}", db.display());
    let mut args = vec!["create", "--json", "--source", &source, "--repo", &repo, "--chunk-mib", "1"];
    args.extend_from_slice(extra);
    let out = dbbackup(&args);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let id = serde_json::from_slice::<Value>(&out.stdout).unwrap()["id"].as_str().unwrap().to_string();
    (repo, id)
}

fn edit_manifest(repo: &str, id: &str, f: impl FnOnce(&mut Value)) {
    let path = Path::new(repo).join(id).join("manifest.json");
    let mut m: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    f(&mut m);
    std::fs::write(&path, serde_json::to_vec(&m).unwrap()).unwrap();
}

/// Restores into an existing target and returns the output; asserts the target and its
/// directory are exactly as before.
fn restore_refused(dir: &Path, repo: &str, id: &str) -> String {
    let tdir = dir.join("target");
    std::fs::create_dir_all(&tdir).unwrap();
    let target = tdir.join("live.sqlite");
    std::fs::write(&target, b"live bytes").unwrap();
    // The live file is not a database, so no undo copy can be taken of it (that alone would
    // refuse the restore, before the check under test): --no-undo.
    let into = format!("sqlite://{}", target.display());
    let out = dbbackup(&["restore", "--no-undo", "--repo", repo, id, "--into", &into]);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "restore succeeded: {err}");
    assert_eq!(std::fs::read(&target).unwrap(), b"live bytes", "target changed: {err}");
    let names: Vec<_> = std::fs::read_dir(&tdir).unwrap().flatten().map(|e| e.file_name()).collect();
    assert_eq!(names, vec![std::ffi::OsString::from("live.sqlite")], "{err}");
    err
}

fn file_chunks(m: &mut Value) -> Vec<&mut Value> {
    m["objects"].as_array_mut().unwrap().iter_mut().filter(|o| o["kind"] == "file").collect()
}

#[test]
fn sqlite_chunks_with_a_gap_or_an_overlap_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (repo, id) = backup(dir.path());
    edit_manifest(&repo, &id, |m| {
        let mut chunks = file_chunks(m);
        assert!(chunks.len() >= 3, "want several chunks");
        // The second chunk moved onto the first: an overlap, and a gap after it.
        chunks[1]["offset"] = 4096.into();
    });
    let err = restore_refused(dir.path(), &repo, &id);
    assert!(err.contains("overlaps") || err.contains("gap"), "{err}");
}

#[test]
fn more_declared_data_than_free_space_is_refused_before_writing() {
    let dir = tempfile::tempdir().unwrap();
    let (repo, id) = backup(dir.path());
    // The last chunk declared as 1 PB (and the file size with it): the chunks still cover the
    // file, but no disk here has that room.
    edit_manifest(&repo, &id, |m| {
        let pb: u64 = 1 << 50;
        let mut chunks = file_chunks(m);
        let last = chunks.last_mut().unwrap();
        let end = last["offset"].as_u64().unwrap() + pb;
        last["raw_bytes"] = pb.into();
        m["snapshot"]["file_bytes"] = end.to_string().into();
    });
    let err = restore_refused(dir.path(), &repo, &id);
    assert!(err.contains("free"), "{err}");
}

/// A SQLite database of a few MiB whose rows hold `garble-me`, backed up uncompressed in 1 MiB
/// chunks; returns (repo, backup id).
fn backup_marked(dir: &Path) -> (String, String) {
    sqlite_backup(dir, "marked.sqlite", "'garble-me ' || hex(randomblob(500))", &["--compression", "none"])
}

/// One chunk's bytes changed inside a row (`garble-me` -> `GARBLE-ME`, the pages still sound)
/// and its entry's digests changed to match: every object checks out, `integrity_check` passes,
/// and no table is read back, so only the page image digest recorded at backup time can tell
/// that the chunks are not the backed-up file. Seen passing the restore (exit 0) with the digest
/// comparison in `image::proven_chunks` removed.
#[test]
fn sqlite_chunk_swapped_with_matching_digests_is_refused_by_the_page_image() {
    let dir = tempfile::tempdir().unwrap();
    let (repo, id) = backup_marked(dir.path());
    let mut edited = 0;
    edit_manifest(&repo, &id, |m| {
        assert_eq!(m["snapshot"]["page_image_algo"], "sqlite-chunk-list-sha256-v1", "{m}");
        for o in file_chunks(m) {
            let path = Path::new(&repo).join(&id).join(o["key"].as_str().unwrap());
            let mut bytes = std::fs::read(&path).unwrap();
            let Some(at) = bytes.windows(9).position(|w| w == b"garble-me") else { continue };
            bytes[at..at + 9].copy_from_slice(b"GARBLE-ME");
            std::fs::write(&path, &bytes).unwrap();
            let digest = backup_core::sha256_hex(&bytes);
            o["sha256"] = digest.clone().into();
            o["raw_sha256"] = digest.into();
            edited += 1;
            break;
        }
    });
    assert_eq!(edited, 1, "a chunk with a marked row");
    let err = restore_refused(dir.path(), &repo, &id);
    assert!(err.contains("page image"), "{err}");
}

/// The write path puts other bytes on file than the stream's digest checked (a failpoint
/// garbles a row as it is written): the read-back of the file against the page image refuses
/// it before the swap. Seen passing the restore (exit 0) with the read-back in
/// `check_database` removed.
#[test]
fn sqlite_file_written_other_than_its_chunks_is_refused_by_the_read_back() {
    let dir = tempfile::tempdir().unwrap();
    let (repo, id) = backup_marked(dir.path());
    let tdir = dir.path().join("target");
    std::fs::create_dir_all(&tdir).unwrap();
    let target = tdir.join("live.sqlite");
    let into = format!("sqlite://{}", target.display());
    // Without the fault the same restore goes through.
    let out = dbbackup(&["restore", "--no-undo", "--repo", &repo, &id, "--into", &into]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let good = std::fs::read(&target).unwrap();
    let listing = || {
        let mut names: Vec<_> = std::fs::read_dir(&tdir).unwrap().flatten().map(|e| e.file_name()).collect();
        names.sort();
        names
    };
    let before = listing();
    let out = Command::new(env!("CARGO_BIN_EXE_dbbackup"))
        .args(["restore", "--no-undo", "--repo", &repo, &id, "--into", &into])
        .env_remove("APP_ENV")
        .env_remove("DBBACKUP_REPO")
        .env("DBBACKUP_FAILPOINT", "sqlite-restore-garbled-write")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "restore succeeded: {err}");
    assert!(err.contains("restored file bytes"), "{err}");
    assert_eq!(std::fs::read(&target).unwrap(), good, "the target was touched");
    assert_eq!(listing(), before, "{err}");
}
