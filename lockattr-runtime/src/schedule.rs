//! `every`: a job that runs once per period across every instance of a service.
//!
//! # How a period is kept
//!
//! A scheduled call takes its key as any other, and on release keeps it taken until the
//! end of the window of the period it was taken in (as `min_hold` keeps it for a fixed
//! time): half a period after the period's start. The other
//! instances' ticks of the same period find the key taken and skip; the first tick of the
//! next period finds it free. A run that outlasts its period holds the key until it ends,
//! so runs never overlap; the ticks it covers are skipped.
//!
//! Periods are the multiples of `every` since the Unix epoch (UTC), shifted by `at`, and a
//! call belongs to the period whose start is *nearest* to it: with `every = "1m"`, a tick
//! at 12:00:00.3 and one at 11:59:59.8 both belong to the 12:00 period, which ends at
//! 12:00:30. So instances whose ticks are up to half a period apart (clock skew, start-up
//! offsets, scheduler jitter) still count one tick, and no tick is lost at a period edge.
//!
//! The time a call is placed by, once its lock is granted, is the **backend's clock**
//! where it has one (Redis `TIME`, the SQL server's clock), so that instances whose own
//! clocks disagree still agree on the period: each handle reads the backend's clock once a
//! minute (one extra statement then; on the session backends, on a connection opened for
//! it) and carries the reading forward with this machine's monotonic clock. The embedded
//! backends (`sqlite://`, `memory://`) and Memcached (whose clock counts whole seconds) use
//! this machine's clock.

use std::time::{Duration, Instant, SystemTime};

use crate::backend::{Backend, BackendResult, ClockReading};

/// When a scheduled lock runs: once per `every`, in periods that start `at` after each
/// multiple of `every` since the Unix epoch (UTC). Written as `every = "…"` (and
/// `at = "…"`) in the attribute, or given to [`LockBuilder::every`](crate::LockBuilder::every).
///
/// ```
/// use std::time::Duration;
/// use lockattr::Schedule;
///
/// // Every hour, on the half hour (a cron `30 * * * *`).
/// let hourly = Schedule::every(Duration::from_secs(3600)).at(Duration::from_secs(1800));
/// assert_eq!(hourly.period(), Duration::from_secs(3600));
/// assert_eq!(hourly.offset(), Duration::from_secs(1800));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Schedule {
    every: Duration,
    at: Duration,
}

impl Schedule {
    /// Once per `every`, in periods aligned on the multiples of `every` since the Unix
    /// epoch: whole minutes for one minute, 00:00 UTC for one day.
    pub const fn every(every: Duration) -> Self {
        Schedule {
            every,
            at: Duration::ZERO,
        }
    }

    /// The periods start `at` after the multiples of `every` instead: for a schedule that
    /// fires off those multiples (hourly at :30 is `every = 1h, at = 30m`). Must be shorter
    /// than the period.
    pub const fn at(self, at: Duration) -> Self {
        Schedule { at, ..self }
    }

    /// The period (`every`).
    pub const fn period(&self) -> Duration {
        self.every
    }

    /// The offset of the periods (`at`).
    pub const fn offset(&self) -> Duration {
        self.at
    }

    /// The period a call at `now` (time since the Unix epoch) belongs to, as its number,
    /// and the time left until that period's window ends: half a period after its start.
    pub(crate) fn place(&self, now: Duration) -> (u128, Duration) {
        let every = self.every.as_nanos().max(1);
        let at = self.at.as_nanos() % every;
        let now = now.as_nanos();
        // The nearest start: round((now - at) / every); 0 for a time before the first.
        let index = (now + every / 2).saturating_sub(at) / every;
        let window_end = index * every + at + every / 2;
        let left = window_end.saturating_sub(now);
        (index, nanos(left))
    }
}

fn nanos(n: u128) -> Duration {
    let secs = (n / 1_000_000_000) as u64;
    Duration::new(secs, (n % 1_000_000_000) as u32)
}

/// How long a reading of the backend's clock is used before it is read again.
const REMEASURE: Duration = Duration::from_secs(60);
/// After a failed reading, how long callers use the previous one (or fail at once, when
/// there is none) instead of asking the backend again.
const AFTER_FAILURE: Duration = Duration::from_secs(1);

/// What a scheduled call tells the time by.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Anchor {
    /// This machine's clock (the backend has none of its own, or is this machine).
    Local,
    /// A reading of the backend's clock, carried forward by this machine's monotonic
    /// clock: a step of this machine's wall clock does not move it.
    Server(ClockReading),
}

