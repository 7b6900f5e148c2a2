//! A body that starts with inner attributes: they apply to the whole function, as they
//! would without the lock.
#![deny(warnings)]

use lockattr::distributed_lock;

#[distributed_lock(key = "quiet", ttl = "30s", on_conflict = "skip")]
async fn quiet() {
    #![allow(unused)]
    let never_read = 1;
}

/// Outer and inner attributes together.
#[doc(alias = "outer")]
#[distributed_lock(key = "both:<n>", ttl = "30s", on_conflict = "skip")]
#[inline]
async fn both(n: u32) -> Option<u32> {
    #![allow(unused_variables)]
    #![allow(clippy::let_and_return)]
    let unused = n;
    let out = Some(n);
    out
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    lockattr::init("memory://pass-inner").await.unwrap();
    quiet().await;
    assert_eq!(both(3).await, Some(3));
}
