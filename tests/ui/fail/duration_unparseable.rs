use lockattr::distributed_lock;

#[distributed_lock(key = "report", ttl = "30", on_conflict = "skip")]
async fn report() {}

fn main() {}
