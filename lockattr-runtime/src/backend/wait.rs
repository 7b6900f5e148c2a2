//! The one waiting layer every backend uses: jittered exponential backoff, the wait loop
//! that tries, listens and sleeps until a deadline, and the detached clean-up that a
//! dropped waiter or guard leaves behind.
//!
//! A backend supplies what differs (how to try, how it is woken, how long to sleep at
//! most); the shape of the loop (listen *before* trying, so a release between the try and
//! the sleep still wakes the waiter; back off when nothing wakes it; start over at the
//! shortest pause when something does; never sleep past the deadline) lives only here.

use std::future::Future;
use std::time::{Duration, Instant};

/// The shortest and longest pause between two polls of one waiter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Poll {
    /// The first pause, and the one after every wake-up.
    pub min: Duration,
    /// The pause stops doubling here.
    pub max: Duration,
}

impl Poll {
    /// Polls 5 ms to 250 ms apart: for backends that are also woken by notifications.
    pub(crate) const NOTIFIED: Poll = Poll::new(5, 250);

    /// A pause from `min_ms` to `max_ms` milliseconds.
    pub(crate) const fn new(min_ms: u64, max_ms: u64) -> Self {
        Poll {
            min: Duration::from_millis(min_ms),
            max: Duration::from_millis(max_ms),
        }
    }
}

/// `base` scaled by a random factor in [0.5, 1.5): spreads retries and polls apart so that
/// contenders do not move in lock step.
pub(crate) fn jitter(base: Duration) -> Duration {
    base.mul_f64(0.5 + fastrand::f64())
}

/// A duration in whole milliseconds, rounded up, at least 1: what a server that counts in
/// milliseconds is sent, so that it never frees a key before the caller's own deadline.
#[cfg_attr(
    not(any(
        feature = "redis",
        feature = "sqlite",
        feature = "postgres",
        feature = "mysql"
    )),
    allow(dead_code)
)]
pub(crate) fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_nanos().div_ceil(1_000_000))
        .unwrap_or(u64::MAX)
        .max(1)
}

/// One waiter's pauses between tries, up to its deadline. A backend's wait loop is
///
/// ```text
/// let mut waiting = Waiting::new(deadline, POLL);
/// loop {
///     let woken = listen();                        // before the try: a release between
///     if let Some(granted) = try_once().await? {   // the try and the pause still wakes us
///         return Ok(Some(granted));
///     }
///     if !waiting.pause(woken, None).await {       // the deadline has passed
///         return Ok(None);
///     }
/// }
/// ```
///
/// and everything else about waiting (jitter, doubling, starting over after a wake-up,
/// never sleeping past the deadline) is here.
#[derive(Debug)]
pub(crate) struct Waiting {
    deadline: Instant,
    poll: Poll,
    pause: Duration,
}

impl Waiting {
    /// A waiter that gives up at `deadline`.
    pub(crate) fn new(deadline: Instant, poll: Poll) -> Self {
        Waiting {
            deadline,
            poll,
            pause: poll.min,
        }
    }

    /// After a refused try: sleeps a jittered pause (at most `retry_within`, for instance
    /// the remaining lease whose expiry frees the key without a message) or until `woken`
    /// completes, whichever is first. Returns `false`, at once, if the deadline has passed.
    ///
    /// `woken` must be registered before the try it follows (a `Notify` future that is
    /// enabled, a permit, a watch channel's change), so that a release that lands between
    /// the try and this pause still ends it. A wake-up starts the pauses over at the
    /// shortest; a pause that runs out doubles the next one, up to the longest.
    pub(crate) async fn pause(
        &mut self,
        woken: impl Future<Output = ()>,
        retry_within: Option<Duration>,
    ) -> bool {
        let now = Instant::now();
        if now >= self.deadline {
            return false;
        }
        let mut sleep = jitter(self.pause).min(self.deadline - now);
        if let Some(within) = retry_within {
            sleep = sleep.min(within);
        }
        tokio::select! {
            _ = woken => self.pause = self.poll.min,
            _ = tokio::time::sleep(sleep) => self.pause = (self.pause * 2).min(self.poll.max),
        }
        true
    }
}

