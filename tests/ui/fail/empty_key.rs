use lockattr::distributed_lock;

#[distributed_lock(key = "", ttl = "30s", on_conflict = "skip")]
async fn report() {}

fn main() {}
