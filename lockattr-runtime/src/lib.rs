//! The runtime of [lockattr](https://docs.rs/lockattr): the backend trait, the global
//! registry, lock guards, errors and the backends.
//!
//! Depend on the `lockattr` facade rather than on this crate: it re-exports everything
//! here together with the `#[distributed_lock]` attribute.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), lockattr::LockError> {
//! use std::time::Duration;
//!
//! let locks = lockattr::connect("memory://").await?;
//! let guard = locks.lock("import:2024-05").ttl(Duration::from_secs(60)).acquire(Duration::from_secs(5)).await?;
//! println!("holding {} with fencing token {}", guard.key(), guard.token());
//! guard.extend(Duration::from_secs(60)).await?;
//! guard.release().await?;
//! # Ok(())
//! # }
//! ```
#![warn(missing_docs)]

#[cfg(feature = "axum")]
mod axum;
pub mod backend;
mod builder;
mod error;
mod guard;
mod handle;
pub mod key;
mod lease;
mod locked_call;
mod metrics;
mod operator;
mod outcome;
mod registry;
#[cfg(any(feature = "postgres", feature = "mysql", feature = "sqlite"))]
pub mod rows;
mod schedule;
mod sites;
pub mod token;
pub mod url;

#[cfg(feature = "sqlite")]
pub use backend::table::EMBEDDED_DEFAULT_URL;
pub use builder::{LockBuilder, NoTtl};
pub use error::{BoxError, LockError};
pub use guard::{current, CurrentLock, LockGuard};
pub use handle::{connect, Locks, MIN_TTL};
pub use outcome::{Fallible, Skippable};
pub use registry::{
    configured, init, init_from_env, init_named, init_with, lock, set_default, set_named,
    InitOptions, URL_ENV,
};
pub use schedule::Schedule;
pub use sites::{check, sites, LockSite, Policy};

/// The code `#[distributed_lock]` generates calls into this module. Not a stable API.
#[doc(hidden)]
pub mod __private {
    pub use crate::locked_call::*;
}
