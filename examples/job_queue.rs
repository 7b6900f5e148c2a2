//! The classic database job queue on row locks: three worker processes claim pending jobs
//! with `lockattr::rows` and `skip` (`FOR UPDATE SKIP LOCKED` + `LIMIT`), process them, and
//! mark them done in the same transaction. No job runs twice, and no worker waits on
//! another: the rows one worker holds are simply left out of the others' claims.
//!
//! ```sh
//! DATABASE_URL=postgres://postgres@127.0.0.1:5432/test \
//!   cargo run -p lockattr-examples --features postgres,mysql --example job_queue
//! DATABASE_URL=mysql://root@127.0.0.1:3306/test \
//!   cargo run -p lockattr-examples --features postgres,mysql --example job_queue
//! ```
//!
//! The program fills the table `lockattr_example_jobs`, starts itself three times as a
//! worker (`job_queue worker N`), and checks the table when they are done.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use lockattr::rows::{self, RowDatabase};
use sqlx::{AssertSqlSafe, Database, Executor, IntoArguments, MySql, Pool, Postgres};

const JOBS: i64 = 3_000;
const WORKERS: usize = 3;
const BATCH: i64 = 10;
const TABLE: &str = "lockattr_example_jobs";
/// What processing one job takes: a batch holds its rows at least ten times this long.
const WORK: Duration = Duration::from_millis(3);

/// The servers the example runs on (`lockattr::rows` also has SQLite, where it is `Unsupported`).
trait QueueDb: RowDatabase {
    /// `?` placeholders as the server writes them.
    fn sql(text: &str) -> String;
}

impl QueueDb for Postgres {
    fn sql(text: &str) -> String {
        let mut n = 0;
        text.chars()
            .map(|c| match c {
                '?' => {
                    n += 1;
                    format!("${n}")
                }
                c => c.to_string(),
            })
            .collect()
    }
}

impl QueueDb for MySql {
    fn sql(text: &str) -> String {
        text.to_owned()
    }
}

