//! `cargo bench -p lockattr-tests --features redis --bench redis`: the Redis backend
//! against the local Redis (127.0.0.1:6379, or `LOCKATTR_BENCH_URL`), printed as a table.
//!
//! 1. Uncontended acquire + release through `#[distributed_lock]`, next to the raw two
//!    commands (`SET key token NX PX` + a compare-and-delete `EVALSHA`) on one connection.
//! 2. Handoff under contention: 8 tasks on one key with `on_conflict = "wait"`, the time
//!    from one holder's body ending (its release follows at once) to the next body starting.
//! 3. Throughput: 64 tasks on distinct keys through one backend (one connection), next to
//!    `redis-benchmark`'s `SET … NX` rate measured in the same run.
//!
//! Not a test: it asserts nothing and CI never runs it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use lockattr::distributed_lock;

#[distributed_lock(key = "bench:uncontended", ttl = "30s", on_conflict = "skip")]
async fn uncontended() -> Option<()> {
    Some(())
}

/// When the last handoff body ended, and the handoff times measured so far.
static HANDOFF: Mutex<(Option<Instant>, Vec<Duration>)> = Mutex::new((None, Vec::new()));

#[distributed_lock(key = "bench:handoff", ttl = "30s", on_conflict = "wait", wait = "60s")]
async fn handoff() -> Result<(), lockattr::LockError> {
    let started = Instant::now();
    let mut h = HANDOFF.lock().unwrap();
    if let Some(ended) = h.0 {
        h.1.push(started - ended);
    }
    h.0 = Some(Instant::now());
    Ok(())
}

#[distributed_lock(key = "bench:many:<id>", ttl = "30s", on_conflict = "skip")]
async fn distinct(id: usize) -> Option<()> {
    Some(())
}

const COMPARE_AND_DELETE: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
";

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

fn us(d: Duration) -> String {
    format!("{:.1} µs", d.as_secs_f64() * 1e6)
}

async fn attribute_pair() -> Duration {
    let started = Instant::now();
    uncontended().await.expect("uncontended lock taken");
    started.elapsed()
}

async fn api_pair(locks: &lockattr::Locks) -> Duration {
    let started = Instant::now();
    let guard = locks
        .lock("bench:api")
        .ttl(Duration::from_secs(30))
        .try_acquire()
        .await
        .unwrap()
        .expect("uncontended lock taken");
    guard.release().await.unwrap();
    started.elapsed()
}

async fn raw_pair(
    conn: &mut redis::aio::ConnectionManager,
    script: &redis::Script,
    i: u64,
) -> Duration {
    let started = Instant::now();
    let token = format!("{:032x}", u128::from(i) * 0x9E37_79B9_7F4A_7C15);
    let set: Option<String> = redis::cmd("SET")
        .arg("bench:raw")
        .arg(&token)
        .arg("NX")
        .arg("PX")
        .arg(30_000)
        .query_async(conn)
        .await
        .unwrap();
    assert!(set.is_some(), "raw key taken");
    let deleted: i64 = script
        .key("bench:raw")
        .arg(&token)
        .invoke_async(conn)
        .await
        .unwrap();
    assert_eq!(deleted, 1);
    started.elapsed()
}

/// Microseconds of server time per pair (5000 pairs) that `work` costs, by command.
async fn server_usec(
    conn: &mut redis::aio::ConnectionManager,
    work: impl std::future::Future<Output = ()>,
) -> String {
    let _: () = redis::cmd("CONFIG")
        .arg("RESETSTAT")
        .query_async(conn)
        .await
        .unwrap();
    work.await;
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(conn)
        .await
        .unwrap();
    let mut total = 0.0;
    let mut parts = Vec::new();
    for line in info.lines() {
        let Some((name, stats)) = line
            .strip_prefix("cmdstat_")
            .and_then(|l| l.split_once(':'))
        else {
            continue;
        };
        if matches!(name, "config" | "info") {
            continue;
        }
        let usec: f64 = stats
            .split(',')
            .find_map(|kv| kv.strip_prefix("usec="))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0);
        total += usec / 5000.0;
        parts.push(format!("{name} {:.1}", usec / 5000.0));
    }
    format!("{total:.1} µs ({})", parts.join(", "))
}

/// Median and mean of samples.
fn summary(mut samples: Vec<Duration>) -> (Duration, Duration) {
    samples.sort();
    let mean = samples.iter().sum::<Duration>() / samples.len() as u32;
    (percentile(&samples, 0.5), mean)
}

/// `redis-benchmark`'s command for the `SET NX` rate, split into its words by
/// [`redis_benchmark`].
const SET_NX_PX: &str = "SET bench:nx:__rand_int__ v NX PX 30000";

/// The `requests per second` line of `redis-benchmark` against the local server (100,000
/// requests, quiet), with `args` added (each split into words at its spaces).
fn redis_benchmark(args: &[&str]) -> String {
    match std::process::Command::new("redis-benchmark")
        .args(["-h", "127.0.0.1", "-p", "6379", "-n", "100000", "-q"])
        .args(args.iter().flat_map(|a| a.split(' ')))
        .output()
    {
        Ok(out) => String::from_utf8_lossy(&out.stdout)
            .lines()
            .rev()
            .find(|l| l.contains("requests per second"))
            .map(|l| l.rsplit('\r').next().unwrap_or(l).trim().to_owned())
            .unwrap_or_else(|| "no result".into()),
        Err(e) => format!("redis-benchmark did not run: {e}"),
    }
}

