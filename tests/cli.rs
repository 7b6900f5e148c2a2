//! The `lockattr` operator CLI (`held`, `inspect`, `release --force`) run as a process
//! against every backend that can list its locks (Memcached included), with a lock held
//! by this test; and the library API it is built on (`Locks::held`, `inspect`,
//! `force_release`).
//!
//! For each backend: `held` lists the held key with its token and time left (table and
//! `--json`), `inspect` shows it (exit 0) and a free key is not found (exit 1), `release`
//! without `--force` refuses (exit 2) and leaves the lock held, `release --force` frees it
//! (exit 0, then 1 when asked again); the next holder's fencing token is greater and the
//! forced-out holder gets `Lost` at its next extend. A backend that cannot list says so
//! (exit 4).

use std::process::{Command, Output};
use std::time::Duration;

use lockattr::backend::admin::Fence;
use lockattr::{LockError, Locks};
use lockattr_tests::{memcached_url, mysql_url, postgres_url, redis_url, with_param};
use serde_json::Value;

const TTL: Duration = Duration::from_secs(30);
const KEY: &str = "job:nightly";

/// Runs the CLI with `args`: its exit code and stdout (stderr is shown on failure).
fn cli(args: &[&str]) -> (i32, String) {
    let Output {
        status,
        stdout,
        stderr,
    } = Command::new(env!("CARGO_BIN_EXE_lockattr-cli"))
        .args(args)
        .output()
        .expect("the CLI runs");
    let stderr = String::from_utf8_lossy(&stderr);
    if !stderr.is_empty() {
        eprintln!("lockattr {args:?} wrote to stderr: {stderr}");
    }
    let code = status.code().expect("the CLI exits with a code");
    (code, String::from_utf8(stdout).expect("UTF-8 output"))
}

/// `url` with a prefix of its own, so that runs and targets never see each other's locks.
fn isolated(url: &str, name: &str) -> String {
    with_param(url, &format!("prefix=cli-{}-{name}:", std::process::id()))
}

/// Takes `key` for [`TTL`]; it must be free.
async fn take(locks: &Locks, key: &str) -> lockattr::LockGuard {
    match locks.lock(key).ttl(TTL).try_acquire().await {
        Ok(Some(guard)) => guard,
        other => panic!("`{key}` is not free on {}: {other:?}", locks.backend_name()),
    }
}

async fn connect(url: &str) -> Locks {
    lockattr::connect(url)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
}

/// Whether `seen` is a fair report of `token`: exact, or an upper bound of it.
fn shows_token(seen: Fence, token: u64) -> bool {
    match seen {
        Fence::Exact(n) => n == token,
        Fence::AtMost(n) => n >= token,
        _ => false,
    }
}

/// The whole story on one backend (`url` already isolated).
async fn held_inspect_and_forced_release(url: &str) {
    let locks = connect(url).await;
    assert!(locks.can_list(), "{url}");
    let holder = take(&locks, KEY).await;
    let token = holder.token();

    // The library API.
    let held = locks.held().await.unwrap();
    assert_eq!(held.len(), 1, "{held:?}");
    assert_eq!(held[0].key.as_deref(), Some(KEY));
    assert_eq!(held[0].stored_key, format!("{}{KEY}", locks.prefix()));
    assert!(shows_token(held[0].token, token), "{held:?} vs {token}");
    let left = held[0].time_left.expect("a time left");
    assert!(left <= TTL && left > Duration::ZERO, "{left:?}");
    let inspected = locks.inspect(KEY).await.unwrap().expect("held");
    assert!(shows_token(inspected.token, token));
    assert!(locks.inspect("job:other").await.unwrap().is_none());

    // `held`, as a table and as JSON.
    let (code, table) = cli(&["held", url]);
    assert_eq!(code, 0, "{table}");
    assert!(table.starts_with("1 lock held on "), "{table}");
    assert!(table.contains("KEY") && table.contains("TOKEN") && table.contains("TIME LEFT"));
    let row = table.lines().find(|l| l.starts_with(KEY)).expect(&table);
    assert!(
        row.contains(&token.to_string()) || row.contains("<="),
        "{row}"
    );
    let (code, json) = cli(&["held", url, "--json"]);
    assert_eq!(code, 0);
    let json: Value = serde_json::from_str(&json).expect("--json parses");
    assert_eq!(json["backend"], locks.backend_name());
    let first = &json["locks"][0];
    assert_eq!(first["key"], KEY);
    let seen = first["token"].as_u64().expect("a token");
    match first["token_kind"].as_str() {
        Some("exact") => assert_eq!(seen, token),
        Some("at_most") => assert!(seen >= token),
        other => panic!("token_kind {other:?}"),
    }
    let left_ms = first["time_left_ms"].as_u64().expect("a time left");
    assert!(left_ms <= TTL.as_millis() as u64);

    // `inspect`.
    let (code, text) = cli(&["inspect", url, KEY]);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains(&format!("key        {KEY}")), "{text}");
    let (code, json) = cli(&["inspect", url, KEY, "--json"]);
    assert_eq!(code, 0);
    let json: Value = serde_json::from_str(&json).unwrap();
    assert_eq!(json["held"], true);
    assert_eq!(json["lock"]["key"], KEY);
    let (code, text) = cli(&["inspect", url, "job:other"]);
    assert_eq!((code, text.contains("is not held")), (1, true), "{text}");

    forced_release(&locks, url, holder).await;
    let (code, text) = cli(&["held", url]);
    assert_eq!(code, 0);
    assert!(text.starts_with("no locks held"), "{text}");
}