/// One worker: claims up to `BATCH` pending jobs, skipping those other workers hold,
/// processes them and marks them done, until none is left.
async fn worker<DB: QueueDb>(pool: Pool<DB>, me: i64) -> Result<(), Box<dyn std::error::Error>>
where
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'a> <DB as Database>::Arguments: IntoArguments<DB>,
    i64: sqlx::Type<DB> + for<'r> sqlx::Encode<'r, DB> + for<'r> sqlx::Decode<'r, DB>,
    (i64,): for<'r> sqlx::FromRow<'r, DB::Row>,
{
    let claim = DB::sql(&format!(
        "SELECT id FROM {TABLE} WHERE done = 0 ORDER BY id LIMIT {BATCH}"
    ));
    let done = DB::sql(&format!(
        "UPDATE {TABLE} SET done = 1, runs = runs + 1, worker = ? WHERE id = ?"
    ));
    let (mut jobs, mut batches) = (0, 0);
    // How long claiming took, and how long a batch kept its rows locked (claim to commit).
    let (mut longest_claim, mut shortest_hold) = (Duration::ZERO, Duration::MAX);
    loop {
        let mut tx = pool.begin().await?;
        let started = Instant::now();
        // lockattr appends `FOR UPDATE SKIP LOCKED`: the jobs other workers hold are left out.
        let ids: Vec<i64> = rows::lock(&mut tx, sqlx::query_scalar(AssertSqlSafe(claim.clone())))
            .skip()
            .fetch_all()
            .await?;
        longest_claim = longest_claim.max(started.elapsed());
        if ids.is_empty() {
            break;
        }
        for id in &ids {
            tokio::time::sleep(WORK).await; // the job itself
            sqlx::query(AssertSqlSafe(done.clone()))
                .bind(me)
                .bind(*id)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?; // the rows' locks end here
        shortest_hold = shortest_hold.min(started.elapsed());
        jobs += ids.len();
        batches += 1;
    }
    // A claim that waited for another worker's batch would take at least that batch's hold.
    println!(
        "worker {me}: processed {jobs} jobs in {batches} batches; longest claim {:.1} ms, \
         shortest hold of a batch's rows {:.1} ms",
        longest_claim.as_secs_f64() * 1e3,
        shortest_hold.as_secs_f64() * 1e3,
    );
    Ok(())
}

/// Fills the queue, runs the worker processes, and checks that each job ran once.
async fn coordinator<DB: QueueDb>(pool: Pool<DB>) -> Result<(), Box<dyn std::error::Error>>
where
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'a> <DB as Database>::Arguments: IntoArguments<DB>,
    i64: sqlx::Type<DB> + for<'r> sqlx::Encode<'r, DB> + for<'r> sqlx::Decode<'r, DB>,
    (i64,): for<'r> sqlx::FromRow<'r, DB::Row>,
{
    let mut conn = pool.acquire().await?;
    conn.execute(AssertSqlSafe(format!("DROP TABLE IF EXISTS {TABLE}")))
        .await?;
    conn.execute(AssertSqlSafe(format!(
        "CREATE TABLE {TABLE} (id BIGINT PRIMARY KEY, done BIGINT NOT NULL DEFAULT 0, \
         runs BIGINT NOT NULL DEFAULT 0, worker BIGINT)"
    )))
    .await?;
    let ids: Vec<String> = (1..=JOBS).map(|id| format!("({id})")).collect();
    for chunk in ids.chunks(1000) {
        conn.execute(AssertSqlSafe(format!(
            "INSERT INTO {TABLE} (id) VALUES {}",
            chunk.join(", ")
        )))
        .await?;
    }
    println!("{JOBS} jobs queued in {TABLE}; starting {WORKERS} worker processes");

    let started = Instant::now();
    let children: Vec<_> = (1..=WORKERS)
        .map(|n| {
            Command::new(std::env::current_exe()?)
                .args(["worker", &n.to_string()])
                .stdout(Stdio::piped())
                .spawn()
        })
        .collect::<Result<_, _>>()?;
    let (mut longest_claim, mut shortest_hold) = (0.0_f64, f64::MAX);
    for child in children {
        let out = child.wait_with_output()?;
        let text = String::from_utf8_lossy(&out.stdout);
        print!("{text}");
        if !out.status.success() {
            return Err("a worker process failed".into());
        }
        let number_after = |label: &str| -> Option<f64> {
            text.split(label)
                .nth(1)?
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        };
        longest_claim =
            longest_claim.max(number_after("longest claim ").ok_or("a worker's report")?);
        shortest_hold = shortest_hold.min(number_after("rows ").ok_or("a worker's report")?);
    }
    let elapsed = started.elapsed();

    let count = |sql: &str| sqlx::query_scalar::<DB, i64>(AssertSqlSafe(DB::sql(sql)));
    let processed = count(&format!("SELECT COUNT(*) FROM {TABLE} WHERE done = 1"))
        .fetch_one(&mut *conn)
        .await?;
    let not_once = count(&format!("SELECT COUNT(*) FROM {TABLE} WHERE runs <> 1"))
        .fetch_one(&mut *conn)
        .await?;
    let workers = count(&format!("SELECT COUNT(DISTINCT worker) FROM {TABLE}"))
        .fetch_one(&mut *conn)
        .await?;
    println!(
        "all workers done in {:.2} s: {processed} of {JOBS} jobs done, {not_once} run other than \
         exactly once, by {workers} workers",
        elapsed.as_secs_f64()
    );
    if processed != JOBS || not_once != 0 {
        return Err("a job was missed or ran twice".into());
    }
    println!("every job was processed exactly once");
    if longest_claim < shortest_hold {
        println!(
            "the longest claim ({longest_claim:.1} ms) took less than any batch held its rows \
             ({shortest_hold:.1} ms): no worker waited on another"
        );
    } else {
        println!(
            "a claim took {longest_claim:.1} ms, as long as a batch held its rows \
             ({shortest_hold:.1} ms): a busy machine, or a wait"
        );
    }
    Ok(())
}

async fn run<DB: QueueDb>(url: &str, role: Option<i64>) -> Result<(), Box<dyn std::error::Error>>
where
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'a> <DB as Database>::Arguments: IntoArguments<DB>,
    i64: sqlx::Type<DB> + for<'r> sqlx::Encode<'r, DB> + for<'r> sqlx::Decode<'r, DB>,
    (i64,): for<'r> sqlx::FromRow<'r, DB::Row>,
{
    let pool = Pool::<DB>::connect(url).await?;
    match role {
        Some(me) => worker(pool, me).await,
        None => coordinator(pool).await,
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::var("DATABASE_URL")
        .map_err(|_| "set DATABASE_URL to a postgres:// or mysql:// (MariaDB) database")?;
    let args: Vec<String> = std::env::args().collect();
    let role = match args.get(1).map(String::as_str) {
        Some("worker") => Some(args.get(2).ok_or("worker N")?.parse()?),
        _ => None,
    };
    if url.starts_with("postgres") {
        run::<Postgres>(&url, role).await
    } else if url.starts_with("mysql") || url.starts_with("mariadb") {
        run::<MySql>(&url.replacen("mariadb://", "mysql://", 1), role).await
    } else {
        Err("DATABASE_URL must start with postgres:// or mysql://".into())
    }
}
