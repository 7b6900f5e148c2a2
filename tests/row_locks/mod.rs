//! What the row-lock targets (`tests/rows_postgres.rs`, `tests/rows_mysql.rs`) share: each
//! check here runs against the real server of the target, which defines `Db` (its sqlx
//! database), `url()`, `sql()` (the `?` placeholders written as the server wants them),
//! `SERVER` (the word its messages name), `WAIT` (a short wait the server can keep),
//! `lock_timeout()` and `set_lock_timeout()` (the session's lock timeout, as text). A
//! target calls [`shared_tests!`]. An unreachable server fails these tests.

use std::time::Duration;

use lockattr::rows;
use lockattr::LockError;
use sqlx::{AssertSqlSafe, Pool};

mod job_queue;
#[cfg(feature = "query-macros")]
pub mod mapped;
pub use job_queue::job_queue_processes_each_job_once;

use super::{lock_timeout, set_lock_timeout, sql, url, Db, SERVER, WAIT};

/// The checks both servers run, as `#[tokio::test]`s.
macro_rules! shared_tests {
    () => {
        $crate::row_locks::shared_tests!(
            skip_leaves_locked_rows_out,
            error_is_a_conflict_naming_the_statement_and_server,
            wait_times_out_after_about_the_wait,
            wait_gets_the_rows_when_the_holder_commits,
            commit_and_rollback_release_the_rows,
            the_lock_timeout_is_set_back_after_the_call,
            queries_a_clause_cannot_follow_are_refused_unsent,
            typed_rows_come_back,
            fetch_optional_locks_as_documented,
            job_queue_processes_each_job_once,
        );
        $crate::row_locks::shared_tests!(
            @mapped
            map_skip_error_and_wait_lock_as_the_policy_says,
            map_queries_a_clause_cannot_follow_are_refused_unsent,
            map_sets_the_lock_timeout_back,
            map_decode_errors_name_the_statement,
        );
    };
    (@mapped $($name:ident),* $(,)?) => {
        $(
            #[cfg(feature = "query-macros")]
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                $crate::row_locks::mapped::$name().await;
            }
        )*
    };
    ($($name:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                $crate::row_locks::$name().await;
            }
        )*
    };
}
pub(crate) use shared_tests;

/// A bound for what must not hang; never a speed target.
const NO_HANG: Duration = Duration::from_secs(60);

pub async fn pool() -> Pool<Db> {
    sqlx::pool::PoolOptions::<Db>::new()
        .max_connections(8)
        .connect(&url())
        .await
        .unwrap_or_else(|e| panic!("the test server at {} answers: {e}", url()))
}

async fn exec(pool: &Pool<Db>, text: &str) {
    sqlx::query(AssertSqlSafe(sql(text)))
        .execute(pool)
        .await
        .unwrap_or_else(|e| panic!("`{text}`: {e}"));
}

/// A fresh table `name` of jobs `1..=rows`: `id`, `done` (0/1), `processed` (a counter).
pub async fn jobs_table(pool: &Pool<Db>, name: &str, rows: i64) {
    exec(pool, &format!("DROP TABLE IF EXISTS {name}")).await;
    exec(
        pool,
        &format!(
            "CREATE TABLE {name} (id BIGINT PRIMARY KEY, done BIGINT NOT NULL DEFAULT 0, \
             processed BIGINT NOT NULL DEFAULT 0, worker VARCHAR(64))"
        ),
    )
    .await;
    let ids: Vec<i64> = (1..=rows).collect();
    for chunk in ids.chunks(1000) {
        let values: Vec<String> = chunk.iter().map(|id| format!("({id})")).collect();
        exec(
            pool,
            &format!("INSERT INTO {name} (id) VALUES {}", values.join(", ")),
        )
        .await;
    }
}

/// `SELECT id FROM {table} WHERE id <= {upto} ORDER BY id`, as a typed query.
fn ids(
    table: &str,
    upto: i64,
) -> sqlx::query::QueryScalar<'static, Db, i64, <Db as sqlx::Database>::Arguments> {
    sqlx::query_scalar(AssertSqlSafe(sql(&format!(
        "SELECT id FROM {table} WHERE id <= ? ORDER BY id"
    ))))
    .bind(upto)
}

