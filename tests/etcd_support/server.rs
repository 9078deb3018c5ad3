//! Starting a one-member etcd on free loopback ports: its command line, another pair of
//! ports when one was taken meanwhile, and waiting until it answers.

use std::path::Path;
use std::process::{Child, Command};
use std::time::Duration;

use super::ports::free_port;

/// The command line of a one-member cluster whose member is `name`, with its data in
/// `dir`, serving clients on `endpoint` and its (only) peer on `peer_url`.
pub fn command(name: &str, dir: &Path, endpoint: &str, peer_url: &str) -> Command {
    let mut command = Command::new("etcd");
    command
        .args(["--name", name, "--data-dir"])
        .arg(dir)
        .args(["--listen-client-urls", endpoint])
        .args(["--advertise-client-urls", endpoint])
        .args(["--listen-peer-urls", peer_url])
        .args(["--initial-advertise-peer-urls", peer_url])
        .args(["--initial-cluster", &format!("{name}={peer_url}")]);
    command
}

/// Calls `start(attempt, client_port, peer_url)` with up to five pairs of distinct free
/// loopback ports, until it returns a server (started and healthy). A `None` is taken
/// for a lost race for a port: `start` should have stopped what it spawned.
pub fn on_free_ports<T>(mut start: impl FnMut(usize, u16, String) -> Option<T>) -> Option<T> {
    for attempt in 0..5 {
        let (client, peer) = (free_port(), free_port());
        if client == peer {
            continue;
        }
        if let Some(server) = start(attempt, client, format!("http://127.0.0.1:{peer}")) {
            return Some(server);
        }
    }
    None
}

/// Polls `healthy` every 100 ms until it holds; `false` once `child` has exited or
/// `deadline` has passed.
pub fn wait_healthy(
    child: &mut Child,
    deadline: Duration,
    mut healthy: impl FnMut() -> bool,
) -> bool {
    let start = std::time::Instant::now();
    while start.elapsed() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return false;
        }
        if healthy() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}
