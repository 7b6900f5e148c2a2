use lockattr::distributed_lock;

#[distributed_lock(key = "count", ttl = "30s", on_conflict = "skip")]
async fn count() -> Option<u32> {
    Some(1);
}

#[distributed_lock(key = "name", ttl = "30s", on_conflict = "skip")]
async fn name() -> Option<u32> {
    Some("name")
}

fn main() {}
