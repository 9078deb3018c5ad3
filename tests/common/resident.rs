//! The process's resident memory, shared by the memory test
//! (`tests/abandoned_tickets.rs`) and the benchmark's memory figures.

/// The process's resident set, in bytes (Linux: the second field of /proc/self/statm,
/// in pages of 4 KiB, the default on every machine these run on: x86-64, aarch64).
pub fn resident_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("Linux /proc/self/statm");
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|field| field.parse().ok())
        .expect("statm's resident field");
    pages * 4096
}
