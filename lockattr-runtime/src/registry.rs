//! The global backends the attribute uses: a default one and named ones, set once.

use std::collections::HashMap;
use std::sync::{OnceLock, RwLock};

use crate::builder::LockBuilder;
use crate::error::LockError;
use crate::handle::{connect, Locks};

/// The environment variable [`init_from_env`] reads.
pub const URL_ENV: &str = "LOCKATTR_URL";

static DEFAULT: OnceLock<Locks> = OnceLock::new();
static NAMED: OnceLock<RwLock<HashMap<String, Locks>>> = OnceLock::new();

fn named_map() -> &'static RwLock<HashMap<String, Locks>> {
    NAMED.get_or_init(Default::default)
}

/// Connects to `url` and makes it the default backend, used by the attribute without
/// `backend = …` and by [`lock`]. Call it once at start-up; a second call is
/// [`LockError::AlreadyConfigured`] and leaves the first in place.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), lockattr::LockError> {
/// lockattr::init("memory://").await?;
/// assert!(lockattr::init("memory://").await.is_err());
/// # Ok(())
/// # }
/// ```
pub async fn init(url: &str) -> Result<Locks, LockError> {
    let locks = connect(url).await?;
    set_default(locks.clone()).map_err(|_| already(None))?;
    Ok(locks)
}

/// Connects to `url` and registers it as `name`, for `#[distributed_lock(backend = "name")]`.
/// A second registration of the same name is [`LockError::AlreadyConfigured`].
///
/// ```
/// use lockattr::distributed_lock;
///
/// #[distributed_lock(key = "nightly", ttl = "5m", on_conflict = "skip", backend = "jobs")]
/// async fn nightly() {}
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), lockattr::LockError> {
/// lockattr::init_named("jobs", "memory://jobs").await?;
/// nightly().await;
/// # Ok(())
/// # }
/// ```
pub async fn init_named(name: &str, url: &str) -> Result<Locks, LockError> {
    let locks = connect(url).await?;
    set_named(name, locks.clone()).map_err(|_| already(Some(name)))?;
    Ok(locks)
}

/// [`init`] with the URL in the `LOCKATTR_URL` environment variable.
pub async fn init_from_env() -> Result<Locks, LockError> {
    match std::env::var(URL_ENV) {
        Ok(url) => init(&url).await,
        Err(_) => Err(LockError::InvalidUrl {
            url: String::new(),
            reason: format!(
                "{URL_ENV} is not set: set it to a backend URL, for example {}",
                suggested_url()
            ),
        }),
    }
}

/// What [`init_from_env`] suggests when `LOCKATTR_URL` is unset: the embedded SQLite file
/// where this build has it (several processes of one host), else `memory://` (one process).
fn suggested_url() -> String {
    #[cfg(feature = "sqlite")]
    {
        format!(
            "`{}` for the processes of one host (the embedded default)",
            crate::EMBEDDED_DEFAULT_URL
        )
    }
    #[cfg(not(feature = "sqlite"))]
    {
        "`memory://` for one process, or `redis://127.0.0.1:6379`".to_owned()
    }
}

/// Makes `locks` the default backend. If one is already set, hands `locks` back.
pub fn set_default(locks: Locks) -> Result<(), Locks> {
    DEFAULT.set(locks)
}

/// Registers `locks` as the backend called `name`. If the name is taken, hands `locks` back.
pub fn set_named(name: &str, locks: Locks) -> Result<(), Locks> {
    let mut map = named_map().write().unwrap_or_else(|e| e.into_inner());
    if map.contains_key(name) {
        return Err(locks);
    }
    map.insert(name.to_owned(), locks);
    Ok(())
}

/// The backend the attribute uses for `backend = name` (`None`: the default), or
/// [`LockError::NotConfigured`].
pub fn configured(name: Option<&str>) -> Result<Locks, LockError> {
    let found = match name {
        None => DEFAULT.get().cloned(),
        Some(n) => named_map()
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(n)
            .cloned(),
    };
    found.ok_or_else(|| LockError::NotConfigured {
        name: name.map(str::to_owned),
    })
}

fn already(name: Option<&str>) -> LockError {
    let backend = configured(name)
        .map(|l| l.backend_name().to_owned())
        .unwrap_or_default();
    LockError::AlreadyConfigured {
        name: name.map(str::to_owned),
        backend,
    }
}

/// Starts a lock request on the default backend; taking it without one configured is
/// [`LockError::NotConfigured`].
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), lockattr::LockError> {
/// use std::time::Duration;
/// # lockattr::init("memory://lock-doc").await?;
/// let guard = lockattr::lock("import:2024-05")
///     .ttl(Duration::from_secs(60))
///     .acquire(Duration::from_secs(5))
///     .await?;
/// println!("fencing token {}", guard.token());
/// guard.release().await?;
/// # Ok(())
/// # }
/// ```
pub fn lock(key: impl Into<String>) -> LockBuilder {
    LockBuilder::on(configured(None), key.into())
}
