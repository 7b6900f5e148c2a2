//! The release listener: one pub/sub connection with a pattern subscription to the
//! prefix's release channels, and the in-process registry of the waiters it wakes.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use redis::aio::PubSub;
use tokio::sync::{watch, Notify};

use super::options::{RedisOptions, TimeLimit};
use crate::backend::wait::jitter;
use crate::backend::BackendResult;

/// The longest pause before the pub/sub listener connects again.
const RESUBSCRIBE_MAX: Duration = Duration::from_secs(2);

/// What the release listener tells the rest of the backend.
#[derive(Default)]
pub(super) struct ReleaseSignals {
    /// The waiters of this backend, woken by release messages.
    pub(super) waiters: WaiterRegistry,
    /// Counts the listener's reconnections: after each, the holders that watch for the
    /// loss of their lease (the attribute's bodies) check that it is still there.
    pub(super) reconnected: watch::Sender<u64>,
}

/// One waiting acquisition in this process.
struct Waiter {
    /// Tells this registration from others on the same key.
    id: u64,
    /// The waiter's ticket in the server's queue, which a release message names.
    ticket: String,
    /// Wakes the waiter.
    notify: Arc<Notify>,
}

/// The waiters woken by release messages, by stored key.
#[derive(Default)]
pub(super) struct WaiterRegistry {
    by_key: Mutex<HashMap<String, Vec<Waiter>>>,
    next_id: AtomicU64,
}

/// A waiter's place in the [`WaiterRegistry`], removed on drop.
pub(super) struct Registration<'a> {
    registry: &'a WaiterRegistry,
    key: String,
    id: u64,
    /// Notified when a release names this waiter's ticket, or messages may have been lost.
    pub(super) notify: Arc<Notify>,
}

impl WaiterRegistry {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, Vec<Waiter>>> {
        // Each update is a single push or retain: a poisoned map is still consistent.
        self.by_key.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers the waiter holding `ticket` on the stored key `key`.
    pub(super) fn register(&self, key: &str, ticket: &str) -> Registration<'_> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let notify = Arc::new(Notify::new());
        self.lock().entry(key.to_owned()).or_default().push(Waiter {
            id,
            ticket: ticket.to_owned(),
            notify: notify.clone(),
        });
        Registration {
            registry: self,
            key: key.to_owned(),
            id,
            notify,
        }
    }

    /// Wakes the waiter holding `ticket` on `key`, or all of them if `ticket` is empty.
    fn wake(&self, key: &str, ticket: &str) {
        if let Some(list) = self.lock().get(key) {
            for waiter in list {
                if ticket.is_empty() || waiter.ticket == ticket {
                    waiter.notify.notify_one();
                }
            }
        }
    }

    /// Wakes every waiter: messages may have been lost.
    fn wake_all(&self) {
        for list in self.lock().values() {
            for waiter in list {
                waiter.notify.notify_one();
            }
        }
    }
}

impl Drop for Registration<'_> {
    fn drop(&mut self) {
        let mut map = self.registry.lock();
        if let Some(list) = map.get_mut(&self.key) {
            list.retain(|waiter| waiter.id != self.id);
            if list.is_empty() {
                map.remove(&self.key);
            }
        }
    }
}

/// The pattern of every release channel under `prefix`: `{<prefix>*}:released`.
pub(super) fn release_pattern(prefix: &str) -> String {
    format!("{{{}*}}:released", glob_escape(prefix))
}

/// The stored key a release channel belongs to.
fn key_of_channel(channel: &str) -> Option<&str> {
    channel.strip_prefix('{')?.strip_suffix("}:released")
}