/// A transaction holding rows `1..=upto` of `table` (named one by one: a range would also
/// lock the next row on MySQL / MariaDB, whose range scans lock the gap after it).
async fn hold(pool: &Pool<Db>, table: &str, upto: i64) -> sqlx::Transaction<'static, Db> {
    let mut tx = pool.begin().await.unwrap();
    let list: Vec<String> = (1..=upto).map(|id| id.to_string()).collect();
    let query = sqlx::query_scalar(AssertSqlSafe(format!(
        "SELECT id FROM {table} WHERE id IN ({}) ORDER BY id",
        list.join(", ")
    )));
    let held: Vec<i64> = rows::lock(&mut tx, query)
        .error()
        .fetch_all()
        .await
        .unwrap();
    assert_eq!(held, (1..=upto).collect::<Vec<_>>());
    tx
}

pub async fn skip_leaves_locked_rows_out() {
    skip_with("rows_skip", ids, |id| *id).await;
}

/// `skip` leaves held rows out, with `query(table, n)` selecting rows `1..=n` of `table`
/// (as the other `…_with` checks), `id` reading a row's id.
pub async fn skip_with<Q: rows::LockQuery<Db>>(
    table: &str,
    query: fn(&str, i64) -> Q,
    id: fn(&Q::Output) -> i64,
) {
    let pool = pool().await;
    jobs_table(&pool, table, 4).await;
    let holder = hold(&pool, table, 2).await;
    let mut tx = pool.begin().await.unwrap();
    let free = tokio::time::timeout(
        NO_HANG,
        rows::lock(&mut tx, query(table, 4)).skip().fetch_all(),
    )
    .await
    .expect("SKIP LOCKED does not wait")
    .unwrap();
    assert_eq!(
        free.iter().map(id).collect::<Vec<_>>(),
        vec![3, 4],
        "rows 1 and 2 are held, so left out"
    );
    // The locks taken with skip hold too: a third transaction gets nothing.
    let mut third = pool.begin().await.unwrap();
    let none = rows::lock(&mut third, query(table, 4))
        .skip()
        .fetch_all()
        .await
        .unwrap();
    assert!(
        none.is_empty(),
        "{:?}",
        none.iter().map(id).collect::<Vec<_>>()
    );
    drop(holder);
}

pub async fn error_is_a_conflict_naming_the_statement_and_server() {
    error_with("rows_error", ids).await;
}

/// `error` is a `Conflict` naming the statement and the server (see [`skip_with`]).
pub async fn error_with<Q: rows::LockQuery<Db>>(table: &str, query: fn(&str, i64) -> Q) {
    let pool = pool().await;
    jobs_table(&pool, table, 2).await;
    let _holder = hold(&pool, table, 1).await;
    let mut tx = pool.begin().await.unwrap();
    let Err(e) = tokio::time::timeout(
        NO_HANG,
        rows::lock(&mut tx, query(table, 2)).error().fetch_all(),
    )
    .await
    .expect("NOWAIT does not wait") else {
        panic!("a held row is a conflict")
    };
    let LockError::Conflict { key, backend } = &e else {
        panic!("{e}")
    };
    assert!(
        key.contains(&format!("FROM {table}")) && key.contains("NOWAIT"),
        "{key}"
    );
    assert!(backend.starts_with(SERVER), "{backend}");
    assert!(!e.to_string().contains("://"), "no URL in {e}");
}

pub async fn wait_times_out_after_about_the_wait() {
    wait_timeout_with("rows_wait_timeout", ids).await;
}

/// `wait` is a `Timeout` after about the wait (see [`skip_with`]).
pub async fn wait_timeout_with<Q: rows::LockQuery<Db>>(table: &str, query: fn(&str, i64) -> Q) {
    let pool = pool().await;
    jobs_table(&pool, table, 1).await;
    let _holder = hold(&pool, table, 1).await;
    let mut tx = pool.begin().await.unwrap();
    let Err(e) = tokio::time::timeout(
        NO_HANG,
        rows::lock(&mut tx, query(table, 1)).wait(WAIT).fetch_all(),
    )
    .await
    .expect("the wait ends") else {
        panic!("a held row times the wait out")
    };
    let LockError::Timeout {
        waited, backend, ..
    } = &e
    else {
        panic!("{e}")
    };
    // The server ended the wait, not lockattr: it cannot have ended sooner.
    assert!(
        *waited >= WAIT.mul_f32(0.9),
        "waited {waited:?} for {WAIT:?}"
    );
    assert!(backend.starts_with(SERVER), "{backend}");
}

