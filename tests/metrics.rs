//! The metrics of `#[distributed_lock]` (feature `metrics`), on `memory://`: each outcome
//! moves exactly its counters and histograms, labelled `function` and `backend` only,
//! read from a real recorder (`metrics-util`'s `DebuggingRecorder`, one per check, local
//! to the check's thread).

use std::collections::BTreeMap;
use std::future::Future;

use metrics_util::debugging::{DebugValue, DebuggingRecorder};

mod outcomes;
mod suite;
use outcomes::Call;
use suite::block_on;

/// Runs `scenario` with a fresh recorder and asserts what it recorded: each metric's name
/// with its value (a counter's count, a histogram's number of samples), every one
/// labelled with the call's `function` and `backend` and nothing else.
fn assert_recorded(scenario: impl Future<Output = Call>, expected: &[(&str, u64)]) {
    outcomes::setup();
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let call = metrics::with_local_recorder(&recorder, || block_on(scenario));
    let mut seen = BTreeMap::new();
    for (key, _, _, value) in snapshotter.snapshot().into_vec() {
        let key = key.key();
        let labels: Vec<(&str, &str)> = key.labels().map(|l| (l.key(), l.value())).collect();
        let want = [
            ("function", call.function.as_str()),
            ("backend", call.backend),
        ];
        assert_eq!(labels, want, "{}", key.name());
        let n = match value {
            DebugValue::Counter(n) => n,
            DebugValue::Histogram(samples) => samples.len() as u64,
            DebugValue::Gauge(_) => panic!("no gauges expected: {}", key.name()),
        };
        if n > 0 {
            seen.insert(key.name().to_owned(), n);
        }
    }
    let expected: BTreeMap<String, u64> = expected
        .iter()
        .map(|(k, v)| ((*k).to_owned(), *v))
        .collect();
    assert_eq!(seen, expected);
}

/// What one call that takes the lock records.
const TAKEN: [(&str, u64); 3] = [
    ("lockattr_acquired_total", 1),
    ("lockattr_hold_seconds", 1),
    ("lockattr_wait_seconds", 1),
];

#[test]
fn acquired_and_held() {
    assert_recorded(outcomes::ran(), &TAKEN);
}

#[test]
fn skipped() {
    assert_recorded(outcomes::skipped(), &[("lockattr_skipped_total", 1)]);
}

#[test]
fn retries_ran_out() {
    assert_recorded(
        outcomes::retries_ran_out(),
        &[("lockattr_skipped_total", 1)],
    );
}

#[test]
fn conflict() {
    assert_recorded(outcomes::conflict(), &[("lockattr_conflicts_total", 1)]);
}

#[test]
fn timeout() {
    assert_recorded(outcomes::timeout(), &[("lockattr_timeouts_total", 1)]);
}

#[test]
fn lost() {
    let mut expected = TAKEN.to_vec();
    expected.push(("lockattr_lost_total", 1));
    assert_recorded(outcomes::lost(), &expected);
}

#[test]
fn fail_closed() {
    assert_recorded(outcomes::fail_closed(), &[("lockattr_errors_total", 1)]);
}
