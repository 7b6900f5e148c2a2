//! `lockattr::rows` on PostgreSQL (`LOCKATTR_TEST_POSTGRES_URL`): each policy, release at
//! commit and rollback, `lock_timeout` set back, refused queries, typed rows, every mode
//! with `OF`, and the job queue across processes. The checks shared with MySQL / MariaDB
//! are in `row_locks/mod.rs`.

use std::time::Duration;

use lockattr::rows::{self, Mode};
use lockattr::LockError;
use sqlx::{AssertSqlSafe, PgConnection};

mod row_locks;

type Db = sqlx::Postgres;

/// The word the server's name in messages starts with.
const SERVER: &str = "postgres ";
/// A wait PostgreSQL keeps to the millisecond.
const WAIT: Duration = Duration::from_millis(300);

fn url() -> String {
    lockattr_tests::postgres_url()
}

/// `?` placeholders as `$1`, `$2`, … (the tests' SQL has no `?` elsewhere).
fn sql(text: &str) -> String {
    let mut out = String::new();
    let mut n = 0;
    for c in text.chars() {
        if c == '?' {
            n += 1;
            out.push_str(&format!("${n}"));
        } else {
            out.push(c);
        }
    }
    out
}

async fn lock_timeout(conn: &mut PgConnection) -> String {
    sqlx::query_scalar("SELECT current_setting('lock_timeout')")
        .fetch_one(conn)
        .await
        .unwrap()
}

async fn set_lock_timeout(conn: &mut PgConnection, seconds: u32) {
    sqlx::query(AssertSqlSafe(format!("SET lock_timeout = '{seconds}s'")))
        .execute(conn)
        .await
        .unwrap();
}

row_locks::shared_tests!();

/// `row`'s lock in `mode` taken with `error()`: `Ok` when it was free for that mode.
async fn try_mode(
    tx: &mut sqlx::Transaction<'static, Db>,
    mode: Mode,
    of: Option<&str>,
    text: &str,
) -> Result<Vec<i64>, LockError> {
    let mut lock = rows::lock(tx, sqlx::query_scalar(AssertSqlSafe(text.to_owned()))).mode(mode);
    if let Some(table) = of {
        lock = lock.of(table);
    }
    lock.error().fetch_all().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_mode_and_of_lock_as_postgres_says() {
    let pool = row_locks::pool().await;
    row_locks::jobs_table(&pool, "rows_modes", 1).await;
    row_locks::jobs_table(&pool, "rows_modes_other", 1).await;
    let row = "SELECT id FROM rows_modes WHERE id = 1";
    let conflict = |r: Result<Vec<i64>, LockError>| matches!(r, Err(LockError::Conflict { .. }));

    // FOR SHARE: shared with another FOR SHARE, not with FOR UPDATE.
    let mut a = pool.begin().await.unwrap();
    assert_eq!(
        try_mode(&mut a, Mode::Share, None, row).await.unwrap(),
        vec![1]
    );
    let mut b = pool.begin().await.unwrap();
    assert_eq!(
        try_mode(&mut b, Mode::Share, None, row).await.unwrap(),
        vec![1]
    );
    let mut c = pool.begin().await.unwrap();
    assert!(conflict(try_mode(&mut c, Mode::Update, None, row).await));
    for tx in [a, b, c] {
        tx.rollback().await.unwrap();
    }

    // FOR NO KEY UPDATE lets FOR KEY SHARE in, not FOR SHARE.
    let mut a = pool.begin().await.unwrap();
    assert_eq!(
        try_mode(&mut a, Mode::NoKeyUpdate, None, row)
            .await
            .unwrap(),
        vec![1]
    );
    let mut b = pool.begin().await.unwrap();
    assert_eq!(
        try_mode(&mut b, Mode::KeyShare, None, row).await.unwrap(),
        vec![1]
    );
    let mut c = pool.begin().await.unwrap();
    assert!(conflict(try_mode(&mut c, Mode::Share, None, row).await));
    for tx in [a, b, c] {
        tx.rollback().await.unwrap();
    }

    // OF: only the named table's rows are locked.
    let join = "SELECT rows_modes.id FROM rows_modes CROSS JOIN rows_modes_other";
    let mut a = pool.begin().await.unwrap();
    assert_eq!(
        try_mode(&mut a, Mode::Update, Some("rows_modes"), join)
            .await
            .unwrap(),
        vec![1]
    );
    let mut b = pool.begin().await.unwrap();
    let other = "SELECT id FROM rows_modes_other WHERE id = 1";
    assert_eq!(
        try_mode(&mut b, Mode::Update, None, other).await.unwrap(),
        vec![1]
    );
    assert!(conflict(try_mode(&mut b, Mode::Update, None, row).await));
}

#[cfg(feature = "query-macros")]
row_locks::mapped::query_macros_test!("$1");
