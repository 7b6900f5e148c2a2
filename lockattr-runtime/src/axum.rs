//! [`LockError`] as an axum 0.8 response (feature `axum`), so that handlers return
//! `Result<_, LockError>` or convert it inside their own error type.

use axum_core::response::{IntoResponse, Response};
use http::header::{HeaderValue, RETRY_AFTER};
use http::StatusCode;

use crate::LockError;

/// The response's parts for `error`: status, `Retry-After` in seconds, body.
fn parts(error: &LockError) -> (StatusCode, Option<u32>, &'static str) {
    match error {
        LockError::Conflict { .. } => (
            StatusCode::CONFLICT,
            Some(1),
            "locked: another request holds this lock; retry later",
        ),
        LockError::Timeout { .. } => (
            StatusCode::SERVICE_UNAVAILABLE,
            Some(1),
            "busy: timed out waiting for a lock; retry later",
        ),
        LockError::Lost { .. } => (
            StatusCode::SERVICE_UNAVAILABLE,
            Some(1),
            "lock lost while the request ran; retry later",
        ),
        LockError::Backend { .. } | LockError::NotConfigured { .. } => (
            StatusCode::SERVICE_UNAVAILABLE,
            None,
            "lock service unavailable",
        ),
        LockError::AlreadyConfigured { .. }
        | LockError::InvalidKey { .. }
        | LockError::InvalidOptions { .. }
        | LockError::InvalidUrl { .. }
        | LockError::Unsupported { .. }
        | LockError::Misconfigured { .. } => (
            StatusCode::INTERNAL_SERVER_ERROR,
            None,
            "lock configuration error",
        ),
    }
}

/// `LockError` as an axum 0.8 response (feature `axum`): 409 for a conflict, 503 when the
/// lock could not be had or kept in time or its backend is unavailable, 500 for a
/// configuration error.
///
/// | error | status | `Retry-After` | body |
/// |---|---|---|---|
/// | `Conflict` | 409 Conflict | 1 s | `locked: another request holds this lock; retry later` |
/// | `Timeout` | 503 Service Unavailable | 1 s | `busy: timed out waiting for a lock; retry later` |
/// | `Lost` | 503 Service Unavailable | 1 s | `lock lost while the request ran; retry later` |
/// | `Backend`, `NotConfigured` | 503 Service Unavailable | none | `lock service unavailable` |
/// | the configuration errors (`InvalidKey`, `InvalidOptions`, `InvalidUrl`, `Unsupported`, `AlreadyConfigured`, `Misconfigured`) | 500 Internal Server Error | none | `lock configuration error` |
///
/// The body is that short `text/plain` sentence: it names no key, backend or client
/// error, which are the server's business, not the caller's. The full message (with any
/// password already replaced by `***`) goes to `tracing`: at `debug` for a conflict or
/// timeout, which are expected under contention, at `error` for the rest.
impl IntoResponse for LockError {
    fn into_response(self) -> Response {
        let (status, retry_after, body) = parts(&self);
        if matches!(self, LockError::Conflict { .. } | LockError::Timeout { .. }) {
            tracing::debug!(error = %self, %status, "lock error answered");
        } else {
            tracing::error!(error = %self, %status, "lock error answered");
        }
        let mut response = (status, body).into_response();
        if let Some(seconds) = retry_after {
            response
                .headers_mut()
                .insert(RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use std::pin::pin;
    use std::sync::Arc;
    use std::task::{Context, Poll, Waker};
    use std::time::Duration;

    use futures_core::Stream;
    use http::header::CONTENT_TYPE;

    use super::*;

    const SECRET: &str = "hunter2";

    fn backend() -> String {
        "redis://app:***@cache:6379".to_owned()
    }

    /// Status, `Retry-After` and body of the response to `error`.
    fn answer(error: LockError) -> (u16, Option<String>, String) {
        let response = error.into_response();
        let status = response.status().as_u16();
        let retry = response
            .headers()
            .get(RETRY_AFTER)
            .map(|v| v.to_str().unwrap().to_owned());
        assert_eq!(
            response.headers()[CONTENT_TYPE],
            "text/plain; charset=utf-8"
        );
        // The body is one ready chunk: poll it once, without a runtime.
        let mut stream = pin!(response.into_body().into_data_stream());
        let mut cx = Context::from_waker(Waker::noop());
        let mut body = Vec::new();
        loop {
            match stream.as_mut().poll_next(&mut cx) {
                Poll::Ready(Some(chunk)) => body.extend_from_slice(&chunk.unwrap()),
                Poll::Ready(None) => break,
                Poll::Pending => panic!("the body is not ready"),
            }
        }
        (status, retry, String::from_utf8(body).unwrap())
    }

    #[test]
    fn a_conflict_is_409_with_retry_after() {
        let (status, retry, body) = answer(LockError::Conflict {
            key: "job:7".into(),
            backend: backend(),
        });
        assert_eq!(status, 409);
        assert_eq!(retry.as_deref(), Some("1"));
        assert_eq!(body, "locked: another request holds this lock; retry later");
    }

    #[test]
    fn a_timeout_and_a_lost_lease_are_503_with_retry_after() {
        let (status, retry, body) = answer(LockError::Timeout {
            key: "job:7".into(),
            backend: backend(),
            waited: Duration::from_secs(5),
        });
        assert_eq!((status, retry.as_deref()), (503, Some("1")));
        assert!(body.contains("timed out"), "{body}");
        let (status, retry, _) = answer(LockError::Lost {
            key: "job:7".into(),
            backend: backend(),
            reason: "expired".into(),
        });
        assert_eq!((status, retry.as_deref()), (503, Some("1")));
    }

    #[test]
    fn an_unavailable_backend_is_503_without_retry_after() {
        let failing = LockError::backend(
            &backend(),
            Some("job:7"),
            format!("connection refused (password {SECRET})"),
        );
        let not_configured = LockError::NotConfigured {
            name: Some("pg".into()),
        };
        for error in [failing, not_configured] {
            let (status, retry, body) = answer(error);
            assert_eq!((status, retry), (503, None));
            assert_eq!(body, "lock service unavailable");
        }
    }

    #[test]
    fn a_configuration_error_is_500() {
        let errors = [
            LockError::InvalidUrl {
                url: "postgres://app:***@db/x".into(),
                reason: "unknown".into(),
            },
            LockError::InvalidKey {
                key: String::new(),
                backend: backend(),
                reason: "empty".into(),
            },
            LockError::InvalidOptions {
                key: "k".into(),
                backend: backend(),
                reason: "ttl is zero".into(),
            },
            LockError::Unsupported {
                key: "k".into(),
                backend: backend(),
                what: "renew".into(),
            },
            LockError::AlreadyConfigured {
                name: None,
                backend: backend(),
            },
            LockError::Misconfigured {
                problems: vec!["f at src/main.rs:3".into()],
            },
        ];
        for error in errors {
            let (status, retry, body) = answer(error);
            assert_eq!((status, retry), (500, None));
            assert_eq!(body, "lock configuration error");
        }
    }

    #[test]
    fn the_body_names_no_key_backend_or_client_error() {
        let error = LockError::Backend {
            key: Some("tenant:acme".into()),
            backend: backend(),
            source: Arc::new(std::io::Error::other(format!("auth failed for {SECRET}"))),
        };
        let (_, _, body) = answer(error);
        for secret in [SECRET, "acme", "cache", "redis"] {
            assert!(!body.contains(secret), "{body}");
        }
    }
}
