use lockattr::distributed_lock;

#[distributed_lock(key = "report", ttl = "30s", on_conflict = "error")]
async fn report() -> Option<u32> {
    Some(1)
}

fn main() {}
