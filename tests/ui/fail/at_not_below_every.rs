use lockattr::distributed_lock;

#[distributed_lock(key = "report", ttl = "30s", on_conflict = "skip", every = "1h", at = "1h")]
async fn report() {}

fn main() {}
