//! The `#[distributed_lock]` attribute of [lockattr](https://docs.rs/lockattr).
//!
//! Use it through the `lockattr` crate, which re-exports it with its documentation. The
//! crate is a pipeline: `args` (parse) → `template` (the key) → `validate` (cross-option
//! and signature checks) → `expand` (code generation), each stage collecting every error
//! so one compile run shows all of them.
#![warn(missing_docs)]

mod args;
mod duration;
mod errors;
mod expand;
mod template;
mod validate;

use proc_macro::TokenStream;

/// Runs an `async fn` only while it holds a distributed lock.
///
/// ```
/// use lockattr::distributed_lock;
/// # #[derive(Debug)] struct AppError;
/// # impl From<lockattr::LockError> for AppError { fn from(_: lockattr::LockError) -> Self { AppError } }
///
/// #[distributed_lock(key = "flush:<tenant>", ttl = "30s", on_conflict = "skip")]
/// async fn flush(tenant: &str) -> Result<(), AppError> {
///     // Runs on at most one instance at a time per tenant.
///     Ok(())
/// }
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// # lockattr::init("memory://doc-flush").await.unwrap();
/// flush("acme").await.unwrap();
/// # }
/// ```
///
/// Before the body runs, the generated code builds the key from the arguments, takes the
/// lock from the configured backend ([`lockattr::init`](../lockattr/fn.init.html)), runs
/// the body while the lease holds, and gives the lock back. The signature is unchanged.
///
/// # Options
///
/// `key`, `ttl` and `on_conflict` are required: a lock without them does not compile.
///
/// - **`key`** (string, required): static text of `A-Z a-z 0-9 . _ : / -` plus
///   placeholders `<param>`, `<param.field.sub>`, `<param.0>` or `<self.field>`, each
///   naming a parameter whose value implements `Display`, or a name bound inside a
///   destructured parameter (`<id>` for `Path(id): Path<u64>`, for
///   `Json(Job { id, .. }): Json<Job>` or for `(id, n): (u64, u32)`). Values are escaped (bytes
///   outside `[A-Za-z0-9._-]` become `%XX`), and two placeholders need a `:` or `/`
///   between them, so different arguments always give different keys.
///   `key = "import:<job.id>/<day>"`
/// - **`ttl`** (duration, required): the longest the lock is held. A holder that crashes
///   or stalls loses it after this; a body still running then is cancelled and the call
///   returns [`LockError::Lost`](../lockattr/enum.LockError.html). At least 10ms: a
///   shorter lease can run out before the backend's grant arrives, and the runtime refuses
///   a grant that comes after its lease ran out. Durations are a whole number and a unit
///   (`ms`, `s`, `m`, `h`, `d`), possibly several (`"1m30s"`), from 1ms to 30 days.
///   `ttl = "30s"`
/// - **`on_conflict`** (required): what happens when another holder has the key.
///   - `"skip"`: do not run; return the type's "skipped" value (`()`, `None`, `Ok(())`,
///     `Ok(None)`; see [`Skippable`](../lockattr/trait.Skippable.html)).
///     `on_conflict = "skip"`
///   - `"error"`: return `Err(LockError::Conflict.into())`; needs `Result<T, E>` with
///     `E: From<LockError>`. `on_conflict = "error"`
///   - `"wait"`: wait up to `wait` for the key (notified where the backend can, first
///     come first served), then `Err(LockError::Timeout.into())`.
///     `on_conflict = "wait", wait = "10s"`
///   - `"retry"`: try again `retries` times, `backoff` apart (±50% jitter), then skip.
///     `on_conflict = "retry", retries = 3, backoff = "200ms"`
/// - **`wait`** (duration, required with `"wait"`, refused otherwise): the longest to
///   wait. `wait = "10s"`
/// - **`retries`** (integer 1–10000, required with `"retry"`, refused otherwise): how many
///   more tries after the first. `retries = 3`
/// - **`backoff`** (duration, required with `"retry"`, refused otherwise): the pause
///   between tries. `backoff = "200ms"`
/// - **`min_hold`** (duration shorter than `ttl`, default none): keep the key taken this
///   long after acquisition even if the body ends sooner, and even if the process exits,
///   so that instances whose clocks disagree do not run a scheduled job twice.
///   `min_hold = "10s"`
/// - **`every`** (duration of at least 10ms, default none; only with `on_conflict = "skip"`,
///   not with `min_hold`): a scheduled job that runs once per period across every instance.
///   The key stays taken until the end of the window of the period the call belongs to:
///   the period whose start, a multiple of `every` since the Unix epoch, is nearest to the
///   call by the backend's clock, and whose window ends half a period after that start. So
///   the other instances' ticks of that period skip, and the next period's ticks find the
///   key free.
///   `lockattr::current()?.period()` names the period. `every = "1m"`
/// - **`at`** (duration shorter than `every`, default none; only with `every`): the offset of
///   the periods from the multiples of `every`, for a schedule that fires off them (hourly at
///   half past: `every = "1h", at = "30m"`).
/// - **`renew`** (bool, default `false`): extend the lease by `ttl` every `ttl / 3` while
///   the body runs; if a renewal fails the body is cancelled with `Lost`. A crashed
///   holder still frees the key after `ttl`. `renew = true`
/// - **`backend`** (string, default: the default backend): a backend registered with
///   [`lockattr::init_named`](../lockattr/fn.init_named.html). `backend = "pg"`
/// - **`crate`** (path as a string, default `::lockattr`): where to find lockattr when
///   the dependency is renamed. `crate = "my_locks"`
///
/// ```
/// use lockattr::{distributed_lock, LockError};
///
/// struct Importer { shard: u32 }
///
/// impl Importer {
///     #[distributed_lock(
///         key = "import:<self.shard>/<day>",
///         ttl = "5m",
///         on_conflict = "wait",
///         wait = "30s",
///         renew = true,
///         min_hold = "10s",
///     )]
///     async fn import(&self, day: u32) -> Result<usize, LockError> {
///         let lock = lockattr::current().expect("held while the body runs");
///         // Pass the fencing token to the storage you write to.
///         let _fence = lock.token();
///         Ok(0)
///     }
/// }
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// # lockattr::init("memory://doc-import").await.unwrap();
/// assert_eq!(Importer { shard: 3 }.import(20240501).await.unwrap(), 0);
/// # }
/// ```
///
/// # What comes back when the body does not run
///
/// | outcome | `()` / `Option<T>` | `Result<T, E>` |
/// | --- | --- | --- |
/// | skipped (`"skip"`, `"retry"` ran out) | `()` / `None` | `Ok(skipped)` (`()` or `None`) |
/// | conflict (`"error"`), timeout (`"wait"`) | does not compile | `Err(LockError::…into())` |
/// | backend unreachable, lease lost, no backend configured | logged with `tracing::error!`, `()` / `None` | `Err(LockError::…into())` |
///
/// The body never runs without the lock.
///
/// # Equivalent code without the attribute
///
/// `flush` above does what this does by hand (the generated code calls one runtime
/// function that also cancels the body when the lease is lost, renews, and logs):
///
/// ```
/// use std::time::Duration;
/// # #[derive(Debug)] struct AppError;
/// # impl From<lockattr::LockError> for AppError { fn from(_: lockattr::LockError) -> Self { AppError } }
///
/// async fn flush(tenant: &str) -> Result<(), AppError> {
///     let key = format!("flush:{}", lockattr::key::escape(tenant));
///     let Some(guard) = lockattr::lock(key).ttl(Duration::from_secs(30)).try_acquire().await? else {
///         return Ok(()); // held elsewhere: skipped
///     };
///     let result = tokio::time::timeout_at(guard.deadline().into(), async {
///         // the body
///         Ok::<(), AppError>(())
///     })
///     .await;
///     match result {
///         Ok(out) => {
///             guard.release().await?;
///             out
///         }
///         Err(_elapsed) => Err(lockattr::LockError::Lost {
///             key: guard.key().to_owned(),
///             backend: guard.locks().backend_name().to_owned(),
///             reason: "the ttl ran out while the body ran".into(),
///         }
///         .into()),
///     }
/// }
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// # lockattr::init("memory://doc-equivalent").await.unwrap();
/// flush("acme").await.unwrap();
/// # }
/// ```
///
/// # Compile-time checks
///
/// Unknown (with "did you mean"), repeated and missing options; durations that do not
/// parse, are zero or out of range; a `ttl` or `every` under 10ms; `min_hold >= ttl`;
/// `every` with a policy other than `"skip"` or with `min_hold`, `at` without `every` or not
/// shorter than it; `wait`,
/// `retries` or `backoff` with the wrong policy or missing with the right one; an unknown
/// `on_conflict`; an empty key, a placeholder naming no parameter, an unterminated `<`,
/// an empty `<>`, characters outside `A-Z a-z 0-9 . _ : / -` in the static text,
/// placeholders without a `:` or `/` between them; a function that is not `async`; a
/// return type that cannot express the policy (reported on the return type); a
/// placeholder whose value does not implement `Display` (reported on the placeholder
/// inside the string).
///
/// ```compile_fail
/// # use lockattr::distributed_lock;
/// // error: missing `ttl` …
/// #[distributed_lock(key = "report", on_conflict = "skip")]
/// async fn report() {}
/// ```
#[proc_macro_attribute]
pub fn distributed_lock(args: TokenStream, item: TokenStream) -> TokenStream {
    expand::distributed_lock(args.into(), item.into()).into()
}
