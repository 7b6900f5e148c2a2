//! Three instances of a service race to flush each tenant's cache on every tick of a
//! schedule; `#[distributed_lock]` lets exactly one of them do each flush.
//!
//! ```sh
//! cargo run --example quickstart                              # the embedded SQLite file
//! LOCKATTR_URL=redis://127.0.0.1:6379 cargo run --example quickstart --features redis
//! ```

use std::time::Duration;

use lockattr::distributed_lock;

/// The backend used when `LOCKATTR_URL` is not set: `sqlite://lockattr.db`, a SQLite file
/// in the current folder (lockattr's default `sqlite` feature), which separate processes
/// on this host would share too.
const EMBEDDED: &str = lockattr::EMBEDDED_DEFAULT_URL;

const TENANTS: [&str; 3] = ["acme", "globex", "initech"];
const INSTANCES: usize = 3;

/// The scheduled job: at most one instance flushes a tenant at a time. Returns the
/// fencing token of the run, or `None` when another instance had the lock.
#[distributed_lock(key = "flush:<tenant>", ttl = "10s", on_conflict = "skip")]
async fn flush(tenant: &str) -> Option<u64> {
    // The flush itself: long enough that the other instances find the lock taken.
    tokio::time::sleep(Duration::from_millis(200)).await;
    lockattr::current().map(|lock| lock.token())
}

#[tokio::main]
async fn main() -> Result<(), lockattr::LockError> {
    let url = std::env::var(lockattr::URL_ENV).unwrap_or_else(|_| EMBEDDED.to_owned());
    let locks = lockattr::init(&url).await?;
    println!(
        "backend: {} (set {} to use another)",
        locks.backend_name(),
        lockattr::URL_ENV
    );

    for tick in 1..=2 {
        println!(
            "\ntick {tick}: {INSTANCES} instances start the flush of {} tenants",
            TENANTS.len()
        );
        let mut runs = Vec::new();
        for instance in 1..=INSTANCES {
            for (n, tenant) in TENANTS.into_iter().enumerate() {
                // The instances' schedulers fire a few milliseconds apart.
                let skew = Duration::from_millis(((instance * 7 + tick * 11 + n * 5) % 20) as u64);
                runs.push(tokio::spawn(async move {
                    tokio::time::sleep(skew).await;
                    (tenant, instance, flush(tenant).await)
                }));
            }
        }
        let mut results = Vec::new();
        for run in runs {
            results.push(run.await.expect("the flush task does not panic"));
        }
        results.sort();
        for tenant in TENANTS {
            for (_, instance, outcome) in results.iter().filter(|(t, _, _)| *t == tenant) {
                match outcome {
                    Some(token) => println!("  {tenant:<8} instance {instance}: flushed (fencing token {token})"),
                    None => println!("  {tenant:<8} instance {instance}: skipped, another instance holds flush:{tenant}"),
                }
            }
            let flushed = results
                .iter()
                .filter(|(t, _, o)| *t == tenant && o.is_some())
                .count();
            assert_eq!(
                flushed, 1,
                "{tenant} was flushed {flushed} times in one tick"
            );
        }
    }
    println!("\nevery tenant was flushed exactly once per tick");
    Ok(())
}
