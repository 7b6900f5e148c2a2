//! The `#[distributed_lock]` attribute.
use proc_macro::TokenStream;

/// Placeholder.
#[proc_macro_attribute]
pub fn distributed_lock(_args: TokenStream, item: TokenStream) -> TokenStream {
    item
}
