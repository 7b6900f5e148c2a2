//! Methods with every receiver, associated functions, trait methods and `mut` parameters.
#![deny(warnings)]

use lockattr::{distributed_lock, LockError};

#[derive(Debug, PartialEq)]
struct Counter {
    shard: u32,
    runs: u32,
}

impl Counter {
    #[distributed_lock(key = "new:<shard>", ttl = "30s", on_conflict = "skip")]
    async fn new(shard: u32) -> Option<Self> {
        Some(Counter { shard, runs: 0 })
    }

    #[distributed_lock(key = "peek:<self.shard>", ttl = "30s", on_conflict = "skip")]
    async fn peek(&self) -> Option<u32> {
        Some(self.runs)
    }

    #[distributed_lock(key = "bump:<self.shard>", ttl = "30s", on_conflict = "error")]
    async fn bump(&mut self) -> Result<u32, LockError> {
        self.runs += 1;
        Ok(self.runs)
    }

    #[distributed_lock(key = "into:<self.shard>", ttl = "30s", on_conflict = "wait", wait = "1s")]
    async fn into_runs(self) -> Result<u32, LockError> {
        Ok(self.runs)
    }

    #[distributed_lock(key = "reset:<self.shard>", ttl = "30s", on_conflict = "skip")]
    async fn reset(mut self) -> Option<Self> {
        self.runs = 0;
        Some(self)
    }

    #[distributed_lock(key = "boxed:<self.shard>", ttl = "30s", on_conflict = "skip")]
    async fn boxed(self: Box<Self>) -> Option<u32> {
        Some(self.runs)
    }
}

trait Job {
    async fn run(&self, day: u32) -> Option<u32>;
}

impl Job for Counter {
    #[distributed_lock(key = "job:<self.shard>/<day>", ttl = "30s", on_conflict = "skip")]
    async fn run(&self, day: u32) -> Option<u32> {
        Some(self.shard + day)
    }
}

#[distributed_lock(key = "count:<n>", ttl = "30s", on_conflict = "skip")]
async fn count_down(mut n: u32) -> Option<u32> {
    while n > 0 {
        n -= 1;
    }
    Some(n)
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    lockattr::init("memory://pass-methods").await.unwrap();
    let mut counter = Counter::new(1).await.unwrap();
    assert_eq!(counter.bump().await.unwrap(), 1);
    assert_eq!(counter.peek().await, Some(1));
    assert_eq!(counter.run(2).await, Some(3));
    let counter = counter.reset().await.unwrap();
    assert_eq!(Box::new(Counter { shard: 2, runs: 4 }).boxed().await, Some(4));
    assert_eq!(counter.into_runs().await.unwrap(), 0);
    assert_eq!(count_down(3).await, Some(0));
}
