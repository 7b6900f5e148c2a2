//! Scheduled locks (`every`) across processes: three instances that tick at different
//! moments run a job exactly once per period.

use std::collections::BTreeMap;
use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

use super::{unique, Profile};

/// The `every` of `lockattr-ticker`'s job, in milliseconds.
const PERIOD_MS: i64 = 400;
/// How many ticks each instance makes.
const TICKS: i64 = 32;
/// The instances' ticks, relative to the period starts, as schedulers started at different
/// moments or clocks that disagree; `lockattr-ticker` adds up to ±75 ms to each tick, so
/// that a different instance ticks first from one period to the next.
const OFFSETS_MS: [i64; 3] = [-40, 0, 40];

/// One run as `lockattr-ticker` recorded it.
#[derive(Debug, Clone, Copy)]
struct Run {
    period: i64,
    start: u128,
    end: u128,
    pid: u32,
}

fn parse(line: &str) -> Run {
    let f: Vec<&str> = line.split(' ').collect();
    Run {
        period: f[0].parse().unwrap(),
        start: f[1].parse().unwrap(),
        end: f[2].parse().unwrap(),
        pid: f[3].parse().unwrap(),
    }
}

/// Three processes tick 32 times each with different offsets; the job runs exactly once
/// in each period, by whichever instance ticked first, and no two runs overlap. A run
/// that outlasts its period (those of periods ending in 7) makes the next period's ticks
/// skip while it runs: such a period may have no run.
pub async fn once_per_period_across_processes(p: &Profile) {
    let name = unique("ticks");
    let record = super::scratch_dir("ticks").join(format!("{name}.txt"));
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    // Two seconds for the processes to start and connect.
    let first = now_ms / PERIOD_MS + 2_000 / PERIOD_MS;
    let children: Vec<_> = OFFSETS_MS
        .iter()
        .map(|offset| {
            Command::new(env!("CARGO_BIN_EXE_lockattr-ticker"))
                .args([
                    &p.url,
                    &name,
                    &first.to_string(),
                    &TICKS.to_string(),
                    &offset.to_string(),
                    &record.display().to_string(),
                ])
                .spawn()
                .expect("lockattr-ticker starts")
        })
        .collect();
    let statuses = tokio::task::spawn_blocking(move || {
        children
            .into_iter()
            .map(|mut c| c.wait().expect("lockattr-ticker ends"))
            .collect::<Vec<_>>()
    })
    .await
    .unwrap();
    for status in statuses {
        assert!(status.success(), "a ticker failed: {status}");
    }

    let text = std::fs::read_to_string(&record).expect("the tickers recorded runs");
    let mut runs: Vec<Run> = text.lines().map(parse).collect();
    runs.sort_by_key(|r| r.start);
    let mut per_period: BTreeMap<i64, Vec<Run>> = BTreeMap::new();
    for run in &runs {
        per_period.entry(run.period).or_default().push(*run);
    }
    for (period, there) in &per_period {
        assert_eq!(
            there.len(),
            1,
            "period {period} ran {} times: {there:?}",
            there.len()
        );
    }
    for pair in runs.windows(2) {
        assert!(
            pair[1].start >= pair[0].end,
            "two runs overlapped: {pair:?}"
        );
    }
    for period in first..first + TICKS {
        let after_long_run = (period - 1) % 10 == 7;
        assert!(
            per_period.contains_key(&period) || after_long_run,
            "period {period} had no run: {:?}",
            per_period.keys().collect::<Vec<_>>()
        );
    }
    // Whichever instance ticks first in a period runs it: not always the same one.
    let mut pids: Vec<u32> = runs.iter().map(|r| r.pid).collect();
    pids.sort_unstable();
    pids.dedup();
    assert!(pids.len() >= 2, "one instance ran every period: {runs:?}");
    let _ = std::fs::remove_file(&record);
}
