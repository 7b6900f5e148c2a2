//! The session backends' own URL parameters, read in one place.
//!
//! With the defaults, one backend uses at most 8 sessions to hold locks (any number) plus
//! one per waiting acquire, at most `max_waiting`: 40 connections.
//!
//! | parameter | default | what it bounds |
//! | --- | --- | --- |
//! | `connect_timeout_ms` | 5000 | opening a session: TCP, TLS and login |
//! | `timeout_ms` | 5000 | every statement that does not wait in the server (take, release, heartbeat, set-up); a wait in the server's queue is bounded by its own wait plus this |
//! | `max_waiting` | 32 | how many `acquire(wait)`s of the backend wait in the server's queue at once, each on a session (connection) of its own; more wait in the process, first come first served, for one of them to end (each after one try, so a free key is taken at once). Caveat: a waiter queued in the process is in no server queue, so a holder that releases and takes the key again at once can go ahead of it; raise `max_waiting` where that matters |
//!
//! A statement that runs out of time closes its session (the server then frees the
//! session's locks; its leases are `Lost`), and the error names the parameter and its value.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use tokio::time::Sleep;

use crate::error::{BoxError, LockError};
use crate::url::BackendUrl;

/// Default of `connect_timeout_ms`.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Default of `timeout_ms`.
const TIMEOUT: Duration = Duration::from_secs(5);
/// Default of `max_waiting`.
const MAX_WAITING: usize = 32;

/// The parameters of a session backend's URL that lockattr reads itself (the rest go to
/// the driver).
pub(crate) const OWN_PARAMS: &[&str] = &[
    "prefix",
    "mode",
    "connect_timeout_ms",
    "timeout_ms",
    "max_waiting",
];

/// A session backend's options, built from its URL.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SessionOptions {
    /// `connect_timeout_ms`: the longest a new session may take to open.
    pub(crate) connect_timeout: Duration,
    /// `timeout_ms`: the longest a statement may take, past any wait it asks the server for.
    pub(crate) timeout: Duration,
    /// `max_waiting`: the most acquires that wait in the server's queue at once.
    pub(crate) max_waiting: usize,
}

impl SessionOptions {
    /// Reads the options from `url` (an invalid value is [`LockError::InvalidUrl`]).
    pub(crate) fn from_url(url: &BackendUrl) -> Result<Self, LockError> {
        Ok(SessionOptions {
            connect_timeout: url.millis("connect_timeout_ms", CONNECT_TIMEOUT)?,
            timeout: url.millis("timeout_ms", TIMEOUT)?,
            max_waiting: match url.params.get("max_waiting") {
                None => MAX_WAITING,
                Some(v) => v.parse().ok().filter(|&n| n > 0).ok_or_else(|| {
                    url.invalid(format!(
                        "`max_waiting` must be a positive number of waiting sessions, not `{v}`"
                    ))
                })?,
            },
        })
    }

    /// Opens a session with `connect`, within `connect_timeout_ms`.
    pub(crate) async fn connect<T>(
        &self,
        connect: impl Future<Output = Result<T, BoxError>>,
    ) -> Result<T, BoxError> {
        bounded(connect, self.connect_timeout, NoAnswer::connect(self)).await
    }

    /// Runs a statement that does not wait in the server, within `timeout_ms`, timed by
    /// `timer` (the session's own: see [`within`]).
    pub(crate) async fn statement<T>(
        &self,
        timer: Pin<&mut Sleep>,
        statement: impl Future<Output = Result<T, BoxError>>,
    ) -> Result<T, BoxError> {
        within(timer, self.timeout, statement, || {
            NoAnswer::statement(self, None)
        })
        .await
    }

    /// Runs a statement that waits in the server's queue for up to `wait`, within `wait`
    /// plus `timeout_ms`.
    pub(crate) async fn wait<T>(
        &self,
        timer: Pin<&mut Sleep>,
        wait: Duration,
        statement: impl Future<Output = Result<T, BoxError>>,
    ) -> Result<T, BoxError> {
        let limit = wait.saturating_add(self.timeout);
        within(timer, limit, statement, || {
            NoAnswer::statement(self, Some(wait))
        })
        .await
    }
}

