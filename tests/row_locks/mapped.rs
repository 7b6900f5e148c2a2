//! `rows::lock` on sqlx's `Map` (feature `query-macros`): the type the `query!` /
//! `query_as!` / `query_scalar!` macros expand to, built here by hand with `try_map` (the
//! macros need the table at compile time). Its SQL gets the clause, its private mapper maps
//! the locked rows, and the lock's own errors come back, as with the other queries.

use lockattr::rows;
use lockattr::LockError;
use sqlx::query::Map;
use sqlx::{AssertSqlSafe, Row};

use super::{error_with, hold, jobs_table, lock_timeout_set_back_with, pool, refused_unsent_with};
use super::{lock_timeout, set_lock_timeout, Db, SERVER, WAIT};
use super::{skip_with, sql, wait_timeout_with};

type DbRow = <Db as sqlx::Database>::Row;
type Args = <Db as sqlx::Database>::Arguments;

/// What `query!` gives: a record with a field per column.
#[derive(Debug, PartialEq)]
pub struct Record {
    pub id: i64,
    pub processed: i64,
}

/// `SELECT id, processed FROM {table} WHERE id <= {upto} ORDER BY id` as a `Map`, the
/// type `query!` expands to.
fn records(
    table: &str,
    upto: i64,
) -> Map<'static, Db, impl FnMut(DbRow) -> Result<Record, sqlx::Error> + Send, Args> {
    sqlx::query(AssertSqlSafe(sql(&format!(
        "SELECT id, processed FROM {table} WHERE id <= ? ORDER BY id"
    ))))
    .bind(upto)
    .try_map(|row: DbRow| {
        Ok(Record {
            id: row.try_get("id")?,
            processed: row.try_get("processed")?,
        })
    })
}

pub async fn map_skip_error_and_wait_lock_as_the_policy_says() {
    skip_with("rows_map_skip", records, |record| record.id).await;
    error_with("rows_map_error", records).await;
    wait_timeout_with("rows_map_wait", records).await;

    // The rows come back mapped; `fetch_one` / `fetch_optional` as with the other queries.
    let pool = pool().await;
    jobs_table(&pool, "rows_map_fetch", 2).await;
    let mut tx = pool.begin().await.unwrap();
    let got = rows::lock(&mut tx, records("rows_map_fetch", 2))
        .wait(WAIT)
        .fetch_all()
        .await
        .unwrap();
    assert_eq!(
        got,
        vec![
            Record {
                id: 1,
                processed: 0
            },
            Record {
                id: 2,
                processed: 0
            }
        ]
    );
    let one = rows::lock(&mut tx, records("rows_map_fetch", 1))
        .error()
        .fetch_one()
        .await
        .unwrap();
    assert_eq!(one.id, 1);
    let none = rows::lock(&mut tx, records("rows_map_fetch", 0))
        .error()
        .fetch_optional()
        .await
        .unwrap();
    assert_eq!(none, None);
    let e = rows::lock(&mut tx, records("rows_map_fetch", 0))
        .error()
        .fetch_one()
        .await
        .unwrap_err();
    assert!(
        matches!(&e, LockError::Backend { key: Some(key), .. } if key.contains("rows_map_fetch")),
        "no row: {e}"
    );
}

pub async fn map_queries_a_clause_cannot_follow_are_refused_unsent() {
    let pool = pool().await;
    let mut tx = pool.begin().await.unwrap();
    refused_unsent_with(&mut tx, |text| {
        sqlx::query(AssertSqlSafe(text)).try_map(|row: DbRow| row.try_get::<i64, _>(0))
    })
    .await;
    // Nothing was sent, so the transaction is still usable.
    sqlx::query("SELECT 1").execute(&mut *tx).await.unwrap();
}

pub async fn map_sets_the_lock_timeout_back() {
    lock_timeout_set_back_with("rows_map_timeout_back", records, |record| record.id).await;
}

/// A row the mapper cannot decode is a `Backend` error naming the statement, after the lock.
pub async fn map_decode_errors_name_the_statement() {
    let pool = pool().await;
    jobs_table(&pool, "rows_map_decode", 1).await;
    let mut tx = pool.begin().await.unwrap();
    let query = sqlx::query(AssertSqlSafe(sql(
        "SELECT id FROM rows_map_decode WHERE id <= ?",
    )))
    .bind(1_i64)
    .try_map(|row: DbRow| row.try_get::<i64, _>("no_such_column"));
    let e = rows::lock(&mut tx, query)
        .error()
        .fetch_all()
        .await
        .unwrap_err();
    let LockError::Backend { key, backend, .. } = &e else {
        panic!("{e}")
    };
    assert!(
        key.as_deref()
            .is_some_and(|k| k.contains("rows_map_decode") && k.contains("NOWAIT")),
        "{e}"
    );
    assert!(backend.starts_with(SERVER), "{backend}");
}

