use lockattr::distributed_lock;

#[distributed_lock(key = "copy:<from>-<to>", ttl = "30s", on_conflict = "skip")]
async fn copy(from: &str, to: &str) {
    let _ = (from, to);
}

fn main() {}
