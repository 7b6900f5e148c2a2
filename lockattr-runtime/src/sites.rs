//! Every `#[distributed_lock]` of the program, gathered at link time, and the start-up
//! checks that compare them with the configured backends.
//!
//! # Why `linkme`, not `inventory`
//!
//! Both gather items defined across crates. `linkme` puts each element in a linker
//! section: the element *is* the static the attribute already emits for its options (no
//! second copy, no code run before `main`), and [`sites`] is a plain `&'static [LockSite]`.
//! `inventory` would add a registration node per site and a constructor that runs before
//! `main` to link the nodes. `linkme` supports Linux, Android, macOS, iOS, Windows,
//! FreeBSD, OpenBSD and illumos, not WebAssembly; lockattr's backends need a network or a
//! file system, which rules out bare `wasm32` anyway. The attribute reaches `linkme`
//! through `lockattr::__private::linkme` with `#[linkme(crate = …)]`, so the user's crate
//! needs no `linkme` dependency and a renamed `lockattr` (`crate = "…"`) works.

use std::fmt;
use std::time::Duration;

use crate::error::LockError;
use crate::handle::Locks;
use crate::registry::configured;
use crate::schedule::Schedule;

/// One `#[distributed_lock]` site: its options as written, and where it is.
///
/// The attribute builds these; [`sites`] lists them.
#[derive(Debug)]
pub struct LockSite {
    /// The key template as written: `"flush:<tenant>"`.
    pub template: &'static str,
    /// The lease length (`ttl`).
    pub ttl: Duration,
    /// `on_conflict` with its parameters (`wait`, `retries`, `backoff`).
    pub policy: Policy,
    /// `min_hold`; zero when not set.
    pub min_hold: Duration,
    /// `renew`.
    pub renew: bool,
    /// `every` (and `at`): the site runs once per period; `None` when not set.
    pub schedule: Option<Schedule>,
    /// The named backend (`backend = "…"`), or `None` for the default one.
    pub backend: Option<&'static str>,
    /// The annotated function: `module_path!()` and its name, `"app::jobs::flush"`.
    pub function: &'static str,
    /// The source file of the attribute, as `file!()` gives it.
    pub file: &'static str,
    /// The line of the attribute.
    pub line: u32,
}

/// `on_conflict` and its parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Policy {
    /// `"skip"`: return the skipped value.
    Skip,
    /// `"error"`: return `LockError::Conflict`.
    Error,
    /// `"wait"`: wait up to this long, then `LockError::Timeout`.
    Wait(Duration),
    /// `"retry"`: try again `retries` times, `backoff` apart with jitter, then skip.
    Retry {
        /// How many more attempts after the first.
        retries: u32,
        /// The pause between attempts (jittered ±50%).
        backoff: Duration,
    },
}

impl fmt::Display for Policy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Policy::Skip => f.write_str("on_conflict = \"skip\""),
            Policy::Error => f.write_str("on_conflict = \"error\""),
            Policy::Wait(wait) => write!(f, "on_conflict = \"wait\", wait = {wait:?}"),
            Policy::Retry { retries, backoff } => write!(
                f,
                "on_conflict = \"retry\", retries = {retries}, backoff = {backoff:?}"
            ),
        }
    }
}

impl LockSite {
    /// `` `app::flush` (src/jobs.rs:12) ``, for messages.
    fn place(&self) -> String {
        format!("`{}` ({}:{})", self.function, self.file, self.line)
    }

    /// `ttl = 30s, on_conflict = "skip"`, with `every` and `at` when set, for messages.
    fn options(&self) -> String {
        let mut out = format!("ttl = {:?}, {}", self.ttl, self.policy);
        if let Some(schedule) = self.schedule {
            out.push_str(&format!(", every = {:?}", schedule.period()));
            if !schedule.offset().is_zero() {
                out.push_str(&format!(", at = {:?}", schedule.offset()));
            }
        }
        out
    }

    fn backend_label(&self) -> String {
        match self.backend {
            Some(name) => format!("backend `{name}`"),
            None => "the default backend".to_owned(),
        }
    }
}

