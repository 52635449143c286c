//! The C ABI called the way C (or PHP's FFI) calls it: raw pointers in, owned strings out.
//! This file holds the shared helpers; the tests are in `commands.rs`, `progress.rs` and
//! `alerts.rs`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::undocumented_unsafe_blocks)]

use dbbackup_tests::{pg_db, psql};
use std::ffi::{CStr, CString, c_char, c_void};
use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use serde_json::{Value, json};

use super::*;

mod alerts;
mod commands;
mod progress;

type Op = unsafe extern "C" fn(*const dbb_client, *const c_char, *mut *mut c_char) -> i32;

struct Handle(*mut dbb_client);

impl Handle {
    fn new() -> Self {
        let c = unsafe { dbb_client_new(c"{\"worker_threads\": 2}".as_ptr()) };
        assert!(!c.is_null());
        Handle(c)
    }

    fn ptr(&self) -> *mut dbb_client {
        self.0
    }

    fn call(&self, op: Op, options: &Value) -> (i32, Value) {
        let text = CString::new(options.to_string()).unwrap();
        let mut out: *mut c_char = std::ptr::null_mut();
        let code = unsafe { op(self.0, text.as_ptr(), &mut out) };
        (code, take(out))
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        unsafe { dbb_client_free(self.0) }
    }
}

// SAFETY (test): the client is Sync; the pointer is only shared for dbb_cancel/dbb_progress.
unsafe impl Send for Handle {}
unsafe impl Sync for Handle {}

/// Takes ownership of a library string, parses it and frees it.
fn take(s: *mut c_char) -> Value {
    if s.is_null() {
        return Value::Null;
    }
    let text = unsafe { CStr::from_ptr(s) }.to_str().unwrap().to_string();
    unsafe { dbb_string_free(s) };
    serde_json::from_str(&text).unwrap()
}

fn make_db(path: &Path, blob_rows: usize) {
    let db = rusqlite::Connection::open(path).unwrap();
    db.execute_batch(
        "CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT NOT NULL, email TEXT);
         CREATE TABLE blobs (id INTEGER PRIMARY KEY, data BLOB);
         CREATE INDEX users_email ON users(email);",
    )
    .unwrap();
    let tx = db.unchecked_transaction().unwrap();
    for i in 0..200 {
        tx.execute(
            "INSERT INTO users (name, email) VALUES (?1, ?2)",
            (format!("user {i} é"), format!("u{i}@x.test")),
        )
        .unwrap();
    }
    for i in 0..blob_rows {
        // Incompressible-ish bytes so compression does real work.
        let data: Vec<u8> = (0..65536u32)
            .map(|j| (j.wrapping_mul(2_654_435_761).wrapping_add(i as u32) >> 13) as u8)
            .collect();
        tx.execute("INSERT INTO blobs (data) VALUES (?1)", [data]).unwrap();
    }
    tx.commit().unwrap();
}

/// Everything in a SQLite database: its schema (every object's type, name and SQL) and every
/// table's rows, all columns, in rowid order.
type Content = (Vec<(String, String, Option<String>)>, Vec<(String, Vec<Vec<rusqlite::types::Value>>)>);

fn content(path: &Path) -> Content {
    let db = rusqlite::Connection::open(path).unwrap();
    let mut st = db
        .prepare(
            "SELECT type, name, sql FROM sqlite_master WHERE name NOT LIKE 'sqlite_%' ORDER BY type, name",
        )
        .unwrap();
    let schema: Vec<(String, String, Option<String>)> =
        st.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?))).unwrap().map(Result::unwrap).collect();
    let mut tables = Vec::new();
    for (kind, name, _) in &schema {
        if kind != "table" {
            continue;
        }
        let mut st = db.prepare(&format!("SELECT * FROM \"{name}\" ORDER BY rowid")).unwrap();
        let n = st.column_count();
        let rows: Vec<Vec<rusqlite::types::Value>> = st
            .query_map([], |r| (0..n).map(|i| r.get::<_, rusqlite::types::Value>(i)).collect())
            .unwrap()
            .map(Result::unwrap)
            .collect();
        tables.push((name.clone(), rows));
    }
    (schema, tables)
}

fn last_error() -> Value {
    take(dbb_last_error())
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() { out.extend(walk(&p)) } else { out.push(p) }
    }
    out.sort();
    out
}

fn rows(path: &Path) -> Vec<(i64, String)> {
    let c = rusqlite::Connection::open(path).unwrap();
    let mut st = c.prepare("SELECT id, name FROM users ORDER BY id").unwrap();
    st.query_map([], |r| Ok((r.get(0)?, r.get(1)?))).unwrap().map(Result::unwrap).collect()
}

/// Every row of `users`, ordered.
fn dump(path: &Path) -> Vec<(i64, String, Option<String>)> {
    let db = rusqlite::Connection::open(path).unwrap();
    let mut st = db.prepare("SELECT id, name, email FROM users ORDER BY id").unwrap();
    st.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?))).unwrap().map(Result::unwrap).collect()
}

unsafe extern "C" fn command_exits_with(user_data: *mut c_void) -> i32 {
    // The test passes a pointer to (database path, status to return); the "command" damages
    // the database first, like a migration failing halfway.
    let (path, status) = unsafe { &*(user_data as *const (std::path::PathBuf, i32)) };
    let c = rusqlite::Connection::open(path).unwrap();
    c.execute_batch("DELETE FROM users WHERE id % 2 = 0; CREATE TABLE half_done (x INTEGER);").unwrap();
    *status
}
