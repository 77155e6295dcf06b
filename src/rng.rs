//! A small, stable random number generator (xoshiro256**, seeded through SplitMix64).
//!
//! Results must not change with a dependency's version, so the generator is written out
//! here. Each use (data split, weight init, power-iteration start) gets its own stream so
//! that turning one feature on never shifts the random numbers of another. Dropout masks come
//! from the counter-based [`philox`] instead, so that any unit's draw can be computed alone.

pub mod philox;

pub struct Rng {
    state: [u64; 4],
}

/// Independent streams of one seed.
#[derive(Clone, Copy)]
pub enum Stream {
    Split = 1,
    Init = 2,
    PowerIteration = 3,
    Synthetic = 4,
    /// Seed-dependent task data (sparse parity's strings).
    Data = 5,
    /// The order of the train rows in each epoch's minibatches.
    Shuffle = 6,
    /// Each optimizer step's dropout masks (the key of their [`philox`] draws).
    Dropout = 7,
}

impl Rng {
    pub fn new(seed: u64, stream: Stream) -> Rng {
        let mut mix = stream_mix(seed, stream);
        let mut state = [0u64; 4];
        for word in &mut state {
            *word = splitmix64(&mut mix);
        }
        Rng { state }
    }

    /// The `index`-th generator of a family under one seed and stream (say, epoch e's
    /// shuffle): a pure function of the three, so no generator state needs saving.
    pub fn indexed(seed: u64, stream: Stream, index: u64) -> Rng {
        let mut mix = index.wrapping_add(1);
        Rng::new(seed ^ splitmix64(&mut mix), stream)
    }

    pub fn next_u64(&mut self) -> u64 {
        let s = &mut self.state;
        let result = s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = s[1] << 17;
        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = s[3].rotate_left(45);
        result
    }

    /// Uniform in [0, 1) with 53 random bits.
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Uniform integer in [0, n) without modulo bias (Lemire's method).
    pub fn below(&mut self, n: usize) -> usize {
        let n = n as u64;
        loop {
            let product = (self.next_u64() as u128) * (n as u128);
            let low = product as u64;
            if low >= n.wrapping_neg() % n {
                return (product >> 64) as usize;
            }
        }
    }

    /// Standard normal by Box–Muller (one value per call; simplicity over speed, init only).
    pub fn normal(&mut self) -> f64 {
        let u1 = 1.0 - self.uniform(); // (0, 1], so ln is finite
        let u2 = self.uniform();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }

    /// Fisher–Yates shuffle.
    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            items.swap(i, self.below(i + 1));
        }
    }
}

/// Where a seed's stream starts: the SplitMix64 state its generators are seeded from.
fn stream_mix(seed: u64, stream: Stream) -> u64 {
    seed ^ (stream as u64).wrapping_mul(0xA076_1D64_78BD_642F)
}

fn splitmix64(x: &mut u64) -> u64 {
    *x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *x;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}
