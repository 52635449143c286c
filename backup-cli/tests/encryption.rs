//! Client-side encryption through the real binary: recipients and identities from flags, files
//! and the environment; nothing readable in the repository; the age CLI decrypts what dbbackup
//! stored (docs/FORMAT.md "Decrypting without dbbackup"); key failures are clear and leave the
//! target alone; no plaintext temp file is left; key rotation with `copy`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

const CANARY: &str = "sk_live_CANARY_7f3a9c";

fn run(args: &[&str], env: &[(&str, &str)], tmp: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_dbbackup"))
        .args(args)
        .env_remove("APP_ENV")
        .env_remove("DBBACKUP_REPO")
        .env_remove("DBBACKUP_IDENTITY")
        .env_remove("DBBACKUP_PASSPHRASE")
        .env_remove("DBBACKUP_RECIPIENTS")
        // Every temp file the process makes lands here, so the test can see none is left.
        .env("TMPDIR", tmp)
        .envs(env.iter().copied())
        .output()
        .expect("run dbbackup")
}

fn json(out: &Output) -> Value {
    let text = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(text.trim()).unwrap_or_else(|e| {
        panic!("not JSON ({e}): {text}\nstderr: {}", String::from_utf8_lossy(&out.stderr))
    })
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A key pair made by the age CLI when it is there (proving interoperability), else by dbbackup's
/// own generator; under CI the age CLI must be there.
fn keygen(path: &Path) -> String {
    if Command::new("age-keygen").arg("--version").output().is_ok() {
        let out = Command::new("age-keygen").arg("-o").arg(path).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let text = std::fs::read_to_string(path).unwrap();
        return text.lines().find_map(|l| l.strip_prefix("# public key: ")).unwrap().trim().to_string();
    }
    assert!(std::env::var("CI").as_deref() != Ok("true"), "CI must have the age package (scripts/test.sh)");
    let (secret, recipient) = backup_core::generate_key();
    std::fs::write(path, secret.expose()).unwrap();
    recipient
}

fn age_cli() -> bool {
    let there = Command::new("age").arg("--version").output().is_ok_and(|o| o.status.success());
    if !there {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "CI must have the age package (scripts/test.sh)"
        );
        eprintln!("SKIPPED: the age CLI cross-check (apt-get install age)");
    }
    there
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir(dir) else { return out };
    for e in rd.flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(files_under(&p));
        } else {
            out.push(p);
        }
    }
    out
}

struct Env {
    dir: tempfile::TempDir,
}

impl Env {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("tmp")).unwrap();
        let c = rusqlite::Connection::open(dir.path().join("app.sqlite")).unwrap();
        c.execute_batch(&format!(
            "create table payment_tokens (id integer primary key, card_token text, amount integer);
             with recursive n(i) as (select 1 union all select i + 1 from n where i < 30000)
             insert into payment_tokens select i, 'tok_' || hex(randomblob(8)), i from n;
             insert into payment_tokens values (30001, '{CANARY}', 42);"
        ))
        .unwrap();
        Env { dir }
    }
    fn p(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
    fn url(&self, name: &str) -> String {
        format!("sqlite://{}", self.p(name).display())
    }
    fn tmp(&self) -> PathBuf {
        self.p("tmp")
    }
    fn run(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        run(args, env, &self.tmp())
    }
    fn assert_no_temp_left(&self) {
        let left = files_under(&self.tmp());
        assert!(left.is_empty(), "temp files left behind: {left:?}");
    }
}

fn canary_rows(db: &Path) -> i64 {
    let c = rusqlite::Connection::open(db).unwrap();
    c.query_row("select count(*) from payment_tokens where card_token = ?1", [CANARY], |r| r.get(0)).unwrap()
}

