//! A small deterministic PRNG (SplitMix64) for the simulator.
//!
//! Everything the simulator writes for one (chain, hour) is derived from
//! `(seed, chain index, hour index)`, so re-running a failed delivery regenerates the
//! same names and bytes, and a saved simulation continues reproducibly. Not for
//! cryptography: the RSA key comes from aws-lc-rs.

const GOLDEN_GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;

fn mix(mut value: u64) -> u64 {
    value = (value ^ (value >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    value = (value ^ (value >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    value ^ (value >> 31)
}

#[derive(Debug, Clone)]
pub(crate) struct SimRng {
    state: u64,
}

const ALNUM: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

impl SimRng {
    /// A generator for one purpose, derived from the simulation seed and a path of
    /// numbers naming that purpose (e.g. `[chain index, hour index]`).
    pub(crate) fn derive(seed: u64, path: &[u64]) -> SimRng {
        let mut state = mix(seed ^ GOLDEN_GAMMA);
        for part in path {
            state = mix(state ^ mix(part.wrapping_add(GOLDEN_GAMMA)));
        }
        SimRng { state }
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(GOLDEN_GAMMA);
        mix(self.state)
    }

    /// Uniform in `0..bound` (`bound` > 0); the modulo bias is irrelevant here.
    pub(crate) fn below(&mut self, bound: u64) -> u64 {
        debug_assert!(bound > 0);
        self.next_u64() % bound
    }

    /// Uniform in `low..=high`.
    pub(crate) fn between(&mut self, low: u64, high: u64) -> u64 {
        debug_assert!(low <= high);
        low + self.below(high - low + 1)
    }

    /// True with probability `percent`/100.
    pub(crate) fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    pub(crate) fn pick<'items, T>(&mut self, items: &'items [T]) -> &'items T {
        &items[self.below(items.len() as u64) as usize]
    }

    /// `length` characters from `[A-Za-z0-9]`, like CloudTrail's 16-character unique
    /// string in log file names.
    pub(crate) fn alnum(&mut self, length: usize) -> String {
        (0..length)
            .map(|_| ALNUM[self.below(ALNUM.len() as u64) as usize] as char)
            .collect()
    }

    pub(crate) fn hex(&mut self, length: usize) -> String {
        (0..length)
            .map(|_| char::from_digit(self.below(16) as u32, 16).unwrap_or('0'))
            .collect()
    }

    /// A lowercase version-4-shaped UUID, as in `eventID` / `requestID`.
    pub(crate) fn uuid(&mut self) -> String {
        format!(
            "{}-{}-4{}-{}{}-{}",
            self.hex(8),
            self.hex(4),
            self.hex(3),
            self.pick(&['8', '9', 'a', 'b']),
            self.hex(3),
            self.hex(12)
        )
    }

    /// A random 64-bit value for seeding a new simulation.
    pub(crate) fn fresh_seed() -> u64 {
        let mut bytes = [0_u8; 8];
        if aws_lc_rs::rand::fill(&mut bytes).is_err() {
            // The clock is a fine fallback: the seed only needs to differ between runs.
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|elapsed| elapsed.as_nanos() as u64)
                .unwrap_or(0);
            return mix(nanos);
        }
        u64::from_le_bytes(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derive_is_deterministic_and_path_sensitive() {
        let mut first = SimRng::derive(42, &[1, 2]);
        let mut again = SimRng::derive(42, &[1, 2]);
        let mut other = SimRng::derive(42, &[2, 1]);
        let first_values: Vec<u64> = (0..4).map(|_| first.next_u64()).collect();
        let again_values: Vec<u64> = (0..4).map(|_| again.next_u64()).collect();
        let other_values: Vec<u64> = (0..4).map(|_| other.next_u64()).collect();
        assert_eq!(first_values, again_values);
        assert_ne!(first_values, other_values);
    }

    #[test]
    fn shapes() {
        let mut rng = SimRng::derive(7, &[]);
        let unique = rng.alnum(16);
        assert_eq!(unique.len(), 16);
        assert!(unique.chars().all(|c| c.is_ascii_alphanumeric()));
        let uuid = rng.uuid();
        assert_eq!(uuid.len(), 36);
        assert_eq!(uuid.matches('-').count(), 4);
        for _ in 0..1000 {
            let value = rng.between(3, 5);
            assert!((3..=5).contains(&value));
        }
    }
}
