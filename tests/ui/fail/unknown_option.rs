use lockattr::distributed_lock;

#[distributed_lock(key = "report", ttl = "30s", on_conflict = "skip", renw = true, colour = "red")]
async fn report() {}

fn main() {}
