//! The one error type of lockattr.

use std::error::Error as StdError;
use std::sync::Arc;
use std::time::Duration;

/// A boxed error from a backend's client library, kept as the [`LockError::Backend`] source.
pub type BoxError = Box<dyn StdError + Send + Sync + 'static>;

/// Everything that can go wrong when taking, holding or giving back a lock.
///
/// Every message names the lock key (where there is one) and the backend, written as its
/// URL with any password replaced by `***`.
///
/// ```
/// use lockattr::LockError;
///
/// fn describe(e: &LockError) -> &'static str {
///     match e {
///         LockError::Conflict { .. } => "somebody else holds it",
///         LockError::Timeout { .. } => "waited too long",
///         LockError::Lost { .. } => "the lease ran out while the body ran",
///         _ => "configuration or backend trouble",
///     }
/// }
/// # let _ = describe;
/// ```
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum LockError {
    /// Another holder has the key (`on_conflict = "error"`).
    #[error("lock `{key}` is held by another holder (backend {backend})")]
    Conflict {
        /// The lock key, without the backend's prefix.
        key: String,
        /// The backend, as its redacted URL.
        backend: String,
    },
    /// The key stayed taken for the whole wait (`on_conflict = "wait"`, `acquire(wait)`).
    #[error("timed out after {waited:?} waiting for lock `{key}` (backend {backend})")]
    Timeout {
        /// The lock key, without the backend's prefix.
        key: String,
        /// The backend, as its redacted URL.
        backend: String,
        /// How long the caller waited.
        waited: Duration,
    },
    /// The lease ended while it was held: it expired, a renewal failed, or the backend
    /// dropped the session that held it.
    #[error("lock `{key}` was lost while held: {reason} (backend {backend})")]
    Lost {
        /// The lock key, without the backend's prefix.
        key: String,
        /// The backend, as its redacted URL.
        backend: String,
        /// What ended the lease.
        reason: String,
    },
    /// No backend is configured under that name.
    #[error("{}", not_configured_message(.name))]
    NotConfigured {
        /// `None` for the default backend, else the name given to `backend = "…"`.
        name: Option<String>,
    },
    /// A backend was configured twice under the same name.
    #[error("{} is already configured (backend {backend})", match .name { Some(n) => format!("lockattr backend `{n}`"), None => "the default lockattr backend".to_string() })]
    AlreadyConfigured {
        /// `None` for the default backend, else its name.
        name: Option<String>,
        /// The backend that stays configured, as its redacted URL.
        backend: String,
    },
    /// The key is empty or cannot be stored.
    #[error("invalid lock key `{key}`: {reason} (backend {backend})")]
    InvalidKey {
        /// The key as given.
        key: String,
        /// The backend, as its redacted URL.
        backend: String,
        /// Why it was refused.
        reason: String,
    },
    /// A ttl, wait or `min_hold` given at run time is unusable (zero, or `min_hold >= ttl`).
    #[error("invalid options for lock `{key}`: {reason} (backend {backend})")]
    InvalidOptions {
        /// The lock key.
        key: String,
        /// The backend, as its redacted URL.
        backend: String,
        /// What is wrong.
        reason: String,
    },
    /// The URL does not name a backend this build can use, or is malformed.
    #[error("invalid lockattr URL `{url}`: {reason}")]
    InvalidUrl {
        /// The URL with any password replaced by `***`.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The backend cannot keep a semantic the lock asked for (see the README's backend table).
    #[error("backend {backend} does not support {what} (lock `{key}`)")]
    Unsupported {
        /// The lock key.
        key: String,
        /// The backend, as its redacted URL.
        backend: String,
        /// The option or semantic it cannot keep.
        what: String,
    },
    /// Lock sites that the configured backends cannot serve as written, found by
    /// [`check`](crate::check) or at `init`: each problem names the function and its
    /// `file:line`.
    #[error("{}", misconfigured_message(.problems))]
    Misconfigured {
        /// One line per problem.
        problems: Vec<String>,
    },
    /// The backend failed: unreachable, timed out, or answered with an error.
    #[error("backend {backend} failed{}: {source}", match .key { Some(k) => format!(" on lock `{k}`"), None => String::new() })]
    Backend {
        /// The lock key, when the failure concerns one.
        key: Option<String>,
        /// The backend, as its redacted URL.
        backend: String,
        /// The client library's error.
        #[source]
        source: Arc<dyn StdError + Send + Sync + 'static>,
    },
}

fn misconfigured_message(problems: &[String]) -> String {
    let mut out = format!("{} misconfigured lockattr lock site(s):", problems.len());
    for problem in problems {
        out.push_str("\n  - ");
        out.push_str(problem);
    }
    out
}

fn not_configured_message(name: &Option<String>) -> String {
    match name {
        None => "no default lockattr backend is configured: call `lockattr::init(url)` \
                 (or `lockattr::init_from_env()` with LOCKATTR_URL set) at start-up"
            .to_string(),
        Some(n) => format!(
            "no lockattr backend named `{n}` is configured: call \
             `lockattr::init_named(\"{n}\", url)` at start-up"
        ),
    }
}

impl LockError {
    /// A [`LockError::Backend`] from any client error.
    pub fn backend(backend: &str, key: Option<&str>, source: impl Into<BoxError>) -> Self {
        let source: BoxError = source.into();
        LockError::Backend {
            key: key.map(str::to_owned),
            backend: backend.to_owned(),
            source: Arc::from(source),
        }
    }

    /// True for the errors that mean "the lock is not ours": conflict, timeout, lost.
    pub fn is_contention(&self) -> bool {
        matches!(
            self,
            LockError::Conflict { .. } | LockError::Timeout { .. } | LockError::Lost { .. }
        )
    }
}
