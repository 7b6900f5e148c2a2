//! Scheduled locks (`every`) across processes: three instances that tick at different
//! moments run a job exactly once per period.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
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
    let mut children: Vec<_> = OFFSETS_MS
        .iter()
        .map(|offset| {
            Command::new(env!("CARGO_BIN_EXE_lockattr-ticker"))
                .args([
                    &p.url,
                    &name,
                    &TICKS.to_string(),
                    &offset.to_string(),
                    &record.display().to_string(),
                ])
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .spawn()
                .expect("lockattr-ticker starts")
        })
        .collect();
    let (first, statuses) = tokio::task::spawn_blocking(move || {
        // Every instance is set up: the first period starts a little later.
        for child in &mut children {
            let mut line = String::new();
            BufReader::new(child.stdout.as_mut().unwrap())
                .read_line(&mut line)
                .unwrap();
            assert_eq!(line.trim(), "ready", "a ticker did not start");
        }
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64;
        let first = now_ms / PERIOD_MS + 2;
        for child in &mut children {
            writeln!(child.stdin.take().unwrap(), "{first}").unwrap();
        }
        let statuses: Vec<_> = children
            .into_iter()
            .map(|mut c| c.wait().expect("lockattr-ticker ends"))
            .collect();
        (first, statuses)
    })
    .await
    .unwrap();
    for status in statuses {
        assert!(status.success(), "a ticker failed: {status}");
    }

    let text = std::fs::read_to_string(&record).expect("the tickers recorded runs");
    let (dropped, runs): (Vec<&str>, Vec<&str>) =
        text.lines().partition(|l| l.starts_with("dropped "));
    let mut runs: Vec<Run> = runs.into_iter().map(parse).collect();
    // Periods whose ticks were all dropped (an overloaded machine) cannot be judged.
    let mut dropped_ticks: BTreeMap<i64, usize> = BTreeMap::new();
    for line in dropped {
        let period: i64 = line.split(' ').nth(1).unwrap().parse().unwrap();
        *dropped_ticks.entry(period).or_default() += 1;
    }
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
    for run in &runs {
        // Each run is labelled with the period it started in (its window is half a period
        // either side of the period's start), give or take the start of its body.
        let start_ms = (run.start / 1_000_000) as i64;
        let from_start = start_ms - run.period * PERIOD_MS;
        assert!(
            (-PERIOD_MS / 2..PERIOD_MS / 2 + 100).contains(&from_start),
            "a run labelled with period {} started {from_start} ms from its start: {run:?}",
            run.period
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
        let all_dropped = dropped_ticks.get(&period) == Some(&OFFSETS_MS.len());
        assert!(
            per_period.contains_key(&period) || after_long_run || all_dropped,
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
