//! A private etcd process on free loopback ports, for tests that freeze their server
//! and so must not share it.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::server;
use super::unique::scratch_dir;

/// Where one etcd keeps its data and listens: enough to start it again.
#[derive(Debug)]
pub(super) struct Setup {
    dir: PathBuf,
    endpoint: String,
    peer_url: String,
}

impl Setup {
    /// Starts `etcd` with its data in `dir`, serving clients on `endpoint`.
    pub(super) fn spawn(&self) -> Child {
        server::command("t", &self.dir, &self.endpoint, &self.peer_url)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn etcd (is etcd-server installed? run under .ci/with-etcd)")
    }
}

/// A private etcd process (the `etcd` found on PATH) on free loopback ports with its
/// own data directory; killed, resumed first if paused, and cleaned up on drop.
#[derive(Debug)]
pub struct EtcdProcess {
    pub(super) child: Child,
    pub(super) setup: Setup,
    /// Its client URL, e.g. `http://127.0.0.1:23456`.
    pub endpoint: String,
}

impl EtcdProcess {
    /// Starts etcd and waits (up to 20 s) until it answers a health check.
    pub fn start(name: &str) -> EtcdProcess {
        server::on_free_ports(|attempt, client, peer_url| {
            let endpoint = format!("http://127.0.0.1:{client}");
            let setup = Setup {
                dir: scratch_dir(&format!("etcd-{name}-{attempt}")),
                endpoint: endpoint.clone(),
                peer_url,
            };
            let mut process = EtcdProcess {
                child: setup.spawn(),
                setup,
                endpoint,
            };
            // Not healthy: probably a lost port race; `process` is dropped (killed).
            process
                .wait_healthy(Duration::from_secs(20))
                .then_some(process)
        })
        .expect("could not start a private etcd")
    }

    pub(super) fn wait_healthy(&mut self, deadline: Duration) -> bool {
        let endpoint = &self.endpoint;
        server::wait_healthy(&mut self.child, deadline, || {
            Command::new("etcdctl")
                .env("ETCDCTL_API", "3")
                .args(["--endpoints", endpoint, "--command-timeout=1s"])
                .args(["endpoint", "health"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        })
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
        let _ = std::fs::remove_dir_all(&self.setup.dir);
    }
}
