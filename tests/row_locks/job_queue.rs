//! The job queue across processes: the target re-runs itself as the worker processes.

use std::collections::HashMap;
use std::process::Command;

use lockattr::rows;
use sqlx::AssertSqlSafe;

use super::{jobs_table, pool};
use crate::sql;

/// The job queue: `PROCESSES` processes of `WORKERS` workers each claim jobs with
/// `skip`, bump each job's counter with a read and a separate write (not atomic: two
/// workers on one job would lose or double a count), and mark it done in the same
/// transaction. Every counter must end at exactly 1.
pub const JOBS: i64 = 5_000;
const PROCESSES: usize = 4;
const WORKERS: usize = 4;
const QUEUE: &str = "rows_job_queue";
const WORKER_ENV: &str = "LOCKATTR_ROWS_WORKER";

/// The worker side: runs `WORKERS` workers until no job is left; prints `claimed N`.
async fn work(process: &str) {
    let pool = pool().await;
    let mut tasks = Vec::new();
    for w in 0..WORKERS {
        let pool = pool.clone();
        let name = format!("{process}.{w}");
        tasks.push(tokio::spawn(async move {
            let mut claimed = 0;
            loop {
                let mut tx = pool.begin().await.unwrap();
                let batch = rows::lock(
                    &mut tx,
                    sqlx::query_scalar::<_, i64>(AssertSqlSafe(sql(&format!(
                        "SELECT id FROM {QUEUE} WHERE done = 0 ORDER BY id LIMIT 10"
                    )))),
                )
                .skip()
                .fetch_all()
                .await
                .unwrap();
                if batch.is_empty() {
                    tx.rollback().await.unwrap();
                    return claimed;
                }
                for id in &batch {
                    let seen: i64 = sqlx::query_scalar(AssertSqlSafe(sql(&format!(
                        "SELECT processed FROM {QUEUE} WHERE id = ?"
                    ))))
                    .bind(id)
                    .fetch_one(&mut *tx)
                    .await
                    .unwrap();
                    sqlx::query(AssertSqlSafe(sql(&format!(
                        "UPDATE {QUEUE} SET processed = ?, done = 1, worker = ? WHERE id = ?"
                    ))))
                    .bind(seen + 1)
                    .bind(&name)
                    .bind(id)
                    .execute(&mut *tx)
                    .await
                    .unwrap();
                }
                tx.commit().await.unwrap();
                claimed += batch.len();
            }
        }));
    }
    let mut total = 0;
    for task in tasks {
        total += task.await.unwrap();
    }
    println!("\nclaimed {total}");
}

pub async fn job_queue_processes_each_job_once() {
    if let Ok(process) = std::env::var(WORKER_ENV) {
        return work(&process).await;
    }
    let pool = pool().await;
    jobs_table(&pool, QUEUE, JOBS).await;
    let children: Vec<_> = (0..PROCESSES)
        .map(|p| {
            Command::new(std::env::current_exe().unwrap())
                .args([
                    "job_queue_processes_each_job_once",
                    "--exact",
                    "--nocapture",
                    "--test-threads=1",
                ])
                .env(WORKER_ENV, format!("p{p}"))
                .stdout(std::process::Stdio::piped())
                .spawn()
                .expect("a worker process starts")
        })
        .collect();
    let mut claimed = 0;
    for child in children {
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "a worker process failed: {:?}",
            out.status
        );
        let text = String::from_utf8_lossy(&out.stdout);
        let n: usize = text
            .lines()
            .find_map(|l| l.split("claimed ").nth(1))
            .unwrap_or_else(|| panic!("a worker printed its count: {text}"))
            .parse()
            .unwrap();
        claimed += n;
    }
    assert_eq!(
        claimed, JOBS as usize,
        "the workers claimed each job once between them"
    );
    let counts: Vec<(i64, i64, Option<String>)> = sqlx::query_as(AssertSqlSafe(format!(
        "SELECT processed, done, worker FROM {QUEUE} ORDER BY id"
    )))
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(counts.len(), JOBS as usize);
    let mut per_process: HashMap<String, usize> = HashMap::new();
    for (i, (processed, done, worker)) in counts.iter().enumerate() {
        assert_eq!(
            (*processed, *done),
            (1, 1),
            "job {} was processed {processed} times",
            i + 1
        );
        let worker = worker.as_deref().expect("a worker is recorded");
        *per_process
            .entry(worker.split('.').next().unwrap().to_owned())
            .or_default() += 1;
    }
    println!("jobs per process: {per_process:?}");
}
