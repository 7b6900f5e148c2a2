//! Bulk file processing on several workers: each file is imported by exactly one of
//! them, with a lock per file.
//!
//! ```sh
//! cargo run --example bulk_files                                  # 3 workers, 300 files
//! LOCKATTR_URL=postgres://postgres@127.0.0.1/test cargo run --example bulk_files --features postgres
//! ```
//!
//! The program writes 300 files into a fresh folder, starts three copies of itself as
//! worker processes, and checks that every file was imported once. The workers walk the
//! folder in the same order, so they meet on the same files all the time.
//!
//! The lock keeps two workers off one file *at the same time*. A file a worker finished
//! must not be imported again by a worker that reaches it later, so the body checks, under
//! the lock, whether the file is already done: a lock plus a "done" mark written under it
//! is what makes "exactly once" (the fencing token goes into the mark, as it would go into
//! a database row).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use lockattr::{distributed_lock, LockError};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

const FILES: usize = 300;
const WORKERS: usize = 3;

/// Imports one file unless another worker holds it (`skip`) or already did it.
/// `Some(true)`: imported here; `Some(false)`: it was done already; `None`: another
/// worker holds it right now.
#[distributed_lock(key = "import:<name>", ttl = "30s", on_conflict = "skip")]
async fn import(dir: &Path, name: &str, worker: usize) -> Result<Option<bool>, LockError> {
    let done = dir.join(format!("{name}.done"));
    if done.exists() {
        return Ok(Some(false));
    }
    let token = lockattr::current().expect("held").token();
    let rows = std::fs::read_to_string(dir.join(name))
        .map(|text| text.lines().count())
        .unwrap_or(0);
    // The import itself.
    tokio::time::sleep(Duration::from_millis(5)).await;
    std::fs::write(
        &done,
        format!("worker {worker} token {token} rows {rows}\n"),
    )
    .expect("the done mark is written");
    Ok(Some(true))
}

async fn worker(n: usize, dir: PathBuf) -> Result<(), BoxError> {
    let url = std::env::var(lockattr::URL_ENV)
        .unwrap_or_else(|_| lockattr::EMBEDDED_DEFAULT_URL.to_owned());
    lockattr::init(&url).await?;
    let mut names: Vec<String> = std::fs::read_dir(&dir)?
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|name| name.ends_with(".csv"))
        .collect();
    // Every worker walks the folder in the same order: they meet on the same files.
    names.sort();
    let (mut imported, mut done, mut busy) = (0, 0, 0);
    for name in &names {
        match import(&dir, name, n).await? {
            Some(true) => imported += 1,
            Some(false) => done += 1,
            None => busy += 1,
        }
    }
    println!("worker {n}: imported {imported}, found {done} done, {busy} held by another worker");
    Ok(())
}

fn demo() -> Result<(), BoxError> {
    let dir = std::env::temp_dir().join(format!("lockattr-bulk-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    for i in 0..FILES {
        std::fs::write(
            dir.join(format!("orders-{i:04}.csv")),
            "id,amount\n1,10\n2,20\n",
        )?;
    }
    let exe = std::env::current_exe()?;
    let workers: Vec<_> = (0..WORKERS)
        .map(|n| {
            Command::new(&exe)
                .args(["worker", &n.to_string()])
                .arg(&dir)
                .spawn()
        })
        .collect::<Result<_, _>>()?;
    for mut w in workers {
        if !w.wait()?.success() {
            return Err("a worker failed".into());
        }
    }
    let mut per_worker = [0usize; WORKERS];
    for i in 0..FILES {
        let mark = std::fs::read_to_string(dir.join(format!("orders-{i:04}.csv.done")))
            .map_err(|_| format!("orders-{i:04}.csv was never imported"))?;
        if mark.lines().count() != 1 {
            return Err(format!("orders-{i:04}.csv was imported more than once: {mark}").into());
        }
        let worker: usize = mark.split(' ').nth(1).unwrap_or_default().parse()?;
        per_worker[worker] += 1;
    }
    println!("{FILES} files, each imported exactly once; per worker: {per_worker:?}");
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.as_slice() {
        [] => demo(),
        [cmd, n, dir] if cmd == "worker" => worker(n.parse()?, PathBuf::from(dir)).await,
        _ => Err("usage: bulk_files [worker N DIR]".into()),
    }
}
