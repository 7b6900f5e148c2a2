use lockattr::distributed_lock;

#[distributed_lock(key = "flush:<>", ttl = "30s", on_conflict = "skip")]
async fn flush(tenant: &str) {
    let _ = tenant;
}

fn main() {}
