use lockattr::distributed_lock;

struct Path<T>(T);
struct Id(u64);

// The binding `id` has no `Display`: rustc points at `<id>` inside the key.
#[distributed_lock(key = "job:<id>", ttl = "30s", on_conflict = "skip")]
async fn job(Path(id): Path<Id>) {
    let _ = id.0;
}

fn main() {}
