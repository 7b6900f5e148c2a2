//! Every `on_conflict` policy with every return type it allows, with `?` in the body.
#![deny(warnings)]

use lockattr::{distributed_lock, LockError};

#[derive(Debug)]
struct AppError;

impl From<LockError> for AppError {
    fn from(_: LockError) -> Self {
        Self
    }
}

fn parse(text: &str) -> Result<u32, AppError> {
    text.parse().map_err(|_| AppError)
}

#[distributed_lock(key = "skip:unit:<n>", ttl = "30s", on_conflict = "skip")]
async fn skip_unit(n: u32) {
    assert_eq!(n, 1);
}

#[distributed_lock(key = "skip:option:<n>", ttl = "30s", on_conflict = "skip")]
async fn skip_option(n: u32) -> Option<u32> {
    let doubled = n.checked_mul(2)?;
    Some(doubled)
}

#[distributed_lock(key = "skip:result:<text>", ttl = "30s", on_conflict = "skip")]
async fn skip_result(text: &str) -> Result<(), AppError> {
    parse(text)?;
    Ok(())
}

#[distributed_lock(key = "skip:result-option:<text>", ttl = "30s", on_conflict = "skip")]
async fn skip_result_option(text: &str) -> Result<Option<u32>, AppError> {
    let n = parse(text)?;
    Ok(Some(n))
}

#[distributed_lock(key = "retry:unit:<n>", ttl = "30s", on_conflict = "retry", retries = 3, backoff = "10ms")]
async fn retry_unit(n: u32) {
    assert_eq!(n, 1);
}

#[distributed_lock(key = "retry:option:<n>", ttl = "30s", on_conflict = "retry", retries = 3, backoff = "10ms")]
async fn retry_option(n: u32) -> Option<u32> {
    let doubled = n.checked_mul(2)?;
    Some(doubled)
}

#[distributed_lock(key = "retry:result:<text>", ttl = "30s", on_conflict = "retry", retries = 3, backoff = "10ms")]
async fn retry_result(text: &str) -> Result<(), LockError> {
    assert!(!text.is_empty());
    Ok(())
}

#[distributed_lock(key = "retry:result-option:<text>", ttl = "30s", on_conflict = "retry", retries = 1, backoff = "1s")]
async fn retry_result_option(text: &str) -> Result<Option<u32>, AppError> {
    let n = parse(text)?;
    Ok(Some(n))
}

#[distributed_lock(key = "error:<text>", ttl = "30s", on_conflict = "error")]
async fn error_result(text: &str) -> Result<u32, AppError> {
    let n = parse(text)?;
    Ok(n + 1)
}

#[distributed_lock(key = "error:lock-error:<text>", ttl = "30s", on_conflict = "error")]
async fn error_lock_error(text: &str) -> Result<String, LockError> {
    Ok(text.to_uppercase())
}

#[distributed_lock(key = "wait:<text>", ttl = "30s", on_conflict = "wait", wait = "1s")]
async fn wait_result(text: &str) -> Result<u32, AppError> {
    let n = parse(text)?;
    Ok(n + 1)
}

#[distributed_lock(key = "wait:unit:<text>", ttl = "30s", on_conflict = "wait", wait = "2m")]
async fn wait_result_unit(text: &str) -> Result<(), LockError> {
    assert!(!text.is_empty());
    Ok(())
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    lockattr::init("memory://pass-policies").await.unwrap();
    skip_unit(1).await;
    assert_eq!(skip_option(2).await, Some(4));
    assert!(skip_result("x").await.is_err());
    assert_eq!(skip_result_option("5").await.unwrap(), Some(5));
    retry_unit(1).await;
    assert_eq!(retry_option(u32::MAX).await, None);
    retry_result("x").await.unwrap();
    assert_eq!(retry_result_option("6").await.unwrap(), Some(6));
    assert_eq!(error_result("1").await.unwrap(), 2);
    assert_eq!(error_lock_error("a").await.unwrap(), "A");
    assert_eq!(wait_result("2").await.unwrap(), 3);
    wait_result_unit("x").await.unwrap();
}
