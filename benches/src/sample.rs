//! A realistic Laravel-style SQLite database of a chosen size: users, transactions (decimals as
//! text, JSON metadata), webhook_logs (large JSON payloads), jobs and failed_jobs, with the
//! indexes a Laravel migration would create. Deterministic for a given size.

use std::path::Path;

use anyhow::{Context, Result};
use rusqlite::{Connection, params};

/// Small deterministic PRNG (xorshift64*), so datasets are reproducible without extra crates.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed.max(1))
    }
    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    pub fn word(&mut self, len: usize) -> String {
        (0..len).map(|_| (b'a' + self.below(26) as u8) as char).collect()
    }
}

const SCHEMA: &str = r#"
create table users (id integer primary key autoincrement, name varchar not null, email varchar not null unique,
  email_verified_at datetime, password varchar not null, remember_token varchar, created_at datetime, updated_at datetime);
create table transactions (id integer primary key autoincrement, user_id integer not null references users(id),
  amount numeric not null, currency varchar not null, status varchar not null, reference varchar not null unique,
  metadata text, created_at datetime, updated_at datetime);
create index transactions_user_id_index on transactions(user_id);
create index transactions_status_created_at_index on transactions(status, created_at);
create table webhook_logs (id integer primary key autoincrement, provider varchar not null, event varchar not null,
  payload text not null, response_code integer, created_at datetime);
create index webhook_logs_provider_event_index on webhook_logs(provider, event);
create table jobs (id integer primary key autoincrement, queue varchar not null, payload text not null,
  attempts integer not null, reserved_at integer, available_at integer not null, created_at integer not null);
create index jobs_queue_index on jobs(queue);
create table failed_jobs (id integer primary key autoincrement, uuid varchar not null unique, connection text not null,
  queue text not null, payload text not null, exception text not null, failed_at datetime default current_timestamp);
"#;

fn ts(rng: &mut Rng) -> String {
    format!(
        "2026-{:02}-{:02} {:02}:{:02}:{:02}",
        1 + rng.below(11),
        1 + rng.below(28),
        rng.below(24),
        rng.below(60),
        rng.below(60)
    )
}

/// Writes the database at `path` (replacing it) with about `size_mib` MiB of table data.
pub fn make_sqlite(path: &Path, size_mib: u64) -> Result<()> {
    let _ = std::fs::remove_file(path);
    let c = Connection::open(path).with_context(|| format!("create {}", path.display()))?;
    c.execute_batch("pragma journal_mode = wal; pragma synchronous = off;")?;
    c.execute_batch(SCHEMA)?;
    let budget = size_mib << 20;
    let mut rng = Rng::new(size_mib + 7);
    let users = (budget / 40_000).max(10);
    let tx = c.unchecked_transaction()?;
    {
        let mut st = tx.prepare("insert into users (name, email, email_verified_at, password, remember_token, created_at, updated_at) values (?1,?2,?3,?4,?5,?6,?6)")?;
        for i in 0..users {
            let t = ts(&mut rng);
            st.execute(params![
                format!("{} {}", rng.word(6), rng.word(9)),
                format!("user{i}@{}.example", rng.word(7)),
                (!i.is_multiple_of(5)).then(|| t.clone()),
                format!("$2y$10${}", rng.word(53)),
                (i.is_multiple_of(3)).then(|| rng.word(60)),
                t
            ])?;
        }
    }
    let mut written = users * 200;
    let mut n = 0u64;
    {
        let mut txs = tx.prepare("insert into transactions (user_id, amount, currency, status, reference, metadata, created_at, updated_at) values (?1,?2,?3,?4,?5,?6,?7,?7)")?;
        let mut logs = tx.prepare("insert into webhook_logs (provider, event, payload, response_code, created_at) values (?1,?2,?3,?4,?5)")?;
        let mut jobs = tx.prepare("insert into jobs (queue, payload, attempts, reserved_at, available_at, created_at) values (?1,?2,?3,?4,?5,?5)")?;
        let mut failed = tx.prepare("insert into failed_jobs (uuid, connection, queue, payload, exception) values (?1,'redis',?2,?3,?4)")?;
        let statuses = ["pending", "captured", "refunded", "failed"];
        let providers = ["stripe", "paypal", "adyen", "mollie"];
        while written < budget {
            n += 1;
            let amount = format!("{}.{:02}", rng.below(100_000), rng.below(100));
            let meta = format!(
                r#"{{"ip":"10.{}.{}.{}","card":{{"brand":"visa","last4":"{:04}"}},"note":"{}"}}"#,
                rng.below(255),
                rng.below(255),
                rng.below(255),
                rng.below(10_000),
                rng.word(20)
            );
            let t = ts(&mut rng);
            txs.execute(params![
                1 + rng.below(users) as i64,
                amount,
                "EUR",
                statuses[rng.below(4) as usize],
                format!("tx_{n}_{}", rng.word(10)),
                meta,
                t
            ])?;
            written += 220;
            if n.is_multiple_of(3) {
                let body_len = 500 + rng.below(6000) as usize;
                let payload = format!(
                    r#"{{"id":"evt_{n}","type":"charge.succeeded","data":{{"object":{{"amount":{},"description":"{}"}}}}}}"#,
                    rng.below(1_000_000),
                    rng.word(body_len)
                );
                written += payload.len() as u64 + 60;
                logs.execute(params![
                    providers[rng.below(4) as usize],
                    "charge.succeeded",
                    payload,
                    200 + (rng.below(5) as i64) * 100,
                    t
                ])?;
            }
            if n.is_multiple_of(10) {
                let payload = format!(
                    r#"{{"uuid":"{}","displayName":"App\\Jobs\\SendReceipt","data":{{"command":"{}"}}}}"#,
                    rng.word(36),
                    rng.word(400)
                );
                written += payload.len() as u64 + 40;
                jobs.execute(params![
                    "default",
                    payload,
                    rng.below(3) as i64,
                    None::<i64>,
                    1_790_000_000 + n as i64
                ])?;
            }
            if n.is_multiple_of(200) {
                let exception = format!(
                    "RuntimeException: {}\n#0 /var/www/app/Jobs/SendReceipt.php(42)\n{}",
                    rng.word(40),
                    rng.word(1500)
                );
                written += exception.len() as u64 + 300;
                failed.execute(params![
                    format!("{:032x}", rng.next() as u128 * 7 + n as u128),
                    "default",
                    rng.word(200),
                    exception
                ])?;
            }
        }
    }
    tx.commit()?;
    c.execute_batch("pragma wal_checkpoint(truncate);")?;
    Ok(())
}

/// Prints every table's row count (and an overall line) of a SQLite file.
pub fn describe(path: &Path) -> Result<Vec<(String, i64)>> {
    let c = Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    let mut st = c.prepare(
        "select name from sqlite_schema where type='table' and name not like 'sqlite_%' order by name",
    )?;
    let names: Vec<String> = st.query_map([], |r| r.get(0))?.collect::<rusqlite::Result<_>>()?;
    let mut out = Vec::new();
    for n in names {
        let count: i64 = c.query_row(&format!("select count(*) from \"{n}\""), [], |r| r.get(0))?;
        out.push((n, count));
    }
    Ok(out)
}