/// What every backend does the same: `release` refuses without `--force` and leaves the
/// lock alone; `release --force` frees it (and then finds nothing); the next holder (on
/// a handle of its own) gets a greater token, and the forced-out holder `Lost`.
async fn forced_release(locks: &Locks, url: &str, holder: lockattr::LockGuard) {
    let token = holder.token();
    let (code, _) = cli(&["release", url, KEY]);
    assert_eq!(code, 2);
    assert!(locks.inspect(KEY).await.unwrap().is_some());
    holder
        .extend(TTL)
        .await
        .expect("still held after a refused release");

    let (code, text) = cli(&["release", url, KEY, "--force"]);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("by force"), "{text}");
    assert!(locks.inspect(KEY).await.unwrap().is_none());
    let (code, json) = cli(&["release", url, KEY, "--force", "--json"]);
    assert_eq!(code, 1, "nothing left to release");
    assert_eq!(
        serde_json::from_str::<Value>(&json).unwrap()["released"],
        false
    );

    let other = connect(url).await;
    let next = take(&other, KEY).await;
    assert!(next.token() > token, "{} after {token}", next.token());
    match holder.extend(TTL).await {
        Err(LockError::Lost { .. }) => {}
        other => panic!("the forced-out holder's extend gave {other:?}"),
    }
    next.release().await.unwrap();
}

