use lockattr::distributed_lock;

#[distributed_lock(key = "report", ttl = "400d", on_conflict = "skip")]
async fn report() {}

fn main() {}
