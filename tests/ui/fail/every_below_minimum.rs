use lockattr::distributed_lock;

#[distributed_lock(key = "report", ttl = "30s", on_conflict = "skip", every = "5ms")]
async fn report() {}

fn main() {}