pub async fn wait_gets_the_rows_when_the_holder_commits() {
    let pool = pool().await;
    jobs_table(&pool, "rows_wait_commit", 2).await;
    let holder = hold(&pool, "rows_wait_commit", 2).await;
    let waiter = {
        let pool = pool.clone();
        tokio::spawn(async move {
            let mut tx = pool.begin().await.unwrap();
            let got = rows::lock(&mut tx, ids("rows_wait_commit", 2))
                .wait(Duration::from_secs(30))
                .fetch_all()
                .await;
            tx.commit().await.unwrap();
            got
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    holder.commit().await.unwrap();
    let got = tokio::time::timeout(NO_HANG, waiter)
        .await
        .expect("the waiter ends")
        .unwrap();
    assert_eq!(got.unwrap(), vec![1, 2]);
}

pub async fn commit_and_rollback_release_the_rows() {
    let pool = pool().await;
    jobs_table(&pool, "rows_release", 1).await;
    for end in ["commit", "rollback"] {
        let holder = hold(&pool, "rows_release", 1).await;
        let mut other = pool.begin().await.unwrap();
        let e = rows::lock(&mut other, ids("rows_release", 1))
            .error()
            .fetch_all()
            .await;
        assert!(matches!(e, Err(LockError::Conflict { .. })), "{end}: {e:?}");
        other.rollback().await.unwrap();
        match end {
            "commit" => holder.commit().await.unwrap(),
            _ => holder.rollback().await.unwrap(),
        }
        let mut next = pool.begin().await.unwrap();
        let got = rows::lock(&mut next, ids("rows_release", 1))
            .error()
            .fetch_all()
            .await;
        assert_eq!(got.unwrap(), vec![1], "after {end}");
        next.rollback().await.unwrap();
    }
}

pub async fn the_lock_timeout_is_set_back_after_the_call() {
    lock_timeout_set_back_with("rows_timeout_back", ids, |id| *id).await;
}

/// The lock timeout set back after a wait that got its rows and after one that timed out,
/// with `query(table, n)` selecting rows `1..=n` of `table`, `id` reading a row's id.
pub async fn lock_timeout_set_back_with<Q: rows::LockQuery<Db>>(
    table: &str,
    query: fn(&str, i64) -> Q,
    id: fn(&Q::Output) -> i64,
) {
    let pool = pool().await;
    jobs_table(&pool, table, 2).await;
    let mut tx = pool.begin().await.unwrap();
    set_lock_timeout(&mut tx, 7).await;
    let before = lock_timeout(&mut tx).await;
    // A wait that gets its rows, then (MySQL / MariaDB: in the same transaction) one that times out.
    let got = rows::lock(&mut tx, query(table, 1))
        .wait(WAIT)
        .fetch_all()
        .await
        .unwrap();
    assert_eq!(got.iter().map(id).collect::<Vec<_>>(), vec![1]);
    assert_eq!(
        lock_timeout(&mut tx).await,
        before,
        "after a wait that got its rows"
    );
    tx.commit().await.unwrap();

    let _holder = hold(&pool, table, 2).await;
    let mut conn = pool.acquire().await.unwrap();
    set_lock_timeout(&mut conn, 7).await;
    let before = lock_timeout(&mut conn).await;
    {
        let mut tx = sqlx::Connection::begin(&mut *conn).await.unwrap();
        let e = rows::lock(&mut tx, query(table, 2))
            .wait(WAIT)
            .fetch_all()
            .await;
        assert!(matches!(e, Err(LockError::Timeout { .. })), "{:?}", e.err());
        tx.rollback().await.unwrap();
    }
    assert_eq!(
        lock_timeout(&mut conn).await,
        before,
        "after a wait that timed out"
    );
}

pub async fn queries_a_clause_cannot_follow_are_refused_unsent() {
    let pool = pool().await;
    let mut tx = pool.begin().await.unwrap();
    refused_unsent_with(&mut tx, |text| sqlx::query(AssertSqlSafe(text))).await;
    let e = rows::lock(&mut tx, ids("rows_missing", 1))
        .of("jobs; DROP TABLE x")
        .skip()
        .fetch_all()
        .await;
    assert!(matches!(e, Err(LockError::InvalidOptions { .. })), "{e:?}");
    // Nothing was sent, so the transaction is still usable.
    sqlx::query("SELECT 1").execute(&mut *tx).await.unwrap();
}

/// Queries a clause cannot follow, made with `query(text)`, refused in `tx` unsent.
pub async fn refused_unsent_with<Q: rows::LockQuery<Db>>(
    tx: &mut sqlx::Transaction<'static, Db>,
    query: fn(&'static str) -> Q,
) {
    // The table does not exist: had a query been sent, the server would have said so.
    for (text, why) in [
        (
            "SELECT id FROM rows_missing UNION SELECT id FROM rows_missing",
            "UNION",
        ),
        (
            "SELECT id FROM rows_missing FOR UPDATE",
            "already has a lock clause",
        ),
        ("SELECT id FROM rows_missing;", "`;`"),
        ("DELETE FROM rows_missing", "SELECT"),
    ] {
        let Err(e) = rows::lock(tx, query(text)).skip().fetch_all().await else {
            panic!("{text} was not refused")
        };
        let LockError::InvalidOptions {
            key,
            backend,
            reason,
        } = &e
        else {
            panic!("{text}: {e}")
        };
        assert!(reason.contains(why), "{text}: {reason}");
        assert!(
            key.contains("rows_missing") && backend.starts_with(SERVER),
            "{e}"
        );
    }
}

pub async fn typed_rows_come_back() {
    #[derive(Debug, PartialEq)]
    struct Job {
        id: i64,
        processed: i64,
    }
    // What `#[derive(sqlx::FromRow)]` writes (the derive needs sqlx's `derive` feature).
    impl<'r> sqlx::FromRow<'r, <Db as sqlx::Database>::Row> for Job {
        fn from_row(row: &'r <Db as sqlx::Database>::Row) -> Result<Self, sqlx::Error> {
            use sqlx::Row;
            Ok(Job {
                id: row.try_get("id")?,
                processed: row.try_get("processed")?,
            })
        }
    }
    let pool = pool().await;
    jobs_table(&pool, "rows_typed", 3).await;
    let mut tx = pool.begin().await.unwrap();
    let q = sqlx::query_as::<_, Job>(AssertSqlSafe(sql(
        "SELECT id, processed FROM rows_typed WHERE id >= ? ORDER BY id",
    )))
    .bind(2_i64);
    let jobs = rows::lock(&mut tx, q).skip().fetch_all().await.unwrap();
    assert_eq!(
        jobs,
        vec![
            Job {
                id: 2,
                processed: 0
            },
            Job {
                id: 3,
                processed: 0
            }
        ]
    );
    let first = rows::lock(&mut tx, ids("rows_typed", 3))
        .error()
        .fetch_optional()
        .await
        .unwrap();
    assert_eq!(first, Some(1));
    let one = rows::lock(&mut tx, ids("rows_typed", 1))
        .error()
        .fetch_one()
        .await
        .unwrap();
    assert_eq!(one, 1);
    let none = rows::lock(&mut tx, ids("rows_typed", 0))
        .error()
        .fetch_optional()
        .await
        .unwrap();
    assert_eq!(none, None);
    let e = rows::lock(&mut tx, ids("rows_typed", 0))
        .error()
        .fetch_one()
        .await
        .unwrap_err();
    let LockError::Backend { key, backend, .. } = &e else {
        panic!("{e}")
    };
    assert!(
        key.as_deref().is_some_and(|k| k.contains("rows_typed")) && backend.starts_with(SERVER),
        "{e}"
    );
}

/// `fetch_optional` returns the first row, and the server locks every row selected.
pub async fn fetch_optional_locks_as_documented() {
    let pool = pool().await;
    jobs_table(&pool, "rows_optional", 2).await;
    let mut tx = pool.begin().await.unwrap();
    let first = rows::lock(&mut tx, ids("rows_optional", 2))
        .error()
        .fetch_optional()
        .await;
    assert_eq!(first.unwrap(), Some(1));
    let mut other = pool.begin().await.unwrap();
    let second = sqlx::query_scalar(AssertSqlSafe("SELECT id FROM rows_optional WHERE id = 2"));
    let second: Result<Vec<i64>, _> = rows::lock(&mut other, second).error().fetch_all().await;
    // Every row the query selected is locked, not only the one returned.
    assert!(
        matches!(second, Err(LockError::Conflict { .. })),
        "{second:?}"
    );
}
