use lockattr::distributed_lock;

#[distributed_lock(key = "report", ttl = 30, on_conflict = "retry", retries = "3", backoff = "1s", renew = 1)]
async fn report() {}

fn main() {}
