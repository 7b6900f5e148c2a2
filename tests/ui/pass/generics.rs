//! Generic functions, lifetimes, `where` clauses, `impl Trait` arguments and return types.
#![deny(warnings)]

use std::fmt::Display;

use lockattr::{distributed_lock, LockError};

#[distributed_lock(key = "generic:<id>", ttl = "30s", on_conflict = "skip")]
async fn generic<T: Display + Sync>(id: T) -> Option<String> {
    Some(id.to_string())
}

#[distributed_lock(key = "where:<id>", ttl = "30s", on_conflict = "skip")]
async fn with_where<T>(id: &T) -> Option<String>
where
    T: Display + ?Sized + Sync,
{
    Some(id.to_string())
}

#[distributed_lock(key = "impl:<id>", ttl = "30s", on_conflict = "error")]
async fn impl_arg(id: impl Display, f: impl Fn(String) -> usize) -> Result<usize, LockError> {
    Ok(f(id.to_string()))
}

#[distributed_lock(key = "lifetimes:<a>/<b>", ttl = "30s", on_conflict = "skip")]
async fn lifetimes<'a, 'b>(a: &'a str, b: &'b str) -> Option<&'a str> {
    assert!(!b.is_empty());
    Some(a)
}

#[distributed_lock(key = "const:<n>", ttl = "30s", on_conflict = "skip")]
async fn const_generic<const N: usize>(n: u8) -> Option<[u8; N]> {
    Some([n; N])
}

#[distributed_lock(key = "impl-return:<n>", ttl = "30s", on_conflict = "wait", wait = "1s")]
async fn impl_return(n: u32) -> Result<impl Display, LockError> {
    Ok(n)
}

#[distributed_lock(key = "impl-return-skip:<n>", ttl = "30s", on_conflict = "skip")]
async fn impl_return_skip(n: u32) -> Option<impl Display> {
    Some(n)
}

struct Wrapper<T>(T);

impl<T: Display + Sync> Wrapper<T> {
    #[distributed_lock(key = "wrapper:<self.0>", ttl = "30s", on_conflict = "skip")]
    async fn show(&self) -> Option<String> {
        Some(self.0.to_string())
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    lockattr::init("memory://pass-generics").await.unwrap();
    assert_eq!(generic(1).await.as_deref(), Some("1"));
    assert_eq!(with_where("a").await.as_deref(), Some("a"));
    assert_eq!(impl_arg(12, |s| s.len()).await.unwrap(), 2);
    assert_eq!(lifetimes("a", "b").await, Some("a"));
    assert_eq!(const_generic::<2>(7).await, Some([7, 7]));
    assert_eq!(impl_return(3).await.unwrap().to_string(), "3");
    assert_eq!(impl_return_skip(4).await.unwrap().to_string(), "4");
    assert_eq!(Wrapper(5).show().await.as_deref(), Some("5"));
}
