//! `lockattr::rows` on MariaDB / MySQL (`LOCKATTR_TEST_MYSQL_URL`; MariaDB 10.11 here):
//! each policy, release at commit and rollback, `innodb_lock_wait_timeout` set back,
//! refused queries, typed rows, `LOCK IN SHARE MODE`, the modes MariaDB lacks as
//! `Unsupported`, and the job queue across processes. The checks shared with PostgreSQL
//! are in `row_locks/mod.rs`.

use std::time::Duration;

use lockattr::rows::{self, Mode};
use lockattr::LockError;
use sqlx::{AssertSqlSafe, MySqlConnection};

mod row_locks;

type Db = sqlx::MySql;

/// The word the server's name in messages starts with (MariaDB here; `mysql ` for MySQL).
const SERVER: &str = "ma";
/// MySQL and MariaDB count lock waits in whole seconds.
const WAIT: Duration = Duration::from_secs(1);

fn url() -> String {
    lockattr_tests::mysql_url()
}

fn sql(text: &str) -> String {
    text.to_owned()
}

async fn lock_timeout(conn: &mut MySqlConnection) -> String {
    let seconds: i64 =
        sqlx::query_scalar("SELECT CAST(@@SESSION.innodb_lock_wait_timeout AS SIGNED)")
            .fetch_one(conn)
            .await
            .unwrap();
    seconds.to_string()
}

async fn set_lock_timeout(conn: &mut MySqlConnection, seconds: u32) {
    sqlx::query(AssertSqlSafe(format!(
        "SET SESSION innodb_lock_wait_timeout = {seconds}"
    )))
    .execute(conn)
    .await
    .unwrap();
}

row_locks::shared_tests!();

fn row() -> sqlx::query::QueryScalar<'static, Db, i64, sqlx::mysql::MySqlArguments> {
    sqlx::query_scalar("SELECT id FROM rows_mariadb_modes WHERE id = 1")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn modes_mariadb_lacks_are_unsupported_and_share_locks_share() {
    let pool = row_locks::pool().await;
    let version: String = sqlx::query_scalar("SELECT VERSION()")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert!(
        version.contains("MariaDB"),
        "this check is about MariaDB, the server here: {version}"
    );
    row_locks::jobs_table(&pool, "rows_mariadb_modes", 1).await;

    let mut tx = pool.begin().await.unwrap();
    let refused = [
        (
            rows::lock(&mut tx, row())
                .mode(Mode::NoKeyUpdate)
                .skip()
                .fetch_all()
                .await,
            "FOR NO KEY UPDATE",
        ),
        (
            rows::lock(&mut tx, row())
                .mode(Mode::KeyShare)
                .error()
                .fetch_all()
                .await,
            "FOR KEY SHARE",
        ),
        (
            rows::lock(&mut tx, row())
                .of("rows_mariadb_modes")
                .wait(WAIT)
                .fetch_all()
                .await,
            "OF rows_mariadb_modes",
        ),
    ];
    for (result, what_expected) in refused {
        let e = result.unwrap_err();
        let LockError::Unsupported { backend, what, .. } = &e else {
            panic!("{e}")
        };
        assert!(backend.starts_with("mariadb 10."), "{backend}");
        assert!(what.contains(what_expected), "{what}");
        assert!(e.to_string().contains("mariadb 10."), "{e}");
    }
    // Nothing was sent: the transaction took no lock, and a writer goes through at once.
    let mut writer = pool.begin().await.unwrap();
    let got = rows::lock(&mut writer, row())
        .error()
        .fetch_all()
        .await
        .unwrap();
    assert_eq!(got, vec![1]);
    writer.rollback().await.unwrap();

    // LOCK IN SHARE MODE (MariaDB's FOR SHARE): shared with another, not with FOR UPDATE.
    let share = rows::lock(&mut tx, row())
        .mode(Mode::Share)
        .error()
        .fetch_all()
        .await;
    assert_eq!(share.unwrap(), vec![1]);
    let mut other = pool.begin().await.unwrap();
    let share = rows::lock(&mut other, row())
        .mode(Mode::Share)
        .error()
        .fetch_all()
        .await;
    assert_eq!(share.unwrap(), vec![1]);
    let mut third = pool.begin().await.unwrap();
    let update = rows::lock(&mut third, row()).error().fetch_all().await;
    assert!(
        matches!(update, Err(LockError::Conflict { .. })),
        "{update:?}"
    );
}

#[cfg(feature = "query-macros")]
row_locks::mapped::query_macros_test!("?");
