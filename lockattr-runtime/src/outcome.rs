//! What an annotated function returns when its body does not run.
//!
//! The attribute leaves the signature alone; these traits decide the value returned when
//! the lock is not taken. A return type that cannot express the chosen `on_conflict`
//! policy is a compile error whose text comes from the `#[diagnostic::on_unimplemented]`
//! notes below.

use crate::error::LockError;

/// Return types that have a "skipped" value, for `on_conflict = "skip"` and `"retry"`.
///
/// | type | skipped | the lock could not be taken for another reason (backend down, lost) |
/// | --- | --- | --- |
/// | `()` | `()` | logged with `tracing::error!`, returns `()` |
/// | `Option<T>` | `None` | logged with `tracing::error!`, returns `None` |
/// | `Result<T, E>` with `T: Skippable`, `E: From<LockError>` | `Ok(T::skipped())` | `Err(e.into())` |
///
/// In every case the body does not run: a lock that cannot be taken fails closed.
#[diagnostic::on_unimplemented(
    message = "`{Self}` has no \"skipped\" value for `on_conflict = \"skip\"` or `\"retry\"`",
    label = "the lock may be skipped, but this return type cannot say so",
    note = "return `()`, `Option<T>` (skipped is `None`), or `Result<T, E>` where `T` is one of those and `E: From<lockattr::LockError>`",
    note = "or choose `on_conflict = \"error\"` or `\"wait\"` and return `Result<T, E>`"
)]
pub trait Skippable: Sized {
    /// The value returned when the lock was held elsewhere and the body did not run.
    fn skipped() -> Self;
    /// The value returned when the lock could not be taken, or was lost, for a reason
    /// other than another holder.
    fn failed(error: LockError) -> Self;

    /// True when [`failed`](Self::failed) has nowhere to put the error (`()`, `Option<T>`):
    /// lockattr then reports it itself, so that a failure is never silent.
    #[doc(hidden)]
    const DROPS_ERRORS: bool = false;
}

/// Return types that can carry a [`LockError`], for `on_conflict = "error"` and `"wait"`:
/// `Result<T, E>` where `E: From<LockError>`.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot carry a `lockattr::LockError` for `on_conflict = \"error\"` or `\"wait\"`",
    label = "a conflict or timeout must be returned as an error, and this return type has no error channel",
    note = "return `Result<T, E>` where `E: From<lockattr::LockError>` (e.g. `Result<T, lockattr::LockError>`)",
    note = "or choose `on_conflict = \"skip\"` to return the type's \"skipped\" value instead"
)]
pub trait Fallible: Sized {
    /// The value returned when the lock was not taken or was lost.
    fn failed(error: LockError) -> Self;
}

impl Skippable for () {
    fn skipped() -> Self {}
    fn failed(_: LockError) -> Self {}
    const DROPS_ERRORS: bool = true;
}

impl<T> Skippable for Option<T> {
    fn skipped() -> Self {
        None
    }
    fn failed(_: LockError) -> Self {
        None
    }
    const DROPS_ERRORS: bool = true;
}

impl<T: Skippable, E: From<LockError>> Skippable for Result<T, E> {
    fn skipped() -> Self {
        Ok(T::skipped())
    }
    fn failed(error: LockError) -> Self {
        Err(error.into())
    }
}

impl<T, E: From<LockError>> Fallible for Result<T, E> {
    fn failed(error: LockError) -> Self {
        Err(error.into())
    }
}
