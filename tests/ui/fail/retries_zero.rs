use lockattr::distributed_lock;

#[distributed_lock(key = "report", ttl = "30s", on_conflict = "retry", retries = 0, backoff = "1s")]
async fn report() {}

fn main() {}
