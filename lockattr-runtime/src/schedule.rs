//! `every`: a job that runs once per period across every instance of a service.
//!
//! # How a period is kept
//!
//! A scheduled call takes its key as any other, and on release keeps it taken until the
//! end of the period it was taken in (as `min_hold` keeps it for a fixed time). The other
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
//! The time a call is placed by is the **backend's clock** where it has one (Redis `TIME`,
//! the SQL server's clock), so that instances whose own clocks disagree still agree on the
//! period: each handle measures the offset between its clock and the backend's once a
//! minute (one extra round trip then) and corrects its own clock by it. The embedded
//! backends (`sqlite://`, `memory://`) use this machine's clock, which all their users
//! share.

use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use crate::backend::{Backend, BackendResult};

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
        // The nearest start: round((now - at) / every), kept non-negative.
        let index = (now + every + every / 2 - at) / every - 1;
        let window_end = index * every + at + every / 2;
        let left = window_end.saturating_sub(now);
        (index, nanos(left))
    }
}

fn nanos(n: u128) -> Duration {
    let secs = (n / 1_000_000_000) as u64;
    Duration::new(secs, (n % 1_000_000_000) as u32)
}

/// How long a measured offset between this machine's clock and the backend's is used
/// before it is measured again.
const REMEASURE: Duration = Duration::from_secs(60);

/// The offset between this machine's clock and the backend's, measured at most once per
/// [`REMEASURE`].
#[derive(Debug, Default)]
pub(crate) struct ServerClock {
    /// When the offset was measured, and the backend's time minus this machine's (ns).
    measured: Mutex<Option<(Instant, i128)>>,
}

impl ServerClock {
    /// The time now by the backend's clock, as time since the Unix epoch.
    pub(crate) async fn now(&self, backend: &dyn Backend) -> BackendResult<Duration> {
        let cached = *self.measured.lock().unwrap_or_else(|e| e.into_inner());
        let offset = match cached {
            Some((at, offset)) if at.elapsed() < REMEASURE => offset,
            _ => {
                let sent = Instant::now();
                let local = since_epoch()?;
                let offset = match backend.clock().await? {
                    // The answer was read half-way through the round trip.
                    Some(server) => {
                        server.as_nanos() as i128 - (local + sent.elapsed() / 2).as_nanos() as i128
                    }
                    None => 0,
                };
                *self.measured.lock().unwrap_or_else(|e| e.into_inner()) = Some((sent, offset));
                offset
            }
        };
        let now = since_epoch()?.as_nanos() as i128 + offset;
        Ok(nanos(now.max(0) as u128))
    }
}

/// This machine's time since the Unix epoch.
fn since_epoch() -> BackendResult<Duration> {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_err(|_| "this machine's clock is set before 1970".into())
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
