use lockattr::distributed_lock;

#[distributed_lock(key = "count", ttl = "30s", on_conflict = "skip")]
async fn count() -> u32 {
    1
}

fn main() {}