/// Runs `work` until `limit` from now, timed by `timer`.
///
/// Every statement of a session is timed by one timer that lives with the session's
/// connection, moved later for each statement: moving a registered timer later costs no
/// more than a store (tokio re-arms it only when it comes due), where a fresh
/// `tokio::time::timeout` per statement registered and removed a timer each time, and
/// made every statement's future larger (measured: about 2,000 more instructions per
/// acquire + release on PostgreSQL). A driver's statement future is large too: pass it
/// pinned in place (`pin!(…)`) so that this layer moves a pointer, not the future.
async fn within<T>(
    mut timer: Pin<&mut Sleep>,
    limit: Duration,
    work: impl Future<Output = Result<T, BoxError>>,
    late: impl FnOnce() -> NoAnswer,
) -> Result<T, BoxError> {
    timer.as_mut().reset(tokio::time::Instant::now() + limit);
    tokio::select! {
        biased;
        result = work => result,
        () = timer => Err(Box::new(late())),
    }
}

/// A session's statement timer before its first statement (re-armed by each one).
pub(crate) fn statement_timer() -> Pin<Box<Sleep>> {
    Box::pin(tokio::time::sleep(Duration::from_secs(3600)))
}

/// `work` within `limit` (for what has no session timer yet: opening a session).
async fn bounded<T>(
    work: impl Future<Output = Result<T, BoxError>>,
    limit: Duration,
    late: NoAnswer,
) -> Result<T, BoxError> {
    match tokio::time::timeout(limit, work).await {
        Ok(result) => result,
        Err(_) => Err(Box::new(late)),
    }
}

/// A server that did not answer in time: the error names the URL parameter that bounded it.
#[derive(Debug)]
pub(crate) struct NoAnswer {
    what: &'static str,
    param: &'static str,
    ms: u128,
    wait_ms: Option<u128>,
}

impl NoAnswer {
    fn connect(options: &SessionOptions) -> Self {
        NoAnswer {
            what: "opening a database session",
            param: "connect_timeout_ms",
            ms: options.connect_timeout.as_millis(),
            wait_ms: None,
        }
    }

    fn statement(options: &SessionOptions, wait: Option<Duration>) -> Self {
        NoAnswer {
            what: "a statement",
            param: "timeout_ms",
            ms: options.timeout.as_millis(),
            wait_ms: wait.map(|w| w.as_millis()),
        }
    }
}

impl std::fmt::Display for NoAnswer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let NoAnswer {
            what,
            param,
            ms,
            wait_ms,
        } = self;
        match wait_ms {
            None => write!(
                f,
                "the server did not answer {what} within {ms} ms (`{param}={ms}`)"
            ),
            Some(wait_ms) => write!(
                f,
                "the server did not end a wait of {wait_ms} ms within {ms} ms after it \
                 (`{param}={ms}`)"
            ),
        }
    }
}

impl std::error::Error for NoAnswer {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeouts_come_from_the_url_with_defaults() {
        let url = BackendUrl::parse("postgres://h/db?connect_timeout_ms=300").unwrap();
        let options = SessionOptions::from_url(&url).unwrap();
        assert_eq!(options.connect_timeout, Duration::from_millis(300));
        assert_eq!(options.timeout, TIMEOUT);
        assert_eq!(options.max_waiting, MAX_WAITING);
        let url = BackendUrl::parse("postgres://h/db?timeout_ms=0").unwrap();
        let e = SessionOptions::from_url(&url).unwrap_err().to_string();
        assert!(e.contains("timeout_ms"), "{e}");
        let url = BackendUrl::parse("postgres://h/db?max_waiting=2").unwrap();
        assert_eq!(SessionOptions::from_url(&url).unwrap().max_waiting, 2);
        let url = BackendUrl::parse("postgres://h/db?max_waiting=0").unwrap();
        let e = SessionOptions::from_url(&url).unwrap_err().to_string();
        assert!(e.contains("max_waiting"), "{e}");
    }

    #[tokio::test]
    async fn a_late_answer_names_the_parameter_and_its_value() {
        let url = BackendUrl::parse("mysql://h/db?timeout_ms=20&connect_timeout_ms=30").unwrap();
        let options = SessionOptions::from_url(&url).unwrap();
        let never = std::future::pending::<Result<(), BoxError>>;
        let mut timer = statement_timer();
        let e = options
            .statement(timer.as_mut(), never())
            .await
            .unwrap_err()
            .to_string();
        assert!(e.contains("`timeout_ms=20`"), "{e}");
        let e = options.connect(never()).await.unwrap_err().to_string();
        assert!(e.contains("`connect_timeout_ms=30`"), "{e}");
        let e = options
            .wait(timer.as_mut(), Duration::from_millis(10), never())
            .await
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("wait of 10 ms") && e.contains("`timeout_ms=20`"),
            "{e}"
        );
        // The same timer, moved later, times the next statement afresh.
        let answered = options.statement(timer.as_mut(), async { Ok(7) }).await;
        assert_eq!(answered.unwrap(), 7);
    }
}
