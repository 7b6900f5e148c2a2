//! The tracing events of `#[distributed_lock]`, one per fact, on `memory://`: each
//! outcome logs exactly its events, at their level, with `function`, `template`, `key`
//! and `backend`, captured by a real `tracing_subscriber` layer.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::sync::Mutex;
use tracing::field::{Field, Visit};
use tracing::{Level, Subscriber};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};

mod outcomes;
mod suite;
use outcomes::Call;
use suite::block_on;

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

/// Installs the capturing subscriber once for the binary, then runs `scenario`.
fn run(scenario: impl std::future::Future<Output = Call>) -> Call {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        tracing::subscriber::set_global_default(tracing_subscriber::registry().with(Capture))
            .unwrap();
    });
    outcomes::setup();
    block_on(scenario)
}

/// One expected event: its level, message and the fields besides the four every event
/// carries; a value `"*"` means any value.
type Expected<'a> = (Level, &'a str, &'a [(&'a str, &'a str)]);

/// Asserts that the events about `call`'s key are exactly `expected`: those of the
/// attribute in order, each with `function`, `template`, `key` and `backend`; and, of
/// every target, those at INFO or above are exactly the expected ones at INFO or above.
fn assert_events(call: &Call, expected: &[Expected<'_>]) {
    let key = call.key.as_str();
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
            ("function", call.function.as_str()),
            ("template", call.template),
            ("key", key),
            ("backend", call.backend),
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

const SKIPPED: &str = "lock not taken, call skipped";
const ACQUIRED: Expected<'static> = (
    Level::DEBUG,
    "lock acquired",
    &[("token", "*"), ("waited", "*")],
);

#[test]
fn acquired_and_released_are_debug() {
    let call = run(outcomes::ran());
    assert_events(
        &call,
        &[
            ACQUIRED,
            (
                Level::DEBUG,
                "lock released",
                &[("token", "*"), ("held", "*")],
            ),
        ],
    );
}

#[test]
fn skip_held_elsewhere_is_one_info() {
    let call = run(outcomes::skipped());
    assert_events(
        &call,
        &[(Level::INFO, SKIPPED, &[("reason", "held elsewhere")])],
    );
}

#[test]
fn retries_running_out_is_one_info() {
    let call = run(outcomes::retries_ran_out());
    let retrying = "lock held elsewhere, retrying";
    assert_events(
        &call,
        &[
            (Level::DEBUG, retrying, &[("attempt", "1")]),
            (Level::DEBUG, retrying, &[("attempt", "2")]),
            (Level::INFO, SKIPPED, &[("reason", "retries ran out")]),
        ],
    );
}

#[test]
fn conflict_is_one_info() {
    let call = run(outcomes::conflict());
    let message = "lock held elsewhere, call refused (conflict)";
    assert_events(&call, &[(Level::INFO, message, &[])]);
}

#[test]
fn timeout_is_one_info() {
    let call = run(outcomes::timeout());
    let message = "lock wait timed out";
    assert_events(&call, &[(Level::INFO, message, &[("waited", "50ms")])]);
}

#[test]
fn lost_lease_is_one_warn() {
    let call = run(outcomes::lost());
    let reason = "the ttl ran out while the body ran; raise the ttl or set `renew = true`";
    assert_events(
        &call,
        &[
            ACQUIRED,
            (
                Level::WARN,
                "lock lost while the body ran",
                &[("reason", reason), ("held", "*")],
            ),
        ],
    );
}

#[test]
fn fail_closed_is_one_error() {
    let call = run(outcomes::fail_closed());
    let message = "the lock could not be taken, so the body did not run (fail closed)";
    assert_events(&call, &[(Level::ERROR, message, &[("error", "*")])]);
}
