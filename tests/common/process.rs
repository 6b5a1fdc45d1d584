//! Real `wagate serve` processes (the binary cargo built for the tests), for tests that SIGKILL
//! them or run several on one database.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::meta::APP_SECRET;
use super::ports::free_port;

pub const BIN: &str = env!("CARGO_BIN_EXE_wagate");
pub const MASTER_KEY: &str = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";

/// A running `wagate serve`; killed with SIGKILL when dropped.
pub struct Instance {
    child: Child,
    pub base: String,
    /// Where the first instance on a database writes its bootstrap key (stdout is a pipe).
    key_file: std::path::PathBuf,
}

impl Instance {
    /// The bootstrap key, written before the instance listens.
    pub fn api_key(&self) -> String {
        std::fs::read_to_string(&self.key_file)
            .expect("bootstrap key written")
            .trim()
            .to_owned()
    }

    /// SIGTERM: the process drains and stops (`server.drain_delay`, `server.shutdown_grace`).
    pub fn terminate(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success(), "kill -TERM");
    }

    /// Waits up to `limit` for the process to exit; whether it did.
    pub fn exited_within(&mut self, limit: Duration) -> bool {
        let start = std::time::Instant::now();
        while start.elapsed() < limit {
            if self.child.try_wait().unwrap().is_some() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }

    /// SIGKILL: the process gets no chance to clean anything up.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts the binary in `dir` on the database `db`, with `env` (`WAGATE__…` settings) on top of
/// what every test instance has (master key, app secret, no number verification, loopback
/// webhook destinations allowed, info logs), and waits until it listens.
pub fn spawn(dir: &std::path::Path, db: &str, env: &[(&str, String)]) -> Instance {
    let port = free_port();
    // stdout is a pipe: a first start writes its key to this file instead of printing it.
    let key_file = dir.join(format!("initial-api-key-{port}"));
    let mut command = Command::new(BIN);
    command
        .current_dir(dir)
        .env("WAGATE__SECURITY__BOOTSTRAP_KEY_FILE", &key_file)
        .env("WAGATE__DATABASE__URL", db)
        .env("WAGATE__SERVER__LISTEN", format!("127.0.0.1:{port}"))
        .env("WAGATE__SECURITY__MASTER_KEY", MASTER_KEY)
        .env("WAGATE__META__APP_SECRET", APP_SECRET)
        .env("WAGATE__GRAPH__VERIFY_NUMBERS", "false")
        .env("WAGATE__DELIVERY__ALLOW_HTTP", "true")
        .env("WAGATE__DELIVERY__ALLOW_PRIVATE_NETWORKS", "true")
        .env("WAGATE__LOG__LEVEL", "info")
        // Instances share `dir`; each locks its own spill file.
        .env(
            "WAGATE__WRITER__SPILL_PATH",
            dir.join(format!("wagate-{port}.spill")),
        );
    for (key, value) in env {
        command.env(key, value);
    }
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = BufReader::new(child.stdout.take().unwrap());
    let stderr = BufReader::new(child.stderr.take().unwrap());
    std::thread::spawn(move || stdout.lines().map_while(Result::ok).for_each(drop));
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in stderr.lines().map_while(Result::ok) {
            if line.contains("wagate listening") {
                let _ = ready_tx.send(());
            }
        }
    });
    ready_rx
        .recv_timeout(Duration::from_secs(30))
        .expect("wagate started listening");
    Instance {
        child,
        base: format!("http://127.0.0.1:{port}"),
        key_file,
    }
}
