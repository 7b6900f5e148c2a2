use lockattr::distributed_lock;

#[distributed_lock(key = "report", ttl = "30s", on_conflict = "skip", at = "30m")]
async fn report() {}

fn main() {}
