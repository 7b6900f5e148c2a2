use lockattr::distributed_lock;

struct Job {
    id: u64,
}

#[distributed_lock(key = "import:<job>", ttl = "30s", on_conflict = "skip")]
async fn import(job: Job) {
    let _ = job.id;
}

fn main() {}
