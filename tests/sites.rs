//! Every lock site known at start-up: `lockattr::sites()` lists each `#[distributed_lock]`
//! with its options and place, `lockattr::check()` reports every misconfigured site with
//! its function and `file:line`, and `init` refuses a backend that the sites using it
//! cannot run on. No server: `memory://` and a custom backend that keeps neither
//! `min_hold` nor `renew` (PostgreSQL's advisory locks with feature `postgres`).

use std::time::Duration;

use lockattr::backend::memory::MemoryBackend;
use lockattr::backend::{Acquire, Backend, BackendResult, BoxFuture, Capability, Granted};
use lockattr::token::OwnerToken;
use lockattr::{distributed_lock, InitOptions, LockError, LockSite, Locks, Policy, Schedule};

/// The line of `flush`'s attribute.
const FLUSH_LINE: u32 = line!() + 1;
#[distributed_lock(key = "flush:<tenant>", ttl = "30s", on_conflict = "skip")]
async fn flush(tenant: &str) {
    let _ = tenant;
}

/// The line of `flush_now`'s attribute: its key collides with `flush`'s, with another policy.
const FLUSH_NOW_LINE: u32 = line!() + 1;
#[distributed_lock(key = "flush:<name>", ttl = "30s", on_conflict = "wait", wait = "1s")]
async fn flush_now(name: &str) -> Result<(), LockError> {
    let _ = name;
    Ok(())
}

const HOLD_LINE: u32 = line!() + 1;
#[distributed_lock(
    key = "hold:<id>",
    ttl = "10s",
    on_conflict = "retry",
    retries = 2,
    backoff = "50ms",
    min_hold = "1s",
    renew = true,
    backend = "no-hold"
)]
async fn hold(id: u32) {
    let _ = id;
}

/// A scheduled site on the backend that can neither keep a key after release nor extend.
const REPORT_LINE: u32 = line!() + 1;
#[distributed_lock(
    key = "report",
    ttl = "1m",
    on_conflict = "skip",
    every = "1h",
    at = "30m",
    backend = "no-hold"
)]
async fn report() {}

const NIGHTLY_LINE: u32 = line!() + 1;
#[distributed_lock(key = "nightly", ttl = "5m", on_conflict = "skip", backend = "missing")]
async fn nightly() {}

fn site(function: &str) -> &'static LockSite {
    lockattr::sites()
        .find(|s| s.function == function)
        .unwrap_or_else(|| panic!("no site for {function}"))
}

#[test]
fn sites_lists_each_site_with_its_options_and_place() {
    let flush = site("sites::flush");
    assert_eq!(flush.template, "flush:<tenant>");
    assert_eq!(flush.ttl, Duration::from_secs(30));
    assert_eq!(flush.policy, Policy::Skip);
    assert_eq!(flush.backend, None);
    assert_eq!((flush.file, flush.line), ("tests/sites.rs", FLUSH_LINE));

    let hold = site("sites::hold");
    assert_eq!(
        hold.policy,
        Policy::Retry {
            retries: 2,
            backoff: Duration::from_millis(50)
        }
    );
    assert_eq!(hold.min_hold, Duration::from_secs(1));
    assert!(hold.renew);
    assert_eq!(hold.backend, Some("no-hold"));
    assert_eq!((hold.file, hold.line), ("tests/sites.rs", HOLD_LINE));

    let now = site("sites::flush_now");
    assert_eq!(now.policy, Policy::Wait(Duration::from_secs(1)));
    assert_eq!(now.line, FLUSH_NOW_LINE);
    assert_eq!(site("sites::nightly").line, NIGHTLY_LINE);
    assert_eq!(flush.schedule, None);
    let report = site("sites::report");
    assert_eq!(
        report.schedule,
        Some(Schedule::every(Duration::from_secs(3600)).at(Duration::from_secs(1800)))
    );
    assert_eq!(report.line, REPORT_LINE);
    // Only the attribute's sites, each once.
    assert_eq!(lockattr::sites().count(), 5 + pg::SITES);
}

/// A `memory://` backend that keeps neither `min_hold` nor `renew`.
struct NoHold(MemoryBackend);

impl Backend for NoHold {
    fn kind(&self) -> &'static str {
        "no-hold"
    }
    fn supports(&self, _: Capability) -> bool {
        false
    }
    fn try_acquire<'a>(
        &'a self,
        req: Acquire<'a>,
    ) -> BoxFuture<'a, BackendResult<Option<Granted>>> {
        self.0.try_acquire(req)
    }
    fn release<'a>(
        &'a self,
        key: &'a str,
        owner: &'a OwnerToken,
        keep_for: Duration,
    ) -> BoxFuture<'a, BackendResult<bool>> {
        self.0.release(key, owner, keep_for)
    }
    fn extend<'a>(
        &'a self,
        key: &'a str,
        owner: &'a OwnerToken,
        ttl: Duration,
    ) -> BoxFuture<'a, BackendResult<bool>> {
        self.0.extend(key, owner, ttl)
    }
}

