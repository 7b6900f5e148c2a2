//! A private MariaDB server for tests that need what the shared one does not have (a
//! restart, `performance_schema`): its own folder and a spare loopback port, from the same
//! packages, stopped and removed when dropped. Never the shared server.

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use sqlx::{Connection, Executor};

/// A private MariaDB server (see the module docs); `root` logs in without a password.
pub struct PrivateMariaDb {
    dir: PathBuf,
    /// Its loopback port.
    pub port: u16,
    child: Option<std::process::Child>,
}

impl PrivateMariaDb {
    /// Creates the server's data folder (`mariadb-install-db`); [`start`](Self::start) it.
    pub fn install() -> Self {
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "lockattr-my-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("a scratch folder");
        let out = std::process::Command::new("mariadb-install-db")
            .arg("--no-defaults")
            .arg(format!("--datadir={}", dir.join("data").display()))
            .args([
                "--user=root",
                "--auth-root-authentication-method=normal",
                "--skip-test-db",
            ])
            .output()
            .expect("mariadb-install-db runs");
        assert!(
            out.status.success(),
            "mariadb-install-db failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a spare port");
        let port = listener.local_addr().expect("a bound address").port();
        PrivateMariaDb {
            dir,
            port,
            child: None,
        }
    }

    /// Starts the server and waits until it answers, with database `test`.
    pub async fn start(&mut self) {
        self.start_with(&[]).await;
    }

    /// [`start`](Self::start) with more server options (`--performance-schema=ON`, …).
    pub async fn start_with(&mut self, options: &[&str]) {
        let server = ["/usr/sbin/mariadbd", "/usr/sbin/mysqld"]
            .into_iter()
            .find(|p| std::path::Path::new(p).exists())
            .unwrap_or("mariadbd");
        let log = std::fs::File::create(self.dir.join("server.log")).unwrap();
        let child = std::process::Command::new(server)
            .arg("--no-defaults")
            .arg(format!("--datadir={}", self.dir.join("data").display()))
            .arg(format!("--socket={}", self.dir.join("sock").display()))
            .arg(format!("--port={}", self.port))
            .args([
                "--bind-address=127.0.0.1",
                "--user=root",
                "--skip-grant-tables",
                "--skip-log-bin",
                "--innodb-buffer-pool-size=16M",
            ])
            .args(options)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("mariadbd starts");
        self.child = Some(child);
        let admin = format!("mysql://root@127.0.0.1:{}/mysql", self.port);
        let end = Instant::now() + Duration::from_secs(30);
        let mut c = loop {
            match sqlx::MySqlConnection::connect(&admin).await {
                Ok(c) => break c,
                Err(e) if Instant::now() >= end => panic!("the private MariaDB answers: {e}"),
                Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        };
        c.execute("CREATE DATABASE IF NOT EXISTS test")
            .await
            .unwrap();
    }

    /// `mysql://root@127.0.0.1:PORT/test`.
    pub fn url(&self) -> String {
        format!("mysql://root@127.0.0.1:{}/test", self.port)
    }

    /// A clean shutdown (SIGTERM), as a service manager's restart does.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = std::process::Command::new("kill")
                .arg(child.id().to_string())
                .status();
            let _ = child.wait();
        }
    }
}

impl Drop for PrivateMariaDb {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
