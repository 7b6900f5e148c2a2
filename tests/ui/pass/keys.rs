//! Keys whose placeholders make unusual names: upper-case fields, tuple fields, raw
//! identifiers (`r#type`), the same value twice, a key that starts with a placeholder.
#![deny(warnings)]

use lockattr::distributed_lock;

#[allow(non_snake_case)]
struct Config {
    ID: u32,
    pair: (u32, &'static str),
    r#type: &'static str,
}

#[distributed_lock(key = "upper:<cfg.ID>", ttl = "30s", on_conflict = "skip")]
async fn upper(cfg: &Config) -> Option<u32> {
    Some(cfg.ID)
}

#[distributed_lock(key = "<cfg.pair.0>:<cfg.pair.1>/<cfg.pair.0>", ttl = "30s", on_conflict = "skip")]
async fn tuple(cfg: &Config) -> Option<u32> {
    Some(cfg.pair.0)
}

#[distributed_lock(key = "raw:<type>", ttl = "30s", on_conflict = "skip")]
async fn raw(r#type: &str) -> Option<String> {
    lockattr::current().map(|lock| format!("{}={}", r#type, lock.key()))
}

#[distributed_lock(key = "raw-field:<cfg.type>", ttl = "30s", on_conflict = "skip")]
async fn raw_field(cfg: &Config) -> Option<String> {
    lockattr::current().map(|lock| lock.key().to_owned())
}

#[distributed_lock(key = "static", ttl = "30s", on_conflict = "skip")]
async fn no_placeholder() -> Option<String> {
    lockattr::current().map(|lock| lock.key().to_owned())
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    lockattr::init("memory://pass-keys").await.unwrap();
    let cfg = Config { ID: 1, pair: (2, "b c"), r#type: "t" };
    assert_eq!(upper(&cfg).await, Some(1));
    assert_eq!(tuple(&cfg).await, Some(2));
    assert_eq!(raw("a").await.as_deref(), Some("a=raw:a"));
    assert_eq!(raw_field(&cfg).await.as_deref(), Some("raw-field:t"));
    assert_eq!(no_placeholder().await.as_deref(), Some("static"));
}
