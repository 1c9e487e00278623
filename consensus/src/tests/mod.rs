//! Unit tests of the state machine, and the multi-validator simulation.
//!
//! - `driver`: one core plus a host stand-in, used by the rule tests.
//! - `rules`: Algorithm 1 rule by rule, with the paper's tricky cases.
//! - `restart`: crash and restore from a checkpoint.
//! - `bad_input`: absurd, duplicate and flooding inputs.
//! - `messages`: signing bytes and SCALE encoding.
//! - `simulation`: n validators over a simulated network with a virtual
//!   clock, faults, crashes and a byzantine validator.

mod bad_input;
mod driver;
mod messages;
mod restart;
mod rules;
mod simulation;

/// splitmix64: a tiny, seeded, deterministic generator for tests.
#[derive(Clone, Debug)]
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..bound` (`bound > 0`; the tiny modulo bias is harmless here).
    pub(crate) fn below(&mut self, bound: u64) -> u64 {
        self.next_u64() % bound
    }

    /// Uniform in `low..=high`.
    pub(crate) fn between(&mut self, low: u64, high: u64) -> u64 {
        low + self.below(high - low + 1)
    }

    /// True with probability `per_mille / 1000`.
    pub(crate) fn chance(&mut self, per_mille: u64) -> bool {
        self.below(1000) < per_mille
    }

    /// A value id: the seed stream's bytes.
    pub(crate) fn value_id(&mut self) -> [u8; 32] {
        let mut id = [0; 32];
        for chunk in id.chunks_mut(8) {
            chunk.copy_from_slice(&self.next_u64().to_le_bytes());
        }
        id
    }
}
