//! The tracing events of `#[distributed_lock]`, one per fact, on `memory://`: each
//! outcome logs exactly its events, at their level, with `function`, `template`, `key`
//! and `backend`, captured by a real `tracing_subscriber` layer.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::sync::Mutex;
use std::time::Duration;

use lockattr::{distributed_lock, LockError, LockGuard};
use tracing::field::{Field, Visit};
use tracing::{Level, Subscriber};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};

mod suite;
use suite::{block_on, unique};

/// The events of the attribute itself; the handle's own (`lock released` of a dropped
/// guard) have other targets.
const TARGET: &str = "lockattr_runtime::locked_call";

#[derive(Debug, Clone)]
struct Event {
    level: Level,
    target: String,
    fields: BTreeMap<String, String>,
}

static EVENTS: Mutex<Vec<Event>> = Mutex::new(Vec::new());

struct Capture;

impl<S: Subscriber> Layer<S> for Capture {
    fn on_event(&self, event: &tracing::Event<'_>, _: Context<'_, S>) {
        let mut fields = Fields(BTreeMap::new());
        event.record(&mut fields);
        EVENTS.lock().unwrap().push(Event {
            level: *event.metadata().level(),
            target: event.metadata().target().to_owned(),
            fields: fields.0,
        });
    }
}

struct Fields(BTreeMap<String, String>);

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn Debug) {
        self.0.insert(field.name().to_owned(), format!("{value:?}"));
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.to_owned());
    }
}

/// Installs the capturing subscriber and the backend `"events"` once for the binary.
fn setup() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        tracing::subscriber::set_global_default(tracing_subscriber::registry().with(Capture))
            .unwrap();
        block_on(async {
            let locks = lockattr::connect("memory://").await.unwrap();
            lockattr::set_named("events", locks).unwrap();
        });
    });
}

/// Takes `key` on the `"events"` backend, as another instance would.
async fn held_elsewhere(key: &str) -> LockGuard {
    let locks = lockattr::configured(Some("events")).unwrap();
    locks
        .lock(key)
        .ttl(Duration::from_secs(30))
        .try_acquire()
        .await
        .unwrap()
        .expect("a free key")
}

/// One expected event: its level, message and the fields besides the four every event
/// carries; a value `"*"` means any value.
type Expected<'a> = (Level, &'a str, &'a [(&'a str, &'a str)]);

/// Asserts that the events about `key` are exactly `expected`: those of the attribute in
/// order, each with `function`, `template`, `key` and `backend`; and, of every target,
/// those at INFO or above are exactly the expected ones at INFO or above.
fn assert_events(
    function: &str,
    template: &str,
    key: &str,
    backend: &str,
    expected: &[Expected<'_>],
) {
    let all: Vec<Event> = EVENTS
        .lock()
        .unwrap()
        .iter()
        .filter(|e| e.fields.get("key").map(String::as_str) == Some(key))
        .cloned()
        .collect();
    let ours: Vec<&Event> = all.iter().filter(|e| e.target == TARGET).collect();
    assert_eq!(ours.len(), expected.len(), "events about {key}: {ours:#?}");
    for (event, (level, message, fields)) in ours.iter().zip(expected) {
        assert_eq!(event.level, *level, "{event:#?}");
        let mut want = BTreeMap::from([
            ("message", *message),
            ("function", function),
            ("template", template),
            ("key", key),
            ("backend", backend),
        ]);
        want.extend(fields.iter().copied());
        let names: Vec<&str> = event.fields.keys().map(String::as_str).collect();
        let wanted: Vec<&str> = want.keys().copied().collect();
        assert_eq!(names, wanted, "{event:#?}");
        for (name, value) in want {
            if value != "*" {
                assert_eq!(event.fields[name], value, "field {name} of {event:#?}");
            }
        }
    }
    let loud = |l: &Level| *l <= Level::INFO;
    let loud_all: Vec<&Event> = all.iter().filter(|e| loud(&e.level)).collect();
    let loud_expected = expected.iter().filter(|e| loud(&e.0)).count();
    assert_eq!(
        loud_all.len(),
        loud_expected,
        "INFO and above about {key}: {loud_all:#?}"
    );
}

fn function(name: &str) -> String {
    format!("{}::{name}", module_path!())
}

#[distributed_lock(
    key = "skip:<id>",
    ttl = "10s",
    on_conflict = "skip",
    backend = "events"
)]
async fn skip_fn(id: &str) -> Option<()> {
    Some(())
}

#[test]
fn skip_held_elsewhere_is_one_info() {
    setup();
    let id = unique("skip");
    let key = format!("skip:{id}");
    block_on(async {
        let _holder = held_elsewhere(&key).await;
        assert_eq!(skip_fn(&id).await, None);
    });
    let f = function("skip_fn");
    assert_events(
        &f,
        "skip:<id>",
        &key,
        "memory://",
        &[(
            Level::INFO,
            "lock not taken, call skipped",
            &[("reason", "held elsewhere")],
        )],
    );
}

