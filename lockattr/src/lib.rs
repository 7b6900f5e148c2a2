//! Distributed locks written as one attribute.
//!
//! ```
//! use lockattr::distributed_lock;
//!
//! #[distributed_lock(key = "flush:<tenant>", ttl = "30s", on_conflict = "skip")]
//! async fn flush(tenant: &str) {
//!     // at most one instance of the service runs this per tenant at a time
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), lockattr::LockError> {
//! lockattr::init("memory://").await?; // once at start-up: redis://, postgres://, sqlite://…
//! flush("acme").await;
//! # Ok(())
//! # }
//! ```
//!
//! - [`distributed_lock`]: the attribute, its options and its compile-time checks.
//! - [`init`], [`init_named`], [`init_from_env`]: the backends the attribute uses.
//! - [`connect`] and [`Locks`]: a handle without globals; [`lock`] on the default one;
//!   [`LockGuard`]: a held lock with its fencing [`token`](LockGuard::token).
//! - [`current`]: the lock held by the running annotated body.
//! - [`sites`] and [`check`]: every lock site in the program, checked against the configured
//!   backends at start-up ([`init`] checks the sites of the backend it configures).
//! - [`LockError`]: every failure, naming the key and the backend, never a password.
//! - `lockattr::rows` (features `postgres`, `mysql`): row locks inside the caller's sqlx
//!   transaction (`SKIP LOCKED`, `NOWAIT`, a lock timeout) with the same `on_conflict` policies;
//!   with `query-macros`, also on the output of sqlx's `query!` macros.
//! - `lockattr::cli` (cargo feature `cli`): the `lockattr` binary for operators, which lists,
//!   inspects and force-releases held locks through [`Locks::held`], [`Locks::inspect`] and
//!   [`Locks::force_release`].
//!
//! Backends are cargo features. The default build has `memory://` (one process) and
//! `sqlite://PATH` (feature `sqlite`, on by default): a lease table in a local file, so
//! `lockattr = "0.1"` alone gives locks that the processes of one host share and that
//! outlive a crashed holder, with no server. The others are `redis`, `postgres`,
//! `mysql` and `memcached`; for Redis alone, turn the defaults off:
//!
//! ```toml
//! lockattr = { version = "0.1", default-features = false, features = ["redis"] }
//! ```
//!
//! Every backend keeps the same semantics: mutual exclusion while the lease is valid,
//! token-checked release and extend, expiry enforced by the server, strictly increasing
//! fencing tokens, cancellation of a body whose lease is lost, notified and fair waiting,
//! injective keys, and errors instead of panics. `docs/design.md` in the repository states
//! them, each with the tests that prove it.
#![warn(missing_docs)]

pub use lockattr_macros::distributed_lock;
pub use lockattr_runtime::*;

#[cfg(feature = "cli")]
pub mod cli;

/// The README's Rust examples, compiled (and, unless marked `no_run`, run) by
/// `cargo test --doc`.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
pub struct ReadmeDoctests;
