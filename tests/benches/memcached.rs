//! `cargo bench -p lockattr-tests --features memcached,redis --bench memcached`: the
//! Memcached backend against the local Memcached (`LOCKATTR_TEST_MEMCACHED_URL`, default
//! 127.0.0.1:11211), next to the Redis backend (`LOCKATTR_TEST_REDIS_URL`) on the same
//! loads in the same run, printed as a table.
//!
//! 1. Uncontended acquire + release through `Locks`, next to the raw pair it is built on
//!    (`ms K 32 T31 ME c`, then `md K C<cas>`) on one plain connection, the two measured
//!    alternately (medians of 5000 each).
//! 2. Handoff: 8 contenders (one `Locks` each) on one key, each waiting with `acquire`;
//!    the time from one holder's release call to the next grant, p50 and p99, and the
//!    fairness measure: the most holds by others that any one acquisition waited through.
//! 3. 64 tasks on distinct keys through one `Locks` (Memcached: its pool of at most 16
//!    connections), pairs per second.
//!
//! Not a test: it asserts nothing and CI never runs it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use lockattr::Locks;
use lockattr_tests::{memcached_url, redis_url};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufStream};
use tokio::net::TcpStream;

const PAIRS: u32 = 5000;
const CONTENDERS: usize = 8;
const HOLDS_EACH: usize = 50;
const TASKS: usize = 64;
const PAIRS_PER_TASK: usize = 200;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

fn us(d: Duration) -> String {
    format!("{:.1} µs", d.as_secs_f64() * 1e6)
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    percentile(&samples, 0.5)
}

/// One uncontended acquire + release through `locks`.
async fn api_pair(locks: &Locks, key: &str) -> Duration {
    let started = Instant::now();
    let guard = locks
        .lock(key)
        .ttl(Duration::from_secs(30))
        .try_acquire()
        .await
        .unwrap()
        .expect("uncontended lock taken");
    guard.release().await.unwrap();
    started.elapsed()
}

async fn api_pairs(locks: &Locks, key: &str) -> Duration {
    let mut samples = Vec::new();
    for _ in 0..PAIRS {
        samples.push(api_pair(locks, key).await);
    }
    median(samples)
}

/// One answer line of the raw connection.
async fn line(conn: &mut BufStream<TcpStream>) -> String {
    let mut line = String::new();
    conn.read_line(&mut line).await.unwrap();
    line.trim_end().to_owned()
}

/// Medians of the raw `ms … ME c` + `md … C<cas>` pair on one connection and of the
/// same pair through `locks`, measured alternately so that both see the same load.
async fn raw_and_api_pairs(address: &str, locks: &Locks, key: &str) -> (Duration, Duration) {
    let mut conn = BufStream::new(TcpStream::connect(address).await.unwrap());
    conn.get_ref().set_nodelay(true).unwrap();
    let (mut raw, mut api) = (Vec::new(), Vec::new());
    for i in 0..PAIRS {
        let started = Instant::now();
        let token = format!("{:032x}", u128::from(i) * 0x9E37_79B9_7F4A_7C15);
        conn.write_all(format!("ms bench:raw|l 32 T31 ME c\r\n{token}\r\n").as_bytes())
            .await
            .unwrap();
        conn.flush().await.unwrap();
        let added = line(&mut conn).await;
        let cas = added.strip_prefix("HD c").expect("raw key taken");
        conn.write_all(format!("md bench:raw|l C{cas}\r\n").as_bytes())
            .await
            .unwrap();
        conn.flush().await.unwrap();
        assert_eq!(line(&mut conn).await, "HD");
        raw.push(started.elapsed());

        api.push(api_pair(locks, key).await);
    }
    (median(raw), median(api))
}

