//! Benchmark of the lease table (not a test: `cargo test` does not run it).
//!
//! ```sh
//! scripts/services.sh postgres mariadb
//! cargo bench -p lockattr-tests --features sqlite,postgres,mysql --bench table
//! ```
//!
//! For `sqlite://`, `postgres://…?mode=table` and `mysql://…?mode=table`:
//!
//! 1. uncontended acquire + release through lockattr, against the same two statements run
//!    raw on one held connection (rounds alternate, the median round counts); the ratio
//!    is lockattr's overhead. The plain ShedLock statements (no waiter check) are shown too,
//!    as the price of fair waiting;
//! 2. handoff under contention: 4 handles take turns on one key with `acquire(wait)`; the
//!    handoff is the time from one holder's release to the next holder's acquisition.
//!    "notified": handles in one process share release wake-ups; "polled": handles that
//!    do not (as between processes), made by giving each a different driver URL.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use lockattr_tests::{mysql_url, postgres_url, with_param};
use sqlx::{AssertSqlSafe, Connection};

const ROUNDS: usize = 15;
const PER_ROUND: usize = 200;
const TTL: Duration = Duration::from_secs(30);
const TABLE: &str = "lockattr_bench";

#[derive(Clone, Copy, PartialEq)]
enum Db {
    Sqlite,
    Postgres,
    MySql,
}

struct Raw {
    acquire: String,
    release: String,
    plain_acquire: String,
}

fn raw_sql(db: Db) -> Raw {
    let t = TABLE;
    match db {
        Db::Sqlite => {
            let now = "CAST(unixepoch('subsec') * 1000 AS INTEGER)";
            Raw {
                acquire: format!(
                    "INSERT INTO {t} AS t (name, token, fence, lock_until, holder) VALUES (?1, ?2, 1, {now} + ?3, ?4) \
                     ON CONFLICT (name) DO UPDATE SET token = excluded.token, fence = t.fence + 1, lock_until = excluded.lock_until, holder = excluded.holder \
                     WHERE t.token = excluded.token OR (t.lock_until <= {now} AND NOT EXISTS (SELECT 1 FROM {t}_waiters w WHERE w.name = ?1 AND w.ticket < ?5 AND w.alive_until > {now})) \
                     RETURNING fence"
                ),
                release: format!(
                    "UPDATE {t} SET token = NULL, lock_until = MIN(lock_until, {now} + ?3) WHERE name = ?1 AND token = ?2 AND lock_until > {now}"
                ),
                plain_acquire: format!(
                    "INSERT INTO {t} AS t (name, token, fence, lock_until, holder) VALUES (?1, ?2, 1, {now} + ?3, ?4) \
                     ON CONFLICT (name) DO UPDATE SET token = excluded.token, fence = t.fence + 1, lock_until = excluded.lock_until, holder = excluded.holder \
                     WHERE t.lock_until <= {now} OR ?5 = 0 RETURNING fence"
                ),
            }
        }
        Db::Postgres => {
            let now = "CAST(EXTRACT(EPOCH FROM now()) * 1000 AS BIGINT)";
            Raw {
                acquire: format!(
                    "INSERT INTO {t} AS t (name, token, fence, lock_until, holder) VALUES ($1, $2, 1, {now} + $3, $4) \
                     ON CONFLICT (name) DO UPDATE SET token = excluded.token, fence = t.fence + 1, lock_until = excluded.lock_until, holder = excluded.holder \
                     WHERE t.token = excluded.token OR (t.lock_until <= {now} AND NOT EXISTS (SELECT 1 FROM {t}_waiters w WHERE w.name = $1 AND w.ticket < $5 AND w.alive_until > {now})) \
                     RETURNING fence"
                ),
                release: format!(
                    "UPDATE {t} SET token = NULL, lock_until = LEAST(lock_until, {now} + $3) WHERE name = $1 AND token = $2 AND lock_until > {now}"
                ),
                plain_acquire: format!(
                    "INSERT INTO {t} AS t (name, token, fence, lock_until, holder) VALUES ($1, $2, 1, {now} + $3, $4) \
                     ON CONFLICT (name) DO UPDATE SET token = excluded.token, fence = t.fence + 1, lock_until = excluded.lock_until, holder = excluded.holder \
                     WHERE t.lock_until <= {now} OR $5 = 0 RETURNING fence"
                ),
            }
        }
        Db::MySql => {
            let now = "CAST(UNIX_TIMESTAMP(NOW(3)) * 1000 AS SIGNED)";
            let cond = format!("(token = VALUES(token) OR (lock_until <= {now} AND NOT EXISTS (SELECT 1 FROM {t}_waiters w WHERE w.name = ? AND w.ticket < ? AND w.alive_until > {now})))");
            let plain = format!("(lock_until <= {now} OR ? = '' OR ? = 0)");
            let odku = |c: &str| {
                format!(
                    "INSERT INTO {t} (name, token, fence, lock_until, holder) VALUES (?, ?, 1, {now} + ?, ?) \
                     ON DUPLICATE KEY UPDATE fence = IF({c}, LAST_INSERT_ID(fence + 1), fence), \
                     token = IF({c}, VALUES(token), token), holder = IF({c}, VALUES(holder), holder), \
                     lock_until = IF({c}, VALUES(lock_until), lock_until)"
                )
            };
            Raw {
                acquire: odku(&cond),
                release: format!(
                    "UPDATE {t} SET token = NULL, lock_until = LEAST(lock_until, {now} + ?) WHERE name = ? AND token = ? AND lock_until > {now}"
                ),
                plain_acquire: odku(&plain),
            }
        }
    }
}

