//! Locks on web handlers: each handler takes its key from the request's path, and a lock
//! error answers for itself (`LockError: IntoResponse`, feature `axum`): 409 Conflict with
//! `Retry-After` while another request holds the key, 503 when the wait runs out.
//!
//! ```sh
//! cargo run -p lockattr-examples --features axum --example axum             # a demo, then exits
//! cargo run -p lockattr-examples --features axum --example axum -- serve    # on 127.0.0.1:3000
//! curl -i -X POST 127.0.0.1:3000/reports/7/export & curl -i -X POST 127.0.0.1:3000/reports/7/export
//! ```

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use lockattr::{distributed_lock, LockError};

/// One export of a report at a time across every instance of the service: a second
/// request for the same report meanwhile gets 409 Conflict, `Retry-After: 1`.
#[distributed_lock(key = "export:<id>", ttl = "30s", on_conflict = "error")]
async fn export(Path(id): Path<u64>) -> Result<String, LockError> {
    // The export itself: long enough for a second request to find the lock taken.
    tokio::time::sleep(Duration::from_millis(300)).await;
    Ok(format!("report {id} exported\n"))
}

/// The billing service of one region; its invoices are locked per region and invoice.
struct Billing {
    region: String,
    known: std::ops::RangeInclusive<u64>,
}

/// The application's error: a lock error answers as `LockError` does, the rest as the
/// application decides.
#[derive(Debug)]
enum AppError {
    Lock(LockError),
    NoSuchInvoice(u64),
}

impl From<LockError> for AppError {
    fn from(error: LockError) -> Self {
        AppError::Lock(error)
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        match self {
            AppError::Lock(error) => error.into_response(),
            AppError::NoSuchInvoice(id) => {
                (StatusCode::NOT_FOUND, format!("no invoice {id}\n")).into_response()
            }
        }
    }
}

impl Billing {
    /// Waits up to 1 s for another request on the same invoice, then answers 503.
    #[distributed_lock(
        key = "invoice:<self.region>/<id>",
        ttl = "30s",
        on_conflict = "wait",
        wait = "1s"
    )]
    async fn issue(&self, Path(id): Path<u64>) -> Result<String, AppError> {
        if !self.known.contains(&id) {
            return Err(AppError::NoSuchInvoice(id));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        let token = lockattr::current().map_or(0, |lock| lock.token());
        Ok(format!(
            "invoice {id} issued in {} (fencing token {token})\n",
            self.region
        ))
    }
}

async fn issue(State(billing): State<Arc<Billing>>, id: Path<u64>) -> Result<String, AppError> {
    billing.issue(id).await
}

fn app(billing: Arc<Billing>) -> Router {
    Router::new()
        .route("/reports/{id}/export", post(export))
        .route("/invoices/{id}", post(issue))
        .with_state(billing)
}

/// Calls the handlers directly, as two concurrent requests would, and prints the answers.
async fn demo(billing: Arc<Billing>) {
    let (first, second) = tokio::join!(export(Path(7)), async {
        tokio::time::sleep(Duration::from_millis(50)).await;
        export(Path(7)).await
    });
    for answer in [first.into_response(), second.into_response()] {
        println!(
            "POST /reports/7/export -> {} {:?}",
            answer.status(),
            answer.headers().get("retry-after")
        );
    }
    let (a, b) = tokio::join!(billing.issue(Path(1)), billing.issue(Path(1)));
    for answer in [a.into_response(), b.into_response()] {
        println!("POST /invoices/1 -> {}", answer.status());
    }
    let missing = billing.issue(Path(99)).await.into_response();
    println!("POST /invoices/99 -> {}", missing.status());
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // `memory://` by default; `LOCKATTR_URL=sqlite://locks.db` shares the locks between
    // the processes of this host.
    let url = std::env::var(lockattr::URL_ENV).unwrap_or_else(|_| "memory://".to_owned());
    lockattr::init(&url).await?;
    let billing = Arc::new(Billing {
        region: "eu".to_owned(),
        known: 1..=10,
    });
    if std::env::args().nth(1).as_deref() == Some("serve") {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
        println!("listening on http://{}", listener.local_addr()?);
        axum::serve(listener, app(billing)).await?;
    } else {
        let _router = app(billing.clone());
        demo(billing).await;
    }
    Ok(())
}
