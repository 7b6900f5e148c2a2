use lockattr::distributed_lock;

#[derive(Debug)]
struct AppError;

#[distributed_lock(key = "report", ttl = "30s", on_conflict = "error")]
async fn report() -> Result<(), AppError> {
    Ok(())
}

fn main() {}