/// One raw acquire + release on a held connection.
macro_rules! raw_round_trip {
    ($conn:expr, $db:expr, $acquire:expr, $release:expr, $key:expr, $token:expr) => {{
        let (key, token): (&str, &str) = ($key, $token);
        if $db == Db::MySql {
            let mut q = sqlx::query(AssertSqlSafe($acquire.as_str()))
                .bind(key)
                .bind(token)
                .bind(30_000i64)
                .bind("bench");
            for _ in 0..4 {
                q = q.bind(key).bind(i64::MAX);
            }
            q.execute(&mut *$conn).await.unwrap();
            sqlx::query(AssertSqlSafe($release.as_str()))
                .bind(0i64)
                .bind(key)
                .bind(token)
                .execute(&mut *$conn)
                .await
                .unwrap();
        } else {
            let row = sqlx::query(AssertSqlSafe($acquire.as_str()))
                .bind(key)
                .bind(token)
                .bind(30_000i64)
                .bind("bench")
                .bind(i64::MAX)
                .fetch_optional(&mut *$conn)
                .await
                .unwrap();
            assert!(row.is_some(), "raw acquire failed");
            sqlx::query(AssertSqlSafe($release.as_str()))
                .bind(key)
                .bind(token)
                .bind(0i64)
                .execute(&mut *$conn)
                .await
                .unwrap();
        }
    }};
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn percentile(v: &mut [Duration], p: f64) -> Duration {
    v.sort();
    v[((v.len() - 1) as f64 * p).round() as usize]
}

async fn lockattr_round(locks: &lockattr::Locks, key: &str) -> f64 {
    let start = Instant::now();
    for _ in 0..PER_ROUND {
        let g = locks
            .lock(key)
            .ttl(TTL)
            .try_acquire()
            .await
            .unwrap()
            .unwrap();
        g.release().await.unwrap();
    }
    start.elapsed().as_secs_f64() * 1e6 / PER_ROUND as f64
}

async fn uncontended(name: &str, db: Db, url: &str, raw_url: &str) {
    let locks = lockattr::connect(url).await.unwrap();
    let key = format!("uncontended-{}", std::process::id());
    let stored = format!("lockattr:{key}");
    let sql = raw_sql(db);
    let (mut ours, mut raw, mut plain) = (Vec::new(), Vec::new(), Vec::new());
    macro_rules! rounds {
        ($conn:expr) => {{
            let conn = $conn;
            let mut n = 0u64;
            for round in 0..=ROUNDS {
                let t_ours = lockattr_round(&locks, &key).await;
                let start = Instant::now();
                for _ in 0..PER_ROUND {
                    n += 1;
                    let token = format!("{n:032x}");
                    raw_round_trip!(conn, db, sql.acquire, sql.release, &stored, &token);
                }
                let t_raw = start.elapsed().as_secs_f64() * 1e6 / PER_ROUND as f64;
                let start = Instant::now();
                for _ in 0..PER_ROUND {
                    n += 1;
                    let token = format!("{n:032x}");
                    raw_round_trip!(conn, db, sql.plain_acquire, sql.release, &stored, &token);
                }
                let t_plain = start.elapsed().as_secs_f64() * 1e6 / PER_ROUND as f64;
                if round > 0 {
                    // Round 0 warms up.
                    ours.push(t_ours);
                    raw.push(t_raw);
                    plain.push(t_plain);
                }
            }
        }};
    }
    match db {
        Db::Sqlite => {
            // The pragmas lockattr sets on its own connections.
            let options = raw_url
                .parse::<sqlx::sqlite::SqliteConnectOptions>()
                .unwrap()
                .journal_mode(sqlx::sqlite::SqliteJournalMode::Wal)
                .synchronous(sqlx::sqlite::SqliteSynchronous::Normal)
                .busy_timeout(Duration::from_secs(5));
            let mut c = sqlx::ConnectOptions::connect(&options).await.unwrap();
            rounds!(&mut c);
        }
        Db::Postgres => {
            let mut c = sqlx::PgConnection::connect(raw_url).await.unwrap();
            rounds!(&mut c);
        }
        Db::MySql => {
            let mut c = sqlx::MySqlConnection::connect(raw_url).await.unwrap();
            rounds!(&mut c);
        }
    }
    let (o, r, p) = (median(&mut ours), median(&mut raw), median(&mut plain));
    println!(
        "{name:<16} uncontended acquire+release: lockattr {o:8.1} µs   raw same statements {r:8.1} µs   ratio {:.3}   (plain ShedLock statements {p:8.1} µs)",
        o / r
    );
}

async fn handoff(name: &str, urls: &[String], label: &str) {
    const HANDLES: usize = 4;
    const TURNS: usize = 40;
    let key = format!("handoff-{}-{label}", std::process::id());
    let last_release: Arc<Mutex<Option<(usize, Instant)>>> = Arc::new(Mutex::new(None));
    let gaps: Arc<Mutex<Vec<Duration>>> = Arc::new(Mutex::new(Vec::new()));
    // Every handle is open before the first turn: a handle that starts while the others
    // still connect takes all its turns alone, and no handoff is measured.
    let mut handles = Vec::new();
    for i in 0..HANDLES {
        handles.push(lockattr::connect(&urls[i % urls.len()]).await.unwrap());
    }
    let mut tasks = Vec::new();
    for (i, locks) in handles.into_iter().enumerate() {
        let (key, last_release, gaps) = (key.clone(), last_release.clone(), gaps.clone());
        tasks.push(tokio::spawn(async move {
            for _ in 0..TURNS {
                let g = locks
                    .lock(&key)
                    .ttl(TTL)
                    .acquire(Duration::from_secs(60))
                    .await
                    .unwrap();
                let now = Instant::now();
                if let Some((who, at)) = *last_release.lock().unwrap() {
                    if who != i {
                        gaps.lock().unwrap().push(now - at);
                    }
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
                *last_release.lock().unwrap() = Some((i, Instant::now()));
                g.release().await.unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let mut gaps = gaps.lock().unwrap().clone();
    println!(
        "{name:<16} handoff ({label}, {HANDLES} handles, {} handoffs): p50 {:?}  p90 {:?}",
        gaps.len(),
        percentile(&mut gaps, 0.5),
        percentile(&mut gaps, 0.9)
    );
}

fn main() {
    let dir = std::env::temp_dir().join(format!("lockattr-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let db_path = dir.join("bench.db");
    let sqlite = format!("sqlite://{}?table={TABLE}", db_path.display());
    let (pg, my) = (postgres_url(), mysql_url());
    let targets = [
        (
            "sqlite",
            Db::Sqlite,
            sqlite.clone(),
            format!("sqlite://{}", db_path.display()),
        ),
        (
            "postgres_table",
            Db::Postgres,
            with_param(&pg, &format!("mode=table&table={TABLE}")),
            pg.clone(),
        ),
        (
            "mysql_table",
            Db::MySql,
            with_param(&my, &format!("mode=table&table={TABLE}")),
            my.clone(),
        ),
    ];
    let only: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let current = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let multi = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    for (name, db, url, raw_url) in &targets {
        if !only.is_empty() && !only.iter().any(|o| o == name) {
            continue;
        }
        current.block_on(uncontended(name, *db, url, raw_url));
        multi.block_on(handoff(name, std::slice::from_ref(url), "notified"));
        // Different driver URLs for one database: no shared wake-ups, as between processes.
        let polled: Vec<String> = match db {
            Db::Sqlite => Vec::new(),
            Db::Postgres => (0..4)
                .map(|i| format!("{url}&application_name=bench{i}"))
                .collect(),
            Db::MySql => (0..4)
                .map(|i| format!("{url}&statement-cache-capacity={}", 100 + i))
                .collect(),
        };
        if !polled.is_empty() {
            multi.block_on(handoff(name, &polled, "polled"));
        }
    }
    let _ = std::fs::remove_dir_all(dir);
}
