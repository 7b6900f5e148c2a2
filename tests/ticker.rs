//! `lockattr-ticker URL NAME TICKS OFFSET_MS RECORD`: one instance of a service with a
//! scheduled job, for the test that counts runs per period across processes. Once its
//! backend is set up it prints `ready` and reads the number of its first period, FIRST,
//! from standard input.
//!
//! It ticks at `period × 400 ms + OFFSET_MS`, give or take up to 75 ms that vary from one
//! period to the next (wall clock, like a scheduler), for the periods `FIRST .. FIRST +
//! TICKS`, and calls `job(NAME)` (`every = "400ms"`) at each tick. Each run appends
//! `PERIOD START_NS END_NS PID` to the file RECORD; a tick more than 60 ms late (an
//! overloaded machine) is dropped and recorded as `dropped PERIOD PID`. The job runs 40 ms,
//! except in periods whose number ends in 7, where it runs 600 ms: longer than a period.
//! After its last tick the process stays another second, so that its last run's hold
//! (kept in the process on session backends) lasts its period.

use std::io::Write;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use lockattr::distributed_lock;

/// The `every` of [`job`], in milliseconds.
const PERIOD_MS: u64 = 400;
/// A tick later than this is dropped.
const LATE_MS: i64 = 60;

#[distributed_lock(key = "tick:<name>", ttl = "5s", on_conflict = "skip", every = "400ms")]
async fn job(name: &str, record: &str) -> Result<(), lockattr::LockError> {
    let start = now();
    let period = lockattr::current()
        .and_then(|c| c.period())
        .expect("a scheduled run has a period");
    let runs = if period % 10 == 7 { 600 } else { 40 };
    tokio::time::sleep(Duration::from_millis(runs)).await;
    let line = format!(
        "{period} {} {} {}\n",
        start.as_nanos(),
        now().as_nanos(),
        std::process::id()
    );
    append(record, &line);
    Ok(())
}

/// Appends `line` to the file `record` in one write with O_APPEND: the lines of several
/// processes do not mix.
fn append(record: &str, line: &str) {
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(record)
        .expect("record file opens");
    file.write_all(line.as_bytes()).expect("record written");
}

fn now() -> Duration {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap()
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [url, name, ticks, offset_ms, record] = args.as_slice() else {
        eprintln!("usage: lockattr-ticker URL NAME TICKS OFFSET_MS RECORD");
        std::process::exit(2);
    };
    let parse = |s: &str| s.trim().parse::<i64>().expect("a number");
    let (ticks, offset) = (parse(ticks), parse(offset_ms));
    if let Err(e) = lockattr::init(url).await {
        eprintln!("lockattr-ticker: {e}");
        std::process::exit(1);
    }
    println!("ready");
    let mut first = String::new();
    std::io::stdin()
        .read_line(&mut first)
        .expect("FIRST on standard input");
    let first = parse(&first);
    for period in first..first + ticks {
        let jitter = (period * 31 + offset * 17).rem_euclid(7) * 25 - 75;
        let tick_ms = period * PERIOD_MS as i64 + offset + jitter;
        let wait = tick_ms - now().as_millis() as i64;
        if wait > 0 {
            tokio::time::sleep(Duration::from_millis(wait as u64)).await;
        } else if wait < -LATE_MS {
            // A tick this late would fall into another period than the one it stands for.
            append(
                record,
                &format!("dropped {period} {}\n", std::process::id()),
            );
            continue;
        }
        // The tick goes on in its own task, as a scheduler's would: a long run does not
        // delay this instance's next tick.
        let (name, record) = (name.clone(), record.clone());
        tokio::spawn(async move {
            if let Err(e) = job(&name, &record).await {
                eprintln!("lockattr-ticker: {e}");
                std::process::exit(1);
            }
        });
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
}
