//! Overlapping runs on one repository, through the real binary: a create whose id is already
//! taken never touches the existing backup; a prune during a restore keeps the backup being read;
//! two prunes never run at once; the lease of a killed run stops counting after its expiry and
//! the next prune removes it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::io::BufRead;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use serde_json::Value;

fn dbbackup(args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_dbbackup"))
        .args(args)
        .env_remove("APP_ENV")
        .env_remove("DBBACKUP_REPO")
        .env_remove("DBBACKUP_FAILPOINT")
        .env_remove("DBBACKUP_TEST_BACKUP_ID")
        .env_remove("DBBACKUP_STORE_LEASE_TTL")
        .envs(env.iter().copied())
        .output()
        .expect("run dbbackup")
}

fn ok(out: &Output) -> Value {
    assert!(out.status.success(), "dbbackup failed: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_str(String::from_utf8_lossy(&out.stdout).trim()).unwrap()
}

/// Starts `dbbackup args` with `DBBACKUP_FAILPOINT=<point>:pause` and returns once it paused there.
fn paused(args: &[&str], point: &str, env: &[(&str, &str)]) -> Child {
    let mut child = Command::new(env!("CARGO_BIN_EXE_dbbackup"))
        .args(args)
        .env_remove("APP_ENV")
        .env_remove("DBBACKUP_REPO")
        .env_remove("DBBACKUP_TEST_BACKUP_ID")
        .envs(env.iter().copied())
        .env("DBBACKUP_FAILPOINT", format!("{point}:pause"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run dbbackup");
    let stderr = child.stderr.take().unwrap();
    let mut seen = String::new();
    for line in std::io::BufReader::new(stderr).lines() {
        let line = line.unwrap();
        if line.contains(&format!("failpoint {point} paused")) {
            return child;
        }
        seen.push_str(&line);
        seen.push('\n');
    }
    let status = child.wait().unwrap();
    panic!("dbbackup ended ({status:?}) before pausing at {point}: {seen}");
}

fn write_users(path: &Path, rows: i64) {
    let c = rusqlite::Connection::open(path).unwrap();
    c.execute_batch(&format!(
        "create table if not exists users (id integer primary key, email text unique, balance numeric);
         delete from users;
         with recursive n(i) as (select 1 union all select i + 1 from n where i < {rows})
         insert into users select i, 'user' || i || '@example.com', i * 1.5 from n;"
    ))
    .unwrap();
}

fn users(path: &Path) -> i64 {
    let c = rusqlite::Connection::open(path).unwrap();
    c.query_row("select count(*) from users", [], |r| r.get(0)).unwrap()
}

/// Every file under `dir` (relative path -> bytes).
fn files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, Vec<u8>>) {
        let Ok(entries) = std::fs::read_dir(dir) else { return };
        for e in entries {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(root, &p, out);
            } else {
                out.insert(p.strip_prefix(root).unwrap().display().to_string(), std::fs::read(&p).unwrap());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

struct Repo {
    dir: tempfile::TempDir,
    repo: String,
    src: String,
}

/// A repository with two backups of one SQLite database: 1000 users, then 1500.
fn two_backups() -> (Repo, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("src.sqlite");
    let src = format!("sqlite://{}", db.display());
    let repo = dir.path().join("repo").display().to_string();
    write_users(&db, 1000);
    let old = ok(&dbbackup(&["create", "--json", "--source", &src, "--repo", &repo], &[]));
    write_users(&db, 1500);
    let new = ok(&dbbackup(&["create", "--json", "--source", &src, "--repo", &repo], &[]));
    let id = |v: &Value| v["id"].as_str().unwrap().to_string();
    (Repo { dir, repo, src }, id(&old), id(&new))
}

fn decision<'a>(prune: &'a Value, id: &str) -> &'a Value {
    prune["plan"]["decisions"].as_array().unwrap().iter().find(|d| d["id"] == id).expect("decision")
}

fn leases(repo: &str) -> Vec<String> {
    match std::fs::read_dir(Path::new(repo).join("locks")) {
        Ok(d) => d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect(),
        Err(_) => Vec::new(),
    }
}

#[test]
fn a_create_whose_id_is_taken_leaves_the_existing_backup_intact() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("src.sqlite");
    let src = format!("sqlite://{}", db.display());
    let repo = dir.path().join("repo");
    let repo_s = repo.display().to_string();
    let forced = "20261123T193000Z-00000000000000aa";
    write_users(&db, 1000);
    let first = ok(&dbbackup(
        &["create", "--json", "--source", &src, "--repo", &repo_s],
        &[("DBBACKUP_TEST_BACKUP_ID", forced)],
    ));
    assert_eq!(first["id"], forced);
    let before = files(&repo.join(forced));
    assert!(before.contains_key("manifest.json"), "{:?}", before.keys());
    // The second create draws the same id first (as a collision would).
    write_users(&db, 1500);
    let second = ok(&dbbackup(
        &["create", "--json", "--source", &src, "--repo", &repo_s],
        &[("DBBACKUP_TEST_BACKUP_ID", forced)],
    ));
    assert_ne!(second["id"], forced, "the taken id is not reused");
    assert_eq!(files(&repo.join(forced)), before, "the existing backup is untouched, byte for byte");
    let v = ok(&dbbackup(&["verify", "--json", "--repo", &repo_s, forced, "--level", "full"], &[]));
    assert_eq!(v["ok"], true, "{v}");
    let out = dir.path().join("restored.sqlite");
    ok(&dbbackup(
        &["restore", "--json", "--repo", &repo_s, forced, "--into", &format!("sqlite://{}", out.display())],
        &[],
    ));
    assert_eq!(users(&out), 1000);
}

#[test]
fn prune_during_a_restore_keeps_the_backup_being_read_until_its_lease_expires() {
    let (r, old, new) = two_backups();
    let into = r.dir.path().join("target.sqlite");
    write_users(&into, 5);
    let into = format!("sqlite://{}", into.display());
    // A time to live of 12 s: refreshed every 4 s, so the lease a killed restore leaves counts
    // for 8 s or more after the kill, time for the prune below even on a loaded machine (with 5 s
    // it was 3.3 s: a prune stalled that long found the lease expired).
    let ttl = [("DBBACKUP_STORE_LEASE_TTL", "12")];
    let mut restore = paused(
        &["restore", "--json", "--repo", &r.repo, &old, "--into", &into, "--force"],
        "restore-loaded",
        &ttl,
    );
    // Longer than the lease's time to live: the running restore keeps refreshing it.
    std::thread::sleep(Duration::from_secs(13));
    let prune = ["prune", "--json", "--repo", r.repo.as_str(), "--keep-last", "1"];
    let p = ok(&dbbackup(&prune, &[]));
    let d = decision(&p, &old);
    assert_eq!(d["keep"], true, "the backup being restored is kept: {d}");
    assert!(d["reasons"][0].as_str().unwrap().contains("in use by restore"), "{d}");
    assert_eq!(decision(&p, &new)["keep"], true);
    assert!(Path::new(&r.repo).join(&old).join("manifest.json").exists());
    // Killed: its lease still counts until it expires...
    restore.kill().unwrap();
    restore.wait().unwrap();
    let p = ok(&dbbackup(&prune, &[]));
    assert_eq!(decision(&p, &old)["keep"], true, "a killed run's lease counts until its expiry");
    assert_eq!(leases(&r.repo).len(), 1, "{:?}", leases(&r.repo));
    // ...and then is stale: ignored, and removed by the prune.
    std::thread::sleep(Duration::from_secs(13));
    let p = ok(&dbbackup(&prune, &[]));
    assert_eq!(decision(&p, &old)["keep"], false, "{p}");
    assert_eq!(p["plan"]["stale_leases"].as_array().unwrap().len(), 1, "{p}");
    assert!(!Path::new(&r.repo).join(&old).exists(), "the backup is gone once nothing reads it");
    assert_eq!(leases(&r.repo), Vec::<String>::new(), "the stale lease is removed");
    let _ = r.src;
}

#[test]
fn two_prunes_never_run_at_once_and_a_killed_prune_blocks_only_until_its_lease_expires() {
    let (r, old, _new) = two_backups();
    let args = ["prune", "--json", "--repo", r.repo.as_str(), "--keep-last", "1"];
    // A time to live of 8 s (refreshed every 2.7 s): the first prune's lease must still count
    // when the second prune looks, even if a loaded machine stalls either process for seconds.
    let mut first = paused(&args, "prune-planned", &[("DBBACKUP_STORE_LEASE_TTL", "8")]);
    let second = dbbackup(&args, &[]);
    assert_eq!(second.status.code(), Some(1), "the second prune fails");
    let err = String::from_utf8_lossy(&second.stderr);
    assert!(err.contains("in use by prune"), "a clear message: {err}");
    assert!(Path::new(&r.repo).join(&old).join("manifest.json").exists(), "nothing deleted yet");
    first.kill().unwrap();
    first.wait().unwrap();
    std::thread::sleep(Duration::from_secs(9));
    let p = ok(&dbbackup(&args, &[]));
    assert_eq!(decision(&p, &old)["keep"], false);
    assert!(!Path::new(&r.repo).join(&old).exists());
    assert_eq!(leases(&r.repo), Vec::<String>::new(), "the killed prune's lease is removed");
}

#[test]
fn latest_prune_and_status_look_at_one_database_when_two_share_a_repository() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo").display().to_string();
    let (a, b) = (dir.path().join("a.sqlite"), dir.path().join("b.sqlite"));
    write_users(&a, 1000);
    write_users(&b, 7);
    let url = |p: &Path| format!("sqlite://{}", p.display());
    let a_id = ok(&dbbackup(&["create", "--json", "--source", &url(&a), "--repo", &repo], &[]))["id"]
        .as_str()
        .unwrap()
        .to_string();
    let b_id = ok(&dbbackup(&["create", "--json", "--source", &url(&b), "--repo", &repo], &[]))["id"]
        .as_str()
        .unwrap()
        .to_string();
    // `restore latest` into a.sqlite takes a's backup, not b's newer one.
    std::fs::create_dir(dir.path().join("t")).unwrap();
    let into_a = dir.path().join("t").join("a.sqlite");
    let r = ok(&dbbackup(&["restore", "--json", "--repo", &repo, "latest", "--into", &url(&into_a)], &[]));
    assert_eq!(r["id"], a_id.as_str());
    assert_eq!(users(&into_a), 1000);
    // Into a third name: ambiguous, refused; --all-databases takes the newest of any.
    let other = dir.path().join("t").join("other.sqlite");
    let e = dbbackup(&["restore", "--json", "--repo", &repo, "latest", "--into", &url(&other)], &[]);
    assert_eq!(e.status.code(), Some(2), "{}", String::from_utf8_lossy(&e.stdout));
    assert!(String::from_utf8_lossy(&e.stdout).contains("several other databases"));
    let r = ok(&dbbackup(
        &["restore", "--json", "--repo", &repo, "latest", "--into", &url(&other), "--all-databases"],
        &[],
    ));
    assert_eq!(r["id"], b_id.as_str());
    // status --source looks at that database's backups.
    let s = dbbackup(&["status", "--json", "--repo", &repo, "--source", &url(&a)], &[]);
    let s: Value = serde_json::from_slice(&s.stdout).unwrap();
    assert_eq!(s["repos"][0]["newest"], a_id.as_str(), "{s}");
    assert_eq!(s["repos"][0]["backups"], 1, "{s}");
    // prune --keep-last 1 keeps the newest of each database; --all-databases the newest of all.
    let p = ok(&dbbackup(&["prune", "--json", "--repo", &repo, "--keep-last", "1", "--dry-run"], &[]));
    assert_eq!(decision(&p, &a_id)["keep"], true, "{p}");
    assert_eq!(decision(&p, &b_id)["keep"], true, "{p}");
    let p = ok(&dbbackup(
        &["prune", "--json", "--repo", &repo, "--keep-last", "1", "--dry-run", "--all-databases"],
        &[],
    ));
    assert_eq!(decision(&p, &a_id)["keep"], false, "{p}");
}

