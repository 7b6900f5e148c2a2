use lockattr::distributed_lock;

// Every mistake is reported in one pass.
#[distributed_lock(key = "flush:<tenent>", ttl = "30", on_conflict = "skip", wiat = "5s")]
fn flush(tenant: &str) {
    let _ = tenant;
}

fn main() {}
