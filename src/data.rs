//! A task's rows, each run's random train/test split, and each epoch's minibatch order.

use crate::config::{Op, RunConfig};
use crate::rng::{Rng, Stream};
use crate::tasks;

/// Rows of a task: each row's input symbols (operands [a, b], or the bits of a string) and
/// its label.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Examples {
    /// Symbols per row.
    pub width: usize,
    /// `[N, width]`, row-major.
    pub symbols: Vec<u32>,
    /// `[N]`.
    pub labels: Vec<u32>,
}

impl Examples {
    fn new(width: usize) -> Examples {
        Examples { width, symbols: Vec::new(), labels: Vec::new() }
    }

    fn push(&mut self, symbols: &[u32], label: u32) {
        self.symbols.extend_from_slice(symbols);
        self.labels.push(label);
    }

    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// The symbols of row `i`.
    pub fn row(&self, i: usize) -> &[u32] {
        &self.symbols[i * self.width..][..self.width]
    }

    /// The rows at `indices`, in that order.
    pub fn select(&self, indices: &[usize]) -> Examples {
        let mut out = Examples::new(self.width);
        for &i in indices {
            out.push(self.row(i), self.labels[i]);
        }
        out
    }
}

/// Every row of the task of `config` for a run with `seed` (only sparse parity's rows depend
/// on the seed): pairs (a, b) in row-major order (from 1 with `task.skip_zero`), all 2^bits
/// strings in counting order, sparse parity's strings in the order drawn, or the rows of an
/// expression or a table in theirs.
pub fn all_examples(config: &RunConfig, seed: u64) -> Examples {
    if let Some(rows) = &config.pair_rows {
        let mut examples = Examples::new(2);
        for (operands, &label) in rows.operands.iter().zip(&rows.labels) {
            examples.push(operands, label);
        }
        return examples;
    }
    match &config.op {
        Op::Parity => bit_examples((0..1u64 << config.bits).map(|s| (s, tasks::parity(s))), config.bits),
        Op::SparseParity => {
            let relevant = (1u64 << config.parity_bits) - 1;
            let strings = tasks::sparse_parity_strings(config.n_bits(), config.samples, seed);
            bit_examples(strings.into_iter().map(|s| (s, tasks::parity(s & relevant))), config.n_bits())
        }
        op => {
            let p = config.p as u64;
            let mut examples = Examples::new(2);
            let first = u64::from(config.skip_zero);
            for a in first..p {
                for b in first..p {
                    if let Some(label) = tasks::binary_label(op, a, b, p) {
                        examples.push(&[a as u32, b as u32], label as u32);
                    }
                }
            }
            examples
        }
    }
}

/// Rows of bit strings: bit i of a string is symbol i.
fn bit_examples(strings: impl Iterator<Item = (u64, u32)>, n: usize) -> Examples {
    let mut examples = Examples::new(n);
    let mut bits = vec![0u32; n];
    for (string, label) in strings {
        bits.iter_mut().enumerate().for_each(|(i, bit)| *bit = ((string >> i) & 1) as u32);
        examples.push(&bits, label);
    }
    examples
}

/// A run's rows, split by its seed: floor(train_fraction · N) train rows, the rest test.
pub struct Split {
    pub train: Examples,
    pub test: Examples,
}

/// A table's `split` column fixes the rows instead: its train and test rows in file order.
pub fn split(config: &RunConfig, seed: u64) -> Split {
    let examples = all_examples(config, seed);
    if let Some(train) = config.pair_rows.as_ref().and_then(|rows| rows.train.as_ref()) {
        let (train, test): (Vec<usize>, Vec<usize>) = (0..examples.len()).partition(|&i| train[i]);
        return Split { train: examples.select(&train), test: examples.select(&test) };
    }
    let mut order: Vec<usize> = (0..examples.len()).collect();
    Rng::new(seed, Stream::Split).shuffle(&mut order);
    let (train, test) = order.split_at(config.n_train());
    Split { train: examples.select(train), test: examples.select(test) }
}

/// The order in which a run visits its `n_train` train rows in `epoch`: a fresh shuffle per
/// epoch from the run's own stream, a pure function of (seed, epoch) so that a resumed run
/// draws the same orders.
pub fn epoch_order(seed: u64, epoch: usize, n_train: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..n_train).collect();
    Rng::indexed(seed, Stream::Shuffle, epoch as u64).shuffle(&mut order);
    order
}
