//! A scheduled job on several instances of a service: the report runs once per period,
//! on whichever instance ticks first, even when the instances' schedulers fire at
//! different moments and a run outlasts its period.
//!
//! ```sh
//! cargo run --example cron --features cron                       # three instances, 20 s
//! LOCKATTR_URL=redis://127.0.0.1:6379 cargo run --example cron --features cron,redis
//! cargo run --example cron --features cron -- instance 1 60      # one instance for 60 s
//! ```
//!
//! Without arguments the program starts three copies of itself as separate processes,
//! 130 ms apart (as services started one after another), lets them tick for 20 seconds,
//! and checks from what they print that every period ran exactly once. Run
//! `instance N SECONDS` on several machines against a shared backend to see the same.

use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::time::Duration;

use lockattr::{distributed_lock, LockError};
use tokio_cron_scheduler::{Job, JobScheduler};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The scheduled job. `every = "2s"` matches the schedule below (`*/2` seconds): the key
/// stays taken until the end of each 2-second period, so the other instances' ticks of
/// that period skip. `ttl` bounds a run that crashes; `renew` keeps a long run's lock.
#[distributed_lock(
    key = "report",
    ttl = "10s",
    on_conflict = "skip",
    every = "2s",
    renew = true
)]
async fn report(instance: u32) -> Result<Option<u64>, LockError> {
    let lock = lockattr::current().expect("the body runs under the lock");
    let period = lock.period().expect("a scheduled run has a period");
    // Every fifth report takes longer than its period: the ticks it covers are skipped,
    // never run beside it.
    let work = if period.is_multiple_of(5) { 3_000 } else { 300 };
    println!(
        "instance {instance}: ran period {period} (fencing token {}), working {work} ms",
        lock.token()
    );
    tokio::time::sleep(Duration::from_millis(work)).await;
    Ok(Some(period))
}

/// One instance: a cron scheduler that calls `report` at every even second, for
/// `seconds`.
async fn instance(n: u32, seconds: u64) -> Result<(), BoxError> {
    let url = std::env::var(lockattr::URL_ENV)
        .unwrap_or_else(|_| lockattr::EMBEDDED_DEFAULT_URL.to_owned());
    lockattr::init(&url).await?;
    let mut scheduler = JobScheduler::new().await?;
    scheduler
        .add(Job::new_async("*/2 * * * * *", move |_id, _scheduler| {
            Box::pin(async move {
                match report(n).await {
                    Ok(Some(_)) => {}
                    Ok(None) => println!("instance {n}: skipped a tick, the period had its run"),
                    Err(e) => eprintln!("instance {n}: {e}"),
                }
            })
        })?)
        .await?;
    scheduler.start().await?;
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    scheduler.shutdown().await?;
    // A run still going finishes before the process exits.
    tokio::time::sleep(Duration::from_secs(3)).await;
    Ok(())
}

/// Three instances as separate processes; checks that each period ran once.
async fn demo() -> Result<(), BoxError> {
    let exe = std::env::current_exe()?;
    let mut children = Vec::new();
    for n in 1..=3u32 {
        children.push(
            Command::new(&exe)
                .args(["instance", &n.to_string(), "20"])
                .stdout(Stdio::piped())
                .spawn()?,
        );
        tokio::time::sleep(Duration::from_millis(130)).await;
    }
    let outputs = tokio::task::spawn_blocking(move || {
        children
            .into_iter()
            .map(|c| c.wait_with_output())
            .collect::<Result<Vec<_>, _>>()
    })
    .await??;
    let mut runs: BTreeMap<u64, Vec<String>> = BTreeMap::new();
    for output in &outputs {
        let text = String::from_utf8_lossy(&output.stdout);
        print!("{text}");
        for line in text.lines() {
            if let Some((who, rest)) = line.split_once(": ran period ") {
                let period = rest.split(' ').next().unwrap_or_default().parse()?;
                runs.entry(period).or_default().push(who.to_owned());
            }
        }
    }
    println!("\nperiod  ran on");
    for (period, who) in &runs {
        println!("{period}  {}", who.join(", "));
    }
    let twice: Vec<_> = runs.iter().filter(|(_, who)| who.len() > 1).collect();
    if !twice.is_empty() {
        return Err(format!("periods that ran more than once: {twice:?}").into());
    }
    println!("{} periods, each run exactly once", runs.len());
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.as_slice() {
        [] => demo().await,
        [cmd, n, seconds] if cmd == "instance" => instance(n.parse()?, seconds.parse()?).await,
        _ => Err("usage: cron [instance N SECONDS]".into()),
    }
}
