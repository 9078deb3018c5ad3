//! Killing a private etcd, and starting it again on the same ports and data.

use std::time::Duration;

use super::process::EtcdProcess;

impl EtcdProcess {
    /// Kills the server and starts it again on the same ports and data: its keys and
    /// leases survive, its connections do not. Waits (up to 20 s) until it is healthy.
    pub fn restart(&mut self) {
        self.kill();
        self.child = self.setup.spawn();
        assert!(
            self.wait_healthy(Duration::from_secs(20)),
            "etcd did not come back on {}",
            self.endpoint
        );
    }

    /// Kills the server (SIGKILL) and waits for it to exit.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
