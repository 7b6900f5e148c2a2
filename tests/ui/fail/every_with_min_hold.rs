use lockattr::distributed_lock;

#[distributed_lock(key = "report", ttl = "30s", on_conflict = "skip", every = "1m", min_hold = "10s")]
async fn report() {}

fn main() {}
