use lockattr::distributed_lock;

#[distributed_lock(key = "report", ttl = "30s", ttl = "1m", on_conflict = "skip")]
async fn report() {}

fn main() {}
