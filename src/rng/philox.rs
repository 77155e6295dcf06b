//! Philox4x32-10 (Salmon, Moraes, Dror and Shaw, "Parallel random numbers: as easy as 1, 2, 3",
//! SC11, 2011): a counter-based generator, a keyed bijection of a 128-bit counter. A draw is a
//! pure function of (key, counter), so whoever needs the draw at some counter (a GPU thread at
//! its element, the CPU pass at its block of rows) computes it alone, with no state to carry.
//!
//! Definition, all words u32 and arithmetic mod 2³² (what a CUDA kernel repeats):
//! the counter c = [c0, c1, c2, c3] and key k = [k0, k1] go through ten rounds of
//!
//! ```text
//! (hi0, lo0) = high and low words of the 64-bit product 0xD2511F53 · c0
//! (hi1, lo1) = high and low words of the 64-bit product 0xCD9E8D57 · c2
//! c = [hi1 ^ c1 ^ k0, lo1, hi0 ^ c3 ^ k1, lo0]
//! ```
//!
//! with the key bumped k0 += 0x9E3779B9, k1 += 0xBB67AE85 before every round but the first;
//! the draw is c after the tenth round. Random123's known-answer vectors check it
//! (tests/dropout_masks.rs).

use super::{splitmix64, stream_mix, Stream};

/// Rounds of Philox4x32-10.
pub const ROUNDS: usize = 10;
/// The round multipliers of c0 and c2.
const MULTIPLIERS: [u32; 2] = [0xD251_1F53, 0xCD9E_8D57];
/// What the key words gain between rounds (the golden ratio's and √3 − 1's first 32 bits).
const KEY_BUMPS: [u32; 2] = [0x9E37_79B9, 0xBB67_AE85];

/// The four words Philox4x32-10 draws at `counter` under `key`.
pub fn philox4x32(counter: [u32; 4], key: [u32; 2]) -> [u32; 4] {
    let (mut c, mut k) = (counter, key);
    for round in 0..ROUNDS {
        if round > 0 {
            k = [k[0].wrapping_add(KEY_BUMPS[0]), k[1].wrapping_add(KEY_BUMPS[1])];
        }
        let (hi0, lo0) = mul_hi_lo(MULTIPLIERS[0], c[0]);
        let (hi1, lo1) = mul_hi_lo(MULTIPLIERS[1], c[2]);
        c = [hi1 ^ c[1] ^ k[0], lo1, hi0 ^ c[3] ^ k[1], lo0];
    }
    c
}

/// The Philox key of one seed's stream: the first SplitMix64 output of the mix
/// [`crate::rng::Rng::new`] starts from (its first state word), low word first. Computed once
/// per run on the host; a kernel receives the two words.
pub fn key(seed: u64, stream: Stream) -> [u32; 2] {
    let mut mix = stream_mix(seed, stream);
    let word = splitmix64(&mut mix);
    [word as u32, (word >> 32) as u32]
}

/// High and low words of the 64-bit product a · b.
fn mul_hi_lo(a: u32, b: u32) -> (u32, u32) {
    let product = u64::from(a) * u64::from(b);
    ((product >> 32) as u32, product as u32)
}
