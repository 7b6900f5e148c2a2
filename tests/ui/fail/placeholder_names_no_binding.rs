use lockattr::distributed_lock;

struct Path<T>(T);

// `<id>` names no binding: the destructured parameters bind `a`, `b` and `job`.
#[distributed_lock(key = "pair:<a>/<id>", ttl = "30s", on_conflict = "skip")]
async fn pair((a, b): (u32, u32), Path(job): Path<u64>) {
    let _ = (a, b, job);
}

fn main() {}
