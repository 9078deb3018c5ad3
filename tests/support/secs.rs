//! How the support code prints an instant of a run: seconds with milliseconds.

use std::fmt;
use std::time::Duration;

/// `12.345s`, or `12.345678s` once a stall has knocked the clock off tokio's
/// millisecond grid.
pub struct Secs(pub Duration);

impl fmt::Display for Secs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let micros = self.0.subsec_micros();
        if micros % 1_000 == 0 {
            write!(f, "{}.{:03}s", self.0.as_secs(), micros / 1_000)
        } else {
            write!(f, "{}.{micros:06}s", self.0.as_secs())
        }
    }
}
