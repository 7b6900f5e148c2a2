//! What an operator can ask a backend: the locks held now, one lock in detail, and a
//! forced release (break-glass). The `lockattr` command line (feature `cli` of `lockattr`)
//! is a thin layer over [`Locks::held`](crate::Locks::held),
//! [`Locks::inspect`](crate::Locks::inspect) and
//! [`Locks::force_release`](crate::Locks::force_release), which reach a backend's
//! [`Admin`] through [`Backend::admin`](super::Backend::admin).
//!
//! A backend that cannot list its locks keeps the default `admin()`, `None`, and every
//! call answers [`LockError::Unsupported`](crate::LockError::Unsupported): a new backend
//! compiles without any of this.
//!
//! # What each backend shows
//!
//! | backend | lists by | fencing token | time left | owner |
//! | --- | --- | --- | --- | --- |
//! | `memory://` | the process's own store | exact | yes | no (always this process) |
//! | `redis://` | `SCAN` of `{<prefix>*}` | at most the key's fencing counter (the holder's own token is not stored) | `PTTL` | no |
//! | lease table (`sqlite://`, `…?mode=table`) | the rows whose lease has not ended | exact (the row's `fence`) | from the database's clock | host and pid (the `holder` column) |
//! | `memcached://` | `lru_crawler metadump hash` (walks the whole cache), the `K\|l` items under the prefix | at most `started × 10⁹ +` the item's CAS (the holder's own token until its first extension) | whole seconds (`mg … t`) | no |
//!
//! Owner information is only shown where it costs nothing when a lock is taken: the lease
//! table already writes `holder` (`host:pid`) in the statement that takes the key. Redis
//! stores the owner token alone as the lock's value, and adding the owner to it would
//! change the storage format that processes of several versions share (`docs/design.md`,
//! "Mixed versions") for no gain to the lock itself: there the owner stays unknown.
//! Nowhere is the function recorded: it would cost a larger write on every take.
//!
//! # Forced release
//!
//! [`Admin::force_release`] ends a lease whoever holds it. Fencing still holds: each
//! backend makes the next holder's token from a counter that the forced release does not
//! touch (the lease table's `fence` column, Redis's `{K}:fence`, Memcached's CAS counter),
//! so it is greater than the forced holder's. The forced holder learns it at its next
//! renewal, extend or release, which present its owner token (Memcached: its item's CAS)
//! and find it gone: [`LockError::Lost`](crate::LockError), and a body running under the
//! attribute with `renew = true` is cancelled.

use std::time::Duration;

use super::{BackendResult, BoxFuture};

/// The fencing token of a held lock, as far as the backend knows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Fence {
    /// The holder's token.
    Exact(u64),
    /// The holder's token is at most this (Redis: the key's fencing counter, which also
    /// counts refused attempts).
    AtMost(u64),
    /// The backend does not record it where it can be read.
    Unknown,
}

impl std::fmt::Display for Fence {
    /// `42`, `<=42` or `?`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Fence::Exact(n) => write!(f, "{n}"),
            Fence::AtMost(n) => write!(f, "<={n}"),
            Fence::Unknown => f.write_str("?"),
        }
    }
}

/// Who holds a lock, as far as the backend records it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Owner {
    /// The holder's host name.
    pub host: Option<String>,
    /// The holder's process id.
    pub pid: Option<u32>,
    /// The function holding it (`module::name`), where recorded.
    pub function: Option<String>,
    /// The server's id of the database session holding it (PostgreSQL's backend pid,
    /// MySQL's connection id), on the session backends: a forced release ends it.
    pub session: Option<u64>,
}

impl Owner {
    /// An owner from `host:pid`, the lease table's `holder` column (a text without a
    /// numeric `:pid` is kept whole as the host).
    pub fn from_holder(holder: &str) -> Owner {
        match holder.rsplit_once(':') {
            Some((host, pid)) if pid.parse::<u32>().is_ok() => Owner {
                host: Some(host.to_owned()),
                pid: pid.parse().ok(),
                ..Owner::default()
            },
            _ => Owner {
                host: Some(holder.to_owned()),
                ..Owner::default()
            },
        }
    }
}

