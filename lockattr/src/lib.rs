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
//! - [`LockError`]: every failure, naming the key and the backend, never a password.
//!
//! Backends are cargo features (the default build has only `memory://`): `redis`,
//! `postgres`, `mysql`, `sqlite`. Every backend keeps the same semantics: mutual
//! exclusion while the lease is valid, token-checked release and extend, expiry enforced
//! by the server, strictly increasing fencing tokens, cancellation of a body whose lease
//! is lost, notified and fair waiting, injective keys, and errors instead of panics.
#![warn(missing_docs)]

pub use lockattr_macros::distributed_lock;
pub use lockattr_runtime::*;