/// Runs on tokio's multi-thread runtime, as services do; `LOCKATTR_BENCH_RUNTIME=current_thread`
/// runs it on one thread, which takes the cost of waking tasks across threads out of the
/// round trips.
fn main() {
    let current_thread = std::env::var("LOCKATTR_BENCH_RUNTIME").as_deref() == Ok("current_thread");
    let runtime = if current_thread {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
    }
    .expect("a tokio runtime");
    runtime.block_on(bench(if current_thread {
        "current_thread"
    } else {
        "multi_thread"
    }));
}

async fn bench(flavor: &str) {
    let url =
        std::env::var("LOCKATTR_BENCH_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    lockattr::init(&url)
        .await
        .unwrap_or_else(|e| panic!("cannot reach Redis: {e}"));
    let client = redis::Client::open(url.as_str()).unwrap();
    let mut conn = client.get_connection_manager().await.unwrap();
    let script = redis::Script::new(COMPARE_AND_DELETE);

    // 1. Uncontended: the three ways interleaved pair by pair, so that load from other
    // processes hits them alike; medians per pair.
    let locks = lockattr::connect(&url).await.unwrap();
    let (mut attr, mut api, mut raw) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..22_000u64 {
        let (a, b, c) = (
            attribute_pair().await,
            api_pair(&locks).await,
            raw_pair(&mut conn, &script, i).await,
        );
        if i >= 2_000 {
            attr.push(a);
            api.push(b);
            raw.push(c);
        }
    }
    let pairs = attr.len();

    // Server time per pair, from INFO commandstats: each way alone for 5000 pairs.
    let server_attr = server_usec(&mut conn, async {
        for _ in 0..5000 {
            uncontended().await.expect("uncontended lock taken");
        }
    })
    .await;
    let mut raw_conn = conn.clone();
    let server_raw = server_usec(&mut conn, async {
        for i in 0..5000 {
            raw_pair(&mut raw_conn, &script, i).await;
        }
    })
    .await;
    let (attr, attr_mean) = summary(attr);
    let (api, api_mean) = summary(api);
    let (raw, raw_mean) = summary(raw);

    // 2. Handoff: 8 tasks, one key.
    let rounds = 500;
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            tokio::spawn(async move {
                for _ in 0..rounds {
                    handoff().await.unwrap();
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let mut handoffs = std::mem::take(&mut HANDOFF.lock().unwrap().1);
    handoffs.sort();

    // 3. Throughput: 64 tasks, distinct keys, one backend.
    let done = std::sync::Arc::new(AtomicU64::new(0));
    let window = Duration::from_secs(3);
    let started = Instant::now();
    let tasks: Vec<_> = (0..64)
        .map(|id| {
            let done = done.clone();
            tokio::spawn(async move {
                while started.elapsed() < window {
                    distinct(id).await.expect("own key taken");
                    done.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let rate = done.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64();
    let set = redis_benchmark(&["-t", "set"]);
    let set_nx = redis_benchmark(&["-r", "100000", SET_NX_PX]);
    let set_nx_64 = redis_benchmark(&["-c", "64", "-r", "100000", SET_NX_PX]);

    println!("## Redis benchmark ({url}, tokio {flavor} runtime)");
    println!();
    println!("| measure | value |");
    println!("| --- | --- |");
    println!("| uncontended acquire+release through the attribute ({pairs} pairs): median / mean | {} / {} |", us(attr), us(attr_mean));
    println!(
        "| the same through `Locks::lock().try_acquire()` + `release()` | {} / {} |",
        us(api),
        us(api_mean)
    );
    println!(
        "| raw `SET NX PX` + compare-and-delete `EVALSHA`, one connection | {} / {} |",
        us(raw),
        us(raw_mean)
    );
    println!("| server time per pair (INFO commandstats), attribute | {server_attr} |");
    println!("| server time per pair, raw | {server_raw} |");
    println!(
        "| ratio attribute / raw: median / mean | {:.3} / {:.3} |",
        attr.as_secs_f64() / raw.as_secs_f64(),
        attr_mean.as_secs_f64() / raw_mean.as_secs_f64()
    );
    println!(
        "| handoff, 8 tasks on one key ({} handoffs): p50 | {} |",
        handoffs.len(),
        us(percentile(&handoffs, 0.5))
    );
    println!("| handoff p99 | {} |", us(percentile(&handoffs, 0.99)));
    println!("| handoff max | {} |", us(*handoffs.last().unwrap()));
    println!("| 64 tasks, distinct keys, one connection | {rate:.0} acquire+release pairs/s |");
    println!("| redis-benchmark -t set -n 100000 (50 clients) | {set} |");
    println!("| redis-benchmark SET NX PX (50 clients) | {set_nx} |");
    println!("| redis-benchmark SET NX PX (64 clients) | {set_nx_64} |");
}