#[distributed_lock(
    key = "retry:<id>",
    ttl = "10s",
    on_conflict = "retry",
    retries = 2,
    backoff = "10ms",
    backend = "events"
)]
async fn retry_fn(id: &str) -> Option<()> {
    Some(())
}

#[test]
fn retries_running_out_is_one_info() {
    setup();
    let id = unique("retry");
    let key = format!("retry:{id}");
    block_on(async {
        let _holder = held_elsewhere(&key).await;
        assert_eq!(retry_fn(&id).await, None);
    });
    let f = function("retry_fn");
    assert_events(
        &f,
        "retry:<id>",
        &key,
        "memory://",
        &[
            (
                Level::DEBUG,
                "lock held elsewhere, retrying",
                &[("attempt", "1")],
            ),
            (
                Level::DEBUG,
                "lock held elsewhere, retrying",
                &[("attempt", "2")],
            ),
            (
                Level::INFO,
                "lock not taken, call skipped",
                &[("reason", "retries ran out")],
            ),
        ],
    );
}

#[distributed_lock(
    key = "error:<id>",
    ttl = "10s",
    on_conflict = "error",
    backend = "events"
)]
async fn error_fn(id: &str) -> Result<(), LockError> {
    Ok(())
}

#[test]
fn conflict_is_one_info() {
    setup();
    let id = unique("conflict");
    let key = format!("error:{id}");
    block_on(async {
        let _holder = held_elsewhere(&key).await;
        let e = error_fn(&id).await.unwrap_err();
        assert!(matches!(e, LockError::Conflict { .. }), "{e}");
    });
    let f = function("error_fn");
    assert_events(
        &f,
        "error:<id>",
        &key,
        "memory://",
        &[(
            Level::INFO,
            "lock held elsewhere, call refused (conflict)",
            &[],
        )],
    );
}

#[test]
fn acquired_and_released_are_debug() {
    setup();
    let id = unique("free");
    let key = format!("error:{id}");
    block_on(async { error_fn(&id).await.unwrap() });
    let f = function("error_fn");
    assert_events(
        &f,
        "error:<id>",
        &key,
        "memory://",
        &[
            (
                Level::DEBUG,
                "lock acquired",
                &[("token", "*"), ("waited", "*")],
            ),
            (
                Level::DEBUG,
                "lock released",
                &[("token", "*"), ("held", "*")],
            ),
        ],
    );
}

#[distributed_lock(
    key = "wait:<id>",
    ttl = "10s",
    on_conflict = "wait",
    wait = "50ms",
    backend = "events"
)]
async fn wait_fn(id: &str) -> Result<(), LockError> {
    Ok(())
}

#[test]
fn timeout_is_one_info() {
    setup();
    let id = unique("wait");
    let key = format!("wait:{id}");
    block_on(async {
        let _holder = held_elsewhere(&key).await;
        let e = wait_fn(&id).await.unwrap_err();
        assert!(matches!(e, LockError::Timeout { .. }), "{e}");
    });
    let f = function("wait_fn");
    assert_events(
        &f,
        "wait:<id>",
        &key,
        "memory://",
        &[(Level::INFO, "lock wait timed out", &[("waited", "50ms")])],
    );
}

#[distributed_lock(
    key = "lost:<id>",
    ttl = "100ms",
    on_conflict = "error",
    backend = "events"
)]
async fn outlives_ttl(id: &str) -> Result<(), LockError> {
    tokio::time::sleep(Duration::from_millis(500)).await;
    unreachable!("the body of outlives_ttl({id}) ran past its lease");
}

#[test]
fn lost_lease_is_one_warn() {
    setup();
    let id = unique("lost");
    let key = format!("lost:{id}");
    block_on(async {
        let e = outlives_ttl(&id).await.unwrap_err();
        assert!(matches!(e, LockError::Lost { .. }), "{e}");
        // Let the dropped guard's background release run: it logs nothing above DEBUG.
        tokio::time::sleep(Duration::from_millis(200)).await;
    });
    let f = function("outlives_ttl");
    assert_events(
        &f,
        "lost:<id>",
        &key,
        "memory://",
        &[
            (
                Level::DEBUG,
                "lock acquired",
                &[("token", "*"), ("waited", "*")],
            ),
            (
                Level::WARN,
                "lock lost while the body ran",
                &[
                    (
                        "reason",
                        "the ttl ran out while the body ran; raise the ttl or set `renew = true`",
                    ),
                    ("held", "*"),
                ],
            ),
        ],
    );
}

#[distributed_lock(
    key = "closed:<id>",
    ttl = "10s",
    on_conflict = "skip",
    backend = "never-configured"
)]
async fn unconfigured(id: &str) {
    unreachable!("the body of unconfigured({id}) ran without its lock");
}

#[test]
fn fail_closed_is_one_error() {
    setup();
    let id = unique("closed");
    let key = format!("closed:{id}");
    block_on(unconfigured(&id));
    let f = function("unconfigured");
    assert_events(
        &f,
        "closed:<id>",
        &key,
        "never-configured",
        &[(
            Level::ERROR,
            "the lock could not be taken, so the body did not run (fail closed)",
            &[("error", "*")],
        )],
    );
}
