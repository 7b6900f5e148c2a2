use lockattr::distributed_lock;

#[distributed_lock(key = "report", ttl = "30s", on_conflict = "retry")]
async fn report() {}

fn main() {}
