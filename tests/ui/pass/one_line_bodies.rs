//! Bodies that are a single expression: the generated code must not leave braces around
//! it that rustc calls unnecessary (`unused_braces`).
#![deny(warnings)]

use lockattr::{distributed_lock, LockError};

struct Job {
    id: u64,
}

#[derive(Debug)]
struct AppError;

impl From<LockError> for AppError {
    fn from(_: LockError) -> Self {
        Self
    }
}

#[distributed_lock(key = "b:<job.id>", ttl = "30s", on_conflict = "error")]
async fn b(job: &Job) -> Result<u64, AppError> { Ok(job.id) }

#[distributed_lock(key = "opt:<job.id>", ttl = "30s", on_conflict = "skip")]
async fn opt(job: &Job) -> Option<u64> { Some(job.id) }

#[distributed_lock(key = "unit:<job.id>", ttl = "30s", on_conflict = "skip")]
async fn unit(job: &Job) { assert!(job.id > 0) }

#[distributed_lock(key = "empty:<job.id>", ttl = "30s", on_conflict = "skip")]
async fn empty(job: &Job) {}

#[distributed_lock(key = "wait:<job.id>", ttl = "30s", on_conflict = "wait", wait = "1s")]
async fn wait(job: &Job) -> Result<u64, LockError> { Ok(job.id) }

#[distributed_lock(key = "retry:<job.id>", ttl = "30s", on_conflict = "retry", retries = 1, backoff = "1s")]
async fn retry(job: &Job) -> Result<Option<u64>, AppError> { Ok(Some(job.id)) }

#[tokio::main(flavor = "current_thread")]
async fn main() {
    lockattr::init("memory://pass-one-line").await.unwrap();
    let job = Job { id: 7 };
    assert_eq!(b(&job).await.unwrap(), 7);
    assert_eq!(opt(&job).await, Some(7));
    unit(&job).await;
    empty(&job).await;
    assert_eq!(wait(&job).await.unwrap(), 7);
    assert_eq!(retry(&job).await.unwrap(), Some(7));
}