/// A session backend (`postgres://`, `mysql://`): the server knows the holding session,
/// not the lease. `inspect` shows the lock with its session (and, on PostgreSQL, this
/// process's pid from `application_name`); token and time left are unknown. `lists`:
/// whether `held` can list on this server (else it says so, exit code 4).
async fn session_backend(url: &str, lists: bool, pid_known: bool) {
    let locks = connect(url).await;
    let holder = take(&locks, KEY).await;
    let inspected = locks.inspect(KEY).await.unwrap().expect("held");
    assert_eq!(inspected.token, Fence::Unknown);
    assert_eq!(inspected.time_left, None);
    let owner = inspected.owner.expect("the holding session");
    assert!(owner.session.is_some(), "{owner:?}");
    if pid_known {
        assert_eq!(owner.pid, Some(std::process::id()));
    }
    assert!(locks.inspect("job:other").await.unwrap().is_none());

    let (code, json) = cli(&["inspect", url, KEY, "--json"]);
    assert_eq!(code, 0, "{json}");
    let json: Value = serde_json::from_str(&json).unwrap();
    assert_eq!(json["lock"]["token_kind"], "unknown");
    assert_eq!(json["lock"]["owner"]["session"], owner.session.unwrap());

    let (code, listed) = cli(&["held", url, "--json"]);
    if lists {
        assert_eq!(code, 0, "{listed}");
        let listed: Value = serde_json::from_str(&listed).unwrap();
        let sessions: Vec<&Value> = listed["locks"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| &l["owner"]["session"])
            .collect();
        assert!(
            sessions.contains(&&json["lock"]["owner"]["session"]),
            "{listed}"
        );
    } else {
        assert_eq!(code, 4, "{listed}");
        assert!(matches!(
            locks.held().await,
            Err(LockError::Unsupported { .. })
        ));
    }
    forced_release(&locks, url, holder).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis() {
    held_inspect_and_forced_release(&isolated(&redis_url(), "redis")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memcached() {
    held_inspect_and_forced_release(&isolated(&memcached_url(), "mc")).await;
}

/// What Memcached shows in particular: the token is built from the lock item's CAS, the
/// holder's own until its first extension stores the item again under a greater CAS (so
/// an upper bound); the time left is whole seconds; the owner is unknown; a hashed key is
/// listed by its stored key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memcached_tokens_time_left_and_hashed_keys() {
    let url = isolated(&memcached_url(), "mcshow");
    let locks = connect(&url).await;
    let holder = take(&locks, KEY).await;
    let token = holder.token();
    let seen = locks.inspect(KEY).await.unwrap().expect("held");
    assert_eq!(
        seen.token,
        Fence::AtMost(token),
        "never extended: the holder's token"
    );
    let left = seen.time_left.expect("a time left");
    assert_eq!(left.subsec_nanos(), 0, "{left:?}");
    assert!(
        left <= TTL && left >= TTL - Duration::from_secs(2),
        "{left:?}"
    );
    assert_eq!(seen.owner, None);
    holder.extend(TTL).await.unwrap();
    match locks.inspect(KEY).await.unwrap().expect("held").token {
        Fence::AtMost(n) => assert!(n > token, "{n} after an extension of {token}"),
        other => panic!("{other:?}"),
    }
    let (code, text) = cli(&["inspect", &url, KEY]);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("token      <="), "{text}");

    let long = format!("report:{}", "x".repeat(300));
    let hashed = take(&locks, &long).await;
    let stored = locks
        .inspect(&long)
        .await
        .unwrap()
        .expect("held")
        .stored_key;
    assert!(stored.len() < long.len(), "{stored}");
    let held = locks.held().await.unwrap();
    let listed = held
        .iter()
        .find(|l| l.stored_key == stored)
        .unwrap_or_else(|| panic!("{stored} not in {held:?}"));
    assert_eq!(listed.key, None);
    assert_eq!(listed.token, Fence::AtMost(hashed.token()));
    hashed.release().await.unwrap();
    holder.release().await.unwrap();
    assert!(locks.held().await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite() {
    let path = std::env::temp_dir().join(format!("lockattr-cli-{}.db", std::process::id()));
    let url = format!("sqlite://{}", path.display());
    held_inspect_and_forced_release(&isolated(&url, "sqlite")).await;
    let _ = std::fs::remove_file(path);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_table() {
    let url = with_param(&postgres_url(), "mode=table");
    held_inspect_and_forced_release(&isolated(&url, "pgtable")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_table() {
    let url = with_param(&mysql_url(), "mode=table");
    held_inspect_and_forced_release(&isolated(&url, "mytable")).await;
}

/// The table's `holder` column is this process: the owner is shown.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lease_table_shows_the_owner() {
    let url = with_param(&postgres_url(), "mode=table");
    let url = isolated(&url, "owner");
    let locks = connect(&url).await;
    let _guard = take(&locks, KEY).await;
    let (code, json) = cli(&["inspect", &url, KEY, "--json"]);
    assert_eq!(code, 0);
    let json: Value = serde_json::from_str(&json).unwrap();
    assert_eq!(json["lock"]["owner"]["pid"], std::process::id());
    assert!(json["lock"]["owner"]["host"].is_string());
}

/// A backend without `Admin` answers `Unsupported` in the library and exit code 4 in the
/// CLI, naming the backend without its password.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_that_cannot_list_says_so() {
    let backend = lockattr::backend::memory::MemoryBackend::named("cli-no-admin");
    let locks = Locks::from_backend(Box::new(NoAdmin(backend)), "lockattr:", "custom://x");
    assert!(!locks.can_list());
    match locks.held().await {
        Err(LockError::Unsupported { what, .. }) => assert!(what.contains("listing"), "{what}"),
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        locks.force_release("k").await,
        Err(LockError::Unsupported { .. })
    ));
    // The CLI: a backend that fails answers 3, and never prints the password.
    let (code, _) = cli(&["held", "redis://u:hunter2@127.0.0.1:1"]);
    assert_eq!(code, 3);
    let (code, _) = cli(&["held"]);
    assert_eq!(code, 2);
    let (code, help) = cli(&["--help"]);
    assert_eq!(code, 0);
    assert!(
        help.contains("EXIT CODES") && help.contains("EXAMPLES"),
        "{help}"
    );
}

/// A backend that keeps the trait's default `admin()`.
struct NoAdmin(lockattr::backend::memory::MemoryBackend);

impl lockattr::backend::Backend for NoAdmin {
    fn kind(&self) -> &'static str {
        "custom"
    }

    fn try_acquire<'a>(
        &'a self,
        req: lockattr::backend::Acquire<'a>,
    ) -> lockattr::backend::BoxFuture<
        'a,
        lockattr::backend::BackendResult<Option<lockattr::backend::Granted>>,
    > {
        self.0.try_acquire(req)
    }

    fn release<'a>(
        &'a self,
        key: &'a str,
        owner: &'a lockattr::token::OwnerToken,
        keep_for: Duration,
    ) -> lockattr::backend::BoxFuture<'a, lockattr::backend::BackendResult<bool>> {
        self.0.release(key, owner, keep_for)
    }

    fn extend<'a>(
        &'a self,
        key: &'a str,
        owner: &'a lockattr::token::OwnerToken,
        ttl: Duration,
    ) -> lockattr::backend::BoxFuture<'a, lockattr::backend::BackendResult<bool>> {
        self.0.extend(key, owner, ttl)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_sessions() {
    session_backend(&isolated(&postgres_url(), "pg"), true, true).await;
}