fn problems(result: Result<(), LockError>) -> Vec<String> {
    match result {
        Err(LockError::Misconfigured { problems }) => problems,
        other => panic!("expected Misconfigured, got {other:?}"),
    }
}

fn place(function: &str, line: u32) -> String {
    format!("`sites::{function}` (tests/sites.rs:{line})")
}

/// One problem names `who` and says `what`.
fn assert_reported(problems: &[String], who: &str, what: &str) {
    assert!(
        problems.iter().any(|p| p.contains(who) && p.contains(what)),
        "no problem of {who} saying {what:?} in {problems:#?}"
    );
}

#[tokio::test]
async fn check_reports_every_problem_with_function_and_place() {
    let no_hold = Locks::from_backend(
        Box::new(NoHold(MemoryBackend::named("sites-no-hold"))),
        "lockattr:",
        "no-hold://",
    );
    // Registered without the start-up check, which would refuse it.
    assert!(lockattr::set_named("no-hold", no_hold).is_ok());

    let error = lockattr::check().unwrap_err();
    let text = error.to_string();
    let problems = problems(Err(error));
    let hold = place("hold", HOLD_LINE);
    // (a) a backend that is not configured
    assert_reported(
        &problems,
        &place("nightly", NIGHTLY_LINE),
        "uses backend `missing`, which is not configured: call `lockattr::init_named(\"missing\", url)`",
    );
    // (b) options the backend cannot keep, each one
    assert_reported(
        &problems,
        &hold,
        "sets `min_hold`, which backend `no-hold` (no-hold://) cannot keep",
    );
    assert_reported(&problems, &hold, "sets `renew`");
    assert_reported(&problems, &place("report", REPORT_LINE), "sets `every`");
    // (c) two templates that give the same key, with different policies
    assert_reported(
        &problems,
        &format!(
            "{} and {}",
            place("flush", FLUSH_LINE),
            place("flush_now", FLUSH_NOW_LINE)
        ),
        "can take the same key on the default backend",
    );
    // The message lists them all, one a line.
    for problem in &problems {
        assert!(text.contains(&format!("\n  - {problem}")), "{text}");
    }
}

#[tokio::test]
async fn init_fails_at_start_up_and_can_skip_the_check() {
    // `flush` and `flush_now` use the default backend and collide.
    let problems = problems(lockattr::init("memory://sites").await.map(drop));
    assert_eq!(problems.len(), 1, "{problems:#?}");
    assert!(
        problems[0].contains(&place("flush", FLUSH_LINE)),
        "{problems:#?}"
    );
    assert!(
        problems[0].contains(&place("flush_now", FLUSH_NOW_LINE)),
        "{problems:#?}"
    );
    assert!(
        problems[0].contains("on_conflict = \"wait\", wait = 1s"),
        "{problems:#?}"
    );
    // Nothing was registered: the check can be turned off.
    let locks = lockattr::init_with("memory://sites", InitOptions::new().check(false))
        .await
        .unwrap();
    assert_eq!(locks.backend_name(), "memory://sites");
    flush("acme").await;
    flush_now("acme").await.unwrap();
}

/// A backend with no `min_hold`, configured from a URL: PostgreSQL's advisory locks.
mod pg {
    #[cfg(not(feature = "postgres"))]
    pub const SITES: usize = 0;
    #[cfg(feature = "postgres")]
    pub const SITES: usize = 1;

    #[cfg(feature = "postgres")]
    pub const REPORT_LINE: u32 = line!() + 2;
    #[cfg(feature = "postgres")]
    #[lockattr::distributed_lock(
        key = "report",
        ttl = "10s",
        on_conflict = "skip",
        min_hold = "1s",
        backend = "pg"
    )]
    pub async fn report() {}

    #[cfg(feature = "postgres")]
    #[tokio::test]
    async fn init_named_refuses_a_backend_that_cannot_keep_an_option() {
        let url = lockattr_tests::postgres_url();
        let problems = super::problems(lockattr::init_named("pg", &url).await.map(drop));
        assert_eq!(problems.len(), 1, "{problems:#?}");
        assert!(
            problems[0].starts_with(&format!(
                "`sites::pg::report` (tests/sites.rs:{REPORT_LINE}) sets `min_hold`, which backend `pg`"
            )),
            "{problems:#?}"
        );
        assert!(matches!(
            lockattr::configured(Some("pg")),
            Err(lockattr::LockError::NotConfigured { .. })
        ));
    }
}
