use lockattr::distributed_lock;

#[distributed_lock(key = "pair:<a>", ttl = "30s", on_conflict = "skip")]
async fn pair((a, b): (u32, u32)) {
    let _ = (a, b);
}

fn main() {}