impl std::fmt::Display for Owner {
    /// `host pid 42 fn app::flush`, leaving out what is unknown; `?` when nothing is known.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut parts = Vec::new();
        if let Some(host) = &self.host {
            parts.push(host.clone());
        }
        if let Some(pid) = self.pid {
            parts.push(format!("pid {pid}"));
        }
        if let Some(function) = &self.function {
            parts.push(format!("fn {function}"));
        }
        if let Some(session) = self.session {
            parts.push(format!("session {session}"));
        }
        if parts.is_empty() {
            return f.write_str("?");
        }
        f.write_str(&parts.join(" "))
    }
}

/// This host's name, as the owner of the locks this process takes is recorded (the lease
/// table's `holder`, PostgreSQL sessions' `application_name`).
#[cfg(any(feature = "sqlite", feature = "postgres", feature = "mysql"))]
pub(crate) fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "unknown-host".to_owned())
}

/// One held lock, as an operator sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct HeldLock {
    /// The key as the program asked for it (without the prefix), or `None` when the
    /// stored key is hashed (too long for the backend) and cannot be read back.
    pub key: Option<String>,
    /// The key as stored in the backend: prefixed, and possibly hashed.
    pub stored_key: String,
    /// The holder's fencing token.
    pub token: Fence,
    /// How long the lease has left, if the backend knows.
    pub time_left: Option<Duration>,
    /// Who holds it, where the backend records it.
    pub owner: Option<Owner>,
}

impl HeldLock {
    /// A held lock known by its stored key; [`Locks`](crate::Locks) fills in
    /// [`key`](Self::key).
    pub fn new(stored_key: String, token: Fence, time_left: Option<Duration>) -> Self {
        HeldLock {
            key: None,
            stored_key,
            token,
            time_left,
            owner: None,
        }
    }

    /// The same lock with its owner.
    pub fn with_owner(mut self, owner: Option<Owner>) -> Self {
        self.owner = owner;
        self
    }
}

/// The error [`Admin::held`] returns when this backend, as its server is configured,
/// cannot list its locks (MySQL without the `performance_schema` metadata-lock
/// instrument): [`Locks::held`](crate::Locks::held) answers it as
/// [`LockError::Unsupported`](crate::LockError::Unsupported) with this reason.
#[derive(Debug)]
pub struct CannotList(pub String);

impl std::fmt::Display for CannotList {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for CannotList {}

/// Listing, inspecting and force-releasing a backend's locks. Every key here is a stored
/// key (prefixed, and hashed if too long), as [`Locks`](crate::Locks) makes them.
pub trait Admin: Send + Sync {
    /// The locks held now whose stored key starts with `prefix`.
    fn held<'a>(&'a self, prefix: &'a str) -> BoxFuture<'a, BackendResult<Vec<HeldLock>>>;

    /// The lock stored as `stored_key`, if it is held now.
    fn inspect<'a>(&'a self, stored_key: &'a str)
        -> BoxFuture<'a, BackendResult<Option<HeldLock>>>;

    /// Ends the lease on `stored_key` whoever holds it, keeping fencing (see the
    /// [module docs](self)); whether a lease was held.
    fn force_release<'a>(&'a self, stored_key: &'a str) -> BoxFuture<'a, BackendResult<bool>>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holders_split_into_host_and_pid() {
        let owner = Owner::from_holder("web-1:4242");
        assert_eq!(owner.host.as_deref(), Some("web-1"));
        assert_eq!(owner.pid, Some(4242));
        assert_eq!(owner.to_string(), "web-1 pid 4242");
        let odd = Owner::from_holder("somewhere");
        assert_eq!((odd.host.as_deref(), odd.pid), (Some("somewhere"), None));
        assert_eq!(Owner::default().to_string(), "?");
    }

    #[test]
    fn fences_print_what_is_known() {
        assert_eq!(Fence::Exact(7).to_string(), "7");
        assert_eq!(Fence::AtMost(7).to_string(), "<=7");
        assert_eq!(Fence::Unknown.to_string(), "?");
    }
}
