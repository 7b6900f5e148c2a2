//! Benchmark of the session-lock backends on the local servers (not a test):
//!
//! ```sh
//! cargo bench -p lockattr-tests --features postgres,mysql --bench session
//! ```
//!
//! For `postgres://` and `mysql://` it prints:
//! - uncontended acquire + release through lockattr against the raw statements on one held
//!   connection (`pg_try_advisory_lock` + `pg_advisory_unlock`, `GET_LOCK(k, 0)` +
//!   `RELEASE_LOCK`), and against the statements lockattr sends for back-to-back takes
//!   (the same with the fencing token), interleaved in rounds, as median microseconds per
//!   pair and the median of the per-round ratios;
//! - the handoff latency under contention: from a holder's `release()` to the next
//!   waiter's `acquire` returning, p50 and p90;
//! - the connections 1,000 concurrently held locks use.
//!
//! The servers are `lockattr_tests::{postgres_url, mysql_url}` (`LOCKATTR_TEST_*_URL`, else
//! the local ones).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use lockattr::Locks;
use std::str::FromStr;

use sqlx::mysql::{MySqlConnectOptions, MySqlConnection};
use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::{ConnectOptions, Connection};

use lockattr_tests::{mysql_url, postgres_url, with_database, with_param};

/// The MariaDB database of the lockattr handles (so that their sessions can be counted).
const MY_DB: &str = "lockattr_bench";

/// Pairs per round, rounds per contender (interleaved; the median round counts).
const PAIRS: usize = 100;
const ROUNDS: usize = 64;
/// Handles and raw connections the rounds cycle through: on a busy two-core machine one
/// connection's round trip depends on where the scheduler puts its server process, so a
/// single connection per side measures placement as much as code.
const CONNECTIONS: usize = 4;

/// A raw connection, without sqlx's statement logging (as lockattr's own connections).
async fn pg_raw() -> PgConnection {
    let options = PgConnectOptions::from_str(&postgres_url())
        .unwrap()
        .disable_statement_logging();
    PgConnection::connect_with(&options).await.unwrap()
}

