//! What an operator asks a [`Locks`] handle: the locks held now, one lock in detail, and a
//! forced release. The `lockattr` command line (feature `cli` of `lockattr`) calls these;
//! each backend answers through its [`Admin`](crate::backend::admin::Admin).

use crate::backend::admin::{Admin, CannotList, HeldLock};
use crate::error::LockError;
use crate::handle::Locks;

/// What [`Locks::held`] lists for every key: `*` in messages.
const EVERY_KEY: &str = "*";

impl Locks {
    /// Whether this backend can list, inspect and force-release its locks.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let locks = lockattr::connect("memory://").await.unwrap();
    /// assert!(locks.can_list());
    /// # }
    /// ```
    pub fn can_list(&self) -> bool {
        self.backend().admin().is_some()
    }

    /// The locks held now under this handle's prefix, sorted by stored key. A backend
    /// that cannot list them answers [`LockError::Unsupported`].
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), lockattr::LockError> {
    /// use std::time::Duration;
    /// use lockattr::backend::admin::Fence;
    ///
    /// let locks = lockattr::connect("memory://held-doc").await?;
    /// let guard = locks.lock("import:2024-05").ttl(Duration::from_secs(60)).try_acquire().await?.unwrap();
    /// let held = locks.held().await?;
    /// assert_eq!(held.len(), 1);
    /// assert_eq!(held[0].key.as_deref(), Some("import:2024-05"));
    /// assert_eq!(held[0].stored_key, "lockattr:import:2024-05");
    /// assert_eq!(held[0].token, Fence::Exact(guard.token()));
    /// assert!(held[0].time_left.unwrap() <= Duration::from_secs(60));
    /// # Ok(())
    /// # }
    /// ```
    pub async fn held(&self) -> Result<Vec<HeldLock>, LockError> {
        let admin = self.admin(EVERY_KEY)?;
        let mut held =
            admin
                .held(self.prefix())
                .await
                .map_err(|e| match e.downcast::<CannotList>() {
                    Ok(cannot) => LockError::Unsupported {
                        key: EVERY_KEY.to_owned(),
                        backend: self.backend_name().to_owned(),
                        what: format!("listing its locks: {cannot}"),
                    },
                    Err(e) => self.backend_error(EVERY_KEY, e),
                })?;
        for lock in &mut held {
            lock.key = self.readable_key(&lock.stored_key);
        }
        held.sort_by(|a, b| a.stored_key.cmp(&b.stored_key));
        Ok(held)
    }

    /// The lock on `key` (as the program names it, without the prefix), if it is held now.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), lockattr::LockError> {
    /// let locks = lockattr::connect("memory://inspect-doc").await?;
    /// assert!(locks.inspect("import:2024-05").await?.is_none());
    /// # Ok(())
    /// # }
    /// ```
    pub async fn inspect(&self, key: &str) -> Result<Option<HeldLock>, LockError> {
        let admin = self.admin(key)?;
        let stored = self.stored_key(key)?;
        let held = admin
            .inspect(&stored)
            .await
            .map_err(|e| self.backend_error(key, e))?;
        Ok(held.map(|mut lock| {
            lock.key = Some(key.to_owned());
            lock
        }))
    }

    /// Break-glass: ends the lease on `key` whoever holds it; whether one was held. The
    /// next holder's fencing token is still greater than the forced holder's, and the
    /// forced holder gets [`LockError::Lost`] at its next renewal, extend or release.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), lockattr::LockError> {
    /// use std::time::Duration;
    ///
    /// let locks = lockattr::connect("memory://force-doc").await?;
    /// let stuck = locks.lock("nightly").ttl(Duration::from_secs(60)).try_acquire().await?.unwrap();
    /// assert!(locks.force_release("nightly").await?);
    /// let next = locks.lock("nightly").ttl(Duration::from_secs(60)).try_acquire().await?.unwrap();
    /// assert!(next.token() > stuck.token());
    /// assert!(matches!(stuck.extend(Duration::from_secs(60)).await, Err(lockattr::LockError::Lost { .. })));
    /// # Ok(())
    /// # }
    /// ```
    pub async fn force_release(&self, key: &str) -> Result<bool, LockError> {
        let admin = self.admin(key)?;
        let stored = self.stored_key(key)?;
        let released = admin
            .force_release(&stored)
            .await
            .map_err(|e| self.backend_error(key, e))?;
        if released {
            tracing::warn!(backend = self.backend_name(), key, "lock released by force");
        }
        Ok(released)
    }

    fn admin(&self, key: &str) -> Result<&dyn Admin, LockError> {
        self.backend()
            .admin()
            .ok_or_else(|| LockError::Unsupported {
                key: key.to_owned(),
                backend: self.backend_name().to_owned(),
                what: "listing, inspecting or force-releasing its locks".into(),
            })
    }

    /// The key a program asked for, read back from its stored form: `None` if it was
    /// hashed (or is not under this handle's prefix).
    fn readable_key(&self, stored: &str) -> Option<String> {
        let max = self.backend().max_key_len();
        if crate::key::looks_hashed(stored, max) {
            return None;
        }
        stored.strip_prefix(self.prefix()).map(str::to_owned)
    }
}