/// The macros themselves, on table `rows_macro` (its columns are in `tests/.sqlx`, so that
/// the macros need no database when the tests are compiled): `record(n)` is a `query!` of
/// `SELECT id, processed FROM rows_macro WHERE id <= n ORDER BY id`, `scalar(n)` the same
/// ids with `query_scalar!`, `typed(n)` the rows as [`Record`]s with `query_as!`, `id`
/// reads a `query!` record's id.
pub async fn query_macros_lock_their_rows<R, Q, S, T>(
    record: impl Fn(i64) -> Q,
    scalar: impl Fn(i64) -> S,
    typed: impl Fn(i64) -> T,
    id: fn(&R) -> i64,
) where
    R: std::fmt::Debug,
    Q: rows::LockQuery<Db, Output = R>,
    S: rows::LockQuery<Db, Output = i64>,
    T: rows::LockQuery<Db, Output = Record>,
{
    let pool = pool().await;
    jobs_table(&pool, "rows_macro", 4).await;
    let holder = hold(&pool, "rows_macro", 2).await;

    let mut tx = pool.begin().await.unwrap();
    let free = rows::lock(&mut tx, record(4))
        .skip()
        .fetch_all()
        .await
        .unwrap();
    assert_eq!(
        free.iter().map(id).collect::<Vec<_>>(),
        vec![3, 4],
        "{free:?}"
    );
    tx.rollback().await.unwrap();

    let mut tx = pool.begin().await.unwrap();
    let e = rows::lock(&mut tx, scalar(4))
        .error()
        .fetch_all()
        .await
        .unwrap_err();
    let LockError::Conflict { key, .. } = &e else {
        panic!("{e}")
    };
    assert!(
        key.contains("FROM rows_macro") && key.contains("NOWAIT"),
        "{key}"
    );
    tx.rollback().await.unwrap();

    let mut tx = pool.begin().await.unwrap();
    set_lock_timeout(&mut tx, 7).await;
    let before = lock_timeout(&mut tx).await;
    let e = rows::lock(&mut tx, record(1))
        .wait(WAIT)
        .fetch_one()
        .await
        .unwrap_err();
    assert!(matches!(e, LockError::Timeout { .. }), "{e}");
    tx.rollback().await.unwrap();

    holder.commit().await.unwrap();
    let mut tx = pool.begin().await.unwrap();
    set_lock_timeout(&mut tx, 7).await;
    let got = rows::lock(&mut tx, scalar(2))
        .wait(WAIT)
        .fetch_all()
        .await
        .unwrap();
    assert_eq!(got, vec![1, 2]);
    assert_eq!(lock_timeout(&mut tx).await, before, "after the wait");
    let first = rows::lock(&mut tx, typed(4))
        .error()
        .fetch_optional()
        .await
        .unwrap();
    assert_eq!(
        first,
        Some(Record {
            id: 1,
            processed: 0
        })
    );
}

/// [`query_macros_lock_their_rows`] as a test of the target, with the server's placeholder
/// (`"$1"` or `"?"`): the macros take a literal or literals joined with `+`.
macro_rules! query_macros_test {
    ($placeholder:literal) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn query_macros_lock_their_rows() {
            $crate::row_locks::mapped::query_macros_lock_their_rows(
                |upto| {
                    sqlx::query!(
                        "SELECT id, processed FROM rows_macro WHERE id <= "
                            + $placeholder
                            + " ORDER BY id",
                        upto
                    )
                },
                |upto| {
                    sqlx::query_scalar!(
                        "SELECT id FROM rows_macro WHERE id <= " + $placeholder + " ORDER BY id",
                        upto
                    )
                },
                |upto| {
                    sqlx::query_as!(
                        $crate::row_locks::mapped::Record,
                        "SELECT id, processed FROM rows_macro WHERE id <= "
                            + $placeholder
                            + " ORDER BY id",
                        upto
                    )
                },
                |record| record.id,
            )
            .await;
        }
    };
}
pub(crate) use query_macros_test;
