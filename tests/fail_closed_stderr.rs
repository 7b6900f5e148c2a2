//! A failure that the return type cannot carry (`()`, `Option<T>`) is never silent: with
//! no tracing subscriber installed, the first one at each lock site is also written to
//! stderr; with a subscriber, it goes to the subscriber only.
//!
//! The checks run this test binary again as a child process (a process without a
//! subscriber, whose stderr can be read), selected by an environment variable.

use std::process::Command;

use lockattr::distributed_lock;

/// Set in the child process: which scenario it runs.
const CHILD: &str = "LOCKATTR_STDERR_CHILD";

#[distributed_lock(
    key = "report:<day>",
    ttl = "1s",
    on_conflict = "skip",
    backend = "never-configured"
)]
async fn report(day: u32) {
    unreachable!("the body of report({day}) ran without its lock");
}

#[distributed_lock(
    key = "summary",
    ttl = "1s",
    on_conflict = "retry",
    retries = 1,
    backoff = "10ms",
    backend = "never-configured"
)]
async fn summary() -> Option<u32> {
    unreachable!("the body of summary() ran without its lock");
}

fn call_each_site_three_times() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        for day in 0..3 {
            report(day).await;
            assert_eq!(summary().await, None);
        }
    });
}

/// The child's side: runs only when [`CHILD`] is set.
#[test]
fn child() {
    match std::env::var(CHILD).as_deref() {
        Ok("plain") => call_each_site_three_times(),
        Ok("subscriber") => {
            let subscriber = tracing_subscriber::fmt()
                .with_writer(std::io::sink)
                .finish();
            tracing::subscriber::set_global_default(subscriber).unwrap();
            call_each_site_three_times();
        }
        _ => {}
    }
}

/// Runs [`child`] in a new process with `scenario`; its stderr.
fn child_stderr(scenario: &str) -> String {
    let out = Command::new(std::env::current_exe().unwrap())
        .args(["child", "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD, scenario)
        .output()
        .expect("the test binary runs again");
    assert!(
        out.status.success(),
        "child failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn without_a_subscriber_the_first_failure_per_site_goes_to_stderr() {
    let stderr = child_stderr("plain");
    let lines: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("lockattr:"))
        .collect();
    assert_eq!(lines.len(), 2, "one line per site, once: {stderr}");
    let report = lines
        .iter()
        .find(|l| l.contains("`report:<day>`"))
        .expect(&stderr);
    let summary = lines
        .iter()
        .find(|l| l.contains("`summary`"))
        .expect(&stderr);
    for line in [report, summary] {
        assert!(line.contains("did not run"), "{line}");
        assert!(
            line.contains("never-configured"),
            "names the backend: {line}"
        );
    }
}

#[test]
fn with_a_subscriber_nothing_goes_to_stderr() {
    let stderr = child_stderr("subscriber");
    assert!(
        !stderr.lines().any(|l| l.starts_with("lockattr:")),
        "{stderr}"
    );
}
