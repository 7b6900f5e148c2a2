use lockattr::distributed_lock;

#[distributed_lock(key = "report", ttl = "0s", on_conflict = "skip")]
async fn report() {}

fn main() {}