impl Anchor {
    /// The time now, since the Unix epoch.
    pub(crate) fn now(&self) -> BackendResult<Duration> {
        match self {
            Anchor::Local => SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_err(|_| "this machine's clock is set before 1970".into()),
            Anchor::Server(reading) => Ok(reading.time + reading.at.elapsed()),
        }
    }
}

/// The latest reading of one backend's clock, shared by the calls on one handle.
#[derive(Debug, Default)]
pub(crate) struct ServerClock {
    state: tokio::sync::Mutex<ClockState>,
}

#[derive(Debug, Default)]
struct ClockState {
    /// The latest reading, and when it was taken.
    anchor: Option<(Anchor, Instant)>,
    /// When the latest attempt to read the clock failed.
    failed: Option<Instant>,
}

impl ServerClock {
    /// What to tell the time by: the latest reading of the backend's clock, read again
    /// once it is a minute old. One caller reads it while the others wait for its answer;
    /// when a reading fails, the previous one (if any) goes on serving.
    pub(crate) async fn anchor(&self, backend: &dyn Backend) -> BackendResult<Anchor> {
        let mut state = self.state.lock().await;
        if let Some((anchor, taken)) = state.anchor {
            let failed_lately = state.failed.is_some_and(|f| f.elapsed() < AFTER_FAILURE);
            if taken.elapsed() < REMEASURE || failed_lately {
                return Ok(anchor);
            }
        } else if let Some(failed) = state.failed.filter(|f| f.elapsed() < AFTER_FAILURE) {
            let ago = failed.elapsed();
            return Err(format!("the backend's clock could not be read {ago:?} ago").into());
        }
        match backend.clock().await {
            Ok(reading) => {
                let anchor = reading.map_or(Anchor::Local, Anchor::Server);
                state.anchor = Some((anchor, Instant::now()));
                state.failed = None;
                Ok(anchor)
            }
            Err(e) => {
                state.failed = Some(Instant::now());
                match state.anchor {
                    Some((anchor, _)) => {
                        tracing::debug!(error = %e, "reading the backend's clock failed; the previous reading serves");
                        Ok(anchor)
                    }
                    None => Err(e),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;

    fn place(every_s: u64, at_s: u64, now_ns: u64) -> (u128, Duration) {
        Schedule::every(Duration::from_secs(every_s))
            .at(Duration::from_secs(at_s))
            .place(Duration::from_nanos(now_ns))
    }

    #[test]
    fn a_call_belongs_to_the_nearest_period_start() {
        // Every minute: 12:00:00.3 and 11:59:59.8 are both the 12:00 period (number 720
        // since midnight), whose window ends at 12:00:30.
        let noon = 720 * 60 * S;
        assert_eq!(
            place(60, 0, noon + 300_000_000),
            (720, Duration::from_millis(29_700))
        );
        assert_eq!(
            place(60, 0, noon - 200_000_000),
            (720, Duration::from_millis(30_200))
        );
        // Half a period later the next window starts.
        assert_eq!(place(60, 0, noon + 30 * S).0, 721);
        assert_eq!(place(60, 0, noon + 30 * S - 1).0, 720);
    }

    #[test]
    fn an_offset_moves_the_periods() {
        // Hourly at :30: 12:29:58 and 12:30:03 are one period, ending at 13:00.
        let half_past = (12 * 3600 + 1800) * S;
        let (a, left_a) = place(3600, 1800, half_past - 2 * S);
        let (b, left_b) = place(3600, 1800, half_past + 3 * S);
        assert_eq!(a, b);
        assert_eq!(left_a, Duration::from_secs(1802));
        assert_eq!(left_b, Duration::from_secs(1797));
        // Without the offset the two would straddle a window edge.
        assert_ne!(
            place(3600, 0, half_past - 2 * S).0,
            place(3600, 0, half_past + 3 * S).0
        );
    }

    #[test]
    fn the_first_period_and_odd_periods() {
        assert_eq!(place(10, 0, 0), (0, Duration::from_secs(5)));
        assert_eq!(place(10, 3, 0), (0, Duration::from_secs(8)));
        let (n, left) =
            Schedule::every(Duration::from_millis(700)).place(Duration::from_millis(7 * 700 + 349));
        assert_eq!((n, left), (7, Duration::from_millis(1)));
        // The time left is never more than a period and never zero inside a window.
        for ms in (0..5_000).step_by(7) {
            let (_, left) =
                Schedule::every(Duration::from_millis(300)).place(Duration::from_millis(ms));
            assert!(
                left > Duration::ZERO && left <= Duration::from_millis(300),
                "{ms}: {left:?}"
            );
        }
    }
}
