//! How `lockattr` prints locks: a table for people, JSON for scripts.

use std::time::Duration;

use serde_json::{json, Value};

use crate::backend::admin::{Fence, HeldLock, Owner};
use crate::Locks;

/// A time left as people read it: `350ms`, `29.1s`, `5m03s`, `2h05m`; `?` if unknown.
///
/// ```
/// use std::time::Duration;
/// use lockattr::cli::format_time_left;
/// assert_eq!(format_time_left(Some(Duration::from_millis(29_140))), "29.1s");
/// assert_eq!(format_time_left(None), "?");
/// ```
pub fn format_time_left(left: Option<Duration>) -> String {
    let Some(left) = left else {
        return "?".to_owned();
    };
    let ms = left.as_millis();
    let secs = left.as_secs();
    match ms {
        0..=999 => format!("{ms}ms"),
        1_000..=59_999 => format!("{}.{}s", secs, (ms % 1000) / 100),
        60_000..=3_599_999 => format!("{}m{:02}s", secs / 60, secs % 60),
        _ => format!("{}h{:02}m", secs / 3600, (secs % 3600) / 60),
    }
}

/// The key column: the key as the program names it, or the stored key when it is hashed.
fn key_cell(lock: &HeldLock) -> String {
    match &lock.key {
        Some(key) => key.clone(),
        None => format!("{} (hashed)", lock.stored_key),
    }
}

fn owner_cell(owner: Option<&Owner>) -> String {
    owner.map_or_else(|| "?".to_owned(), Owner::to_string)
}