/// object_store's staging files (`<key>#<n>`) under `dir`: what a killed writer leaves.
fn staging_files(dir: &Path) -> Vec<String> {
    files(dir)
        .into_keys()
        .filter(|k| {
            k.rsplit_once('#').is_some_and(|(_, n)| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
        })
        .collect()
}

/// Everything in the repository but its leases and the alert state `status` keeps.
fn content(repo: &str) -> BTreeMap<String, Vec<u8>> {
    files(Path::new(repo))
        .into_iter()
        .filter(|(k, _)| !k.starts_with("locks/") && !k.starts_with("alerts/"))
        .collect()
}

/// A create stopped mid-upload leaves object_store's staging file in a local repository. While
/// its run holds a lease (running, or killed and not yet expired) prune leaves it, whatever the
/// grace; once the lease is gone, prune leaves it for the grace period and then removes it and
/// nothing else. `status` counts it all along.
#[test]
fn a_killed_creates_staging_file_is_counted_by_status_and_swept_by_prune_after_the_grace() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("src.sqlite");
    let src = format!("sqlite://{}", db.display());
    let repo = dir.path().join("repo").display().to_string();
    write_users(&db, 100);
    let kept = ok(&dbbackup(&["create", "--json", "--source", &src, "--repo", &repo], &[]));
    // Over one 8 MiB part once compressed (random bytes), so the data object is a multipart upload.
    let c = rusqlite::Connection::open(&db).unwrap();
    c.execute_batch(
        "create table blobs (b blob);
         with recursive n(i) as (select 1 union all select i + 1 from n where i < 10)
         insert into blobs select randomblob(1048576) from n;",
    )
    .unwrap();
    drop(c);
    let before = content(&repo);
    let create = ["create", "--json", "--source", src.as_str(), "--repo", repo.as_str()];
    // A time to live of 8 s (refreshed every 2.7 s): the paused create's lease must count while
    // the status and prune below run, even if a loaded machine stalls a process for seconds (with
    // 3 s, a refresh 2 s late let the sweep abort the running create's upload).
    let mut running = paused(&create, "upload-part-written", &[("DBBACKUP_STORE_LEASE_TTL", "8")]);
    let staged = staging_files(Path::new(&repo));
    assert_eq!(staged.len(), 1, "{staged:?}");
    assert!(std::fs::metadata(Path::new(&repo).join(&staged[0])).unwrap().len() > 0, "a part was written");
    let status = |repo: &str| {
        let out = dbbackup(&["status", "--json", "--repo", repo], &[]);
        serde_json::from_slice::<Value>(&out.stdout).unwrap()
    };
    assert_eq!(status(&repo)["repos"][0]["open_uploads"], 1);
    let sweep = ["prune", "--json", "--repo", repo.as_str(), "--keep-last", "1", "--orphan-grace", "0s"];
    // A running create's upload is never touched.
    let p = ok(&dbbackup(&sweep, &[]));
    assert_eq!(p["uploads_aborted"], 0, "{p}");
    assert_eq!(p["plan"]["open_uploads"][0]["sweep"], false, "{p}");
    assert_eq!(staging_files(Path::new(&repo)), staged);
    // Killed (SIGKILL): no cleanup ran; its lease counts until it expires.
    running.kill().unwrap();
    running.wait().unwrap();
    assert_eq!(staging_files(Path::new(&repo)), staged);
    std::thread::sleep(Duration::from_secs(9));
    // Within the grace period (default 24 h): left, and shown.
    let p = ok(&dbbackup(&["prune", "--json", "--repo", &repo, "--keep-last", "1"], &[]));
    assert_eq!(
        (p["uploads_aborted"].as_u64(), p["plan"]["open_uploads"].as_array().map(Vec::len)),
        (Some(0), Some(1))
    );
    assert_eq!(staging_files(Path::new(&repo)), staged);
    assert_eq!(status(&repo)["repos"][0]["open_uploads"], 1);
    // Past it: removed, with the objects the killed run finished (orphans), and nothing else.
    let p = ok(&dbbackup(&sweep, &[]));
    assert_eq!(p["uploads_aborted"], 1, "{p}");
    assert!(p["errors"].as_array().unwrap().is_empty(), "{p}");
    assert_eq!(staging_files(Path::new(&repo)), Vec::<String>::new());
    assert_eq!(status(&repo)["repos"][0]["open_uploads"], 0);
    assert!(content(&repo) == before, "only the staging file went: {:?}", content(&repo).keys());
    let v = ok(&dbbackup(
        &["verify", "--json", "--repo", &repo, kept["id"].as_str().unwrap(), "--level", "full"],
        &[],
    ));
    assert_eq!(v["ok"], true, "{v}");
}
