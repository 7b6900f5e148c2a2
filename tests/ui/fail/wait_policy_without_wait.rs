use lockattr::distributed_lock;

#[distributed_lock(key = "report", ttl = "30s", on_conflict = "wait")]
async fn report() -> Result<(), lockattr::LockError> {
    Ok(())
}

fn main() {}
