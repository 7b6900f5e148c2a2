//! The Lua scripts, one file each in `scripts/`, put together at compile time.
//!
//! Two files are shared parts that define functions for the scripts placed after them:
//! `next_fence.lua` (the next fencing token of a counter, seeding a lost one from the
//! server's clock) and `queue.lua` (the oldest live waiter of a lock, and handing the lock
//! to it). Every script is given the lock's name `{K}` as `KEYS[1]` and reaches the names
//! beside it by appending to it; each file's header says its `KEYS`, `ARGV` and answer.

use redis::Script;

/// `next_fence(f)`: the next fencing token of the counter `f`, as a string.
const NEXT_FENCE: &str = include_str!("scripts/next_fence.lua");
/// `now_ms()`, `live_head(l)` and `hand_off(l)`: the waiter queue of lock `l`.
const QUEUE: &str = include_str!("scripts/queue.lua");

/// The scripts this backend runs, each loaded once per server by its SHA (the client sends
/// `EVALSHA`, and the script text only when the server does not know it).
pub(super) struct Scripts {
    /// Seeds a fencing counter that an `INCR` made from nothing; answers the next token.
    pub(super) seed: Script,
    /// After an uncontended take that found waiters queued: hands the key to the oldest
    /// live waiter (0), or keeps it if none is live (1).
    pub(super) yield_to_waiters: Script,
    /// A waiter's attempt: the fence if granted, else `-1 - pttl` after queueing.
    pub(super) acquire_queued: Script,
    /// Token-checked release: delete, hand to the oldest waiter, or keep for `min_hold`.
    pub(super) release: Script,
    /// Token-checked `PEXPIRE`.
    pub(super) extend: Script,
    /// A waiter leaves the queue, handing on a key that was handed to it.
    pub(super) leave: Script,
    /// An operator's forced release: ends the lease whoever holds it (see `admin.rs`).
    pub(super) force_release: Script,
}

impl Scripts {
    /// The scripts, hashed (their SHA-1 is what `EVALSHA` sends).
    pub(super) fn new() -> Self {
        Scripts {
            seed: Script::new(&[NEXT_FENCE, include_str!("scripts/seed.lua")].concat()),
            yield_to_waiters: Script::new(
                &[QUEUE, include_str!("scripts/yield_to_waiters.lua")].concat(),
            ),
            acquire_queued: Script::new(
                &[
                    NEXT_FENCE,
                    QUEUE,
                    include_str!("scripts/acquire_queued.lua"),
                ]
                .concat(),
            ),
            // The fast path (a compare-and-delete) returns before the queue's functions
            // are defined.
            release: Script::new(
                &[
                    include_str!("scripts/release.lua"),
                    QUEUE,
                    include_str!("scripts/release_handoff.lua"),
                ]
                .concat(),
            ),
            extend: Script::new(include_str!("scripts/extend.lua")),
            leave: Script::new(&[QUEUE, include_str!("scripts/leave.lua")].concat()),
            force_release: Script::new(
                &[QUEUE, include_str!("scripts/force_release.lua")].concat(),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scripts_reach_the_names_beside_the_lock_by_appending() {
        assert!(include_str!("scripts/acquire_queued.lua").contains("l .. ':queue'"));
        assert!(QUEUE.contains("l .. ':released'"));
        assert!(NEXT_FENCE.starts_with("--") && NEXT_FENCE.ends_with('\n'));
    }
}
