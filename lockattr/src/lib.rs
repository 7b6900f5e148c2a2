//! lockattr: distributed locks written as one attribute. See the README for the overview.
#![warn(missing_docs)]

pub use lockattr_macros::distributed_lock;
pub use lockattr_runtime::*;
