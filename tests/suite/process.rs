//! Holder processes that crash or stall: for backends shared between processes.

use std::io::{BufRead, BufReader};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::Duration;

use super::{instance, take, take_eventually, unique, Profile};

/// The ttl `lockattr-holder` takes its lock with.
const HOLDER_TTL: Duration = Duration::from_secs(2);

struct Holder {
    child: Child,
    out: BufReader<ChildStdout>,
}

impl Holder {
    fn start(p: &Profile, key: &str) -> Holder {
        let mut child = Command::new(env!("CARGO_BIN_EXE_lockattr-holder"))
            .args([&p.url, key, "60000"])
            .stdout(Stdio::piped())
            .spawn()
            .expect("lockattr-holder starts");
        let out = BufReader::new(child.stdout.take().unwrap());
        Holder { child, out }
    }

    /// The next line the holder prints (blocking: run under `spawn_blocking`).
    fn line(&mut self) -> String {
        let mut line = String::new();
        self.out.read_line(&mut line).expect("holder output");
        line.trim().to_owned()
    }

    fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([signal, &self.child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill {signal} failed");
    }
}

impl Drop for Holder {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn next_line(mut holder: Holder) -> (Holder, String) {
    tokio::task::spawn_blocking(move || {
        let line = holder.line();
        (holder, line)
    })
    .await
    .unwrap()
}

/// Semantic 3 across processes: a holder killed with SIGKILL frees the key within its ttl.
pub async fn killed_holder_frees_the_key(p: &Profile) {
    let id = unique("killed");
    let (holder, line) = next_line(Holder::start(p, &id)).await;
    assert!(line.starts_with("acquired"), "holder said {line:?}");
    let other = instance(p).await;
    let key = format!("proc:{id}");
    assert!(take(&other, &key, HOLDER_TTL).await.is_none());
    holder.signal("-KILL");
    drop(holder);
    let taken = take_eventually(&other, &key, HOLDER_TTL * 5).await;
    assert!(taken.is_some(), "a killed holder's key never came free");
    taken.unwrap().release().await.unwrap();
}

/// Semantics 2, 3 and 5 across processes: a holder stopped with SIGSTOP past its ttl is
/// taken over; resumed, its body ends with `Lost`, and its release leaves the new holder's
/// lease alone.
pub async fn stopped_holder_is_taken_over(p: &Profile) {
    let id = unique("stopped");
    let (holder, line) = next_line(Holder::start(p, &id)).await;
    assert!(line.starts_with("acquired"), "holder said {line:?}");
    let key = format!("proc:{id}");
    holder.signal("-STOP");
    let (other, third) = (instance(p).await, instance(p).await);
    let taken = take_eventually(&other, &key, HOLDER_TTL * 5)
        .await
        .expect("a stopped holder's key is taken over after its ttl");
    holder.signal("-CONT");
    let (holder, line) = next_line(holder).await;
    assert_eq!(
        line, "lost",
        "the resumed holder must learn it lost the lock"
    );
    // Give the holder's background release time to reach the backend, then check it did
    // not free the new holder's key.
    tokio::time::sleep(Duration::from_millis(500)).await;
    drop(holder);
    assert!(
        take(&third, &key, Duration::from_secs(30)).await.is_none(),
        "the stale holder freed the new holder's key"
    );
    taken.release().await.unwrap();
}
