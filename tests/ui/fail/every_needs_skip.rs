use lockattr::{distributed_lock, LockError};

#[distributed_lock(key = "report", ttl = "30s", on_conflict = "wait", wait = "5s", every = "1m")]
async fn report() -> Result<(), LockError> {
    Ok(())
}

fn main() {}