/// Handoff p50, p99 and the most holds any acquisition waited through.
async fn handoff(url: &str, key: &str) -> (Duration, Duration, u64) {
    let released_at: Arc<Mutex<Option<Instant>>> = Arc::default();
    let handoffs: Arc<Mutex<Vec<Duration>>> = Arc::default();
    let holds = Arc::new(AtomicU64::new(0));
    let worst = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for _ in 0..CONTENDERS {
        let locks = lockattr::connect(url).await.unwrap();
        let (key, released_at, handoffs, holds, worst) = (
            key.to_owned(),
            released_at.clone(),
            handoffs.clone(),
            holds.clone(),
            worst.clone(),
        );
        tasks.push(tokio::spawn(async move {
            for _ in 0..HOLDS_EACH {
                let before = holds.load(Ordering::SeqCst);
                let guard = locks
                    .lock(&key)
                    .ttl(Duration::from_secs(30))
                    .acquire(Duration::from_secs(60))
                    .await
                    .unwrap();
                let granted = Instant::now();
                let waited = holds.fetch_add(1, Ordering::SeqCst) - before;
                worst.fetch_max(waited, Ordering::SeqCst);
                if let Some(at) = released_at.lock().unwrap().take() {
                    handoffs.lock().unwrap().push(granted - at);
                }
                tokio::time::sleep(Duration::from_micros(200)).await;
                *released_at.lock().unwrap() = Some(Instant::now());
                guard.release().await.unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let mut samples = handoffs.lock().unwrap().clone();
    samples.sort();
    (
        percentile(&samples, 0.5),
        percentile(&samples, 0.99),
        worst.load(Ordering::SeqCst),
    )
}

/// Pairs per second of 64 tasks on distinct keys through one handle.
async fn many(url: &str, key: &str) -> f64 {
    let locks = lockattr::connect(url).await.unwrap();
    let started = Instant::now();
    let mut tasks = Vec::new();
    for t in 0..TASKS {
        let (locks, key) = (locks.clone(), format!("{key}:{t}"));
        tasks.push(tokio::spawn(async move {
            for _ in 0..PAIRS_PER_TASK {
                let guard = locks
                    .lock(&key)
                    .ttl(Duration::from_secs(30))
                    .try_acquire()
                    .await
                    .unwrap()
                    .expect("a key of its own");
                guard.release().await.unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    (TASKS * PAIRS_PER_TASK) as f64 / started.elapsed().as_secs_f64()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let (mc, redis) = (memcached_url(), redis_url());
    let run = std::process::id();
    let address = mc
        .split("://")
        .nth(1)
        .and_then(|r| r.split(['?', '/']).next())
        .unwrap()
        .to_owned();
    let mc_locks = lockattr::connect(&mc).await.unwrap();
    let redis_locks = lockattr::connect(&redis).await.unwrap();
    // Warm up connections and scripts.
    api_pairs(&mc_locks, &format!("bench:warm:{run}")).await;
    api_pairs(&redis_locks, &format!("bench:warm:{run}")).await;

    let (raw, mc_pair) = raw_and_api_pairs(&address, &mc_locks, &format!("bench:api:{run}")).await;
    let redis_pair = api_pairs(&redis_locks, &format!("bench:api:{run}")).await;
    let (mc_p50, mc_p99, mc_worst) = handoff(&mc, &format!("bench:handoff:{run}")).await;
    let (r_p50, r_p99, r_worst) = handoff(&redis, &format!("bench:handoff:{run}")).await;
    let mc_rate = many(&mc, &format!("bench:many:{run}")).await;
    let r_rate = many(&redis, &format!("bench:many:{run}")).await;

    let ratio = mc_pair.as_secs_f64() / raw.as_secs_f64();
    println!("| measure | Memcached | Redis |");
    println!("| --- | --- | --- |");
    println!(
        "| uncontended acquire + release, median of {PAIRS} | {} | {} |",
        us(mc_pair),
        us(redis_pair)
    );
    println!(
        "| raw `ms ME c` + `md C` pair, one connection | {} ({ratio:.2}×) | |",
        us(raw)
    );
    println!(
        "| handoff, {CONTENDERS} contenders, p50 / p99 | {} / {} | {} / {} |",
        us(mc_p50),
        us(mc_p99),
        us(r_p50),
        us(r_p99)
    );
    println!(
        "| most holds one acquisition waited through ({CONTENDERS} × {HOLDS_EACH}) | {mc_worst} | {r_worst} |"
    );
    println!("| {TASKS} tasks on distinct keys, pairs/s | {mc_rate:.0} | {r_rate:.0} |");
}
