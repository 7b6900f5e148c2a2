//! A private PostgreSQL server for tests that need what the shared one does not have (a
//! password, a restart): its own folder and a spare loopback port, stopped and removed
//! when dropped. Never the shared server.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};

/// A running private PostgreSQL server (see the module docs).
pub struct PrivatePostgres {
    dir: PathBuf,
    port: u16,
}

/// Runs `program args` as the `postgres` user when this process is root (the server
/// refuses to run as root), else as this user; panics naming the program if it fails.
pub fn as_postgres(program: &str, args: &[&str]) -> Output {
    // The newest installed version's tools, else those on the PATH.
    let bin = std::fs::read_dir("/usr/lib/postgresql")
        .ok()
        .and_then(|d| d.filter_map(Result::ok).map(|e| e.path()).max())
        .map(|v| v.join("bin").join(program))
        .filter(|p| p.exists())
        .unwrap_or_else(|| program.into());
    let root = Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.stdout.starts_with(b"0\n"))
        .unwrap_or(false);
    let mut cmd = if root {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(&bin);
        c
    } else {
        Command::new(&bin)
    };
    let out = cmd
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", bin.display()));
    assert!(
        out.status.success(),
        "{program} {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// A loopback port nobody listens on right now.
fn spare_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a spare loopback port");
    listener.local_addr().expect("a bound address").port()
}

impl PrivatePostgres {
    /// Creates and starts a server whose superuser `postgres` logs in with `password`
    /// (`scram-sha-256`, over TCP and the socket alike).
    pub fn start_with_password(password: &str) -> Self {
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "lockattr-private-pg-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("a scratch folder");
        let pwfile = dir.join("pwfile");
        std::fs::write(&pwfile, password).expect("the password file");
        // The server runs as `postgres`, which must own its folder.
        let _ = Command::new("chown")
            .args(["-R", "postgres:postgres"])
            .arg(&dir)
            .status();
        let data = dir.join("data");
        as_postgres(
            "initdb",
            &[
                "-D",
                &path(&data),
                "-A",
                "scram-sha-256",
                "-U",
                "postgres",
                "--pwfile",
                &path(&pwfile),
            ],
        );
        let mut server = PrivatePostgres { dir, port: 0 };
        // A spare port can be taken by someone else before the server binds it: try again.
        for _ in 0..5 {
            let port = spare_port();
            let opts = format!(
                "-p {port} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
                path(&server.dir)
            );
            let log = path(&server.dir.join("log"));
            let started = std::panic::catch_unwind(|| {
                as_postgres(
                    "pg_ctl",
                    &["-D", &path(&data), "-o", &opts, "-l", &log, "-w", "start"],
                )
            });
            if started.is_ok() {
                server.port = port;
                return server;
            }
        }
        panic!(
            "a private PostgreSQL did not start; see {}",
            server.dir.join("log").display()
        );
    }

    /// The server's port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `postgres://USER[:PASSWORD]@127.0.0.1:PORT/postgres` on this server.
    pub fn url(&self, user: &str, password: Option<&str>) -> String {
        let login = match password {
            Some(password) => format!("{user}:{password}"),
            None => user.to_owned(),
        };
        format!("postgres://{login}@127.0.0.1:{}/postgres", self.port)
    }
}

fn path(p: &Path) -> String {
    p.display().to_string()
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        if self.port != 0 {
            let data = path(&self.dir.join("data"));
            let _ = std::panic::catch_unwind(|| {
                as_postgres("pg_ctl", &["-D", &data, "-m", "immediate", "stop"])
            });
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
