//! lockattr's metrics in the Prometheus text format: a few locked calls that run, skip
//! and conflict, then the page a Prometheus server would scrape.
//!
//! ```sh
//! cargo run -p lockattr-examples --example metrics --features metrics
//! LOCKATTR_URL=redis://127.0.0.1:6379 cargo run -p lockattr-examples --example metrics --features metrics,redis
//! ```
//!
//! A service serves [`PrometheusHandle::render`] at its own `/metrics` route, or turns on
//! the exporter's `http-listener` feature and calls `PrometheusBuilder::install` to have
//! it listen by itself. This example only prints the page, which keeps its dependencies
//! (no HTTP server) and its build short.

use std::time::Duration;

use lockattr::{distributed_lock, LockError};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

/// Skips when another call holds the tenant's lock.
#[distributed_lock(key = "flush:<tenant>", ttl = "10s", on_conflict = "skip")]
async fn flush(tenant: &str) -> Option<()> {
    tokio::time::sleep(Duration::from_millis(100)).await;
    Some(())
}

/// Refuses (`LockError::Conflict`) when another call holds the report's lock.
#[distributed_lock(key = "report:<day>", ttl = "10s", on_conflict = "error")]
async fn report(day: u32) -> Result<(), LockError> {
    tokio::time::sleep(Duration::from_millis(100)).await;
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // The recorder first: calls made before it is installed are not counted.
    let prometheus: PrometheusHandle = PrometheusBuilder::new().install_recorder()?;

    let url = std::env::var(lockattr::URL_ENV).unwrap_or_else(|_| "memory://".to_owned());
    lockattr::init(&url).await?;

    // Two concurrent flushes of one tenant: one runs, the other skips.
    let (a, b) = tokio::join!(flush("acme"), flush("acme"));
    println!("flush: {a:?}, {b:?}");
    // Two concurrent reports of one day: one runs, the other is a conflict.
    let (a, b) = tokio::join!(report(7), report(7));
    println!("report: {}, {}", a.is_ok(), b.is_ok());

    println!("\n{}", prometheus.render());
    Ok(())
}
