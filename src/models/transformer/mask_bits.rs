//! Which units dropout keeps: every mask bit a pure function of (run seed, optimizer step,
//! dropout site, element index), drawn from Philox4x32-10 ([`crate::rng::philox`]). Any one
//! bit can be computed alone, so a GPU kernel can draw a unit's bit where it applies the mask,
//! and the CPU pass and the tensor path (which materialize masks, [`super::RunMasks::draw`])
//! agree with it bit for bit.
//!
//! Definition (what a CUDA kernel repeats):
//! - key: `philox::key(seed, Stream::Dropout)`, two words computed once per run on the host;
//! - site: `4·layer + place`, place 0 the attention weights, 1 the attention output, 2 the FFN
//!   hidden units, 3 the FFN output ([`DropoutPlace`]);
//! - element e: the unit's row-major index in the run's mask of that site at that step, `[N, H,
//!   T, T]` for the attention weights and `[N, T, width]` otherwise, N the step's rows;
//! - counter: `[lo32(e / 4), hi32(e / 4), site, step]`, step = optimizer steps taken before;
//! - the unit's word w is word `e mod 4` of the draw, its uniform w·2⁻³²; the unit is kept when
//!   that uniform is ≥ p, i.e. exactly when w ≥ ⌈p·2³²⌉ (compared on integers).
//!
//! `dropout.cuh` beside this file is the same definition as CUDA device functions
//! (`grokstack_dropout_keeps`); tests/dropout_masks.rs compiles it for the host and checks it
//! against this one.

use crate::rng::philox::{self, philox4x32};
use crate::rng::Stream;
use anyhow::{Context, Result};

/// The four places of a block that dropout can sit at, numbered as in their site number.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DropoutPlace {
    AttnWeights = 0,
    AttnOut = 1,
    FfnHidden = 2,
    FfnOut = 3,
}

/// One run's dropout at one optimizer step: the key of its seed and the step.
#[derive(Clone, Copy, Debug)]
pub struct StepDropout {
    key: [u32; 2],
    step: u32,
}

impl StepDropout {
    /// The dropout of the run with `seed` after `step` optimizer steps; an error past 2³² − 1
    /// steps, where the counter's step word would wrap.
    pub fn new(seed: u64, step: usize) -> Result<StepDropout> {
        let step = u32::try_from(step)
            .ok()
            .with_context(|| format!("optimizer step {step}: dropout masks are defined for the first 2^32 steps"))?;
        Ok(StepDropout { key: philox::key(seed, Stream::Dropout), step })
    }

    /// The keep bits of block `layer`'s dropout at `place` with probability `p`.
    ///
    /// # Panics
    /// Where `p` is outside [0, 1) or the site number overflows u32: both are excluded when the
    /// architecture is read (`TransformerArch::validate`, the config's layer limit).
    pub fn site(&self, layer: usize, place: DropoutPlace, p: f64) -> DropoutSite {
        assert!((0.0..1.0).contains(&p), "dropout probability {p} is outside [0, 1)");
        let site = u32::try_from(4 * layer + place as usize).expect("a dropout site number within u32");
        // p < 1, so ⌈p·2³²⌉ ≤ 2³² fits in a u64 (and p = 0 gives 0: every word is kept).
        let threshold = (p * (1u64 << 32) as f64).ceil() as u64;
        DropoutSite { key: self.key, site, step: self.step, threshold }
    }
}

/// The keep bits of one dropout site of one run at one step.
#[derive(Clone, Copy, Debug)]
pub struct DropoutSite {
    key: [u32; 2],
    site: u32,
    step: u32,
    /// ⌈p·2³²⌉: a unit is kept when its word is at least this.
    threshold: u64,
}

impl DropoutSite {
    /// Whether the unit at `element` is kept.
    pub fn keeps(&self, element: u64) -> bool {
        let words = self.draw(element / 4);
        u64::from(words[(element % 4) as usize]) >= self.threshold
    }

    /// Keep bits (1 = kept) of the units `first..first + mask.len()` into `mask`, one draw per
    /// four units.
    pub fn fill(&self, first: u64, mask: &mut [u8]) {
        // Units before the first whole group of four, the whole groups, the units after them.
        let end = first + mask.len() as u64;
        let head = (first.wrapping_neg() % 4).min(mask.len() as u64) as usize;
        let (head_bits, body) = mask.split_at_mut(head);
        for (element, bit) in (first..).zip(head_bits) {
            *bit = u8::from(self.keeps(element));
        }
        let first_group = (first + head as u64) / 4;
        let mut groups = body.chunks_exact_mut(4);
        for (group, bits) in (first_group..).zip(&mut groups) {
            for (bit, word) in bits.iter_mut().zip(self.draw(group)) {
                *bit = u8::from(u64::from(word) >= self.threshold);
            }
        }
        let tail = groups.into_remainder();
        for (element, bit) in (end - tail.len() as u64..).zip(tail) {
            *bit = u8::from(self.keeps(element));
        }
    }

    /// The four words drawn for units `4·group..4·group + 4`.
    fn draw(&self, group: u64) -> [u32; 4] {
        philox4x32([group as u32, (group >> 32) as u32, self.site, self.step], self.key)
    }
}
