//! The counters and histograms of the locked calls, through the
//! [`metrics`](https://docs.rs/metrics) facade, behind the cargo feature `metrics`.
//!
//! Each is labelled `function` (the annotated function's path, `"app::jobs::flush"`) and
//! `backend` (the backend's name; the name the site asked for when no backend is
//! configured). Never by key: keys are unbounded, a label per key would grow without end.
//!
//! | name | kind | moves when |
//! | --- | --- | --- |
//! | `lockattr_acquired_total` | counter | the lock was taken and the body starts |
//! | `lockattr_skipped_total` | counter | the call skipped: held elsewhere (`skip`) or retries ran out (`retry`) |
//! | `lockattr_conflicts_total` | counter | `on_conflict = "error"` found the key held and returned `Conflict` |
//! | `lockattr_timeouts_total` | counter | `on_conflict = "wait"` waited its `wait` out and returned `Timeout` |
//! | `lockattr_lost_total` | counter | the lease ended while the body ran (the body was cancelled, or finished too late) |
//! | `lockattr_errors_total` | counter | the lock could not be taken for another reason: the body did not run (fail closed) |
//! | `lockattr_wait_seconds` | histogram | from the call to the lock taken, for each acquisition |
//! | `lockattr_hold_seconds` | histogram | from the lock taken to its release or loss |
//!
//! Without the feature, every function here is empty and inlined away.

use std::time::Duration;

use crate::sites::LockSite;

/// What a counter counts; see the module's table.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Count {
    Acquired,
    Skipped,
    Conflict,
    Timeout,
    Lost,
    Error,
}

#[cfg(feature = "metrics")]
impl Count {
    fn name(self) -> &'static str {
        match self {
            Count::Acquired => "lockattr_acquired_total",
            Count::Skipped => "lockattr_skipped_total",
            Count::Conflict => "lockattr_conflicts_total",
            Count::Timeout => "lockattr_timeouts_total",
            Count::Lost => "lockattr_lost_total",
            Count::Error => "lockattr_errors_total",
        }
    }
}

/// Adds one to the counter `what` of `site` on `backend`.
#[cfg(feature = "metrics")]
pub(crate) fn count(what: Count, site: &LockSite, backend: &str) {
    ::metrics::counter!(what.name(), "function" => site.function, "backend" => backend.to_owned())
        .increment(1);
}

/// Records how long the call waited for the lock it took.
#[cfg(feature = "metrics")]
pub(crate) fn waited(site: &LockSite, backend: &str, waited: Duration) {
    ::metrics::histogram!("lockattr_wait_seconds", "function" => site.function, "backend" => backend.to_owned())
        .record(waited.as_secs_f64());
}

/// Records how long the lock was held, to its release or loss.
#[cfg(feature = "metrics")]
pub(crate) fn held(site: &LockSite, backend: &str, held: Duration) {
    ::metrics::histogram!("lockattr_hold_seconds", "function" => site.function, "backend" => backend.to_owned())
        .record(held.as_secs_f64());
}

#[cfg(not(feature = "metrics"))]
#[inline(always)]
pub(crate) fn count(_what: Count, _site: &LockSite, _backend: &str) {}

#[cfg(not(feature = "metrics"))]
#[inline(always)]
pub(crate) fn waited(_site: &LockSite, _backend: &str, _waited: Duration) {}

#[cfg(not(feature = "metrics"))]
#[inline(always)]
pub(crate) fn held(_site: &LockSite, _backend: &str, _held: Duration) {}