/// `held` as a table: a header line naming the backend, then one row per lock.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let locks = lockattr::connect("memory://table-doc").await.unwrap();
/// assert_eq!(
///     lockattr::cli::held_table(&locks, &[]),
///     "no locks held on memory://table-doc (prefix `lockattr:`)\n"
/// );
/// # }
/// ```
pub fn held_table(locks: &Locks, held: &[HeldLock]) -> String {
    let place = format!("{} (prefix `{}`)", locks.backend_name(), locks.prefix());
    if held.is_empty() {
        return format!("no locks held on {place}\n");
    }
    let rows: Vec<[String; 4]> = held
        .iter()
        .map(|lock| {
            [
                key_cell(lock),
                lock.token.to_string(),
                format_time_left(lock.time_left),
                owner_cell(lock.owner.as_ref()),
            ]
        })
        .collect();
    let header = ["KEY", "TOKEN", "TIME LEFT", "OWNER"].map(str::to_owned);
    let mut widths = header.clone().map(|h| h.chars().count());
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let count = match held.len() {
        1 => "1 lock".to_owned(),
        n => format!("{n} locks"),
    };
    let mut out = format!("{count} held on {place}\n");
    for row in std::iter::once(&header).chain(&rows) {
        let mut line = String::new();
        for (i, (cell, width)) in row.iter().zip(widths).enumerate() {
            if i + 1 == row.len() {
                line.push_str(cell);
            } else {
                let pad = width - cell.chars().count();
                line.push_str(cell);
                line.push_str(&" ".repeat(pad + 2));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    if held.iter().any(|l| matches!(l.token, Fence::AtMost(_))) {
        out.push_str("<=N: the holder's token is at most N (Redis: the key's fencing counter; Memcached: from the lock's CAS)\n");
    }
    out
}

/// `inspect` for people: one line per field.
pub fn lock_lines(lock: &HeldLock) -> String {
    format!(
        "key        {}\nstored key {}\ntoken      {}\ntime left  {}\nowner      {}\n",
        lock.key.as_deref().unwrap_or("? (hashed)"),
        lock.stored_key,
        lock.token,
        format_time_left(lock.time_left),
        owner_cell(lock.owner.as_ref()),
    )
}

fn lock_value(lock: &HeldLock) -> Value {
    let (token, kind) = match lock.token {
        Fence::Exact(n) => (Some(n), "exact"),
        Fence::AtMost(n) => (Some(n), "at_most"),
        _ => (None, "unknown"),
    };
    json!({
        "key": lock.key,
        "stored_key": lock.stored_key,
        "token": token,
        "token_kind": kind,
        "time_left_ms": lock.time_left.map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
        "owner": lock.owner.as_ref().map(|o| json!({
            "host": o.host,
            "pid": o.pid,
            "function": o.function,
            "session": o.session,
        })),
    })
}

/// `held --json`: `{"backend", "prefix", "locks": [{"key", "stored_key", "token",
/// "token_kind" ("exact", "at_most", "unknown"), "time_left_ms", "owner": {"host", "pid",
/// "function", "session"} or null}]}`, on one line; unknown values are `null`.
pub fn held_json(locks: &Locks, held: &[HeldLock]) -> String {
    let value = json!({
        "backend": locks.backend_name(),
        "prefix": locks.prefix(),
        "locks": held.iter().map(lock_value).collect::<Vec<_>>(),
    });
    format!("{value}\n")
}

/// `inspect --json`: `{"backend", "key", "held": bool, "lock": {…} or null}` (the lock's
/// fields as in [`held_json`]), on one line.
pub fn lock_json(locks: &Locks, key: &str, held: Option<&HeldLock>) -> String {
    let value = json!({
        "backend": locks.backend_name(),
        "key": key,
        "held": held.is_some(),
        "lock": held.map(lock_value),
    });
    format!("{value}\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lock(key: Option<&str>, stored: &str, token: Fence, left_ms: Option<u64>) -> HeldLock {
        let mut lock = HeldLock::new(stored.to_owned(), token, left_ms.map(Duration::from_millis));
        lock.key = key.map(str::to_owned);
        lock
    }

    async fn locks() -> Locks {
        crate::connect("memory://render-tests").await.unwrap()
    }

    #[test]
    fn times_read_naturally() {
        let t = |ms| format_time_left(Some(Duration::from_millis(ms)));
        assert_eq!(t(0), "0ms");
        assert_eq!(t(999), "999ms");
        assert_eq!(t(1_000), "1.0s");
        assert_eq!(t(59_999), "59.9s");
        assert_eq!(t(60_000), "1m00s");
        assert_eq!(t(303_000), "5m03s");
        assert_eq!(t(7_500_000), "2h05m");
    }

    #[tokio::test]
    async fn the_table_lines_up_its_columns() {
        let locks = locks().await;
        let held = [
            lock(
                Some("flush:acme"),
                "lockattr:flush:acme",
                Fence::Exact(42),
                Some(29_140),
            )
            .with_owner(Some(Owner::from_holder("web-1:4242"))),
            lock(
                None,
                "lockattr:xxxx#0123456789abcdef0123456789abcdef",
                Fence::AtMost(1_700_000_000_000_000_007),
                None,
            ),
        ];
        let table = held_table(&locks, &held);
        let expected = "\
2 locks held on memory://render-tests (prefix `lockattr:`)
KEY                                                      TOKEN                  TIME LEFT  OWNER
flush:acme                                               42                     29.1s      web-1 pid 4242
lockattr:xxxx#0123456789abcdef0123456789abcdef (hashed)  <=1700000000000000007  ?          ?
<=N: the holder's token is at most N (Redis: the key's fencing counter; Memcached: from the lock's CAS)
";
        assert_eq!(table, expected);
    }

    #[tokio::test]
    async fn json_has_every_field_and_parses() {
        let locks = locks().await;
        let held = [lock(Some("a"), "lockattr:a", Fence::Exact(7), Some(1500))
            .with_owner(Some(Owner::from_holder("h:9")))];
        let value: Value = serde_json::from_str(&held_json(&locks, &held)).unwrap();
        assert_eq!(value["backend"], "memory://render-tests");
        assert_eq!(value["prefix"], "lockattr:");
        let first = &value["locks"][0];
        assert_eq!(first["key"], "a");
        assert_eq!(first["stored_key"], "lockattr:a");
        assert_eq!(first["token"], 7);
        assert_eq!(first["token_kind"], "exact");
        assert_eq!(first["time_left_ms"], 1500);
        assert_eq!(first["owner"]["host"], "h");
        assert_eq!(first["owner"]["pid"], 9);
        assert!(first["owner"]["function"].is_null());
        assert!(first["owner"]["session"].is_null());

        let missing: Value = serde_json::from_str(&lock_json(&locks, "b", None)).unwrap();
        assert_eq!(missing["held"], false);
        assert!(missing["lock"].is_null());
    }

    #[test]
    fn inspect_lines_name_each_field() {
        let text = lock_lines(&lock(Some("a"), "lockattr:a", Fence::Unknown, Some(2_000)));
        assert_eq!(
            text,
            "key        a\nstored key lockattr:a\ntoken      ?\ntime left  2.0s\nowner      ?\n"
        );
    }
}
