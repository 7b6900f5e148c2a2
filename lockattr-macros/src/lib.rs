//! The `#[distributed_lock]` attribute of [lockattr](https://docs.rs/lockattr).
//!
//! Use it through the `lockattr` crate, which re-exports it with its documentation.
#![warn(missing_docs)]

mod args;
mod duration;
mod errors;
mod expand;
mod template;
mod validate;

use proc_macro::TokenStream;

/// Placeholder docs.
#[proc_macro_attribute]
pub fn distributed_lock(args: TokenStream, item: TokenStream) -> TokenStream {
    expand::distributed_lock(args.into(), item.into()).into()
}
