use lockattr::distributed_lock;

#[distributed_lock(key = "report", ttl = "30s", on_conflict = "skip", wait = "5s")]
async fn report() {}

fn main() {}
