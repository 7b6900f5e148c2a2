//! The time limits a backend URL sets (`timeout_ms`, `connect_timeout_ms`) and the error
//! that names one when it runs out: shared by the Redis and Memcached backends.

use std::fmt;
use std::future::Future;
use std::time::Duration;

use crate::backend::BackendResult;

/// A time limit a backend URL sets: how long, and the parameter that says so.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TimeLimit {
    /// The server's name in the error: `"Redis"`, `"Memcached"`.
    pub(crate) server: &'static str,
    /// The URL parameter, named in the error when the limit runs out.
    pub(crate) param: &'static str,
    /// The limit.
    pub(crate) length: Duration,
}

impl TimeLimit {
    /// What `op` gives, or [`NoAnswer`] naming this limit if `op` takes longer.
    pub(crate) async fn bound<T>(
        self,
        op: impl Future<Output = BackendResult<T>>,
    ) -> BackendResult<T> {
        tokio::time::timeout(self.length, op)
            .await
            .unwrap_or_else(|_| Err(Box::new(NoAnswer(self))))
    }
}

/// The server gave no answer within a [`TimeLimit`].
#[derive(Debug)]
pub(crate) struct NoAnswer(pub(crate) TimeLimit);

impl fmt::Display for NoAnswer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} did not answer within {} ms (the URL's `{}`)",
            self.0.server,
            self.0.length.as_millis(),
            self.0.param
        )
    }
}

impl std::error::Error for NoAnswer {}