async fn my_raw() -> MySqlConnection {
    let options = MySqlConnectOptions::from_str(&mysql_url())
        .unwrap()
        .disable_statement_logging();
    MySqlConnection::connect_with(&options).await.unwrap()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn percentile(v: &mut [Duration], p: f64) -> Duration {
    v.sort();
    v[((v.len() - 1) as f64 * p).round() as usize]
}

/// Microseconds per lockattr acquire + release, over one round.
async fn lockattr_round(locks: &Locks, key: &str) -> f64 {
    let started = Instant::now();
    for _ in 0..PAIRS {
        let guard = locks
            .lock(key)
            .ttl(Duration::from_secs(30))
            .try_acquire()
            .await
            .unwrap()
            .unwrap();
        guard.release().await.unwrap();
    }
    started.elapsed().as_secs_f64() * 1e6 / PAIRS as f64
}

async fn pg_raw_round(conn: &mut PgConnection, key: i64, with_fence: bool) -> f64 {
    let started = Instant::now();
    let mut block = -1i64;
    for _ in 0..PAIRS {
        if with_fence {
            // What lockattr sends for back-to-back takes of one ttl, whose session already
            // has the idle limit each take needs (not set here: the connection is shared
            // with the plain pair, which must stay the bare two statements): the take,
            // then the check that this caller's fencing block is still the latest.
            let (answer,): (Option<i64>,) = sqlx::query_as(
                "SELECT CASE WHEN pg_try_advisory_lock($1) THEN \
                 CASE WHEN pg_sequence_last_value('lockattr_fence') = $2 THEN 0 \
                 ELSE nextval('lockattr_fence') END END",
            )
            .bind(key)
            .bind(block)
            .fetch_one(&mut *conn)
            .await
            .unwrap();
            if let Some(new) = answer.filter(|&a| a > 0) {
                block = new;
            }
            let _: (bool,) = sqlx::query_as("SELECT pg_advisory_unlock($1)")
                .bind(key)
                .fetch_one(&mut *conn)
                .await
                .unwrap();
        } else {
            let _: (bool,) = sqlx::query_as("SELECT pg_try_advisory_lock($1)")
                .bind(key)
                .fetch_one(&mut *conn)
                .await
                .unwrap();
            let _: (bool,) = sqlx::query_as("SELECT pg_advisory_unlock($1)")
                .bind(key)
                .fetch_one(&mut *conn)
                .await
                .unwrap();
        }
    }
    started.elapsed().as_secs_f64() * 1e6 / PAIRS as f64
}

async fn my_raw_round(conn: &mut MySqlConnection, key: &str, with_fence: bool) -> f64 {
    let started = Instant::now();
    for _ in 0..PAIRS {
        if with_fence {
            let _: (Option<i64>,) =
                sqlx::query_as("SELECT IF(GET_LOCK(?, 0) = 1, NEXTVAL(lockattr_fence), NULL)")
                    .bind(key)
                    .fetch_one(&mut *conn)
                    .await
                    .unwrap();
        } else {
            let _: (Option<i64>,) = sqlx::query_as("SELECT GET_LOCK(?, 0)")
                .bind(key)
                .fetch_one(&mut *conn)
                .await
                .unwrap();
        }
        let _: (Option<i64>,) = sqlx::query_as("SELECT RELEASE_LOCK(?)")
            .bind(key)
            .fetch_one(&mut *conn)
            .await
            .unwrap();
    }
    started.elapsed().as_secs_f64() * 1e6 / PAIRS as f64
}

/// Four instances taking turns on one key with `acquire(wait)`: release → next holder.
async fn handoff(url: &str) -> (Duration, Duration, usize) {
    let key = format!("bench-handoff-{}", std::process::id());
    let released_at: Arc<Mutex<Option<Instant>>> = Arc::new(Mutex::new(None));
    let samples: Arc<Mutex<Vec<Duration>>> = Arc::new(Mutex::new(Vec::new()));
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let locks = lockattr::connect(url).await.unwrap();
        let (key, released_at, samples) = (key.clone(), released_at.clone(), samples.clone());
        tasks.push(tokio::spawn(async move {
            for _ in 0..50 {
                let guard = locks
                    .lock(&key)
                    .ttl(Duration::from_secs(30))
                    .acquire(Duration::from_secs(30))
                    .await
                    .unwrap();
                if let Some(at) = released_at.lock().unwrap().take() {
                    samples.lock().unwrap().push(at.elapsed());
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
                *released_at.lock().unwrap() = Some(Instant::now());
                guard.release().await.unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let mut samples = samples.lock().unwrap().clone();
    let n = samples.len();
    (
        percentile(&mut samples, 0.5),
        percentile(&mut samples, 0.9),
        n,
    )
}

/// Takes 1,000 locks at once and returns the guards.
async fn take_thousand(locks: &Locks) -> Vec<lockattr::LockGuard> {
    let base = format!("bench-many-{}", std::process::id());
    let mut set = tokio::task::JoinSet::new();
    for i in 0..1000 {
        let (locks, key) = (locks.clone(), format!("{base}:{i}"));
        set.spawn(async move {
            locks
                .lock(key)
                .ttl(Duration::from_secs(60))
                .try_acquire()
                .await
                .unwrap()
                .unwrap()
        });
    }
    let mut guards = Vec::new();
    while let Some(g) = set.join_next().await {
        guards.push(g.unwrap());
    }
    guards
}

/// Prints medians, and the median of the per-round ratios: adjacent rounds see the same
/// load on the machine, so the ratio of a round pair is steadier than that of medians.
fn report(name: &str, ours: Vec<f64>, raw: Vec<f64>, raw_fenced: Vec<f64>) {
    let ratio = median(ours.iter().zip(&raw).map(|(a, b)| a / b).collect());
    let fenced_ratio = median(ours.iter().zip(&raw_fenced).map(|(a, b)| a / b).collect());
    let (ours, raw, fenced) = (median(ours), median(raw), median(raw_fenced));
    println!(
        "{name}: lockattr {ours:.1} µs/pair, raw {raw:.1} µs/pair (ratio {ratio:.2}), \
         raw with lockattr's statements {fenced:.1} µs/pair (ratio {fenced_ratio:.2})"
    );
}

async fn postgres() {
    let url = with_param(&postgres_url(), "application_name=lockattr-bench");
    let mut handles = Vec::new();
    let mut raws = Vec::new();
    for _ in 0..CONNECTIONS {
        handles.push(lockattr::connect(&url).await.unwrap());
        raws.push(pg_raw().await);
    }
    let key = format!("bench-solo-{}", std::process::id());
    let raw_key = lockattr::backend::postgres::advisory_key("bench-raw");
    let (mut a, mut b, mut c) = (Vec::new(), Vec::new(), Vec::new());
    // A warm-up round of each, not counted.
    for (locks, raw) in handles.iter().zip(&mut raws) {
        lockattr_round(locks, &key).await;
        pg_raw_round(raw, raw_key, true).await;
    }
    for round in 0..ROUNDS {
        let (locks, raw) = (
            &handles[round % CONNECTIONS],
            &mut raws[round % CONNECTIONS],
        );
        a.push(lockattr_round(locks, &key).await);
        b.push(pg_raw_round(raw, raw_key, false).await);
        c.push(pg_raw_round(raw, raw_key, true).await);
    }
    drop(handles);
    let mut raw = raws.pop().unwrap();
    report("postgres uncontended", a, b, c);
    let (p50, p90, n) = handoff(&url).await;
    println!("postgres handoff: p50 {p50:?}, p90 {p90:?} over {n} handoffs");
    let many = with_param(&postgres_url(), "application_name=lockattr-bench-many");
    let many = lockattr::connect(&many).await.unwrap();
    let guards = take_thousand(&many).await;
    let (sessions,): (i64,) = sqlx::query_as(
        "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'lockattr-bench-many'",
    )
    .fetch_one(&mut raw)
    .await
    .unwrap();
    println!(
        "postgres: {} locks held on {sessions} connections",
        guards.len()
    );
    drop(guards);
}

async fn mysql() {
    let mut raw = MySqlConnection::connect(&mysql_url()).await.unwrap();
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "CREATE DATABASE IF NOT EXISTS {MY_DB}"
    )))
    .execute(&mut raw)
    .await
    .unwrap();
    let url = with_database(&mysql_url(), MY_DB);
    let mut handles = Vec::new();
    let mut raws = Vec::new();
    for _ in 0..CONNECTIONS {
        handles.push(lockattr::connect(&url).await.unwrap());
        raws.push(my_raw().await);
    }
    // The sequence the fenced raw statements use lives in `test`: make sure it exists.
    lockattr::connect(&mysql_url()).await.unwrap();
    let key = format!("bench-solo-{}", std::process::id());
    let raw_key = format!("lockattr:bench-raw-{}", std::process::id());
    let (mut a, mut b, mut c) = (Vec::new(), Vec::new(), Vec::new());
    for (locks, raw) in handles.iter().zip(&mut raws) {
        lockattr_round(locks, &key).await;
        my_raw_round(raw, &raw_key, true).await;
    }
    for round in 0..ROUNDS {
        let (locks, raw) = (
            &handles[round % CONNECTIONS],
            &mut raws[round % CONNECTIONS],
        );
        a.push(lockattr_round(locks, &key).await);
        b.push(my_raw_round(raw, &raw_key, false).await);
        c.push(my_raw_round(raw, &raw_key, true).await);
    }
    drop(handles);
    report("mysql uncontended", a, b, c);
    let (p50, p90, n) = handoff(&url).await;
    println!("mysql handoff: p50 {p50:?}, p90 {p90:?} over {n} handoffs");
    let many_db = "lockattr_bench_many";
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "CREATE DATABASE IF NOT EXISTS {many_db}"
    )))
    .execute(&mut raw)
    .await
    .unwrap();
    let many = lockattr::connect(&with_database(&mysql_url(), many_db))
        .await
        .unwrap();
    let guards = take_thousand(&many).await;
    let (sessions,): (i64,) = sqlx::query_as(
        "SELECT COUNT(*) FROM information_schema.processlist WHERE db = 'lockattr_bench_many'",
    )
    .fetch_one(&mut raw)
    .await
    .unwrap();
    println!(
        "mysql: {} locks held on {sessions} connections",
        guards.len()
    );
    drop(guards);
}

fn main() {
    // One thread: lockattr and the raw statements pay the same scheduling, and the machine's
    // other work disturbs them alike; rounds alternate so that drifts hit both.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        postgres().await;
        mysql().await;
        // Let the dropped guards' background releases finish.
        tokio::time::sleep(Duration::from_millis(500)).await;
    });
}
