use lockattr::distributed_lock;

#[distributed_lock(key = "report", ttl = "30s", on_conflict = "retry", retries = 3, backoff = "0ms")]
async fn report() {}

fn main() {}
