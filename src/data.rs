//! The modular-arithmetic dataset and each run's random train/test split.

use crate::config::{Op, RunConfig};
use crate::rng::{Rng, Stream};

/// One example: the operands and the answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Example {
    pub a: u32,
    pub b: u32,
    pub label: u32,
}

/// Every (a, b) in [0, p)² (b ≠ 0 for div), in row-major order.
pub fn all_examples(op: Op, p: usize) -> Vec<Example> {
    let mut examples = Vec::with_capacity(p * p);
    for a in 0..p as u64 {
        for b in 0..p as u64 {
            let m = p as u64;
            let label = match op {
                Op::Add => (a + b) % m,
                Op::Sub => (a + m - b) % m,
                Op::Mul => (a * b) % m,
                Op::Div if b == 0 => continue,
                Op::Div => (a * mod_pow(b, m - 2, m)) % m,
            };
            examples.push(Example { a: a as u32, b: b as u32, label: label as u32 });
        }
    }
    examples
}

/// b^e mod m; with e = p − 2 this is b⁻¹ for a prime p (Fermat).
fn mod_pow(mut base: u64, mut exp: u64, m: u64) -> u64 {
    let mut result = 1 % m;
    base %= m;
    while exp > 0 {
        if exp & 1 == 1 {
            result = result * base % m;
        }
        base = base * base % m;
        exp >>= 1;
    }
    result
}

/// A run's examples, split by its seed: floor(train_fraction · N) train rows, the rest test.
pub struct Split {
    pub train: Vec<Example>,
    pub test: Vec<Example>,
}

pub fn split(config: &RunConfig, seed: u64) -> Split {
    let examples = all_examples(config.op, config.p);
    let mut order: Vec<usize> = (0..examples.len()).collect();
    Rng::new(seed, Stream::Split).shuffle(&mut order);
    let (train, test) = order.split_at(config.n_train());
    Split {
        train: train.iter().map(|&i| examples[i]).collect(),
        test: test.iter().map(|&i| examples[i]).collect(),
    }
}
