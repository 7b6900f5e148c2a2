//! `lockattr-holder URL KEY HOLD_MS`: a separate process that holds `proc:KEY` through the
//! attribute (ttl 2s, renewed) for HOLD_MS, for the tests that kill or stop a holder.
//!
//! It prints `acquired TOKEN` once the body runs, then `finished`, `lost` (the lease ended
//! while the body ran) or `error MESSAGE`.

use std::io::Write;
use std::time::Duration;

use lockattr::{distributed_lock, LockError};

#[distributed_lock(
    key = "proc:<key>",
    ttl = "2s",
    on_conflict = "wait",
    wait = "30s",
    renew = true
)]
async fn hold(key: &str, hold: Duration) -> Result<(), LockError> {
    let token = lockattr::current().map(|c| c.token()).unwrap_or_default();
    say(&format!("acquired {token}"));
    tokio::time::sleep(hold).await;
    say("finished");
    Ok(())
}

fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [url, key, hold_ms] = args.as_slice() else {
        eprintln!("usage: lockattr-holder URL KEY HOLD_MS");
        std::process::exit(2);
    };
    let hold_ms: u64 = hold_ms.parse().expect("HOLD_MS is a number");
    if let Err(e) = lockattr::init(url).await {
        say(&format!("error {e}"));
        return;
    }
    match hold(key, Duration::from_millis(hold_ms)).await {
        Ok(()) => {}
        Err(LockError::Lost { .. }) => say("lost"),
        Err(e) => say(&format!("error {e}")),
    }
    // Let a background release of the lost lease reach the backend before exiting.
    tokio::time::sleep(Duration::from_millis(200)).await;
}