/// The shared MariaDB runs without `performance_schema`: `held` says it cannot list.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_sessions() {
    session_backend(&isolated(&mysql_url(), "my"), false, false).await;
}

/// A private MariaDB with the metadata-lock instrument on: `held` lists `GET_LOCK` locks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_sessions_with_performance_schema() {
    let mut server = lockattr_tests::PrivateMariaDb::install();
    server
        .start_with(&[
            "--performance-schema=ON",
            "--performance-schema-instrument=wait/lock/metadata/sql/mdl=ON",
        ])
        .await;
    let url = isolated(&server.url(), "myps");
    session_backend(&url, true, false).await;
    // The listing shows the readable key.
    let locks = connect(&url).await;
    let _guard = take(&locks, KEY).await;
    let held = locks.held().await.unwrap();
    assert_eq!(held.len(), 1, "{held:?}");
    assert_eq!(held[0].key.as_deref(), Some(KEY));
}

/// A renewing holder in another process (`lockattr-holder`, the attribute with
/// `renew = true`), released by force through the CLI: its body is cancelled with `Lost`
/// at its next renewal, and the operator sees its host and pid before releasing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_renewing_holder_process_is_cancelled_with_lost() {
    let path = std::env::temp_dir().join(format!("lockattr-cli-proc-{}.db", std::process::id()));
    let url = isolated(&format!("sqlite://{}", path.display()), "proc");
    renewing_holder_cancelled(&url, true).await;
    let _ = std::fs::remove_file(path);
}

/// The same on Memcached: the forced-out holder's next renewal presents a CAS that no
/// longer matches (the owner is unknown there).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_renewing_memcached_holder_process_is_cancelled_with_lost() {
    renewing_holder_cancelled(&isolated(&memcached_url(), "mcproc"), false).await;
}

/// A `lockattr-holder` process holding `proc:renewed` on `url` is released by force
/// through the CLI and ends with `Lost`; `pid_known`: whether the backend shows its pid.
async fn renewing_holder_cancelled(url: &str, pid_known: bool) {
    use std::io::{BufRead, BufReader};

    let url = url.to_owned();
    let mut child = Command::new(env!("CARGO_BIN_EXE_lockattr-holder"))
        .args([&url, "renewed", "30000"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("the holder starts");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let first = lines.next().expect("a line").unwrap();
    let token: u64 = first
        .strip_prefix("acquired ")
        .and_then(|t| t.parse().ok())
        .unwrap_or_else(|| panic!("the holder said {first}"));

    let (code, json) = cli(&["inspect", &url, "proc:renewed", "--json"]);
    assert_eq!(code, 0, "{json}");
    let json: Value = serde_json::from_str(&json).unwrap();
    let shown = json["lock"]["token"].as_u64().expect("a token");
    match json["lock"]["token_kind"].as_str() {
        Some("exact") => assert_eq!(shown, token),
        Some("at_most") => assert!(shown >= token, "{shown} < {token}"),
        other => panic!("token_kind {other:?}"),
    }
    if pid_known {
        assert_eq!(json["lock"]["owner"]["pid"], child.id());
    }

    let (code, _) = cli(&["release", &url, "proc:renewed", "--force"]);
    assert_eq!(code, 0);
    // The holder's next renewal (a third of its 2 s ttl away) finds the lease gone.
    let next = tokio::task::spawn_blocking(move || lines.next())
        .await
        .unwrap()
        .expect("the holder says how it ended")
        .unwrap();
    assert_eq!(next, "lost");
    let _ = child.wait();
    let locks = connect(&url).await;
    let after = take(&locks, "proc:renewed").await;
    assert!(after.token() > token);
    after.release().await.unwrap();
}
