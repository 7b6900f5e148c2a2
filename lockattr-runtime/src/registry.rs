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
/// Before registering the backend it checks the lock sites that use it (see
/// [`InitOptions::check`]): an option the backend cannot keep, or two sites whose keys
/// collide with different options, is [`LockError::Misconfigured`] and nothing is
/// registered.
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
    init_with(url, InitOptions::new()).await
}

/// Connects to `url` and registers it as `name`, for `#[distributed_lock(backend = "name")]`.
/// A second registration of the same name is [`LockError::AlreadyConfigured`]. Checks the
/// sites that use `name` first, as [`init`] does.
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
    init_with(url, InitOptions::new().named(name)).await
}

/// What [`init_with`] registers `url` as, and whether it checks the lock sites first.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), lockattr::LockError> {
/// use lockattr::InitOptions;
///
/// // The same as `lockattr::init_named("jobs", url)`, without the start-up check.
/// lockattr::init_with("memory://jobs", InitOptions::new().named("jobs").check(false)).await?;
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct InitOptions {
    name: Option<String>,
    check: bool,
}

impl InitOptions {
    /// The default backend, checked: what [`init`] does.
    pub fn new() -> Self {
        InitOptions {
            name: None,
            check: true,
        }
    }

    /// Registers the backend as `name` (for `backend = "name"`) instead of as the default.
    pub fn named(mut self, name: &str) -> Self {
        self.name = Some(name.to_owned());
        self
    }

    /// Whether to check, before registering, the lock sites that use this backend: that
    /// it can keep their options (`min_hold`, `renew`) and that no two of them can take
    /// the same key with different ttls or policies. On by default. Whether every site's
    /// backend is configured at all is for [`check`](crate::check) to say, once all are.
    pub fn check(mut self, check: bool) -> Self {
        self.check = check;
        self
    }
}

impl Default for InitOptions {
    fn default() -> Self {
        Self::new()
    }
}

/// Connects to `url` and registers it as `options` say: [`init`] and [`init_named`] with
/// the start-up check optional.
pub async fn init_with(url: &str, options: InitOptions) -> Result<Locks, LockError> {
    let locks = connect(url).await?;
    let name = options.name.as_deref();
    if options.check {
        crate::sites::check_backend(name, &locks)?;
    }
    match name {
        None => set_default(locks.clone()),
        Some(name) => set_named(name, locks.clone()),
    }
    .map_err(|_| already(name))?;
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