/// `text` with the glob characters of Redis patterns escaped.
fn glob_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// A pub/sub connection subscribed to the release channels under the prefix. Connecting
/// is bounded by `connect_timeout_ms` and subscribing by `subscribing`: at open that is
/// `connect_timeout_ms` too (opening is connecting), when the listener reconnects it is
/// `timeout_ms` (an operation on a connection that is up).
pub(super) async fn subscribe(
    options: &RedisOptions,
    subscribing: TimeLimit,
) -> BackendResult<PubSub> {
    let connected = options.connect_timeout.bound(async {
        let pubsub = options.client.get_async_pubsub().await;
        pubsub.map_err(|e| options.client_error(e))
    });
    let mut pubsub = connected.await?;
    let pattern = release_pattern(&options.prefix);
    subscribing
        .bound(async {
            let subscribed = pubsub.psubscribe(&pattern).await;
            subscribed.map_err(|e| options.client_error(e))
        })
        .await?;
    Ok(pubsub)
}

/// The pub/sub listener, from the `subscription` made at open: every message wakes the
/// waiter whose ticket it names; a lost connection wakes every waiter (messages may have
/// been lost) and is made again with backoff. Ends when the backend (the owner of
/// `signals`) is gone.
pub(super) async fn listen(
    signals: Weak<ReleaseSignals>,
    options: RedisOptions,
    subscription: PubSub,
) {
    let backend = options.backend.as_str();
    let mut messages = subscription.into_on_message();
    loop {
        while let Some(msg) = next_message(&mut messages).await {
            let Some(signals) = signals.upgrade() else {
                return;
            };
            if let Some(key) = key_of_channel(msg.get_channel_name()) {
                let ticket = std::str::from_utf8(msg.get_payload_bytes()).unwrap_or("");
                signals.waiters.wake(key, ticket);
            }
        }
        tracing::warn!(
            backend,
            "Redis release listener lost its connection; reconnecting"
        );
        match signals.upgrade() {
            Some(signals) => signals.waiters.wake_all(),
            None => return,
        }
        let mut pause = Duration::from_millis(50);
        let subscription = loop {
            match subscribe(&options, options.timeout).await {
                Ok(subscription) => break subscription,
                Err(e) => {
                    tracing::warn!(backend, error = %e, "Redis release listener cannot reconnect; waiters poll");
                    tokio::time::sleep(jitter(pause)).await;
                    pause = (pause * 2).min(RESUBSCRIBE_MAX);
                }
            }
        };
        tracing::info!(backend, "Redis release listener reconnected");
        let Some(signals) = signals.upgrade() else {
            return;
        };
        // Releases may have passed while it was away, and a restart without persistence
        // may have wiped the leases held here.
        signals.waiters.wake_all();
        signals.reconnected.send_modify(|n| *n += 1);
        messages = subscription.into_on_message();
    }
}

/// The next item of a stream, without a dependency on `futures`.
async fn next_message<S: futures_core::Stream + Unpin>(stream: &mut S) -> Option<S::Item> {
    std::future::poll_fn(|cx| std::pin::Pin::new(&mut *stream).poll_next(cx)).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn release_channels_map_back_to_their_keys() {
        let channel = "{lockattr:flush:acme}:released";
        assert_eq!(key_of_channel(channel), Some("lockattr:flush:acme"));
        assert_eq!(key_of_channel("other"), None);
        assert_eq!(release_pattern("app:"), "{app:*}:released");
    }

    #[test]
    fn globs_are_escaped() {
        assert_eq!(glob_escape("a*b?[c]\\"), "a\\*b\\?\\[c\\]\\\\");
    }

    #[test]
    fn a_release_wakes_only_its_ticket_and_registrations_go_on_drop() {
        let registry = WaiterRegistry::default();
        let first = registry.register("k", "t1");
        let second = registry.register("k", "t2");
        registry.wake("k", "t2");
        assert!(ready_at_once(second.notify.notified()));
        assert!(!ready_at_once(first.notify.notified()));
        drop((first, second));
        assert!(registry.lock().is_empty());
    }

    /// Whether `future` is ready at its first poll.
    fn ready_at_once(future: impl std::future::Future) -> bool {
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        std::pin::pin!(future).poll(&mut cx).is_ready()
    }
}