#[linkme::distributed_slice]
#[doc(hidden)]
pub static SITES: [LockSite];

/// Every `#[distributed_lock]` linked into this program, in no particular order.
///
/// ```
/// use lockattr::distributed_lock;
///
/// #[distributed_lock(key = "flush:<tenant>", ttl = "30s", on_conflict = "skip")]
/// async fn flush(tenant: &str) {}
///
/// let site = lockattr::sites().find(|s| s.function.ends_with("::flush")).unwrap();
/// assert_eq!(site.template, "flush:<tenant>");
/// assert_eq!(site.ttl, std::time::Duration::from_secs(30));
/// assert_eq!(site.policy, lockattr::Policy::Skip);
/// assert_eq!(site.backend, None);
/// println!("{} at {}:{}", site.function, site.file, site.line);
/// ```
pub fn sites() -> impl Iterator<Item = &'static LockSite> {
    SITES.iter()
}

/// Checks every lock site against the configured backends and reports all problems at
/// once as [`LockError::Misconfigured`]:
///
/// - a site whose backend (`backend = "…"`, or the default one) is not configured;
/// - a site with an option its backend cannot keep (`min_hold` on a session backend,
///   `renew` on one that cannot extend);
/// - a site with `every` whose policy is not `"skip"` (only a hand-built [`LockSite`]
///   can have one: the attribute refuses it at compile time);
/// - two sites on the same backend whose key templates can give the same key (the same
///   static text and placeholders in the same places) with different ttls or policies.
///
/// [`init`](crate::init) and [`init_named`](crate::init_named) already check the sites of
/// the backend they configure; only this call can tell that a backend was never
/// configured. Call it once every backend is set up:
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), lockattr::LockError> {
/// lockattr::init("memory://").await?;
/// // lockattr::init_named("jobs", "postgres://…").await?; …
/// lockattr::check()?;
/// # Ok(())
/// # }
/// ```
pub fn check() -> Result<(), LockError> {
    let mut names: Vec<Option<&str>> = sites().map(|s| s.backend).collect();
    names.sort_unstable();
    names.dedup();
    let problems = names
        .into_iter()
        .flat_map(|name| problems(name, configured(name).ok().as_ref()))
        .collect();
    misconfigured(problems)
}

/// The checks [`init`](crate::init) runs for the backend it is about to register as `name`.
pub(crate) fn check_backend(name: Option<&str>, locks: &Locks) -> Result<(), LockError> {
    misconfigured(problems(name, Some(locks)))
}

fn misconfigured(problems: Vec<String>) -> Result<(), LockError> {
    if problems.is_empty() {
        Ok(())
    } else {
        Err(LockError::Misconfigured { problems })
    }
}

/// The problems of the sites on backend `name`, configured as `locks` (`None`: not
/// configured).
fn problems(name: Option<&str>, locks: Option<&Locks>) -> Vec<String> {
    let mut here: Vec<&LockSite> = sites().filter(|s| s.backend == name).collect();
    // Link order varies: messages follow the source.
    here.sort_by_key(|s| (s.file, s.line));
    let mut out = Vec::new();
    for site in &here {
        match locks {
            None => out.push(format!(
                "{} uses {}, which is not configured: call {}",
                site.place(),
                site.backend_label(),
                match name {
                    Some(n) => format!("`lockattr::init_named(\"{n}\", url)`"),
                    None => "`lockattr::init(url)`".to_owned(),
                }
            )),
            Some(locks) => {
                if site.schedule.is_some() && site.policy != Policy::Skip {
                    out.push(format!(
                        "{} sets `every` with {}: a scheduled site skips the ticks of a period \
                         that has had its run; use on_conflict = \"skip\"",
                        site.place(),
                        site.policy
                    ));
                }
                let scheduled = site.schedule.is_some();
                for what in locks.unsupported(site.min_hold, site.renew, scheduled) {
                    out.push(format!(
                        "{} sets `{what}`, which {} ({}) cannot keep",
                        site.place(),
                        site.backend_label(),
                        locks.backend_name()
                    ));
                }
            }
        }
    }
    out.extend(collisions(&here));
    out
}

/// Pairs of sites (all on one backend) whose templates can give the same key but whose
/// ttls or policies differ.
fn collisions(sites: &[&LockSite]) -> Vec<String> {
    let mut out = Vec::new();
    for (n, a) in sites.iter().enumerate() {
        for b in &sites[n + 1..] {
            if shape(a.template) == shape(b.template)
                && (a.ttl, a.policy, a.schedule) != (b.ttl, b.policy, b.schedule)
            {
                out.push(format!(
                    "{} and {} can take the same key on {} with different options: \
                     `{}` ({}) and `{}` ({})",
                    a.place(),
                    b.place(),
                    a.backend_label(),
                    a.template,
                    a.options(),
                    b.template,
                    b.options(),
                ));
            }
        }
    }
    out
}

/// The template with every placeholder emptied: `flush:<tenant>` → `flush:<>`. Two
/// templates of one shape give the same key for equal values. (Templates of different
/// shapes could still meet, say `a:<x>` with `x = "b"` and `a:b`: that is not reported.)
fn shape(template: &str) -> String {
    let mut out = String::with_capacity(template.len());
    let mut inside = false;
    for c in template.chars() {
        match c {
            '<' => {
                inside = true;
                out.push('<');
            }
            '>' if inside => {
                inside = false;
                out.push('>');
            }
            _ if inside => {}
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn site(template: &'static str, ttl_ms: u64, policy: Policy) -> LockSite {
        LockSite {
            template,
            ttl: Duration::from_millis(ttl_ms),
            policy,
            min_hold: Duration::ZERO,
            renew: false,
            schedule: None,
            backend: None,
            function: "app::f",
            file: "src/app.rs",
            line: 7,
        }
    }

    #[test]
    fn shape_empties_placeholders() {
        assert_eq!(shape("flush:<tenant>"), "flush:<>");
        assert_eq!(shape("job:<job.id>/<self.shard>:x"), "job:<>/<>:x");
        assert_eq!(shape("nightly"), "nightly");
        assert_eq!(shape("<id>"), "<>");
    }

    #[test]
    fn same_shape_with_different_options_collides() {
        let a = site("flush:<tenant>", 30_000, Policy::Skip);
        let b = site("flush:<name>", 10_000, Policy::Skip);
        let c = site("flush:<id>", 30_000, Policy::Wait(Duration::from_secs(1)));
        let found = collisions(&[&a, &b, &c]);
        assert_eq!(found.len(), 3, "{found:#?}");
        assert!(
            found[0].contains("`flush:<tenant>` (ttl = 30s"),
            "{}",
            found[0]
        );
        assert!(found[0].contains("`app::f` (src/app.rs:7)"), "{}", found[0]);
        assert!(found[1].contains("wait = 1s"), "{}", found[1]);
    }

    #[test]
    fn same_options_or_different_shapes_do_not_collide() {
        let a = site("flush:<tenant>", 30_000, Policy::Skip);
        let same = site("flush:<name>", 30_000, Policy::Skip);
        let other_text = site("flush-all:<tenant>", 1_000, Policy::Error);
        let more_parts = site("flush:<tenant>/<day>", 1_000, Policy::Error);
        let fixed = site("flush:acme", 1_000, Policy::Error);
        assert!(collisions(&[&a, &same, &other_text, &more_parts, &fixed]).is_empty());
    }

    #[test]
    fn a_schedule_counts() {
        let a = site("report", 1_000, Policy::Skip);
        let mut b = site("report", 1_000, Policy::Skip);
        b.schedule = Some(Schedule::every(Duration::from_secs(60)));
        let found = collisions(&[&a, &b]);
        assert_eq!(found.len(), 1);
        assert!(found[0].contains("every = 60s"), "{}", found[0]);
    }

    #[test]
    fn policy_parameters_count() {
        let retry = |retries| Policy::Retry {
            retries,
            backoff: Duration::from_millis(200),
        };
        let a = site("sync", 1_000, retry(3));
        let b = site("sync", 1_000, retry(4));
        assert_eq!(collisions(&[&a, &b]).len(), 1);
    }
}
