use lockattr::distributed_lock;

// Only "unknown option `tll`; did you mean `ttl`?", not also "missing `ttl`".
#[distributed_lock(key = "report", tll = "30s", on_conflict = "skip")]
async fn report() {}

// Only "unknown option `wiat`; did you mean `wait`?", not also "needs `wait`".
#[distributed_lock(key = "export", ttl = "30s", on_conflict = "wait", wiat = "5s")]
async fn export() -> Result<(), lockattr::LockError> {
    Ok(())
}

fn main() {}
