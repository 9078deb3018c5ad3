//! Test support for the etcd tests: the shared server from `.ci/with-etcd`, private
//! etcd processes for tests that pause their server, and polling with a deadline.

#![allow(dead_code)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The endpoints of the shared etcd (`LEADERSHIP_ETCD_ENDPOINTS`, comma-separated).
/// Tests that call it are `#[ignore]`d by default, so they run only when asked for:
/// then a missing server is a failure, never a silent pass.
pub fn shared_endpoints(test: &str) -> Vec<String> {
    match std::env::var("LEADERSHIP_ETCD_ENDPOINTS") {
        Ok(v) if !v.trim().is_empty() => v.split(',').map(|s| s.trim().to_owned()).collect(),
        _ => panic!(
            "{test}: LEADERSHIP_ETCD_ENDPOINTS is unset: run the etcd tests through \
             .ci/with-etcd cargo test --all-features -- --include-ignored"
        ),
    }
}

/// A key prefix no other test (or earlier run) uses.
pub fn unique_prefix(test: &str) -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!(
        "/leadership-test/{test}-{}-{}-{nanos}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// Polls `cond` every 20 ms until it holds; panics with `what` after `deadline`.
pub async fn poll_until<F, Fut>(deadline: Duration, what: &str, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = tokio::time::Instant::now();
    loop {
        if cond().await {
            return;
        }
        if start.elapsed() > deadline {
            panic!("timed out after {deadline:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Awaits `fut` for at most `deadline`, panicking with `what` otherwise.
pub async fn within<T>(
    deadline: Duration,
    what: &str,
    fut: impl std::future::Future<Output = T>,
) -> T {
    tokio::time::timeout(deadline, fut)
        .await
        .unwrap_or_else(|_| panic!("timed out after {deadline:?}: {what}"))
}

/// A loopback port that was free a moment ago.
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    listener.local_addr().expect("local address").port()
}

/// Starts `etcd` with its data in `dir`, serving clients on `endpoint`.
fn spawn_etcd(dir: &Path, endpoint: &str, peer_url: &str) -> Child {
    Command::new("etcd")
        .args(["--name", "t", "--data-dir"])
        .arg(dir)
        .args(["--listen-client-urls", endpoint])
        .args(["--advertise-client-urls", endpoint])
        .args(["--listen-peer-urls", peer_url])
        .args(["--initial-advertise-peer-urls", peer_url])
        .args(["--initial-cluster", &format!("t={peer_url}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn etcd (is etcd-server installed? run under .ci/with-etcd)")
}

/// A private etcd process (the `etcd` found on PATH) on free loopback ports with its
/// own data directory; killed, resumed first if paused, and cleaned up on drop.
#[derive(Debug)]
pub struct EtcdProcess {
    child: Child,
    dir: PathBuf,
    peer_url: String,
    /// Its client URL, e.g. `http://127.0.0.1:23456`.
    pub endpoint: String,
}

impl EtcdProcess {
    /// Starts etcd and waits (up to 20 s) until it answers a health check.
    pub fn start(name: &str) -> EtcdProcess {
        for attempt in 0..5 {
            let (client, peer) = (free_port(), free_port());
            if client == peer {
                continue;
            }
            let dir = std::env::temp_dir().join(format!(
                "leadership-etcd-{name}-{}-{attempt}-{}",
                std::process::id(),
                SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map(|d| d.as_nanos())
                    .unwrap_or(0)
            ));
            let endpoint = format!("http://127.0.0.1:{client}");
            let peer_url = format!("http://127.0.0.1:{peer}");
            let child = spawn_etcd(&dir, &endpoint, &peer_url);
            let mut process = EtcdProcess {
                child,
                dir,
                peer_url,
                endpoint,
            };
            if process.wait_healthy(Duration::from_secs(20)) {
                return process;
            }
            // Probably lost a port race: `process` is dropped (killed) and we retry.
        }
        panic!("could not start a private etcd");
    }

    /// Kills the server and starts it again on the same ports and data: its keys and
    /// leases survive, its connections do not. Waits (up to 20 s) until it is healthy.
    pub fn restart(&mut self) {
        self.kill();
        self.child = spawn_etcd(&self.dir, &self.endpoint, &self.peer_url);
        assert!(
            self.wait_healthy(Duration::from_secs(20)),
            "etcd did not come back on {}",
            self.endpoint
        );
    }

    fn wait_healthy(&mut self, deadline: Duration) -> bool {
        let start = std::time::Instant::now();
        while start.elapsed() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return false;
            }
            let healthy = Command::new("etcdctl")
                .env("ETCDCTL_API", "3")
                .args(["--endpoints", &self.endpoint, "--command-timeout=1s"])
                .args(["endpoint", "health"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            if healthy {
                return true;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        false
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Freezes the server (SIGSTOP): requests to it hang.
    pub fn pause(&self) {
        self.signal("-STOP");
    }

    /// Resumes a frozen server (SIGCONT).
    pub fn resume(&self) {
        self.signal("-CONT");
    }

    /// Kills the server (SIGKILL) and waits for it to exit.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([sig, &self.pid().to_string()])
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "kill {sig} {} failed", self.pid());
    }
}

impl Drop for EtcdProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = Command::new("kill")
                .args(["-CONT", &self.pid().to_string()])
                .stderr(Stdio::null())
                .status();
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
