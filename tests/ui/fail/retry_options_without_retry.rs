use lockattr::distributed_lock;

#[distributed_lock(key = "report", ttl = "30s", on_conflict = "skip", retries = 3, backoff = "100ms")]
async fn report() {}

fn main() {}
