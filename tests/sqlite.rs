//! The `sqlite://` lease table beyond the conformance suite: the tables are created on
//! first use, two `table=` names do not interfere, `min_hold` outlives the handle, fair
//! waiting across processes, and a deleted or locked file is a clear error.
//!
//! Needs only the `sqlite` feature: every file lives in this process's scratch folder.

mod suite;
mod table_support;

use std::time::Duration;

use lockattr::LockError;
use sqlx::{Connection, Executor};
use suite::{block_on, take};
use table_support::{connect, round_trip, sqlite_url, temp_sqlite, TTL};

#[test]
fn tables_are_created_on_first_use() {
    block_on(async {
        let path = temp_sqlite("first");
        assert!(!path.exists());
        let url = format!("sqlite://{}?table=first_use", path.display());
        let (a, b) = (connect(&url).await, connect(&url).await);
        assert!(path.exists());
        let mut c = sqlx::SqliteConnection::connect(&format!("sqlite://{}", path.display()))
            .await
            .unwrap();
        let n: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name IN ('first_use', 'first_use_waiters')",
        )
        .fetch_one(&mut c)
        .await
        .unwrap();
        assert_eq!(n, 2);
        assert_eq!(round_trip(&a, &b).await, 1);
    });
}

#[test]
fn two_tables_do_not_interfere() {
    block_on(async {
        let base = format!("{}?", sqlite_url("two"));
        table_support::two_tables_do_not_interfere(&base, "one", "two").await;
    });
}

#[test]
fn bad_table_names_are_refused() {
    block_on(table_support::refused_as_invalid(&[
        "sqlite://x.db?table=a-b".to_string(),
        "sqlite://x.db?table=1x".to_string(),
    ]));
    assert!(!std::path::Path::new("x.db").exists());
}

#[test]
fn sqlite_file_deleted_is_a_clear_error() {
    block_on(async {
        let path = temp_sqlite("deleted");
        let url = format!("sqlite://{}", path.display());
        let (a, b) = (connect(&url).await, connect(&url).await);
        round_trip(&a, &b).await;
        let held = take(&a, "held", TTL).await.unwrap();
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
        }
        let e = b.lock("k").ttl(TTL).try_acquire().await.unwrap_err();
        assert!(matches!(e, LockError::Backend { .. }), "{e}");
        let msg = e.to_string();
        assert!(
            msg.contains(&path.display().to_string()) && msg.contains("gone"),
            "{msg}"
        );
        let e = held.extend(TTL).await.unwrap_err();
        assert!(matches!(e, LockError::Backend { .. }), "{e}");
        // A new handle starts a new file.
        let c = connect(&url).await;
        assert!(take(&c, "k", TTL).await.is_some());
    });
}

#[test]
fn sqlite_file_locked_by_another_writer_is_a_clear_error() {
    block_on(async {
        let path = temp_sqlite("locked");
        let url = format!("sqlite://{}?busy_timeout=200", path.display());
        let a = connect(&url).await;
        // Another connection (SQLite's file locks work the same between connections of one
        // process as between processes) takes the write lock and keeps it.
        let mut other = sqlx::SqliteConnection::connect(&format!("sqlite://{}", path.display()))
            .await
            .unwrap();
        other.execute("BEGIN EXCLUSIVE").await.unwrap();
        let started = std::time::Instant::now();
        let e = a.lock("k").ttl(TTL).try_acquire().await.unwrap_err();
        assert!(matches!(e, LockError::Backend { .. }), "{e}");
        assert!(e.to_string().contains("locked"), "{e}");
        assert!(
            started.elapsed() >= Duration::from_millis(150),
            "busy_timeout not waited"
        );
        other.execute("COMMIT").await.unwrap();
        assert!(take(&a, "k", TTL).await.is_some());
    });
}

#[test]
fn min_hold_outlives_the_handle() {
    block_on(table_support::min_hold_outlives_the_handle(&sqlite_url(
        "min-hold",
    )));
}

#[test]
fn waiters_in_other_processes_are_served_in_order() {
    table_support::waiters_in_other_processes_are_served_in_order(&sqlite_url("fifo-processes"));
}

#[test]
fn waiters_that_give_up_leave_the_queue() {
    block_on(table_support::waiters_that_give_up_leave_the_queue(
        &sqlite_url("give-up"),
    ));
}

#[test]
fn killed_waiter_process_lapses() {
    block_on(table_support::killed_waiter_process_lapses(&sqlite_url(
        "killed-waiter",
    )));
}

/// The table records its storage format in `{table}_format` in the file when it is set
/// up; a table whose recorded format is newer than this build's is refused.
#[test]
fn newer_format_is_refused() {
    block_on(async {
        let path = temp_sqlite("format");
        let url = format!("sqlite://{}", path.display());
        connect(&url).await;
        let mut file = sqlx::SqliteConnection::connect(&url).await.unwrap();
        let recorded: Vec<i64> = sqlx::query_scalar("SELECT format FROM lockattr_locks_format")
            .fetch_all(&mut file)
            .await
            .unwrap();
        assert_eq!(recorded, [1]);
        file.execute("INSERT INTO lockattr_locks_format (format) VALUES (2)")
            .await
            .unwrap();
        table_support::refused_as_newer_format(&url, 2).await;
    });
}
