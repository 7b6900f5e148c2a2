use lockattr::distributed_lock;

struct Meta;

struct Job {
    meta: Meta,
}

#[distributed_lock(key = "<job.meta>:import", ttl = "30s", on_conflict = "skip")]
async fn import(job: &Job) {
    let _ = job;
}

fn main() {}