/// Runs `cleanup` in the background on the current tokio runtime: what a guard or waiter
/// dropped mid-flight leaves to do (give a lease back, leave a queue). Outside a runtime
/// nothing can run it; `what` (naming the key and backend) is logged instead, and the
/// server's own expiry cleans up. Returns whether it was spawned.
pub(crate) fn spawn_detached<F>(what: std::fmt::Arguments<'_>, cleanup: F) -> bool
where
    F: Future<Output = ()> + Send + 'static,
{
    match tokio::runtime::Handle::try_current() {
        Ok(runtime) => {
            runtime.spawn(cleanup);
            true
        }
        Err(_) => {
            tracing::warn!(
                "{what} dropped outside a tokio runtime: nothing can clean up after it now; \
                 the backend's expiry does"
            );
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use tokio::sync::Notify;

    use super::*;

    #[test]
    fn millis_round_up_and_never_reach_zero() {
        assert_eq!(millis(Duration::from_micros(1500)), 2);
        assert_eq!(millis(Duration::ZERO), 1);
        assert_eq!(millis(Duration::from_secs(3)), 3000);
        assert_eq!(millis(Duration::MAX), u64::MAX);
    }

    #[test]
    fn jitter_stays_within_half_and_one_and_a_half() {
        for _ in 0..1000 {
            let j = jitter(Duration::from_millis(100));
            assert!(j >= Duration::from_millis(50) && j < Duration::from_millis(150));
        }
    }

    // Real time (the deadlines are `std::time::Instant`s), with bounds far from the
    // values they check, so that a busy machine cannot fail them.

    #[tokio::test]
    async fn pauses_double_up_to_the_longest_and_end_at_the_deadline() {
        let started = Instant::now();
        let mut waiting = Waiting::new(started + Duration::from_millis(300), Poll::new(5, 50));
        let mut pauses = 0;
        while waiting.pause(std::future::pending(), None).await {
            pauses += 1;
            assert!(waiting.pause <= Duration::from_millis(50));
        }
        assert!(started.elapsed() >= Duration::from_millis(300));
        // 5, 10, 20, 40, then 50 ms (each ±50%): a handful of pauses, not a busy loop.
        assert!((3..100).contains(&pauses), "{pauses} pauses");
        assert_eq!(waiting.pause, Duration::from_millis(50));
        let last = Instant::now();
        assert!(!waiting.pause(std::future::pending(), None).await);
        assert!(
            last.elapsed() < Duration::from_secs(1),
            "a pause after the deadline returns at once"
        );
    }

    #[tokio::test]
    async fn a_wake_up_ends_the_pause_and_starts_over_at_the_shortest() {
        let notify = Arc::new(Notify::new());
        let started = Instant::now();
        let poll = Poll::new(60_000, 600_000);
        let mut waiting = Waiting::new(started + Duration::from_secs(600), poll);
        waiting.pause = Duration::from_secs(300);
        let notifier = notify.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(20)).await;
            notifier.notify_one();
        });
        assert!(waiting.pause(notify.notified(), None).await);
        assert!(started.elapsed() < Duration::from_secs(30));
        assert_eq!(waiting.pause, poll.min);
    }

    #[tokio::test]
    async fn retry_within_shortens_the_pause() {
        let started = Instant::now();
        let poll = Poll::new(60_000, 60_000);
        let mut waiting = Waiting::new(started + Duration::from_secs(600), poll);
        let within = Some(Duration::from_millis(20));
        assert!(waiting.pause(std::future::pending(), within).await);
        let took = started.elapsed();
        assert!(
            took >= Duration::from_millis(20) && took < Duration::from_secs(20),
            "{took:?}"
        );
    }

    #[tokio::test]
    async fn detached_cleanup_runs_inside_a_runtime_only() {
        let (tx, rx) = tokio::sync::oneshot::channel();
        assert!(spawn_detached(format_args!("a test guard"), async move {
            let _ = tx.send(());
        }));
        rx.await.unwrap();
        let outside = std::thread::spawn(|| spawn_detached(format_args!("a test guard"), async {}))
            .join()
            .unwrap();
        assert!(!outside);
    }
}
