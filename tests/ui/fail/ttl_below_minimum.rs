use lockattr::distributed_lock;

// The runtime refuses a grant that arrives after the ttl: a ttl this short would never run.
#[distributed_lock(key = "report", ttl = "9ms", on_conflict = "skip")]
async fn report() {}

#[distributed_lock(key = "export", ttl = "0s", on_conflict = "skip")]
async fn export() {}

fn main() {}
