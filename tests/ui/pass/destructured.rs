//! Placeholders naming bindings inside destructured parameters, as web handlers take
//! them: a tuple struct (`Path(id)`), a struct inside one (`Json(Job { id, .. })`), a
//! tuple, a reference, a renamed field, `ref` and `mut` bindings, with a field path.
#![deny(warnings)]

use lockattr::distributed_lock;

struct Path<T>(T);
struct Json<T>(T);

struct Job {
    id: u64,
    tenant: String,
    body: Vec<u8>,
}

struct Shard {
    name: &'static str,
}

#[distributed_lock(key = "job:<id>", ttl = "30s", on_conflict = "skip")]
async fn by_path(Path(id): Path<u64>) -> Option<u64> {
    // The body owns `id`: the key borrowed it before the body's `async move`.
    let owned: u64 = id;
    Some(owned)
}

#[distributed_lock(key = "job:<tenant>/<id>", ttl = "30s", on_conflict = "skip")]
async fn by_json(Json(Job { id, tenant, .. }): Json<Job>) -> Option<String> {
    let key = lockattr::current().map(|lock| lock.key().to_owned());
    drop(tenant);
    key.filter(|_| id > 0)
}

#[distributed_lock(key = "pair:<a>:<b>", ttl = "30s", on_conflict = "skip")]
async fn pair((a, b): (u32, u32)) -> Option<String> {
    lockattr::current().map(|lock| format!("{}={}", a + b, lock.key()))
}

#[distributed_lock(key = "renamed:<job_id>/<shard.name>", ttl = "30s", on_conflict = "skip")]
async fn renamed(
    &Job { id: job_id, ref body, .. }: &Job,
    (shard, mut n): (Shard, usize),
) -> Option<String> {
    n += body.len();
    lockattr::current().map(|lock| format!("{job_id}:{}:{n}:{}", shard.name, lock.key()))
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    lockattr::init("memory://pass-destructured").await.unwrap();
    assert_eq!(by_path(Path(7)).await, Some(7));
    let job = Job { id: 3, tenant: "acme".into(), body: vec![1, 2] };
    assert_eq!(by_json(Json(job)).await.as_deref(), Some("job:acme/3"));
    assert_eq!(pair((1, 2)).await.as_deref(), Some("3=pair:1:2"));
    let job = Job { id: 9, tenant: String::new(), body: vec![0] };
    assert_eq!(
        renamed(&job, (Shard { name: "eu" }, 1)).await.as_deref(),
        Some("9:eu:2:renamed:9/eu")
    );
}
