use lockattr::distributed_lock;

#[distributed_lock(key = "report", ttl = "30s", min_hold = "30s", on_conflict = "skip")]
async fn report() {}

fn main() {}
