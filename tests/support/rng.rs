//! A tiny deterministic random number generator (SplitMix64).
//!
//! The simulation needs nothing from a random generator but a reproducible stream per
//! seed, so it uses the 20-line SplitMix64 (Steele, Lea and Flood, 2014) rather than a
//! dependency whose streams could change between versions.

/// A SplitMix64 generator: the same seed gives the same stream on every machine.
#[derive(Debug, Clone)]
pub struct Rng {
    state: u64,
}

impl Rng {
    /// A generator seeded with `seed`.
    pub fn new(seed: u64) -> Rng {
        Rng { state: seed }
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `lo..=hi` (the bias of `%` is irrelevant at these ranges).
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        assert!(lo <= hi, "empty range {lo}..={hi}");
        lo + self.next_u64() % (hi - lo + 1)
    }

    /// An index in `0..n`; `n` must be positive.
    pub fn index(&mut self, n: usize) -> usize {
        self.range(0, n as u64 - 1) as usize
    }

    /// `true` with probability `percent`/100.
    pub fn percent(&mut self, percent: u64) -> bool {
        self.range(0, 99) < percent
    }

    /// An independent generator for another part of the simulation, so that what one
    /// part draws does not shift the stream of another.
    pub fn fork(&mut self) -> Rng {
        Rng::new(self.next_u64())
    }
}