#[test]
fn encrypted_backup_reveals_nothing_restores_with_the_key_and_age_decrypts_it() {
    let e = Env::new();
    let r1 = keygen(&e.p("key1.txt"));
    let r2 = keygen(&e.p("key2.txt"));
    let (_, stranger) = backup_core::generate_key();
    std::fs::write(e.p("recipients.txt"), format!("# ops team\n{r2}\n")).unwrap();
    let repo = e.p("repo").display().to_string();
    let src = e.url("app.sqlite");
    let key1 = std::fs::read_to_string(e.p("key1.txt")).unwrap();
    let secret_line = key1.lines().find(|l| l.starts_with("AGE-SECRET-KEY-")).unwrap().to_string();

    // Recipients from the environment and a recipients file.
    let out = e.run(
        &[
            "create",
            "--json",
            "-vv",
            "--source",
            &src,
            "--repo",
            &repo,
            "--recipients-file",
            e.p("recipients.txt").to_str().unwrap(),
        ],
        &[("DBBACKUP_RECIPIENTS", &r1)],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let id = json(&out)["id"].as_str().unwrap().to_string();
    e.assert_no_temp_left();

    // Nothing in the repository is readable: not the canary row, the table or column names.
    let stored = files_under(&e.p("repo"));
    assert!(stored.len() >= 3, "{stored:?}");
    for f in &stored {
        let bytes = std::fs::read(f).unwrap();
        let text = String::from_utf8_lossy(&bytes);
        for secret in [CANARY, "payment_tokens", "card_token", "app.sqlite"] {
            assert!(!text.contains(secret), "{secret} readable in {}", f.display());
            assert!(
                !f.display().to_string().contains(secret) || f.ends_with("app.sqlite"),
                "{secret} in a key"
            );
        }
    }

    // list and verify work without the key.
    let l = json(&e.run(&["list", "--json", "--repo", &repo], &[]));
    assert_eq!(l["backups"][0]["encrypted"], true, "{l}");
    assert_eq!(l["backups"][0]["database"], "", "{l}");
    let v = json(&e.run(&["verify", "--json", "--no-record", "--repo", &repo], &[]));
    assert_eq!(v["ok"], true, "{v}");
    assert_eq!(v["without_key"], true, "{v}");
    let out = e.run(&["verify", "--level", "drill", "--no-record", "--repo", &repo], &[]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("no identity for recipients"), "{}", stderr(&out));

    // Key failures: clear messages, exit 2, no target created, no temp file left.
    let into = e.url("restored.sqlite");
    let wrong = backup_core::generate_key().0;
    for (env, want) in [
        (vec![], format!("no identity for recipients {r1}, {r2}")),
        (vec![("DBBACKUP_IDENTITY", wrong.expose())], "wrong key".to_string()),
        (vec![("DBBACKUP_IDENTITY", "# nothing here\n")], "empty key".to_string()),
        (vec![("DBBACKUP_IDENTITY", "AGE-SECRET-KEY-1XYZ")], "malformed key".to_string()),
    ] {
        let out = e.run(&["restore", "--repo", &repo, &id, "--into", &into], &env);
        assert_eq!(out.status.code(), Some(2), "{want}: {}", stderr(&out));
        assert!(stderr(&out).contains(&want), "{want}: {}", stderr(&out));
        assert!(!e.p("restored.sqlite").exists(), "the target was touched ({want})");
        e.assert_no_temp_left();
    }
    assert!(!stderr(&e.run(&["restore", "--repo", &repo, &id, "--into", &into], &[])).contains(&stranger));

    // A tampered object: integrity error naming it, target untouched, no plaintext left.
    let obj = e.p("repo").join(&id).join("data/db/000000.db.zst.age");
    let good = std::fs::read(&obj).unwrap();
    let mut bad = good.clone();
    let at = bad.len() / 2;
    bad[at] ^= 0x20;
    std::fs::write(&obj, &bad).unwrap();
    let out = e.run(
        &["restore", "--repo", &repo, &id, "--into", &into, "--identity", e.p("key1.txt").to_str().unwrap()],
        &[],
    );
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(stderr(&out).contains("data/db/000000.db.zst.age"), "{}", stderr(&out));
    assert!(
        files_under(e.dir.path()).iter().all(|f| !f.display().to_string().contains("restored")),
        "plaintext left"
    );
    e.assert_no_temp_left();
    std::fs::write(&obj, &good).unwrap();

    // With the key (file for one run, environment for the other): full verification decrypts,
    // the restore brings the canary back; the key never shows in the output, even at -vv.
    let v = e.run(
        &["verify", "--json", "-vv", "--repo", &repo, "--identity", e.p("key2.txt").to_str().unwrap()],
        &[],
    );
    assert_eq!(json(&v)["ok"], true);
    assert_eq!(json(&v)["without_key"], false);
    let out = e.run(
        &["restore", "--json", "-vv", "--repo", &repo, &id, "--into", &into],
        &[("DBBACKUP_IDENTITY", &key1)],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        !stderr(&out).contains(&secret_line[15..])
            && !String::from_utf8_lossy(&out.stdout).contains(&secret_line[15..])
    );
    assert_eq!(canary_rows(&e.p("restored.sqlite")), 1);
    e.assert_no_temp_left();

    // The age CLI opens the sealed manifest and every object; decompressed, each object is
    // exactly the raw bytes the manifest (sealed) records, which are what restore loads.
    if !age_cli() {
        return;
    }
    let clear: Value =
        serde_json::from_slice(&std::fs::read(e.p("repo").join(&id).join("manifest.json")).unwrap()).unwrap();
    assert_eq!(clear["format_version"], 2);
    std::fs::write(e.p("sealed.age"), clear["encryption"]["sealed"].as_str().unwrap()).unwrap();
    let age_d = |file: &Path, key: &str| {
        let out = Command::new("age").arg("-d").arg("-i").arg(e.p(key)).arg(file).output().unwrap();
        assert!(out.status.success(), "age -d {}: {}", file.display(), String::from_utf8_lossy(&out.stderr));
        out.stdout
    };
    let inner: Value = serde_json::from_slice(&age_d(&e.p("sealed.age"), "key2.txt")).unwrap();
    assert_eq!(inner["tables"][0]["name"], "payment_tokens");
    let mut file = Vec::new();
    for o in inner["objects"].as_array().unwrap() {
        let key = o["key"].as_str().unwrap();
        let compressed = age_d(&e.p("repo").join(&id).join(key), "key1.txt");
        let raw = zstd_d(&compressed);
        assert_eq!(backup_core::sha256_hex(&raw), o["raw_sha256"].as_str().unwrap(), "{key}");
        if o["kind"] == "file" {
            file.extend_from_slice(&raw);
        }
    }
    // SQLite backups are the database file: the decrypted chunks are a working database.
    std::fs::write(e.p("by-age.sqlite"), &file).unwrap();
    assert_eq!(canary_rows(&e.p("by-age.sqlite")), 1);
}

fn zstd_d(data: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut child = Command::new("zstd")
        .arg("-dc")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("zstd CLI");
    let mut stdin = child.stdin.take().unwrap();
    let data = data.to_vec();
    let writer = std::thread::spawn(move || stdin.write_all(&data));
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap().unwrap();
    assert!(out.status.success());
    out.stdout
}

#[test]
fn passphrase_backups_and_key_rotation_with_copy() {
    let e = Env::new();
    let repo = e.p("repo").display().to_string();
    let src = e.url("app.sqlite");
    std::fs::write(e.p("pass.txt"), "correct horse battery staple\n").unwrap();
    let out = e.run(
        &[
            "create",
            "--json",
            "--source",
            &src,
            "--repo",
            &repo,
            "--passphrase-file",
            e.p("pass.txt").to_str().unwrap(),
        ],
        &[],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let id = json(&out)["id"].as_str().unwrap().to_string();
    let into = e.url("restored.sqlite");
    let out =
        e.run(&["restore", "--repo", &repo, &id, "--into", &into], &[("DBBACKUP_PASSPHRASE", "wrong horse")]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("wrong key"), "{}", stderr(&out));
    assert!(!e.p("restored.sqlite").exists());

    // Rotation: re-encrypt the passphrase backup to a new key pair in another repository.
    let new_r = keygen(&e.p("new.txt"));
    let offsite = e.p("offsite").display().to_string();
    let out = e.run(
        &["copy", "--json", "--from", &repo, "--to", &offsite, &id, "--encrypt-to", &new_r],
        &[("DBBACKUP_PASSPHRASE", "correct horse battery staple")],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(json(&out)["reencrypted_to"][0], new_r.as_str());
    // The old key no longer opens the copy; the new one does, and full verification passes.
    let out = e.run(
        &["verify", "--repo", &offsite, &id],
        &[("DBBACKUP_PASSPHRASE", "correct horse battery staple")],
    );
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("wrong key"), "{}", stderr(&out));
    let v = e.run(
        &["verify", "--json", "--repo", &offsite, &id, "--identity", e.p("new.txt").to_str().unwrap()],
        &[],
    );
    assert_eq!(json(&v)["ok"], true, "{}", stderr(&v));
    let out = e.run(
        &[
            "restore",
            "--repo",
            &offsite,
            &id,
            "--into",
            &into,
            "--identity",
            e.p("new.txt").to_str().unwrap(),
        ],
        &[],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(canary_rows(&e.p("restored.sqlite")), 1);
    // The original still restores with the passphrase.
    let out = e.run(
        &["restore", "--force", "--repo", &repo, &id, "--into", &into],
        &[("DBBACKUP_PASSPHRASE", "correct horse battery staple")],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    // Re-encrypting without the current key fails before anything is written.
    let out = e.run(
        &["copy", "--from", &repo, "--to", &e.p("third").display().to_string(), &id, "--encrypt-to", &new_r],
        &[],
    );
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(files_under(&e.p("third")).is_empty());
    e.assert_no_temp_left();
}
